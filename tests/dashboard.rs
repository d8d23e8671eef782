//! The dashboard at `GET /` on Service B: its headers and mode route over HTTPS, then the page
//! itself in headless Chromium driven through the W3C WebDriver API (chromedriver): a task shows
//! up and completes, search by device, retry one and "retry all shown", cancel a queued task, and
//! the audit trail of those changes (who asked, paging, filters, a refusal shown as text).
//!
//! The browser part skips with a message when chromium or chromedriver is missing, unless
//! `REQUIRE_CHROMIUM=1` (as in .ci/run). Screenshots go to `target/dashboard/`.

// The api binary's helpers (tests/api/common); this binary uses only some of them, hence the allow.
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_the_mode_route_answers() {
    let app = start(&[]).await;
    let b = app.service_b_addr;
    let page = client().get(url(b, "/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let policy = header("content-security-policy");
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/dashboard.js""#) && !html.contains("<script>"));
    for (path, content_type) in [
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let asset = client().get(url(b, path)).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(asset.headers()["content-type"], content_type, "{path}");
    }
    // The script shows data as text only: task errors come from devices.
    let script = client()
        .get(url(b, "/dashboard.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"));
    let (status, body) = send(client().post(url(b, "/"))).await;
    assert_eq!((status, body["code"].clone()), (405, json!(405)), "{body}");
    let (_, mode) = send(client().get(url(b, "/api/v1/dashboard"))).await;
    assert_eq!(
        mode,
        json!({"code": 200, "writable": true, "tokenRequired": false, "scope": null})
    );
    app.shutdown().await.unwrap();

    let app = start(&["--api-token=dashboard-token-0123456789"]).await;
    let b = app.service_b_addr;
    let (_, mode) = send(client().get(url(b, "/api/v1/dashboard"))).await;
    assert_eq!(
        mode,
        json!({"code": 200, "writable": false, "tokenRequired": true, "scope": null})
    );
    let (_, mode) = send(
        client()
            .get(url(b, "/api/v1/dashboard"))
            .bearer_auth("dashboard-token-0123456789"),
    )
    .await;
    assert_eq!(
        mode,
        json!({"code": 200, "writable": true, "tokenRequired": true, "scope": "admin"})
    );
    assert_eq!(
        client().get(url(b, "/")).send().await.unwrap().status(),
        200,
        "the page needs no token"
    );
    app.shutdown().await.unwrap();
}

/// Without a token, a client off loopback may read but not cancel or retry. The service listens on
/// every address and the client reaches it through this machine's own non-loopback address.
#[tokio::test]
async fn without_a_token_writes_are_refused_off_loopback() {
    let Some(own) = own_address() else {
        return eprintln!("skipped: this machine has no non-loopback IPv4 address");
    };
    let app = start(&[
        "--service-b-addr=0.0.0.0:0",
        "--config-delay=60s",
        "--call-timeout=120s",
    ])
    .await;
    let b = app.service_b_addr;
    let port = b.unwrap().port();
    let task = create_task(b, "remote01").await;
    let remote = client_built(|builder| builder.resolve("localhost", std::net::SocketAddr::new(own, port)));
    let (_, mode) = send(remote.get(url(b, "/api/v1/dashboard"))).await;
    assert_eq!(
        mode,
        json!({"code": 200, "writable": false, "tokenRequired": false, "scope": null})
    );
    let (status, listed) = send(remote.get(url(b, "/api/v1/tasks"))).await;
    assert_eq!(status, 200, "reading is open: {listed}");
    let task_path = format!("/api/v1/equipment/cpe/remote01/task/{task}");
    for request in [
        remote.delete(url(b, &task_path)),
        remote.post(url(b, &format!("{task_path}/retry"))),
        remote.post(url(b, "/api/v1/tasks/retry")),
        remote.post(url(b, "/api/v1/tasks/cancel")),
    ] {
        let (status, body) = send(request).await;
        assert_eq!((status, body["code"].clone()), (403, json!(403)), "{body}");
        assert!(body["message"].as_str().unwrap().contains("--api-token"), "{body}");
    }
    assert_eq!(task_status(b, "remote01", &task).await["status"], "running");
    app.shutdown().await.unwrap();
}

/// The address this machine would use to reach others; a UDP connect sends nothing.
fn own_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn an_operator_watches_searches_retries_and_cancels_in_a_browser() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let browser = driver.session().await;
    let shots = screenshots_dir();

    // A task appears and turns completed; search narrows the list to one device.
    let app = start(&[]).await;
    let b = app.service_b_addr;
    let done = create_task(b, "dash0001").await;
    browser.navigate(&url(b, "/")).await;
    browser.wait_text("#mode", "read-write").await;
    browser.wait_text(&row_status(&done), "completed").await;
    let other = create_task(b, "dash0002").await;
    browser.wait_text(&row_status(&other), "completed").await;
    browser.type_into("#search", "dash0002").await;
    browser
        .wait_until("only dash0002's task listed", |b| async move {
            let devices = b.texts("#tasks td.device").await;
            devices == ["dash0002"]
        })
        .await;
    browser.click(&format!("tr[data-task-id=\"{other}\"] td.id")).await;
    browser.wait_text("#d-device", "dash0002").await;
    browser.screenshot(&shots.join("completed.png")).await;
    app.shutdown().await.unwrap();

    // Failed tasks: retry one from its row, then "retry all shown" with its confirmation.
    let app = start(&["--fail-rate=1.0", "--max-attempts=1"]).await;
    let b = app.service_b_addr;
    let failed = create_task(b, "dash0003").await;
    browser.navigate(&url(b, "/")).await;
    browser.wait_text(&row_status(&failed), "failed").await;
    browser
        .click(&format!("tr[data-task-id=\"{failed}\"] button.retry"))
        .await;
    browser.wait_text("#report", "retried").await;
    let retried = task_status(b, "dash0003", &failed).await["retriedAs"]
        .as_str()
        .expect("the task names its retry")
        .to_owned();
    browser.wait_text(&row_status(&retried), "failed").await;
    browser.click(&format!("tr[data-task-id=\"{failed}\"] td.id")).await;
    browser.wait_text("#d-retried", &retried).await;
    browser.wait_text("#d-error", "Service A answered HTTP 500").await;
    // The test created it from this machine without a token in force.
    browser.wait_text_is("#d-requested", "loopback").await;
    browser.screenshot(&shots.join("failed.png")).await;
    browser.click("#retry-all").await;
    browser.accept_alert().await;
    browser.wait_text("#report", "retry all: done 1, skipped 0").await;
    let again = task_status(b, "dash0003", &retried).await;
    assert!(
        again["retriedAs"].is_string(),
        "retry all retried the shown task: {again}"
    );
    let last = again["retriedAs"].as_str().unwrap().to_owned();
    // The audit trail, newest first: the retry of "retry all", the row's retry, the test's create.
    browser.click("#audit-toggle").await;
    browser
        .wait_until("the trail shows the create and both retries", |b| async move {
            b.column("#audit-rows td.action").await == ["retry", "retry", "create"]
        })
        .await;
    assert_eq!(browser.column("#audit-rows td.actor").await, ["loopback"; 3]);
    assert_eq!(browser.column("#audit-rows td.source").await, ["127.0.0.1"; 3]);
    let task_path = "/api/v1/equipment/cpe/dash0003/task";
    assert_eq!(
        browser.column("#audit-rows td.route").await,
        [
            format!("POST {task_path}/{retried}/retry"),
            format!("POST {task_path}/{failed}/retry"),
            "POST /api/v1/equipment/cpe/dash0003".to_owned(),
        ]
    );
    assert_eq!(
        browser.column("#audit-rows td.id").await,
        [
            format!("{last}, {retried}"),
            format!("{retried}, {failed}"),
            failed.clone()
        ]
    );
    assert_eq!(browser.column("#audit-rows td.http").await, ["200"; 3]);
    assert_eq!(
        browser.column("#audit-rows td.outcome").await,
        ["retried", "retried", "accepted"]
    );
    assert!(!browser.displayed("#tasks").await, "the trail replaces the task list");
    browser.screenshot(&shots.join("audit.png")).await;
    // Back to the tasks: the retry the page asked for names its requester too.
    browser.click("#audit-toggle").await;
    browser.click(&format!("tr[data-task-id=\"{retried}\"] td.id")).await;
    browser.wait_text_is("#d-task", &retried).await;
    browser.wait_text_is("#d-requested", "loopback").await;
    app.shutdown().await.unwrap();

    // One worker busy for a minute: the device's second task stays queued and can be cancelled.
    let app = start(&["--workers=1", "--config-delay=60s", "--call-timeout=120s"]).await;
    let b = app.service_b_addr;
    let busy = create_task(b, "dash0004").await;
    let queued = create_task(b, "dash0004").await;
    browser.navigate(&url(b, "/")).await;
    browser.wait_text(&row_status(&queued), "queued").await;
    browser.screenshot(&shots.join("queued.png")).await;
    browser
        .click(&format!("tr[data-task-id=\"{queued}\"] button.cancel"))
        .await;
    browser.wait_text(&row_status(&queued), "cancelled").await;
    assert_eq!(task_status(b, "dash0004", &queued).await["status"], "cancelled");
    // 50 creates more: the trail's first page (50) holds only them, the cancel is on the next.
    for n in 0..50 {
        create_task(b, &format!("page{n:04}")).await;
    }
    browser.click("#audit-toggle").await;
    browser
        .wait_until("a first page of 50 creates", |b| async move {
            let actions = b.column("#audit-rows td.action").await;
            actions.len() == 50 && actions.iter().all(|action| action == "create")
        })
        .await;
    assert!(!browser.enabled("#audit-prev").await, "no newer page");
    browser.click("#audit-next").await;
    browser
        .wait_until("the older page: the cancel and the first two creates", |b| async move {
            b.column("#audit-rows td.action").await == ["cancel", "create", "create"]
        })
        .await;
    assert_eq!(
        browser.column("#audit-rows td.route").await[0],
        format!("DELETE /api/v1/equipment/cpe/dash0004/task/{queued}")
    );
    assert_eq!(
        browser.column("#audit-rows td.id").await,
        [queued.clone(), queued, busy]
    );
    assert_eq!(browser.column("#audit-rows td.actor").await, ["loopback"; 3]);
    assert_eq!(browser.column("#audit-rows td.outcome").await[0], "cancelled");
    assert!(!browser.enabled("#audit-next").await, "no older page");
    browser.click("#audit-prev").await;
    browser
        .wait_until("the first page again", |b| async move {
            b.column("#audit-rows td.action").await.len() == 50
        })
        .await;
    // Filters: by action, then by an actor that did nothing here.
    browser.click("#audit-action option[value=\"cancel\"]").await;
    browser
        .wait_until("only the cancel", |b| async move {
            b.column("#audit-rows td.action").await == ["cancel"]
        })
        .await;
    browser.type_into("#audit-actor", "anonymous").await;
    browser.wait_text_is("#audit-rows td.note", "no records").await;
    app.shutdown().await.unwrap();

    // With --api-token the page is read-only until it is given the token, then lists tasks.
    let token = "dashboard-token-0123456789";
    let app = start(&[&format!("--api-token={token}")]).await;
    let b = app.service_b_addr;
    let (_, created) = send(
        client()
            .post(url(b, "/api/v1/equipment/cpe/dash0005"))
            .bearer_auth(token)
            .body(EXAMPLE),
    )
    .await;
    let guarded = created["taskId"].as_str().expect("created with the token").to_owned();
    // A write without the token is refused and recorded with the path it gave: markup, as text.
    let hostile = "/api/v1/equipment/cpe/x&lt;img&gt;/task/y/retry";
    let (status, _) = send(client().post(url(b, hostile))).await;
    assert_eq!(status, 401);
    browser.navigate(&url(b, "/")).await;
    browser.wait_text("#mode", "read-only").await;
    browser.wait_text("#status-line", "HTTP 401").await;
    assert!(
        !browser.displayed("#audit-toggle").await,
        "no audit trail without the token"
    );
    browser.type_into("#token-input", token).await;
    browser.click("#token-save").await;
    browser.wait_text("#mode", "read-write").await;
    browser.wait_text(&row_status(&guarded), "completed").await;
    browser.click(&format!("tr[data-task-id=\"{guarded}\"] td.id")).await;
    browser.wait_text_is("#d-requested", "default").await;
    browser.click("#audit-toggle").await;
    browser
        .wait_until("the refusal and the create", |b| async move {
            b.column("#audit-rows td.action").await == ["refused", "create"]
        })
        .await;
    assert_eq!(browser.column("#audit-rows td.actor").await, ["loopback", "default"]);
    assert_eq!(
        browser.column("#audit-rows td.route").await[0],
        format!("POST {hostile}"),
        "shown as the characters it holds, not decoded as HTML"
    );
    assert!(browser.find_all("#audit-rows img").await.is_empty());
    assert_eq!(browser.column("#audit-rows td.http").await, ["401", "200"]);
    assert_eq!(
        browser.column("#audit-rows td.outcome").await[0],
        "refused: no valid bearer token"
    );
    app.shutdown().await.unwrap();
    browser.end().await;
}

/// An admin token from a tokens file opens the audit trail, which names it; demoted to `read` while
/// the trail is open, the page shows the refusal's message and the way back, then offers it no more.
#[tokio::test]
async fn an_admin_token_reads_the_audit_trail_until_it_is_demoted() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let browser = driver.session().await;
    let dir = std::env::temp_dir().join(format!("cpe-config-dashboard-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let token = cpe_config::tokens::create(&file, "auditor", cpe_config::tokens::Scope::Admin, None).unwrap();
    let app = start(&[&format!("--tokens-file={}", file.display())]).await;
    let b = app.service_b_addr;
    let (status, created) = send(
        client()
            .post(url(b, "/api/v1/equipment/cpe/audit001"))
            .bearer_auth(&token)
            .body(EXAMPLE),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    browser.navigate(&url(b, "/")).await;
    browser.type_into("#token-input", &token).await;
    browser.click("#token-save").await;
    browser.wait_text("#mode", "(admin token)").await;
    browser.click("#audit-toggle").await;
    browser
        .wait_until("the create, by the token's name", |b| async move {
            b.column("#audit-rows td.actor").await == ["auditor"]
        })
        .await;
    assert_eq!(
        browser.column("#audit-rows td.id").await,
        [created["taskId"].as_str().unwrap()]
    );

    demote(&file);
    browser.wait_text("#mode", "(read token)").await;
    browser
        .wait_text_is(
            "#audit-note",
            "HTTP 403: Token `auditor` has scope read; this route needs admin",
        )
        .await;
    assert!(
        browser.find_all("#audit-rows tr").await.is_empty(),
        "no records left shown"
    );
    browser.screenshot(&screenshots_dir().join("audit-refused.png")).await;
    browser.wait_text_is("#audit-toggle", "‹ Tasks").await;
    browser.click("#audit-toggle").await;
    let row = row_status(created["taskId"].as_str().unwrap());
    browser
        .wait_until("the task list back, the audit trail no longer offered", |b| {
            let row = row.clone();
            async move { b.displayed(&row).await && !b.displayed("#audit-toggle").await }
        })
        .await;
    app.shutdown().await.unwrap();
    browser.end().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites the tokens file with every token's scope `read`: beside, owner-only, then renamed, as
/// the running service expects of it.
fn demote(file: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tokens: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for entry in tokens["tokens"].as_array_mut().unwrap() {
        entry["scope"] = json!("read");
    }
    let partial = file.with_extension("partial");
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .unwrap();
    serde_json::to_writer(out, &tokens).unwrap();
    std::fs::rename(&partial, file).unwrap();
}

/// A page of another origin, opened by the operator on the machine that runs Service B (a loopback
/// client, so without `--api-token` its writes would pass the loopback rule): it auto-submits a
/// `text/plain` form that creates a task and one that cancels every task, and fires the same as
/// `no-cors` fetches. None of them may change anything.
#[tokio::test]
async fn a_page_of_another_origin_cannot_create_or_cancel_tasks_through_the_operators_browser() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let browser = driver.session().await;
    let app = start(&["--workers=1", "--config-delay=60s", "--call-timeout=120s"]).await;
    let b = app.service_b_addr;
    let _busy = create_task(b, "dash0006").await;
    let queued = create_task(b, "dash0006").await;
    let target = url(b, "");
    let page = format!(
        r#"<!doctype html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="create" method="POST" enctype="text/plain" target="sink1" action="{target}/api/v1/equipment/cpe/evil0001">
<input name='{{"timeoutInSeconds": 1, "parameters": {{"vlan": 666}}, "x": "' value='"}}'></form>
<form id="cancel" method="POST" enctype="text/plain" target="sink2" action="{target}/api/v1/tasks/cancel">
<input name='{{"all": true, "x": "' value='"}}'></form>
<script>
document.getElementById("create").submit();
document.getElementById("cancel").submit();
const body = JSON.stringify({{timeoutInSeconds: 1, parameters: {{vlan: 667}}}});
fetch("{target}/api/v1/equipment/cpe/evil0002", {{method: "POST", mode: "no-cors", body}});
fetch("{target}/api/v1/tasks/cancel", {{method: "POST", mode: "no-cors", body: "{{}}"}});
setTimeout(() => {{ document.title = "sent"; }}, 1500);
</script></body>"#
    );
    let attacker = serve_page(page).await;
    browser.navigate(&format!("http://{attacker}/")).await;
    browser
        .wait_until("the page sent its requests", |b| async move {
            b.command(reqwest::Method::GET, "/title", Value::Null).await == "sent"
        })
        .await;
    // Once the page is done, the state it tried to change.
    let (_, page) = send(client().get(url(b, "/api/v1/tasks"))).await;
    let devices: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|task| task["equipmentId"].as_str())
        .collect();
    assert_eq!(devices, ["dash0006", "dash0006"], "no task created: {page}");
    assert_eq!(
        task_status(b, "dash0006", &queued).await["status"],
        "queued",
        "nothing cancelled"
    );
    app.shutdown().await.unwrap();
    browser.end().await;
}

/// Serves `page` to every request on a new loopback port (another origin than Service B's).
async fn serve_page(page: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

fn row_status(task: &str) -> String {
    format!("tr[data-task-id=\"{task}\"] td.status")
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    base: String,
    profile: PathBuf,
}

impl Driver {
    async fn start() -> Option<Driver> {
        if !(Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()) {
            assert!(
                std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "REQUIRE_CHROMIUM=1 but {CHROMIUM} or {CHROMEDRIVER} is missing"
            );
            eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)");
            return None;
        }
        cpe_config::tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own: dropping the driver stops the browsers it started too, even
        // when a failed test never ended its session.
        let child = std::os::unix::process::CommandExt::process_group(&mut Command::new(CHROMEDRIVER), 0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!("cpe-config-chromium-{}", uuid::Uuid::new_v4()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            profile,
        };
        let status = format!("{}/status", driver.base);
        eventually(DEADLINE, "chromedriver ready", || {
            let status = status.clone();
            async move {
                let answer = reqwest::get(&status).await.ok()?.json::<Value>().await.ok()?;
                answer["value"]["ready"].as_bool().filter(|ready| *ready)
            }
        })
        .await;
        Some(driver)
    }

    async fn session(&self) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", "--disable-component-update", "--disable-sync",
                    "--window-size=1200,800",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            },
        }}});
        let http = reqwest::Client::new();
        let answer: Value = http
            .post(format!("{}/session", self.base))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"));
        Browser {
            http,
            session: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test started (chromedriver and its browsers).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One WebDriver session: the few commands the test needs.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() { request } else { request.json(&body) };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, body).await
    }

    async fn navigate(&self, to: &str) {
        self.post("/url", json!({"url": to})).await;
    }

    /// Element ids of every match of a CSS selector; none while the page has not drawn them yet.
    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e.as_object()?.values().next()?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The texts of every match; an element the page replaced meanwhile is left out.
    async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.find_all(css).await {
            let text = self
                .command(reqwest::Method::GET, &format!("/element/{element}/text"), Value::Null)
                .await;
            if let Some(text) = text.as_str() {
                texts.push(text.to_owned());
            }
        }
        texts
    }

    /// The texts of every match, read again until none was replaced while read: a column of a
    /// table the page redraws every few seconds.
    async fn column(&self, css: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let elements = self.find_all(css).await.len();
            let texts = self.texts(css).await;
            if texts.len() == elements {
                return texts;
            }
            assert!(start.elapsed() < DEADLINE, "{css} never read whole within {DEADLINE:?}");
        }
    }

    /// Whether the first match is shown; false when there is none.
    async fn displayed(&self, css: &str) -> bool {
        let Some(element) = self.find_all(css).await.into_iter().next() else {
            return false;
        };
        let path = format!("/element/{element}/displayed");
        self.command(reqwest::Method::GET, &path, Value::Null).await == true
    }

    async fn enabled(&self, css: &str) -> bool {
        let Some(element) = self.find_all(css).await.into_iter().next() else {
            return false;
        };
        let path = format!("/element/{element}/enabled");
        self.command(reqwest::Method::GET, &path, Value::Null).await == true
    }

    async fn wait_until<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn(Browser) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !check(self.clone()).await {
            assert!(start.elapsed() < DEADLINE, "not within {DEADLINE:?}: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_text(&self, css: &str, contains: &str) {
        self.wait_until(&format!("{css} shows {contains:?}"), |b| async move {
            b.texts(css).await.iter().any(|text| text.contains(contains))
        })
        .await;
    }

    async fn wait_text_is(&self, css: &str, exactly: &str) {
        self.wait_until(&format!("{css} shows exactly {exactly:?}"), |b| async move {
            b.texts(css).await == [exactly]
        })
        .await;
    }

    /// Clicks the first match, waiting for it to exist; the page redraws the list every few
    /// seconds, so a click that hit a replaced element is tried again.
    async fn click(&self, css: &str) {
        self.wait_until(&format!("{css} clicked"), |b| async move {
            let Some(element) = b.find_all(css).await.into_iter().next() else {
                return false;
            };
            b.post(&format!("/element/{element}/click"), json!({})).await.is_null()
        })
        .await;
    }

    /// Types into the first match, waiting until it exists and is shown (a hidden field refuses keys).
    async fn type_into(&self, css: &str, text: &str) {
        self.wait_until(&format!("{css} takes keys"), |b| async move {
            let Some(element) = b.find_all(css).await.into_iter().next() else {
                return false;
            };
            b.post(&format!("/element/{element}/value"), json!({"text": text}))
                .await
                .is_null()
        })
        .await;
    }

    async fn accept_alert(&self) {
        self.wait_until("a confirmation to accept", |b| async move {
            b.post("/alert/accept", json!({})).await.is_null()
        })
        .await;
    }

    async fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let png = self.command(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap();
        std::fs::write(to, png).unwrap();
    }

    async fn end(&self) {
        self.command(reqwest::Method::DELETE, "", Value::Null).await;
    }
}
