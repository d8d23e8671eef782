//! What each registry request changes: plain functions of the stored record (or key entry), the
//! request and the time, returning the write to make (if any) and the answer to give once that
//! write is durable. The registry actor reads the store and the clock and passes them in, so
//! these are tested without a store.

use super::{Cancel, Created, Retry};
use crate::ports::{Begin, IdempotencyEntry, WriteOp};
use crate::{EquipmentId, Outcome, StatusUpdate, TaskId, TaskMessage, TaskRecord, TaskStatus};

/// A decision: the change to make durable (None: nothing changes) and the answer after it.
pub type Decision<T> = (Option<WriteOp>, T);

/// `existing` is what the store holds under `key`, if anything.
pub fn create_with_key(existing: Option<IdempotencyEntry>, record: TaskRecord, key: String) -> Decision<Created> {
    let fingerprint = record.request.fingerprint(&record.equipment_id);
    if let Some(entry) = existing {
        let answer = if entry.fingerprint == fingerprint {
            Created::Existing(entry.task_id)
        } else {
            Created::Conflict
        };
        return (None, answer);
    }
    let entry = IdempotencyEntry {
        task_id: record.id,
        fingerprint,
        created_at: record.created_at,
    };
    (Some(WriteOp::PutWithKey(record, key, entry)), Created::New)
}

/// How a worker asks to begin a task: the queue's `redelivered` flag, and whether a task the
/// store has never seen may be adopted from its message (an operator's choice, for running beside
/// another publisher of the same queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BeginAsk {
    pub redelivered: bool,
    pub adopt_unknown: bool,
}

/// `known` is the stored record. The message is only a wake-up: the stored task is what runs, so
/// a message that names another device or another request is refused (nothing changes), and a
/// task the store has never seen is adopted from its message only when `ask.adopt_unknown`. The
/// queue's `redelivered` matters only for an adopted task: a redelivery may follow a call still
/// running. The coming call is counted in the same write that marks the task running, so a call
/// that crashes its worker or the process still counts against the attempt limit.
pub fn begin(known: Option<TaskRecord>, task: &TaskMessage, ask: BeginAsk, now: u64) -> Decision<Begin> {
    if let Some(why) = known.as_ref().and_then(|stored| disagreement(stored, task)) {
        return (None, Begin::Refused(why));
    }
    if known.is_none() && !ask.adopt_unknown {
        return (None, Begin::Unknown);
    }
    let unknown_redelivery = known.is_none() && ask.redelivered;
    let mut record = known.unwrap_or_else(|| TaskRecord::from(task));
    if record.status.is_final() {
        return (None, Begin::AlreadyFinal);
    }
    let resume_since = if unknown_redelivery {
        record.move_to_at(TaskStatus::Running, now);
        Some(record.updated_at)
    } else if record.status == TaskStatus::Running {
        let since = record.updated_at;
        record.renew_at(now);
        Some(since)
    } else {
        record.move_to_at(TaskStatus::Running, now);
        None
    };
    record.attempts = record.attempts.saturating_add(1);
    let attempt = record.attempts;
    let begin = match resume_since {
        Some(since) => Begin::Resume { since, attempt },
        None => Begin::Run { attempt },
    };
    (Some(WriteOp::Put(record)), begin)
}

/// Why a message does not describe the stored task, if it does not. A final task has dropped its
/// parameters, so only its device is compared: its redeliveries are acknowledged, not refused.
fn disagreement(stored: &TaskRecord, task: &TaskMessage) -> Option<String> {
    if stored.equipment_id != task.equipment_id {
        return Some(format!(
            "the message names equipment {}, but task {} is for equipment {}",
            task.equipment_id, task.task_id, stored.equipment_id
        ));
    }
    if !stored.status.is_final() && stored.request != task.request {
        return Some(format!(
            "the message's request differs from the one stored for task {}",
            task.task_id
        ));
    }
    None
}

/// Only a queued task can be cancelled: a running one is at the device already.
pub fn cancel(stored: Option<TaskRecord>, equipment: &EquipmentId, now: u64) -> Decision<Cancel> {
    let mut record = match stored {
        Some(record) if record.equipment_id == *equipment => record,
        _ => return (None, Cancel::NotFound),
    };
    match record.status {
        TaskStatus::Running => (None, Cancel::Running),
        status if status.is_final() => (None, Cancel::Final(status)),
        _ => {
            record.cancel_at(now);
            (Some(WriteOp::Put(record)), Cancel::Cancelled)
        }
    }
}

/// A failed task of this device is run again as a new task with the same request, requested by
/// `requested_by`; the failed one names it (`retried_as`), in the same write.
pub fn retry(
    stored: Option<TaskRecord>,
    equipment: &EquipmentId,
    requested_by: Option<String>,
    now: u64,
) -> Decision<Retry> {
    let mut failed = match stored {
        Some(record) if record.equipment_id == *equipment => record,
        _ => return (None, Retry::NotFound),
    };
    if let Some(earlier) = failed.retried_as {
        return (None, Retry::AlreadyRetried(earlier));
    }
    if !failed.can_retry() {
        return (None, Retry::NotFailed(failed.status));
    }
    let task = TaskMessage {
        task_id: TaskId::new(),
        equipment_id: failed.equipment_id.clone(),
        request: failed.request.clone(),
    };
    failed.mark_retried_at(task.task_id, now);
    let new = TaskRecord {
        requested_by,
        ..TaskRecord::from(&task)
    };
    (
        Some(WriteOp::All(vec![WriteOp::Put(new), WriteOp::Put(failed)])),
        Retry::Created(task),
    )
}

/// Takes back a retry whose new task could not be queued: the failed task may be retried again.
pub fn undo_retry(stored: Option<TaskRecord>, new_task: TaskId) -> Decision<()> {
    match stored {
        Some(mut failed) if failed.retried_as == Some(new_task) => {
            failed.retried_as = None;
            (
                Some(WriteOp::All(vec![WriteOp::Remove(new_task), WriteOp::Put(failed)])),
                (),
            )
        }
        _ => (None, ()),
    }
}

pub fn renew(stored: Option<TaskRecord>, now: u64) -> Decision<()> {
    match stored {
        Some(mut record) if record.status == TaskStatus::Running => {
            record.renew_at(now);
            (Some(WriteOp::Put(record)), ())
        }
        _ => (None, ()),
    }
}

/// A retry: one more call, counted before it is made, and a fresh lease. A task that is no
/// longer running (its lease expired meanwhile) is not changed; the count still moves on for
/// the worker, whose outcome will then be ignored.
pub fn next_attempt(stored: Option<TaskRecord>, local: u32, now: u64) -> Decision<u32> {
    match stored {
        Some(mut record) if record.status == TaskStatus::Running => {
            record.renew_at(now);
            record.attempts = record.attempts.saturating_add(1);
            let attempt = record.attempts;
            (Some(WriteOp::Put(record)), attempt)
        }
        _ => (None, local),
    }
}

/// A task the registry does not hold is adopted from its message, so its outcome is kept.
pub fn finish(stored: Option<TaskRecord>, task: &TaskMessage, outcome: &Outcome, now: u64) -> Decision<()> {
    let mut record = stored.unwrap_or_else(|| TaskRecord::from(task));
    if record.finish_at(outcome, now) {
        return (Some(WriteOp::Put(record)), ());
    }
    tracing::warn!(task_id = %task.task_id, status = ?record.status, "ignored a second outcome for a final task");
    (None, ())
}

pub fn apply(stored: Option<TaskRecord>, update: StatusUpdate, now: u64) -> Decision<()> {
    let (task_id, equipment_id, outcome) = match update {
        StatusUpdate::Running { task_id, equipment_id } => (task_id, equipment_id, None),
        StatusUpdate::Finished {
            task_id,
            equipment_id,
            outcome,
        } => (task_id, equipment_id, Some(outcome)),
    };
    let Some(mut record) = stored else {
        tracing::warn!(%task_id, "status update for a task this registry does not hold");
        return (None, ());
    };
    if record.equipment_id != equipment_id {
        tracing::warn!(%task_id, "status update names another equipment; ignored");
        return (None, ());
    }
    // A worker in another process sends `running` before each call to Service A (and at no
    // other time): each one is counted here, durably, so the status shows every call, including
    // those that crashed the worker's process. Its outcome carries only the calls of its own
    // delivery, so the larger count is kept.
    let counted = record.attempts;
    let changed = match &outcome {
        Some(outcome) => {
            let finished = record.finish_at(outcome, now);
            record.attempts = record.attempts.max(counted);
            finished
        }
        None if record.status.is_final() => false,
        None => {
            if record.status == TaskStatus::Running {
                record.renew_at(now);
            } else {
                record.move_to_at(TaskStatus::Running, now);
            }
            record.attempts = counted.saturating_add(1);
            true
        }
    };
    (changed.then_some(WriteOp::Put(record)), ())
}

/// Running tasks nobody finished within their lease (their worker process died and no redelivery
/// came) fail with that reason, so none reads "running" forever. Tasks with a change on its way
/// to the store are left alone: that change is news from a worker.
pub fn expire_leases(
    unfinished: Vec<TaskRecord>,
    cutoff: u64,
    busy: impl Fn(TaskId) -> bool,
    now: u64,
) -> Vec<TaskRecord> {
    let reason = "lease expired: no worker reported an outcome in time";
    unfinished
        .into_iter()
        .filter(|r| r.status == TaskStatus::Running && r.updated_at < cutoff && !busy(r.id))
        .filter_map(|mut record| {
            let failed = Outcome::Failed {
                attempts: record.attempts,
                reason: reason.to_owned(),
            };
            record.finish_at(&failed, now).then_some(record)
        })
        .collect()
}

#[cfg(test)]
mod tests;
