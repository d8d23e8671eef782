//! The in-process queue: the broker-less transport, with the same ack, requeue and dead-letter
//! semantics as RabbitMQ. A delivery dropped without an answer goes back on the queue, as an
//! unacknowledged message does when a broker channel closes.

use crate::ports::{Acker, Delivery, DeliveryStream, QueueError, QueueSource, Settle, TaskPublisher};
use crate::TaskMessage;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    ready: Mutex<VecDeque<(Arc<[u8]>, bool)>>,
    dead: Mutex<Vec<Arc<[u8]>>>,
    wake: Notify,
}

impl Shared {
    fn push(&self, body: Arc<[u8]>, redelivered: bool) {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((body, redelivered));
        self.wake.notify_one();
    }
}

#[derive(Clone, Default)]
pub struct InProcessQueue {
    shared: Arc<Shared>,
}

impl InProcessQueue {
    /// Messages waiting to be delivered.
    pub fn len(&self) -> usize {
        self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bodies of dead-lettered messages, oldest first.
    pub fn dead_letters(&self) -> Vec<Arc<[u8]>> {
        self.shared.dead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts raw bytes on the queue, as a foreign publisher could.
    pub fn push_raw(&self, body: &[u8]) {
        self.shared.push(body.into(), false);
    }
}

#[async_trait]
impl TaskPublisher for InProcessQueue {
    async fn publish(&self, task: &TaskMessage) -> Result<(), QueueError> {
        self.shared.push(task.to_json().into(), false);
        Ok(())
    }

    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.len() as u64))
    }
}

#[async_trait]
impl QueueSource for InProcessQueue {
    fn describe(&self) -> String {
        "in-process queue".into()
    }

    async fn subscribe(&self) -> Result<Box<dyn DeliveryStream>, QueueError> {
        Ok(Box::new(Subscription {
            shared: self.shared.clone(),
        }))
    }
}

struct Subscription {
    shared: Arc<Shared>,
}

#[async_trait]
impl DeliveryStream for Subscription {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.shared.wake.notified();
            let popped = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            if let Some((body, redelivered)) = popped {
                let acker = Arc::new(MemoryAcker {
                    shared: self.shared.clone(),
                    body: body.clone(),
                    settled: AtomicBool::new(false),
                });
                return Some(Delivery {
                    body,
                    redelivered,
                    acker,
                });
            }
            notified.await;
        }
    }
}

struct MemoryAcker {
    shared: Arc<Shared>,
    body: Arc<[u8]>,
    settled: AtomicBool,
}

impl MemoryAcker {
    /// True the first time only: a delivery is settled once, like a broker delivery tag.
    fn first_settlement(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn settle(&self, how: Settle) -> Result<(), QueueError> {
        if !self.first_settlement() {
            return Ok(());
        }
        match how {
            Settle::Ack => {}
            Settle::Requeue => self.shared.push(self.body.clone(), true),
            Settle::DeadLetter => self
                .shared
                .dead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.body.clone()),
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if self.first_settlement() {
            self.shared.push(self.body.clone(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deliveries_are_acked_requeued_or_dead_lettered_once() {
        let queue = InProcessQueue::default();
        queue.push_raw(b"one");
        let mut sub = queue.subscribe().await.unwrap();
        let first = sub.next().await.unwrap();
        assert!(!first.redelivered);
        first.acker.settle(Settle::Requeue).await.unwrap();
        first.acker.settle(Settle::DeadLetter).await.unwrap();
        let again = sub.next().await.unwrap();
        assert!(again.redelivered);
        assert_eq!(&*again.body, b"one");
        again.acker.settle(Settle::DeadLetter).await.unwrap();
        assert_eq!(queue.dead_letters().len(), 1);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_delivery_goes_back_on_the_queue() {
        let queue = InProcessQueue::default();
        queue.push_raw(b"lost?");
        let mut sub = queue.subscribe().await.unwrap();
        drop(sub.next().await.unwrap());
        assert!(sub.next().await.unwrap().redelivered);
    }
}
