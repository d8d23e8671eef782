//! No cross-site writes (issue 17): every write route of Service B, walked from its route table,
//! refuses another origin and a body that is not JSON, over HTTP/1.1 and HTTP/2, and changes no
//! task; every answer carries `nosniff` and, but for the dashboard's files, `no-store`.

use crate::common::*;
use cpe_config::http::service_b;
use warp::http::Method;

/// The write routes, with `{id}` and `{task}` filled in.
fn writes(task: &str) -> Vec<(Method, String)> {
    service_b::routes()
        .into_iter()
        .filter_map(|(method, pattern)| {
            let method = method.filter(|m| *m == Method::POST || *m == Method::DELETE)?;
            Some((method, pattern.replace("{id}", "abc123").replace("{task}", task)))
        })
        .collect()
}

#[tokio::test]
async fn every_write_refuses_another_origin_and_a_form_body_and_changes_nothing() {
    let app = start(&["--config-delay=60s"]).await;
    let b = app.service_b_addr;
    // The device's first task runs for a minute, so its second stays queued: a cancel could take it.
    let _running = create_task(b, "abc123").await;
    let queued = create_task(b, "abc123").await;
    let routes = writes(&queued);
    assert_eq!(
        routes.len(),
        5,
        "create, cancel, retry, bulk retry, bulk cancel: {routes:?}"
    );
    for client in [http1_client(), client()] {
        for (method, path) in &routes {
            let request = |client: &reqwest::Client| client.request(method.clone(), url(b, path));
            let evil = request(&client)
                .header("origin", "https://evil.example")
                .header("content-type", "application/json")
                .body(r#"{"timeoutInSeconds": 1, "parameters": {}}"#);
            let (code, answer) = send(evil).await;
            assert_eq!(
                (code, answer["code"].as_u64()),
                (403, Some(403)),
                "{method} {path}: {answer}"
            );
            let site = request(&client).header("sec-fetch-site", "cross-site");
            assert_eq!(send(site).await.0, 403, "{method} {path}");
            // A form that a page of any origin can post: not a write, whatever its origin says.
            let form = request(&client)
                .header("content-type", "text/plain")
                .body(r#"{"timeoutInSeconds": 1, "parameters": {}, "all": true}"#);
            let (code, answer) = send(form).await;
            assert_eq!(
                (code, answer["code"].as_u64()),
                (415, Some(415)),
                "{method} {path}: {answer}"
            );
        }
    }
    let status = task_status(b, "abc123", &queued).await;
    assert_eq!(status["status"], "queued", "{status}");
    let (_, page) = send(client().get(url(b, "/api/v1/tasks"))).await;
    assert_eq!(
        page["tasks"].as_array().map(Vec::len),
        Some(2),
        "no task was created: {page}"
    );

    // The service's own origin still writes.
    let port = b.unwrap().port();
    let own = client()
        .delete(url(b, &format!("/api/v1/equipment/cpe/abc123/task/{queued}")))
        .header("origin", format!("https://localhost:{port}"))
        .header("sec-fetch-site", "same-origin");
    let (code, answer) = send(own).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("cancelled")), "{answer}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_answer_is_neither_sniffed_nor_stored() {
    let app = start(&[]).await;
    let (a, b) = (app.service_a_addr, app.service_b_addr);
    for (addr, path, store) in [
        (b, "/api/v1/tasks", true),
        (b, "/api/v1/equipment/cpe/abc123/task/nosuchtask", true),
        (b, "/metrics", true),
        (b, "/healthz", true),
        (b, "/openapi.json", true),
        (b, "/no/such/route", true),
        (a, "/metrics", true),
        (b, "/", false),
    ] {
        let response = client().get(url(addr, path)).send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        if store {
            assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{path}");
        } else {
            assert_eq!(
                header("cache-control").as_deref(),
                Some("no-cache"),
                "{path}: the dashboard revalidates"
            );
        }
    }
    app.shutdown().await.unwrap();
}

/// A page on a rebinding domain reaches the service under the attacker's name: every route, health
/// and metrics included, answers 421 to a `Host` it does not know.
#[tokio::test]
async fn a_host_the_service_does_not_know_gets_421_on_every_route() {
    let app = start(&["--public-host=cpe.example.net"]).await;
    let b = app.service_b_addr;
    let port = b.unwrap().port();
    for path in [
        "/api/v1/tasks",
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/api/v1/equipment/cpe/abc123",
    ] {
        let evil = http1_client()
            .get(url(b, path))
            .header("host", format!("rebound.evil.example:{port}"));
        let (code, answer) = send(evil).await;
        assert_eq!((code, answer["code"].as_u64()), (421, Some(421)), "{path}: {answer}");
        let named = http1_client()
            .get(url(b, path))
            .header("host", format!("cpe.example.net:{port}"));
        assert_ne!(send(named).await.0, 421, "{path}");
    }
    // The machine's own name is always answered: a container's healthcheck asks for it.
    let (code, _) = send(client().get(url(b, "/healthz"))).await;
    assert_eq!(code, 200);
    app.shutdown().await.unwrap();
}
