//! P8, per-device order across instances: 30 devices with 10 tasks each, created round-robin on
//! three instances of the binary that share one PostgreSQL schema and one RabbitMQ queue, against
//! the same run on one instance; then the three again, with one killed (-9) a second in. Each
//! instance's own Service A takes 500 ms per call, so the call deadline is the default a user gets
//! for it (31 s) and a dead instance's device lease lasts 36 s. The makespan runs from the first
//! create until every task is final. (The tests check the same run for lost, duplicated,
//! overlapping and out-of-order calls: `tests/scale_out.rs`.)

use crate::child::{sibling_binary, Server};
use crate::harness::Bench;
use crate::load::{create_task, http1_clients, task_code};
use crate::report::{Report, Row, Target};
use anyhow::{anyhow, Result};
use cpe_config::store::postgres::scratch::ScratchSchema;
use cpe_test_support::{delete_queues, unique_queue};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DEVICES: usize = 30;
const ROUNDS: usize = 10;
const DELAY: &str = "--config-delay=500ms";
/// The device lease of that deadline: call timeout (2 × 500 ms + 30 s) plus 5 s.
const LEASE: Duration = Duration::from_secs(36);
const RATIO: f64 = 1.3;
/// Longest a run may take before it is reported as cut short.
const LIMIT: Duration = Duration::from_secs(300);

pub async fn run(bench: &Bench, report: &mut Report, binary: Option<PathBuf>) {
    if let Err(error) = measure(bench, report, binary).await {
        report.add(Row::skipped("P8 contention across instances", format!("{error:#}")));
    }
}

async fn measure(bench: &Bench, report: &mut Report, binary: Option<PathBuf>) -> Result<()> {
    let binary = match binary {
        Some(binary) => binary,
        None => sibling_binary().map_err(|e| anyhow!(e))?,
    };
    let one = makespan(bench, &binary, 1, None).await?;
    report.note(format!(
        "P8 one instance: all {} tasks final in {one:.1?}",
        DEVICES * ROUNDS
    ));
    let three = makespan(bench, &binary, 3, None).await?;
    report.note(format!("P8 three instances: all final in {three:.1?}"));
    report.add(
        Row::ratio(
            "P8 makespan, 3 instances against 1 (30 devices x 10 tasks)",
            format!("{three:.1?}"),
            format!("{one:.1?} on one instance"),
            three.as_secs_f64() / one.as_secs_f64().max(1e-9),
        )
        .target(Target::AtMost(RATIO)),
    );
    let killed = makespan(bench, &binary, 3, Some(Duration::from_secs(1))).await?;
    let over = killed.saturating_sub(one);
    report.add(
        Row::plain(
            "P8 makespan, 3 instances with one killed (-9) at 1 s, past the one-instance run",
            format!("{killed:.1?} ({over:.1?} past one instance; the lease is {LEASE:?})"),
        )
        .target(Target::AtMost((LEASE + Duration::from_secs(10)).as_secs_f64()))
        .check_value(over.as_secs_f64(), "s"),
    );
    Ok(())
}

/// From the first create until every task is final, on `size` fresh instances; the first is
/// killed `kill_after` the first create when given.
async fn makespan(bench: &Bench, binary: &PathBuf, size: usize, kill_after: Option<Duration>) -> Result<Duration> {
    let schema = ScratchSchema::create().ok_or_else(|| anyhow!("no PostgreSQL on 127.0.0.1:5432"))?;
    let amqp = bench.broker.as_ref().map_err(|why| anyhow!("{why}"))?.clone();
    let queue = unique_queue("bench-p8");
    let args = [
        format!("--store={}", schema.url),
        format!("--amqp-url={amqp}"),
        format!("--queue={queue}"),
        format!("--results-queue={queue}-results"),
        DELAY.into(),
        "--workers=16".into(),
        "--shutdown-grace=1s".into(),
    ];
    let mut servers = (0..size)
        .map(|_| Server::start(bench, binary, &args, "Service B"))
        .collect::<Result<Vec<_>>>()?;
    let bases: Vec<String> = servers
        .iter()
        .map(|s| format!("https://127.0.0.1:{}", s.port))
        .collect();
    let client = http1_clients(1, &bench.trust)?.remove(0);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(DEVICES * ROUNDS);
    let mut killed = false;
    for round in 0..ROUNDS {
        for device in 0..DEVICES {
            let number = round * DEVICES + device;
            // Only to the instances still running.
            let live = &bases[usize::from(killed)..];
            let base = &live[number % live.len()];
            let device = format!("p8dev{device:04}");
            let task = create_task(&client, base, &device)
                .await
                .map_err(|e| anyhow!("create on {base}: {e}"))?;
            tasks.push((device, task));
            if kill_after.is_some_and(|after| !killed && started.elapsed() >= after) {
                servers[0].kill();
                killed = true;
            }
        }
    }
    if let Some(after) = kill_after.filter(|_| !killed) {
        tokio::time::sleep(after.saturating_sub(started.elapsed())).await;
        servers[0].kill();
    }
    // Every task read from a live instance until it is final.
    let reader = bases.last().expect("one instance at least").clone();
    for (device, task) in &tasks {
        while task_code(&client, &reader, device, task)
            .await
            .map_err(|e| anyhow!(e))?
            == 204
        {
            if started.elapsed() > LIMIT {
                return Err(anyhow!("not every task was final within {LIMIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let makespan = started.elapsed();
    for server in &mut servers {
        server.stop().await;
    }
    delete_queues(&amqp, &queue).await;
    Ok(makespan)
}
