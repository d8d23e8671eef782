//! The client subcommands of the real binary against a running cpe-config over HTTPS: exit codes,
//! output for people and for scripts, and a password that is never printed.

mod common;

use common::process::Process;
use std::process::{Command, Output};
use std::time::Duration;

const PASSWORD: &str = "password-from-a-file";

fn server(extra: &[&str]) -> (Process, String) {
    let mut args = vec![
        "--service-a-addr=127.0.0.1:0".to_string(),
        "--service-b-addr=127.0.0.1:0".into(),
        "--store=memory".into(),
        "--config-delay=200ms".into(),
        format!("--certs-dir={}", common::certs_dir().display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let process = Process::spawn(&args, "info");
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    (process, format!("https://localhost:{}", b.port()))
}

fn client(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .args(args)
        .args(["--url", url])
        .arg(format!("--certs-dir={}", common::certs_dir().display()))
        .env_remove("API_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn everything(output: &Output) -> String {
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
