//! schemathesis (PyPI) against the real binary, from the document each service serves: generated
//! and mutated requests, stateful sequences over the document's links, and every check (no 5xx,
//! statuses, headers and bodies as documented, invalid data refused, 405 with `Allow`).
//! tests/schemathesis.toml records where a generic check does not apply, and why.
//!
//! Skips with a message when `schemathesis` is not installed, unless `REQUIRE_SCHEMATHESIS=1`
//! (`.ci/run` installs it and sets that).

// The api binary's helpers (tests/api/common); this binary uses only some of them, hence the allow.
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;

use common::process::Process;
use cpe_config::http::openapi::PENDING;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Generated cases per operation and phase: about 30 s for both services on 2 cores (debug build).
/// `SCHEMATHESIS_MAX_EXAMPLES` and `SCHEMATHESIS_SEED` allow a longer or different local run.
const MAX_EXAMPLES: &str = "100";
/// A whole run is stopped past this, so a stuck run cannot hold CI.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn schemathesis() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("schemathesis"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_SCHEMATHESIS").as_deref() != Ok("1"),
            "schemathesis is required (REQUIRE_SCHEMATHESIS=1) but not on PATH: pip install schemathesis"
        );
        eprintln!("skipping: schemathesis not installed (pip install schemathesis; REQUIRE_SCHEMATHESIS=1 makes this a failure)");
    }
    found
}

/// The served document without the operations whose routes are not there yet (`x-pending`):
/// tests/api/openapi fails once such a route answers, and the mark comes off.
fn without_pending(mut document: Value) -> Value {
    let paths = document["paths"].as_object_mut().unwrap();
    for item in paths.values_mut() {
        let item = item.as_object_mut().unwrap();
        item.retain(|_, operation| operation.get(PENDING).is_none());
    }
    paths.retain(|_, item| item.as_object().unwrap().keys().any(|key| !key.starts_with("x-")));
    document
}

fn addr_of(process: &Process, service: &str) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = process.seen.lock().unwrap().clone();
        let line = seen
            .iter()
            .find(|line| line["message"].as_str().is_some_and(|m| m.starts_with(service)));
        if let Some(addr) = line.and_then(|line| line["addr"].as_str()) {
            return addr.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "{service} did not start: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs schemathesis on one service's document; its whole output, and whether it found nothing.
fn run(tool: &Path, document: &Path, port: u16, work: &Path) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let cert = common::certs_dir().join("cert.pem");
    // A fixed seed keeps CI repeatable; another seed is a way to look further.
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".into());
    let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.into());
    let mut child = Command::new(tool)
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(document)
        .args(["--url", &format!("https://localhost:{port}")])
        .arg("--tls-verify")
        .arg(&cert)
        // One worker: with two, Python 3.11 itself sometimes crashed inside schemathesis ("AST
        // constructor recursion depth mismatch", python/cpython#106905, a threading bug).
        .args(["--max-examples", &examples, "--workers", "1", "--seed", &seed])
        // `?wait=` may hold an answer up to 60 s.
        .args(["--request-timeout", "70", "--generation-database", "none"])
        .current_dir(work)
        .stdout(std::fs::File::create(work.join("out.txt")).unwrap())
        .stderr(std::fs::File::create(work.join("err.txt")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(work.join("out.txt")).unwrap()
        + &std::fs::read_to_string(work.join("err.txt")).unwrap();
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("{output}\nstopped after {RUN_LIMIT:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_either_service() {
    let Some(tool) = schemathesis() else { return };
    let certs = common::certs_dir();
    let args: Vec<String> = [
        "--service-a-addr=127.0.0.1:0",
        "--service-b-addr=127.0.0.1:0",
        &format!("--certs-dir={}", certs.display()),
        // Short configurations: stateful runs read tasks back, and `?wait=` ends when they finish.
        "--config-delay=50ms",
        "--call-timeout=2s",
        "--retry-base=50ms",
        "--store=memory",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let process = Process::spawn(&args, "warn,cpe_config=info");
    let work = std::env::temp_dir().join(format!("cpe-config-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let mut failures = Vec::new();
    for service in ["Service A", "Service B"] {
        let addr = addr_of(&process, service);
        let served: Value = common::client()
            .get(format!("https://localhost:{}/openapi.json", addr.port()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let dir = work.join(service.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let document = dir.join("openapi.json");
        std::fs::write(&document, serde_json::to_vec(&without_pending(served)).unwrap()).unwrap();
        let (tool, document, dir_for_run) = (tool.clone(), document.clone(), dir.clone());
        let (passed, output) = tokio::task::spawn_blocking(move || run(&tool, &document, addr.port(), &dir_for_run))
            .await
            .unwrap();
        eprintln!("==== schemathesis on {service} ====\n{output}");
        if !passed {
            failures.push(service);
        }
    }
    let panics: Vec<String> = process
        .messages()
        .into_iter()
        .filter(|m| m.contains("panicked"))
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    assert!(panics.is_empty(), "the app panicked: {panics:?}");
    assert!(
        failures.is_empty(),
        "schemathesis found failures on {failures:?}; its output is above"
    );
}
