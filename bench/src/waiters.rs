//! P7, waiting for an outcome: N long-poll status requests (`?wait=60s`) held by Service B at once, as
//! a campaign tool waiting on each of its tasks holds them; what they cost the server's memory, and
//! whether creates and status reads slow down while they wait.
//!
//! The server is a child process (`child.rs`), so its RSS is its own. The waits travel as HTTP/2
//! streams, 100 per connection (Service B allows 1,000), so 10,000 of them take 100 descriptors.

use crate::child::{sibling_binary, Server};
use crate::harness::Bench;
use crate::load::{closed_loop, create_task, device, expect_ok, http1_clients, http2_clients, Run, Until};
use crate::report::{size, Report, Row, Target};
use crate::sys;
use anyhow::{anyhow, Result};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// HTTP/2 connections the waits are spread over.
const CONNECTIONS: usize = 100;
/// The longest wait the route allows; a held request answers once it is over.
const WAIT: Duration = Duration::from_secs(60);
const TARGET_BYTES: f64 = 4096.0;
/// "No drop": rates with waiters over rates without, allowing the few percent a shared machine moves.
const TARGET_RATIO: f64 = 0.95;
/// The status of a task that is still running, as the server writes it.
const RUNNING: &[u8] = br#""code":204"#;
/// Device numbers of the tasks each create run makes, apart from the waited tasks' and each other's.
const CREATED_BEFORE: u64 = 100_000_000;
const CREATED_WHILE: u64 = 200_000_000;
const CREATED_AFTER: u64 = 300_000_000;

pub async fn run(bench: &Bench, report: &mut Report, binary: Option<PathBuf>) {
    let figure = format!("P7 RSS per waiter (N={}, ?wait=60s)", size(bench.settings.n));
    let binary = match binary.map(Ok).unwrap_or_else(sibling_binary) {
        Ok(binary) => binary,
        Err(why) => return report.add(Row::skipped(figure, why)),
    };
    let data = bench.fresh_dir("p7-waiters");
    let args = [
        "--role=all".to_string(),
        // The waited tasks stay running (or queued behind the workers) for the whole phase.
        "--config-delay=10m".into(),
        format!("--data-dir={}", data.display()),
        "--shutdown-grace=1s".into(),
    ];
    match Server::start(bench, &binary, &args, "Service B") {
        Ok(mut server) => {
            if let Err(error) = measure(bench, &server, report).await {
                report.add(Row::skipped(figure, format!("{error:#}")));
            }
            server.stop().await;
        }
        Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// Creates N tasks, measures create and status throughput without waiters (half before, half after),
/// and with N waiters held, between which it reads the server's RSS.
async fn measure(bench: &Bench, server: &Server, report: &mut Report) -> Result<()> {
    let s = &bench.settings;
    let n = s.n;
    let base = format!("https://127.0.0.1:{}", server.port);
    let pid = server.pid();
    // Both runs with waiters must end while they still wait.
    let slice = s.duration.min(Duration::from_secs(20));
    let clients = http1_clients(s.connections, &bench.trust)?;
    let tasks = Arc::new(create_waited(bench, &clients, &base, n).await?);
    let before = (
        on_server(pid, creates(bench, &clients, &base, CREATED_BEFORE, slice / 2)).await,
        on_server(pid, statuses(bench, &clients, &base, &tasks, slice / 2)).await,
    );

    let h2 = http2_clients(CONNECTIONS, &bench.trust, WAIT + Duration::from_secs(30))?;
    let rss_unconnected = rss(pid)?;
    for client in &h2 {
        expect_ok(client.get(format!("{base}/healthz")))
            .await
            .map_err(|e| anyhow!("warm-up: {e}"))?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss(pid)?;
    let opened = Instant::now();
    let waits: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, (device, task))| {
            let client = h2[i % CONNECTIONS].clone();
            let url = format!("{base}/api/v1/equipment/cpe/{device}/task/{task}?wait=60s");
            bench.load.spawn(async move {
                let body = expect_ok(client.get(url)).await?;
                Ok::<_, String>((opened.elapsed(), body.windows(RUNNING.len()).any(|w| w == RUNNING)))
            })
        })
        .collect();
    let rss_waiting = settled_rss(pid).await?;
    let settled_after = opened.elapsed();
    let during = (
        on_server(pid, creates(bench, &clients, &base, CREATED_WHILE, slice)).await,
        on_server(pid, statuses(bench, &clients, &base, &tasks, slice)).await,
    );
    let measured_within = opened.elapsed();
    let rss_end = rss(pid)?;
    let early = waits.iter().filter(|w| w.is_finished()).count();
    let (mut held, mut first_error) = (0u64, None);
    for wait in waits {
        match tokio::time::timeout(WAIT + Duration::from_secs(30), wait).await {
            Ok(Ok(Ok((after, running)))) if running && after + Duration::from_secs(1) >= WAIT => held += 1,
            Ok(Ok(Ok((after, running)))) => drop(first_error.get_or_insert(format!(
                "answered after {after:?}, {}",
                if running { "running" } else { "not running" }
            ))),
            Ok(Ok(Err(e))) => drop(first_error.get_or_insert(e)),
            Ok(Err(e)) => drop(first_error.get_or_insert(e.to_string())),
            Err(_) => drop(first_error.get_or_insert("no answer 30 s after the wait".to_string())),
        }
    }
    let after = (
        on_server(pid, creates(bench, &clients, &base, CREATED_AFTER, slice / 2)).await,
        on_server(pid, statuses(bench, &clients, &base, &tasks, slice / 2)).await,
    );

    let growth = rss_waiting.saturating_sub(rss_before);
    let per_waiter = growth as f64 / n as f64;
    let mut row = Row::plain(
        format!("P7 RSS per waiter (N={}, ?wait=60s)", size(n)),
        format!("{per_waiter:.0} B/waiter (server +{:.1} MiB)", sys::mib(growth)),
    )
    .target(Target::AtMost(TARGET_BYTES))
    .check_value(per_waiter, "B/waiter");
    let spoiled = (held < n).then(|| format!("{held} of {n} waits were held for 60 s"));
    if let Some(why) = &spoiled {
        row = row.invalid(why.clone());
    }
    report.add(row);
    report.note(format!(
        "P7 waiters: server RSS {:.1} MiB before the {CONNECTIONS} HTTP/2 connections, {:.1} MiB with them, \
         {:.1} MiB {:.1} s after {n} waits were sent (when it stopped growing), {:.1} MiB after the runs with \
         waiters; {held} of {n} waits answered \"still running\" after 60 s, {early} before the runs ended{}",
        sys::mib(rss_unconnected),
        sys::mib(rss_before),
        sys::mib(rss_waiting),
        settled_after.as_secs_f64(),
        sys::mib(rss_end),
        first_error.map_or(String::new(), |e| format!("; first other answer: {e}"))
    ));
    let late = (measured_within + Duration::from_secs(1) > WAIT)
        .then(|| format!("the runs with waiters ended {measured_within:?} after the waits began"));
    let figure = |what: &str| {
        format!(
            "P7 {what} throughput while {} waiters wait ({} conns, {slice:?})",
            size(n),
            s.connections
        )
    };
    let without = (Run::merge(vec![before.0 .0, after.0 .0]), before.0 .1 + after.0 .1);
    compare(report, figure("create"), during.0, without, late.as_deref());
    let without = (Run::merge(vec![before.1 .0, after.1 .0]), before.1 .1 + after.1 .1);
    compare(report, figure("status"), during.1, without, late.as_deref());
    Ok(())
}

/// A row comparing a rate with waiters against the same without; `(run, server CPU seconds)` each.
fn compare(report: &mut Report, figure: String, with: (Run<()>, f64), without: (Run<()>, f64), late: Option<&str>) {
    let ratio = with.0.rate() / without.0.rate().max(1e-9);
    let mut row = Row::ratio(
        figure.clone(),
        format!(
            "{:.0} req/s (p50 {:.1} ms, p99 {:.1} ms)",
            with.0.rate(),
            with.0.percentile_ms(0.5),
            with.0.percentile_ms(0.99)
        ),
        format!("{:.0} req/s without waiters", without.0.rate()),
        ratio,
    )
    .target(Target::AtLeast(TARGET_RATIO));
    if let Some(why) = late {
        row = row.invalid(why);
    }
    report.add(row);
    let cores = |run: &Run<()>, seconds: f64| seconds / run.elapsed.as_secs_f64().max(1e-9);
    report.note(format!(
        "{figure}: with waiters {}, server {:.2} cores, load generator {:.2}; without (half before, half after) {}, \
         server {:.2} cores, load generator {:.2}",
        with.0.summary(),
        cores(&with.0, with.1),
        with.0.cpu.load,
        without.0.summary(),
        cores(&without.0, without.1),
        without.0.cpu.load
    ));
}

/// The server's RSS, or an error when it has exited.
fn rss(pid: u32) -> Result<u64> {
    sys::rss_of(pid).ok_or_else(|| anyhow!("the server (pid {pid}) has exited"))
}

/// The server's RSS once the waits have arrived: sampled every half second, from 2 s on, until two
/// samples in a row differ by less than 1% (or 10 s have passed).
async fn settled_rss(pid: u32) -> Result<u64> {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut last = rss(pid)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss(pid)?;
        if now.abs_diff(last) < now / 100 || started.elapsed() >= Duration::from_secs(10) {
            return Ok(now);
        }
        last = now;
    }
}

/// Runs `run` and counts the server's CPU seconds over it.
async fn on_server<T>(pid: u32, run: impl Future<Output = Run<T>>) -> (Run<T>, f64) {
    let cpu = || sys::cpu_seconds_of(pid).unwrap_or(0.0);
    let start = cpu();
    let run = run.await;
    (run, (cpu() - start).max(0.0))
}

/// The N tasks to wait on, one per device, as (device, task id).
async fn create_waited(
    bench: &Bench,
    clients: &[reqwest::Client],
    base: &str,
    n: u64,
) -> Result<Vec<(String, String)>> {
    let base = base.to_owned();
    let until = Until::Count {
        total: n,
        limit: bench.settings.limit,
    };
    let created = closed_loop(&bench.load, clients.to_vec(), until, move |client, seq| {
        let (base, device) = (base.clone(), device(seq));
        async move { create_task(&client, &base, &device).await.map(|task| (device, task)) }
    })
    .await;
    if created.ok.len() as u64 != n {
        return Err(anyhow!(
            "created {} of {n} tasks to wait on: {:?}",
            created.ok.len(),
            created.first_error
        ));
    }
    Ok(created.ok)
}

/// P1's closed loop of creates, for `span`, each for a new device numbered from `first`.
async fn creates(bench: &Bench, clients: &[reqwest::Client], base: &str, first: u64, span: Duration) -> Run<()> {
    let base = base.to_owned();
    closed_loop(
        &bench.load,
        clients.to_vec(),
        Until::Elapsed(span),
        move |client, seq| {
            let (base, device) = (base.clone(), device(first + seq));
            async move { create_task(&client, &base, &device).await.map(drop) }
        },
    )
    .await
}

/// P2's closed loop of status reads (no wait) of the waited tasks, for `span`.
async fn statuses(
    bench: &Bench,
    clients: &[reqwest::Client],
    base: &str,
    tasks: &Arc<Vec<(String, String)>>,
    span: Duration,
) -> Run<()> {
    let (base, tasks) = (base.to_owned(), tasks.clone());
    closed_loop(
        &bench.load,
        clients.to_vec(),
        Until::Elapsed(span),
        move |client, seq| {
            let (device, task) = &tasks[(seq % tasks.len() as u64) as usize];
            let url = format!("{base}/api/v1/equipment/cpe/{device}/task/{task}");
            async move {
                let body = expect_ok(client.get(&url)).await?;
                if body.windows(RUNNING.len()).any(|w| w == RUNNING) {
                    Ok(())
                } else {
                    Err(format!("{url} is not running: {}", String::from_utf8_lossy(&body)))
                }
            }
        },
    )
    .await
}
