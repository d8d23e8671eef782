//! What the integration tests and the benchmark share, kept once: the app started in this process
//! on port 0, a client that trusts the run's certificate, queue names no one else uses, and the
//! clean-up of those queues on the broker.

use anyhow::{anyhow, Result};
use clap::Parser;
use cpe_config::config::Cli;
use cpe_config::startup::App;
use std::path::Path;
use std::time::Duration;

/// The example request of the HTTP contract (docs/api.md).
pub const EXAMPLE: &str = r#"{"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#;

/// Builds an app in this process: both services on 127.0.0.1 port 0, the certificate pair in
/// `certs`, then `args` (options given again there win, as on the command line).
pub async fn start_app(certs: &Path, args: impl IntoIterator<Item = String>) -> Result<App> {
    let mut all = vec![
        "cpe-config".to_string(),
        "--service-a-addr=127.0.0.1:0".into(),
        "--service-b-addr=127.0.0.1:0".into(),
        format!("--certs-dir={}", certs.display()),
    ];
    all.extend(args);
    let cli = Cli::try_parse_from(&all).map_err(|e| anyhow!("app options {all:?}: {e}"))?;
    cli.config.validate().map_err(|e| anyhow!("app options: {e}"))?;
    App::build(cli.config).await
}

/// A client builder that trusts `trust` (the run's generated certificate) and nothing else.
pub fn trusting(trust: &reqwest::Certificate) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_certs_only([trust.clone()])
}

/// A queue name nothing else uses: `<prefix>-<uuid>`, so runs and tests never share a queue.
pub fn unique_queue(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes `<queue>`, `<queue>.dlq`, `<queue>-results` and the exchange `<queue>.dlx`, each on its
/// own channel (a failed delete closes its channel) and within a few seconds each. The broker may
/// be restarting, so connecting is tried for about half a minute; false when it never answered.
pub async fn delete_queues(url: &str, queue: &str) -> bool {
    let mut connection = None;
    for _ in 0..5 {
        if let Ok(connected) = connect(url).await {
            connection = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let Some(connection) = connection else {
        return false;
    };
    let within = Duration::from_secs(5);
    for name in [queue.to_string(), format!("{queue}.dlq"), format!("{queue}-results")] {
        if let Ok(Ok(channel)) = tokio::time::timeout(within, connection.create_channel()).await {
            let delete = channel.queue_delete(name.as_str().into(), Default::default());
            let _ = tokio::time::timeout(within, delete).await;
        }
    }
    if let Ok(Ok(channel)) = tokio::time::timeout(within, connection.create_channel()).await {
        let dlx = format!("{queue}.dlx");
        let _ = tokio::time::timeout(within, channel.exchange_delete(dlx.as_str().into(), Default::default())).await;
    }
    let _ = tokio::time::timeout(within, connection.close(200, "done".into())).await;
    true
}

/// A connection to the broker at `url`, or an error after 5 s.
pub async fn connect(url: &str) -> Result<lapin::Connection> {
    let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(anyhow!("RabbitMQ did not answer within 5 s")),
    }
}
