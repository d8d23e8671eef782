//! Three instances of the real binary on one RabbitMQ queue and one PostgreSQL schema, checked in the
//! manner of rabbitmq/jepsen: every accepted task and every call Service A received is recorded, then
//! the history is checked for lost tasks, overlapping or out-of-order calls per device, and duplicates.
//! One instance is killed with -9 and one is stopped for longer than its lease while tasks run.

mod common;

use common::call_log::{CallLog, Checker, Identify};
use common::fault_proxy::{FaultProxy, Mode};
use common::process::{local_args, Process};
use common::{client, rabbitmq, send, unique_queue, url};
use cpe_actors::ports::TaskStore;
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskRecord};
use cpe_config::store::postgres::scratch::ScratchSchema;
use cpe_config::store::postgres::PgStore;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
/// The per-call deadline given to the instances; their device lease lasts this plus 5 s.
const CALL_TIMEOUT: &str = "--call-timeout=2s";

struct Cluster {
    instances: Vec<Process>,
    service_b: Vec<SocketAddr>,
    _schema: ScratchSchema,
}

/// The task of a call, from the `vlan` each task of these tests carries: its number plus one.
fn by_vlan() -> Identify {
    Arc::new(|_, body| {
        let body: Value = serde_json::from_str(body).ok()?;
        body["parameters"]["vlan"].as_u64().map(|vlan| (vlan - 1).to_string())
    })
}

async fn cluster(amqp: &str, queue: &str, service_a: &str, size: usize) -> Option<Cluster> {
    Some(cluster_on(ScratchSchema::create()?, amqp, queue, service_a, size))
}

fn cluster_on(schema: ScratchSchema, amqp: &str, queue: &str, service_a: &str, size: usize) -> Cluster {
    let links = vec![(schema.url.clone(), amqp.to_owned()); size];
    cluster_linked(schema, &links, queue, service_a)
}

/// One instance per (database URL, broker URL) pair, so each may reach them through its own proxy.
fn cluster_linked(schema: ScratchSchema, links: &[(String, String)], queue: &str, service_a: &str) -> Cluster {
    let instances: Vec<Process> = links
        .iter()
        .map(|(database, amqp)| {
            // A short AMQP heartbeat, so the broker notices a stopped instance within seconds and
            // hands its deliveries to the others.
            let amqp = format!("--amqp-url={amqp}?heartbeat=2");
            let store = format!("--store={database}");
            let (queue, results) = (format!("--queue={queue}"), format!("--results-queue={queue}-results"));
            let service_a = format!("--service-a-url={service_a}");
            let args = local_args(&[
                &amqp,
                &store,
                &queue,
                &results,
                &service_a,
                CALL_TIMEOUT,
                "--retry-base=50ms",
                "--workers=16",
                "--shutdown-grace=1s",
            ]);
            Process::spawn(&args, "info")
        })
        .collect();
    let service_b = instances.iter().map(|p| p.wait_for_addr("Service B", LIMIT)).collect();
    Cluster {
        instances,
        service_b,
        _schema: schema,
    }
}

fn assert_clean(report: &common::call_log::Report) {
    assert!(report.lost.is_empty(), "lost: {:?}", report.lost);
    assert!(
        report.overlapping_per_device.is_empty(),
        "overlapping: {:?}",
        report.overlapping_per_device
    );
    assert!(
        report.out_of_order_per_device.is_empty(),
        "out of order: {:?}",
        report.out_of_order_per_device
    );
}

/// For tasks called more than once: from the end of one call to the start of the next, min and max.
fn takeover(calls: &[common::call_log::Call]) -> String {
    let mut by_task: HashMap<&str, Vec<&common::call_log::Call>> = HashMap::new();
    for call in calls {
        if let Some(task) = &call.task {
            by_task.entry(task).or_default().push(call);
        }
    }
    let gaps: Vec<Duration> = by_task
        .values_mut()
        .filter(|calls| calls.len() > 1)
        .flat_map(|calls| {
            calls.sort_by_key(|c| c.start);
            calls
                .windows(2)
                .filter_map(|pair| Some(pair[1].start.saturating_duration_since(pair[0].end?)))
                .collect::<Vec<_>>()
        })
        .collect();
    match (gaps.iter().min(), gaps.iter().max()) {
        (Some(min), Some(max)) => format!("{} tasks, {min:.1?} to {max:.1?}", gaps.len()),
        _ => "no task was called twice".into(),
    }
}

/// Task `number` of a test: its `vlan` names it to the call log (see [`by_vlan`]).
fn request_body(number: usize) -> String {
    format!(
        r#"{{"timeoutInSeconds": 14, "parameters": {{"vlan": {}}}}}"#,
        number + 1
    )
}

async fn create(b: SocketAddr, device: &str, number: usize) -> String {
    let post = client()
        .post(url(Some(b), &format!("/api/v1/equipment/cpe/{device}")))
        .header("content-type", "application/json")
        .body(request_body(number));
    let (code, answer) = send(post).await;
    assert_eq!(code, 200, "{answer}");
    answer["taskId"].as_str().unwrap().to_owned()
}

async fn status(b: SocketAddr, device: &str, task: &str) -> Option<String> {
    let get = client().get(url(Some(b), &format!("/api/v1/equipment/cpe/{device}/task/{task}")));
    let response = get.send().await.ok()?;
    let answer: Value = response.json().await.ok()?;
    answer["status"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_lose_nothing_and_never_overlap_a_device_through_a_kill_and_a_pause() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("scale");
    let service_a = CallLog::start_with(Duration::from_millis(300), by_vlan()).await;
    let Some(mut cluster) = cluster(&amqp, &queue, &service_a.url(), 3).await else {
        return;
    };
    let devices: Vec<String> = (0..100).map(|n| format!("cpe{n:04}")).collect();

    // Ten rounds of one task per device: within a device, acceptance order is the round order.
    let mut accepted = Vec::new();
    let mut numbers = HashMap::new();
    for round in 0..10 {
        // Tasks go to every instance still answering: the first is killed after round 3, the second
        // paused after round 5.
        let live = &cluster.service_b[round.min(6) / 3..];
        let creating = devices.iter().enumerate().map(|(d, device)| {
            let number = round * devices.len() + d;
            let b = live[number % live.len()];
            let device = device.clone();
            async move { (device.clone(), number, create(b, &device, number).await) }
        });
        for (device, number, task) in futures_util::future::join_all(creating).await {
            numbers.insert(number.to_string(), task.clone());
            accepted.push((number.to_string(), device, round as u64));
        }
        if round == 3 {
            cluster.instances[0].kill_hard();
        }
        if round == 5 {
            cluster.instances[1].signal(libc::SIGSTOP);
        }
    }
    // Longer than the lease (2 s call deadline + 5 s margin) and the broker's heartbeat timeout.
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster.instances[1].signal(libc::SIGCONT);

    let started = Instant::now();
    let survivor = cluster.service_b[2];
    let mut statuses = HashMap::new();
    for (number, device, _) in &accepted {
        let task = &numbers[number];
        let final_status = common::eventually(Duration::from_secs(120), "every task final", || async {
            status(survivor, device, task)
                .await
                .filter(|s| s != "queued" && s != "running")
        })
        .await;
        statuses.insert(number.clone(), final_status);
    }
    eprintln!("all 1000 tasks final {:?} after the pause ended", started.elapsed());

    let calls = service_a.calls();
    let report = Checker::report_with_statuses(&accepted, &calls, &statuses);
    eprintln!(
        "calls {}, lost {}, duplicated {}, overlapping {}, out of order {}",
        calls.len(),
        report.lost.len(),
        report.duplicated_calls.len(),
        report.overlapping_per_device.len(),
        report.out_of_order_per_device.len()
    );
    eprintln!(
        "takeover (end of a dead or paused holder's call to the next call of its task): {}",
        takeover(&calls)
    );
    assert_clean(&report);
    // A duplicate is a call whose caller died or paused before it could report: at most one per task
    // that was in flight at the kill or the pause.
    assert!(
        report.duplicated_calls.len() <= 2 * 16,
        "duplicated: {:?}",
        report.duplicated_calls
    );
    common::broker::delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_answers_for_a_task_and_a_wait_wakes_when_another_finishes_it() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("scale-wait");
    let service_a = CallLog::start_with(Duration::from_millis(1500), by_vlan()).await;
    let Some(cluster) = cluster(&amqp, &queue, &service_a.url(), 2).await else {
        return;
    };
    let (first, second) = (cluster.service_b[0], cluster.service_b[1]);
    let task = create(first, "abc123", 0).await;
    let waited = Instant::now();
    let wait = client().get(url(
        Some(second),
        &format!("/api/v1/equipment/cpe/abc123/task/{task}?wait=30s"),
    ));
    let (code, answer) = send(wait).await;
    assert_eq!((code, answer["code"].as_u64()), (200, Some(200)), "{answer}");
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "the wait ended with the task, not at its deadline"
    );
    let listed = client().get(url(Some(second), "/api/v1/equipment/cpe/abc123/tasks"));
    let (code, page) = send(listed).await;
    assert_eq!(code, 200);
    assert_eq!(page["tasks"][0]["taskId"].as_str(), Some(task.as_str()), "{page}");
    common::broker::delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stored_but_never_queued_is_published_by_the_outbox_relay_and_runs() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    // What an instance killed between the commit and the publish leaves: the row, no message.
    let url = schema.url.clone();
    let stranded = tokio::task::spawn_blocking(move || {
        let request = r#"{"timeoutInSeconds": 14, "parameters": {"vlan": 42}}"#;
        let mut record = TaskRecord::queued(
            TaskId::new(),
            EquipmentId::parse("abc123").unwrap(),
            ConfigRequest::from_json(request.as_bytes()).unwrap(),
        );
        record.created_at -= 11_000;
        PgStore::open(&url).unwrap().put(&record).unwrap();
        record.id.to_string()
    })
    .await
    .unwrap();
    let queue = unique_queue("scale-outbox");
    let service_a = CallLog::start_with(Duration::from_millis(100), by_vlan()).await;
    let cluster = cluster_on(schema, &amqp, &queue, &service_a.url(), 1);
    let b = cluster.service_b[0];
    common::eventually(LIMIT, "the stranded task completes", || async {
        status(b, "abc123", &stranded).await.filter(|s| s == "completed")
    })
    .await;
    let calls: Vec<_> = service_a
        .calls()
        .into_iter()
        .filter(|c| c.task.as_deref() == Some("41"))
        .collect();
    assert_eq!(calls.len(), 1, "published once, called once");
    common::broker::delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_database_and_the_broker_cut_mid_run_lose_nothing() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let (db_proxy, amqp_proxy) = (
        FaultProxy::start(address(&schema.url, 5432)).await,
        FaultProxy::start(address(&amqp, 5672)).await,
    );
    let links = vec![
        (via(&schema.url, db_proxy.addr()), amqp.clone()),
        (schema.url.clone(), via(&amqp, amqp_proxy.addr())),
    ];
    let queue = unique_queue("scale-faults");
    let service_a = CallLog::start_with(Duration::from_millis(200), by_vlan()).await;
    let cluster = cluster_linked(schema, &links, &queue, &service_a.url());
    let devices: Vec<String> = (0..30).map(|n| format!("cpe{n:04}")).collect();
    let mut accepted = Vec::new();
    let mut numbers = HashMap::new();
    for round in 0..6 {
        // The first instance's database connections and the second's broker connection are cut
        // (every connection reset, new ones too) for two seconds, then let through again.
        if round == 2 {
            db_proxy.set(Mode::Reset);
            amqp_proxy.set(Mode::Reset);
            tokio::time::sleep(Duration::from_secs(2)).await;
            db_proxy.set(Mode::Pass);
            amqp_proxy.set(Mode::Pass);
        }
        let creating = devices.iter().enumerate().map(|(d, device)| {
            let number = round * devices.len() + d;
            let b = cluster.service_b[number % 2];
            let device = device.clone();
            async move { (device.clone(), number, create_retrying(b, &device, number).await) }
        });
        for (device, number, task) in futures_util::future::join_all(creating).await {
            numbers.insert(number.to_string(), task.clone());
            accepted.push((number.to_string(), device, round as u64));
        }
    }
    let mut statuses = HashMap::new();
    for (number, device, _) in &accepted {
        let task = &numbers[number];
        let final_status = common::eventually(Duration::from_secs(120), "every task final", || async {
            status(cluster.service_b[1], device, task)
                .await
                .filter(|s| s != "queued" && s != "running")
        })
        .await;
        statuses.insert(number.clone(), final_status);
    }
    let calls = service_a.calls();
    let report = Checker::report_with_statuses(&accepted, &calls, &statuses);
    eprintln!(
        "faults: calls {}, lost {}, duplicated {}, overlapping {}, out of order {}",
        calls.len(),
        report.lost.len(),
        report.duplicated_calls.len(),
        report.overlapping_per_device.len(),
        report.out_of_order_per_device.len()
    );
    assert_clean(&report);
    common::broker::delete_queues(&amqp, &queue).await;
}

/// The loopback address a URL names (its port, or `default`).
fn address(url: &str, default: u16) -> SocketAddr {
    let authority = authority(url);
    let port = authority
        .rsplit_once(':')
        .map_or(default, |(_, port)| port.parse().unwrap());
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `host:port` of `scheme://user@host:port/...`.
fn authority(url: &str) -> &str {
    let after_user = url.split_once('@').map_or(url, |(_, rest)| rest);
    after_user.split(['/', '?']).next().unwrap()
}

/// The URL with its host and port replaced by the proxy's.
fn via(url: &str, proxy: SocketAddr) -> String {
    url.replacen(authority(url), &proxy.to_string(), 1)
}

/// A create, tried again (under one idempotency key) while the instance answers 503 because its
/// database or broker link is down.
async fn create_retrying(b: SocketAddr, device: &str, number: usize) -> String {
    let body = request_body(number);
    common::eventually(Duration::from_secs(60), "the create is accepted", || {
        let body = body.clone();
        async move {
            let post = client()
                .post(url(Some(b), &format!("/api/v1/equipment/cpe/{device}")))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("faults-{number}"))
                .body(body);
            let response = post.send().await.ok()?;
            let answer: Value = response.json().await.ok()?;
            answer["taskId"].as_str().map(str::to_owned)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_on_its_own_never_runs_a_task_cancelled_while_queued() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let queue = unique_queue("scale-split");
    let service_a = CallLog::start_with(Duration::from_millis(1500), by_vlan()).await;
    let shared = [
        format!("--amqp-url={amqp}"),
        format!("--store={}", schema.url),
        format!("--queue={queue}"),
        format!("--results-queue={queue}-results"),
        format!("--service-a-url={}", service_a.url()),
    ];
    let with = |role: &str| {
        let mut args: Vec<&str> = shared.iter().map(String::as_str).collect();
        args.extend([role, "--workers=4", "--shutdown-grace=1s"]);
        Process::spawn(&local_args(&args), "info")
    };
    let service_b = with("--role=service-b");
    let _worker = with("--role=worker");
    let b = service_b.wait_for_addr("Service B", LIMIT);

    let running = create(b, "split001", 0).await;
    let cancelled = create(b, "split001", 1).await;
    let cancel = client().delete(url(
        Some(b),
        &format!("/api/v1/equipment/cpe/split001/task/{cancelled}"),
    ));
    let (code, answer) = send(cancel).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("cancelled")), "{answer}");
    // A third task of the device runs only once the cancelled one's delivery was dealt with.
    let after = create(b, "split001", 2).await;
    for task in [&running, &after] {
        common::eventually(LIMIT, "the device's other tasks complete", || async {
            status(b, "split001", task).await.filter(|s| s == "completed")
        })
        .await;
    }
    let called: Vec<Option<String>> = service_a.calls().into_iter().map(|call| call.task).collect();
    assert_eq!(
        called,
        [Some("0".to_owned()), Some("2".to_owned())],
        "the cancelled task was never called"
    );
    common::broker::delete_queues(&amqp, &queue).await;
}
