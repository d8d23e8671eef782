//! RabbitMQ adapter of the queue ports (lapin): one shared connection that reconnects on demand, the
//! task topology with its dead-letter queue, a publisher that waits for broker confirms, and a source.

use async_trait::async_trait;
use cpe_actors::ports::{Acker, Delivery, DeliveryStream, QueueError, QueueSource, TaskPublisher};
use cpe_actors::TaskMessage;
use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, ErrorKind, ExchangeKind,
};
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Longest wait for one broker operation once connected (publish and confirm, declare, ack), so that
/// nothing hangs forever on a broker that stopped answering.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

const STALE: &str = "delivery is stale: the channel closed; the broker will redeliver it";

/// Where the broker is and how to use it. `Debug` hides the user info of `url`: it holds a password.
#[derive(Clone)]
pub struct AmqpConfig {
    pub url: String,
    pub queue: String,
    /// Most unacknowledged deliveries per subscription; 0 means no limit (AMQP's meaning).
    pub prefetch: u16,
    pub connect_timeout: Duration,
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The URL with its user info replaced by `***`. Everything up to the last `@` goes, so a password
/// holding an unescaped `/` or `@` is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    match url.find("://") {
        Some(scheme_end) if scheme_end < at => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => format!("***{}", &url[at..]),
    }
}

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

    async fn declare(&self, connection: &Connection) -> Result<(), QueueError> {
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

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
}

async fn open_channel(connection: &Connection) -> Result<Channel, QueueError> {
    step("opening a channel", connection.create_channel()).await
}

/// Runs one broker operation under [`OPERATION_DEADLINE`]; the outer error is the deadline.
async fn within<T>(
    what: &str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<lapin::Result<T>, QueueError> {
    tokio::time::timeout(OPERATION_DEADLINE, operation)
        .await
        .map_err(|_| QueueError(format!("{what}: no answer within {OPERATION_DEADLINE:?}")))
}

async fn step<T>(what: &str, operation: impl Future<Output = lapin::Result<T>>) -> Result<T, QueueError> {
    within(what, operation)
        .await?
        .map_err(|error| QueueError(format!("{what}: {error}")))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection shared by every publisher and source of a process. It connects on first use and
/// again on the first use after a failure: lapin's auto-recovery stays off, because its first connect
/// to a missing broker retries for minutes, and we would rather fail within `connect_timeout`.
#[derive(Clone)]
pub struct AmqpLink {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    url: String,
    /// `host:port`, the only part of the URL that errors and logs may show.
    host: String,
    connect_timeout: Duration,
    live: Mutex<Option<Live>>,
    /// One connect at a time: callers that arrive meanwhile wait for it rather than open their own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    /// Queues declared on this connection: a new connection declares them again.
    declared: Arc<tokio::sync::Mutex<HashSet<String>>>,
}

impl AmqpLink {
    /// Checks the URL; does not connect yet.
    pub fn new(config: &AmqpConfig) -> Result<Self, QueueError> {
        let uri: lapin::uri::AMQPUri = config.url.parse().map_err(|error: String| {
            let error = error.replace(&config.url, &redact_url(&config.url));
            QueueError(format!("invalid AMQP URL {}: {error}", redact_url(&config.url)))
        })?;
        let inner = LinkInner {
            url: config.url.clone(),
            host: format!("{}:{}", uri.authority.host, uri.authority.port),
            connect_timeout: config.connect_timeout,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// `host:port` of the broker.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// True while a connection is open: the readiness check.
    pub fn is_connected(&self) -> bool {
        self.current().is_some()
    }

    /// Connects now if not connected, so a start-up or readiness probe can fail early.
    pub async fn ensure_connected(&self) -> Result<(), QueueError> {
        self.live().await.map(drop)
    }

    /// A new channel on the live connection, with the topology of `spec` declared on that connection.
    pub async fn channel(&self, spec: &QueueSpec) -> Result<Channel, QueueError> {
        let live = self.live().await?;
        let mut declared = live.declared.lock().await;
        if !declared.contains(spec.name()) {
            spec.declare(&live.connection).await.map_err(|e| self.error(e))?;
            declared.insert(spec.name().to_owned());
        }
        drop(declared);
        open_channel(&live.connection).await.map_err(|e| self.error(e))
    }

    /// Closes the connection (clean stop); the next use connects again. Deliveries not yet
    /// acknowledged go back to their queue.
    pub async fn close(&self) {
        let Some(live) = lock(&self.inner.live).take() else {
            return;
        };
        if let Err(error) = step("closing the connection", live.connection.close(200, "OK".into())).await {
            tracing::debug!(host = %self.inner.host, %error, "RabbitMQ connection did not close cleanly");
        }
    }

    fn current(&self) -> Option<Live> {
        lock(&self.inner.live)
            .as_ref()
            .filter(|live| live.connection.status().connected())
            .cloned()
    }

    async fn live(&self) -> Result<Live, QueueError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _gate = self.inner.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let live = self.connect().await?;
        *lock(&self.inner.live) = Some(live.clone());
        Ok(live)
    }

    async fn connect(&self) -> Result<Live, QueueError> {
        let LinkInner {
            url,
            host,
            connect_timeout,
            ..
        } = &*self.inner;
        let properties = ConnectionProperties::default().with_connection_name("cpe-config".into());
        let connection = match tokio::time::timeout(*connect_timeout, Connection::connect(url, properties)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(QueueError(format!("could not connect to RabbitMQ at {host}: {error}"))),
            Err(_) => {
                return Err(QueueError(format!(
                    "could not connect to RabbitMQ at {host} within {connect_timeout:?}"
                )))
            }
        };
        tracing::info!(%host, "connected to RabbitMQ");
        Ok(Live {
            connection: Arc::new(connection),
            declared: Default::default(),
        })
    }

    fn error(&self, error: QueueError) -> QueueError {
        QueueError(format!("RabbitMQ at {}: {}", self.inner.host, error.0))
    }

    async fn forget_declared(&self, queue: &str) {
        if let Some(live) = self.current() {
            live.declared.lock().await.remove(queue);
        }
    }
}

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
}

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
            ended: false,
        }))
    }
}

struct AmqpDeliveries {
    consumer: Consumer,
    channel: Channel,
    queue: String,
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
                let acker = AmqpAcker {
                    delivery: delivery.acker,
                    channel: self.channel.clone(),
                    settled: AtomicBool::new(false),
                };
                Some(Delivery {
                    body: delivery.data.into(),
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
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ack,
    Requeue,
    DeadLetter,
}

impl AmqpAcker {
    async fn answer(&self, answer: Answer) -> Result<(), QueueError> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let what = format!("{answer:?} of a delivery");
        let sent = match answer {
            Answer::Ack => within(&what, self.delivery.ack(Default::default())).await?,
            Answer::Requeue => within(&what, self.delivery.nack(requeue())).await?,
            Answer::DeadLetter => within(&what, self.delivery.reject(BasicRejectOptions { requeue: false })).await?,
        };
        match sent {
            Ok(true) => Ok(()),
            // lapin's answer for a delivery of a channel that closed: the broker requeued it already.
            Ok(false) => Err(QueueError(STALE.into())),
            Err(error) => Err(QueueError(format!("{what}: {error}"))),
        }
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<(), QueueError> {
        self.answer(Answer::Ack).await
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        self.answer(Answer::Requeue).await
    }

    async fn dead_letter(&self) -> Result<(), QueueError> {
        self.answer(Answer::DeadLetter).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_user_info_only() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@rabbit:5672/%2f"),
            "amqp://***@rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqp://u:pa/ss@w@rabbit/%2f"), "amqp://***@rabbit/%2f");
        assert_eq!(redact_url("amqp://rabbit:5672"), "amqp://rabbit:5672");
        assert_eq!(redact_url("u:pw@rabbit"), "***@rabbit");
    }

    #[test]
    fn debug_of_the_config_hides_the_password() {
        let config = AmqpConfig {
            url: "amqp://guest:s3cret@rabbit:5672/%2f".into(),
            queue: "config_tasks".into(),
            prefetch: 4,
            connect_timeout: Duration::from_secs(1),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && shown.contains("rabbit:5672"), "{shown}");
    }

    #[test]
    fn an_invalid_url_is_refused_without_echoing_the_password() {
        let config = AmqpConfig {
            url: "amqp:s3cret@".into(),
            queue: "q".into(),
            prefetch: 1,
            connect_timeout: Duration::from_secs(1),
        };
        let error = AmqpLink::new(&config).err().expect("an invalid URL");
        assert!(!error.0.contains("s3cret"), "{error}");
    }
}
