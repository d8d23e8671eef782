//! P4, the pipeline: N tasks through Service B, RabbitMQ, the workers and Service A, timed from the
//! first POST to the last task's final status, against d + N / (P1 create rate).

use crate::harness::{Bench, Running};
use crate::load::{closed_loop, create_task, device, http1_clients, task_code, Until};
use crate::p1::Rates;
use crate::report::{size, Report, Row};
use anyhow::{anyhow, Result};
use cpe_actors::ports::TaskReader;
use cpe_actors::{TaskId, TaskStatus};
use cpe_test_support::unique_queue;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most workers an app may run (`--workers` range).
const MAX_WORKERS: u64 = 10_000;
/// Connections that watch for completion: few and paced, so watching costs the pipeline little.
const WATCHERS: usize = 8;
const POLL: Duration = Duration::from_millis(100);

pub async fn run(bench: &Bench, report: &mut Report, rates: &Rates) {
    let s = &bench.settings;
    let mut sizes = s.sizes.clone();
    if !sizes.contains(&s.n) {
        sizes.push(s.n);
        sizes.sort_unstable();
    }
    let runs = sizes.iter().map(|&n| (n, s.delay)).chain([(s.n, Duration::ZERO)]);
    for (n, delay) in runs {
        let figure = format!("P4 pipeline, N={}, d={delay:?}", size(n));
        let Ok(url) = bench.broker.clone() else {
            report.add(Row::skipped(figure, bench.broker.clone().err().unwrap_or_default()));
            continue;
        };
        let p1 = rates.sized.get(&n).copied().or(rates.timed);
        if let Err(error) = measure(bench, &url, n, delay, p1, &figure, report).await {
            report.add(Row::skipped(figure, format!("{error:#}")));
        }
    }
}

struct Outcome {
    created: usize,
    post_errors: u64,
    post_elapsed: Duration,
    first_error: Option<String>,
    /// Milliseconds since the epoch when the first POST was sent.
    started_ms: u64,
    watched_all: bool,
    cpu: crate::sys::CpuUse,
}

async fn measure(
    bench: &Bench,
    _url: &str,
    n: u64,
    delay: Duration,
    p1: Option<f64>,
    figure: &str,
    report: &mut Report,
) -> Result<()> {
    bench.broker_dropped().await;
    let queue = unique_queue("bench-p4");
    let workers = n.clamp(1, MAX_WORKERS);
    let args = vec![
        "--store=file".to_string(),
        format!("--workers={workers}"),
        format!("--config-delay={}ms", delay.as_millis()),
    ];
    let data_dir = bench.fresh_dir("p4");
    let running = bench.start(&data_dir, Some(&queue), &args).await?;
    let counting = Arc::new(AtomicBool::new(true));
    let sampler = running
        .app
        .service_a_addr
        .map(|addr| tokio::spawn(most_connections(addr.port(), counting.clone())));
    let outcome = drive(bench, &running, n).await;
    counting.store(false, Ordering::Release);
    let connections = match sampler {
        Some(sampler) => sampler.await.unwrap_or(0),
        None => 0,
    };
    bench.stop(running, false).await;
    let result = match outcome {
        Ok((outcome, tasks)) => {
            let dir = data_dir.clone();
            tokio::task::spawn_blocking(move || read_finals(&dir, &tasks))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|finals| Ok((outcome, finals?)))
        }
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_dir_all(&data_dir);
    let (outcome, finals) = result?;
    report.note(format!(
        "{figure}: {} tasks created in {:.1} s ({:.0}/s, {} POST errors{}), {workers} workers, at most {connections} connection(s) open to Service A; {} completed, {} failed, {} not final; CPU over the run {}",
        outcome.created,
        outcome.post_elapsed.as_secs_f64(),
        outcome.created as f64 / outcome.post_elapsed.as_secs_f64().max(1e-9),
        outcome.post_errors,
        outcome.first_error.as_ref().map_or(String::new(), |e| format!(", first: {e}")),
        finals.completed,
        finals.failed,
        finals.open,
        outcome.cpu
    ));
    if !outcome.watched_all || finals.open > 0 || outcome.created as u64 != n {
        // Cut short: what was done within the limit still says how fast the pipeline went.
        let done = finals.completed + finals.failed;
        let limit = bench.settings.limit;
        let row = Row::plain(
            figure,
            format!(
                "cut at {limit:?}: {} of {n} created, {done} final ({:.0} final/s)",
                outcome.created,
                done as f64 / limit.as_secs_f64()
            ),
        );
        let row = bench.check_broker_during(row, report).await;
        report.add(row);
        return Ok(());
    }
    let makespan = finals.last_ms.saturating_sub(outcome.started_ms) as f64 / 1000.0;
    let row = match p1 {
        Some(rate) if delay > Duration::ZERO => {
            let baseline = delay.as_secs_f64() + n as f64 / rate;
            Row::ratio(
                figure,
                format!("{makespan:.2} s to all final"),
                format!("{baseline:.2} s = d + N / {rate:.0}/s"),
                makespan / baseline,
            )
        }
        Some(rate) => {
            let per_second = n as f64 / makespan.max(1e-9);
            Row::ratio(
                figure,
                format!("{per_second:.0} tasks/s end to end ({makespan:.2} s)"),
                format!("{rate:.0}/s P1 create rate"),
                per_second / rate,
            )
        }
        None => Row::plain(
            figure,
            format!("{makespan:.2} s to all final (no P1 rate for a baseline)"),
        ),
    };
    let row = bench.check_broker_during(row, report).await;
    report.add(row);
    Ok(())
}

/// POSTs N tasks (distinct devices) on the usual connections, then watches until every one is final.
async fn drive(bench: &Bench, running: &Running, n: u64) -> Result<(Outcome, Vec<(String, String)>)> {
    let base = running.service_b();
    let s = &bench.settings;
    let clients = http1_clients(s.connections, &bench.trust)?;
    crate::p1::warm_up(bench, &clients, &base).await?;
    let meter = crate::sys::CpuMeter::start();
    let deadline = Instant::now() + s.limit;
    let started_ms = now_ms();
    let post_base = base.clone();
    let posted = closed_loop(
        &bench.load,
        clients.clone(),
        Until::Count {
            total: n,
            limit: s.limit,
        },
        move |client, seq| {
            let (base, device) = (post_base.clone(), device(seq));
            async move { create_task(&client, &base, &device).await.map(|task| (device, task)) }
        },
    )
    .await;
    let tasks = Arc::new(posted.ok);
    let watchers: Vec<_> = clients
        .into_iter()
        .take(WATCHERS)
        .enumerate()
        .map(|(k, client)| {
            let (tasks, base) = (tasks.clone(), base.clone());
            bench.load.spawn(async move {
                // Watcher k checks tasks k, k + WATCHERS, ... in creation order, each until it is final.
                for (device, task) in tasks.iter().skip(k).step_by(WATCHERS) {
                    loop {
                        match task_code(&client, &base, device, task).await {
                            Ok(code) if code != 204 => break,
                            _ if Instant::now() >= deadline => return false,
                            _ => tokio::time::sleep(POLL).await,
                        }
                    }
                }
                true
            })
        })
        .collect();
    let mut watched_all = true;
    for watcher in watchers {
        watched_all &= watcher.await.unwrap_or(false);
    }
    let outcome = Outcome {
        created: tasks.len(),
        post_errors: posted.errors,
        post_elapsed: posted.elapsed,
        first_error: posted.first_error,
        started_ms,
        watched_all,
        cpu: meter.stop(),
    };
    let tasks = Arc::try_unwrap(tasks).unwrap_or_else(|shared| (*shared).clone());
    Ok((outcome, tasks))
}

/// The most connections Service A held at once while `counting`, sampled every 100 ms.
async fn most_connections(port: u16, counting: Arc<AtomicBool>) -> usize {
    let mut most = 0;
    while counting.load(Ordering::Acquire) {
        most = most.max(crate::sys::connections_to(port));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    most
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Finals {
    completed: usize,
    failed: usize,
    open: usize,
    /// Latest `updated_at` of a final task: when the last one finished, to the millisecond.
    last_ms: u64,
}

/// Reads each task's record from the stopped app's file store: the exact time it became final, which
/// polling could only bound.
fn read_finals(data_dir: &Path, tasks: &[(String, String)]) -> Result<Finals> {
    let (store, waited) = crate::harness::open_when_released(data_dir)?;
    if waited > Duration::from_millis(500) {
        println!("  !! the stopped app released its file store only after {waited:?}");
    }
    let mut finals = Finals {
        completed: 0,
        failed: 0,
        open: 0,
        last_ms: 0,
    };
    for (_, task) in tasks {
        let id = TaskId::parse(task).ok_or_else(|| anyhow!("Service B returned a malformed task id {task}"))?;
        match store.get(id)?.map(|r| (r.status, r.updated_at)) {
            Some((TaskStatus::Completed, at)) => {
                finals.completed += 1;
                finals.last_ms = finals.last_ms.max(at);
            }
            Some((TaskStatus::Failed, at)) => {
                finals.failed += 1;
                finals.last_ms = finals.last_ms.max(at);
            }
            _ => finals.open += 1,
        }
    }
    Ok(finals)
}
