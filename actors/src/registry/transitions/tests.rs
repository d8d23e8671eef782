//! The transitions as plain functions: a record, a request and a time in; a write and an answer out.

use super::*;
use crate::ConfigRequest;

const EARLIER: u64 = 1_000;
const NOW: u64 = 5_000;

const FIRST: BeginAsk = BeginAsk {
    redelivered: false,
    adopt_unknown: false,
};
const AGAIN: BeginAsk = BeginAsk {
    redelivered: true,
    adopt_unknown: false,
};

fn message() -> TaskMessage {
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse("abc123").unwrap(),
        request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "p"}}"#).unwrap(),
    }
}

fn stored(task: &TaskMessage, status: TaskStatus, attempts: u32) -> TaskRecord {
    let mut record = TaskRecord::from(task);
    record.status = status;
    record.attempts = attempts;
    record.updated_at = EARLIER;
    record
}

fn written(decision: &Option<WriteOp>) -> &TaskRecord {
    match decision {
        Some(WriteOp::Put(record)) => record,
        other => panic!("expected one put, got {other:?}"),
    }
}

#[test]
fn begin_runs_a_queued_task_and_counts_the_call_at_the_given_time() {
    let task = message();
    let (write, answer) = begin(Some(stored(&task, TaskStatus::Queued, 0)), &task, FIRST, NOW);
    assert_eq!(answer, Begin::Run { attempt: 1 });
    let record = written(&write);
    assert_eq!(
        (record.status, record.attempts, record.updated_at),
        (TaskStatus::Running, 1, NOW)
    );
}

#[test]
fn begin_resumes_a_running_task_from_its_last_update() {
    let task = message();
    let (write, answer) = begin(Some(stored(&task, TaskStatus::Running, 2)), &task, AGAIN, NOW);
    assert_eq!(
        answer,
        Begin::Resume {
            since: EARLIER,
            attempt: 3
        }
    );
    assert_eq!(written(&write).updated_at, NOW);
}

#[test]
fn begin_of_an_unknown_task_adopts_it_only_when_asked_and_then_waits_from_now_on_a_redelivery() {
    let task = message();
    assert_eq!(begin(None, &task, AGAIN, NOW), (None, Begin::Unknown));
    let adopt = |redelivered| BeginAsk {
        redelivered,
        adopt_unknown: true,
    };
    let (write, answer) = begin(None, &task, adopt(true), NOW);
    assert_eq!(answer, Begin::Resume { since: NOW, attempt: 1 });
    assert_eq!(written(&write).id, task.task_id);
    assert_eq!(begin(None, &task, adopt(false), NOW).1, Begin::Run { attempt: 1 });
}

#[test]
fn a_message_that_names_another_device_or_request_is_refused_and_changes_nothing() {
    let task = message();
    let queued = stored(&task, TaskStatus::Queued, 0);
    let mut forged = task.clone();
    forged.equipment_id = EquipmentId::parse("forged1").unwrap();
    let (write, answer) = begin(Some(queued.clone()), &forged, FIRST, NOW);
    assert!(write.is_none());
    assert!(
        matches!(&answer, Begin::Refused(why) if why.contains("forged1") && why.contains("abc123")),
        "{answer:?}"
    );
    let mut other_request = task.clone();
    other_request.request =
        ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "q"}}"#).unwrap();
    let (write, answer) = begin(Some(queued), &other_request, FIRST, NOW);
    assert!(write.is_none());
    assert!(matches!(answer, Begin::Refused(_)), "{answer:?}");
}

#[test]
fn a_redelivery_of_a_final_task_is_acknowledged_though_its_parameters_are_gone() {
    let task = message();
    let mut done = stored(&task, TaskStatus::Running, 1);
    assert!(done.finish_at(&Outcome::Completed { attempts: 1 }, NOW));
    assert_eq!(begin(Some(done), &task, AGAIN, NOW), (None, Begin::AlreadyFinal));
}

#[test]
fn a_final_task_is_not_begun_again() {
    let task = message();
    let (write, answer) = begin(Some(stored(&task, TaskStatus::Completed, 1)), &task, AGAIN, NOW);
    assert_eq!((write, answer), (None, Begin::AlreadyFinal));
}

#[test]
fn next_attempt_counts_only_for_a_running_task() {
    let task = message();
    let (write, attempt) = next_attempt(Some(stored(&task, TaskStatus::Running, 1)), 2, NOW);
    assert_eq!((attempt, written(&write).updated_at), (2, NOW));
    let (write, attempt) = next_attempt(Some(stored(&task, TaskStatus::Failed, 3)), 4, NOW);
    assert_eq!((write, attempt), (None, 4), "the worker's own count moves on");
}

#[test]
fn an_expired_lease_fails_only_running_tasks_past_the_cutoff_and_not_busy() {
    let (a, b, c, d) = (message(), message(), message(), message());
    let mut fresh = stored(&c, TaskStatus::Running, 1);
    fresh.updated_at = NOW;
    let unfinished = vec![
        stored(&a, TaskStatus::Running, 2),
        stored(&b, TaskStatus::Queued, 0),
        fresh,
        stored(&d, TaskStatus::Running, 1),
    ];
    let expired = expire_leases(unfinished, NOW, |id| id == d.task_id, NOW);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, a.task_id);
    assert_eq!((expired[0].status, expired[0].attempts), (TaskStatus::Failed, 2));
}

#[test]
fn a_key_used_before_answers_with_its_task_or_a_conflict() {
    let task = message();
    let record = TaskRecord::from(&task);
    let entry = IdempotencyEntry {
        task_id: TaskId::new(),
        fingerprint: record.request.fingerprint(&record.equipment_id),
        created_at: EARLIER,
    };
    assert_eq!(
        create_with_key(Some(entry), record.clone(), "k".into()),
        (None, Created::Existing(entry.task_id))
    );
    let other = IdempotencyEntry {
        fingerprint: entry.fingerprint.wrapping_add(1),
        ..entry
    };
    assert_eq!(
        create_with_key(Some(other), record.clone(), "k".into()),
        (None, Created::Conflict)
    );
    assert!(matches!(
        create_with_key(None, record, "k".into()),
        (Some(WriteOp::PutWithKey(..)), Created::New)
    ));
}
