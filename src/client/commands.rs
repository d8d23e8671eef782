//! One function per client subcommand.

use super::args::{ConfigureArgs, RetryArgs, StatusArgs, TaskArgs, TasksArgs};
use super::{message, Client, Outcome};
use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::IsTerminal;
use std::time::Instant;

pub async fn configure(client: &Client, args: &ConfigureArgs) -> Result<Outcome> {
    let body = json!({"timeoutInSeconds": args.timeout, "parameters": parameters(args)?});
    let (status, answer) = client
        .call(
            Method::POST,
            &format!("/api/v1/equipment/cpe/{}", args.device),
            Some(&body),
        )
        .await?;
    if status != 200 {
        client.print_json(&answer);
        bail!("not accepted ({status}): {}", message(&answer));
    }
    let task = answer["taskId"]
        .as_str()
        .context("the answer names no taskId")?
        .to_owned();
    if !client.print_json(&answer) {
        crate::say!("task {task} accepted for {}", args.device);
    }
    if !args.wait {
        return Ok(Outcome::Done);
    }
    wait_final(client, &args.device, &task).await
}

pub async fn status(client: &Client, args: &StatusArgs) -> Result<Outcome> {
    if args.wait {
        return wait_final(client, &args.device, &args.task).await;
    }
    let answer = task_status(client, &args.device, &args.task, None).await?;
    if !client.print_json(&answer) {
        crate::say!("{}", describe(&answer));
    }
    Ok(outcome_of(&answer).unwrap_or(Outcome::Done))
}

pub async fn tasks(client: &Client, args: &TasksArgs) -> Result<Outcome> {
    let path = match &args.device {
        Some(device) => format!("/api/v1/equipment/cpe/{device}/tasks"),
        None => "/api/v1/tasks".to_owned(),
    };
    let mut query = vec![format!("limit={}", args.limit.clamp(1, 500))];
    query.extend(args.status.iter().map(|s| format!("status={s}")));
    let (status, answer) = client
        .call(Method::GET, &format!("{path}?{}", query.join("&")), None)
        .await?;
    if status != 200 {
        if client.print_json(&answer) {
            return Ok(Outcome::Refused);
        }
        bail!("{}", message(&answer));
    }
    let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
    // For scripts: one task per line (JSON lines), so `| head`, `grep` and `jq -c` work line by line.
    if client.output == super::args::Output::Json {
        tasks.iter().for_each(|task| crate::say!("{task}"));
        return Ok(Outcome::Done);
    }
    crate::say!(
        "{:<36}  {:<16}  {:<9}  {:>8}  {:<24}  LAST ERROR",
        "TASK",
        "DEVICE",
        "STATUS",
        "ATTEMPTS",
        "CREATED"
    );
    for task in &tasks {
        crate::say!(
            "{:<36}  {:<16}  {:<9}  {:>8}  {:<24}  {}",
            text(&task["taskId"]),
            text(&task["equipmentId"]),
            text(&task["status"]),
            text(&task["attempts"]),
            text(&task["createdAt"]),
            text(&task["lastError"]),
        );
    }
    if !answer["nextCursor"].is_null() {
        crate::say!("(more: raise --limit, up to 500, or page with the API's cursor)");
    }
    Ok(Outcome::Done)
}

pub async fn cancel(client: &Client, args: &TaskArgs) -> Result<Outcome> {
    let path = format!("/api/v1/equipment/cpe/{}/task/{}", args.device, args.task);
    let (status, answer) = client.call(Method::DELETE, &path, None).await?;
    if !client.print_json(&answer) {
        crate::say!("{}", message(&answer));
    }
    Ok(if status == 200 { Outcome::Done } else { Outcome::Refused })
}

pub async fn retry(client: &Client, args: &RetryArgs) -> Result<Outcome> {
    let (path, body) = match (&args.device, &args.task) {
        (Some(device), Some(task)) => (format!("/api/v1/equipment/cpe/{device}/task/{task}/retry"), None),
        _ if args.all_failed => (
            "/api/v1/tasks/retry".to_owned(),
            // No devices named: every failed task, which the route needs spelled out.
            Some(json!({"status": ["failed"], "equipmentIds": args.devices, "all": args.devices.is_empty()})),
        ),
        _ => bail!("name a task (DEVICE TASK) or ask for --all-failed"),
    };
    let (status, answer) = client.call(Method::POST, &path, body.as_ref()).await?;
    if !client.print_json(&answer) {
        match (status, answer.get("taskId"), answer.get("done")) {
            (200, Some(task), _) => crate::say!("retried as task {}", text(task)),
            (200, _, Some(done)) => crate::say!("retried {done}, skipped {}", answer["skipped"]),
            _ => crate::say!("{}", message(&answer)),
        }
    }
    Ok(if status == 200 { Outcome::Done } else { Outcome::Refused })
}

/// Long-polls until the task is final, with a spinner and the elapsed time on a terminal.
async fn wait_final(client: &Client, device: &str, task: &str) -> Result<Outcome> {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    loop {
        let answer = task_status(client, device, task, Some("60s")).await?;
        if let Some(outcome) = outcome_of(&answer) {
            if let Some(bar) = &spinner {
                bar.finish_and_clear();
            }
            if !client.print_json(&answer) {
                crate::say!("{} after {:.0?}", describe(&answer), started.elapsed());
            }
            return Ok(outcome);
        }
        if let Some(bar) = &spinner {
            bar.set_message(format!(
                "task {task}: {} ({:.0?})",
                text(&answer["status"]),
                started.elapsed()
            ));
        }
    }
}

async fn task_status(client: &Client, device: &str, task: &str, wait: Option<&str>) -> Result<Value> {
    let mut path = format!("/api/v1/equipment/cpe/{device}/task/{task}");
    if let Some(wait) = wait {
        path.push_str(&format!("?wait={wait}"));
    }
    let (status, answer) = client.call(Method::GET, &path, None).await?;
    if status != 200 {
        bail!("{}", message(&answer));
    }
    Ok(answer)
}

/// None while the task is queued or running.
fn outcome_of(answer: &Value) -> Option<Outcome> {
    match answer["code"].as_u64() {
        Some(200) => Some(Outcome::Done),
        Some(204) => None,
        _ => Some(Outcome::TaskFailed),
    }
}

fn describe(answer: &Value) -> String {
    let attempts = answer["attempts"].as_u64().unwrap_or(0);
    let plural = if attempts == 1 { "" } else { "s" };
    let mut line = format!("{} ({attempts} attempt{plural})", text(&answer["status"]));
    if let Some(error) = answer["lastError"].as_str() {
        line.push_str(&format!(": {error}"));
    }
    line
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(
        || {
            if value.is_null() {
                String::new()
            } else {
                value.to_string()
            }
        },
        str::to_owned,
    )
}

/// The request's parameters from the flags; the password from its file unless given in clear.
fn parameters(args: &ConfigureArgs) -> Result<Map<String, Value>> {
    let mut parameters = Map::new();
    if let Some(username) = &args.username {
        parameters.insert("username".into(), json!(username));
    }
    let password = match (&args.password_file, &args.password) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --password-file {}", file.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        (None, password) => password.clone(),
    };
    if let Some(password) = password {
        parameters.insert("password".into(), json!(password));
    }
    if let Some(vlan) = args.vlan {
        parameters.insert("vlan".into(), json!(vlan));
    }
    if !args.interfaces.is_empty() {
        parameters.insert("interfaces".into(), json!(args.interfaces));
    }
    for pair in &args.params {
        let (key, value) = super::cells::param(pair).map_err(anyhow::Error::msg)?;
        parameters.insert(key, value);
    }
    Ok(parameters)
}
