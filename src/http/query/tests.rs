//! Unit tests of `http/query.rs`.

use super::*;

#[test]
fn a_page_request_is_read_with_defaults_and_limits() {
    let params = list_params("").unwrap();
    assert_eq!((params.limit, params.statuses.len(), params.before), (50, 0, None));
    let params = list_params("status=failed&status=queued,failed&limit=500").unwrap();
    assert_eq!(params.statuses, vec![TaskStatus::Failed, TaskStatus::Queued]);
    assert_eq!(params.limit, 500);
    for bad in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "status=done",
        "cursor=abc",
        "color=red",
    ] {
        assert!(list_params(bad).is_err(), "{bad} accepted");
    }
    assert!(list_params("status=fail%65d").unwrap_err().contains("plain letters"));
}

#[test]
fn a_cursor_reads_back_as_it_was_given() {
    let cursor = Cursor {
        created_at: 1_764_000_000_123,
        id: TaskId::new(),
    };
    let given = format_cursor(cursor);
    assert_eq!(list_params(&format!("cursor={given}")).unwrap().before, Some(cursor));
}

#[test]
fn a_wait_is_a_duration_of_at_most_a_minute() {
    assert_eq!(wait_param("").unwrap(), None);
    assert_eq!(wait_param("wait=30s").unwrap(), Some(Duration::from_secs(30)));
    assert_eq!(wait_param("x=1&wait=250ms").unwrap(), Some(Duration::from_millis(250)));
    assert!(wait_param("wait=61s").unwrap_err().contains("at most 60s"));
    assert!(wait_param("wait=30").unwrap_err().contains("unit"));
}

#[test]
fn a_single_valued_parameter_given_twice_is_refused_and_status_may_repeat() {
    for twice in ["limit=50&limit=1", "cursor=a&cursor=b"] {
        assert!(list_params(twice).unwrap_err().contains("more than once"), "{twice}");
    }
    assert!(wait_param("wait=1s&wait=30s").unwrap_err().contains("more than once"));
    let statuses = list_params("status=failed&status=queued").unwrap().statuses;
    assert_eq!(statuses, [TaskStatus::Failed, TaskStatus::Queued]);
}
