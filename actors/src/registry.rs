//! The registry actor: the single owner of task state. Service B and the workers ask it; it asks the store.

use crate::ports::{Begin, IdempotencyEntry, SinkError, StatusSink, StoreError, TaskStore};
use crate::slot::Slot;
use crate::{Outcome, StatusUpdate, TaskId, TaskMessage, TaskRecord, TaskStatus};
use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

type Reply<T> = RpcReplyPort<Result<T, StoreError>>;

pub enum RegistryMsg {
    Create(TaskRecord, Reply<()>),
    /// Create under an `Idempotency-Key`: the key's first task wins for the retention period.
    CreateWithKey(TaskRecord, String, Reply<Created>),
    Get(TaskId, Reply<Option<TaskRecord>>),
    /// Forget a task that could not be queued (its creator answered 503).
    Remove(TaskId, Reply<()>),
    /// A worker takes the task: running, unless it is final already.
    Begin(TaskMessage, Reply<Begin>),
    Renew(TaskId, Reply<()>),
    Finish(TaskMessage, Outcome, Reply<()>),
    /// A status change reported by a worker in another process.
    Apply(StatusUpdate, Reply<()>),
    Unfinished(Reply<Vec<TaskRecord>>),
    /// Fails running tasks whose lease ran out: last renewed before the cutoff (milliseconds).
    ExpireLeases(u64, Reply<usize>),
    /// Drops final tasks last updated before the cutoff (milliseconds since the epoch).
    Sweep(u64, Reply<usize>),
}

/// What a create under an idempotency key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// The key was used before with the same request: this is that task.
    Existing(TaskId),
    /// The key was used before with another request.
    Conflict,
}

/// The registry holds no state of its own beyond the store, so a restart loses nothing.
pub struct Registry;

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = Arc<dyn TaskStore>;
    type Arguments = Arc<dyn TaskStore>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        store: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(store)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A closed reply port means the caller gave up waiting; there is nobody left to tell.
        match msg {
            RegistryMsg::Create(record, reply) => drop(reply.send(store.put(&record))),
            RegistryMsg::CreateWithKey(record, key, reply) => {
                drop(reply.send(create_with_key(store.as_ref(), &record, &key)))
            }
            RegistryMsg::Get(id, reply) => drop(reply.send(store.get(id))),
            RegistryMsg::Remove(id, reply) => drop(reply.send(store.remove(id))),
            RegistryMsg::Begin(task, reply) => drop(reply.send(begin(store.as_ref(), &task))),
            RegistryMsg::Renew(id, reply) => drop(reply.send(renew(store.as_ref(), id))),
            RegistryMsg::Finish(task, outcome, reply) => drop(reply.send(finish(store.as_ref(), &task, &outcome))),
            RegistryMsg::Apply(update, reply) => drop(reply.send(apply(store.as_ref(), update))),
            RegistryMsg::Unfinished(reply) => drop(reply.send(store.unfinished())),
            RegistryMsg::Sweep(cutoff, reply) => drop(reply.send(store.remove_final_before(cutoff))),
            RegistryMsg::ExpireLeases(cutoff, reply) => drop(reply.send(expire_leases(store.as_ref(), cutoff))),
        }
        Ok(())
    }
}

fn create_with_key(store: &dyn TaskStore, record: &TaskRecord, key: &str) -> Result<Created, StoreError> {
    let fingerprint = record.request.fingerprint(&record.equipment_id);
    if let Some(entry) = store.idempotency(key)? {
        return Ok(if entry.fingerprint == fingerprint {
            Created::Existing(entry.task_id)
        } else {
            Created::Conflict
        });
    }
    let entry = IdempotencyEntry {
        task_id: record.id,
        fingerprint,
        created_at: record.created_at,
    };
    store.put_with_key(record, key, &entry)?;
    Ok(Created::New)
}

/// A task the registry has never seen (published by another system) is adopted from its message.
fn load_or_adopt(store: &dyn TaskStore, task: &TaskMessage) -> Result<TaskRecord, StoreError> {
    Ok(store
        .get(task.task_id)?
        .unwrap_or_else(|| TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone())))
}

fn begin(store: &dyn TaskStore, task: &TaskMessage) -> Result<Begin, StoreError> {
    let mut record = load_or_adopt(store, task)?;
    if record.status.is_final() {
        return Ok(Begin::AlreadyFinal);
    }
    let begin = if record.status == TaskStatus::Running {
        let since = record.updated_at;
        record.renew();
        Begin::Resume { since }
    } else {
        record.move_to(TaskStatus::Running);
        Begin::Run
    };
    store.put(&record)?;
    Ok(begin)
}

fn renew(store: &dyn TaskStore, id: TaskId) -> Result<(), StoreError> {
    match store.get(id)? {
        Some(mut record) if record.status == TaskStatus::Running => {
            record.renew();
            store.put(&record)
        }
        _ => Ok(()),
    }
}

/// A running task nobody finished within its lease (its worker process died and no redelivery
/// came) fails with that reason, so it never reads "running" forever.
fn expire_leases(store: &dyn TaskStore, cutoff: u64) -> Result<usize, StoreError> {
    let mut expired = 0;
    for mut record in store.unfinished()? {
        if record.status != TaskStatus::Running || record.updated_at >= cutoff {
            continue;
        }
        let reason = "lease expired: no worker reported an outcome in time".to_owned();
        if record.finish(&Outcome::Failed {
            attempts: record.attempts,
            reason,
        }) {
            tracing::warn!(task_id = %record.id, equipment_id = %record.equipment_id, "task lease expired; failed");
            store.put(&record)?;
            expired += 1;
        }
    }
    Ok(expired)
}

fn finish(store: &dyn TaskStore, task: &TaskMessage, outcome: &Outcome) -> Result<(), StoreError> {
    let mut record = load_or_adopt(store, task)?;
    if record.finish(outcome) {
        store.put(&record)?;
    } else {
        tracing::warn!(task_id = %task.task_id, status = ?record.status, "ignored a second outcome for a final task");
    }
    Ok(())
}

fn apply(store: &dyn TaskStore, update: StatusUpdate) -> Result<(), StoreError> {
    let (task_id, equipment_id, outcome) = match update {
        StatusUpdate::Running { task_id, equipment_id } => (task_id, equipment_id, None),
        StatusUpdate::Finished {
            task_id,
            equipment_id,
            outcome,
        } => (task_id, equipment_id, Some(outcome)),
    };
    let Some(mut record) = store.get(task_id)? else {
        tracing::warn!(%task_id, "status update for a task this registry does not hold");
        return Ok(());
    };
    if record.equipment_id != equipment_id {
        tracing::warn!(%task_id, "status update names another equipment; ignored");
        return Ok(());
    }
    let changed = match &outcome {
        Some(outcome) => record.finish(outcome),
        None if record.status == TaskStatus::Running => {
            record.renew();
            true
        }
        None => record.move_to(TaskStatus::Running),
    };
    if changed {
        store.put(&record)?;
    }
    Ok(())
}

/// How everyone else talks to the registry: finds the current actor and bounds every call.
#[derive(Clone)]
pub struct RegistryHandle {
    slot: Slot<RegistryMsg>,
    timeout: Duration,
}

impl RegistryHandle {
    pub fn new(slot: Slot<RegistryMsg>) -> Self {
        Self {
            slot,
            timeout: Duration::from_secs(10),
        }
    }

    async fn ask<T: Send + 'static>(&self, build: impl FnOnce(Reply<T>) -> RegistryMsg) -> Result<T, StoreError> {
        let actor = self
            .slot
            .get()
            .ok_or_else(|| StoreError("the registry is not running".into()))?;
        match actor.call(build, Some(self.timeout)).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(ractor::rpc::CallResult::Timeout) => Err(StoreError(format!(
                "the registry did not answer within {:?}",
                self.timeout
            ))),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(StoreError("the registry is restarting".into())),
        }
    }

    pub async fn create(&self, record: TaskRecord) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::Create(record, reply)).await
    }

    pub async fn create_with_key(&self, record: TaskRecord, key: String) -> Result<Created, StoreError> {
        self.ask(|reply| RegistryMsg::CreateWithKey(record, key, reply)).await
    }

    pub async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.ask(|reply| RegistryMsg::Get(id, reply)).await
    }

    pub async fn remove(&self, id: TaskId) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::Remove(id, reply)).await
    }

    pub async fn apply(&self, update: StatusUpdate) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::Apply(update, reply)).await
    }

    pub async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.ask(RegistryMsg::Unfinished).await
    }

    pub async fn expire_leases(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        self.ask(|reply| RegistryMsg::ExpireLeases(cutoff_millis, reply)).await
    }

    pub async fn sweep(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        self.ask(|reply| RegistryMsg::Sweep(cutoff_millis, reply)).await
    }
}

#[async_trait]
impl StatusSink for RegistryHandle {
    async fn begin(&self, task: &TaskMessage, _redelivered: bool) -> Result<Begin, SinkError> {
        let task = task.clone();
        self.ask(|reply| RegistryMsg::Begin(task, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn renew(&self, task: &TaskMessage) -> Result<(), SinkError> {
        let id = task.task_id;
        self.ask(|reply| RegistryMsg::Renew(id, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn finish(&self, task: &TaskMessage, outcome: Outcome) -> Result<(), SinkError> {
        let task = task.clone();
        self.ask(|reply| RegistryMsg::Finish(task, outcome, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::{ConfigRequest, EquipmentId};

    async fn registry() -> (RegistryHandle, Arc<MemoryStore>, ActorRef<RegistryMsg>) {
        let store = Arc::new(MemoryStore::default());
        let (actor, _) = Actor::spawn(None, Registry, store.clone() as Arc<dyn TaskStore>)
            .await
            .unwrap();
        let slot = Slot::default();
        slot.set(actor.clone());
        (RegistryHandle::new(slot), store, actor)
    }

    fn message(device: &str) -> TaskMessage {
        TaskMessage {
            task_id: TaskId::new(),
            equipment_id: EquipmentId::parse(device).unwrap(),
            request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "p"}}"#).unwrap(),
        }
    }

    fn record(task: &TaskMessage) -> TaskRecord {
        TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone())
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
        assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::Run);
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
    async fn a_task_from_another_publisher_is_adopted() {
        let (registry, _, _) = registry().await;
        let task = message("abc123");
        assert_eq!(registry.begin(&task, false).await.unwrap(), Begin::Run);
        assert_eq!(
            registry.get(task.task_id).await.unwrap().unwrap().status,
            TaskStatus::Running
        );
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

    #[tokio::test]
    async fn state_outlives_a_registry_restart() {
        let (registry, store, actor) = registry().await;
        let task = message("abc123");
        registry.create(record(&task)).await.unwrap();
        actor.kill_and_wait(None).await.unwrap();
        assert!(
            registry.get(task.task_id).await.is_err(),
            "a dead registry answers with an error, not a hang"
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
        let created = registry.create_with_key(record(&first), "key-1".into()).await.unwrap();
        assert_eq!(created, Created::New);
        let again = TaskMessage {
            task_id: TaskId::new(),
            ..first.clone()
        };
        assert_eq!(
            registry.create_with_key(record(&again), "key-1".into()).await.unwrap(),
            Created::Existing(first.task_id)
        );
        assert!(
            registry.get(again.task_id).await.unwrap().is_none(),
            "no second task is stored"
        );
        let other_device = message("abc124");
        assert_eq!(
            registry
                .create_with_key(record(&other_device), "key-1".into())
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
        assert!(failed.last_error.unwrap().contains("lease"));
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
}
