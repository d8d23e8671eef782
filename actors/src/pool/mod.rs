//! The worker pool: N linked worker actors, at most one configuration per device at a time, in the
//! order the queue delivered them. A delivery is read as a task once, at the pool's door
//! ([`PoolHandle`]); one that is not a valid task is dead-lettered there and never takes a worker.
//! A worker that dies has its delivery requeued and is replaced, always: the task's attempt was
//! counted before its call, so a task that keeps killing workers runs out of attempts and fails,
//! and no run of such tasks can stop the pool.

mod door;
pub mod worker;

pub use door::{Garbage, Job, PoolHandle};
pub use worker::{Settlement, WorkerDeps};

use crate::ports::{Delivery, Settle};
use crate::slot::Slot;
use crate::supervisor::Spec;
use crate::EquipmentId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use worker::{Worker, WorkerMsg};

pub enum PoolMsg {
    Dispatch(Job),
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

/// A job a worker is running: its device is busy until the worker is done, and its delivery is
/// requeued if the worker dies.
struct Running {
    device: EquipmentId,
    delivery: Delivery,
}

pub struct PoolState {
    deps: Arc<WorkerDeps>,
    workers: HashMap<ActorId, ActorRef<WorkerMsg>>,
    idle: Vec<ActorId>,
    busy: HashMap<ActorId, Running>,
    busy_devices: HashSet<EquipmentId>,
    waiting: VecDeque<Job>,
    draining: Option<Vec<RpcReplyPort<()>>>,
}

#[derive(Clone)]
pub struct Pool;

/// The supervisor's spec: each (re)start is a fresh pool of `size` workers, published in `slot`.
pub fn spec(size: usize, deps: Arc<WorkerDeps>, slot: Slot<PoolMsg>) -> Spec<Pool> {
    Spec::new("pool", Pool, move || PoolArgs {
        size,
        deps: deps.clone(),
    })
    .published_in(slot)
}

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
        let running = state.busy.drain().map(|(_, running)| running.delivery);
        for delivery in running.chain(state.waiting.drain(..).map(|job| job.delivery)) {
            let _ = delivery.acker.settle(Settle::Requeue).await;
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
            PoolMsg::Dispatch(job) => {
                if state.draining.is_some() {
                    requeue_later(job.delivery);
                    return Ok(());
                }
                state.waiting.push_back(job);
                assign(state);
            }
            PoolMsg::Done(worker) => {
                if let Some(running) = state.busy.remove(&worker) {
                    state.busy_devices.remove(&running.device);
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
        if let Some(running) = state.busy.remove(&id) {
            state.busy_devices.remove(&running.device);
            tracing::warn!(worker = %id, %why, "worker died mid-task; its delivery is requeued");
            requeue_later(running.delivery);
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
        if state.busy_devices.contains(&state.waiting[index].task.equipment_id) {
            index += 1;
            continue;
        }
        let job = state.waiting.remove(index).expect("index is in range");
        let worker_id = state.idle.pop().expect("an idle worker exists");
        let worker = &state.workers[&worker_id];
        let running = Running {
            device: job.task.equipment_id.clone(),
            delivery: job.delivery.clone(),
        };
        match worker.cast(WorkerMsg::Run(job)) {
            Ok(()) => {
                state.busy_devices.insert(running.device.clone());
                state.busy.insert(worker_id, running);
            }
            // The worker is stopping; its supervision event will replace it.
            Err(MessagingErr::SendErr(WorkerMsg::Run(job))) => {
                tracing::warn!("worker did not take a job; it waits for the next one");
                state.waiting.insert(index, job);
            }
            Err(error) => {
                tracing::warn!(%error, "worker did not take a job; it is requeued");
                requeue_later(running.delivery);
            }
        }
    }
}

fn answer_drain_if_idle(state: &mut PoolState) {
    if state.busy.is_empty() {
        for reply in state.draining.iter_mut().flat_map(|replies| replies.drain(..)) {
            let _ = reply.send(());
        }
    }
}

/// Gives a delivery back to the queue without holding up the caller (an actor handler or the door).
fn requeue_later(delivery: Delivery) {
    tokio::spawn(async move {
        if let Err(error) = delivery.acker.settle(Settle::Requeue).await {
            tracing::warn!(%error, "could not requeue a delivery; the broker will redeliver it");
        }
    });
}

#[cfg(test)]
mod tests;
