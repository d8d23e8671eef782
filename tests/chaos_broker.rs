//! Chaos through RabbitMQ with the real binary: stop the broker under load and start it again,
//! kill -9 the process and restart it, then stop it with SIGTERM. Every accepted task must end;
//! a task refused with 503 while the broker is away was never accepted. Needs `rabbitmqctl`.

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
use common::*;
use cpe_test_support::{delete_queues, unique_queue};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

fn rabbitmqctl(command: &str) {
    let status = std::process::Command::new("rabbitmqctl").args(["-q", command]).status();
    assert!(status.is_ok_and(|s| s.success()), "rabbitmqctl {command} failed");
}

async fn readiness(b: std::net::SocketAddr) -> u16 {
    match client().get(url(Some(b), "/readyz")).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn no_accepted_task_is_lost_when_the_broker_and_the_process_go_down() {
    let Some(amqp) = rabbitmq().await else { return };
    if std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .arg("status")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("REQUIRE_RABBITMQ").as_deref() != Ok("1"),
            "rabbitmqctl is needed to stop the broker"
        );
        return eprintln!("skipping: rabbitmqctl not available");
    }
    let queue = unique_queue("test-chaos");
    let data = std::env::temp_dir().join(format!("cpe-chaos-broker-{}", uuid::Uuid::new_v4()));
    let (service_a, a) = service_a(LIMIT);
    let orchestrator = || {
        let mut args = orchestrator_args(a, &data);
        args.extend([
            format!("--amqp-url={amqp}"),
            format!("--queue={queue}"),
            format!("--results-queue={queue}-results"),
        ]);
        Process::spawn(&args, "info")
    };
    let mut tally = Tally::default();
    let mut first = orchestrator();
    let b = first.wait_for_addr("Service B", LIMIT);
    let mut tasks = create_many(b, 50, 2, &mut tally).await;

    rabbitmqctl("stop_app");
    eventually(LIMIT, "readiness to report the broker gone", || async {
        (readiness(b).await == 503).then_some(())
    })
    .await;
    let during = create_many(b, 10, 1, &mut tally).await;
    rabbitmqctl("start_app");
    eventually(LIMIT, "readiness to come back", || async {
        (readiness(b).await == 200).then_some(())
    })
    .await;
    tasks.extend(during);
    tasks.extend(create_many(b, 50, 2, &mut tally).await);
    first.kill_hard();

    let mut second = orchestrator();
    let b = second.wait_for_addr("Service B", LIMIT);
    settle(b, &tasks, LIMIT, &mut tally).await;
    let (calls, overlaps) = device_calls(&service_a.seen.lock().unwrap());
    let exit = second.terminate();
    eprintln!(
        "chaos (broker stop/start, kill -9, RabbitMQ): {tally:?}, Service A calls {calls}, duplicates {}, overlaps {overlaps}, exit on SIGTERM {exit:?}",
        calls.saturating_sub(tally.completed)
    );
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(tally.completed, tally.accepted, "{tally:?}");
    assert!(tally.refused >= 1, "the outage refused nothing: {tally:?}");
    assert_eq!(overlaps, 0, "configurations of one device overlapped");
    assert_eq!(exit, Some(0), "SIGTERM is a clean stop");
    let _ = std::fs::remove_dir_all(data);
    delete_queues(&amqp, &queue).await;
}

//END
