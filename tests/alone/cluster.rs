//! Several instances of the real binary on one RabbitMQ queue and one PostgreSQL schema, driven and
//! checked the same way by every scale-out test: tasks created in rounds (so a device's acceptance
//! order is the round order), their final statuses read back, and the history given to the checker.

use crate::common::call_log::{Call, CallLog, Checker, Identify, Report};
use crate::common::process::{local_args, Process};
use crate::common::{client, send, url};
use cpe_config::store::postgres::scratch::ScratchSchema;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const LIMIT: Duration = Duration::from_secs(30);
/// The per-call deadline given to the instances; their device lease lasts this plus 5 s.
pub const CALL_TIMEOUT: &str = "--call-timeout=2s";

pub struct Cluster {
    pub instances: Vec<Process>,
    pub service_b: Vec<SocketAddr>,
    _schema: ScratchSchema,
}

/// The task of a call, from the `vlan` each task of these tests carries: its number plus one.
pub fn by_vlan() -> Identify {
    Arc::new(|_, body| {
        let body: Value = serde_json::from_str(body).ok()?;
        body["parameters"]["vlan"].as_u64().map(|vlan| (vlan - 1).to_string())
    })
}

pub async fn cluster(amqp: &str, queue: &str, service_a: &str, size: usize) -> Option<Cluster> {
    Some(cluster_on(ScratchSchema::create()?, amqp, queue, service_a, size))
}

pub fn cluster_on(schema: ScratchSchema, amqp: &str, queue: &str, service_a: &str, size: usize) -> Cluster {
    let links = vec![(schema.url.clone(), amqp.to_owned()); size];
    cluster_linked(schema, &links, queue, service_a)
}

/// One instance per (database URL, broker URL) pair, so each may reach them through its own proxy.
pub fn cluster_linked(schema: ScratchSchema, links: &[(String, String)], queue: &str, service_a: &str) -> Cluster {
    cluster_timed(schema, links, queue, service_a, CALL_TIMEOUT)
}

/// `size` instances at the default call deadline a user gets with `--config-delay=1s` (32 s, so
/// a lease of 37 s), rather than the short one of the other scale-out tests.
pub async fn cluster_at_defaults(amqp: &str, queue: &str, service_a: &str, size: usize) -> Option<Cluster> {
    Some(cluster_at_defaults_on(
        ScratchSchema::create()?,
        amqp,
        queue,
        service_a,
        size,
    ))
}

/// [`cluster_at_defaults`] on a schema the test has prepared.
pub fn cluster_at_defaults_on(schema: ScratchSchema, amqp: &str, queue: &str, service_a: &str, size: usize) -> Cluster {
    let links = vec![(schema.url.clone(), amqp.to_owned()); size];
    cluster_timed(schema, &links, queue, service_a, "--config-delay=1s")
}

/// `timing`: the option that sets the instances' call deadline.
fn cluster_timed(
    schema: ScratchSchema,
    links: &[(String, String)],
    queue: &str,
    service_a: &str,
    timing: &str,
) -> Cluster {
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
                timing,
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

pub fn assert_clean(report: &Report) {
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
fn takeover(calls: &[Call]) -> String {
    let mut by_task: HashMap<&str, Vec<&Call>> = HashMap::new();
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
pub fn request_body(number: usize) -> String {
    format!(
        r#"{{"timeoutInSeconds": 14, "parameters": {{"vlan": {}}}}}"#,
        number + 1
    )
}

pub async fn create(b: SocketAddr, device: &str, number: usize) -> String {
    let post = client()
        .post(url(Some(b), &format!("/api/v1/equipment/cpe/{device}")))
        .header("content-type", "application/json")
        .body(request_body(number));
    let (code, answer) = send(post).await;
    assert_eq!(code, 200, "{answer}");
    answer["taskId"].as_str().unwrap().to_owned()
}

pub async fn status(b: SocketAddr, device: &str, task: &str) -> Option<String> {
    let get = client().get(url(Some(b), &format!("/api/v1/equipment/cpe/{device}/task/{task}")));
    let response = get.send().await.ok()?;
    let answer: Value = response.json().await.ok()?;
    answer["status"].as_str().map(str::to_owned)
}

/// The loopback address a URL names (its port, or `default`).
pub fn address(url: &str, default: u16) -> SocketAddr {
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
pub fn via(url: &str, proxy: SocketAddr) -> String {
    url.replacen(authority(url), &proxy.to_string(), 1)
}

/// A create, tried again (under one idempotency key) while the instance answers 503 because its
/// database or broker link is down.
pub async fn create_retrying(b: SocketAddr, device: &str, number: usize) -> String {
    let body = request_body(number);
    crate::common::eventually(Duration::from_secs(60), "the create is accepted", || {
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

/// What a run accepted: (task number, device, round) for the checker, and each number's task id.
#[derive(Default)]
pub struct History {
    pub accepted: Vec<(String, String, u64)>,
    pub tasks: HashMap<String, String>,
}

impl History {
    /// One round: a task for every device, created at once through `instances` in turn (with
    /// `create`, which may retry), recorded once all are accepted.
    pub async fn round<F, Fut>(&mut self, round: usize, devices: &[String], instances: &[SocketAddr], create: F)
    where
        F: Fn(SocketAddr, String, usize) -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        let creating = devices.iter().enumerate().map(|(d, device)| {
            let number = round * devices.len() + d;
            let task = create(instances[number % instances.len()], device.clone(), number);
            async move { (device.clone(), number, task.await) }
        });
        for (device, number, task) in futures_util::future::join_all(creating).await {
            self.tasks.insert(number.to_string(), task);
            self.accepted.push((number.to_string(), device, round as u64));
        }
    }

    /// Waits until every task is final on `b`, then checks the calls Service A saw against them.
    pub async fn check(&self, b: SocketAddr, service_a: &CallLog) -> Report {
        let mut statuses = HashMap::new();
        for (number, device, _) in &self.accepted {
            let task = &self.tasks[number];
            let final_status = crate::common::eventually(Duration::from_secs(120), "every task final", || async {
                status(b, device, task)
                    .await
                    .filter(|s| s != "queued" && s != "running")
            })
            .await;
            statuses.insert(number.clone(), final_status);
        }
        let calls = &service_a.calls();
        let report = Checker::report_with_statuses(&self.accepted, calls, &statuses);
        eprintln!(
            "calls {}, lost {}, duplicated {}, overlapping {}, out of order {}; takeover {}",
            calls.len(),
            report.lost.len(),
            report.duplicated_calls.len(),
            report.overlapping_per_device.len(),
            report.out_of_order_per_device.len(),
            takeover(calls)
        );
        report
    }
}
