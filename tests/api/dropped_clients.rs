//! Accepted means kept, even when the client leaves: keyed POSTs dropped mid-flight (a closed
//! HTTP/1.1 connection, a reset HTTP/2 stream) and then retried with the same key all run, and a
//! bulk action whose client leaves walks to its end and is recorded.

use crate::common::*;
use std::time::Duration;

/// A client that gives up after `after`: reqwest drops the request, which closes the HTTP/1.1
/// connection or resets the HTTP/2 stream while Service B may be between the store and the queue.
fn impatient_client(http2: bool, after: Duration) -> reqwest::Client {
    client_built(|builder| {
        let builder = builder.timeout(after);
        if http2 {
            builder
        } else {
            builder.http1_only()
        }
    })
}

/// Sends `rounds` keyed POSTs that are abandoned within 12 ms, retries each with its key, and
/// waits until every task the retries name is completed.
async fn abandoned_posts_all_run(app: &cpe_config::startup::App, rounds: usize) {
    let b = app.service_b_addr;
    let mut tasks = Vec::new();
    for round in 0..rounds {
        let device = format!("dropped{round:04}");
        let key = uuid::Uuid::new_v4().to_string();
        let path = format!("/api/v1/equipment/cpe/{device}");
        // Spread over the first 12 ms, where the TLS handshake ends and the hand-over runs.
        let patience = Duration::from_micros((round as u64 * 7919) % 12_000);
        let abandoned = impatient_client(round % 2 == 0, patience)
            .post(url(b, &path))
            .header("Idempotency-Key", &key)
            .body(EXAMPLE)
            .send()
            .await;
        drop(abandoned);
        let (status, body) = send(
            client()
                .post(url(b, &path))
                .header("Idempotency-Key", &key)
                .body(EXAMPLE),
        )
        .await;
        assert_eq!(status, 200, "retry of round {round}: {body}");
        tasks.push((device, body["taskId"].as_str().expect("a task id").to_owned()));
    }
    for (device, task) in &tasks {
        let done = wait_completed(b, device, task, Duration::from_secs(30)).await;
        assert_eq!(done["code"], 200, "task {task} of {device}: {done}");
    }
}

#[tokio::test]
async fn dropped_keyed_posts_run_with_the_memory_store() {
    let app = start(&["--config-delay=20ms"]).await;
    abandoned_posts_all_run(&app, 200).await;
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropped_keyed_posts_run_with_the_file_store() {
    let data = std::env::temp_dir().join(format!("cpe-dropped-{}", uuid::Uuid::new_v4()));
    let data_dir = format!("--data-dir={}", data.display());
    let app = start(&["--config-delay=20ms", "--store=file", &data_dir]).await;
    abandoned_posts_all_run(&app, 200).await;
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(data);
}

#[tokio::test]
async fn dropped_keyed_posts_run_through_rabbitmq() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = cpe_test_support::unique_queue("test-dropped");
    let app = start(&[
        "--config-delay=20ms",
        &format!("--amqp-url={amqp}"),
        &format!("--queue={queue}"),
        &format!("--results-queue={queue}-results"),
    ])
    .await;
    abandoned_posts_all_run(&app, 200).await;
    app.shutdown().await.unwrap();
    cpe_test_support::delete_queues(&amqp, &queue).await;
}

/// A bulk cancel whose client leaves at once still walks every matching task, and leaves its one
/// audit record with the counts of what it did.
#[tokio::test]
async fn an_abandoned_bulk_cancel_finishes_and_is_recorded() {
    let app = start(&[
        "--workers=1",
        "--config-delay=30s",
        "--call-timeout=60s",
        "--shutdown-grace=1s",
    ])
    .await;
    let b = app.service_b_addr;
    for n in 0..1000 {
        create_task(b, &format!("walked{n:04}")).await;
    }
    // HTTP/2: the stream is reset when the client gives up, which drops the request's future.
    let abandoned = impatient_client(true, Duration::from_millis(20))
        .post(url(b, "/api/v1/tasks/cancel"))
        .body(r#"{"all": true}"#)
        .send()
        .await;
    drop(abandoned);
    let record = eventually(Duration::from_secs(30), "the bulk cancel's record", || async {
        let (_, page) = send(client().get(url(b, "/api/v1/audit?action=bulkCancel"))).await;
        page["records"].as_array().and_then(|records| records.first().cloned())
    })
    .await;
    // One task runs (the only worker holds it); every queued one was cancelled.
    assert_eq!(record["counts"]["done"], 999, "{record}");
    let (_, queued) = send(client().get(url(b, "/api/v1/tasks?status=queued"))).await;
    assert_eq!(queued["tasks"].as_array().map(Vec::len), Some(0), "{queued}");
    app.shutdown().await.unwrap();
}
