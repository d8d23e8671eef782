//! The source: a subscription to one queue, the stream of its deliveries, and the acker that settles
//! each delivery (ack, requeue or dead-letter), requeueing whatever is dropped unanswered.

use super::link::AmqpLink;
use super::ops::{step, within, OPERATION_DEADLINE};
use super::topology::QueueSpec;
use async_trait::async_trait;
use cpe_actors::ports::{Acker, Delivery, DeliveryStream, QueueError, QueueSource, Settle};
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The error of an answer that came too late: the delivery's channel closed, so the broker requeued it
/// already and there is nothing left to settle.
const STALE: &str = "delivery is stale: the channel closed; the broker will redeliver it";

/// Subscribes to one queue with a prefetch limit.
#[derive(Clone)]
pub struct AmqpSource {
    link: AmqpLink,
    spec: QueueSpec,
    prefetch: u16,
}

impl AmqpSource {
    pub fn new(link: AmqpLink, spec: QueueSpec, prefetch: u16) -> Self {
        Self { link, spec, prefetch }
    }
}

#[async_trait]
impl QueueSource for AmqpSource {
    fn describe(&self) -> String {
        format!("RabbitMQ queue {} at {}", self.spec.name(), self.link.host())
    }

    async fn subscribe(&self) -> Result<Box<dyn DeliveryStream>, QueueError> {
        let channel = self.link.channel(&self.spec).await?;
        let queue = self.spec.name();
        // Dead-lettering publishes on this channel and waits for the broker's confirm before the ack.
        step(
            "enabling publisher confirms",
            channel.confirm_select(Default::default()),
        )
        .await
        .map_err(|e| self.link.error(e))?;
        // The limit must be set before consuming: it applies to consumers started after it.
        step(
            "setting the prefetch",
            channel.basic_qos(self.prefetch, BasicQosOptions::default()),
        )
        .await
        .map_err(|e| self.link.error(e))?;
        let consume = channel.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        let consumer = step(&format!("consuming from {queue}"), consume)
            .await
            .map_err(|e| self.link.error(e))?;
        Ok(Box::new(AmqpDeliveries {
            consumer,
            channel,
            queue: queue.to_owned(),
            dead_letter_queue: self.spec.dead_letter_queue(),
            ended: false,
        }))
    }
}

struct AmqpDeliveries {
    consumer: Consumer,
    channel: Channel,
    queue: String,
    dead_letter_queue: Option<String>,
    ended: bool,
}

#[async_trait]
impl DeliveryStream for AmqpDeliveries {
    async fn next(&mut self) -> Option<Delivery> {
        if self.ended {
            return None;
        }
        match self.consumer.next().await {
            Some(Ok(delivery)) => {
                let body: Arc<[u8]> = delivery.data.into();
                let acker = AmqpAcker {
                    delivery: delivery.acker,
                    channel: self.channel.clone(),
                    settled: AtomicBool::new(false),
                    dead_letter: self.dead_letter_queue.clone().map(|queue| (queue, body.clone())),
                };
                Some(Delivery {
                    body,
                    redelivered: delivery.redelivered,
                    acker: Arc::new(acker),
                })
            }
            Some(Err(error)) => {
                self.ended = true;
                tracing::warn!(queue = %self.queue, %error, "RabbitMQ consumer failed; the subscription ends");
                None
            }
            None => {
                self.ended = true;
                tracing::info!(queue = %self.queue, "RabbitMQ consumer was cancelled; the subscription ends");
                None
            }
        }
    }
}

impl Drop for AmqpDeliveries {
    /// Cancels the consumer and hands back what it had prefetched but not yielded: those messages
    /// would otherwise stay unacknowledged until the channel closes, which deliveries still in the
    /// hands of workers postpone (their ackers keep the channel open so they can still be settled).
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.ended {
            return;
        }
        let (channel, mut consumer) = (self.channel.clone(), self.consumer.clone());
        runtime.spawn(async move {
            let _ = within(
                "cancelling",
                channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
            )
            .await;
            while let Ok(Some(Ok(delivery))) = tokio::time::timeout(OPERATION_DEADLINE, consumer.next()).await {
                let _ = within("requeueing", delivery.acker.nack(requeue())).await;
            }
        });
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

/// Settles one delivery. It holds its channel so that a delivery outlives its subscription, and a
/// delivery dropped without an answer goes back on the queue, as with the in-process queue.
struct AmqpAcker {
    delivery: lapin::Acker,
    channel: Channel,
    /// Set by the first answer: later ones are no-ops, as a delivery tag is settled once.
    settled: AtomicBool,
    /// The dead-letter queue and the message, for a task queue's dead-lettering; None: reject it.
    dead_letter: Option<(String, Arc<[u8]>)>,
}

impl AmqpAcker {
    /// Sends the broker the answer itself; the first one wins.
    async fn answer(&self, answer: Settle) -> Result<(), QueueError> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let what = format!("{answer:?} of a delivery");
        let sent = match answer {
            Settle::Ack => within(&what, self.delivery.ack(Default::default())).await?,
            Settle::Requeue => within(&what, self.delivery.nack(requeue())).await?,
            Settle::DeadLetter => within(&what, self.delivery.reject(BasicRejectOptions { requeue: false })).await?,
        };
        match sent {
            Ok(true) => Ok(()),
            // lapin's answer for a delivery of a channel that closed: the broker requeued it already.
            Ok(false) => Err(QueueError(STALE.into())),
            Err(error) => Err(QueueError(format!("{what}: {error}"))),
        }
    }

    /// Copies the message to the dead-letter queue (persistent, confirmed) before acknowledging it:
    /// a crash between the two leaves the message in both, never in neither.
    async fn dead_letter(&self) -> Result<(), QueueError> {
        let Some((queue, body)) = &self.dead_letter else {
            return self.answer(Settle::DeadLetter).await;
        };
        if self.settled.load(Ordering::Acquire) {
            return Ok(());
        }
        let properties = lapin::BasicProperties::default().with_delivery_mode(2);
        let publish =
            self.channel
                .basic_publish("".into(), queue.as_str().into(), Default::default(), body, properties);
        let what = format!("dead-lettering to {queue}");
        let confirm = step(&what, publish).await?;
        let confirmed = step(&what, confirm).await?;
        if !confirmed.is_ack() {
            return Err(QueueError(format!("{what}: the broker refused the message")));
        }
        self.answer(Settle::Ack).await
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn settle(&self, how: Settle) -> Result<(), QueueError> {
        match how {
            Settle::DeadLetter => self.dead_letter().await,
            Settle::Ack | Settle::Requeue => self.answer(how).await,
        }
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (delivery, channel) = (self.delivery.clone(), self.channel.clone());
        runtime.spawn(async move {
            let _ = within("requeueing a dropped delivery", delivery.nack(requeue())).await;
            drop(channel);
        });
    }
}
