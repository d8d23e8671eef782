//! Queue declares: the task queue and its dead-letter queue, and plain durable queues.

use super::ops::{open_channel, step, within};
use cpe_actors::ports::QueueError;
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind};

/// A queue and how to declare it: the task queue dead-letters, the results queue is plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    name: String,
    dead_letter: bool,
}

impl QueueSpec {
    /// A queue whose dead-lettered messages go to `<name>.dlq` (see [`declare_task_topology`]).
    pub fn tasks(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dead_letter: true,
        }
    }

    /// A plain durable queue, such as `config_results`.
    pub fn plain(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dead_letter: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where a dead-lettered message goes; None for a plain queue (its rejects are dropped).
    pub fn dead_letter_queue(&self) -> Option<String> {
        self.dead_letter.then(|| dead_letter_queue(&self.name))
    }

    /// Declares this queue's topology; [`super::AmqpLink`] calls it once per connection.
    pub(super) async fn declare(&self, connection: &Connection) -> Result<(), QueueError> {
        if self.dead_letter {
            declare_task_topology(connection, &self.name).await.map(drop)
        } else {
            declare_plain_queue(connection, &self.name).await
        }
    }
}

/// How the task queue was found: as cpe-config declares it, or as an earlier version declared it
/// (with `x-dead-letter-exchange`), which is kept with its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    /// Durable, no arguments: exactly what the original system declares, so its declare still works.
    Plain,
    /// Declared earlier with other arguments: kept as it is (RabbitMQ cannot change them in place).
    Kept,
}

/// Declares, idempotently, the durable queue `<queue>` with **no arguments** and the durable queue
/// `<queue>.dlq`. Dead-lettering is done by the consumer, not the broker: it publishes the rejected
/// message to `<queue>.dlq` with a confirm and only then acknowledges it (see the acker in
/// `source.rs`). So the queue stays declarable by the original system, which declares it durable with
/// no arguments: a queue with `x-dead-letter-exchange` made its every POST fail with
/// PRECONDITION_FAILED.
///
/// A queue an earlier cpe-config declared with `x-dead-letter-exchange` is kept (the declare runs on a
/// channel of its own, then the queue is checked passively on a fresh one); messages dead-lettered by
/// publishing land in `<queue>.dlq` all the same. Recreate the queue when it is empty to let the
/// original system declare it again.
pub async fn declare_task_topology(connection: &Connection, queue: &str) -> Result<Declared, QueueError> {
    let channel = open_channel(connection).await?;
    declare_queue(&channel, &dead_letter_queue(queue), FieldTable::default()).await?;
    let what = format!("declaring queue {queue}");
    let declare = channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), FieldTable::default());
    match within(&what, declare).await? {
        Ok(_) => Ok(Declared::Plain),
        Err(error) if is_precondition_failed(&error) => {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let fresh = open_channel(connection).await?;
            let check = fresh.queue_declare(queue.into(), passive, FieldTable::default());
            step(&format!("checking queue {queue}"), check).await?;
            tracing::warn!(
                queue,
                "queue {queue} was declared with arguments by an earlier version; it is kept as it is, but \
                 the original system cannot declare it: recreate it (durable, no arguments) once it is empty"
            );
            Ok(Declared::Kept)
        }
        Err(error) => Err(QueueError(format!("{what}: {error}"))),
    }
}

/// Where the consumer puts the task messages it gives up on.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Declares a plain durable queue, idempotently (the results queue).
pub async fn declare_plain_queue(connection: &Connection, queue: &str) -> Result<(), QueueError> {
    declare_queue(&open_channel(connection).await?, queue, FieldTable::default()).await
}

async fn declare_queue(channel: &Channel, queue: &str, arguments: FieldTable) -> Result<(), QueueError> {
    let declare = channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments);
    step(&format!("declaring queue {queue}"), declare).await.map(drop)
}

/// True for the broker's refusal to redeclare a queue with other arguments.
fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
}
