//! The client subcommands: talk to Service B's API for people at a terminal and for scripts.
//! Exit codes: 0 done (completed), 1 the task failed or was cancelled, 2 bad input or no answer.

pub mod args;
mod campaign;
mod cells;
mod commands;
mod rows;

use anyhow::{anyhow, Context, Result};
use args::{Connection, Output};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

pub use commands::{cancel, configure, retry, status, tasks};

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done = 0,
    TaskFailed = 1,
    Refused = 2,
}

/// Service B, as one command talks to it.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    pub output: Output,
}

impl Client {
    pub fn new(connection: &Connection, certs_dir: &Path, token: Option<String>) -> Result<Self> {
        let cacert = connection
            .cacert
            .clone()
            .unwrap_or_else(|| certs_dir.join(crate::tls::CERT_FILE));
        let pem = std::fs::read(&cacert).with_context(|| {
            format!(
                "cannot read the certificate to trust, {} (see --cacert)",
                cacert.display()
            )
        })?;
        let trust = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", cacert.display()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([trust])
            .connect_timeout(Duration::from_secs(10))
            // A long-poll waits up to 60 s: leave room for it.
            .timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            http,
            base: connection.url.trim_end_matches('/').to_owned(),
            token,
            output: connection.output,
        })
    }

    /// Sends one request; the HTTP status and the JSON answer, or why there was none.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request
            .send()
            .await
            .map_err(|e| anyhow!("{}", crate::provisioner::error_chain(&e.without_url())))
            .with_context(|| format!("no answer from {}", crate::redact::redact_url(&self.base)))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("the answer was cut off")?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, json))
    }

    /// Prints Service B's answer as JSON when asked to (scripts), and says whether it did.
    pub fn print_json(&self, answer: &Value) -> bool {
        if self.output == Output::Json {
            crate::say!("{answer}");
        }
        self.output == Output::Json
    }
}

/// The message of an error answer, for people.
pub fn message(answer: &Value) -> String {
    answer["message"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned)
}

/// Runs a client subcommand; None when `command` is not one. Errors go to stderr as one plain
/// line (no log format), and exit with 2.
pub async fn run(command: &crate::config::Command, config: &crate::config::Config) -> Option<std::process::ExitCode> {
    use crate::config::Command;
    let connection = match command {
        Command::Configure(args) => &args.connection,
        Command::Status(args) => &args.connection,
        Command::Tasks(args) => &args.connection,
        Command::Cancel(args) => &args.connection,
        Command::Retry(args) => &args.connection,
        Command::Campaign(args) => &args.connection,
        _ => return None,
    };
    let result = match Client::new(
        connection,
        &config.certs_dir,
        config.http.api_token.as_ref().map(|token| token.expose().clone()),
    ) {
        Err(error) => Err(error),
        Ok(client) => match command {
            Command::Configure(args) => configure(&client, args).await,
            Command::Status(args) => status(&client, args).await,
            Command::Tasks(args) => tasks(&client, args).await,
            Command::Cancel(args) => cancel(&client, args).await,
            Command::Retry(args) => retry(&client, args).await,
            Command::Campaign(args) => campaign::run(&client, args).await,
            _ => unreachable!("only client commands reach here"),
        },
    };
    Some(match result {
        Ok(outcome) => std::process::ExitCode::from(outcome as u8),
        Err(error) => {
            eprintln!("cpe-config: {error:#}");
            std::process::ExitCode::from(Outcome::Refused as u8)
        }
    })
}
