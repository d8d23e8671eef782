//! The command line of the client subcommands: `configure`, `status`, `tasks`, `cancel`, `retry`,
//! `campaign`.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Where Service B is and how to talk to it; shared by every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Service B's base URL.
    #[arg(long, env = "CPE_URL", default_value = "https://localhost:8081")]
    pub url: String,
    /// Certificate to trust for Service B [default: <certs-dir>/cert.pem].
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// `text` for people, `json` (Service B's answers, one per line) for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigureArgs {
    /// The device's equipment id (serial): 6 or more letters and digits.
    pub device: String,
    #[arg(long)]
    pub vlan: Option<i64>,
    /// Interfaces, comma-separated: 1,2,3,4.
    #[arg(long, value_delimiter = ',')]
    pub interfaces: Vec<i64>,
    #[arg(long)]
    pub username: Option<String>,
    /// File whose first line is the password (kept out of the shell history and `ps`).
    #[arg(long, conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    /// The password itself, in clear on the command line: prefer --password-file.
    #[arg(long)]
    pub password: Option<String>,
    /// Any other parameter, as KEY=VALUE, sent as text (`pin=0012` is "0012"); a typed key sends a
    /// number or a list: `port:int=80`, `ports:ints=80,443`. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The device request's timeoutInSeconds.
    #[arg(long, default_value_t = 14)]
    pub timeout: u64,
    /// Wait until the task is final and exit 0 (completed) or 1 (failed or cancelled).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The device's equipment id (serial).
    pub device: String,
    /// The task id that `configure` or the API answered.
    pub task: String,
    /// Wait until the task is final; the exit code says how it ended.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// Only this device's tasks.
    pub device: Option<String>,
    /// Only tasks in this state (queued, running, completed, failed, cancelled); repeatable.
    #[arg(long)]
    pub status: Vec<String>,
    /// Most tasks to show (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// The device's equipment id (serial).
    pub device: String,
    /// The task id.
    pub task: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// The device of the one task to retry (with TASK).
    #[arg(requires = "task", conflicts_with = "all_failed")]
    pub device: Option<String>,
    /// The failed task to retry.
    pub task: Option<String>,
    /// Retry every failed task instead (of the --device ones, when given).
    #[arg(long)]
    pub all_failed: bool,
    /// With --all-failed: only these devices; repeatable.
    #[arg(long = "device", requires = "all_failed")]
    pub devices: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub struct CampaignArgs {
    /// CSV with a header row (`serial`, optional `timeoutInSeconds`, then one column per parameter;
    /// cells are text but `vlan` (a number) and `interfaces` (numbers: `1 2 3 4`); type other
    /// columns in the header: `port:int`, `ports:ints`), or JSON lines of
    /// `{"serial": ..., "timeoutInSeconds": ..., "parameters": {...}}`.
    pub file: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Watch every task until it is final; the exit code is 0 only if every row completed.
    #[arg(long)]
    pub wait: bool,
    /// Where to write serial, taskId, status and last error per row [default: <file>.results.csv].
    #[arg(long)]
    pub results: Option<PathBuf>,
    #[command(flatten)]
    pub connection: Connection,
}
