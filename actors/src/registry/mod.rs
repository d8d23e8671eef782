//! The registry actor: the single owner of task state. Service B and the workers ask it; it asks
//! the store. Changes to different tasks are in flight together and share durable commits (see
//! [`GroupCommit`]); requests for a task whose last change is not yet durable wait their turn, so
//! every decision reads the task's latest state.

mod handle;
mod reads;
mod transitions;

pub use handle::RegistryHandle;
pub use transitions::BeginAsk;

use crate::group_commit::GroupCommit;
use crate::ports::{Begin, StoreError, TaskStore, WriteOp};
use crate::slot::Slot;
use crate::supervisor::Spec;
use crate::{AuditRecord, EquipmentId, Outcome, StatusUpdate, TaskId, TaskMessage, TaskRecord, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;
use transitions::Decision;

type Reply<T> = RpcReplyPort<Result<T, StoreError>>;

/// A decision, or the store's error when what it needed could not be read.
type Plan<T> = Result<Decision<T>, StoreError>;

/// The audit record of a change, drafted by whoever asked for it: written in the same store write
/// as the change, with the tasks the change wrote, and not at all when nothing changes.
pub type Audit = Option<Box<AuditRecord>>;

pub enum RegistryMsg {
    Create(TaskRecord, Audit, Reply<()>),
    /// Create under an `Idempotency-Key`: the key's first task wins for the retention period.
    CreateWithKey(TaskRecord, String, Audit, Reply<Created>),
    /// Forget a task that could not be queued (its creator answered 503), and its idempotency key.
    Remove(TaskId, Option<String>, Reply<()>),
    /// A worker takes the task: running, unless it is final already or the message does not
    /// describe the stored task.
    Begin(TaskMessage, BeginAsk, Reply<Begin>),
    Renew(TaskId, Reply<()>),
    /// A retry is about to call Service A: count it. The number is the worker's own count.
    NextAttempt(TaskId, u32, Reply<u32>),
    Finish(TaskMessage, Outcome, Reply<()>),
    /// A status change reported by a worker in another process.
    Apply(StatusUpdate, Reply<()>),
    Unfinished(Reply<Vec<TaskRecord>>),
    /// Fails running tasks whose lease ran out: last renewed before the cutoff (milliseconds).
    ExpireLeases(u64, Reply<usize>),
    /// Drops final tasks last updated before the cutoff (milliseconds since the epoch).
    Sweep(u64, Reply<usize>),
    /// A change reached the store (or failed): the task, and its key, take requests again.
    Settled(TaskId, Option<String>),
    /// Cancels a queued task of this device.
    Cancel(TaskId, EquipmentId, Audit, Reply<Cancel>),
    /// The task's record, and, unless it is final, a receiver that gets it once it is.
    Watch(TaskId, Reply<Option<Watch>>),
    /// A change that made a task final is durable: its watchers are told.
    Finalized(TaskRecord),
    /// The queue confirmed this task (for a store that relays unpublished tasks).
    Published(TaskId),
    /// Another instance sharing the store made this task final (None: some such news may have been
    /// missed, so every watched task is read again).
    FinalElsewhere(Option<TaskId>),
    /// Runs a failed task of this device again as a new task, requested by the name given.
    Retry(TaskId, EquipmentId, Option<String>, Audit, Reply<Retry>),
    /// Appends a record to the audit trail on its own (a refused write, a bulk action's summary).
    Record(Box<AuditRecord>, Reply<()>),
    /// The retry's new task (second id) could not be queued: forget it.
    UndoRetry(TaskId, TaskId, Reply<()>),
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// The new task, stored: publish it.
    Created(TaskMessage),
    /// No such task, or one of another device.
    NotFound,
    NotFailed(TaskStatus),
    AlreadyRetried(TaskId),
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    Cancelled,
    /// No such task, or one of another device.
    NotFound,
    Running,
    Final(TaskStatus),
}

/// A watched task: its record now, and the final record later when it is not final yet.
#[derive(Debug)]
pub struct Watch {
    pub now: TaskRecord,
    /// Shared, not copied, among the task's watchers; a pointer in each waiter's channel.
    pub finished: Option<tokio::sync::oneshot::Receiver<Arc<TaskRecord>>>,
}

impl RegistryMsg {
    /// The task (and idempotency key) a change request is about; None for reads and sweeps.
    fn target(&self) -> Option<(TaskId, Option<&str>)> {
        match self {
            Self::Create(record, ..) => Some((record.id, None)),
            Self::CreateWithKey(record, key, ..) => Some((record.id, Some(key))),
            Self::Remove(id, key, _) => Some((*id, key.as_deref())),
            Self::Renew(id, _) | Self::NextAttempt(id, _, _) => Some((*id, None)),
            Self::Begin(task, _, _) | Self::Finish(task, _, _) => Some((task.task_id, None)),
            Self::Apply(update, _) => Some((update_task(update), None)),
            // Behind a change in flight, so a watcher never misses the change that made it final.
            Self::Cancel(id, ..) | Self::Watch(id, _) | Self::Retry(id, ..) | Self::UndoRetry(id, ..) => {
                Some((*id, None))
            }
            _ => None,
        }
    }
}

fn restarting() -> StoreError {
    StoreError::Unavailable("the registry is restarting".into())
}

/// The answer of a change whose writer thread went away (the registry stopped) before committing it.
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

fn update_task(update: &StatusUpdate) -> TaskId {
    match update {
        StatusUpdate::Running { task_id, .. } | StatusUpdate::Finished { task_id, .. } => *task_id,
    }
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

/// The registry holds no task state of its own beyond the store, so a restart loses nothing.
#[derive(Clone)]
pub struct Registry;

/// The supervisor's spec: each (re)start opens the same store and is published in `slot`.
pub fn spec(store: Arc<dyn TaskStore>, slot: Slot<RegistryMsg>) -> Spec<Registry> {
    Spec::new("registry", Registry, move || store.clone()).published_in(slot)
}

pub struct RegistryState {
    store: Arc<dyn TaskStore>,
    writer: GroupCommit,
    /// Tasks and keys with a change on its way to the store.
    busy: HashSet<TaskId>,
    busy_keys: HashSet<String>,
    /// Requests for busy tasks, in arrival order.
    waiting: VecDeque<RegistryMsg>,
    /// Long-poll waiters of unfinished tasks, told when the task becomes final.
    watchers: HashMap<TaskId, Vec<oneshot::Sender<Arc<TaskRecord>>>>,
}

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = Arc<dyn TaskStore>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        store: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        store.listen_for_finals(Arc::new(move |id| {
            let _ = myself.cast(RegistryMsg::FinalElsewhere(id));
        }));
        Ok(RegistryState {
            writer: GroupCommit::start(store.clone()),
            store,
            busy: HashSet::new(),
            busy_keys: HashSet::new(),
            waiting: VecDeque::new(),
            watchers: HashMap::new(),
        })
    }

    /// Changes already handed to the writer are committed before the registry is gone.
    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.writer.stop().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let RegistryMsg::Settled(id, key) = msg {
            state.busy.remove(&id);
            if let Some(key) = key {
                state.busy_keys.remove(&key);
            }
            for waiting in std::mem::take(&mut state.waiting) {
                state.dispatch(&myself, waiting);
            }
        } else {
            state.dispatch(&myself, msg);
        }
        Ok(())
    }
}

impl RegistryState {
    fn is_busy(&self, id: TaskId, key: Option<&str>) -> bool {
        self.busy.contains(&id) || key.is_some_and(|k| self.busy_keys.contains(k))
    }

    // A closed reply port means the caller gave up waiting; there is nobody left to tell.
    fn dispatch(&mut self, myself: &ActorRef<RegistryMsg>, msg: RegistryMsg) {
        if let Some((id, key)) = msg.target() {
            if self.is_busy(id, key) {
                self.waiting.push_back(msg);
                return;
            }
        }
        // Transitions are plain functions: the store is read, and the clock looked at, here.
        let store = self.store.clone();
        let store = store.as_ref();
        let now = crate::domain::now_millis();
        match msg {
            RegistryMsg::Create(record, audit, reply) => {
                let id = record.id;
                let plan = Ok((Some(audited(WriteOp::Put(record), audit)), ()));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::CreateWithKey(record, key, audit, reply) => {
                let id = record.id;
                let plan = store
                    .idempotency(&key)
                    .map(|existing| transitions::create_with_key(existing, record, key.clone()))
                    .map(|(op, answer)| (op.map(|op| audited(op, audit)), answer));
                self.commit(myself, id, Some(key), plan, reply)
            }
            RegistryMsg::Remove(id, key, reply) => {
                let op = match key.clone() {
                    Some(key) => WriteOp::RemoveWithKey(id, key),
                    None => WriteOp::Remove(id),
                };
                self.commit(myself, id, key, Ok((Some(op), ())), reply)
            }
            RegistryMsg::Record(record, reply) => {
                self.writer.submit_then(WriteOp::Audit(record), move |result| {
                    let _ = reply.send(result);
                });
            }
            RegistryMsg::Begin(task, ask, reply) => {
                let plan = store
                    .get(task.task_id)
                    .map(|known| transitions::begin(known, &task, ask, now));
                self.commit(myself, task.task_id, None, plan, reply)
            }
            RegistryMsg::Renew(id, reply) => {
                let plan = store.get(id).map(|stored| transitions::renew(stored, now));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::NextAttempt(id, local, reply) => {
                let plan = store
                    .get(id)
                    .map(|stored| transitions::next_attempt(stored, local, now));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::Finish(task, outcome, reply) => {
                let plan = store
                    .get(task.task_id)
                    .map(|stored| transitions::finish(stored, &task, &outcome, now));
                self.commit(myself, task.task_id, None, plan, reply)
            }
            RegistryMsg::Apply(update, reply) => {
                let id = update_task(&update);
                let plan = store.get(id).map(|stored| transitions::apply(stored, update, now));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::Unfinished(reply) => drop(reply.send(store.unfinished())),
            RegistryMsg::Sweep(cutoff, reply) => drop(reply.send(store.remove_final_before(cutoff))),
            RegistryMsg::ExpireLeases(cutoff, reply) => self.expire_leases(myself, cutoff, now, reply),
            RegistryMsg::Cancel(id, equipment, audit, reply) => {
                let plan = store
                    .get(id)
                    .map(|stored| transitions::cancel(stored, &equipment, now))
                    .map(|(op, answer)| (op.map(|op| audited(op, audit)), answer));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::Watch(id, reply) => drop(reply.send(self.watch(id))),
            RegistryMsg::Finalized(record) => self.tell_watchers(record),
            RegistryMsg::Published(id) => store.mark_published(&[id]),
            RegistryMsg::FinalElsewhere(id) => self.wake_finished_elsewhere(id),
            RegistryMsg::Retry(id, equipment, requested_by, audit, reply) => {
                let plan = store
                    .get(id)
                    .map(|stored| transitions::retry(stored, &equipment, requested_by, now))
                    .map(|(op, answer)| (op.map(|op| audited(op, audit)), answer));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::UndoRetry(id, new_task, reply) => {
                let plan = store.get(id).map(|stored| transitions::undo_retry(stored, new_task));
                self.commit(myself, id, None, plan, reply)
            }
            RegistryMsg::Settled(..) => {}
        }
    }

    /// Answers at once when nothing changes; otherwise queues the change for the next commit and
    /// answers once it is durable, keeping the task busy until then.
    fn commit<T: Send + 'static>(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        id: TaskId,
        key: Option<String>,
        plan: Plan<T>,
        reply: Reply<T>,
    ) {
        let (op, answer) = match plan {
            Err(error) => return drop(reply.send(Err(error))),
            Ok((None, answer)) => return drop(reply.send(Ok(answer))),
            Ok((Some(op), answer)) => (op, answer),
        };
        self.busy.insert(id);
        if let Some(key) = &key {
            self.busy_keys.insert(key.clone());
        }
        // Only watched tasks need their final record copied: a watcher cannot register while this
        // change is in flight (its Watch waits behind the busy task), so none is missed.
        let finished = self.watchers.contains_key(&id).then(|| final_record(&op)).flatten();
        let myself = myself.clone();
        // Told on the writer's thread: the answer and the notes go out with no task per change.
        self.writer.submit_then(op, move |result| {
            if let (Ok(()), Some(record)) = (&result, finished) {
                let _ = myself.cast(RegistryMsg::Finalized(record));
            }
            let _ = reply.send(result.map(|()| answer));
            let _ = myself.cast(RegistryMsg::Settled(id, key));
        });
    }

    /// The record now; for an unfinished task also a receiver for its final record.
    fn watch(&mut self, id: TaskId) -> Result<Option<Watch>, StoreError> {
        let Some(now) = self.store.get(id)? else {
            return Ok(None);
        };
        if now.status.is_final() {
            return Ok(Some(Watch { now, finished: None }));
        }
        let (tell, finished) = oneshot::channel();
        let watchers = self.watchers.entry(id).or_default();
        // Waiters that gave up (their client left) go, so a long-running task does not pile them up.
        watchers.retain(|watcher| !watcher.is_closed());
        watchers.push(tell);
        Ok(Some(Watch {
            now,
            finished: Some(finished),
        }))
    }

    /// Hands the final record to every watcher of its task, one copy shared by all.
    fn tell_watchers(&mut self, record: TaskRecord) {
        let watchers = self.watchers.remove(&record.id).unwrap_or_default();
        let record = Arc::new(record);
        for watcher in watchers {
            let _ = watcher.send(record.clone());
        }
    }

    /// Tells the watchers of tasks that another instance made final. A read that fails leaves the
    /// watchers waiting: their wait still ends at its deadline with the running answer.
    fn wake_finished_elsewhere(&mut self, id: Option<TaskId>) {
        let ids: Vec<TaskId> = match id {
            Some(id) if self.watchers.contains_key(&id) => vec![id],
            Some(_) => return,
            None => self.watchers.keys().copied().collect(),
        };
        for id in ids {
            if let Ok(Some(record)) = self.store.get(id) {
                if record.status.is_final() {
                    self.tell_watchers(record);
                }
            }
        }
    }

    fn expire_leases(&mut self, myself: &ActorRef<RegistryMsg>, cutoff: u64, now: u64, reply: Reply<usize>) {
        let expired = match self.store.unfinished() {
            Ok(unfinished) => transitions::expire_leases(unfinished, cutoff, |id| self.busy.contains(&id), now),
            Err(error) => return drop(reply.send(Err(error))),
        };
        let mut durable = Vec::with_capacity(expired.len());
        for record in expired {
            tracing::warn!(task_id = %record.id, equipment_id = %record.equipment_id, "task lease expired; failed");
            self.busy.insert(record.id);
            durable.push((record.clone(), self.writer.submit(WriteOp::Put(record))));
        }
        let myself = myself.clone();
        tokio::spawn(async move {
            let mut result = Ok(durable.len());
            for (record, done) in durable {
                let id = record.id;
                match done.await.unwrap_or_else(|_| Err(writer_stopped())) {
                    Ok(()) => drop(myself.cast(RegistryMsg::Finalized(record))),
                    Err(error) => result = Err(error),
                }
                let _ = myself.cast(RegistryMsg::Settled(id, None));
            }
            let _ = reply.send(result);
        });
    }
}

/// The record a change makes final, if it does: its watchers are told once it is durable.
fn final_record(op: &WriteOp) -> Option<TaskRecord> {
    match op {
        WriteOp::Put(record) | WriteOp::PutWithKey(record, ..) if record.status.is_final() => Some(record.clone()),
        WriteOp::All(ops) => ops.iter().find_map(final_record),
        _ => None,
    }
}

/// The change, and with it its audit record naming the tasks it writes.
fn audited(op: WriteOp, audit: Audit) -> WriteOp {
    let Some(mut record) = audit else {
        return op;
    };
    written(&op, &mut record.task_ids);
    WriteOp::All(vec![op, WriteOp::Audit(record)])
}

/// The ids of the tasks `op` stores, in order.
fn written(op: &WriteOp, ids: &mut Vec<TaskId>) {
    match op {
        WriteOp::Put(record) | WriteOp::PutWithKey(record, ..) => ids.push(record.id),
        WriteOp::All(ops) => ops.iter().for_each(|op| written(op, ids)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod operator_tests;

#[cfg(test)]
mod audit_tests;
