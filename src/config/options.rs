//! The option groups, one per concern, flattened into `Config`: each part of the app takes its own.

use super::parse::{
    parse_amqp_url, parse_api_token, parse_database_url, parse_fraction, parse_https_url, parse_public_host,
    parse_queue_name, parse_store, QuietParser,
};
use super::StoreKind;
use crate::duration::parse_duration;
use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Service A, the device simulation.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceAOptions {
    /// Address Service A listens on (HTTPS).
    #[arg(
        long,
        global = true,
        env = "SERVICE_A_ADDR",
        default_value = "0.0.0.0:8080",
        display_order = 9
    )]
    pub service_a_addr: SocketAddr,

    /// How long Service A takes to configure one device (250ms, 2s, 1m).
    #[arg(long, global = true, env = "CONFIG_DELAY", default_value = "60s", value_parser = parse_duration, display_order = 17)]
    pub config_delay: Duration,

    /// Fraction of configurations Service A fails with HTTP 500, from 0.0 to 1.0 (fault injection).
    #[arg(long, global = true, env = "FAIL_RATE", default_value_t = 0.0, value_parser = parse_fraction, display_order = 18)]
    pub fail_rate: f64,
}

/// The workers and their calls to Service A.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
    /// Base URL workers use to call Service A; it must present --certs-dir/cert.pem.
    /// [default: https://localhost:8080; with --role all, the port Service A listens on]
    #[arg(long, global = true, env = "SERVICE_A_URL", value_parser = parse_https_url, hide_env_values = true, display_order = 11)]
    pub service_a_url: Option<String>,

    /// How many configurations may run at once in this process.
    #[arg(long, global = true, env = "WORKERS", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=10_000), display_order = 19)]
    pub workers: u16,

    /// Calls to Service A per task, the first included, before the task fails.
    #[arg(long, global = true, env = "MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100), display_order = 20)]
    pub max_attempts: u32,

    /// Wait before the first retry; it doubles with each further retry (with jitter).
    #[arg(long, global = true, env = "RETRY_BASE", default_value = "1s", value_parser = parse_duration, display_order = 21)]
    pub retry_base: Duration,

    /// Deadline of one call to Service A. Default: twice --config-delay plus 30s.
    #[arg(long, global = true, env = "CALL_TIMEOUT", value_parser = parse_duration, display_order = 22)]
    pub call_timeout: Option<Duration>,

    /// Configure queue messages for tasks the task store has never seen, from the message alone
    /// (for running beside the original system on one queue during a migration). Off: such a
    /// message is dead-lettered, so a create that was refused never runs.
    #[arg(long, global = true, env = "ADOPT_UNKNOWN_TASKS", display_order = 23)]
    pub adopt_unknown_tasks: bool,
}

/// Where task state is kept.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreOptions {
    /// Where task state is kept: `memory` (lost at exit), `file` (under --data-dir, one instance),
    /// or postgres://user:password@host:5432/database (shared by several instances; with
    /// --amqp-url). [default: file, or DATABASE_URL when that is set]
    #[arg(long, global = true, env = "STORE", value_parser = QuietParser(parse_store), hide_env_values = true, display_order = 23)]
    pub store: Option<StoreKind>,

    /// PostgreSQL URL used when --store is not given.
    #[arg(long, global = true, env = "DATABASE_URL", value_parser = QuietParser(parse_database_url), hide_env_values = true, display_order = 24)]
    pub database_url: Option<Secret<String>>,

    /// Directory of the file store.
    #[arg(long, global = true, env = "DATA_DIR", default_value = "data", display_order = 25)]
    pub data_dir: PathBuf,

    /// How long finished tasks stay readable before they are removed.
    #[arg(long, global = true, env = "RETENTION", default_value = "7d", value_parser = parse_duration, display_order = 26)]
    pub retention: Duration,

    /// With PostgreSQL: how long a task whose turn has come may go without a message on the
    /// queue (while none wait there) before it is handed to the queue again; the fourth time, it
    /// fails. Default: twice the call timeout plus 10s.
    #[arg(long, global = true, env = "RECONCILE_AFTER", value_parser = parse_duration, display_order = 27)]
    pub reconcile_after: Option<Duration>,
}

/// RabbitMQ: where it is and which queues carry tasks and outcomes.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerOptions {
    /// RabbitMQ URL, like amqp://guest:guest@127.0.0.1:5672/%2f. Unset: the in-process queue.
    #[arg(long, global = true, env = "AMQP_URL", value_parser = QuietParser(parse_amqp_url), hide_env_values = true, display_order = 12)]
    pub amqp_url: Option<Secret<String>>,

    /// Queue of configuration tasks.
    #[arg(long, global = true, env = "QUEUE", default_value = "config_tasks", value_parser = parse_queue_name, display_order = 13)]
    pub queue: String,

    /// Queue on which workers in another process report outcomes to Service B.
    #[arg(long, global = true, env = "RESULTS_QUEUE", default_value = "config_results", value_parser = parse_queue_name, display_order = 14)]
    pub results_queue: String,

    /// Type of the task queue and its dead-letter queue on RabbitMQ. classic: what the original system
    /// declares, so it keeps working beside cpe-config. quorum: replicated across RabbitMQ nodes, with a
    /// delivery limit; a classic queue of the same name must be drained and deleted first (or use another
    /// --queue).
    #[arg(
        long,
        global = true,
        env = "QUEUE_TYPE",
        value_enum,
        default_value = "classic",
        display_order = 15
    )]
    pub queue_type: crate::queue::amqp::QueueType,
}

/// Service B's HTTPS front, and the connection limits both servers share.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpOptions {
    /// Address Service B listens on (HTTPS).
    #[arg(
        long,
        global = true,
        env = "SERVICE_B_ADDR",
        default_value = "0.0.0.0:8081",
        display_order = 10
    )]
    pub service_b_addr: SocketAddr,

    /// A name or address Service B answers to (repeatable; comma-separated in the variable).
    /// Default: the names and addresses in the served certificate, and the listen address.
    /// Any other `Host` gets 421, so a DNS-rebinding page cannot reach it.
    #[arg(long = "public-host", global = true, env = "PUBLIC_HOST", value_delimiter = ',', value_parser = parse_public_host, display_order = 29)]
    pub public_hosts: Vec<String>,

    /// When set, Service B requires `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "API_TOKEN", value_parser = QuietParser(parse_api_token), hide_env_values = true, display_order = 28)]
    pub api_token: Option<Secret<String>>,

    /// A file of named tokens with scopes (read, operate, admin), made by `cpe-config token
    /// create` and read again when it changes; refused when others than its owner may read it.
    #[arg(long, global = true, env = "TOKENS_FILE", display_order = 29)]
    pub tokens_file: Option<std::path::PathBuf>,

    /// Open HTTPS connections allowed at once in this process (both services); over it new
    /// connections wait in the listen backlog.
    #[arg(long, global = true, env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), display_order = 30)]
    pub max_connections: u32,

    /// Longest a client may take to send a request body once its head arrived; then 408.
    #[arg(long, global = true, env = "BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration, display_order = 31)]
    pub body_timeout: Duration,

    /// An HTTP/2 connection with no request in flight for this long is closed.
    #[arg(long, global = true, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration, display_order = 32)]
    pub idle_timeout: Duration,
}

impl StoreOptions {
    /// The store chosen by --store, else by DATABASE_URL, else the file store.
    pub fn kind(&self) -> StoreKind {
        match (&self.store, &self.database_url) {
            (Some(store), _) => store.clone(),
            (None, Some(url)) => StoreKind::Postgres(url.expose().clone()),
            (None, None) => StoreKind::File,
        }
    }
}

impl WorkerOptions {
    /// Where workers call Service A; in one process, the Service A bound next to them.
    pub fn service_a_url(&self, bound_service_a: Option<SocketAddr>) -> String {
        match (&self.service_a_url, bound_service_a) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) => format!("https://localhost:{}", addr.port()),
            (None, None) => "https://localhost:8080".into(),
        }
    }
}
