//! The operator routes of Service B over real HTTPS, on the memory and the PostgreSQL store: listing
//! and search with cursor pages, cancel, waiting for an outcome, their bad input, and the
//! `--api-token` rule.

use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn task_ids(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .expect("a task list")
        .iter()
        .map(|task| task["taskId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn listing_pages_newest_first_by_device_and_status() {
    for store in crate::common::stores() {
        listing_pages_newest_first_by_device_and_status_on(&store.option).await;
    }
}

async fn listing_pages_newest_first_by_device_and_status_on(store: &str) {
    let app = start(&[store, "--config-delay=60s"]).await;
    let b = app.service_b_addr;
    let mut created = Vec::new();
    for n in 0..5 {
        let device = if n % 2 == 0 { "list00aa" } else { "list00bb" };
        created.push((device, create_task(b, device).await));
    }
    let newest_first: Vec<String> = created.iter().rev().map(|(_, id)| id.clone()).collect();

    for client in [client(), http1_client()] {
        let (status, first) = send(client.get(url(b, "/api/v1/tasks?limit=2"))).await;
        assert_eq!((status, first["code"].clone()), (200, json!(200)), "{first}");
        let cursor = first["nextCursor"].as_str().expect("more pages").to_owned();
        let (_, second) = send(client.get(url(b, &format!("/api/v1/tasks?limit=2&cursor={cursor}")))).await;
        let (_, third) = send(client.get(url(
            b,
            &format!(
                "/api/v1/tasks?limit=2&cursor={}",
                second["nextCursor"].as_str().unwrap()
            ),
        )))
        .await;
        assert_eq!(third["nextCursor"], Value::Null);
        let all: Vec<String> = [task_ids(&first), task_ids(&second), task_ids(&third)].concat();
        assert_eq!(all, newest_first);
    }

    let (_, device) = send(client().get(url(b, "/api/v1/equipment/cpe/list00bb/tasks"))).await;
    let expected: Vec<String> = created
        .iter()
        .rev()
        .filter(|(d, _)| *d == "list00bb")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(task_ids(&device), expected);
    let task = &device["tasks"][0];
    assert_eq!(task["equipmentId"], "list00bb");
    assert!(task["createdAt"].as_str().unwrap().ends_with('Z'), "{task}");
    assert!(
        task.get("parameters").is_none() && !task.to_string().contains("admin"),
        "{task}"
    );

    let (_, done) = send(client().get(url(b, "/api/v1/tasks?status=completed,failed"))).await;
    assert_eq!(task_ids(&done), Vec::<String>::new());
    let (_, open) = send(client().get(url(b, "/api/v1/tasks?status=queued&status=running"))).await;
    assert_eq!(task_ids(&open).len(), 5);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn listing_refuses_bad_input_with_a_message_that_says_why() {
    for store in crate::common::stores() {
        listing_refuses_bad_input_with_a_message_that_says_why_on(&store.option).await;
    }
}

async fn listing_refuses_bad_input_with_a_message_that_says_why_on(store: &str) {
    let app = start(&[store]).await;
    let b = app.service_b_addr;
    for client in [client(), http1_client()] {
        for (path, status, says) in [
            ("/api/v1/tasks?limit=0", 400, "limit"),
            ("/api/v1/tasks?limit=501", 400, "limit"),
            ("/api/v1/tasks?cursor=zzz", 400, "cursor"),
            ("/api/v1/tasks?status=done", 400, "status"),
            ("/api/v1/tasks?sort=asc", 400, "sort"),
            ("/api/v1/equipment/cpe/bad-id/tasks", 404, "equipment is not found"),
        ] {
            let (got, body) = send(client.get(url(b, path))).await;
            assert_eq!(got, status, "{path}: {body}");
            assert_eq!(body["code"], status, "{path}: {body}");
            assert!(body["message"].as_str().unwrap().contains(says), "{path}: {body}");
        }
        let (got, body) = send(client.post(url(b, "/api/v1/tasks"))).await;
        assert_eq!((got, body["code"].clone()), (405, json!(405)), "{body}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_queued_task_is_cancelled_and_never_runs_while_a_running_one_cannot_be() {
    for store in crate::common::stores() {
        a_queued_task_is_cancelled_and_never_runs_while_a_running_one_cannot_be_on(&store.option).await;
    }
}

async fn a_queued_task_is_cancelled_and_never_runs_while_a_running_one_cannot_be_on(store: &str) {
    let app = start(&[store, "--config-delay=1500ms", "--call-timeout=10s"]).await;
    let b = app.service_b_addr;
    let running = create_task(b, "cancel01").await;
    // Same device: it waits for the first, queued, in the pool.
    let queued = create_task(b, "cancel01").await;
    let task = |id: &str| url(b, &format!("/api/v1/equipment/cpe/cancel01/task/{id}"));
    eventually(Duration::from_secs(10), "the first task to run", || async {
        let (_, body) = send(client().get(task(&running))).await;
        (body["status"] == "running").then_some(())
    })
    .await;

    let (status, body) = send(client().delete(url(b, &format!("/api/v1/equipment/cpe/other01/task/{queued}")))).await;
    assert_eq!(
        (status, body["message"].clone()),
        (404, json!("The requested task is not found"))
    );
    let (status, body) = send(http1_client().delete(task(&queued))).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"code": 200, "message": "Task was cancelled", "status": "cancelled"})
        )
    );
    let (status, body) = send(client().delete(task(&running))).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("running"), "{body}");
    let (status, body) = send(client().delete(task(&queued))).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cancelled already"),
        "{body}"
    );

    wait_completed(b, "cancel01", &running, Duration::from_secs(20)).await;
    // The first task is done, so the pool took the cancelled one's delivery: it stays cancelled,
    // with no call made.
    let (status, body) = send(client().get(task(&queued))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["code"].clone(),
            body["message"].clone(),
            body["status"].clone(),
            body["attempts"].clone()
        ),
        (json!(410), json!("Task was cancelled"), json!("cancelled"), json!(0))
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn wait_answers_when_the_task_is_final_or_after_the_wait() {
    for store in crate::common::stores() {
        wait_answers_when_the_task_is_final_or_after_the_wait_on(&store.option).await;
    }
}

async fn wait_answers_when_the_task_is_final_or_after_the_wait_on(store: &str) {
    let app = start(&[store, "--config-delay=800ms"]).await;
    let b = app.service_b_addr;
    let quick = create_task(b, "wait0001").await;
    let started = Instant::now();
    let (status, body) =
        send(client().get(url(b, &format!("/api/v1/equipment/cpe/wait0001/task/{quick}?wait=30s")))).await;
    assert_eq!((status, body["code"].clone()), (200, json!(200)), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the wait ended with the task, not the timeout"
    );

    let slow = create_task(b, "wait0002").await;
    let response = client()
        .get(url(b, &format!("/api/v1/equipment/cpe/wait0002/task/{slow}?wait=50ms")))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 204, "{body}");

    for (wait, says) in [("61s", "at most 60s"), ("soon", "duration"), ("30", "unit")] {
        let path = format!("/api/v1/equipment/cpe/wait0002/task/{slow}?wait={wait}");
        let (status, body) = send(http1_client().get(url(b, &path))).await;
        assert_eq!(status, 400, "{wait}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{wait}: {body}");
    }
    let (status, _) = send(client().get(url(b, &format!("/api/v1/equipment/cpe/other002/task/{slow}?wait=1s")))).await;
    assert_eq!(status, 404);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_operator_routes_follow_the_api_token_rule() {
    for store in crate::common::stores() {
        the_operator_routes_follow_the_api_token_rule_on(&store.option).await;
    }
}

async fn the_operator_routes_follow_the_api_token_rule_on(store: &str) {
    let token = "operator-token-0123456789";
    let app = start(&[store, &format!("--api-token={token}")]).await;
    let b = app.service_b_addr;
    for request in [
        client().get(url(b, "/api/v1/tasks")),
        client().get(url(b, "/api/v1/equipment/cpe/abc123/tasks")),
        client().delete(url(
            b,
            "/api/v1/equipment/cpe/abc123/task/27959581-8e22-47e6-9c7c-67c278f60853",
        )),
    ] {
        let (status, body) = send(request).await;
        assert_eq!((status, body["code"].clone()), (401, json!(401)), "{body}");
    }
    let (status, _) = send(client().get(url(b, "/api/v1/tasks")).bearer_auth(token)).await;
    assert_eq!(status, 200);
    app.shutdown().await.unwrap();
}

async fn wait_failed(b: Option<std::net::SocketAddr>, device: &str, task: &str) {
    let done = wait_completed(b, device, task, Duration::from_secs(20)).await;
    assert_eq!(done["code"], 500, "{done}");
}

#[tokio::test]
async fn a_failed_task_is_retried_once_as_a_new_task() {
    for store in crate::common::stores() {
        a_failed_task_is_retried_once_as_a_new_task_on(&store.option).await;
    }
}

async fn a_failed_task_is_retried_once_as_a_new_task_on(store: &str) {
    let app = start(&[store, "--fail-rate=1.0", "--max-attempts=1", "--config-delay=10ms"]).await;
    let b = app.service_b_addr;
    let failed = create_task(b, "retry001").await;
    wait_failed(b, "retry001", &failed).await;
    let retry_path = format!("/api/v1/equipment/cpe/retry001/task/{failed}/retry");

    let (status, body) =
        send(client().post(url(b, &format!("/api/v1/equipment/cpe/other001/task/{failed}/retry")))).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = send(http1_client().post(url(b, &retry_path))).await;
    assert_eq!((status, body["code"].clone()), (200, json!(200)), "{body}");
    let new_task = body["taskId"].as_str().unwrap().to_owned();
    assert_ne!(new_task, failed);
    let old = task_status(b, "retry001", &failed).await;
    assert_eq!(
        (old["code"].clone(), old["retriedAs"].clone()),
        (json!(500), json!(new_task))
    );
    let (status, body) = send(client().post(url(b, &retry_path))).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&new_task), "{body}");
    // The new task runs the same request (and fails again here: every call fails).
    wait_failed(b, "retry001", &new_task).await;
    let (status, body) = send(client().get(url(b, &retry_path))).await;
    assert_eq!(status, 405, "{body}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_running_task_cannot_be_retried() {
    for store in crate::common::stores() {
        a_running_task_cannot_be_retried_on(&store.option).await;
    }
}

async fn a_running_task_cannot_be_retried_on(store: &str) {
    let app = start(&[store, "--config-delay=5s", "--call-timeout=20s", "--shutdown-grace=1s"]).await;
    let b = app.service_b_addr;
    let running = create_task(b, "retry002").await;
    let (status, body) =
        send(client().post(url(b, &format!("/api/v1/equipment/cpe/retry002/task/{running}/retry")))).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("only a failed task"),
        "{body}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn bulk_retry_and_cancel_act_on_what_matches_and_say_how_many() {
    for store in crate::common::stores() {
        bulk_retry_and_cancel_act_on_what_matches_and_say_how_many_on(&store.option).await;
    }
}

async fn bulk_retry_and_cancel_act_on_what_matches_and_say_how_many_on(store: &str) {
    let app = start(&[store, "--fail-rate=1.0", "--max-attempts=1", "--config-delay=10ms"]).await;
    let b = app.service_b_addr;
    let mut failed = Vec::new();
    for device in ["bulk0001", "bulk0001", "bulk0002"] {
        let task = create_task(b, device).await;
        wait_failed(b, device, &task).await;
        failed.push(task);
    }
    let (status, body) = send(
        client()
            .post(url(b, "/api/v1/tasks/retry"))
            .body(r#"{"status": ["failed"], "equipmentIds": ["bulk0001"]}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({"code": 200, "done": 2, "skipped": 0})));
    for (body, status, says) in [
        (r#"{"status": ["queued"]}"#, 422, "failed"),
        (r#"{"equipmentIds": ["bad-id"]}"#, 422, "bad-id"),
        (r#"{"devices": []}"#, 422, "devices"),
        (r#"{"status": "#, 400, "filter"),
        ("", 422, "all"),
        ("{}", 422, "names no tasks"),
        (r#"{"status": ["failed"]}"#, 422, "names no tasks"),
        ("[]", 422, "JSON object"),
        (r#"{"all": true, "equipmentIds": ["bulk0001"]}"#, 422, "exclude"),
    ] {
        let (got, answer) = send(http1_client().post(url(b, "/api/v1/tasks/retry")).body(body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(says), "{body}: {answer}");
    }
    app.shutdown().await.unwrap();

    let app = start(&[
        "--config-delay=30s",
        "--call-timeout=60s",
        "--workers=1",
        "--shutdown-grace=1s",
    ])
    .await;
    let b = app.service_b_addr;
    for _ in 0..4 {
        create_task(b, "bulk0003").await;
    }
    // One runs; the three behind it on the same device are queued.
    // A device named twice is walked once: each task counted once.
    let (status, body) = send(
        client()
            .post(url(b, "/api/v1/tasks/cancel"))
            .body(r#"{"equipmentIds": ["bulk0003", "bulk0003"]}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({"code": 200, "done": 3, "skipped": 0})));
    let (_, listed) = send(client().get(url(b, "/api/v1/equipment/cpe/bulk0003/tasks?status=cancelled"))).await;
    assert_eq!(task_ids(&listed).len(), 3);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_operator_routes_work_through_rabbitmq_with_the_file_store() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = cpe_test_support::unique_queue("test-operator");
    let data = std::env::temp_dir().join(format!("cpe-operator-{}", uuid::Uuid::new_v4()));
    let app = start(&[
        "--config-delay=500ms",
        "--workers=1",
        "--store=file",
        &format!("--data-dir={}", data.display()),
        &format!("--amqp-url={amqp}"),
        &format!("--queue={queue}"),
        &format!("--results-queue={queue}-results"),
    ])
    .await;
    let b = app.service_b_addr;
    let first = create_task(b, "rabbit01").await;
    let second = create_task(b, "rabbit01").await;
    let task = |id: &str| url(b, &format!("/api/v1/equipment/cpe/rabbit01/task/{id}"));
    let (status, body) = send(client().delete(task(&second))).await;
    assert_eq!((status, body["status"].clone()), (200, json!("cancelled")), "{body}");
    let (_, done) = send(client().get(format!("{}?wait=30s", task(&first)))).await;
    assert_eq!(done["code"], 200, "{done}");
    let (_, listed) = send(client().get(url(b, "/api/v1/equipment/cpe/rabbit01/tasks"))).await;
    assert_eq!(task_ids(&listed), vec![second.clone(), first]);
    // The first task is done, so the pool has taken the cancelled one's delivery: it never ran.
    let cancelled = task_status(b, "rabbit01", &second).await;
    assert_eq!(
        (cancelled["code"].clone(), cancelled["attempts"].clone()),
        (json!(410), json!(0))
    );
    app.shutdown().await.unwrap();
    cpe_test_support::delete_queues(&amqp, &queue).await;
    let _ = std::fs::remove_dir_all(data);
}
