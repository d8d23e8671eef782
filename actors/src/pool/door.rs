//! The pool's door: where a delivery enters the pool. It is counted (if redelivered) and read as a
//! task, once, in delivery order; a body that is not a valid task is dead-lettered here and never
//! takes a worker.

use super::worker::{settle, Settlement};
use super::{requeue_later, PoolMsg};
use crate::observe::{DeadLetter, Observer};
use crate::ports::{Delivery, DeliveryHandler, Settle};
use crate::slot::Slot;
use crate::{RequestError, TaskMessage};
use ractor::MessagingErr;
use std::sync::Arc;

/// A delivery read as a task at the pool's door: what a worker runs, and the delivery to settle.
#[derive(Debug)]
pub struct Job {
    pub task: TaskMessage,
    pub delivery: Delivery,
}

impl Job {
    /// Reads a delivery's body as a task, as strictly as an HTTP request: the only place it is read.
    pub fn read(delivery: Delivery) -> Result<Self, Garbage> {
        match TaskMessage::from_json(&delivery.body) {
            Ok(task) => Ok(Self { task, delivery }),
            Err(reason) => Err(Garbage { delivery, reason }),
        }
    }
}

/// A delivery whose body is not a valid task: it would be as invalid on every redelivery.
#[derive(Debug)]
pub struct Garbage {
    delivery: Delivery,
    reason: RequestError,
}

impl Garbage {
    /// Dead-letters the message without calling Service A.
    pub async fn dead_letter(self) -> Settlement {
        let Self { delivery, reason } = self;
        tracing::warn!(bytes = delivery.body.len(), %reason, "queue message is not a valid task; dead-lettered");
        settle(&delivery, Settle::DeadLetter).await;
        Settlement::DeadLettered(reason.to_string())
    }
}

/// The consumer's way into the pool, whichever pool actor is current: the pool's door, where each
/// delivery is counted (if redelivered) and read as a task, in delivery order, before it is queued
/// for a worker.
#[derive(Clone)]
pub struct PoolHandle {
    pool: Slot<PoolMsg>,
    observer: Arc<dyn Observer>,
}

impl PoolHandle {
    pub fn new(pool: Slot<PoolMsg>, observer: Arc<dyn Observer>) -> Self {
        Self { pool, observer }
    }
}

impl DeliveryHandler for PoolHandle {
    fn handle(&self, delivery: Delivery) {
        if delivery.redelivered {
            self.observer.redelivered();
        }
        let job = match Job::read(delivery) {
            Ok(job) => job,
            Err(garbage) => {
                self.observer.dead_lettered(DeadLetter::NotATask);
                tokio::spawn(garbage.dead_letter());
                return;
            }
        };
        match self.pool.get() {
            Some(pool) => {
                if let Err(MessagingErr::SendErr(PoolMsg::Dispatch(job))) = pool.cast(PoolMsg::Dispatch(job)) {
                    requeue_later(job.delivery);
                }
            }
            None => requeue_later(job.delivery),
        }
    }
}
