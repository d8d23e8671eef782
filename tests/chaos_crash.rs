//! Crash safety with the file store and the in-process queue: kill -9 the real binary while
//! hundreds of tasks are queued or running, start it again, and count: nothing may be lost, and
//! no device may be configured twice at the same time.

mod common;

use common::chaos::{create_many, device_calls, settle, Tally};
use common::process::Process;
use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_accepted_task_ends_after_a_kill_9_and_a_restart() {
    let data = std::env::temp_dir().join(format!("cpe-chaos-crash-{}", uuid::Uuid::new_v4()));
    let certs = format!("--certs-dir={}", certs_dir().display());
    let service_a = Process::spawn(
        &[
            "--role=service-a".into(),
            "--service-a-addr=127.0.0.1:0".into(),
            "--config-delay=300ms".into(),
            certs.clone(),
        ],
        "info,cpe_config::http::service_a=debug",
    );
    let a = service_a.wait_for_addr("Service A", LIMIT);
    let orchestrator = |data: &std::path::Path| {
        let args = vec![
            "--service-a-addr=127.0.0.1:0".to_string(),
            "--service-b-addr=127.0.0.1:0".into(),
            format!("--service-a-url=https://localhost:{}", a.port()),
            "--store=file".into(),
            format!("--data-dir={}", data.display()),
            "--workers=16".into(),
            "--call-timeout=2s".into(),
            certs.clone(),
        ];
        Process::spawn(&args, "info")
    };
    let mut first = orchestrator(&data);
    let b = first.wait_for_addr("Service B", LIMIT);
    let mut tally = Tally::default();
    // 100 devices, 3 tasks each: per-device order and exclusivity are under test too.
    let tasks = create_many(b, 100, 3, &mut tally).await;
    first.kill_hard();

    let second = orchestrator(&data);
    let b = second.wait_for_addr("Service B", LIMIT);
    settle(b, &tasks, LIMIT, &mut tally).await;
    let (calls, overlaps) = device_calls(&service_a.seen.lock().unwrap());
    eprintln!(
        "chaos (kill -9, file store): {tally:?}, Service A calls {calls}, duplicates {}, overlaps {overlaps}",
        calls.saturating_sub(tally.completed)
    );
    assert_eq!(tally.accepted, 300, "nothing refused while up: {tally:?}");
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(tally.completed, tally.accepted, "{tally:?}");
    assert_eq!(overlaps, 0, "configurations of one device overlapped");
    drop(second);
    let _ = std::fs::remove_dir_all(data);
}
