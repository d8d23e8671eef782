//! P2, status throughput: GET of a task's status against GET /healthz, a static route served by the same
//! TLS and HTTP stack of the same Service B.

use crate::harness::{Bench, Running};
use crate::load::{closed_loop, create_task, device, expect_ok, http1_clients, task_code, Until};
use crate::report::{Report, Row, Target};
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a completed task's status holds (serde_json writes compact JSON).
const COMPLETED: &[u8] = br#""code":200"#;

/// Tasks created before measuring; GETs cycle through them.
const SEEDED: u64 = 1_000;

pub async fn run(bench: &Bench, report: &mut Report) {
    for store in ["file", "memory"] {
        if let Err(error) = measure(bench, store, report).await {
            report.add(Row::skipped(
                format!("P2 status throughput ({store} store)"),
                format!("{error:#}"),
            ));
        }
    }
}

/// With the in-process queue and no device delay the seeded tasks complete at once; the broker is not
/// on the GET path, so P2 runs without it.
async fn measure(bench: &Bench, store: &str, report: &mut Report) -> Result<()> {
    let args = vec![format!("--store={store}"), "--config-delay=0ms".into()];
    let running = bench.start(&bench.fresh_dir("p2"), None, &args).await?;
    let result = measure_on(bench, &running, store, report).await;
    bench.stop(running, true).await;
    result
}

async fn measure_on(bench: &Bench, running: &Running, store: &str, report: &mut Report) -> Result<()> {
    let base = running.service_b();
    let s = &bench.settings;
    let clients = http1_clients(s.connections, &bench.trust)?;
    let seed_base = base.clone();
    let seeded = closed_loop(
        &bench.load,
        clients.clone(),
        Until::Count {
            total: SEEDED,
            limit: s.limit,
        },
        move |client, seq| {
            let (base, device) = (seed_base.clone(), device(seq));
            async move { create_task(&client, &base, &device).await.map(|task| (device, task)) }
        },
    )
    .await;
    if seeded.ok.len() as u64 != SEEDED {
        return Err(anyhow!(
            "seeding created {} of {SEEDED} tasks: {:?}",
            seeded.ok.len(),
            seeded.first_error
        ));
    }
    let tasks = Arc::new(seeded.ok);
    wait_final(bench, &clients[0], &base, &tasks, Duration::from_secs(60)).await?;

    let health_base = base.clone();
    let healthz = closed_loop(
        &bench.load,
        clients.clone(),
        Until::Elapsed(s.duration),
        move |client, _| {
            let url = format!("{health_base}/healthz");
            async move { expect_ok(client.get(url)).await.map(drop) }
        },
    )
    .await;
    let (status_base, status_tasks) = (base.clone(), tasks.clone());
    let status = closed_loop(&bench.load, clients, Until::Elapsed(s.duration), move |client, seq| {
        let (device, task) = &status_tasks[(seq % status_tasks.len() as u64) as usize];
        let url = format!("{status_base}/api/v1/equipment/cpe/{device}/task/{task}");
        async move {
            // A byte search, not a JSON parse: the load generator should spend on a status read what it
            // spends on /healthz, so the ratio compares the server's two routes.
            let body = expect_ok(client.get(&url)).await?;
            if body.windows(COMPLETED.len()).any(|w| w == COMPLETED) {
                Ok(())
            } else {
                Err(format!("{url} is not completed: {}", String::from_utf8_lossy(&body)))
            }
        }
    })
    .await;
    report.note(format!(
        "P2 ({store} store) GET /healthz: {}; CPU {}",
        healthz.summary(),
        healthz.cpu
    ));
    report.note(format!(
        "P2 ({store} store) GET status: {}; CPU {}",
        status.summary(),
        status.cpu
    ));
    let figure = if store == "file" {
        format!("P2 status throughput ({} conns, {:?})", s.connections, s.duration)
    } else {
        "P2 diagnostic: status with the memory store".into()
    };
    let mut row = Row::ratio(
        figure,
        format!(
            "{:.0} req/s (p50 {:.1} ms, p99 {:.1} ms)",
            status.rate(),
            status.percentile_ms(0.5),
            status.percentile_ms(0.99)
        ),
        format!("{:.0} req/s GET /healthz", healthz.rate()),
        status.rate() / healthz.rate().max(1e-9),
    );
    if store == "file" {
        row = row.target(Target::AtLeast(0.7));
    }
    report.add(row);
    Ok(())
}

/// Waits until every seeded task reports a final status, so all GETs read the same kind of record.
async fn wait_final(
    bench: &Bench,
    client: &reqwest::Client,
    base: &str,
    tasks: &Arc<Vec<(String, String)>>,
    limit: Duration,
) -> Result<()> {
    let (client, base, tasks) = (client.clone(), base.to_owned(), tasks.clone());
    let deadline = Instant::now() + limit;
    bench
        .load
        .spawn(async move {
            for (device, task) in tasks.iter() {
                while task_code(&client, &base, device, task).await.map_err(|e| anyhow!(e))? == 204 {
                    if Instant::now() > deadline {
                        return Err(anyhow!("seeded tasks did not complete within {limit:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(())
        })
        .await?
}
