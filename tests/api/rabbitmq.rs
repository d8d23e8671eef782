//! End to end through a real RabbitMQ: one process, the three roles as separate processes, a
//! message in the original system's format, garbage on the queue, and a worker crash.
//! Skips (with a note) without a broker unless REQUIRE_RABBITMQ=1.

use crate::common::broker::{message_count, publish_raw};
use crate::common::call_log::CallLog;
use crate::common::process::Process;
use crate::common::*;
use cpe_test_support::{delete_queues, unique_queue};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn queue_args(queue: &str, amqp: &str) -> Vec<String> {
    vec![
        format!("--amqp-url={amqp}"),
        format!("--queue={queue}"),
        format!("--results-queue={queue}-results"),
    ]
}

async fn start_with_broker(amqp: &str, queue: &str, extra: &[&str]) -> cpe_config::startup::App {
    let mut args = queue_args(queue, amqp);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start(&args).await
}

#[tokio::test]
async fn a_task_completes_through_rabbitmq_in_one_process() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-one");
    let app = start_with_broker(&amqp, &queue, &[]).await;
    eventually(LIMIT, "readiness", || async {
        let (status, _) = send(client().get(url(app.service_b_addr, "/readyz"))).await;
        (status == 200).then_some(())
    })
    .await;
    let task = create_task(app.service_b_addr, "abc123").await;
    let done = wait_completed(app.service_b_addr, "abc123", &task, LIMIT).await;
    assert_eq!(done["message"], "Completed");
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn with_adoption_a_message_from_the_original_system_is_a_valid_task_and_garbage_is_dead_lettered() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-compat");
    let app = start_with_broker(&amqp, &queue, &["--adopt-unknown-tasks"]).await;
    let task_id = uuid::Uuid::new_v4().to_string();
    let original = format!(r#"{{"task_id": "{task_id}", "equipment_id": "legacy01", "task_payload": {EXAMPLE}}}"#);
    // Wait until the topology exists (declared on the first connection), then publish as the old system did.
    eventually(LIMIT, "the consumer to connect", || async {
        let (status, _) = send(client().get(url(app.service_b_addr, "/readyz"))).await;
        (status == 200).then_some(())
    })
    .await;
    publish_raw(&amqp, &queue, original.as_bytes()).await;
    publish_raw(&amqp, &queue, b"this is not a task").await;
    let done = wait_completed(app.service_b_addr, "legacy01", &task_id, LIMIT).await;
    assert_eq!(done["message"], "Completed");
    eventually(LIMIT, "the garbage to reach the dead-letter queue", || async {
        (message_count(&amqp, &format!("{queue}.dlq")).await == 1).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

/// Without --adopt-unknown-tasks (the default) a message for a task the store never held is not
/// run: it reaches the dead-letter queue once the grace for a create still on its way has passed.
#[tokio::test]
async fn by_default_a_message_for_an_unknown_task_is_dead_lettered_and_never_configured() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-unknown");
    let service_a = CallLog::start(Duration::from_millis(10)).await;
    let service_a_url = format!("--service-a-url={}", service_a.url());
    let app = start_with_broker(&amqp, &queue, &[&service_a_url]).await;
    ready(&app).await;
    let task_id = uuid::Uuid::new_v4().to_string();
    let unknown = format!(r#"{{"task_id": "{task_id}", "equipment_id": "stray001", "task_payload": {EXAMPLE}}}"#);
    publish_raw(&amqp, &queue, unknown.as_bytes()).await;
    eventually(
        LIMIT,
        "the unknown task's message to reach the dead-letter queue",
        || async { (message_count(&amqp, &format!("{queue}.dlq")).await == 1).then_some(()) },
    )
    .await;
    assert!(service_a.calls().is_empty(), "Service A was never called");
    let (_, answer) = send(client().get(url(
        app.service_b_addr,
        &format!("/api/v1/equipment/cpe/stray001/task/{task_id}"),
    )))
    .await;
    assert_eq!(answer["code"], 404, "not adopted into the store: {answer}");
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

/// A message that reuses a queued task's id with another device and other parameters is not
/// trusted: it is dead-lettered, Service A never hears of the forged device, and the real task
/// runs for its own device with its own request.
#[tokio::test]
async fn a_forged_message_for_a_queued_task_is_dead_lettered_and_the_real_task_runs_as_stored() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-forged");
    // Within the tests' 1 s call deadline.
    let service_a = CallLog::start(Duration::from_millis(600)).await;
    let service_a_url = format!("--service-a-url={}", service_a.url());
    let app = start_with_broker(&amqp, &queue, &[&service_a_url]).await;
    ready(&app).await;
    // The first task keeps the device busy, so the second is still queued when the forgery comes.
    let first = create_task(app.service_b_addr, "real0001").await;
    let second = create_task(app.service_b_addr, "real0001").await;
    let forged = format!(
        r#"{{"task_id": "{second}", "equipment_id": "forged01", "task_payload": {{"timeoutInSeconds": 1, "parameters": {{"username": "attacker", "vlan": 666}}}}}}"#
    );
    publish_raw(&amqp, &queue, forged.as_bytes()).await;
    for task in [&first, &second] {
        wait_completed(app.service_b_addr, "real0001", task, LIMIT).await;
    }
    eventually(LIMIT, "the forged message to reach the dead-letter queue", || async {
        (message_count(&amqp, &format!("{queue}.dlq")).await == 1).then_some(())
    })
    .await;
    let calls = service_a.calls();
    assert!(calls.iter().all(|call| call.device == "real0001"), "{calls:?}");
    assert_eq!(calls.len(), 2, "each real task called once");
    assert!(calls.iter().all(|call| !call.body.contains("attacker")), "{calls:?}");
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

async fn ready(app: &cpe_config::startup::App) {
    eventually(LIMIT, "readiness", || async {
        let (status, _) = send(client().get(url(app.service_b_addr, "/readyz"))).await;
        (status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tasks_survive_a_pool_crash_through_rabbitmq_redelivery() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-crash");
    let app = start_with_broker(&amqp, &queue, &["--config-delay=500ms", "--workers=4"]).await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let device = format!("crash{n:03}");
        tasks.push((device.clone(), create_task(app.service_b_addr, &device).await));
    }
    eventually(LIMIT, "a task to be running", || async {
        let body = task_status(app.service_b_addr, &tasks[0].0, &tasks[0].1).await;
        (body["status"] == "running").then_some(())
    })
    .await;
    app.child("pool").await.expect("the pool runs").kill();
    for (device, task) in &tasks {
        assert_eq!(
            wait_completed(app.service_b_addr, device, task, LIMIT).await["message"],
            "Completed"
        );
    }
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn the_three_roles_work_as_separate_processes() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-roles");
    let certs = format!("--certs-dir={}", certs_dir().display());
    let common = |role: &str| {
        let mut args = queue_args(&queue, &amqp);
        args.extend([
            format!("--role={role}"),
            certs.clone(),
            "--config-delay=300ms".into(),
            "--store=memory".into(),
        ]);
        args.extend([
            "--service-a-addr=127.0.0.1:0".into(),
            "--service-b-addr=127.0.0.1:0".into(),
        ]);
        args
    };
    let service_a = Process::spawn(&common("service-a"), "info");
    let a_addr = service_a.wait_for_addr("Service A", LIMIT);
    let service_b = Process::spawn(&common("service-b"), "info");
    let b_addr = service_b.wait_for_addr("Service B", LIMIT);
    let mut worker_args = common("worker");
    worker_args.push(format!("--service-a-url=https://localhost:{}", a_addr.port()));
    let _worker = Process::spawn(&worker_args, "info");
    let task = create_task(Some(b_addr), "split123").await;
    let done = wait_completed(Some(b_addr), "split123", &task, LIMIT).await;
    assert_eq!(done["message"], "Completed");
    assert_eq!(done["attempts"], 1);
    drop(service_b);
    drop(service_a);
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn a_task_that_runs_out_of_attempts_fails_and_is_dead_lettered() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-dlq");
    let app = start_with_broker(
        &amqp,
        &queue,
        &[
            "--fail-rate=1.0",
            "--config-delay=0s",
            "--max-attempts=3",
            "--retry-base=10ms",
        ],
    )
    .await;
    let task = create_task(app.service_b_addr, "doomed1").await;
    let done = wait_completed(app.service_b_addr, "doomed1", &task, LIMIT).await;
    assert_eq!(
        (done["code"].clone(), done["attempts"].clone()),
        (serde_json::json!(500), serde_json::json!(3))
    );
    eventually(LIMIT, "the failed task to reach the dead-letter queue", || async {
        (message_count(&amqp, &format!("{queue}.dlq")).await == 1).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn without_a_broker_tasks_are_refused_with_503_and_readiness_says_why() {
    // Nothing listens on port 1: publishing cannot be confirmed, so nothing may be accepted.
    let app = start(&["--amqp-url=amqp://guest:guest@127.0.0.1:1/%2f", "--queue=never-there"]).await;
    let (status, body) = send(
        client()
            .post(url(app.service_b_addr, "/api/v1/equipment/cpe/abc123"))
            .body(EXAMPLE),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (503, serde_json::json!(503)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("not accepted"), "{body}");
    let (status, body) = send(client().get(url(app.service_b_addr, "/readyz"))).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("queue"), "{body}");
    app.shutdown().await.unwrap();
}
