//! Supervision end to end, in one process over real HTTPS: kill a worker, the pool, the consumer or
//! the registry mid-run, and every accepted task still completes.

use crate::common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// Starts tasks, waits until they run, lets `kill` strike, then checks that all complete.
async fn survives(extra: &[&str], kill: impl AsyncFnOnce(&cpe_config::startup::App)) {
    let app = start(extra).await;
    let mut tasks = Vec::new();
    for n in 0..6 {
        let device = format!("device{n:03}");
        tasks.push((device.clone(), create_task(app.service_b_addr, &device).await));
    }
    let (device, task) = &tasks[0];
    eventually(LIMIT, "a task to be running", || async {
        let body = task_status(app.service_b_addr, device, task).await;
        (body["status"] == "running").then_some(())
    })
    .await;
    kill(&app).await;
    for (device, task) in &tasks {
        let body = wait_completed(app.service_b_addr, device, task, LIMIT).await;
        assert_eq!(body["message"], "Completed", "{device}: {body}");
    }
    app.shutdown().await.unwrap();
}

async fn kill_child(app: &cpe_config::startup::App, name: &str) {
    let cell = app.child(name).await.unwrap_or_else(|| panic!("{name} runs"));
    cell.kill();
}

#[tokio::test]
async fn a_killed_worker_is_replaced_and_its_task_completes() {
    survives(&["--config-delay=400ms", "--workers=3"], async |app| {
        let pool = app.child("pool").await.expect("the pool runs");
        let workers = pool.get_children();
        assert_eq!(workers.len(), 3);
        for worker in workers {
            worker.kill();
        }
    })
    .await;
}

#[tokio::test]
async fn a_killed_pool_is_restarted_and_its_tasks_complete() {
    survives(&["--config-delay=400ms", "--workers=3"], async |app| {
        kill_child(app, "pool").await
    })
    .await;
}

#[tokio::test]
async fn a_killed_consumer_is_restarted_and_tasks_keep_flowing() {
    survives(&["--config-delay=400ms", "--workers=2"], async |app| {
        kill_child(app, "consumer").await
    })
    .await;
}

#[tokio::test]
async fn a_killed_registry_is_restarted_with_its_state() {
    survives(&["--config-delay=400ms", "--workers=3"], async |app| {
        kill_child(app, "registry").await
    })
    .await;
}

#[tokio::test]
async fn a_killed_server_is_restarted_on_the_same_port() {
    let app = start(&[]).await;
    kill_child(&app, "service-b").await;
    eventually(LIMIT, "Service B to answer again", || async {
        let response = client()
            .post(url(app.service_b_addr, "/api/v1/equipment/cpe/abc123"))
            .body(EXAMPLE)
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_child_that_keeps_dying_stops_the_app_with_a_clear_error() {
    let app = start(&[]).await;
    // The budget is five restarts a minute: the sixth death makes the supervisor give up.
    for _ in 0..6 {
        let registry = eventually(LIMIT, "the registry to be (re)started", || app.child("registry")).await;
        registry.kill();
    }
    let run = tokio::time::timeout(LIMIT, app.run_until(std::future::pending()));
    let error = run
        .await
        .expect("the app stops by itself")
        .expect_err("giving up is an error");
    let message = error.to_string();
    assert!(
        message.contains("registry") && message.contains("giving up"),
        "{message}"
    );
}
