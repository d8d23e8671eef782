//! A worker actor runs one task at a time, already read at the pool's door: check, call Service A
//! (with retries), record, then ack.

use super::{Job, PoolMsg};
use crate::device_lease::{self, HeldDevice, Take};
use crate::observe::{CallOutcome, DeadLetter, Finished, Observer};
use crate::ports::{Begin, Delivery, DeviceLeases, LeaseError, ProvisionError, Provisioner, Settle, StatusSink};
use crate::retry::RetryPolicy;
use crate::task_guard::AbortOnDrop;
use crate::{Outcome, TaskMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What every worker shares: its ports and its limits.
pub struct WorkerDeps {
    pub provisioner: Arc<dyn Provisioner>,
    pub sink: Arc<dyn StatusSink>,
    pub retry: RetryPolicy,
    /// Deadline of one call to Service A.
    pub call_timeout: Duration,
    /// Where calls, finished tasks and the pool's slots are reported (metrics).
    pub observer: Arc<dyn Observer>,
    /// Per-device leases when several instances share the store; None in a single instance,
    /// where the pool alone keeps one task per device at a time.
    pub leases: Option<Arc<dyn DeviceLeases>>,
    /// Run messages for tasks the store has never seen (another system's, during a migration)
    /// instead of dead-lettering them.
    pub adopt_unknown: bool,
}

/// How a delivery was settled: returned for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Acked(Option<Outcome>),
    /// Acknowledged without running: the device's older task comes first, or another holder has
    /// this task; the store hands the task to the queue again when its turn comes.
    Deferred,
    Requeued,
    DeadLettered(String),
}

/// How long a message for a task the store has never seen is asked about again before it is
/// dead-lettered: a create whose message was published beside its commit (another instance's)
/// is durable or refused within the registry's 10 s bound.
pub const UNKNOWN_GRACE: Duration = Duration::from_secs(12);

/// The store has never seen the task (and adopting it was not asked for).
struct UnknownTask;

pub enum WorkerMsg {
    Run(Job),
}

pub struct Worker;

pub struct WorkerState {
    deps: Arc<WorkerDeps>,
    pool: ActorRef<PoolMsg>,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (Arc<WorkerDeps>, ActorRef<PoolMsg>);

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        (deps, pool): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WorkerState { deps, pool })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(job) = msg;
        process(&state.deps, job).await;
        // The pool may be gone during shutdown; nothing is lost, the delivery is settled already.
        let _ = state.pool.cast(PoolMsg::Done(myself.get_id()));
        Ok(())
    }
}

/// Runs one task to its end. The acknowledgement is always the last step, after the outcome is
/// durable, so a crash at any point leaves the message to be delivered again. A message for a
/// task the store does not know yet is asked about again for [`UNKNOWN_GRACE`], then
/// dead-lettered: a create refused after its publish never runs behind its caller's back.
pub async fn process(deps: &WorkerDeps, job: Job) -> Settlement {
    let Job { task, delivery } = job;
    let give_up = Instant::now() + UNKNOWN_GRACE;
    let mut pause = Duration::from_millis(100);
    loop {
        let last = Instant::now() + pause >= give_up;
        // In one process the registry sees a create before any begin of its task, so a task it
        // does not know is not ours: adopted at once. Across instances a create may still be on its
        // way to the database: adopted only once it had time to land.
        let adopt = deps.adopt_unknown && (last || deps.leases.is_none());
        match take_and_run(deps, &task, &delivery, adopt).await {
            Ok(settlement) => return settlement,
            Err(UnknownTask) if !last => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(UnknownTask) => {
                let reason = format!(
                    "task {} is unknown to the task store (a create that was refused, or another system's message; --adopt-unknown-tasks runs such messages)",
                    task.task_id
                );
                tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, %reason, "dead-lettered");
                deps.observer.dead_lettered(DeadLetter::UnknownTask);
                settle(&delivery, Settle::DeadLetter).await;
                return Settlement::DeadLettered(reason);
            }
        }
    }
}

/// Takes the device (when instances share a store), then runs the task; `adopt`: a task the store
/// has never seen is run from its message.
async fn take_and_run(
    deps: &WorkerDeps,
    task: &TaskMessage,
    delivery: &Delivery,
    adopt: bool,
) -> Result<Settlement, UnknownTask> {
    let held = match &deps.leases {
        None => None,
        Some(leases) => match device_lease::take(leases, task, delivery.redelivered, adopt, deps.call_timeout).await {
            Take::Unknown => return Err(UnknownTask),
            Take::Held(held) => Some(held),
            Take::Final => {
                tracing::info!(task_id = %task.task_id, "task is final already; acknowledged without calling Service A");
                settle(delivery, Settle::Ack).await;
                return Ok(Settlement::Acked(None));
            }
            Take::Behind | Take::HeldElsewhere => {
                tracing::debug!(task_id = %task.task_id, equipment_id = %task.equipment_id, "not this task's turn on its device; acknowledged, the store hands it on when due");
                settle(delivery, Settle::Ack).await;
                return Ok(Settlement::Deferred);
            }
            Take::Unavailable(reason) => {
                tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, %reason, "device leases unavailable; requeued");
                settle(delivery, Settle::Requeue).await;
                return Ok(Settlement::Requeued);
            }
        },
    };
    let settlement = run_held(deps, delivery, task, held.as_ref(), adopt).await;
    if let Some(held) = held {
        held.release().await;
    }
    settlement
}

/// The task's life once its device is held (or needs no hold).
async fn run_held(
    deps: &WorkerDeps,
    delivery: &Delivery,
    task: &TaskMessage,
    held: Option<&HeldDevice>,
    adopt: bool,
) -> Result<Settlement, UnknownTask> {
    let begun = if adopt {
        deps.sink.begin_adopting(task, delivery.redelivered).await
    } else {
        deps.sink.begin(task, delivery.redelivered).await
    };
    let first = match begun {
        Ok(Begin::Run { attempt }) => attempt,
        Ok(Begin::Resume { since, attempt }) => {
            if attempt <= deps.retry.max_attempts {
                wait_out_earlier_call(deps, task, since).await;
            }
            attempt
        }
        Ok(Begin::AlreadyFinal) => {
            tracing::info!(task_id = %task.task_id, "task is final already; acknowledged without calling Service A");
            settle(delivery, Settle::Ack).await;
            return Ok(Settlement::Acked(None));
        }
        Ok(Begin::Refused(reason)) => {
            tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, %reason, "message does not describe the stored task; dead-lettered, no task changed");
            deps.observer.dead_lettered(DeadLetter::Mismatch);
            settle(delivery, Settle::DeadLetter).await;
            return Ok(Settlement::DeadLettered(reason));
        }
        Ok(Begin::Unknown) => return Err(UnknownTask),
        Err(error) => {
            tracing::warn!(task_id = %task.task_id, %error, "could not mark the task running; requeued");
            settle(delivery, Settle::Requeue).await;
            return Ok(Settlement::Requeued);
        }
    };
    let outcome = if first > deps.retry.max_attempts {
        // Every earlier delivery ended without an outcome: the call crashed its worker or the
        // process. Calling again would only crash again.
        let used = first - 1;
        let reason = format!("attempt limit reached: the worker or process stopped during {used} attempts");
        tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, attempts = used, "{reason}; dead-lettered");
        Outcome::Failed { attempts: used, reason }
    } else {
        match configure_with_retries(deps, task, first, held).await {
            Ok(outcome) => outcome,
            Err(lost) => return Ok(abandon(delivery, task, &lost).await),
        }
    };
    // A holder that lost its device does not report: the new holder's outcome is the one that counts.
    if let Some(Err(lost)) = confirm(held).await {
        return Ok(abandon(delivery, task, &lost).await);
    }
    if let Err(error) = record_outcome(deps, task, &outcome).await {
        tracing::error!(task_id = %task.task_id, %error, "could not record the outcome; requeued");
        settle(delivery, Settle::Requeue).await;
        return Ok(Settlement::Requeued);
    }
    deps.observer.task_finished(match &outcome {
        Outcome::Completed { .. } => Finished::Completed,
        Outcome::Failed { .. } => Finished::Failed,
    });
    Ok(match &outcome {
        Outcome::Failed { reason, attempts } if *attempts >= deps.retry.max_attempts => {
            deps.observer.dead_lettered(DeadLetter::AttemptsUsedUp);
            settle(delivery, Settle::DeadLetter).await;
            Settlement::DeadLettered(reason.clone())
        }
        _ => {
            settle(delivery, Settle::Ack).await;
            Settlement::Acked(Some(outcome))
        }
    })
}

/// The device lease (when held) extended for the next step, and the instant by which a call must
/// start to end within it; None when there is no lease.
async fn confirm(held: Option<&HeldDevice>) -> Option<Result<Instant, LeaseError>> {
    match held {
        Some(held) => Some(held.confirm().await),
        None => None,
    }
}

/// Gives the delivery back without a report: the device lease was lost (or could not be confirmed),
/// so calling or reporting could overlap with its new holder.
async fn abandon(delivery: &Delivery, task: &TaskMessage, lost: &LeaseError) -> Settlement {
    tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, error = %lost, "device lease not confirmed; stopped without calling or reporting, requeued");
    settle(delivery, Settle::Requeue).await;
    Settlement::Requeued
}

/// Calls Service A until success, a permanent failure or the attempt limit. `attempt` is the
/// number of the first call, already counted by the sink. Each call starts only once the device
/// lease (if any) is confirmed to outlast it.
async fn configure_with_retries(
    deps: &WorkerDeps,
    task: &TaskMessage,
    mut attempt: u32,
    held: Option<&HeldDevice>,
) -> Result<Outcome, LeaseError> {
    loop {
        let start_by = match confirm(held).await {
            Some(Err(lost)) => return Err(lost),
            Some(Ok(by)) => Some(by),
            None => None,
        };
        let Some(result) = call_once(deps, task, start_by).await else {
            return Err(LeaseError::Unavailable(
                "the call could not start within the lease (the process was paused?)".into(),
            ));
        };
        let error = match result {
            Ok(()) => {
                tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, attempt, "configured");
                return Ok(Outcome::Completed { attempts: attempt });
            }
            Err(error) => error,
        };
        if !error.is_transient() || attempt >= deps.retry.max_attempts {
            tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, attempt, %error, "configuration failed");
            return Ok(Outcome::Failed {
                attempts: attempt,
                reason: error.to_string(),
            });
        }
        let wait = deps.retry.wait_after(attempt, error.retry_after(), deps.call_timeout);
        tracing::info!(task_id = %task.task_id, attempt, %error, ?wait, "transient failure; retrying");
        tokio::time::sleep(wait).await;
        attempt = match deps.sink.next_attempt(task, attempt + 1).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(task_id = %task.task_id, %error, "could not count the next attempt durably");
                attempt + 1
            }
        };
    }
}

/// One call with its deadline. The call runs in a task of its own so that a panic in it (in the
/// adapter, set off by a strange answer) is one failed attempt of this task, not the death of the
/// worker: no answer of Service A can spend the pool's restarts. The guard aborts the call when
/// the deadline passes or the worker itself is stopped.
///
/// With a device lease, the call starts only if its task's first poll comes before `start_by`
/// (checked on the monotonic clock, which runs on while a process is paused): a worker paused
/// between confirming its lease and starting the call would otherwise call after its lease ran
/// out, beside the device's next holder. None: not started.
async fn call_once(
    deps: &WorkerDeps,
    task: &TaskMessage,
    start_by: Option<Instant>,
) -> Option<Result<(), ProvisionError>> {
    let provisioner = deps.provisioner.clone();
    let (equipment, request) = (task.equipment_id.clone(), task.request.clone());
    let mut call = AbortOnDrop(tokio::spawn(async move {
        if start_by.is_some_and(|by| Instant::now() >= by) {
            return None;
        }
        Some(provisioner.configure(&equipment, &request).await)
    }));
    let started = tokio::time::Instant::now();
    let result = match tokio::time::timeout(deps.call_timeout, &mut call.0).await {
        Ok(Ok(None)) => return None,
        Ok(Ok(Some(result))) => result,
        Ok(Err(joined)) if joined.is_panic() => {
            tracing::error!(task_id = %task.task_id, equipment_id = %task.equipment_id, "the call to Service A panicked; counted as a failed attempt");
            Err(ProvisionError::Panicked)
        }
        Ok(Err(_)) => Err(ProvisionError::Transport("the call was cancelled".into())),
        Err(_) => Err(ProvisionError::Timeout(deps.call_timeout)),
    };
    // Measured here rather than in the adapter: only the worker knows that it gave up at the
    // deadline, and this holds for any provisioner.
    let outcome = match &result {
        Ok(()) => CallOutcome::Ok,
        Err(ProvisionError::Timeout(_)) => CallOutcome::Timeout,
        Err(error) if error.is_transient() => CallOutcome::Transient,
        Err(_) => CallOutcome::Permanent,
    };
    deps.observer.call_ended(outcome, started.elapsed());
    Some(result)
}

/// An earlier call for this task may still be running at the device (its worker died, or its
/// process was killed): no call outlives its deadline, so waiting that long from its start keeps
/// one device from being configured twice at once.
async fn wait_out_earlier_call(deps: &WorkerDeps, task: &TaskMessage, since: u64) {
    let free_at = since.saturating_add(deps.call_timeout.as_millis() as u64);
    let wait = Duration::from_millis(free_at.saturating_sub(crate::domain::now_millis()));
    if !wait.is_zero() {
        tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, ?wait, "task was running when its worker stopped; waiting out the earlier call's deadline");
        tokio::time::sleep(wait).await;
        // The next call starts now: a crash during it must be waited out from here.
        if let Err(error) = deps.sink.renew(task).await {
            tracing::warn!(task_id = %task.task_id, %error, "could not renew the task's lease");
        }
    }
}

/// A registry that is restarting answers again within moments, and a shared database restarts within
/// seconds: try for about four seconds before giving the task back (which would repeat its call).
async fn record_outcome(
    deps: &WorkerDeps,
    task: &TaskMessage,
    outcome: &Outcome,
) -> Result<(), crate::ports::SinkError> {
    let mut tries = 0;
    loop {
        match deps.sink.finish(task, outcome.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if tries >= 6 => return Err(error),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
    }
}

/// Settles a delivery; a failure is logged, not returned, since nothing is left to decide.
pub(crate) async fn settle(delivery: &Delivery, how: Settle) {
    if let Err(error) = delivery.acker.settle(how).await {
        // The channel is gone: the broker will deliver the message again, and promise 3 makes that harmless.
        tracing::warn!(%error, "could not settle a delivery; it will be redelivered");
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lease_tests;
