//! P6, bursts of new connections: N clients connect at once (a new TLS connection each), as a
//! campaign tool or a worker fleet reconnecting after a restart does. Against Service A (delay d)
//! the figure is the makespan over d; against Service B, the makespan of the same burst of POSTs.
//!
//! The server runs as a child process (see `child.rs`): 10,000 connections cost a descriptor at
//! each end, and one process here may hold only 20,000.

use crate::child::{sibling_binary, Server};
use crate::harness::Bench;
use crate::load::{expect_ok, EXAMPLE};
use crate::report::{size, Report, Row, Target};
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Targets of issue 8 for Service A, as makespan / d.
fn target(n: u64) -> f64 {
    if n <= 400 {
        1.1
    } else {
        1.5
    }
}

pub async fn run(bench: &Bench, report: &mut Report, binary: Option<PathBuf>) {
    let binary = match binary.map(Ok).unwrap_or_else(sibling_binary) {
        Ok(binary) => binary,
        Err(why) => return report.add(Row::skipped("P6 bursts", why)),
    };
    let d = bench.settings.delay;
    let sizes: &[u64] = if bench.settings.quick {
        &[400, 1_000]
    } else {
        &[400, 10_000]
    };
    report.note(format!("P6: server binary {}", binary.display()));
    for &n in sizes {
        let figure = format!("P6 burst to Service A, makespan / d (N={}, d={d:?})", size(n));
        let args = [
            "--role=service-a".to_string(),
            format!("--config-delay={}ms", d.as_millis()),
        ];
        match burst(bench, &binary, &args, "Service A", "/api/v1/equipment/cpe/bench", n).await {
            Ok(burst) => {
                let ratio = burst.makespan.as_secs_f64() / d.as_secs_f64();
                let mut row = Row::ratio(figure, burst.value(n), format!("d = {:.3} s", d.as_secs_f64()), ratio)
                    .target(Target::AtMost(target(n)));
                if burst.answered < n {
                    row = row.invalid(format!("only {} of {n} answered", burst.answered));
                }
                report.add(row);
                report.note(burst.note(&format!("P6 Service A N={}", size(n))));
            }
            Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
        }
        let figure = format!("P6 burst of POSTs to Service B (N={}), answered", size(n));
        let data = bench.fresh_dir("p6");
        let args = [
            "--role=all".to_string(),
            // The tasks wait in Service A: the burst measures Service B's front, not the pipeline.
            "--config-delay=10m".into(),
            format!("--data-dir={}", data.display()),
            "--shutdown-grace=1s".into(),
        ];
        match burst(bench, &binary, &args, "Service B", "/api/v1/equipment/cpe/bench", n).await {
            Ok(burst) => {
                let row = Row::plain(figure, burst.value(n))
                    .target(Target::AtLeast(n as f64))
                    .check_value(burst.answered as f64, "answered");
                report.add(row);
                report.note(burst.note(&format!("P6 Service B N={}", size(n))));
            }
            Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
        }
        let _ = std::fs::remove_dir_all(&data);
    }
}

struct Burst {
    makespan: Duration,
    answered: u64,
    first_error: Option<String>,
}

impl Burst {
    fn value(&self, n: u64) -> String {
        format!(
            "{:.3} s makespan, {} of {n} answered",
            self.makespan.as_secs_f64(),
            self.answered
        )
    }

    fn note(&self, what: &str) -> String {
        match &self.first_error {
            Some(error) => format!("{what}: first error: {error}"),
            None => format!("{what}: every call answered 200"),
        }
    }
}

/// Starts the server, then sends N POSTs at once from one HTTP/1.1 client that keeps no idle
/// connection, so each call opens its own TLS connection at the same moment.
async fn burst(bench: &Bench, binary: &PathBuf, args: &[String], service: &str, path: &str, n: u64) -> Result<Burst> {
    let mut server = Server::start(bench, binary, args, service)?;
    let base = format!("https://127.0.0.1:{}", server.port);
    let deadline = bench.settings.delay + Duration::from_secs(60);
    let client = reqwest::Client::builder()
        .tls_certs_only([bench.trust.clone()])
        .tcp_nodelay(true)
        .http1_only()
        .pool_max_idle_per_host(0)
        // SYNs dropped on a full backlog are retried after 1 s, 3 s, 7 s: count them, do not fail them.
        .connect_timeout(Duration::from_secs(30))
        .timeout(deadline)
        .build()?;
    expect_ok(client.get(format!("{base}/healthz")))
        .await
        .map_err(|e| anyhow!("warm-up: {e}"))?;
    let started = Instant::now();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let request = client.post(format!("{base}{path}{i:09}")).body(EXAMPLE);
            bench.load.spawn(async move { expect_ok(request).await })
        })
        .collect();
    let (mut answered, mut first_error) = (0, None);
    for call in calls {
        match call.await {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(e)) => drop(first_error.get_or_insert(e)),
            Err(e) => drop(first_error.get_or_insert(e.to_string())),
        }
    }
    let makespan = started.elapsed();
    server.stop().await;
    Ok(Burst {
        makespan,
        answered,
        first_error,
    })
}
