//! The client subcommands of the real binary against a running cpe-config over HTTPS: exit codes,
//! output for people and for scripts, and a password that is never printed.

use crate::common::process::{local_args, Process};
use std::process::{Command, Output};
use std::time::Duration;

const PASSWORD: &str = "password-from-a-file";

fn server(extra: &[&str]) -> (Process, String) {
    let args = local_args(&[&["--config-delay=200ms"], extra].concat());
    let process = Process::spawn(&args, "info");
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    (process, format!("https://localhost:{}", b.port()))
}

/// The binary as a client of `url`, with `args`, its output captured.
pub(crate) fn client_command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cpe-config"));
    command
        .args(args)
        .args(["--url", url])
        .arg(format!("--certs-dir={}", crate::common::certs_dir().display()))
        .env_remove("API_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

pub(crate) fn client(url: &str, args: &[&str]) -> Output {
    client_command(url, args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn everything(output: &Output) -> String {
    format!("{}{}", stdout(output), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn configure_wait_status_tasks_and_cancel() {
    let (_server, url) = server(&[]);
    let password_file = std::env::temp_dir().join(format!("cpe-password-{}", uuid::Uuid::new_v4()));
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let configured = client(
        &url,
        &[
            "configure",
            "client01",
            "--vlan",
            "534",
            "--interfaces",
            "1,2,3,4",
            "--username",
            "admin",
            "--password-file",
            password_file.to_str().unwrap(),
            "--wait",
        ],
    );
    assert_eq!(configured.status.code(), Some(0), "{}", everything(&configured));
    let out = stdout(&configured);
    assert!(out.contains("accepted") && out.contains("completed"), "{out}");
    assert!(!everything(&configured).contains(PASSWORD));
    let task = out.split_whitespace().nth(1).unwrap().to_owned();

    let status = client(&url, &["status", "client01", &task, "--output", "json"]);
    assert_eq!(status.status.code(), Some(0));
    let answer: serde_json::Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(answer["code"], 200);

    let listed = client(&url, &["tasks", "client01"]);
    assert_eq!(listed.status.code(), Some(0), "{}", everything(&listed));
    assert!(stdout(&listed).contains(&task) && stdout(&listed).contains("completed"));
    assert!(!stdout(&listed).contains('\u{1b}'), "no colour when not on a terminal");

    let cancel = client(&url, &["cancel", "client01", &task]);
    assert_eq!(cancel.status.code(), Some(2), "a completed task cannot be cancelled");
    assert!(
        stdout(&cancel).contains("cannot be cancelled"),
        "{}",
        everything(&cancel)
    );
    std::fs::remove_file(password_file).unwrap();
}

#[test]
fn a_failed_task_exits_one_and_retry_all_failed_runs_it_again() {
    let (_server, url) = server(&["--fail-rate=1.0", "--max-attempts=1"]);
    let configured = client(&url, &["configure", "client02", "--vlan", "7", "--wait"]);
    assert_eq!(configured.status.code(), Some(1), "{}", everything(&configured));
    assert!(stdout(&configured).contains("failed"));
    let retried = client(&url, &["retry", "--all-failed", "--device", "client02"]);
    assert_eq!(retried.status.code(), Some(0), "{}", everything(&retried));
    assert!(stdout(&retried).contains("retried 1"), "{}", everything(&retried));
    // No device named: every failed task, spelled out to the route as `"all": true`.
    let all = client(&url, &["retry", "--all-failed"]);
    assert_eq!(all.status.code(), Some(0), "{}", everything(&all));
    assert!(stdout(&all).contains("retried "), "{}", everything(&all));
}

#[test]
fn bad_input_and_no_answer_exit_two_with_a_message() {
    let (_server, url) = server(&[]);
    let bad = client(&url, &["configure", "bad-id"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        everything(&bad).contains("equipment is not found"),
        "{}",
        everything(&bad)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = client(&format!("https://localhost:{closed}"), &["tasks"]);
    assert_eq!(nobody.status.code(), Some(2));
    assert!(everything(&nobody).contains("no answer"), "{}", everything(&nobody));
    let help = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .args(["configure", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&help).contains("--password-file"));
}

fn campaign_file(name: &str, rows: usize, bad: bool) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cpe-campaign-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("serial,timeoutInSeconds,username,password,vlan,interfaces\n");
    for n in 0..rows {
        text.push_str(&format!("{name}{n:04},14,admin,secret{n},534,1 2 3 4\n"));
        if bad && n == 3 {
            text.push_str("not-a-serial,14,admin,x,1,1\n");
        }
    }
    let path = dir.join("devices.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every task Service B holds, newest first, through the API.
async fn all_tasks(url: &str) -> Vec<serde_json::Value> {
    let (status, page) =
        crate::common::send(crate::common::client().get(format!("{url}/api/v1/tasks?limit=500"))).await;
    assert_eq!(status, 200, "{page}");
    page["tasks"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_reports_bad_rows_writes_results_and_sums_up() {
    let (_server, url) = server(&[]);
    let file = campaign_file("campa", 40, true);
    let done = client(
        &url,
        &["campaign", file.to_str().unwrap(), "--wait", "--concurrency", "10"],
    );
    let all = everything(&done);
    assert_eq!(
        done.status.code(),
        Some(2),
        "a bad row makes the exit code non-zero: {all}"
    );
    assert!(
        all.contains("line 6: skipped, not sent") && all.contains("not-a-serial"),
        "{all}"
    );
    assert!(
        stdout(&done).contains("completed") && stdout(&done).contains("40"),
        "{all}"
    );
    assert!(!all.contains("secret1"), "no password is printed");
    let results = std::fs::read_to_string(file.with_extension("results.csv")).unwrap();
    assert_eq!(results.lines().count(), 41, "{results}");
    assert_eq!(
        results.lines().filter(|l| l.contains(",completed,")).count(),
        40,
        "{results}"
    );
    assert_eq!(all_tasks(&url).await.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_campaign_run_again_ends_every_row_exactly_once() {
    let (_server, url) = server(&["--config-delay=300ms"]);
    let file = campaign_file("campb", 200, false);
    let mut first = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .args([
            "campaign",
            file.to_str().unwrap(),
            "--wait",
            "--concurrency",
            "5",
            "--url",
            &url,
        ])
        .arg(format!("--certs-dir={}", crate::common::certs_dir().display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url_for_poll = url.clone();
    crate::common::eventually(Duration::from_secs(30), "the first run to create some tasks", || {
        let url = url_for_poll.clone();
        async move { (all_tasks(&url).await.len() >= 20).then_some(()) }
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let before = all_tasks(&url).await.len();
    assert!(before < 200, "the first run was cut short ({before} tasks)");

    let again = client(
        &url,
        &["campaign", file.to_str().unwrap(), "--wait", "--concurrency", "50"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", everything(&again));
    let tasks = all_tasks(&url).await;
    assert_eq!(tasks.len(), 200, "one task per row, none twice");
    let mut serials: Vec<&str> = tasks.iter().map(|t| t["equipmentId"].as_str().unwrap()).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 200);
    assert!(
        tasks.iter().all(|t| t["status"] == "completed"),
        "every row ends completed"
    );
}

/// `cpe-config tasks | head -1`: a reader that goes away ends the command quietly, with 0.
#[test]
fn a_closed_standard_output_ends_a_listing_quietly_with_zero() {
    let (_server, url) = server(&[]);
    let created = client(&url, &["configure", "pipe0001", "--vlan", "5"]);
    assert_eq!(created.status.code(), Some(0), "{}", everything(&created));
    let mut listing = client_command(&url, &["tasks"]).spawn().unwrap();
    // The reading end is closed before the command writes its first line.
    drop(listing.stdout.take());
    let done = listing.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(done.stderr.is_empty(), "{}", String::from_utf8_lossy(&done.stderr));

    // For scripts, a listing is JSON lines: one task a line.
    client(&url, &["configure", "pipe0002", "--vlan", "5"]);
    let lines = client(&url, &["tasks", "--output", "json"]);
    assert_eq!(lines.status.code(), Some(0), "{}", everything(&lines));
    let tasks: Vec<serde_json::Value> = stdout(&lines)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tasks.len(), 2, "{}", stdout(&lines));
    assert!(tasks.iter().all(|t| t["taskId"].is_string()), "{tasks:?}");
}
