//! The publisher: persistent JSON messages to one queue, each confirmed by the broker before it returns.

use super::link::AmqpLink;
use super::ops::{lock, step, OPERATION_DEADLINE};
use super::topology::QueueSpec;
use async_trait::async_trait;
use cpe_actors::ports::{QueueError, TaskPublisher};
use cpe_actors::TaskMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use std::sync::{Arc, Mutex};

/// Publishes persistent JSON messages to one queue through the default exchange, and returns only
/// once the broker confirmed each. One confirm channel is shared by all clones: concurrent publishes
/// pipeline on it, each awaiting its own confirm.
#[derive(Clone)]
pub struct AmqpPublisher {
    link: AmqpLink,
    spec: QueueSpec,
    channel: Arc<Mutex<Option<Channel>>>,
    /// One channel opening at a time, held only while opening, never across a publish.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl AmqpPublisher {
    pub fn new(link: AmqpLink, spec: QueueSpec) -> Self {
        Self {
            link,
            spec,
            channel: Default::default(),
            opening: Default::default(),
        }
    }

    /// Publishes `body` (JSON) to this publisher's queue within [`OPERATION_DEADLINE`], connecting
    /// first if needed. `Ok` means the broker confirmed it.
    pub async fn publish_json(&self, body: &[u8]) -> Result<(), QueueError> {
        let what = format!("publishing to {}", self.spec.name());
        match tokio::time::timeout(OPERATION_DEADLINE, self.publish_confirmed(&what, body)).await {
            Ok(result) => result,
            Err(_) => Err(self.link.error(QueueError(format!(
                "{what}: not confirmed within {OPERATION_DEADLINE:?}"
            )))),
        }
    }

    async fn publish_confirmed(&self, what: &str, body: &[u8]) -> Result<(), QueueError> {
        let channel = self.confirm_channel().await?;
        let failed = |error: lapin::Error| self.link.error(QueueError(format!("{what}: {error}")));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        // Mandatory: a message no queue takes is returned, not confirmed and silently dropped.
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let queue = self.spec.name();
        let confirm = channel
            .basic_publish("".into(), queue.into(), options, body, properties)
            .await
            .map_err(failed)?;
        let refused = |why: &str| Err(self.link.error(QueueError(format!("{what}: {why}"))));
        match confirm.await.map_err(failed)? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                // The queue went away since it was declared: declare it again on the next publish.
                self.link.forget_declared(queue).await;
                lock(&self.channel).take();
                refused("the broker returned the message: no queue takes it")
            }
            Confirmation::Nack(_) => refused("the broker refused the message (nack)"),
            Confirmation::NotRequested => refused("the channel is not in confirm mode"),
        }
    }

    async fn confirm_channel(&self) -> Result<Channel, QueueError> {
        if let Some(channel) = self.cached() {
            return Ok(channel);
        }
        let _gate = self.opening.lock().await;
        if let Some(channel) = self.cached() {
            return Ok(channel);
        }
        let channel = self.link.channel(&self.spec).await?;
        step(
            "enabling publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|e| self.link.error(e))?;
        *lock(&self.channel) = Some(channel.clone());
        Ok(channel)
    }

    /// The confirm channel, unless it closed: then the next publish opens another (and reconnects).
    fn cached(&self) -> Option<Channel> {
        lock(&self.channel)
            .as_ref()
            .filter(|channel| channel.status().connected())
            .cloned()
    }
}

#[async_trait]
impl TaskPublisher for AmqpPublisher {
    async fn publish(&self, task: &TaskMessage) -> Result<(), QueueError> {
        self.publish_json(&task.to_json()).await
    }

    /// The queue's ready messages, from a passive declare on a channel of its own.
    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        let what = format!("reading the length of {}", self.spec.name());
        let count = async {
            let channel = self.link.channel(&self.spec).await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = channel
                .queue_declare(self.spec.name().into(), passive, FieldTable::default())
                .await
                .map_err(|e| QueueError(format!("{what}: {e}")));
            let _ = channel.close(200, "done".into()).await;
            Ok::<_, QueueError>(Some(u64::from(declared?.message_count())))
        };
        match tokio::time::timeout(OPERATION_DEADLINE, count).await {
            Ok(result) => result,
            Err(_) => Err(QueueError(format!("{what}: no answer within {OPERATION_DEADLINE:?}"))),
        }
    }
}
