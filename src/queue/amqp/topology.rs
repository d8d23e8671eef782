//! Queue declares: the task queue and its dead-letter queue (classic, or quorum with `--queue-type
//! quorum`), and plain durable queues.

use super::ops::{open_channel, step, within};
use cpe_actors::ports::QueueError;
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ErrorKind};

/// What kind of queue the task queue and its dead-letter queue are (`--queue-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Durable classic queues with no arguments: what the original system declares, so it keeps working.
    #[default]
    Classic,
    /// Quorum queues, replicated across RabbitMQ nodes, with a delivery limit; the original system
    /// cannot declare them.
    Quorum,
}

/// The `x-delivery-limit` of a quorum task queue: the broker dead-letters a message returned more
/// often than this. The workers count attempts themselves (`--max-attempts`, at most 100) and need
/// up to `max_attempts + 1` deliveries to reach their own verdict (the last one fails the task without
/// a call), so the broker's limit must stay above that for every allowed value. It does not follow the
/// option's value: RabbitMQ cannot change a queue's arguments in place, so a limit tied to
/// `--max-attempts` would refuse every instance started with another value, and changing the option
/// would need a cut-over to a new queue. The 20 above the top are for returns that are not attempts:
/// deliveries held when a connection drops or a process restarts (each of those counts on RabbitMQ
/// 4.3 and later) and, before 4.3, also requeues on a shutdown or a store error. It ends the loop of a
/// message that kills its consumer before an attempt is recorded, such as a worker process in the split
/// setup, which cannot read the attempt count.
pub const DELIVERY_LIMIT: u32 = 100 + 20;

/// A queue and how to declare it: the task queue dead-letters, the results queue is plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    name: String,
    dead_letter: bool,
    queue_type: QueueType,
}

impl QueueSpec {
    /// A classic queue whose dead-lettered messages go to `<name>.dlq` (see [`declare_task_topology`]).
    pub fn tasks(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dead_letter: true,
            queue_type: QueueType::Classic,
        }
    }

    /// A plain durable queue, such as `config_results`; always classic.
    pub fn plain(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dead_letter: false,
            queue_type: QueueType::Classic,
        }
    }

    /// This task queue as a queue of `queue_type` (see [`declare_quorum_task_topology`]). A plain queue
    /// stays classic: the results queue only serves the split setup, and a quorum queue's default
    /// delivery limit (RabbitMQ 4) would drop status updates returned too often, having nowhere to
    /// dead-letter them.
    pub fn with_type(mut self, queue_type: QueueType) -> Self {
        if self.dead_letter {
            self.queue_type = queue_type;
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where a dead-lettered message goes; None for a plain queue (its rejects are dropped).
    pub fn dead_letter_queue(&self) -> Option<String> {
        self.dead_letter.then(|| dead_letter_queue(&self.name))
    }

    /// Declares this queue's topology; [`super::AmqpLink`] calls it once per connection.
    pub(super) async fn declare(&self, connection: &Connection) -> Result<(), DeclareError> {
        match (self.dead_letter, self.queue_type) {
            (true, QueueType::Quorum) => declare_quorum_task_topology(connection, &self.name).await,
            (true, QueueType::Classic) => declare_task_topology(connection, &self.name)
                .await
                .map(drop)
                .map_err(DeclareError::Failed),
            (false, _) => declare_plain_queue(connection, &self.name)
                .await
                .map_err(DeclareError::Failed),
        }
    }
}

/// Why a declaration failed: the broker refused it for good, or it could not be done now.
#[derive(Debug)]
pub enum DeclareError {
    /// A queue of that name exists with another type or other arguments: waiting will not help, the
    /// operator must cut over (the text says how).
    Refused(String),
    /// The broker could not be reached or did not answer in time: a later try may succeed.
    Failed(QueueError),
}

impl From<DeclareError> for QueueError {
    fn from(error: DeclareError) -> Self {
        match error {
            DeclareError::Refused(text) => QueueError(text),
            DeclareError::Failed(error) => error,
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

/// Declares, idempotently, `<queue>` and `<queue>.dlq` as durable quorum queues. The task queue carries
/// `x-delivery-limit` ([`DELIVERY_LIMIT`]) and dead-letters what exceeds it to `<queue>.dlq` through
/// the default exchange, at least once (`x-dead-letter-strategy`, which needs `x-overflow:
/// reject-publish`; with no length limit that refuses nothing). The workers' own dead-lettering
/// (publish to `<queue>.dlq` with a confirm, then ack) works as with classic queues.
///
/// RabbitMQ cannot turn an existing queue into another type or change its arguments: a classic queue of
/// the same name (such as the original system's `config_tasks`), or one declared with other arguments,
/// is [`DeclareError::Refused`] with a text that says how to cut over.
pub async fn declare_quorum_task_topology(connection: &Connection, queue: &str) -> Result<(), DeclareError> {
    let dead_letters = dead_letter_queue(queue);
    // The task queue first: refused, it leaves no quorum `.dlq` behind that would in turn refuse a
    // classic start with the same --queue.
    for (name, arguments) in [
        (queue, quorum_task_arguments(queue)),
        (dead_letters.as_str(), quorum_arguments()),
    ] {
        // A refusal closes the channel: each declaration gets its own.
        let channel = open_channel(connection).await.map_err(DeclareError::Failed)?;
        let what = format!("declaring quorum queue {name}");
        let declare = channel.queue_declare(name.into(), QueueDeclareOptions::durable(), arguments);
        match within(&what, declare).await.map_err(DeclareError::Failed)? {
            Ok(_) => {}
            Err(error) if is_precondition_failed(&error) => {
                return Err(DeclareError::Refused(format!(
                    "the broker refused to declare {name} as a quorum queue ({error}): a queue of that name \
                     exists already as a classic queue or with other arguments, and RabbitMQ cannot change \
                     either in place. To cut over, start with another --queue (QUEUE) name, or stop the \
                     publishers, drain {queue}, delete {queue} and {dead_letters}, and start again; see \
                     docs/scaling.md"
                )))
            }
            Err(error) => return Err(DeclareError::Failed(QueueError(format!("{what}: {error}")))),
        }
    }
    Ok(())
}

/// `x-queue-type: quorum`, all the dead-letter queue carries.
fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}

/// The arguments of a quorum task queue; [`declare_quorum_task_topology`] says why each.
pub fn quorum_task_arguments(queue: &str) -> FieldTable {
    let mut arguments = quorum_arguments();
    let text = |value: &str| AMQPValue::LongString(value.into());
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT.into()));
    arguments.insert("x-dead-letter-exchange".into(), text(""));
    arguments.insert("x-dead-letter-routing-key".into(), text(&dead_letter_queue(queue)));
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    arguments.insert("x-overflow".into(), text("reject-publish"));
    arguments
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
