//! How everyone else talks to the registry: a handle that finds the current actor (it may have
//! been restarted) and bounds every call, and the registry as the workers' status sink.

use super::reads::Reads;
use super::{restarting, Audit, BeginAsk, Cancel, Created, RegistryMsg, Reply, Retry, Watch};
use crate::ports::{Begin, SinkError, StatusSink, StoreError, TaskReader};
use crate::slot::Slot;
use crate::{
    AuditPage, AuditQuery, AuditRecord, EquipmentId, Outcome, StatusUpdate, TaskId, TaskMessage, TaskPage, TaskQuery,
    TaskRecord,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// How many times a change is decided when other instances keep changing the same task first.
const CONFLICT_TRIES: u32 = 3;

#[derive(Clone)]
pub struct RegistryHandle {
    pub(super) slot: Slot<RegistryMsg>,
    timeout: Duration,
    /// Reads do not pass through the registry: only changes, waits and its own notes do.
    reads: Reads,
}

impl RegistryHandle {
    /// `store` reads the registry's store directly (the store itself, or a view of it with
    /// connections of its own).
    pub fn new(slot: Slot<RegistryMsg>, store: Arc<dyn TaskReader>) -> Self {
        Self {
            slot,
            timeout: Duration::from_secs(10),
            reads: Reads::new(store),
        }
    }

    async fn begin_as(&self, task: &TaskMessage, ask: BeginAsk) -> Result<Begin, SinkError> {
        self.ask(|reply| RegistryMsg::Begin(task.clone(), ask, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    /// Puts the request in the registry's mailbox now, and returns the bounded wait for its answer.
    fn send<T: Send + 'static>(
        &self,
        build: impl FnOnce(Reply<T>) -> RegistryMsg,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = match self.slot.get() {
            Some(actor) => actor.cast(build(reply.into())).map_err(|_| restarting()),
            None => Err(StoreError::Unavailable("the registry is not running".into())),
        };
        let timeout = self.timeout;
        async move {
            sent?;
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(restarting()),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "the registry did not answer within {timeout:?}"
                ))),
            }
        }
    }

    /// Asks, and asks again when another instance changed the task first: the registry then reads
    /// the task anew and answers for what it has become (a cancel that lost to a start is `Running`).
    async fn ask<T: Send + 'static>(&self, build: impl Fn(Reply<T>) -> RegistryMsg) -> Result<T, StoreError> {
        let mut tries = 1;
        loop {
            match self.send(&build).await {
                Err(conflict) if conflict.is_conflict() && tries < CONFLICT_TRIES => tries += 1,
                answer => return answer,
            }
        }
    }

    /// Stores a new task, with no audit record (a task adopted from the queue, a test's).
    pub async fn create(&self, record: TaskRecord) -> Result<(), StoreError> {
        self.start_create(record, None).await
    }

    /// Tells the store that the queue confirmed a task already stored; nothing to wait for (a
    /// lost note only means the outbox relay publishes the task once more).
    pub fn published(&self, id: TaskId) {
        if let Some(actor) = self.slot.get() {
            let _ = actor.cast(RegistryMsg::Published(id));
        }
    }

    /// Puts the create in the registry's mailbox now and returns the wait for its answer, so the
    /// caller can publish the task while the create is being made durable: any later request
    /// about the task (a worker's `Begin`) queues behind the create.
    pub fn start_create(
        &self,
        record: TaskRecord,
        audit: Audit,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> {
        self.send(|reply| RegistryMsg::Create(record, audit, reply))
    }

    pub async fn create_with_key(&self, record: TaskRecord, key: String, audit: Audit) -> Result<Created, StoreError> {
        self.ask(|reply| RegistryMsg::CreateWithKey(record.clone(), key.clone(), audit.clone(), reply))
            .await
    }

    /// Appends a record to the audit trail; Ok once it is durable.
    pub async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        let record = Box::new(record);
        self.ask(|reply| RegistryMsg::Record(record.clone(), reply)).await
    }

    /// A page of the audit trail, read around the registry like tasks.
    pub async fn audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        self.reads.audit(query).await
    }

    pub async fn get(&self, id: TaskId) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        self.reads.get(id).await
    }

    /// Forgets a task that was never queued, and the idempotency key that named it, so a retry
    /// with the same key creates the task anew.
    pub async fn remove(&self, id: TaskId, key: Option<String>) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::Remove(id, key.clone(), reply)).await
    }

    pub async fn apply(&self, update: StatusUpdate) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::Apply(update.clone(), reply)).await
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

    pub async fn cancel(&self, id: TaskId, equipment: EquipmentId, audit: Audit) -> Result<Cancel, StoreError> {
        self.ask(|reply| RegistryMsg::Cancel(id, equipment.clone(), audit.clone(), reply))
            .await
    }

    /// The task now and, unless it is final, a receiver for its final record: no polling.
    pub async fn watch(&self, id: TaskId) -> Result<Option<Watch>, StoreError> {
        self.ask(|reply| RegistryMsg::Watch(id, reply)).await
    }

    /// Retries a failed task; the new task is `requested_by` that name.
    pub async fn retry(
        &self,
        id: TaskId,
        equipment: EquipmentId,
        requested_by: Option<String>,
        audit: Audit,
    ) -> Result<Retry, StoreError> {
        self.ask(|reply| RegistryMsg::Retry(id, equipment.clone(), requested_by.clone(), audit.clone(), reply))
            .await
    }

    pub async fn undo_retry(&self, id: TaskId, new_task: TaskId) -> Result<(), StoreError> {
        self.ask(|reply| RegistryMsg::UndoRetry(id, new_task, reply)).await
    }

    pub async fn list(&self, query: TaskQuery) -> Result<TaskPage, StoreError> {
        self.reads.list(query).await
    }
}

#[async_trait]
impl StatusSink for RegistryHandle {
    async fn begin(&self, task: &TaskMessage, redelivered: bool) -> Result<Begin, SinkError> {
        let ask = BeginAsk {
            redelivered,
            adopt_unknown: false,
        };
        self.begin_as(task, ask).await
    }

    async fn begin_adopting(&self, task: &TaskMessage, redelivered: bool) -> Result<Begin, SinkError> {
        let ask = BeginAsk {
            redelivered,
            adopt_unknown: true,
        };
        self.begin_as(task, ask).await
    }

    async fn renew(&self, task: &TaskMessage) -> Result<(), SinkError> {
        let id = task.task_id;
        self.ask(|reply| RegistryMsg::Renew(id, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn next_attempt(&self, task: &TaskMessage, local: u32) -> Result<u32, SinkError> {
        let id = task.task_id;
        self.ask(|reply| RegistryMsg::NextAttempt(id, local, reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn finish(&self, task: &TaskMessage, outcome: Outcome) -> Result<(), SinkError> {
        self.ask(|reply| RegistryMsg::Finish(task.clone(), outcome.clone(), reply))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}
