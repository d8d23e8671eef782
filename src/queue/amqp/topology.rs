//! Queue declares: the task queue with its dead-letter exchange and queue, and plain durable queues.

use super::ops::{open_channel, step, within};
use cpe_actors::ports::QueueError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};

/// A queue and how to declare it: the task queue dead-letters, the results queue is plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    name: String,
    dead_letter: bool,
}

impl QueueSpec {
    /// A queue whose rejected messages go to `<name>.dlq` (see [`declare_task_topology`]).
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

    /// Declares this queue's topology; [`super::AmqpLink`] calls it once per connection.
    pub(super) async fn declare(&self, connection: &Connection) -> Result<(), QueueError> {
        if self.dead_letter {
            declare_task_topology(connection, &self.name).await.map(drop)
        } else {
            declare_plain_queue(connection, &self.name).await
        }
    }
}

/// Whether a message rejected from the task queue reaches `<queue>.dlq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLettering {
    Routed,
    /// The queue predates dead-lettering: it must be recreated, or given a policy, for rejects to land.
    NeedsRecreate,
}

/// Declares, idempotently, the durable queue `<queue>` with `x-dead-letter-exchange = <queue>.dlx`,
/// the durable fanout exchange `<queue>.dlx`, and the durable queue `<queue>.dlq` bound to it, so a
/// message rejected without requeue lands in `<queue>.dlq`.
///
/// RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED, which also closes
/// the channel), and the original system declared `config_tasks` durable without arguments. Such a
/// queue is kept as it is, with its messages: the declare runs on a channel of its own, the queue is
/// then only checked passively on a fresh one, and a warning says that dead-lettering needs the
/// queue recreated or a policy (`rabbitmqctl set_policy <name> '^<queue>$'
/// '{"dead-letter-exchange":"<queue>.dlx"}' --apply-to queues`). Rejected tasks are dropped by the
/// broker until then; their failure is still recorded in the task store.
pub async fn declare_task_topology(connection: &Connection, queue: &str) -> Result<DeadLettering, QueueError> {
    let (dlx, dlq) = (format!("{queue}.dlx"), format!("{queue}.dlq"));
    let channel = open_channel(connection).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let exchange = channel.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    );
    step(&format!("declaring exchange {dlx}"), exchange).await?;
    declare_queue(&channel, &dlq, FieldTable::default()).await?;
    let bind = channel.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    step(&format!("binding {dlq} to {dlx}"), bind).await?;

    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    let what = format!("declaring queue {queue}");
    let declare = channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments);
    match within(&what, declare).await? {
        Ok(_) => Ok(DeadLettering::Routed),
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
                dead_letter_exchange = %dlx,
                "queue {queue} exists without dead-lettering: rejected tasks will not reach {dlq} until the \
                 queue is recreated or given a policy with dead-letter-exchange {dlx}"
            );
            Ok(DeadLettering::NeedsRecreate)
        }
        Err(error) => Err(QueueError(format!("{what}: {error}"))),
    }
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
