//! What every phase shares: the settings, a certificate pair, the broker check, and apps started
//! in-process on port 0 with their own queues and data directory, stopped and cleaned up after.

use crate::report::{Report, Row};
use anyhow::{anyhow, Context, Result};
use cpe_config::startup::App;
use cpe_config::store::file::FileStore;
use cpe_test_support::{connect, delete_queues, start_app};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// The resolved options of one run (see `Options` for their meaning).
#[derive(Clone, Debug)]
pub struct Settings {
    pub amqp_url: String,
    pub quick: bool,
    pub connections: usize,
    pub duration: Duration,
    pub n: u64,
    pub delay: Duration,
    pub sizes: Vec<u64>,
    pub memory_sizes: Vec<u64>,
    pub page_sizes: Vec<u64>,
    pub limit: Duration,
    pub fill_limit: Duration,
}

pub struct Bench {
    pub settings: Settings,
    /// Where certificates and data directories live during the run; removed at the end.
    pub root: PathBuf,
    pub certs: PathBuf,
    pub trust: reqwest::Certificate,
    /// The load generator's runtime: its threads are named `load`, so their CPU time is told apart.
    pub load: Handle,
    /// The broker URL, or why it cannot be used.
    pub broker: Result<String, String>,
    /// A connection held for the whole run: when the broker drops it, someone restarted the broker
    /// (other work on this machine does), and the measurement that spans it is not valid.
    sentinel: tokio::sync::Mutex<Option<lapin::Connection>>,
}

/// An app of one phase, with what must be cleaned up after it.
pub struct Running {
    pub app: App,
    pub data_dir: PathBuf,
    pub queue: Option<String>,
}

impl Running {
    pub fn service_b(&self) -> String {
        base(self.app.service_b_addr)
    }

    pub fn service_a(&self) -> String {
        base(self.app.service_a_addr)
    }
}

fn base(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(
        || "https://127.0.0.1:0".into(),
        |a| format!("https://127.0.0.1:{}", a.port()),
    )
}

impl Bench {
    pub fn new(settings: Settings, load: Handle, broker: Result<String, String>) -> Result<Self> {
        let root = std::env::temp_dir().join(format!("cpe-bench-{}", uuid::Uuid::new_v4().simple()));
        let certs = root.join("certs");
        cpe_config::tls::generate_pair(&certs, false).context("cannot generate a certificate pair")?;
        let trust = cpe_config::tls::client_trust(&certs)?;
        Ok(Self {
            sentinel: Default::default(),
            settings,
            root,
            certs,
            trust,
            load,
            broker,
        })
    }

    /// A fresh directory under the run's root.
    pub fn fresh_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// Starts an app on port 0 (127.0.0.1) with `extra` options; `queue` names its queues when it
    /// uses the broker. `data_dir` is its file store directory (created on demand).
    pub async fn start(&self, data_dir: &Path, queue: Option<&str>, extra: &[String]) -> Result<Running> {
        let mut args = vec![
            format!("--data-dir={}", data_dir.display()),
            "--shutdown-grace=2s".into(),
            "--retry-base=100ms".into(),
        ];
        if let Some(queue) = queue {
            let url = self.broker.as_ref().map_err(|why| anyhow!("{why}"))?;
            args.push(format!("--amqp-url={url}"));
            args.push(format!("--queue={queue}"));
            args.push(format!("--results-queue={queue}-results"));
        }
        args.extend(extra.iter().cloned());
        let app = tokio::time::timeout(Duration::from_secs(60), start_app(&self.certs, args))
            .await
            .map_err(|_| anyhow!("the app did not start within 60 s"))??;
        Ok(Running {
            app,
            data_dir: data_dir.to_owned(),
            queue: queue.map(str::to_owned),
        })
    }

    /// Stops the app cleanly (bounded), deletes its queues, and optionally its data directory.
    pub async fn stop(&self, running: Running, remove_data: bool) {
        let Running { app, data_dir, queue } = running;
        if tokio::time::timeout(Duration::from_secs(60), app.shutdown())
            .await
            .is_err()
        {
            println!("  !! the app did not stop within 60 s; going on");
        }
        if let Some(queue) = queue {
            self.delete_queues(&queue).await;
        }
        if remove_data {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }

    /// Deletes the queues of `queue` (see [`delete_queues`]), or says they are left behind.
    pub async fn delete_queues(&self, queue: &str) {
        let Ok(url) = &self.broker else { return };
        if !delete_queues(url, queue).await {
            println!("  !! could not connect to delete queue {queue}; delete it by hand");
        }
    }

    /// True when the broker dropped the sentinel connection since the last call; connects it again.
    pub async fn broker_dropped(&self) -> bool {
        let Ok(url) = &self.broker else {
            return false;
        };
        let mut sentinel = self.sentinel.lock().await;
        let dropped = sentinel.as_ref().is_some_and(|c| !c.status().connected());
        if dropped || sentinel.is_none() {
            *sentinel = connect(url).await.ok();
        }
        dropped
    }

    /// Marks `row` invalid, with a note, when the broker was restarted while it was measured.
    pub async fn check_broker_during(&self, mut row: Row, report: &mut Report) -> Row {
        if self.broker_dropped().await {
            report.note(format!(
                "{}: RabbitMQ dropped its connections during this measurement (restarted by other work on the \
                 machine); the figure is not valid",
                row.figure
            ));
            row = row.invalid("RabbitMQ restarted during the run");
        }
        row
    }

    /// Polls `<base>/readyz` until it answers 200; returns when it did, or an error after `limit`.
    pub async fn wait_ready(&self, base: &str, limit: Duration) -> Result<Instant> {
        let client = crate::load::http1_clients(1, &self.trust)?.remove(0);
        let deadline = Instant::now() + limit;
        loop {
            let answer = client
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(anyhow!("{base}/readyz did not answer 200 within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Checks that the broker URL points at this machine and that RabbitMQ answers there.
pub async fn check_broker(url: &str) -> Result<String, String> {
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|e: String| format!("invalid --amqp-url: {e}"))?;
    let host = uri.authority.host.as_str();
    if !["127.0.0.1", "localhost", "::1", "[::1]"].contains(&host) {
        return Err(format!("--amqp-url must point at this machine (127.0.0.1 or localhost), not {host}: the benchmark loads nothing else"));
    }
    let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), connection.close(200, "probe".into())).await;
            Ok(url.to_owned())
        }
        Ok(Err(error)) => Err(format!(
            "RabbitMQ not reachable at {host}:{}: {error}",
            uri.authority.port
        )),
        Err(_) => Err(format!(
            "RabbitMQ at {host}:{} did not answer within 5 s",
            uri.authority.port
        )),
    }
}

/// Opens the file store a stopped app used. The app may hold the file a little after `shutdown` returns,
/// so the open is retried for up to 10 s; returns the store and how long it waited.
pub fn open_when_released(dir: &Path) -> Result<(FileStore, Duration)> {
    let started = Instant::now();
    loop {
        match FileStore::open(dir) {
            Ok(store) => return Ok((store, started.elapsed())),
            Err(error) if started.elapsed() >= Duration::from_secs(10) => {
                return Err(error).context("the stopped app still holds its file store after 10 s")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
