//! The Service A client: HTTPS through a few reqwest clients, trusting only the project's certificate.

mod answer;

use answer::Secrets;
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

/// The most of an answer's body ever read: the success answer is 32 bytes, and a few KiB of an
/// error say all an operator needs. Reading stops there, so no answer can fill memory.
pub const BODY_CAP: usize = 4096;

impl ServiceAClient {
    /// `trust` is the certificate Service A presents (certs/cert.pem); no other root is trusted.
    /// `max_concurrent` is how many calls may run at once (the worker count).
    pub fn new(base_url: &str, trust: reqwest::Certificate, max_concurrent: usize) -> anyhow::Result<Self> {
        let connections = max_concurrent.div_ceil(CALLS_PER_CONNECTION).max(1);
        let clients = (0..connections)
            .map(|_| {
                reqwest::Client::builder()
                    .tls_certs_only([trust.clone()])
                    // A redirect would re-send the parameters, passwords included, to wherever
                    // it points (plain HTTP too), and its target's 200 would pass for a
                    // configured device: a 3xx is a failure instead.
                    .redirect(reqwest::redirect::Policy::none())
                    .https_only(true)
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
    /// Success is a 200 carrying the contract's success answer, nothing less. Every other answer
    /// becomes an error whose text holds at most a cleaned excerpt of the body (see [`answer`]).
    async fn configure(&self, equipment: &EquipmentId, request: &ConfigRequest) -> Result<(), ProvisionError> {
        let url = format!("{}/api/v1/equipment/cpe/{equipment}", self.base_url);
        let response = self
            .client()
            .post(&url)
            .json(request)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let retry_after = match status {
            429 | 503 => answer::retry_after(response.headers()),
            _ => None,
        };
        match status {
            // The body is not read: nothing in it changes the outcome.
            300..=399 => Err(ProvisionError::Redirect(status)),
            404 => Err(ProvisionError::NotFound),
            200..=299 => {
                let body = answer::read_capped(response, BODY_CAP)
                    .await
                    .map_err(|e| transport(&e))?;
                if status == 200 && !body.cut && answer::is_success(&body.bytes) {
                    return Ok(());
                }
                Err(ProvisionError::Unexpected {
                    status,
                    detail: answer::describe(&body, &Secrets::of(request)),
                })
            }
            _ => {
                // A body that breaks off still leaves the status to report.
                let body = answer::read_capped(response, BODY_CAP).await.unwrap_or_default();
                Err(ProvisionError::Status {
                    status,
                    body: answer::describe(&body, &Secrets::of(request)),
                    retry_after,
                })
            }
        }
    }
}

fn transport(error: &reqwest::Error) -> ProvisionError {
    ProvisionError::Transport(answer::escape_controls(&error_chain(error)))
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
