//! Shared test setup: an app on port 0 over real HTTPS, a client that trusts its certificate,
//! RabbitMQ discovery, and polling with a deadline instead of sleeps.

use cpe_config::startup::App;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use cpe_test_support::EXAMPLE;

/// One certificate pair for the whole test binary, generated once.
pub fn certs_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cpe_config::tls::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("cpe-config-test-certs-{}", uuid::Uuid::new_v4()));
        cpe_config::tls::generate_pair(&dir, false).expect("certificates can be generated");
        dir
    })
    .clone()
}

/// Builds an app on port 0 with the given extra options (a short delay unless overridden).
pub async fn start(extra: &[&str]) -> App {
    let defaults = [
        "--config-delay=200ms",
        "--retry-base=50ms",
        "--call-timeout=1s",
        "--store=memory",
    ];
    let args = defaults.iter().chain(extra).map(|s| s.to_string());
    cpe_test_support::start_app(&certs_dir(), args)
        .await
        .expect("the app starts")
}

pub fn client() -> reqwest::Client {
    client_built(|builder| builder)
}

/// A client held to HTTP/1.1 (`client()` speaks HTTP/2 when the server offers it).
pub fn http1_client() -> reqwest::Client {
    client_built(|builder| builder.http1_only())
}

/// A client that trusts the test certificate, shaped further by `shape`.
pub fn client_built(shape: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> reqwest::Client {
    let trust = cpe_config::tls::client_trust(&certs_dir()).unwrap();
    shape(cpe_test_support::trusting(&trust)).build().unwrap()
}

pub fn url(addr: Option<std::net::SocketAddr>, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.expect("the service runs").port())
}

/// Sends a request and returns the HTTP status and the JSON body (Null when the body is not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the request reaches the server");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `check` until it returns Some, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs a task to Service B and returns its id.
pub async fn create_task(app_b: Option<std::net::SocketAddr>, device: &str) -> String {
    let (status, body) = send(
        client()
            .post(url(app_b, &format!("/api/v1/equipment/cpe/{device}")))
            .body(EXAMPLE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 200);
    body["taskId"].as_str().expect("a task id").to_owned()
}

pub async fn task_status(app_b: Option<std::net::SocketAddr>, device: &str, task: &str) -> Value {
    let (status, body) = send(client().get(url(app_b, &format!("/api/v1/equipment/cpe/{device}/task/{task}")))).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn wait_completed(app_b: Option<std::net::SocketAddr>, device: &str, task: &str, limit: Duration) -> Value {
    // A 503 while a restarted registry comes back is tolerated: only a final answer ends the wait.
    eventually(limit, "the task to complete", || async {
        let (status, body) =
            send(client().get(url(app_b, &format!("/api/v1/equipment/cpe/{device}/task/{task}")))).await;
        (status == 200 && body["code"] != 204).then_some(body)
    })
    .await
}

/// The broker URL, or None (with a note) when none answers; with REQUIRE_RABBITMQ=1 a missing broker fails.
pub async fn rabbitmq() -> Option<String> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let hostport = url
        .rsplit('@')
        .next()
        .unwrap_or(&url)
        .trim_start_matches("amqp://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let reachable = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&hostport))
        .await
        .is_ok_and(|r| r.is_ok());
    if reachable {
        return Some(url);
    }
    if std::env::var("REQUIRE_RABBITMQ").as_deref() == Ok("1") {
        panic!("RabbitMQ is required (REQUIRE_RABBITMQ=1) but nothing answers at {hostport}");
    }
    eprintln!("skipping: RabbitMQ not reachable at {hostport} (set REQUIRE_RABBITMQ=1 to make this a failure)");
    None
}

pub mod broker;
pub mod call_log;
pub mod fake_a;
pub mod fault_proxy;
pub mod process;
pub mod raw;

/// A store a shared test runs against: the option that selects it, and what keeps it alive.
pub struct StoreUnderTest {
    pub option: String,
    _schema: Option<cpe_config::store::postgres::scratch::ScratchSchema>,
}

/// The stores the shared suites run against: memory, and PostgreSQL (a schema of its own) when it
/// answers (with REQUIRE_POSTGRES=1, it must).
pub fn stores() -> Vec<StoreUnderTest> {
    let mut stores = vec![StoreUnderTest {
        option: "--store=memory".into(),
        _schema: None,
    }];
    if let Some(schema) = cpe_config::store::postgres::scratch::ScratchSchema::create() {
        stores.push(StoreUnderTest {
            option: format!("--store={}", schema.url),
            _schema: Some(schema),
        });
    }
    stores
}
