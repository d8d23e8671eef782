//! Ports: what the actors need from the outside world. Adapters live in the `cpe-config` crate;
//! in-memory ones live in [`crate::memory`].

use crate::{
    AuditPage, AuditQuery, AuditRecord, ConfigRequest, EquipmentId, Outcome, TaskId, TaskMessage, TaskPage, TaskQuery,
    TaskRecord, TaskStatus,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// What a read outside the registry needs (a status, a listing): short and synchronous. A store
/// shared by instances may serve these on connections of their own (see the PostgreSQL store).
pub trait TaskReader: Send + Sync + 'static {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// One page of tasks, newest first, read from indexes so a page costs about the same however
    /// many tasks are kept.
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError>;
    /// One page of the audit trail, newest first.
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
}

/// Durable (or not) home of task records. Reads are short and synchronous; writes go through
/// [`TaskStore::write_batch`], so many changes can share one durable commit (one fsync).
pub trait TaskStore: TaskReader {
    /// Applies every change in one transaction: durable when it returns, all or nothing.
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError>;
    /// Records that are neither completed nor failed, oldest first: the work to resume after a restart.
    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// Removes final records last updated before `cutoff_millis`, and idempotency keys and audit
    /// records created before it; returns how many task records went.
    fn remove_final_before(&self, cutoff_millis: u64) -> Result<usize, StoreError>;
    /// The task an idempotency key was first used for.
    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError>;
    /// How many tasks are kept in each status, and when the oldest queued one was created: kept up
    /// to date by every write, so a metrics scrape costs the same however many tasks are kept.
    fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// For a store shared by several instances: calls `listener` with each task another instance
    /// made final (and with None after a gap in which some may have been missed). A store only this
    /// process writes has nothing to announce.
    fn listen_for_finals(&self, listener: FinalListener) {
        let _ = listener;
    }

    /// The queue confirmed these tasks: a store that relays unpublished tasks (an outbox) stops
    /// watching them. Must not block: it is called on the request path.
    fn mark_published(&self, ids: &[TaskId]) {
        let _ = ids;
    }

    /// Stores a new record, or replaces one with the same id.
    fn put(&self, record: &TaskRecord) -> Result<(), StoreError> {
        self.write_batch(&[WriteOp::Put(record.clone())])
    }

    fn remove(&self, id: TaskId) -> Result<(), StoreError> {
        self.write_batch(&[WriteOp::Remove(id)])
    }

    /// Stores a new record together with its idempotency key, in one durable write.
    fn put_with_key(&self, record: &TaskRecord, key: &str, entry: &IdempotencyEntry) -> Result<(), StoreError> {
        self.write_batch(&[WriteOp::PutWithKey(record.clone(), key.to_owned(), *entry)])
    }
}

/// Told of tasks made final elsewhere: `Some(task)`, or None when news may have been missed.
pub type FinalListener = Arc<dyn Fn(Option<TaskId>) + Send + Sync>;

/// The store's tallies, read by a metrics scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Tasks per status, in the order of [`TaskStatus::ALL`].
    pub by_status: [u64; 5],
    /// Milliseconds since the Unix epoch at which the oldest queued task was created.
    pub oldest_queued: Option<u64>,
}

impl StoreCounts {
    pub fn of(&self, status: TaskStatus) -> u64 {
        self.by_status[status as usize]
    }
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(TaskRecord),
    PutWithKey(TaskRecord, String, IdempotencyEntry),
    Remove(TaskId),
    /// Removes a task and the idempotency key that named it.
    RemoveWithKey(TaskId, String),
    /// Several changes that stand or fall together (a retry: the new task and the failed one
    /// that names it).
    All(Vec<WriteOp>),
    /// Appends a record to the audit trail; the store gives it its id.
    Audit(Box<AuditRecord>),
}

/// What an `Idempotency-Key` points to: the task, and a fingerprint of the request that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyEntry {
    pub task_id: TaskId,
    pub fingerprint: u64,
    /// Milliseconds since the Unix epoch; the key is kept for the retention period after it.
    pub created_at: u64,
}

/// Why the store did not answer or change: callers branch on the kind, the message says the rest.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be read or written now (unreachable, closed, a record it cannot decode):
    /// the caller answers 503 and may try again later.
    #[error("task store: {0}")]
    Unavailable(String),
    /// Another instance changed the same task or key first, so this change was not made: the
    /// normal end of a race, answered by reading again and deciding again.
    #[error("task store: {0}")]
    Conflict(String),
}

impl StoreError {
    /// What went wrong, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Unavailable(message) | Self::Conflict(message) => message,
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

/// Publishes a task on the queue; returns only once the queue has taken responsibility (broker confirm).
#[async_trait]
pub trait TaskPublisher: Send + Sync + 'static {
    async fn publish(&self, task: &TaskMessage) -> Result<(), QueueError>;

    /// How many messages wait on the queue, not yet delivered; None when the queue cannot tell.
    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        Ok(None)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// The three ways a delivery can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// Puts the message back on the queue to be delivered again.
    Requeue,
    /// Rejects the message for good: it goes to the dead-letter queue.
    DeadLetter,
}

/// Ends a delivery: one verb, so each queue adapter implements one thing.
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    /// Only the first settlement of a delivery counts; later ones are no-ops, as a broker's
    /// delivery tag is settled once.
    async fn settle(&self, how: Settle) -> Result<(), QueueError>;
}

/// One message taken from a queue, not yet acknowledged.
#[derive(Clone)]
pub struct Delivery {
    pub body: Arc<[u8]>,
    pub redelivered: bool,
    pub acker: Arc<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.body.len())
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

/// A live subscription: deliveries until the connection ends (`None`).
#[async_trait]
pub trait DeliveryStream: Send + 'static {
    async fn next(&mut self) -> Option<Delivery>;
}

/// Opens subscriptions to one queue; called again after a subscription ends.
#[async_trait]
pub trait QueueSource: Send + Sync + 'static {
    fn describe(&self) -> String;
    async fn subscribe(&self) -> Result<Box<dyn DeliveryStream>, QueueError>;
}

/// Takes deliveries from a consumer. Must not block: it hands the delivery on and returns.
pub trait DeliveryHandler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery);
}

/// Configures one device: the call to Service A.
#[async_trait]
pub trait Provisioner: Send + Sync + 'static {
    async fn configure(&self, equipment: &EquipmentId, request: &ConfigRequest) -> Result<(), ProvisionError>;
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProvisionError {
    /// Service A does not know the device: retrying cannot help.
    #[error("Service A answered 404: equipment not found")]
    NotFound,
    /// `body` is already cut, escaped and stripped of the request's parameter values by the adapter.
    #[error("Service A answered HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        /// The answer's `Retry-After` (429 and 503 only): wait this long before the next call.
        retry_after: Option<Duration>,
    },
    /// A redirect is never followed: it would re-send the parameters (passwords included) elsewhere.
    #[error("Service A answered HTTP {0}, a redirect: not followed")]
    Redirect(u16),
    /// A 2xx whose body is not the contract's success answer: the device's state is unknown.
    #[error("Service A answered HTTP {status} without the success answer: {detail}")]
    Unexpected { status: u16, detail: String },
    #[error("could not reach Service A: {0}")]
    Transport(String),
    #[error("Service A did not answer within {0:?}")]
    Timeout(Duration),
    /// The call panicked (a bug in this program, set off by something in the answer). The panic's
    /// message is not kept: it may quote the answer, and with it the request's secrets.
    #[error("the call to Service A panicked")]
    Panicked,
}

impl ProvisionError {
    /// Transport errors, timeouts, 5xx and 429 answers, unreadable successes and panics may pass
    /// on another try (bounded by the attempt limit); a 404, another 4xx or a redirect will not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NotFound | Self::Redirect(_) => false,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Unexpected { .. } | Self::Transport(_) | Self::Timeout(_) | Self::Panicked => true,
        }
    }

    /// How long Service A asked us to wait before calling again, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a worker should do with a task it is about to run. `attempt` is the number of the call
/// about to be made, counted durably before it (calls started by earlier deliveries included),
/// so a call that crashes the worker or the process still counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    Run {
        attempt: u32,
    },
    /// The task was running before (its worker or process died, or it was requeued mid-call):
    /// that call may still be going on at the device, started no later than `since` (ms since the
    /// epoch). Wait out its deadline first, so one device is never configured twice at once.
    Resume {
        since: u64,
        attempt: u32,
    },
    /// Already completed or failed: acknowledge without calling Service A again.
    AlreadyFinal,
    /// The message disagrees with the stored task (another device or request under its id): it
    /// is dead-lettered and changes nothing. The string says how it disagrees.
    Refused(String),
    /// The store has never seen the task, and adopting it was not asked for: dead-lettered once a
    /// create still on its way to the store had time to arrive.
    Unknown,
}

/// Where workers record progress: the registry in one process, the results queue across processes.
#[async_trait]
pub trait StatusSink: Send + Sync + 'static {
    /// Marks the task running and counts the coming call, in one durable write. `redelivered` is
    /// the queue's flag: a sink that cannot see task state must assume the worst.
    async fn begin(&self, task: &TaskMessage, redelivered: bool) -> Result<Begin, SinkError>;
    /// As [`StatusSink::begin`], and a task the store has never seen is adopted from its message
    /// (run beside another publisher of the queue). A sink that cannot see task state adopts always.
    async fn begin_adopting(&self, task: &TaskMessage, redelivered: bool) -> Result<Begin, SinkError> {
        self.begin(task, redelivered).await
    }
    /// The next call starts now (after waiting out an earlier one): the task's lease moves on.
    async fn renew(&self, task: &TaskMessage) -> Result<(), SinkError>;
    /// A retry is about to call Service A again: counts it durably and moves the lease on; returns
    /// the number of that call. `local` is the worker's own count, for a sink that cannot read
    /// the durable one.
    async fn next_attempt(&self, task: &TaskMessage, local: u32) -> Result<u32, SinkError>;
    async fn finish(&self, task: &TaskMessage, outcome: Outcome) -> Result<(), SinkError>;
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("could not record task status: {0}")]
pub struct SinkError(pub String);

/// One configuration at a time per device across instances that share a store, in acceptance
/// order: the database decides, not the order in which the queue delivers.
#[async_trait]
pub trait DeviceLeases: Send + Sync + 'static {
    /// Takes the task's device for `ttl`, unless an older task of the device is unfinished or
    /// another holder's lease is live (a lease whose task is final is over, whatever its expiry).
    /// A task the store has never seen is [`Acquired::Unknown`], unless `adopt`: then it takes the
    /// device outside the order (it has no place in it).
    async fn acquire(&self, task: &TaskMessage, ttl: Duration, adopt: bool) -> Result<Acquired, LeaseError>;
    /// Extends a lease still held; [`LeaseError::Lost`] once another holder took the device.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), LeaseError>;
    /// Gives the device up for the next task (a lost lease is left to its new holder).
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError>;
}

/// A held lease. `fence` grows by one with every new holder of the device, so a holder that lost
/// the device can no longer renew or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub equipment_id: EquipmentId,
    pub task_id: TaskId,
    pub fence: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Held(Lease),
    /// The task is final already: nothing to call.
    Final,
    /// An older task of the device is unfinished: it runs first, and the write that makes it
    /// final makes this one due, to be handed to the queue again.
    Behind,
    /// The store has never seen the task (its create may not be committed yet).
    Unknown,
    /// Another holder's lease is live; `same_task` when it holds this very task (a duplicate
    /// message, or the redelivery of a holder that died and whose lease has not run out yet).
    Busy {
        same_task: bool,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    #[error("the device lease was taken by another holder")]
    Lost,
    #[error("device leases unavailable: {0}")]
    Unavailable(String),
}
