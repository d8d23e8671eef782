//! RabbitMQ wiring: opens the task publisher and source, and the results queue that carries
//! outcomes from worker processes back to the Service B that answers GET (its sink and its consumer).

use super::{AmqpConfig, AmqpLink, AmqpPublisher, AmqpSource, DeclareError, QueueSpec, QueueType};
use crate::config::BrokerOptions;
use anyhow::Result;
use async_trait::async_trait;
use cpe_actors::ports::{Begin, Delivery, DeliveryHandler, QueueSource, Settle, SinkError, StatusSink, TaskPublisher};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::{Outcome, StatusUpdate, TaskMessage};
use std::sync::Arc;
use std::time::Duration;

/// The results queue, seen from both ends.
pub struct ResultsQueue {
    publisher: AmqpPublisher,
    source: Arc<dyn QueueSource>,
    /// Both connections, to close them cleanly at the end of a stop.
    links: [AmqpLink; 2],
}

/// Opens the links to RabbitMQ: one connection to publish, one to consume, so flow control on
/// publishing never stalls acknowledgements. Connections are made on first use.
pub async fn open_amqp(
    options: &BrokerOptions,
    url: &str,
    workers: u16,
) -> Result<(Arc<dyn TaskPublisher>, Arc<dyn QueueSource>, ResultsQueue)> {
    let settings = AmqpConfig {
        url: url.to_owned(),
        queue: options.queue.clone(),
        // Twice the workers: tasks for a busy device wait in the pool without starving the others.
        prefetch: (workers as u32 * 2).min(u16::MAX as u32) as u16,
        connect_timeout: Duration::from_secs(5),
    };
    let publish_link = AmqpLink::new(&settings)?;
    let consume_link = AmqpLink::new(&settings)?;
    let tasks = QueueSpec::tasks(options.queue.clone()).with_type(options.queue_type);
    let results = QueueSpec::plain(options.results_queue.clone());
    if options.queue_type == QueueType::Quorum {
        // A classic queue of the same name makes every declaration fail until an operator cuts over:
        // say so at start rather than retry it as if the broker were down. (A classic declaration keeps
        // whatever queue it finds, so it needs no such check.)
        match publish_link.declare(&tasks).await {
            Ok(()) => {}
            Err(DeclareError::Refused(why)) => anyhow::bail!(why),
            Err(DeclareError::Failed(error)) => {
                tracing::warn!(%error, "could not declare the quorum task queue at start; it is declared on first use")
            }
        }
    }
    let publisher = Arc::new(AmqpPublisher::new(publish_link.clone(), tasks.clone()));
    let source = Arc::new(AmqpSource::new(consume_link.clone(), tasks, settings.prefetch));
    let results = ResultsQueue {
        publisher: AmqpPublisher::new(publish_link.clone(), results.clone()),
        source: Arc::new(AmqpSource::new(consume_link.clone(), results, settings.prefetch)),
        links: [publish_link, consume_link],
    };
    Ok((publisher, source, results))
}

impl ResultsQueue {
    /// Closes both connections (AMQP `connection.close`), so the broker sees a clean goodbye.
    pub async fn close(&self) {
        for link in &self.links {
            link.close().await;
        }
    }

    /// The two connections by role, for the broker metrics.
    pub fn links(&self) -> Vec<(&'static str, AmqpLink)> {
        let [publish, consume] = self.links.clone();
        vec![("publish", publish), ("consume", consume)]
    }

    pub fn sink(&self) -> Arc<dyn StatusSink> {
        Arc::new(ResultsSink {
            publisher: self.publisher.clone(),
        })
    }

    pub fn consumer(&self, registry: RegistryHandle) -> (Arc<dyn QueueSource>, Arc<dyn DeliveryHandler>) {
        (self.source.clone(), Arc::new(ResultsApplier { registry }))
    }
}

/// A worker process's status sink: every change goes on the results queue, with a broker confirm.
/// It cannot see Service B's registry, so a redelivered final task is caught there instead.
struct ResultsSink {
    publisher: AmqpPublisher,
}

impl ResultsSink {
    /// A call to Service A is about to start: Service B counts it and renews the lease.
    async fn running(&self, task: &TaskMessage) -> Result<(), SinkError> {
        self.send(&StatusUpdate::Running {
            task_id: task.task_id,
            equipment_id: task.equipment_id.clone(),
        })
        .await
    }

    async fn send(&self, update: &StatusUpdate) -> Result<(), SinkError> {
        let body = serde_json::to_vec(update).expect("a status update always serialises");
        self.publisher
            .publish_json(&body)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}

#[async_trait]
impl StatusSink for ResultsSink {
    async fn begin(&self, task: &TaskMessage, redelivered: bool) -> Result<Begin, SinkError> {
        self.running(task).await?;
        // Without the registry, a redelivery may follow a call still running at the device. The
        // durable count lives in Service B (each `running` counts one call); this process sees
        // only its own delivery's calls, so its attempt limit is per delivery (docs/operations.md).
        Ok(if redelivered {
            Begin::Resume {
                since: cpe_actors::domain::now_millis(),
                attempt: 1,
            }
        } else {
            Begin::Run { attempt: 1 }
        })
    }

    /// Nothing to send: Service B counts every `running` update as a call, and the lease it
    /// started at `begin` covers the wait and one call.
    async fn renew(&self, _: &TaskMessage) -> Result<(), SinkError> {
        Ok(())
    }

    async fn next_attempt(&self, task: &TaskMessage, local: u32) -> Result<u32, SinkError> {
        self.running(task).await?;
        Ok(local)
    }

    async fn finish(&self, task: &TaskMessage, outcome: Outcome) -> Result<(), SinkError> {
        self.send(&StatusUpdate::Finished {
            task_id: task.task_id,
            equipment_id: task.equipment_id.clone(),
            outcome,
        })
        .await
    }
}

/// Service B's side: applies each update to the registry, then acknowledges it.
struct ResultsApplier {
    registry: RegistryHandle,
}

impl DeliveryHandler for ResultsApplier {
    fn handle(&self, delivery: Delivery) {
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let settled = match serde_json::from_slice::<StatusUpdate>(&delivery.body) {
                Err(error) => {
                    tracing::warn!(%error, bytes = delivery.body.len(), "results message is not a status update; dropped");
                    delivery.acker.settle(Settle::DeadLetter).await
                }
                Ok(update) => match registry.apply(update).await {
                    Ok(()) => delivery.acker.settle(Settle::Ack).await,
                    Err(error) => {
                        tracing::warn!(%error, "could not apply a status update; requeued");
                        delivery.acker.settle(Settle::Requeue).await
                    }
                },
            };
            if let Err(error) = settled {
                tracing::warn!(%error, "could not settle a results message; it will be redelivered");
            }
        });
    }
}
