//! Command line and environment: every option has a flag and a variable, and is checked at start.
//!
//! Parts: the command line and the top-level options here; the option groups by concern in
//! `options`; the value parsers in `parse`.

mod options;
mod parse;

use crate::duration::parse_duration;
use clap::{Parser, Subcommand, ValueEnum};
pub use options::{BrokerOptions, HttpOptions, ServiceAOptions, StoreOptions, WorkerOptions};
use parse::parse_https_url;
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
    /// Manage the named tokens of --tokens-file.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Client: configure every device of a CSV or JSON-lines file; safe to run again after an
    /// interruption (nothing is created twice).
    Campaign(crate::client::args::CampaignArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Add a token to --tokens-file and print it, once: only its SHA-256 is kept. A running
    /// instance takes it within seconds.
    Create {
        /// The token's name, shown in the logs (1 to 64 letters, digits, - _ .).
        name: String,
        /// read: every GET; operate: also create, cancel, retry and bulk; admin: everything.
        #[arg(long)]
        scope: crate::tokens::Scope,
        /// How long it is valid (90d, 12h); valid until removed when not given.
        #[arg(long, value_parser = crate::duration::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// List the tokens of --tokens-file: name, scope, expiry (never a token or its digest).
    List,
    /// Remove a token from --tokens-file: a running instance refuses it within seconds.
    Remove {
        /// The token's name.
        name: String,
    },
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

    /// On SIGTERM, SIGINT or SIGHUP, how long running configurations and requests in flight may take
    /// to finish.
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

    /// How long a due task may lack a message before the reconciler hands it on again: past a
    /// call in flight and a delivery waiting for a worker.
    pub fn reconcile_after(&self) -> Duration {
        self.store
            .reconcile_after
            .unwrap_or(self.call_timeout() * 2 + Duration::from_secs(10))
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
