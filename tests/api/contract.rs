//! The HTTP contract of docs/api.md, row by row, over real HTTPS, plus hostile input; the rows that
//! touch task state run on the memory and on the PostgreSQL store.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

const NO_EQUIPMENT: &str = "The requested equipment is not found";
const NO_TASK: &str = "The requested task is not found";

#[tokio::test]
async fn service_a_configures_a_device_after_its_delay() {
    let app = start(&["--role=service-a"]).await;
    let (status, body) = send(
        client()
            .post(url(app.service_a_addr, "/api/v1/equipment/cpe/abc123"))
            .body(EXAMPLE),
    )
    .await;
    assert_eq!((status, body), (200, json!({"code": 200, "message": "success"})));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn service_a_rejects_invalid_ids_and_fails_on_injected_faults() {
    let app = start(&["--role=service-a", "--fail-rate=1.0", "--config-delay=0s"]).await;
    let a = |path: &str| url(app.service_a_addr, path);
    let (status, body) = send(client().post(a("/api/v1/equipment/cpe/abc-123")).body(EXAMPLE)).await;
    assert_eq!((status, body), (404, json!({"code": 404, "message": NO_EQUIPMENT})));
    let (status, body) = send(client().post(a("/api/v1/equipment/cpe/abc123")).body(EXAMPLE)).await;
    assert_eq!(
        (status, body),
        (500, json!({"code": 500, "message": "Internal provisioning exception"}))
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn service_b_accepts_a_task_and_reports_running_then_completed() {
    for store in crate::common::stores() {
        service_b_accepts_a_task_and_reports_running_then_completed_on(&store.option).await;
    }
}

async fn service_b_accepts_a_task_and_reports_running_then_completed_on(store: &str) {
    let app = start(&[store, "--config-delay=300ms"]).await;
    let task = create_task(app.service_b_addr, "abc123").await;
    assert!(uuid::Uuid::parse_str(&task).is_ok());
    let running = task_status(app.service_b_addr, "abc123", &task).await;
    assert_eq!(
        (running["code"].clone(), running["message"].clone()),
        (json!(204), json!("Task is still running"))
    );
    let done = wait_completed(app.service_b_addr, "abc123", &task, Duration::from_secs(10)).await;
    assert_eq!(
        (done["code"].clone(), done["message"].clone()),
        (json!(200), json!("Completed"))
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_configuration_reads_as_an_internal_provisioning_exception() {
    for store in crate::common::stores() {
        a_failed_configuration_reads_as_an_internal_provisioning_exception_on(&store.option).await;
    }
}

async fn a_failed_configuration_reads_as_an_internal_provisioning_exception_on(store: &str) {
    let app = start(&[
        store,
        "--fail-rate=1.0",
        "--config-delay=0s",
        "--max-attempts=2",
        "--retry-base=10ms",
    ])
    .await;
    let task = create_task(app.service_b_addr, "abc123").await;
    let done = wait_completed(app.service_b_addr, "abc123", &task, Duration::from_secs(10)).await;
    assert_eq!(
        (done["code"].clone(), done["message"].clone()),
        (json!(500), json!("Internal provisioning exception"))
    );
    assert_eq!(done["attempts"], 2);
    assert!(done["lastError"].as_str().unwrap().contains("500"), "{done}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn service_b_answers_404s_for_equipment_and_tasks() {
    for store in crate::common::stores() {
        service_b_answers_404s_for_equipment_and_tasks_on(&store.option).await;
    }
}

async fn service_b_answers_404s_for_equipment_and_tasks_on(store: &str) {
    let app = start(&[store]).await;
    let b = |path: &str| url(app.service_b_addr, path);
    let task = create_task(app.service_b_addr, "abc123").await;
    for bad in ["abc-123", "abc_123", "abc%0A123", "abc12", "abc123%20", "ab%41123"] {
        let (status, body) = send(client().post(b(&format!("/api/v1/equipment/cpe/{bad}"))).body(EXAMPLE)).await;
        assert_eq!(
            (status, body),
            (404, json!({"code": 404, "message": NO_EQUIPMENT})),
            "POST {bad}"
        );
        let (status, body) = send(client().get(b(&format!("/api/v1/equipment/cpe/{bad}/task/{task}")))).await;
        assert_eq!(
            (status, body),
            (404, json!({"code": 404, "message": NO_EQUIPMENT})),
            "GET {bad}"
        );
    }
    // An invalid id gets the equipment 404 whatever the body holds.
    let (status, _) = send(client().post(b("/api/v1/equipment/cpe/a-b")).body("not json")).await;
    assert_eq!(status, 404);
    let unknown = uuid::Uuid::new_v4().to_string();
    for (device, task) in [
        ("abc123", unknown.as_str()),
        ("zzz999", task.as_str()),
        ("abc123", "not-a-uuid"),
    ] {
        let (status, body) = send(client().get(b(&format!("/api/v1/equipment/cpe/{device}/task/{task}")))).await;
        assert_eq!(
            (status, body),
            (404, json!({"code": 404, "message": NO_TASK})),
            "{device}/{task}"
        );
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_bodies_get_400_or_422_with_a_message_naming_the_problem() {
    for store in crate::common::stores() {
        bad_bodies_get_400_or_422_with_a_message_naming_the_problem_on(&store.option).await;
    }
}

async fn bad_bodies_get_400_or_422_with_a_message_naming_the_problem_on(store: &str) {
    let app = start(&[store]).await;
    for service in [app.service_a_addr, app.service_b_addr] {
        let post = |body: &str| {
            client()
                .post(url(service, "/api/v1/equipment/cpe/abc123"))
                .body(body.to_owned())
        };
        let (status, body) = send(post("{\"timeoutInSeconds\": 14,")).await;
        assert_eq!((status, body["code"].clone()), (400, json!(400)));
        assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
        for (bad, names) in [
            (r#"{"parameters": {}}"#, "timeoutInSeconds"),
            (r#"{"timeoutInSeconds": "14", "parameters": {}}"#, "timeoutInSeconds"),
            (r#"{"timeoutInSeconds": -1, "parameters": {}}"#, "timeoutInSeconds"),
            (r#"{"timeoutInSeconds": 1e9, "parameters": {}}"#, "timeoutInSeconds"),
            (r#"{"timeoutInSeconds": 14}"#, "parameters"),
            (r#"{"timeoutInSeconds": 14, "parameters": {"vlan": 5000}}"#, "vlan"),
            (
                r#"{"timeoutInSeconds": 14, "parameters": {"interfaces": [1, 99999]}}"#,
                "interfaces",
            ),
            (r#"{"timeoutInSeconds": 14, "parameters": {"vlan": "534"}}"#, "vlan"),
            (
                r#"{"timeoutInSeconds": 14, "parameters": {"enabled": true}}"#,
                "enabled",
            ),
            (r#"{"timeoutInSeconds": 14, "parameters": {}, "extra": 1}"#, "extra"),
        ] {
            let (status, body) = send(post(bad)).await;
            assert_eq!((status, body["code"].clone()), (422, json!(422)), "{bad}");
            assert!(body["message"].as_str().unwrap().contains(names), "{bad}: {body}");
        }
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_form_parameters_are_accepted() {
    let app = start(&[]).await;
    let list = r#"{"timeoutInSeconds": 14, "parameters": [{"username": "admin"}, {"password": "admin"}, {"vlan": 534}, {"interfaces": [1, 2, 3, 4]}]}"#;
    let (status, body) = send(
        client()
            .post(url(app.service_b_addr, "/api/v1/equipment/cpe/abc123"))
            .body(list),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_methods_unknown_paths_and_big_bodies_answer_in_json() {
    let app = start(&[]).await;
    let b = |path: &str| url(app.service_b_addr, path);
    let (status, body) = send(client().get(b("/api/v1/equipment/cpe/abc123"))).await;
    assert_eq!((status, body["code"].clone()), (405, json!(405)));
    // DELETE cancels a task (an operator route); PUT is no method of the task route.
    let (status, body) = send(client().put(b(&format!(
        "/api/v1/equipment/cpe/abc123/task/{}",
        uuid::Uuid::new_v4()
    ))))
    .await;
    assert_eq!((status, body["code"].clone()), (405, json!(405)));
    assert!(body["message"].as_str().unwrap().contains("GET, DELETE"), "{body}");
    let (status, body) = send(client().get(url(app.service_a_addr, "/api/v1/equipment/cpe/abc123"))).await;
    assert_eq!((status, body["code"].clone()), (405, json!(405)));
    let (status, body) = send(client().get(b("/nothing/here"))).await;
    assert_eq!((status, body["code"].clone()), (404, json!(404)));
    assert!(body["message"].as_str().unwrap().contains("/nothing/here"));
    let huge = format!(
        r#"{{"timeoutInSeconds": 14, "parameters": {{"blob": "{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let (status, body) = send(client().post(b("/api/v1/equipment/cpe/abc123")).body(huge)).await;
    assert_eq!((status, body["code"].clone()), (413, json!(413)));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_and_readiness_answer_in_json() {
    let app = start(&[]).await;
    for service in [app.service_a_addr, app.service_b_addr] {
        let (status, body) = send(client().get(url(service, "/healthz"))).await;
        assert_eq!((status, body["message"].clone()), (200, json!("alive")));
        let (status, body) = send(client().get(url(service, "/readyz"))).await;
        assert_eq!((status, body["message"].clone()), (200, json!("ready")));
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_api_token_guards_service_b() {
    let token = "0123456789abcdef0123";
    let app = start(&[&format!("--api-token={token}")]).await;
    let post = || {
        client()
            .post(url(app.service_b_addr, "/api/v1/equipment/cpe/abc123"))
            .body(EXAMPLE)
    };
    let (status, body) = send(post()).await;
    assert_eq!((status, body["code"].clone()), (401, json!(401)));
    let (status, _) = send(post().bearer_auth("wrong-token-wrong-token")).await;
    assert_eq!(status, 401);
    let (status, body) = send(post().bearer_auth(token)).await;
    assert_eq!((status, body["code"].clone()), (200, json!(200)));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idempotency_key_gives_the_same_task_for_the_same_request_only() {
    for store in crate::common::stores() {
        an_idempotency_key_gives_the_same_task_for_the_same_request_only_on(&store.option).await;
    }
}

async fn an_idempotency_key_gives_the_same_task_for_the_same_request_only_on(store: &str) {
    let app = start(&[store]).await;
    let post = |key: &str, body: &str| {
        client()
            .post(url(app.service_b_addr, "/api/v1/equipment/cpe/abc123"))
            .header("Idempotency-Key", key)
            .body(body.to_owned())
    };
    let (status, first) = send(post("order-42", EXAMPLE)).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = send(post("order-42", EXAMPLE)).await;
    assert_eq!((status, again["taskId"].clone()), (200, first["taskId"].clone()));
    let (status, body) = send(post("order-42", &EXAMPLE.replace("534", "535"))).await;
    assert_eq!((status, body["code"].clone()), (422, json!(422)));
    assert!(body["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let (status, other) = send(post("order-43", EXAMPLE)).await;
    assert_eq!(status, 200);
    assert_ne!(other["taskId"], first["taskId"]);
    let (status, _) = send(post("bad key with spaces", EXAMPLE)).await;
    assert_eq!(status, 400);
    app.shutdown().await.unwrap();
}
