//! The real binary from the outside: help, option errors, the certs subcommand, and a clean stop.

use std::process::Command;
use std::time::Duration;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe-config"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cpe-config-cli-{name}-{}", uuid::Uuid::new_v4()))
}

#[test]
fn help_documents_every_option_with_its_environment_variable() {
    let output = binary().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (option, env) in [
        ("--role", "ROLE"),
        ("--service-a-addr", "SERVICE_A_ADDR"),
        ("--service-b-addr", "SERVICE_B_ADDR"),
        ("--service-a-url", "SERVICE_A_URL"),
        ("--amqp-url", "AMQP_URL"),
        ("--queue", "QUEUE"),
        ("--results-queue", "RESULTS_QUEUE"),
        ("--certs-dir", "CERTS_DIR"),
        ("--config-delay", "CONFIG_DELAY"),
        ("--workers", "WORKERS"),
        ("--log-format", "LOG_FORMAT"),
        ("--store", "STORE"),
        ("--shutdown-grace", "SHUTDOWN_GRACE"),
        ("--max-connections", "MAX_CONNECTIONS"),
        ("--body-timeout", "BODY_TIMEOUT"),
        ("--idle-timeout", "IDLE_TIMEOUT"),
    ] {
        assert!(help.contains(option), "--help lacks {option}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "--help lacks the variable {env}"
        );
    }
    assert!(help.contains("certs"), "--help lists the certs subcommand");
}

#[test]
fn a_bad_value_is_rejected_at_start_naming_the_option() {
    for (args, env, names) in [
        (vec!["--config-delay", "soon"], None, "--config-delay"),
        (vec![], Some(("WORKERS", "0")), "--workers"),
        (vec!["--role", "worker"], None, "--amqp-url"),
    ] {
        let mut command = binary();
        command.args(&args).env_remove("AMQP_URL");
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_store_is_rejected_without_echoing_the_database_password() {
    for (args, says) in [
        (
            vec!["--store", "postgres://cpe:s3cret@db:notaport/cpe"],
            "PostgreSQL URL is not valid",
        ),
        (
            vec!["--store", "mysql://cpe:s3cret@db/cpe"],
            "must be `memory`, `file`, or a URL",
        ),
        (
            vec!["--amqp-url", "amqps://cpe:s3cret@broker/"],
            "amqps:// is not supported",
        ),
    ] {
        let output = binary().args(&args).env_remove("DATABASE_URL").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(args[0]) && stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "the password was echoed: {stderr}");
    }
}

#[test]
fn an_unreachable_database_fails_the_start_with_a_message_that_says_so() {
    let output = binary()
        .args(["--store", "postgres://cpe:s3cret@127.0.0.1:1/cpe?connect_timeout=2"])
        .args(["--service-a-addr=127.0.0.1:0", "--service-b-addr=127.0.0.1:0"])
        .arg(format!("--certs-dir={}", temp_dir("unreachable-db").display()))
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PostgreSQL: cannot migrate the schema: cannot connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "the password was echoed: {stderr}");
}

#[test]
fn certs_generates_a_pair_and_refuses_to_overwrite_it() {
    let dir = temp_dir("certs");
    let run = |extra: &[&str]| {
        binary()
            .args(["--certs-dir", dir.to_str().unwrap(), "certs"])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(run(&[]).status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("key.pem")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
    let key = std::fs::read(dir.join("key.pem")).unwrap();
    let kept = run(&["--if-missing"]);
    assert!(kept.status.success(), "{}", String::from_utf8_lossy(&kept.stderr));
    assert_eq!(
        std::fs::read(dir.join("key.pem")).unwrap(),
        key,
        "--if-missing keeps the pair"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Global options work after the subcommand too (issue 8).
#[test]
fn options_may_follow_the_certs_subcommand() {
    let dir = temp_dir("certs-after");
    let output = binary()
        .args(["certs", "--certs-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("cert.pem").exists() && dir.join("key.pem").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn healthcheck_exits_zero_for_a_ready_service_and_one_otherwise() {
    let certs = temp_dir("healthcheck");
    let certs_dir = format!("--certs-dir={}", certs.display());
    assert!(binary().args([certs_dir.as_str(), "certs"]).status().unwrap().success());
    let args = [
        "--service-a-addr=127.0.0.1:0".to_string(),
        "--service-b-addr=127.0.0.1:0".into(),
        "--store=memory".into(),
        certs_dir.clone(),
    ];
    let process = crate::common::process::Process::spawn(&args, "info");
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    let check = |port: u16| {
        binary()
            .args([
                certs_dir.as_str(),
                &format!("--service-b-addr=127.0.0.1:{port}"),
                "healthcheck",
            ])
            .output()
            .unwrap()
    };
    let ready = check(b.port());
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = check(closed);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("did not answer"));
    drop(process);
    std::fs::remove_dir_all(certs).unwrap();
}

#[test]
fn sigterm_stops_the_process_cleanly_with_exit_code_zero() {
    let certs = temp_dir("sigterm");
    let args = [
        "--service-a-addr=127.0.0.1:0".to_string(),
        "--service-b-addr=127.0.0.1:0".into(),
        "--store=memory".into(),
        format!("--certs-dir={}", certs.display()),
    ];
    let mut process = crate::common::process::Process::spawn(&args, "info");
    // Service B is announced once the app accepts work: then the process is up.
    process.wait_for_addr("Service B", Duration::from_secs(30));
    assert_eq!(process.terminate(), Some(0), "SIGTERM is a clean stop");
    let log = process
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|line| line["message"].to_string())
        .collect::<Vec<_>>();
    assert!(log.iter().any(|m| m.contains("Service A")), "{log:?}");
    assert!(log.iter().any(|m| m.contains("stopped")), "{log:?}");
    std::fs::remove_dir_all(certs).unwrap();
}
