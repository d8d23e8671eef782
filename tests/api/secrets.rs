//! Secrets stay secret: no parameter value outside the allow-list, no bearer token and no URL
//! credentials appear in the log at debug level, nor in `--help`.

use crate::common::process::{local_args, Process};
use std::time::Duration;

const TOKEN: &str = "bearer-token-value-0123456789";
const SECRETS: [&str; 9] = [
    "password-value",
    "psk-value",
    "pppoe-value",
    "community-value",
    "pwd-value",
    "phrase-value",
    "7654321",
    "PRIVATE KEY",
    "url-password",
];

// Several threads: `terminate` blocks one while the test's client connections answer the server's
// GOAWAY on another, so the clean stop is not held by connections nobody serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_debug_log() {
    // Service A's port is not known before start: the credentials ride on a URL that points at a
    // port nobody listens on, so the worker's calls fail and their errors are logged too.
    let args = local_args(&[
        "--config-delay=10ms",
        &format!("--api-token={TOKEN}"),
        "--service-a-url=https://ops:url-password@localhost:9",
        "--max-attempts=2",
        "--retry-base=10ms",
    ]);
    let mut process = Process::spawn(&args, "debug");
    let a = process.wait_for_addr("Service A", Duration::from_secs(30));
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    let body = r#"{"timeoutInSeconds": 14, "parameters": {"username": "ops", "password": "password-value",
        "wpa_psk": "psk-value", "pppoe_pass": "pppoe-value", "snmp_community": "community-value",
        "admin_pwd": "pwd-value", "wifi_passphrase": "phrase-value", "pin": 7654321,
        "cert": "-----BEGIN PRIVATE KEY-----", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#;
    // Service A itself, called directly: it logs the parameters it configures at debug.
    let (status, answer) = crate::common::send(
        crate::common::client()
            .post(crate::common::url(Some(a), "/api/v1/equipment/cpe/abc123"))
            .body(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = crate::common::send(
        crate::common::client()
            .post(crate::common::url(Some(b), "/api/v1/equipment/cpe/abc123"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let task = answer["taskId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/equipment/cpe/abc123/task/{task}");
    let done = crate::common::eventually(Duration::from_secs(20), "the task to fail", || async {
        let (_, body) = crate::common::send(
            crate::common::client()
                .get(crate::common::url(Some(b), &path))
                .header("Authorization", format!("Bearer {TOKEN}")),
        )
        .await;
        (body["code"] == 500).then_some(body)
    })
    .await;
    for secret in SECRETS.iter().chain([&TOKEN]) {
        assert!(
            !done.to_string().contains(secret),
            "{secret} in the status answer {done}"
        );
    }
    assert_eq!(process.terminate(), Some(0));
    let log = process
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|line| line.to_string())
        .collect::<Vec<_>>();
    assert!(log.len() > 20, "a debug log has more to say: {log:?}");
    for secret in SECRETS.iter().chain([&TOKEN]) {
        let leaks: Vec<_> = log.iter().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} logged: {leaks:?}");
    }
}

#[test]
fn help_shows_no_credentials_from_the_environment() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .arg("--help")
        .env("SERVICE_A_URL", "https://ops:url-password@device-api:8443")
        .env("AMQP_URL", "amqp://guest:url-password@rabbit:5672/%2f")
        .env("API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("SERVICE_A_URL"), "{help}");
    assert!(!help.contains("url-password") && !help.contains(TOKEN), "{help}");
}
