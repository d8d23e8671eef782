//! RabbitMQ adapter of the queue ports (lapin): one shared connection that reconnects on demand, the
//! task topology with its dead-letter queue (classic or quorum), a publisher that waits for broker
//! confirms, and a source.
//!
//! Parts: `config` (where the broker is), `link` (the shared connection), `topology` (queue declares),
//! `publisher`, `source` (subscription, deliveries and their answers), `ops` (the deadline every
//! broker operation runs under), and `results` (opening it all, and the results queue between
//! processes). Each public item is re-exported here, under `queue::amqp`.

mod config;
mod link;
mod ops;
mod publisher;
mod results;
mod source;
mod topology;

pub use config::{redact_url, AmqpConfig};
pub use link::AmqpLink;
pub use ops::OPERATION_DEADLINE;
pub use publisher::AmqpPublisher;
pub use results::{open_amqp, ResultsQueue};
pub use source::AmqpSource;
pub use topology::{
    declare_plain_queue, declare_quorum_task_topology, declare_task_topology, quorum_task_arguments, DeclareError,
    Declared, QueueSpec, QueueType, DELIVERY_LIMIT,
};
