//! Actor-level tests of the registry: transitions, idempotency, leases, restarts, group commit.

use super::*;
use crate::memory::MemoryStore;
use crate::ports::StatusSink;
use crate::slot::Slot;
use crate::{ConfigRequest, EquipmentId, TaskStatus};

async fn registry() -> (RegistryHandle, Arc<MemoryStore>, ActorRef<RegistryMsg>) {
    let store = Arc::new(MemoryStore::default());
    let (actor, _) = Actor::spawn(None, Registry, store.clone() as Arc<dyn TaskStore>)
        .await
        .unwrap();
    let slot = Slot::default();
    slot.set(actor.clone());
    (RegistryHandle::new(slot, store.clone()), store, actor)
}

fn message(device: &str) -> TaskMessage {
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse(device).unwrap(),
        request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "p"}}"#).unwrap(),
    }
}

fn record(task: &TaskMessage) -> TaskRecord {
    TaskRecord::from(task)
}

#[tokio::test]
async fn a_task_goes_from_queued_through_running_to_completed() {
    let (registry, _, _) = registry().await;
    let task = message("abc123");
    registry.create(record(&task)).await.unwrap();
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::Run { attempt: 1 });
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Running
    );
    registry
        .finish(&task, Outcome::Completed { attempts: 1 })
        .await
        .unwrap();
    let done = registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (TaskStatus::Completed, 1));
}

#[tokio::test]
async fn a_final_task_is_not_run_again_and_keeps_its_outcome() {
    let (registry, _, _) = registry().await;
    let task = message("abc123");
    registry.create(record(&task)).await.unwrap();
    registry
        .finish(
            &task,
            Outcome::Failed {
                attempts: 5,
                reason: "HTTP 500".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::AlreadyFinal);
    registry
        .finish(&task, Outcome::Completed { attempts: 6 })
        .await
        .unwrap();
    let kept = registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!(
        (kept.status, kept.last_error.as_deref()),
        (TaskStatus::Failed, Some("HTTP 500"))
    );
}

#[tokio::test]
async fn a_task_from_another_publisher_is_adopted_only_when_asked_and_a_redelivery_of_it_waits() {
    let (registry, _, _) = registry().await;
    let task = message("abc123");
    assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::Unknown);
    assert_eq!(registry.get(task.task_id).await.unwrap(), None, "nothing is written");
    assert_eq!(
        registry.begin_adopting(&task, false).await.unwrap(),
        Begin::Run { attempt: 1 }
    );
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Running
    );
    let forgotten = message("abc124");
    let resumed = registry.begin_adopting(&forgotten, true).await.unwrap();
    assert!(matches!(resumed, Begin::Resume { .. }), "{resumed:?}");
}

#[tokio::test]
async fn updates_from_other_processes_apply_only_to_the_right_device() {
    let (registry, _, _) = registry().await;
    let task = message("abc123");
    registry.create(record(&task)).await.unwrap();
    let wrong = StatusUpdate::Finished {
        task_id: task.task_id,
        equipment_id: EquipmentId::parse("zzz999").unwrap(),
        outcome: Outcome::Completed { attempts: 1 },
    };
    registry.apply(wrong).await.unwrap();
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    let right = StatusUpdate::Finished {
        task_id: task.task_id,
        equipment_id: task.equipment_id.clone(),
        outcome: Outcome::Completed { attempts: 1 },
    };
    registry.apply(right).await.unwrap();
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
}

/// Each call is counted before it is made: by `begin`, by `next_attempt`, and (workers in
/// another process) by each `running` update; an outcome never lowers the count.
#[tokio::test]
async fn calls_are_counted_before_they_are_made() {
    let (registry, _, _) = registry().await;
    let task = message("abc123");
    registry.create(record(&task)).await.unwrap();
    assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::Run { attempt: 1 });
    assert_eq!(registry.next_attempt(&task, 2).await.unwrap(), 2);
    assert_eq!(registry.get(task.task_id).await.unwrap().unwrap().attempts, 2);

    let remote = message("abc124");
    registry.create(record(&remote)).await.unwrap();
    for _ in 0..3 {
        let running = StatusUpdate::Running {
            task_id: remote.task_id,
            equipment_id: remote.equipment_id.clone(),
        };
        registry.apply(running).await.unwrap();
    }
    let finished = StatusUpdate::Finished {
        task_id: remote.task_id,
        equipment_id: remote.equipment_id.clone(),
        outcome: Outcome::Completed { attempts: 1 },
    };
    registry.apply(finished).await.unwrap();
    let done = registry.get(remote.task_id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (TaskStatus::Completed, 3));
}

#[tokio::test]
async fn state_outlives_a_registry_restart() {
    let (registry, store, actor) = registry().await;
    let task = message("abc123");
    registry.create(record(&task)).await.unwrap();
    actor.kill_and_wait(None).await.unwrap();
    assert!(
        registry.watch(task.task_id).await.is_err(),
        "a dead registry answers with an error, not a hang"
    );
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued,
        "reads go to the store, not through the registry"
    );
    let (restarted, _) = Actor::spawn(None, Registry, store as Arc<dyn TaskStore>).await.unwrap();
    registry.slot.set(restarted);
    assert_eq!(
        registry.get(task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_its_first_task_and_refuses_another_request() {
    let (registry, _, _) = registry().await;
    let first = message("abc123");
    let created = registry
        .create_with_key(record(&first), "key-1".into(), None)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let again = TaskMessage {
        task_id: TaskId::new(),
        ..first.clone()
    };
    assert_eq!(
        registry
            .create_with_key(record(&again), "key-1".into(), None)
            .await
            .unwrap(),
        Created::Existing(first.task_id)
    );
    assert!(
        registry.get(again.task_id).await.unwrap().is_none(),
        "no second task is stored"
    );
    registry.remove(first.task_id, Some("key-1".into())).await.unwrap();
    let retry = TaskMessage {
        task_id: TaskId::new(),
        ..first.clone()
    };
    assert_eq!(
        registry
            .create_with_key(record(&retry), "key-1".into(), None)
            .await
            .unwrap(),
        Created::New,
        "a task removed because it was never queued frees its key"
    );
    let other_device = message("abc124");
    assert_eq!(
        registry
            .create_with_key(record(&other_device), "key-1".into(), None)
            .await
            .unwrap(),
        Created::Conflict
    );
}

#[tokio::test]
async fn a_running_task_past_its_lease_fails_and_a_renewed_one_does_not() {
    let (registry, _, _) = registry().await;
    let (stale, queued) = (message("abc123"), message("abc124"));
    registry.create(record(&stale)).await.unwrap();
    registry.create(record(&queued)).await.unwrap();
    registry.begin(&stale, false).await.unwrap();
    let cutoff = crate::domain::now_millis() + 1;
    assert_eq!(registry.expire_leases(cutoff).await.unwrap(), 1);
    let failed = registry.get(stale.task_id).await.unwrap().unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(failed.last_error.as_ref().unwrap().contains("lease"));
    assert_eq!(
        registry.get(queued.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    let renewed = message("abc125");
    registry.begin(&renewed, false).await.unwrap();
    assert_eq!(
        registry
            .expire_leases(crate::domain::now_millis() - 60_000)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn sweep_removes_only_old_final_tasks() {
    let (registry, _, _) = registry().await;
    let (done, pending) = (message("abc123"), message("abc124"));
    registry.create(record(&done)).await.unwrap();
    registry.create(record(&pending)).await.unwrap();
    registry
        .finish(&done, Outcome::Completed { attempts: 1 })
        .await
        .unwrap();
    assert_eq!(registry.sweep(crate::domain::now_millis() + 1).await.unwrap(), 1);
    assert!(registry.get(done.task_id).await.unwrap().is_none());
    assert_eq!(registry.unfinished().await.unwrap().len(), 1);
}
