//! Clean stops: SIGHUP stops the real binary like SIGTERM, a second signal during the clean stop
//! ends it at once, and a stopped app has released its store.

use crate::common::process::{local_args, Process};
use std::time::Duration;

#[test]
fn sighup_stops_the_process_cleanly_with_exit_code_zero() {
    let mut process = Process::spawn(&local_args(&[]), "info");
    process.wait_for_addr("Service B", Duration::from_secs(30));
    process.signal(libc::SIGHUP);
    assert_eq!(
        process.wait(),
        Some(0),
        "SIGHUP is a clean stop: {:?}",
        process.messages()
    );
    let log = process.messages();
    assert!(log.iter().any(|m| m.contains("SIGHUP received")), "{log:?}");
    assert!(log.iter().any(|m| m == "stopped"), "{log:?}");
}

#[tokio::test]
async fn a_second_signal_during_the_grace_period_stops_at_once() {
    let mut process = Process::spawn(&local_args(&["--config-delay=60s", "--shutdown-grace=60s"]), "info");
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    // A configuration in flight makes the clean stop wait for it, up to the 60 s grace.
    crate::common::create_task(Some(b), "abc123").await;
    process.signal(libc::SIGTERM);
    assert!(
        process.wait_for_message("stopping cleanly", Duration::from_secs(10)),
        "{:?}",
        process.messages()
    );
    process.signal(libc::SIGINT);
    let started = std::time::Instant::now();
    let code = process.wait();
    assert_eq!(code, Some(130), "{:?}", process.messages());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the forced stop waited out the grace"
    );
    let log = process.messages();
    assert!(
        log.iter().any(|m| m.contains("SIGINT received during the clean stop")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_stopped_app_has_released_its_store_so_it_can_start_again_at_once() {
    let data = std::env::temp_dir().join(format!("cpe-clean-stop-{}", uuid::Uuid::new_v4()));
    let data_dir = format!("--data-dir={}", data.display());
    for round in 0..5 {
        let app = crate::common::start(&["--store=file", &data_dir]).await;
        crate::common::create_task(app.service_b_addr, "abc123").await;
        app.shutdown().await.unwrap_or_else(|e| panic!("stop {round}: {e:#}"));
    }
    let _ = std::fs::remove_dir_all(data);
}
