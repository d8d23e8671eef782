//! The Service A client: HTTPS through a few reqwest clients, trusting only the project's certificate.

use async_trait::async_trait;
use cpe_actors::ports::{ProvisionError, Provisioner};
use cpe_actors::{ConfigRequest, EquipmentId};
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct ServiceAClient {
    /// Several clients, each with its own connection: one HTTP/2 connection carries at most the
    /// server's stream limit (200 for hyper), which would cap concurrent configurations.
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
    base_url: String,
}

/// Concurrent calls planned per connection, below common HTTP/2 stream limits.
const CALLS_PER_CONNECTION: usize = 100;

impl ServiceAClient {
    /// `trust` is the certificate Service A presents (certs/cert.pem); no other root is trusted.
    /// `max_concurrent` is how many calls may run at once (the worker count).
    pub fn new(base_url: &str, trust: reqwest::Certificate, max_concurrent: usize) -> anyhow::Result<Self> {
        let connections = max_concurrent.div_ceil(CALLS_PER_CONNECTION).max(1);
        let clients = (0..connections)
            .map(|_| {
                reqwest::Client::builder()
                    .tls_certs_only([trust.clone()])
                    .connect_timeout(Duration::from_secs(10))
                    .pool_max_idle_per_host(CALLS_PER_CONNECTION)
                    .tcp_nodelay(true)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn client(&self) -> &reqwest::Client {
        &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()]
    }
}

#[async_trait]
impl Provisioner for ServiceAClient {
    async fn configure(&self, equipment: &EquipmentId, request: &ConfigRequest) -> Result<(), ProvisionError> {
        let url = format!("{}/api/v1/equipment/cpe/{equipment}", self.base_url);
        let response = self
            .client()
            .post(&url)
            .json(request)
            .send()
            .await
            .map_err(|e| ProvisionError::Transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        match status {
            200 => Ok(()),
            404 => Err(ProvisionError::NotFound),
            _ => {
                let mut body = response.text().await.unwrap_or_default();
                body.truncate(200);
                Err(ProvisionError::Status { status, body })
            }
        }
    }
}

/// reqwest's own message is often just "error sending request": the causes say what went wrong.
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
