//! Every example of both documents against the running app: each request example is sent, each
//! answer meets the document's schema for its status (strictly: no undocumented field), and each
//! response example is exactly an answer the app gave, but for the fields that differ per task.
//! An example no scenario produces fails the test unless listed in `checker::NOT_PRODUCED` with a reason.

use super::checker::{Checker, EXAMPLE_NEW_TASK};
use crate::common::*;
use cpe_config::http::openapi::Service;
use std::net::SocketAddr;
use std::time::Duration;

const DEVICE: &str = "abc123";

fn cpe(addr: Option<SocketAddr>, rest: &str) -> String {
    url(addr, &format!("/api/v1/equipment/cpe/{rest}"))
}

/// The bodies that answer each body-error example of a POST.
fn body_errors() -> [(&'static str, &'static str); 5] {
    [
        ("notJson", "x"),
        ("missingField", r#"{"parameters": {}}"#),
        (
            "vlanOutOfRange",
            r#"{"timeoutInSeconds": 14, "parameters": {"vlan": 5000}}"#,
        ),
        ("unknownField", r#"{"timeoutInSeconds": 14, "parameters": {}, "x": 1}"#),
        (
            "duplicateKey",
            r#"{"timeoutInSeconds": 14, "parameters": {"vlan": 5, "vlan": 534}}"#,
        ),
    ]
}

#[tokio::test]
async fn every_example_is_an_answer_of_the_running_app() {
    let mut check = Checker::default();
    let (a, b) = (Service::A, Service::B);
    // One configuration takes 1.5 s, so a task can be seen queued and running.
    let app = start(&["--config-delay=1500ms", "--call-timeout=10s"]).await;
    let (sa, sb) = (app.service_a_addr, app.service_b_addr);
    let device = check.param(b, "id", "device");
    assert_eq!(device, DEVICE);
    let mode = send(client().get(url(sb, "/api/v1/dashboard"))).await;
    check.answer(b, "dashboardMode", "loopback", mode);

    // Service B: create, with and without an Idempotency-Key.
    let object_form = check.body(b, "createTask", "objectForm");
    let list_form = check.body(b, "createTask", "listForm");
    let idem = check.param(b, "Idempotency-Key", "key");
    let post = |body: &str| client().post(cpe(sb, &device)).body(body.to_owned());
    let first = send(post(&object_form).header("Idempotency-Key", &idem)).await;
    let first_id = first.1["taskId"].as_str().unwrap().to_owned();
    check.answer(b, "createTask", "accepted", first);
    let again = send(post(&list_form).header("Idempotency-Key", &idem)).await;
    assert_eq!(
        again.1["taskId"],
        first_id.as_str(),
        "the same key and request give the first task"
    );
    check.answer(b, "createTask", "accepted", again);
    let other = object_form.replace("14", "15");
    check.answer(
        b,
        "createTask",
        "keyReused",
        send(post(&other).header("Idempotency-Key", &idem)).await,
    );
    check.answer(
        b,
        "createTask",
        "badKey",
        send(post(&object_form).header("Idempotency-Key", "order 4711")).await,
    );
    let twice = post(&object_form)
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two");
    check.answer(b, "createTask", "repeatedKey", send(twice).await);
    let second = send(post(&object_form)).await.1["taskId"].as_str().unwrap().to_owned();
    let third = send(post(&object_form)).await.1["taskId"].as_str().unwrap().to_owned();
    for (name, body) in body_errors() {
        check.answer(b, "createTask", name, send(post(body)).await);
        check.answer(
            a,
            "configureDevice",
            name,
            send(client().post(cpe(sa, DEVICE)).body(body)).await,
        );
    }
    // Every write refuses another site's request and a body that is not JSON, before it runs.
    let task = format!("{device}/task/{second}");
    for (operation, method, path) in [
        ("createTask", reqwest::Method::POST, cpe(sb, &device)),
        ("cancelTask", reqwest::Method::DELETE, cpe(sb, &task)),
        ("retryTask", reqwest::Method::POST, cpe(sb, &format!("{task}/retry"))),
        ("retryTasks", reqwest::Method::POST, url(sb, "/api/v1/tasks/retry")),
        ("cancelTasks", reqwest::Method::POST, url(sb, "/api/v1/tasks/cancel")),
    ] {
        let evil = client()
            .request(method.clone(), &path)
            .header("origin", "https://evil.example");
        check.answer(b, operation, "crossSite", send(evil).await);
        let form = client()
            .request(method, &path)
            .header("content-type", "text/plain")
            .body(object_form.clone());
        check.answer(b, operation, "formBody", send(form).await);
    }
    for (service, addr, operation) in [(b, sb, "createTask"), (a, sa, "configureDevice")] {
        let bad = client().post(cpe(addr, "abc")).body(object_form.clone());
        check.answer(service, operation, "equipmentNotFound", send(bad).await);
        let huge = format!(
            r#"{{"timeoutInSeconds": 14, "parameters": {{"blob": "{}"}}}}"#,
            "x".repeat(70 * 1024)
        );
        check.answer(
            service,
            operation,
            "tooLarge",
            send(client().post(cpe(addr, DEVICE)).body(huge)).await,
        );
    }

    // Status and cancel: the first task runs, the second and third wait behind it (same device).
    let task = |id: &str| cpe(sb, &format!("{DEVICE}/task/{id}"));
    let running = eventually(Duration::from_secs(10), "the first task to run", || async {
        let answer = send(client().get(task(&first_id))).await;
        (answer.1["status"] == "running").then_some(answer)
    })
    .await;
    check.answer(b, "getTaskStatus", "running", running);
    check.answer(b, "getTaskStatus", "queued", send(client().get(task(&second))).await);
    check.answer(b, "cancelTask", "running", send(client().delete(task(&first_id))).await);
    check.answer(b, "cancelTask", "cancelled", send(client().delete(task(&third))).await);
    check.answer(b, "getTaskStatus", "cancelled", send(client().get(task(&third))).await);
    let wait = check.param(b, "wait", "thirtySeconds");
    let done = send(client().get(format!("{}?wait={wait}", task(&first_id)))).await;
    check.answer(b, "getTaskStatus", "completed", done);
    check.answer(b, "cancelTask", "final", send(client().delete(task(&first_id))).await);
    let retry = |id: &str| client().post(format!("{}/retry", task(id)));
    check.answer(b, "retryTask", "notFailed", send(retry(&first_id)).await);
    let unknown = check.param(b, "task", "task");
    check.answer(
        b,
        "getTaskStatus",
        "taskNotFound",
        send(client().get(task(&unknown))).await,
    );
    check.answer(
        b,
        "cancelTask",
        "taskNotFound",
        send(client().delete(task(&unknown))).await,
    );
    check.answer(b, "retryTask", "taskNotFound", send(retry(&unknown)).await);
    let elsewhere = cpe(sb, &format!("abc/task/{unknown}"));
    check.answer(
        b,
        "getTaskStatus",
        "equipmentNotFound",
        send(client().get(&elsewhere)).await,
    );
    check.answer(
        b,
        "cancelTask",
        "equipmentNotFound",
        send(client().delete(&elsewhere)).await,
    );
    let answer = send(client().post(format!("{elsewhere}/retry"))).await;
    check.answer(b, "retryTask", "equipmentNotFound", answer);
    for (name, wait) in [("waitTooLong", "61s"), ("waitWithoutUnit", "30")] {
        let answer = send(client().get(format!("{}?wait={wait}", task(&first_id)))).await;
        check.answer(b, "getTaskStatus", name, answer);
    }

    // Listings' bad input.
    for (operation, path) in [
        ("listTasks", url(sb, "/api/v1/tasks")),
        ("listDeviceTasks", cpe(sb, &format!("{DEVICE}/tasks"))),
    ] {
        for (name, query) in [
            ("limitOutOfRange", "limit=0"),
            ("badCursor", "cursor=zzz"),
            ("badStatus", "status=done"),
            ("unknownParameter", "sort=asc"),
        ] {
            check.answer(b, operation, name, send(client().get(format!("{path}?{query}"))).await);
        }
    }
    let answer = send(client().get(cpe(sb, "abc/tasks"))).await;
    check.answer(b, "listDeviceTasks", "equipmentNotFound", answer);

    // The audit trail of all that, and its bad input.
    let audit = |query: &str| client().get(url(sb, &format!("/api/v1/audit{query}")));
    check.answer(b, "listAudit", "page", send(audit("")).await);
    check.answer(b, "listAudit", "badAction", send(audit("?action=delete")).await);
    check.answer(b, "listAudit", "repeated", send(audit("?actor=a&actor=b")).await);

    // Bulk actions' bad input, and a bulk cancel (the second task may have run by now: counts vary).
    bulk_errors(&mut check, sb).await;
    let filter = check.body(b, "cancelTasks", "devices");
    let counts = send(client().post(url(sb, "/api/v1/tasks/cancel")).body(filter)).await;
    check.answer(b, "cancelTasks", "counts", counts);
    let everything = check.body(b, "cancelTasks", "everything");
    let counts = send(client().post(url(sb, "/api/v1/tasks/cancel")).body(everything)).await;
    check.answer(b, "cancelTasks", "counts", counts);

    // What the edge answers before any route: HTTP/1.1 requests a normal client never sends.
    let long = format!("GET /{} HTTP/1.1\r\nhost: localhost\r\n\r\n", "a".repeat(70_000));
    let headers: String = (0..101).map(|n| format!("x-{n}: 1\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{headers}\r\n");
    for (service, addr) in [(a, sa.unwrap()), (b, sb.unwrap())] {
        let answer = raw::h1(addr, long.as_bytes()).await;
        check.answer(service, "healthz", "uriTooLong", (answer.status, answer.body));
        let answer = raw::h1(addr, many.as_bytes()).await;
        check.answer(service, "healthz", "headerTooLarge", (answer.status, answer.body));
    }
    let answer = raw::h1(sb.unwrap(), b"GET abc HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    check.answer(b, "listTasks", "notAPath", (answer.status, answer.body));

    // Health of both services, and Service A's success.
    for (service, addr) in [(a, sa), (b, sb)] {
        check.answer(
            service,
            "healthz",
            "alive",
            send(client().get(url(addr, "/healthz"))).await,
        );
        check.answer(
            service,
            "readyz",
            "ready",
            send(client().get(url(addr, "/readyz"))).await,
        );
    }
    let object_form_a = check.body(a, "configureDevice", "objectForm");
    let list_form_a = check.body(a, "configureDevice", "listForm");
    check.param(a, "id", "device");
    for body in [object_form_a, list_form_a] {
        check.answer(
            a,
            "configureDevice",
            "configured",
            send(client().post(cpe(sa, DEVICE)).body(body)).await,
        );
    }
    app.shutdown().await.unwrap();

    // A device that always fails: failed tasks, their listing, and Service A's 500.
    let failing = start(&["--fail-rate=1", "--max-attempts=1", "--config-delay=0s"]).await;
    let (fa, fb) = (failing.service_a_addr, failing.service_b_addr);
    let mut failed = Vec::new();
    for _ in 0..2 {
        let id = send(client().post(cpe(fb, DEVICE)).body(EXAMPLE)).await.1["taskId"]
            .as_str()
            .unwrap()
            .to_owned();
        let answer = send(client().get(format!("{}?wait=30s", cpe(fb, &format!("{DEVICE}/task/{id}"))))).await;
        failed.push((id, answer));
    }
    let (failed_task, answer) = failed.remove(0);
    check.answer(b, "getTaskStatus", "failed", answer);
    let status = check.param(b, "status", "failed");
    for (operation, path) in [
        ("listTasks", url(fb, "/api/v1/tasks")),
        ("listDeviceTasks", cpe(fb, &format!("{DEVICE}/tasks"))),
    ] {
        let page = send(client().get(format!("{path}?status={status}&limit=1"))).await;
        assert!(
            page.1["nextCursor"].is_string(),
            "two failed tasks make two pages: {}",
            page.1
        );
        assert_eq!(page.1["tasks"][0]["status"], "failed");
        check.answer(b, operation, "page", page);
    }
    // Retry one failed task, then the other in bulk.
    let retry = |id: &str| client().post(cpe(fb, &format!("{DEVICE}/task/{id}/retry")));
    let retried = send(retry(&failed_task)).await;
    let new_task = retried.1["taskId"].as_str().unwrap().to_owned();
    check.answer(b, "retryTask", "retried", retried);
    let (status, mut body) = send(retry(&failed_task)).await;
    body["message"] = body["message"]
        .as_str()
        .unwrap()
        .replace(&new_task, EXAMPLE_NEW_TASK)
        .into();
    check.answer(b, "retryTask", "alreadyRetried", (status, body));
    let filter = check.body(b, "retryTasks", "devices");
    let counts = send(client().post(url(fb, "/api/v1/tasks/retry")).body(filter)).await;
    assert!(
        counts.1["done"].as_u64().unwrap() >= 1,
        "the other failed task is retried: {}",
        counts.1
    );
    check.answer(b, "retryTasks", "counts", counts);
    let everything = check.body(b, "retryTasks", "everything");
    let counts = send(client().post(url(fb, "/api/v1/tasks/retry")).body(everything)).await;
    check.answer(b, "retryTasks", "counts", counts);
    check.answer(
        a,
        "configureDevice",
        "deviceFailed",
        send(client().post(cpe(fa, DEVICE)).body(EXAMPLE)).await,
    );
    failing.shutdown().await.unwrap();

    // With a token: every task route refuses a request without it.
    let guarded = start(&["--api-token=openapi-test-token-0123"]).await;
    let gb = guarded.service_b_addr;
    let mode = send(client().get(url(gb, "/api/v1/dashboard"))).await;
    check.answer(b, "dashboardMode", "needsToken", mode);
    let some_task = cpe(gb, &format!("{DEVICE}/task/{unknown}"));
    for (operation, request) in [
        ("createTask", client().post(cpe(gb, DEVICE)).body(EXAMPLE)),
        ("getTaskStatus", client().get(&some_task)),
        ("cancelTask", client().delete(&some_task)),
        ("listDeviceTasks", client().get(cpe(gb, &format!("{DEVICE}/tasks")))),
        ("listTasks", client().get(url(gb, "/api/v1/tasks"))),
        ("retryTask", client().post(format!("{some_task}/retry"))),
        ("retryTasks", client().post(url(gb, "/api/v1/tasks/retry"))),
        ("cancelTasks", client().post(url(gb, "/api/v1/tasks/cancel"))),
        ("listAudit", client().get(url(gb, "/api/v1/audit"))),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{operation}");
        let status = response.status().as_u16();
        check.answer(b, operation, "unauthorized", (status, response.json().await.unwrap()));
    }
    guarded.shutdown().await.unwrap();

    check.all_covered();
}

/// Each bulk action's 400 and 422 examples.
async fn bulk_errors(check: &mut Checker, sb: Option<SocketAddr>) {
    for (operation, path, other) in [
        ("retryTasks", "/api/v1/tasks/retry", "queued"),
        ("cancelTasks", "/api/v1/tasks/cancel", "failed"),
    ] {
        for (name, body) in [
            ("notJson", "x".to_owned()),
            ("otherStatus", format!(r#"{{"status": ["{other}"]}}"#)),
            ("badDevice", r#"{"equipmentIds": ["abc"]}"#.to_owned()),
            ("noFilter", "{}".to_owned()),
            ("notAnObject", "[]".to_owned()),
        ] {
            let answer = send(client().post(url(sb, path)).body(body)).await;
            check.answer(Service::B, operation, name, answer);
        }
    }
}
