//! Command line and environment: every option has a flag and a variable, and is checked at start.

use crate::duration::parse_duration;
use crate::secret::Secret;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "cpe-config",
    version,
    args_override_self = true,
    about = "Configures customer premises equipment through an asynchronous task front",
    long_about = "Configures customer premises equipment (home routers) through an asynchronous task front.\n\n\
        Service A (HTTPS, --service-a-addr) configures one device synchronously, which takes --config-delay.\n\
        Service B (HTTPS, --service-b-addr) accepts a configuration task at once and reports its status.\n\
        Workers take tasks from the queue (RabbitMQ when --amqp-url is set, otherwise in-process), call\n\
        Service A and record the outcome. With no options everything runs in one process.\n\n\
        Every option can also be set through the environment variable shown. RUST_LOG sets the log level\n\
        (default: info)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a self-signed certificate pair (cert.pem, key.pem) into --certs-dir and exit.
    Certs {
        /// Replace an existing pair.
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Succeed without a change when the pair exists already (for a one-shot container).
        #[arg(long)]
        if_missing: bool,
    },
    /// Ask this host's own service whether it is ready (GET /readyz over HTTPS, trusting
    /// --certs-dir/cert.pem) and exit 0 if it is, 1 if not: a container healthcheck.
    Healthcheck {
        /// What to ask [default: https://localhost:<port of --service-b-addr>/readyz, or of
        /// --service-a-addr with --role service-a]
        #[arg(long, value_parser = parse_https_url)]
        url: Option<String>,
    },
    /// Client: create a configuration task for one device (and wait for its outcome with --wait).
    Configure(crate::client::args::ConfigureArgs),
    /// Client: show a task's status (and wait until it is final with --wait).
    Status(crate::client::args::StatusArgs),
    /// Client: list tasks, newest first, of all devices or one.
    Tasks(crate::client::args::TasksArgs),
    /// Client: cancel a queued task.
    Cancel(crate::client::args::TaskArgs),
    /// Client: retry a failed task, or every failed task with --all-failed.
    Retry(crate::client::args::RetryArgs),
    /// Client: configure every device of a CSV or JSON-lines file; safe to run again after an
    /// interruption (nothing is created twice).
    Campaign(crate::client::args::CampaignArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Service A, Service B, the registry and the workers in one process.
    All,
    /// Only Service A, the device simulation.
    ServiceA,
    /// Only Service B and the registry; needs --amqp-url.
    ServiceB,
    /// Only the workers; needs --amqp-url.
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where task state is kept: `memory`, `file`, or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Task state in memory: lost when the process stops.
    Memory,
    /// Task state in an embedded database file under --data-dir: survives restarts.
    File,
    /// Task state in PostgreSQL, shared by every instance pointing at the same database.
    Postgres(String),
}

/// The URL holds the database password: never shown.
impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::File => f.write_str("File"),
            Self::Postgres(_) => f.write_str("Postgres(<url hidden>)"),
        }
    }
}

/// A value parser for values that hold a password: on error, clap's own message would quote the
/// value; this one names the option and the rule only.
#[derive(Clone)]
struct QuietParser<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for QuietParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let option = arg.map_or_else(|| "the value".to_owned(), |arg| format!("'{arg}'"));
        let refuse = |rule: String| {
            let message = format!("invalid value for {option} (not shown, it may hold a password): {rule}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("it is not UTF-8".into()))?;
        (self.0)(text).map_err(refuse)
    }
}

fn parse_store(raw: &str) -> Result<StoreKind, String> {
    match raw {
        "memory" => Ok(StoreKind::Memory),
        "file" => Ok(StoreKind::File),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The parser's own message may quote the URL, password included: name the rule instead.
            url.parse::<postgres::Config>().map_err(|_| {
                "the PostgreSQL URL is not valid: it must look like postgres://user:password@host:5432/database"
                    .to_string()
            })?;
            Ok(StoreKind::Postgres(url.to_owned()))
        }
        _ => Err("must be `memory`, `file`, or a URL like postgres://user:password@host:5432/database".into()),
    }
}

/// The options of the whole process. Each part's options sit in a group of their concern, so a part is
/// handed only what it uses. Every option keeps its place in `--help` through `display_order`: the
/// place it had before the grouping, after the eight subcommands (clap numbers those first, and a
/// subcommand's help sorts its own options among these by the same numbers).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Which part of the system this process runs.
    #[arg(
        long,
        global = true,
        env = "ROLE",
        value_enum,
        default_value = "all",
        display_order = 8
    )]
    pub role: Role,

    #[command(flatten)]
    pub service_a: ServiceAOptions,

    #[command(flatten)]
    pub http: HttpOptions,

    #[command(flatten)]
    pub worker: WorkerOptions,

    #[command(flatten)]
    pub broker: BrokerOptions,

    #[command(flatten)]
    pub store: StoreOptions,

    /// Directory of cert.pem and key.pem; a self-signed pair is generated there when missing.
    #[arg(long, global = true, env = "CERTS_DIR", default_value = "certs", display_order = 16)]
    pub certs_dir: PathBuf,

    /// On SIGTERM or SIGINT, how long running configurations may take to finish.
    #[arg(long, global = true, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration, display_order = 27)]
    pub shutdown_grace: Duration,

    /// Log format.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        display_order = 29
    )]
    pub log_format: LogFormat,
}

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

    /// When set, Service B requires `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "API_TOKEN", value_parser = QuietParser(parse_api_token), hide_env_values = true, display_order = 28)]
    pub api_token: Option<Secret<String>>,

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

impl Config {
    /// Checks that need more than one option; the message names the options at fault.
    pub fn validate(&self) -> Result<(), String> {
        let broker = &self.broker;
        if matches!(self.role, Role::ServiceB | Role::Worker) && broker.amqp_url.is_none() {
            return Err(format!(
                "--role {} needs --amqp-url (AMQP_URL): separate processes exchange tasks through RabbitMQ",
                self.role.to_possible_value().expect("roles have names").get_name()
            ));
        }
        if broker.queue_type == crate::queue::amqp::QueueType::Quorum && broker.amqp_url.is_none() {
            return Err("--queue-type quorum needs --amqp-url (AMQP_URL): it is a kind of RabbitMQ queue".into());
        }
        if broker.queue == broker.results_queue {
            return Err("--queue and --results-queue must name different queues".into());
        }
        let http = &self.http;
        if http
            .api_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16 || t.expose().chars().any(|c| !c.is_ascii_graphic()))
        {
            return Err("--api-token (API_TOKEN) must be at least 16 printable characters without spaces".into());
        }
        if self.worker.call_timeout == Some(Duration::ZERO) {
            return Err("--call-timeout must be longer than 0s".into());
        }
        if http.body_timeout.is_zero() || http.idle_timeout.is_zero() {
            return Err("--body-timeout and --idle-timeout must be longer than 0s".into());
        }
        Ok(())
    }

    /// Needs two groups: the default follows Service A's delay.
    pub fn call_timeout(&self) -> Duration {
        self.worker
            .call_timeout
            .unwrap_or(self.service_a.config_delay * 2 + Duration::from_secs(30))
    }

    /// The longest a worker can legitimately hold a task: waiting out an earlier call, then every
    /// attempt at its deadline with the longest backoff between them, and a minute of slack.
    /// Past it, a running task is failed.
    pub fn lease(&self) -> Duration {
        (self.call_timeout() + cpe_actors::retry::RetryPolicy::default().max_delay) * (self.worker.max_attempts + 1)
            + Duration::from_secs(60)
    }

    pub fn runs_service_a(&self) -> bool {
        matches!(self.role, Role::All | Role::ServiceA)
    }

    pub fn runs_service_b(&self) -> bool {
        matches!(self.role, Role::All | Role::ServiceB)
    }

    pub fn runs_workers(&self) -> bool {
        matches!(self.role, Role::All | Role::Worker)
    }
}

fn parse_https_url(raw: &str) -> Result<String, String> {
    // The message shows the value without its user info: it may hold a password.
    let shown = crate::redact::redact_url(raw);
    let rest = raw
        .strip_prefix("https://")
        .ok_or_else(|| format!("`{shown}` must start with https:// (Service A speaks HTTPS only)"))?;
    if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("`{shown}` has no host"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn parse_amqp_url(raw: &str) -> Result<Secret<String>, String> {
    if raw.starts_with("amqps://") {
        return Err("amqps:// is not supported by this build; use amqp:// on a trusted network".into());
    }
    if !raw.starts_with("amqp://") || raw.len() <= "amqp://".len() {
        return Err("must look like amqp://user:password@host:5672/%2f".into());
    }
    Ok(Secret::new(raw.to_owned()))
}

/// Any text parses; its rule (length, characters) is checked in `Config::validate`.
fn parse_api_token(raw: &str) -> Result<Secret<String>, String> {
    Ok(Secret::new(raw.to_owned()))
}

fn parse_database_url(raw: &str) -> Result<Secret<String>, String> {
    match parse_store(raw)? {
        StoreKind::Postgres(url) => Ok(Secret::new(url)),
        _ => Err("must be a URL like postgres://user:password@host:5432/database".into()),
    }
}

fn parse_queue_name(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 200
        && !raw.starts_with("amq.")
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "`{raw}` is not a usable queue name: 1 to 200 of A-Z a-z 0-9 - _ . :, not starting with amq."
        ))
    }
}

fn parse_fraction(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("`{raw}` must be a number from 0.0 to 1.0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cpe-config").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = parse(&[]).unwrap().config;
        assert_eq!(config.role, Role::All);
        assert_eq!(config.service_a.service_a_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.http.service_b_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(config.worker.service_a_url(None), "https://localhost:8080");
        assert_eq!(
            config.worker.service_a_url(Some("0.0.0.0:9443".parse().unwrap())),
            "https://localhost:9443"
        );
        assert_eq!(
            (config.broker.queue.as_str(), config.broker.results_queue.as_str()),
            ("config_tasks", "config_results")
        );
        assert_eq!(config.service_a.config_delay, Duration::from_secs(60));
        assert_eq!(config.call_timeout(), Duration::from_secs(150));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_values_are_rejected_naming_the_option() {
        for (args, option) in [
            (&["--config-delay", "soon"][..], "--config-delay"),
            (&["--service-a-url", "http://localhost:8080"], "--service-a-url"),
            (&["--amqp-url", "rabbit"], "--amqp-url"),
            (&["--workers", "0"], "--workers"),
            (&["--fail-rate", "1.5"], "--fail-rate"),
            (&["--queue", "a b"], "--queue"),
            (&["--role", "boss"], "--role"),
            (&["--service-a-addr", "localhost"], "--service-a-addr"),
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains(option), "{args:?}: {error}");
        }
    }

    #[test]
    fn options_work_after_the_subcommand_too() {
        let cli = parse(&["certs", "--certs-dir", "elsewhere", "--force"]).unwrap();
        assert_eq!(cli.config.certs_dir, PathBuf::from("elsewhere"));
        assert!(matches!(cli.command, Some(Command::Certs { force: true, .. })));
    }

    #[test]
    fn split_roles_need_a_broker() {
        let config = parse(&["--role", "worker"]).unwrap().config;
        assert!(config.validate().unwrap_err().contains("--amqp-url"));
        let config = parse(&["--role", "worker", "--amqp-url", "amqp://127.0.0.1"])
            .unwrap()
            .config;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn debug_hides_the_token_and_the_passwords() {
        let cli = parse(&[
            "--amqp-url",
            "amqp://guest:broker-password@127.0.0.1",
            "--api-token",
            "token-of-sixteen-or-more",
            "--database-url",
            "postgres://user:database-password@127.0.0.1/tasks",
        ])
        .unwrap();
        let shown = format!("{:?}", cli.config);
        for secret in ["broker-password", "token-of-sixteen-or-more", "database-password"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
