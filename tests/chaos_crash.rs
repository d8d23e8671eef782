//! Crash safety with the file store and the in-process queue: kill -9 the real binary while
//! hundreds of tasks are queued or running, start it again, and count: nothing may be lost, and
//! no device may be configured twice at the same time.

// The api binary's helpers (tests/api/common); this binary uses only some of them, hence the allow.
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;
// Helpers only the binaries kept apart use (chaos_broker, chaos_crash).
#[allow(dead_code)]
#[path = "alone/chaos.rs"]
mod chaos;

use chaos::{create_many, device_calls, orchestrator_args, service_a, settle, Tally};
use common::process::Process;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_accepted_task_ends_after_a_kill_9_and_a_restart() {
    let data = std::env::temp_dir().join(format!("cpe-chaos-crash-{}", uuid::Uuid::new_v4()));
    let (service_a, a) = service_a(LIMIT);
    let orchestrator = || Process::spawn(&orchestrator_args(a, &data), "info");
    let mut first = orchestrator();
    let b = first.wait_for_addr("Service B", LIMIT);
    let mut tally = Tally::default();
    // 100 devices, 3 tasks each: per-device order and exclusivity are under test too.
    let tasks = create_many(b, 100, 3, &mut tally).await;
    first.kill_hard();

    let second = orchestrator();
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
