//! The real binary from the outside: help, option errors, the certs subcommand, and a clean stop.

mod common;

use std::process::{Command, Stdio};
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
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_stops_the_process_cleanly_with_exit_code_zero() {
    let certs = temp_dir("sigterm");
    let mut child = binary()
        .args([
            "--service-a-addr",
            "127.0.0.1:0",
            "--service-b-addr",
            "127.0.0.1:0",
            "--store",
            "memory",
        ])
        .arg("--certs-dir")
        .arg(&certs)
        .env_remove("AMQP_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut log = Vec::new();
    // Service B is the last component to start: once it logs, the process is up.
    while !log.iter().any(|l: &String| l.contains("Service B")) {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the binary logs that Service B listens");
        log.push(line);
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    log.extend(lines.iter());
    let log = log.join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("Service A") && log.contains("stopped"), "{log}");
    std::fs::remove_dir_all(certs).unwrap();
}
