//! The Service A client: one reqwest client over HTTPS, trusting only the project's certificate.

use async_trait::async_trait;
use cpe_actors::ports::{ProvisionError, Provisioner};
use cpe_actors::{ConfigRequest, EquipmentId};
use std::error::Error as _;
use std::time::Duration;

pub struct ServiceAClient {
    client: reqwest::Client,
    base_url: String,
}

impl ServiceAClient {
    /// `trust` is the certificate Service A presents (certs/cert.pem); no other root is trusted.
    pub fn new(base_url: &str, trust: reqwest::Certificate, max_connections: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .tls_certs_only([trust])
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(max_connections)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

#[async_trait]
impl Provisioner for ServiceAClient {
    async fn configure(&self, equipment: &EquipmentId, request: &ConfigRequest) -> Result<(), ProvisionError> {
        let url = format!("{}/api/v1/equipment/cpe/{equipment}", self.base_url);
        let response = self
            .client
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
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
