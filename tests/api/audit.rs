//! The audit trail (issue 17), walked from Service B's route table: every write route refuses a
//! `read` token (and records the refusal), takes an `operate` one and leaves exactly one record
//! naming it; the trail is `admin`-only, and the same after a restart (file store, PostgreSQL).

use crate::common::fake_a::{self, answer, Answer, Script};
use crate::common::*;
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use warp::http::Method;

/// Service A as the test needs it: `fail0001` is unknown (its tasks fail at once), every other
/// device's call hangs, so a device's first task keeps running and its next stays queued.
fn service_a() -> Script {
    Arc::new(|seen| match seen.path.ends_with("/fail0001") {
        true => Answer::Close(answer("HTTP/1.1 404 Not Found", &[], b"{}")),
        false => Answer::Stall(Vec::new()),
    })
}

struct Tokens {
    file: std::path::PathBuf,
    read: String,
    operate: String,
    admin: String,
}

fn tokens() -> Tokens {
    let dir = std::env::temp_dir().join(format!("cpe-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let create = |name: &str, scope: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
            .args(["token", "create", name, "--scope", scope])
            .arg(format!("--tokens-file={}", file.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    Tokens {
        read: create("wall-screen", "read"),
        operate: create("provisioning", "operate"),
        admin: create("auditor", "admin"),
        file,
    }
}

/// The records of the trail with these filters, newest first (all of them: a test makes few).
async fn trail(b: Option<std::net::SocketAddr>, admin: &str, filters: &str) -> Vec<Value> {
    let path = format!("/api/v1/audit?limit=500&{filters}");
    let (code, page) = send(client().get(url(b, &path)).bearer_auth(admin)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page["nextCursor"].is_null(), "{page}");
    page["records"].as_array().unwrap().clone()
}

async fn create(b: Option<std::net::SocketAddr>, token: &str, device: &str) -> String {
    let post = client()
        .post(url(b, &format!("/api/v1/equipment/cpe/{device}")))
        .bearer_auth(token)
        .body(EXAMPLE);
    let (code, answer) = send(post).await;
    assert_eq!(code, 200, "{answer}");
    answer["taskId"].as_str().unwrap().to_owned()
}

async fn status_of(b: Option<std::net::SocketAddr>, token: &str, device: &str, task: &str) -> Value {
    let path = format!("/api/v1/equipment/cpe/{device}/task/{task}?wait=10s");
    send(client().get(url(b, &path)).bearer_auth(token)).await.1
}

#[tokio::test]
async fn every_write_is_scoped_and_leaves_one_record_naming_its_token_kept_across_a_restart() {
    let data = std::env::temp_dir().join(format!("cpe-audit-data-{}", uuid::Uuid::new_v4()));
    let file_store = ["--store=file".to_owned(), format!("--data-dir={}", data.display())];
    walk_the_routes(&file_store).await;
    let _ = std::fs::remove_dir_all(&data);
    if let Some(schema) = cpe_config::store::postgres::scratch::ScratchSchema::create() {
        walk_the_routes(&[format!("--store={}", schema.url)]).await;
    }
}

async fn walk_the_routes(store: &[String]) {
    let tokens = tokens();
    let fake = fake_a::start(service_a()).await;
    let mut args: Vec<String> = store.to_vec();
    args.extend([
        format!("--tokens-file={}", tokens.file.display()),
        format!("--service-a-url={}", fake.url()),
        "--max-attempts=1".into(),
        "--call-timeout=60s".into(),
        "--shutdown-grace=1s".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = start(&args).await;
    let b = app.service_b_addr;
    let _running = create(b, &tokens.operate, "hold0001").await;

    let writes: Vec<(Method, &str)> = cpe_config::http::service_b::routes()
        .into_iter()
        .filter_map(|(method, pattern)| Some((method.filter(|m| *m == Method::POST || *m == Method::DELETE)?, pattern)))
        .collect();
    assert_eq!(
        writes.len(),
        5,
        "create, cancel, retry, bulk retry, bulk cancel: {writes:?}"
    );
    for (method, pattern) in writes {
        // Each route gets a task it can change: a queued one to cancel, a failed one to retry.
        let (device, body) = match pattern {
            "/api/v1/tasks/retry" | "/api/v1/tasks/cancel" => ("hold0001", r#"{"all": true}"#),
            _ if pattern.ends_with("/retry") => ("fail0001", ""),
            _ => ("hold0001", EXAMPLE),
        };
        let task = create(b, &tokens.operate, device).await;
        if device == "fail0001" {
            assert_eq!(status_of(b, &tokens.read, device, &task).await["code"], 500);
        }
        let path = pattern.replace("{id}", device).replace("{task}", &task);
        let request = |token: &str| {
            client()
                .request(method.clone(), url(b, &path))
                .bearer_auth(token)
                .body(body)
        };

        let refused_before = trail(b, &tokens.admin, "actor=wall-screen").await.len();
        let (code, answer) = send(request(&tokens.read)).await;
        assert_eq!(
            (code, answer["code"].as_u64()),
            (403, Some(403)),
            "{method} {path}: {answer}"
        );
        let refused = trail(b, &tokens.admin, "actor=wall-screen").await;
        assert_eq!(
            refused.len(),
            refused_before + 1,
            "{method} {path}: the refusal is recorded"
        );
        assert_eq!(
            (refused[0]["action"].as_str(), refused[0]["status"].as_u64()),
            (Some("refused"), Some(403))
        );

        let before = trail(b, &tokens.admin, "actor=provisioning").await;
        let (code, answer) = send(request(&tokens.operate)).await;
        assert_eq!(code, 200, "{method} {path}: {answer}");
        let after = trail(b, &tokens.admin, "actor=provisioning").await;
        assert_eq!(after.len(), before.len() + 1, "{method} {path}: exactly one record");
        let newest = &after[0];
        assert_eq!(newest["route"], format!("{method} {path}"), "{newest}");
        assert_eq!(newest["source"], "127.0.0.1", "{newest}");
        if let Some(new_task) = answer["taskId"].as_str() {
            assert!(
                newest["taskIds"].as_array().unwrap().contains(&Value::from(new_task)),
                "{newest}"
            );
        }
        if pattern.starts_with("/api/v1/tasks/") {
            assert_eq!(newest["filter"], serde_json::json!({"all": true}), "{newest}");
            assert_eq!(newest["counts"]["done"], answer["done"], "{newest}");
        }
    }

    // Every task names who asked for it; only an admin token reads the trail.
    let (_, page) = send(client().get(url(b, "/api/v1/tasks")).bearer_auth(&tokens.read)).await;
    let tasks = page["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["requestedBy"] == "provisioning"), "{page}");
    for token in [&tokens.read, &tokens.operate] {
        assert_eq!(
            send(client().get(url(b, "/api/v1/audit")).bearer_auth(token)).await.0,
            403
        );
    }
    assert_eq!(send(client().get(url(b, "/api/v1/audit"))).await.0, 401);

    let kept = trail(b, &tokens.admin, "").await;
    app.shutdown().await.unwrap();
    // In one test process the stopped app's store lets go of the database a moment later.
    let again = eventually(Duration::from_secs(10), "the restart", || async {
        let args = ["--config-delay=200ms", "--retry-base=50ms"]
            .into_iter()
            .chain(args.iter().copied());
        cpe_test_support::start_app(&certs_dir(), args.map(String::from))
            .await
            .ok()
    })
    .await;
    let reread = eventually(Duration::from_secs(10), "the restarted trail", || async {
        let (code, page) = send(
            client()
                .get(url(again.service_b_addr, "/api/v1/audit?limit=500"))
                .bearer_auth(&tokens.admin),
        )
        .await;
        (code == 200).then(|| page["records"].as_array().unwrap().clone())
    })
    .await;
    assert_eq!(reread, kept, "the trail survives the restart");
    again.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(tokens.file.parent().unwrap());
}

/// Without a token in force, the trail is for loopback peers, and writes name `loopback`.
#[tokio::test]
async fn without_tokens_writes_are_recorded_as_loopback() {
    let app = start(&["--config-delay=10ms"]).await;
    let b = app.service_b_addr;
    let task = create_task(b, "loop0001").await;
    let (code, page) = send(client().get(url(b, "/api/v1/audit?action=create"))).await;
    assert_eq!(code, 200, "{page}");
    let (code, over_http1) = send(http1_client().get(url(b, "/api/v1/audit?action=create"))).await;
    assert_eq!((code, &over_http1), (200, &page), "the same over HTTP/1.1");
    let record = &page["records"][0];
    assert_eq!(
        (record["actor"].as_str(), record["taskIds"][0].as_str()),
        (Some("loopback"), Some(task.as_str()))
    );
    let (_, listed) = send(client().get(url(b, "/api/v1/equipment/cpe/loop0001/tasks"))).await;
    assert_eq!(listed["tasks"][0]["requestedBy"], "loopback", "{listed}");
    let (code, answer) = send(client().get(url(b, "/api/v1/audit?since=soon"))).await;
    assert_eq!(code, 400, "{answer}");
    app.shutdown().await.unwrap();
}
