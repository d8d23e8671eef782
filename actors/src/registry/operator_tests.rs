//! Actor-level tests of what operators ask the registry: cancel, watch (long-poll) and list.

use super::*;
use crate::memory::MemoryStore;
use crate::ports::{StatusSink, TaskReader};
use crate::slot::Slot;
use crate::{ConfigRequest, TaskQuery};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A registry over a memory store, as every actor-level test of the registry starts.
pub(super) async fn registry() -> RegistryHandle {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let (actor, _) = Actor::spawn(None, Registry, store.clone()).await.unwrap();
    let slot = Slot::default();
    slot.set(actor);
    RegistryHandle::new(slot, store)
}

async fn created(registry: &RegistryHandle, device: &str) -> TaskMessage {
    let task = TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse(device).unwrap(),
        request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "p"}}"#).unwrap(),
    };
    let record = TaskRecord::from(&task);
    registry.create(record).await.unwrap();
    task
}

#[tokio::test]
async fn only_a_queued_task_of_the_named_device_is_cancelled() {
    let registry = registry().await;
    let queued = created(&registry, "abc123").await;
    let device = queued.equipment_id.clone();
    let other = EquipmentId::parse("zzz999").unwrap();
    assert_eq!(
        registry.cancel(queued.task_id, other, None).await.unwrap(),
        Cancel::NotFound
    );
    assert_eq!(
        registry.cancel(TaskId::new(), device.clone(), None).await.unwrap(),
        Cancel::NotFound
    );
    assert_eq!(
        registry.cancel(queued.task_id, device.clone(), None).await.unwrap(),
        Cancel::Cancelled
    );
    let record = registry.get(queued.task_id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert!(
        record.request.parameters.is_empty(),
        "a cancelled task keeps no parameters"
    );
    assert_eq!(
        registry.cancel(queued.task_id, device.clone(), None).await.unwrap(),
        Cancel::Final(TaskStatus::Cancelled)
    );
    // A worker that meets the cancelled task's message acknowledges it without a call.
    assert_eq!(registry.begin(&queued, false).await.unwrap(), Begin::AlreadyFinal);

    let running = created(&registry, "abc123").await;
    registry.begin(&running, false).await.unwrap();
    assert_eq!(
        registry.cancel(running.task_id, device, None).await.unwrap(),
        Cancel::Running
    );
}

#[tokio::test]
async fn a_watcher_is_told_when_its_task_becomes_final() {
    let registry = registry().await;
    let task = created(&registry, "abc123").await;
    let watch = registry.watch(task.task_id).await.unwrap().unwrap();
    assert_eq!(watch.now.status, TaskStatus::Queued);
    let finished = watch.finished.expect("an unfinished task can be waited for");
    registry.begin(&task, false).await.unwrap();
    registry
        .finish(&task, Outcome::Completed { attempts: 1 })
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), finished)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    let again = registry.watch(task.task_id).await.unwrap().unwrap();
    assert!(again.finished.is_none(), "a final task needs no waiting");
    assert!(registry.watch(TaskId::new()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_watcher_is_told_of_a_cancel_and_of_an_expired_lease() {
    let registry = registry().await;
    let cancelled = created(&registry, "abc123").await;
    let finished = registry
        .watch(cancelled.task_id)
        .await
        .unwrap()
        .unwrap()
        .finished
        .unwrap();
    registry
        .cancel(cancelled.task_id, cancelled.equipment_id.clone(), None)
        .await
        .unwrap();
    assert_eq!(finished.await.unwrap().status, TaskStatus::Cancelled);

    let stuck = created(&registry, "abc123").await;
    registry.begin(&stuck, false).await.unwrap();
    let finished = registry.watch(stuck.task_id).await.unwrap().unwrap().finished.unwrap();
    registry.expire_leases(u64::MAX).await.unwrap();
    assert_eq!(finished.await.unwrap().status, TaskStatus::Failed);
}

#[tokio::test]
async fn list_answers_newest_first_through_the_registry() {
    let registry = registry().await;
    let first = created(&registry, "abc123").await;
    let second = created(&registry, "abc123").await;
    let query = TaskQuery {
        equipment: Some(first.equipment_id.clone()),
        statuses: vec![],
        limit: 1,
        before: None,
    };
    let page = registry.list(query.clone()).await.unwrap();
    let newest = if (page.tasks[0].created_at, page.tasks[0].id) == (0, first.task_id) {
        first.task_id
    } else {
        page.tasks[0].id
    };
    let rest = registry
        .list(TaskQuery {
            before: page.next,
            ..query
        })
        .await
        .unwrap();
    let mut both = vec![newest, rest.tasks[0].id];
    both.sort();
    let mut expected = vec![first.task_id, second.task_id];
    expected.sort();
    assert_eq!(both, expected);
    assert!(rest.next.is_none());
}

#[tokio::test]
async fn a_failed_task_is_retried_once_as_a_new_task_and_an_undo_takes_it_back() {
    let registry = registry().await;
    let task = created(&registry, "abc123").await;
    let device = task.equipment_id.clone();
    registry.begin(&task, false).await.unwrap();
    let failed = Outcome::Failed {
        attempts: 1,
        reason: "device said no".into(),
    };
    registry.finish(&task, failed).await.unwrap();
    let other = EquipmentId::parse("zzz999").unwrap();
    assert_eq!(
        registry.retry(task.task_id, other, None, None).await.unwrap(),
        Retry::NotFound
    );

    let Retry::Created(retry) = registry.retry(task.task_id, device.clone(), None, None).await.unwrap() else {
        panic!("a failed task can be retried");
    };
    assert_ne!(retry.task_id, task.task_id);
    assert_eq!(retry.request, task.request, "the same request, parameters included");
    let old = registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!((old.status, old.retried_as), (TaskStatus::Failed, Some(retry.task_id)));
    assert_eq!(
        registry.get(retry.task_id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    assert_eq!(
        registry.retry(task.task_id, device.clone(), None, None).await.unwrap(),
        Retry::AlreadyRetried(retry.task_id)
    );

    registry.undo_retry(task.task_id, retry.task_id).await.unwrap();
    assert!(registry.get(retry.task_id).await.unwrap().is_none());
    assert!(matches!(
        registry.retry(task.task_id, device.clone(), None, None).await.unwrap(),
        Retry::Created(_)
    ));

    let done = created(&registry, "abc123").await;
    registry.begin(&done, false).await.unwrap();
    registry
        .finish(&done, Outcome::Completed { attempts: 1 })
        .await
        .unwrap();
    assert_eq!(
        registry.retry(done.task_id, device, None, None).await.unwrap(),
        Retry::NotFailed(TaskStatus::Completed)
    );
}

/// Starts the task as another instance would, in the moment between the registry's read and its
/// cancel's write, and refuses that write as PostgreSQL does: a conflict. Says whether it raced.
fn started_elsewhere() -> (Arc<impl TaskStore>, Arc<AtomicBool>) {
    let raced = Arc::new(AtomicBool::new(false));
    let once = raced.clone();
    let store = crate::memory::Intercepted::new(move |inner, ops| {
        let [WriteOp::Put(record)] = ops else { return None };
        if record.status != TaskStatus::Cancelled || once.swap(true, Ordering::SeqCst) {
            return None;
        }
        let mut started = inner.get(record.id).ok()?.expect("the task is stored");
        started.status = TaskStatus::Running;
        inner.put(&started).ok()?;
        Some(Err(StoreError::Conflict(
            "task was changed by another instance meanwhile".into(),
        )))
    });
    (Arc::new(store), raced)
}

#[tokio::test]
async fn a_cancel_that_loses_to_a_start_elsewhere_is_answered_as_running() {
    let (store, raced) = started_elsewhere();
    let (actor, _) = Actor::spawn(None, Registry, store.clone() as Arc<dyn TaskStore>)
        .await
        .unwrap();
    let slot = Slot::default();
    slot.set(actor);
    let registry = RegistryHandle::new(slot, store.clone());
    let task = created(&registry, "abc123").await;

    let answer = registry.cancel(task.task_id, task.equipment_id.clone(), None).await;

    assert_eq!(
        answer,
        Ok(Cancel::Running),
        "the cancel reads the task again after the conflict"
    );
    assert!(raced.load(Ordering::SeqCst));
    assert_eq!(store.get(task.task_id).unwrap().unwrap().status, TaskStatus::Running);
}
