//! The worker pool: N linked worker actors, at most one configuration per device at a time, in the
//! order the queue delivered them. A worker that dies has its delivery requeued and is replaced,
//! always: the task's attempt was counted before its call, so a task that keeps killing workers
//! runs out of attempts and fails, and no run of such tasks can stop the pool.

use crate::ports::{Delivery, DeliveryHandler};
use crate::slot::Slot;
use crate::worker::{Worker, WorkerDeps, WorkerMsg};
use crate::TaskMessage;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

pub enum PoolMsg {
    Dispatch(Delivery),
    Done(ActorId),
    /// Stop taking work, requeue what waits, and answer once running work is finished.
    Drain(RpcReplyPort<()>),
    Stats(RpcReplyPort<PoolStats>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub workers: usize,
    pub busy: usize,
    pub waiting: usize,
}

pub struct PoolArgs {
    pub size: usize,
    pub deps: Arc<WorkerDeps>,
}

struct Job {
    /// The device the task is for; messages that cannot be read share the empty key, run one at a time.
    device: String,
    delivery: Delivery,
}

pub struct PoolState {
    deps: Arc<WorkerDeps>,
    workers: HashMap<ActorId, ActorRef<WorkerMsg>>,
    idle: Vec<ActorId>,
    busy: HashMap<ActorId, Job>,
    busy_devices: HashSet<String>,
    waiting: VecDeque<Job>,
    draining: Option<Vec<RpcReplyPort<()>>>,
}

pub struct Pool;

impl Actor for Pool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = PoolState {
            deps: args.deps,
            workers: HashMap::new(),
            idle: Vec::new(),
            busy: HashMap::new(),
            busy_devices: HashSet::new(),
            waiting: VecDeque::new(),
            draining: None,
        };
        for _ in 0..args.size.max(1) {
            spawn_worker(&myself, &mut state).await?;
        }
        report_slots(&state);
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Whatever did not finish goes back to the queue now rather than when the connection closes.
        for job in state.busy.drain().map(|(_, job)| job).chain(state.waiting.drain(..)) {
            let _ = job.delivery.acker.requeue().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Dispatch(delivery) => {
                if delivery.redelivered {
                    state.deps.observer.redelivered();
                }
                if state.draining.is_some() {
                    requeue_later(delivery);
                    return Ok(());
                }
                let device = TaskMessage::peek_equipment_id(&delivery.body).unwrap_or_default();
                state.waiting.push_back(Job { device, delivery });
                assign(state);
            }
            PoolMsg::Done(worker) => {
                if let Some(job) = state.busy.remove(&worker) {
                    state.busy_devices.remove(&job.device);
                }
                if state.workers.contains_key(&worker) {
                    state.idle.push(worker);
                }
                assign(state);
                answer_drain_if_idle(state);
            }
            PoolMsg::Drain(reply) => {
                for job in state.waiting.drain(..) {
                    requeue_later(job.delivery);
                }
                state.draining.get_or_insert_with(Vec::new).push(reply);
                answer_drain_if_idle(state);
            }
            PoolMsg::Stats(reply) => {
                let _ = reply.send(PoolStats {
                    workers: state.workers.len(),
                    busy: state.busy.len(),
                    waiting: state.waiting.len(),
                });
            }
        }
        report_slots(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.unwrap_or_else(|| "stopped".into())),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if state.workers.remove(&id).is_none() {
            return Ok(());
        }
        state.idle.retain(|w| *w != id);
        if let Some(job) = state.busy.remove(&id) {
            state.busy_devices.remove(&job.device);
            tracing::warn!(worker = %id, %why, "worker died mid-task; its delivery is requeued");
            requeue_later(job.delivery);
        }
        spawn_worker(&myself, state).await?;
        assign(state);
        report_slots(state);
        Ok(())
    }
}

/// Two gauges set from the pool's own state after every change: cheaper than asking the pool at scrape time.
fn report_slots(state: &PoolState) {
    state.deps.observer.slots(state.busy.len(), state.workers.len());
}

async fn spawn_worker(pool: &ActorRef<PoolMsg>, state: &mut PoolState) -> Result<(), ActorProcessingErr> {
    let (worker, _) = Actor::spawn_linked(None, Worker, (state.deps.clone(), pool.clone()), pool.get_cell()).await?;
    state.idle.push(worker.get_id());
    state.workers.insert(worker.get_id(), worker);
    Ok(())
}

/// Hands waiting jobs to idle workers, oldest first, skipping devices that are being configured:
/// a later task for a busy device waits behind it, so per-device order holds.
fn assign(state: &mut PoolState) {
    let mut index = 0;
    while index < state.waiting.len() && !state.idle.is_empty() {
        if state.busy_devices.contains(&state.waiting[index].device) {
            index += 1;
            continue;
        }
        let job = state.waiting.remove(index).expect("index is in range");
        let worker_id = state.idle.pop().expect("an idle worker exists");
        let worker = &state.workers[&worker_id];
        if let Err(error) = worker.cast(WorkerMsg::Run(job.delivery.clone())) {
            // The worker is stopping; its supervision event will replace it.
            tracing::warn!(%error, "worker did not take a job; it waits for the next one");
            state.waiting.insert(index, job);
            continue;
        }
        state.busy_devices.insert(job.device.clone());
        state.busy.insert(worker_id, job);
    }
}

fn answer_drain_if_idle(state: &mut PoolState) {
    if state.busy.is_empty() {
        for reply in state.draining.iter_mut().flat_map(|replies| replies.drain(..)) {
            let _ = reply.send(());
        }
    }
}

fn requeue_later(delivery: Delivery) {
    tokio::spawn(async move {
        if let Err(error) = delivery.acker.requeue().await {
            tracing::warn!(%error, "could not requeue a delivery; the broker will redeliver it");
        }
    });
}

/// The consumer's way into the pool, whichever pool actor is current.
#[derive(Clone)]
pub struct PoolHandle(pub Slot<PoolMsg>);

impl DeliveryHandler for PoolHandle {
    fn handle(&self, delivery: Delivery) {
        match self.0.get() {
            Some(pool) => {
                if let Err(ractor::MessagingErr::SendErr(PoolMsg::Dispatch(delivery))) =
                    pool.cast(PoolMsg::Dispatch(delivery))
                {
                    requeue_later(delivery);
                }
            }
            None => requeue_later(delivery),
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
