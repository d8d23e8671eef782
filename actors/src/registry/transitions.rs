//! What each registry request changes: pure decisions over the stored record, returned as the
//! write to make (if any) and the answer to give once that write is durable.

use super::{Cancel, Created, Retry};
use crate::ports::{Begin, IdempotencyEntry, StoreError, TaskStore, WriteOp};
use crate::{EquipmentId, Outcome, StatusUpdate, TaskId, TaskMessage, TaskRecord, TaskStatus};

/// A decision: the change to make durable (None: nothing changes) and the answer after it.
pub type Plan<T> = Result<(Option<WriteOp>, T), StoreError>;

pub fn create_with_key(store: &dyn TaskStore, record: TaskRecord, key: String) -> Plan<Created> {
    let fingerprint = record.request.fingerprint(&record.equipment_id);
    if let Some(entry) = store.idempotency(&key)? {
        let answer = if entry.fingerprint == fingerprint {
            Created::Existing(entry.task_id)
        } else {
            Created::Conflict
        };
        return Ok((None, answer));
    }
    let entry = IdempotencyEntry {
        task_id: record.id,
        fingerprint,
        created_at: record.created_at,
    };
    Ok((Some(WriteOp::PutWithKey(record, key, entry)), Created::New))
}

/// A task the registry has never seen (published by another system) is adopted from its message.
fn load_or_adopt(store: &dyn TaskStore, task: &TaskMessage) -> Result<TaskRecord, StoreError> {
    Ok(store
        .get(task.task_id)?
        .unwrap_or_else(|| TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone())))
}

/// `redelivered` matters only for a task this store does not hold (another publisher's, or one a
/// memory store forgot in a restart): a redelivery of it may follow a call still running.
/// The coming call is counted in the same write that marks the task running, so a call that
/// crashes its worker or the process still counts against the attempt limit.
pub fn begin(store: &dyn TaskStore, task: &TaskMessage, redelivered: bool) -> Plan<Begin> {
    let known = store.get(task.task_id)?;
    let unknown_redelivery = known.is_none() && redelivered;
    let mut record =
        known.unwrap_or_else(|| TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone()));
    if record.status.is_final() {
        return Ok((None, Begin::AlreadyFinal));
    }
    let resume_since = if unknown_redelivery {
        record.move_to(TaskStatus::Running);
        Some(record.updated_at)
    } else if record.status == TaskStatus::Running {
        let since = record.updated_at;
        record.renew();
        Some(since)
    } else {
        record.move_to(TaskStatus::Running);
        None
    };
    record.attempts = record.attempts.saturating_add(1);
    let attempt = record.attempts;
    let begin = match resume_since {
        Some(since) => Begin::Resume { since, attempt },
        None => Begin::Run { attempt },
    };
    Ok((Some(WriteOp::Put(record)), begin))
}

/// Only a queued task can be cancelled: a running one is at the device already.
pub fn cancel(store: &dyn TaskStore, id: TaskId, equipment: &EquipmentId) -> Plan<Cancel> {
    let mut record = match store.get(id)? {
        Some(record) if record.equipment_id == *equipment => record,
        _ => return Ok((None, Cancel::NotFound)),
    };
    match record.status {
        TaskStatus::Running => Ok((None, Cancel::Running)),
        status if status.is_final() => Ok((None, Cancel::Final(status))),
        _ => {
            record.cancel();
            Ok((Some(WriteOp::Put(record)), Cancel::Cancelled))
        }
    }
}

/// A failed task of this device is run again as a new task with the same request; the failed
/// one names it (`retried_as`), in the same write.
pub fn retry(store: &dyn TaskStore, id: TaskId, equipment: &EquipmentId) -> Plan<Retry> {
    let mut failed = match store.get(id)? {
        Some(record) if record.equipment_id == *equipment => record,
        _ => return Ok((None, Retry::NotFound)),
    };
    if let Some(earlier) = failed.retried_as {
        return Ok((None, Retry::AlreadyRetried(earlier)));
    }
    if !failed.can_retry() {
        return Ok((None, Retry::NotFailed(failed.status)));
    }
    let task = TaskMessage {
        task_id: TaskId::new(),
        equipment_id: failed.equipment_id.clone(),
        request: failed.request.clone(),
    };
    failed.mark_retried(task.task_id);
    let new = TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone());
    Ok((
        Some(WriteOp::All(vec![WriteOp::Put(new), WriteOp::Put(failed)])),
        Retry::Created(task),
    ))
}

/// Takes back a retry whose new task could not be queued: the failed task may be retried again.
pub fn undo_retry(store: &dyn TaskStore, id: TaskId, new_task: TaskId) -> Plan<()> {
    match store.get(id)? {
        Some(mut failed) if failed.retried_as == Some(new_task) => {
            failed.retried_as = None;
            Ok((
                Some(WriteOp::All(vec![WriteOp::Remove(new_task), WriteOp::Put(failed)])),
                (),
            ))
        }
        _ => Ok((None, ())),
    }
}

pub fn renew(store: &dyn TaskStore, id: TaskId) -> Plan<()> {
    match store.get(id)? {
        Some(mut record) if record.status == TaskStatus::Running => {
            record.renew();
            Ok((Some(WriteOp::Put(record)), ()))
        }
        _ => Ok((None, ())),
    }
}

/// A retry: one more call, counted before it is made, and a fresh lease. A task that is no
/// longer running (its lease expired meanwhile) is not changed; the count still moves on for
/// the worker, whose outcome will then be ignored.
pub fn next_attempt(store: &dyn TaskStore, id: TaskId, local: u32) -> Plan<u32> {
    match store.get(id)? {
        Some(mut record) if record.status == TaskStatus::Running => {
            record.renew();
            record.attempts = record.attempts.saturating_add(1);
            let attempt = record.attempts;
            Ok((Some(WriteOp::Put(record)), attempt))
        }
        _ => Ok((None, local)),
    }
}

pub fn finish(store: &dyn TaskStore, task: &TaskMessage, outcome: &Outcome) -> Plan<()> {
    let mut record = load_or_adopt(store, task)?;
    if record.finish(outcome) {
        return Ok((Some(WriteOp::Put(record)), ()));
    }
    tracing::warn!(task_id = %task.task_id, status = ?record.status, "ignored a second outcome for a final task");
    Ok((None, ()))
}

pub fn apply(store: &dyn TaskStore, update: StatusUpdate) -> Plan<()> {
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
        return Ok((None, ()));
    };
    if record.equipment_id != equipment_id {
        tracing::warn!(%task_id, "status update names another equipment; ignored");
        return Ok((None, ()));
    }
    // A worker in another process sends `running` before each call to Service A (and at no
    // other time): each one is counted here, durably, so the status shows every call, including
    // those that crashed the worker's process. Its outcome carries only the calls of its own
    // delivery, so the larger count is kept.
    let counted = record.attempts;
    let changed = match &outcome {
        Some(outcome) => {
            let finished = record.finish(outcome);
            record.attempts = record.attempts.max(counted);
            finished
        }
        None if record.status.is_final() => false,
        None => {
            if record.status == TaskStatus::Running {
                record.renew();
            } else {
                record.move_to(TaskStatus::Running);
            }
            record.attempts = counted.saturating_add(1);
            true
        }
    };
    Ok((changed.then_some(WriteOp::Put(record)), ()))
}

/// Running tasks nobody finished within their lease (their worker process died and no redelivery
/// came) fail with that reason, so none reads "running" forever. Tasks with a change on its way
/// to the store are left alone: that change is news from a worker.
pub fn expire_leases(
    store: &dyn TaskStore,
    cutoff: u64,
    busy: impl Fn(TaskId) -> bool,
) -> Result<Vec<TaskRecord>, StoreError> {
    let reason = "lease expired: no worker reported an outcome in time";
    let expired = store
        .unfinished()?
        .into_iter()
        .filter(|r| r.status == TaskStatus::Running && r.updated_at < cutoff && !busy(r.id))
        .filter_map(|mut record| {
            let failed = Outcome::Failed {
                attempts: record.attempts,
                reason: reason.to_owned(),
            };
            record.finish(&failed).then_some(record)
        })
        .collect();
    Ok(expired)
}
