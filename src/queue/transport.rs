//! The transport between Service B and the workers: the in-process queue, or RabbitMQ when
//! `--amqp-url` is set (with the results queue when the roles run in separate processes).

use crate::config::BrokerOptions;
use crate::queue::amqp::{self, AmqpLink, ResultsQueue};
use anyhow::Result;
use cpe_actors::memory::InProcessQueue;
use cpe_actors::ports::{DeliveryHandler, QueueSource, StatusSink, TaskPublisher};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::TaskMessage;
use std::sync::Arc;

pub struct Transport {
    pub publisher: Arc<dyn TaskPublisher>,
    pub tasks: Arc<dyn QueueSource>,
    backend: Backend,
}

/// What carries the tasks; the publisher and source above are views of it.
enum Backend {
    /// The in-process queue: it forgets everything on exit, so unfinished tasks are requeued at start.
    Memory(InProcessQueue),
    /// RabbitMQ, with the results queue that carries outcomes between processes.
    Amqp(ResultsQueue),
}

impl Transport {
    /// `workers`: how many configurations run at once here, which sets how many deliveries to take.
    pub async fn open(options: &BrokerOptions, workers: u16) -> Result<Transport> {
        match &options.amqp_url {
            None => {
                let queue = InProcessQueue::default();
                Ok(Transport {
                    publisher: Arc::new(queue.clone()),
                    tasks: Arc::new(queue.clone()),
                    backend: Backend::Memory(queue),
                })
            }
            Some(url) => {
                let (publisher, tasks, results) = amqp::open_amqp(options, url.expose(), workers).await?;
                Ok(Transport {
                    publisher,
                    tasks,
                    backend: Backend::Amqp(results),
                })
            }
        }
    }

    /// The RabbitMQ links, by role; none for the in-process queue.
    pub fn broker_links(&self) -> Vec<(&'static str, AmqpLink)> {
        match &self.backend {
            Backend::Memory(_) => Vec::new(),
            Backend::Amqp(results) => results.links(),
        }
    }

    /// Where a worker process reports outcomes: the results queue.
    pub fn results_sink(&self) -> Option<Arc<dyn StatusSink>> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Amqp(results) => Some(results.sink()),
        }
    }

    /// What Service B in its own process consumes to learn outcomes.
    pub fn results_consumer(
        &self,
        registry: RegistryHandle,
    ) -> Option<(Arc<dyn QueueSource>, Arc<dyn DeliveryHandler>)> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Amqp(results) => Some(results.consumer(registry)),
        }
    }

    /// Closes the broker connections at the end of a clean stop; the in-process queue has none.
    pub async fn close(&self) {
        if let Backend::Amqp(results) = &self.backend {
            results.close().await;
        }
    }

    /// Queues again the tasks the store holds unfinished, when the queue itself did not keep them.
    pub async fn resume(&self, registry: &RegistryHandle) -> Result<()> {
        let Backend::Memory(queue) = &self.backend else {
            return Ok(());
        };
        let unfinished = registry.unfinished().await?;
        if unfinished.is_empty() {
            return Ok(());
        }
        for record in &unfinished {
            let task = TaskMessage {
                task_id: record.id,
                equipment_id: record.equipment_id.clone(),
                request: record.request.clone(),
            };
            queue.publish(&task).await?;
        }
        tracing::info!(tasks = unfinished.len(), "requeued unfinished tasks from the store");
        Ok(())
    }
}
