//! Chaos bookkeeping: create tasks, wait for every accepted one to end, and read Service A's log
//! for duplicate and overlapping configurations.

use crate::common::process::Process;
use crate::common::{certs_dir, client, send, url, EXAMPLE};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Service A as its own process, logging each call's start and end for [`device_calls`].
pub fn service_a(limit: Duration) -> (Process, SocketAddr) {
    let args = [
        "--role=service-a".to_string(),
        "--service-a-addr=127.0.0.1:0".into(),
        "--config-delay=300ms".into(),
        format!("--certs-dir={}", certs_dir().display()),
    ];
    let process = Process::spawn(&args, "info,cpe_config::http::service_a=debug");
    let addr = process.wait_for_addr("Service A", limit);
    (process, addr)
}

/// Options of an orchestrator that calls that Service A and keeps its state in `data`.
pub fn orchestrator_args(service_a: SocketAddr, data: &std::path::Path) -> Vec<String> {
    vec![
        "--service-a-addr=127.0.0.1:0".into(),
        "--service-b-addr=127.0.0.1:0".into(),
        format!("--service-a-url=https://localhost:{}", service_a.port()),
        "--store=file".into(),
        format!("--data-dir={}", data.display()),
        "--workers=16".into(),
        // Short, so a task resumed after a crash waits out its earlier call quickly.
        "--call-timeout=2s".into(),
        format!("--certs-dir={}", certs_dir().display()),
    ]
}

#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: usize,
    pub refused: usize,
    pub completed: usize,
    pub failed: usize,
    pub lost: usize,
}

/// POSTs one task per (device, round); returns the accepted ones. A 503 is a refusal, not a loss.
pub async fn create_many(b: SocketAddr, devices: usize, rounds: usize, tally: &mut Tally) -> Vec<(String, String)> {
    let mut accepted = Vec::new();
    for round in 0..rounds {
        for n in 0..devices {
            let device = format!("chaos{n:04}");
            let request = client()
                .post(url(Some(b), &format!("/api/v1/equipment/cpe/{device}")))
                .body(EXAMPLE);
            match request.send().await {
                Ok(response) if response.status() == 200 => {
                    let body: Value = response.json().await.unwrap();
                    accepted.push((device, body["taskId"].as_str().unwrap().to_owned()));
                    tally.accepted += 1;
                }
                Ok(response) => {
                    assert_eq!(response.status(), 503, "round {round}: only 503 may refuse a task");
                    tally.refused += 1;
                }
                // The process may be killed under us mid-request: the task was never acknowledged.
                Err(_) => tally.refused += 1,
            }
        }
    }
    accepted
}

/// Waits until every accepted task is final; a task the service no longer knows is lost.
pub async fn settle(b: SocketAddr, tasks: &[(String, String)], limit: Duration, tally: &mut Tally) {
    let deadline = Instant::now() + limit;
    let mut open: Vec<&(String, String)> = tasks.iter().collect();
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for task in open {
            let path = format!("/api/v1/equipment/cpe/{}/task/{}", task.0, task.1);
            let (status, body) = send(client().get(url(Some(b), &path))).await;
            match (status, body["code"].as_u64()) {
                (200, Some(200)) => tally.completed += 1,
                (200, Some(500)) => tally.failed += 1,
                (404, _) => tally.lost += 1,
                _ => still.push(task),
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tally.lost += open.len();
}

/// Calls per device, and how many calls of one device overlapped in time, from Service A's
/// debug lines "configuring device" and "device configured" (a call cut off has no end line).
pub fn device_calls(log: &[Value]) -> (usize, usize) {
    let mut per_device: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    for line in log {
        let (Some(message), Some(device), Some(at)) = (
            line["message"].as_str(),
            line["equipment"].as_str(),
            line["timestamp"].as_str(),
        ) else {
            continue;
        };
        let calls = per_device.entry(device.to_owned()).or_default();
        match message {
            "configuring device" => calls.push((at.to_owned(), None)),
            "device configured" => {
                // The latest open call is the one ending: an earlier open one was cut off (its client died).
                if let Some(open) = calls.iter_mut().rev().find(|(_, end)| end.is_none()) {
                    open.1 = Some(at.to_owned());
                }
            }
            _ => {}
        }
    }
    let calls = per_device.values().map(Vec::len).sum();
    let mut overlaps = 0;
    for list in per_device.values() {
        let finished: Vec<_> = list
            .iter()
            .filter_map(|(start, end)| end.clone().map(|end| (start.clone(), end)))
            .collect();
        for (i, a) in finished.iter().enumerate() {
            // RFC 3339 timestamps in one zone compare correctly as strings.
            overlaps += finished[i + 1..].iter().filter(|b| a.0 < b.1 && b.0 < a.1).count();
        }
    }
    (calls, overlaps)
}
