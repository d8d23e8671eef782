//! Actor-level tests of the audit trail: a change writes its record with it, a refused or empty
//! change writes none, and the trail pages newest first with its filters.

use super::operator_tests::registry;
use super::*;
use crate::ports::StatusSink;
use crate::{AuditAction, AuditQuery, ConfigRequest};

fn draft(actor: &str, action: AuditAction, device: &EquipmentId) -> Audit {
    let mut record = AuditRecord::new(actor, "127.0.0.1", action, format!("POST /x/{device}"));
    record.equipment_ids.push(device.clone());
    Some(Box::new(record.ended(200, "done")))
}

fn task(device: &EquipmentId) -> TaskMessage {
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: device.clone(),
        request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {}}"#).unwrap(),
    }
}

fn everything() -> AuditQuery {
    AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    }
}

#[tokio::test]
async fn each_change_writes_one_record_naming_its_tasks_and_no_change_writes_none() {
    let registry = registry().await;
    let device = EquipmentId::parse("abc123").unwrap();
    let (queued, running) = (task(&device), task(&device));
    for task in [&queued, &running] {
        let draft = draft("ops", AuditAction::Create, &device);
        registry.start_create(TaskRecord::from(task), draft).await.unwrap();
    }
    registry.begin(&running, false).await.unwrap();
    let cancel = |id| registry.cancel(id, device.clone(), draft("ops", AuditAction::Cancel, &device));
    assert_eq!(cancel(running.task_id).await.unwrap(), Cancel::Running);
    assert_eq!(cancel(TaskId::new()).await.unwrap(), Cancel::NotFound);
    assert_eq!(cancel(queued.task_id).await.unwrap(), Cancel::Cancelled);

    let trail = registry.audit(everything()).await.unwrap().records;
    let seen: Vec<(AuditAction, Vec<TaskId>)> = trail.iter().map(|r| (r.action, r.task_ids.clone())).collect();
    assert_eq!(
        seen,
        [
            (AuditAction::Cancel, vec![queued.task_id]),
            (AuditAction::Create, vec![running.task_id]),
            (AuditAction::Create, vec![queued.task_id]),
        ],
        "newest first; the refused cancels left no record"
    );
    assert!(trail.windows(2).all(|pair| pair[0].id > pair[1].id));
}

#[tokio::test]
async fn a_retry_names_both_tasks_and_its_new_task_names_the_requester() {
    let registry = registry().await;
    let device = EquipmentId::parse("abc123").unwrap();
    let failed = task(&device);
    registry.create(TaskRecord::from(&failed)).await.unwrap();
    registry.begin(&failed, false).await.unwrap();
    let outcome = Outcome::Failed {
        attempts: 1,
        reason: "no".into(),
    };
    registry.finish(&failed, outcome).await.unwrap();

    let audit = draft("night-shift", AuditAction::Retry, &device);
    let retried = registry.retry(failed.task_id, device.clone(), Some("night-shift".into()), audit);
    let Retry::Created(new) = retried.await.unwrap() else {
        panic!("a failed task is retried");
    };
    let record = registry.get(new.task_id).await.unwrap().unwrap();
    assert_eq!(record.requested_by.as_deref(), Some("night-shift"));
    let trail = registry.audit(everything()).await.unwrap().records;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].task_ids, [new.task_id, failed.task_id]);
}

#[tokio::test]
async fn the_trail_pages_newest_first_by_cursor_and_filters() {
    let registry = registry().await;
    let (a, b) = (
        EquipmentId::parse("aaa111").unwrap(),
        EquipmentId::parse("bbb222").unwrap(),
    );
    for (actor, device) in [("ops", &a), ("wall", &b), ("ops", &b), ("ops", &a), ("wall", &a)] {
        let record = draft(actor, AuditAction::Refused, device).unwrap();
        registry.record(*record).await.unwrap();
    }
    let page = |query: AuditQuery| async { registry.audit(query).await.unwrap() };
    let first = page(AuditQuery {
        actor: Some("ops".into()),
        limit: 2,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(first.records.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 3]);
    let rest = page(AuditQuery {
        actor: Some("ops".into()),
        limit: 2,
        before: first.next,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(
        (rest.records.iter().map(|r| r.id).collect::<Vec<_>>(), rest.next),
        (vec![1], None)
    );

    let of_b = page(AuditQuery {
        equipment: Some(b.clone()),
        ..everything()
    })
    .await;
    assert_eq!(of_b.records.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2]);
    let none = page(AuditQuery {
        action: Some(AuditAction::Create),
        ..everything()
    })
    .await;
    assert!(none.records.is_empty());
    let later = page(AuditQuery {
        since: Some(u64::MAX),
        ..everything()
    })
    .await;
    assert!(later.records.is_empty());
}
