//! `GET /metrics` on both services after real traffic over HTTPS: the counters move by what was
//! done, the gauges match the store, no label carries a device or task id, and `promtool check
//! metrics` accepts a scrape (required when REQUIRE_PROMTOOL=1, as `.ci/run` sets).

use crate::common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(30);

/// One scrape: its text, and each sample by its full series name (`name{labels}`).
pub(crate) struct Scrape {
    pub(crate) text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// The value of one series; labels in the order the encoder writes them.
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in the scrape:\n{}", self.text))
    }

    fn has(&self, series: &str) -> bool {
        self.samples.contains_key(series)
    }

    /// Every label value of every sample.
    fn label_values(&self) -> Vec<&str> {
        self.samples
            .keys()
            .filter_map(|series| series.split_once('{'))
            .flat_map(|(_, labels)| labels.trim_end_matches('}').split("\","))
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(_, value)| value.trim_end_matches('"'))
            .collect()
    }
}

pub(crate) async fn scrape(addr: Option<SocketAddr>) -> Scrape {
    let response = client().get(url(addr, "/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            (series.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect();
    Scrape { text, samples }
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn post(addr: Option<SocketAddr>, device: &str, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut request = client()
        .post(url(addr, &format!("/api/v1/equipment/cpe/{device}")))
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

#[tokio::test]
async fn counters_and_gauges_follow_real_traffic_on_both_services() {
    // One worker and a one-second device: a second task waits queued long enough to be seen and cancelled.
    let app = start(&["--workers=1", "--config-delay=1s", "--call-timeout=10s"]).await;
    let b = app.service_b_addr;
    let before = scrape(b).await;
    assert_eq!(before.value("cpe_config_tasks_created_total{result=\"accepted\"}"), 0.0);
    assert_eq!(before.value("cpe_config_tasks{state=\"queued\"}"), 0.0);
    assert!(!before.has("cpe_config_oldest_queued_task_timestamp_seconds"));
    let build = format!(
        "cpe_config_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        before.text.lines().any(|l| l.starts_with(&build) && l.ends_with("} 1")),
        "{}",
        before.text
    );

    let started = now_seconds();
    let first = create_task(b, "metric01").await;
    let second = create_task(b, "metric02").await;
    // The second waits behind the first for the only worker: queued, and the oldest queued task.
    let waiting = scrape(b).await;
    assert_eq!(waiting.value("cpe_config_tasks{state=\"queued\"}"), 1.0);
    assert_eq!(waiting.value("cpe_config_worker_slots_used"), 1.0);
    assert_eq!(waiting.value("cpe_config_worker_slots_available"), 0.0);
    let oldest = waiting.value("cpe_config_oldest_queued_task_timestamp_seconds");
    assert!(
        (started - 1.0..=now_seconds()).contains(&oldest),
        "a Unix timestamp of the create, not an age: {oldest}"
    );
    let (status, body) = send(client().delete(url(b, &format!("/api/v1/equipment/cpe/metric02/task/{second}")))).await;
    assert_eq!(status, 200, "{body}");

    // A duplicate create (same Idempotency-Key and body), and two refused ones.
    let (status, body) = post(b, "metric03", Some("metrics-key-1"), EXAMPLE).await;
    assert_eq!(status, 200, "{body}");
    let third = body["taskId"].as_str().unwrap().to_owned();
    let (status, again) = post(b, "metric03", Some("metrics-key-1"), EXAMPLE).await;
    assert_eq!((status, &again["taskId"]), (200, &body["taskId"]));
    assert_eq!(post(b, "metric04", None, "{not json").await.0, 400);
    assert_eq!(
        post(
            b,
            "metric04",
            Some("metrics-key-1"),
            r#"{"timeoutInSeconds": 1, "parameters": {}}"#
        )
        .await
        .0,
        422
    );

    for (device, task) in [("metric01", &first), ("metric03", &third)] {
        let done = wait_completed(b, device, task, LIMIT).await;
        assert_eq!(done["code"], 200, "{done}");
    }
    task_status(b, "metric02", &second).await;

    let after = scrape(b).await;
    let created = |result: &str| after.value(&format!("cpe_config_tasks_created_total{{result=\"{result}\"}}"));
    assert_eq!(
        (created("accepted"), created("duplicate"), created("refused")),
        (3.0, 1.0, 2.0)
    );
    let finished = |result: &str| after.value(&format!("cpe_config_tasks_finished_total{{result=\"{result}\"}}"));
    assert_eq!(
        (finished("completed"), finished("cancelled"), finished("failed")),
        (2.0, 1.0, 0.0)
    );
    // The gauges read the store: two completed, one cancelled, nothing open.
    let tasks = |state: &str| after.value(&format!("cpe_config_tasks{{state=\"{state}\"}}"));
    assert_eq!(
        [
            tasks("queued"),
            tasks("running"),
            tasks("completed"),
            tasks("failed"),
            tasks("cancelled")
        ],
        [0.0, 0.0, 2.0, 0.0, 1.0]
    );
    assert!(!after.has("cpe_config_oldest_queued_task_timestamp_seconds"));
    assert_eq!(after.value("cpe_config_worker_slots_used"), 0.0);
    assert_eq!(after.value("cpe_config_worker_slots_available"), 1.0);
    // Two calls of about a second each: counted as ok, in the buckets around the 1 s delay
    // (scaled from 55 s and 65 s at the default 60 s: 0.916.. and 1.083..).
    assert_eq!(after.value("cpe_config_service_a_calls_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(
        after.value("cpe_config_service_a_call_duration_seconds_count{outcome=\"ok\"}"),
        2.0
    );
    let fast = after
        .samples
        .iter()
        .find(|(series, _)| {
            series.starts_with("cpe_config_service_a_call_duration_seconds_bucket{outcome=\"ok\",le=\"0.91666")
        })
        .map(|(_, value)| *value);
    assert_eq!(
        fast,
        Some(0.0),
        "no call ended before the device's delay:\n{}",
        after.text
    );
    assert_eq!(
        after.value("cpe_config_service_a_call_duration_seconds_bucket{outcome=\"ok\",le=\"2\"}"),
        2.0
    );

    let route = "/api/v1/equipment/cpe/{id}";
    let requests = |service: &str, route: &str, method: &str, code: u16| {
        after.value(&format!(
            "cpe_config_http_requests_total{{service=\"{service}\",route=\"{route}\",method=\"{method}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(requests("service_b", route, "POST", 200), 4.0);
    assert_eq!(requests("service_b", route, "POST", 400), 1.0);
    assert_eq!(requests("service_b", route, "POST", 422), 1.0);
    assert_eq!(
        requests("service_b", &format!("{route}/task/{{task}}"), "DELETE", 200),
        1.0
    );
    assert!(requests("service_b", &format!("{route}/task/{{task}}"), "GET", 200) >= 3.0);
    assert_eq!(
        requests("service_b", "/metrics", "GET", 200),
        2.0,
        "the scrapes before this one"
    );
    // Service A's own calls, seen from its side, in the same process's registry.
    assert_eq!(requests("service_a", route, "POST", 200), 2.0);
    assert_eq!(
        after.value(&format!(
            "cpe_config_http_request_duration_seconds_count{{service=\"service_b\",route=\"{route}\",method=\"POST\"}}"
        )),
        6.0
    );

    for value in after.label_values() {
        for id in [
            "metric01",
            "metric02",
            "metric03",
            "metric04",
            &first,
            &second,
            &third,
            "metrics-key-1",
        ] {
            assert!(!value.contains(id), "label value {value:?} holds an id");
        }
    }

    // Service A answers /metrics too, from the same registry.
    let from_a = scrape(app.service_a_addr).await;
    assert_eq!(from_a.value("cpe_config_service_a_calls_total{outcome=\"ok\"}"), 2.0);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_that_runs_out_of_attempts_counts_as_failed_and_its_message_as_dead_lettered() {
    let app = start(&["--fail-rate=1.0", "--config-delay=0s", "--max-attempts=2"]).await;
    let b = app.service_b_addr;
    let task = create_task(b, "doomed01").await;
    let done = wait_completed(b, "doomed01", &task, LIMIT).await;
    assert_eq!(done["code"], 500, "{done}");
    let after = scrape(b).await;
    assert_eq!(
        after.value("cpe_config_service_a_calls_total{outcome=\"transient\"}"),
        2.0
    );
    assert_eq!(after.value("cpe_config_service_a_calls_total{outcome=\"ok\"}"), 0.0);
    assert_eq!(after.value("cpe_config_tasks_finished_total{result=\"failed\"}"), 1.0);
    assert_eq!(
        after.value("cpe_config_messages_dead_lettered_total{reason=\"attempts_used_up\"}"),
        1.0
    );
    assert!(!after.has("cpe_config_tasks_finished_total{result=\"dead_lettered\"}"));
    assert_eq!(after.value("cpe_config_tasks{state=\"failed\"}"), 1.0);
    let a_answers = "cpe_config_http_requests_total{service=\"service_a\",route=\"/api/v1/equipment/cpe/{id}\",method=\"POST\",code=\"500\"}";
    assert_eq!(after.value(a_answers), 2.0);
    app.shutdown().await.unwrap();
}

/// Tasks driven to every end (completed, failed at random, cancelled): each counter says what the
/// status API says, task by task.
#[tokio::test]
async fn the_finished_counters_agree_with_the_status_api() {
    let app = start(&[
        "--fail-rate=0.5",
        "--max-attempts=1",
        "--config-delay=300ms",
        "--workers=4",
    ])
    .await;
    let b = app.service_b_addr;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let device = format!("truth{n:03}");
        tasks.push((device.clone(), create_task(b, &device).await));
    }
    // Behind the first task of its device, this one is still queued: cancelled.
    let queued = create_task(b, "truth000").await;
    let (status, body) = send(client().delete(url(b, &format!("/api/v1/equipment/cpe/truth000/task/{queued}")))).await;
    assert_eq!(status, 200, "{body}");
    let mut seen = std::collections::BTreeMap::<String, f64>::new();
    *seen.entry("cancelled".into()).or_default() += 1.0;
    for (device, task) in &tasks {
        let done = wait_completed(b, device, task, LIMIT).await;
        *seen.entry(done["status"].as_str().unwrap().to_owned()).or_default() += 1.0;
    }
    assert!(seen.contains_key("failed"), "half of the calls fail: {seen:?}");
    let after = scrape(b).await;
    for (result, count) in &seen {
        let series = format!("cpe_config_tasks_finished_total{{result=\"{result}\"}}");
        assert_eq!(after.value(&series), *count, "{series}: {seen:?}");
    }
    let dead = after.value("cpe_config_messages_dead_lettered_total{reason=\"attempts_used_up\"}");
    assert_eq!(
        dead, seen["failed"],
        "every failed task's message went to the dead-letter queue"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_need_no_token_and_take_only_get() {
    let app = start(&["--api-token=metrics-test-token-0123"]).await;
    let b = app.service_b_addr;
    let (status, _) = send(client().get(url(b, "/api/v1/tasks"))).await;
    assert_eq!(status, 401, "the task routes still need the token");
    scrape(b).await;
    let (status, body) = send(client().post(url(b, "/metrics"))).await;
    assert_eq!((status, body["code"].as_u64()), (405, Some(405)));
    let after = scrape(b).await;
    let unknown = "cpe_config_http_requests_total{service=\"service_b\",route=\"other\",method=\"GET\",code=\"404\"}";
    assert!(!after.has(unknown));
    send(client().get(url(b, "/no/such/path/abc123"))).await;
    assert_eq!(
        scrape(b).await.value(unknown),
        1.0,
        "an unknown path is counted as `other`"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_broker_links_are_shown_connected() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = cpe_test_support::unique_queue("test-metrics");
    let app = start(&[
        &format!("--amqp-url={amqp}"),
        &format!("--queue={queue}"),
        &format!("--results-queue={queue}-results"),
    ])
    .await;
    let b = app.service_b_addr;
    let task = create_task(b, "broker01").await;
    wait_completed(b, "broker01", &task, LIMIT).await;
    let after = scrape(b).await;
    for link in ["publish", "consume"] {
        assert_eq!(
            after.value(&format!("cpe_config_broker_connected{{link=\"{link}\"}}")),
            1.0
        );
        assert_eq!(
            after.value(&format!("cpe_config_broker_reconnects_total{{link=\"{link}\"}}")),
            0.0
        );
    }
    app.shutdown().await.unwrap();
    cpe_test_support::delete_queues(&amqp, &queue).await;
}

/// `promtool check metrics` (Debian's `prometheus` package) on a scrape after traffic.
#[tokio::test]
async fn promtool_accepts_a_scrape() {
    let promtool = std::process::Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        if std::env::var("REQUIRE_PROMTOOL").as_deref() == Ok("1") {
            panic!("promtool is required (REQUIRE_PROMTOOL=1) but not installed; apt-get install prometheus");
        }
        eprintln!("skipping: promtool not installed (set REQUIRE_PROMTOOL=1 to make this a failure)");
        return;
    }
    let app = start(&["--fail-rate=1.0", "--config-delay=0s", "--max-attempts=1"]).await;
    let task = create_task(app.service_b_addr, "lint0001").await;
    wait_completed(app.service_b_addr, "lint0001", &task, LIMIT).await;
    send(client().get(url(app.service_b_addr, "/healthz"))).await;
    let text = scrape(app.service_b_addr).await.text;
    app.shutdown().await.unwrap();

    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
