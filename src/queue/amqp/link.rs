//! The connection manager: one RabbitMQ connection per process, shared by every publisher and source,
//! opened on first use and again after a failure, with the queues declared on it.

use super::config::{redact_url, AmqpConfig};
use super::ops::{lock, open_channel, step};
use super::topology::{DeclareError, QueueSpec};
use cpe_actors::ports::QueueError;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Connections opened so far; every one after the first is a reconnect (metrics).
    connects: AtomicU64,
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
            connects: AtomicU64::new(0),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// `host:port` of the broker.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// How many connections this link has opened, the first included.
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
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
        self.ensure_declared(&live, spec)
            .await
            .map_err(|e| self.error(e.into()))?;
        open_channel(&live.connection).await.map_err(|e| self.error(e))
    }

    /// Connects if needed and declares the topology of `spec` now, so that start-up can stop on a
    /// declaration the broker refuses for good ([`DeclareError::Refused`]) rather than retry it forever.
    pub async fn declare(&self, spec: &QueueSpec) -> Result<(), DeclareError> {
        let live = self.live().await.map_err(DeclareError::Failed)?;
        self.ensure_declared(&live, spec).await.map_err(|error| match error {
            DeclareError::Refused(text) => DeclareError::Refused(self.error(QueueError(text)).0),
            DeclareError::Failed(error) => DeclareError::Failed(self.error(error)),
        })
    }

    async fn ensure_declared(&self, live: &Live, spec: &QueueSpec) -> Result<(), DeclareError> {
        let mut declared = live.declared.lock().await;
        if !declared.contains(spec.name()) {
            spec.declare(&live.connection).await?;
            declared.insert(spec.name().to_owned());
        }
        Ok(())
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
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Live {
            connection: Arc::new(connection),
            declared: Default::default(),
        })
    }

    /// Prefixes the broker's `host:port`, so an error says which broker failed.
    pub(super) fn error(&self, error: QueueError) -> QueueError {
        QueueError(format!("RabbitMQ at {}: {}", self.inner.host, error.0))
    }

    /// Forgets that `queue` was declared on the live connection, so its next use declares it again.
    pub(super) async fn forget_declared(&self, queue: &str) {
        if let Some(live) = self.current() {
            live.declared.lock().await.remove(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
