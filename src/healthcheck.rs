//! `cpe-config healthcheck`: asks the local service's `/readyz`, for container healthchecks (the
//! runtime image has no curl).

use crate::config::{Config, Role};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Exits through `Ok` only when the service answered 200; the error says what it answered instead.
pub async fn run(config: &Config, url: Option<String>) -> Result<()> {
    let url = url.unwrap_or_else(|| {
        let port = match config.role {
            Role::ServiceA => config.service_a.service_a_addr.port(),
            _ => config.http.service_b_addr.port(),
        };
        format!("https://localhost:{port}/readyz")
    });
    let trust = crate::tls::client_trust(&config.certs_dir)?;
    let client = reqwest::Client::builder()
        .tls_certs_only([trust])
        .timeout(Duration::from_secs(5))
        .build()?;
    let shown = crate::redact::redact_url(&url);
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(crate::provisioner::error_chain(&e.without_url())))
        .with_context(|| format!("{shown} did not answer"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "{shown} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        );
    }
    crate::say!("ready");
    Ok(())
}
