//! P2, status throughput: GET of a task's status against GET /healthz, a static route served by the same
//! TLS and HTTP stack of the same Service B.

use crate::harness::{Bench, Running};
use crate::load::{closed_loop, create_task, device, expect_ok, http1_clients, task_code, Run, Until};
use crate::report::{Report, Row, Target};
use anyhow::{anyhow, Result};
use cpe_actors::ports::TaskReader;
use cpe_actors::TaskId;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a completed task's status holds (serde_json writes compact JSON).
const COMPLETED: &[u8] = br#""code":200"#;
/// Tasks created before measuring; GETs cycle through them.
const SEEDED: u64 = 1_000;
/// The two routes are measured in alternating slices, so a change in the machine's other load (it is
/// shared) falls on both alike instead of on whichever ran second.
const SLICES: u32 = 5;

/// The status reads of PostgreSQL against those of the file store, in the same run.
const POSTGRES_TARGET: f64 = 0.5;
const POSTGRES_P99_MS: f64 = 10.0;

pub async fn run(bench: &Bench, report: &mut Report) {
    let mut file = None;
    for store in ["file", "memory"] {
        match measure(bench, store, store, report).await {
            Ok(status) if store == "file" => file = Some(status),
            Ok(_) => {}
            Err(error) => report.add(Row::skipped(
                format!("P2 status throughput ({store} store)"),
                format!("{error:#}"),
            )),
        }
    }
    // The store several instances share: its reads go to the database, or to memory once final.
    let (Some(file), Some(schema)) = (file, cpe_config::store::postgres::scratch::ScratchSchema::create()) else {
        return;
    };
    match measure(bench, "postgres", &schema.url, report).await {
        Ok(status) => {
            let latency = format!("{:.0} req/s (p99 {:.1} ms)", status.rate(), status.percentile_ms(0.99));
            let baseline = format!("{:.0} req/s with the file store", file.rate());
            let ratio = status.rate() / file.rate().max(1e-9);
            report.add(
                Row::ratio("P2 status with the PostgreSQL store", latency, baseline, ratio)
                    .target(Target::AtLeast(POSTGRES_TARGET)),
            );
            let p99 = status.percentile_ms(0.99);
            report.add(
                Row::plain("P2 status p99 with the PostgreSQL store", format!("{p99:.1} ms"))
                    .target(Target::AtMost(POSTGRES_P99_MS))
                    .check_value(p99, "ms"),
            );
        }
        Err(error) => report.add(Row::skipped(
            "P2 status with the PostgreSQL store",
            format!("{error:#}"),
        )),
    }
}

/// With the in-process queue and no device delay the seeded tasks complete at once; the broker is not
/// on the GET path, so P2 runs without it. `store` is the `--store` value, `label` its kind.
async fn measure(bench: &Bench, label: &str, store: &str, report: &mut Report) -> Result<Run<()>> {
    let args = vec![format!("--store={store}"), "--config-delay=0ms".into()];
    let data_dir = bench.fresh_dir("p2");
    let running = bench.start(&data_dir, None, &args).await?;
    let result = measure_on(bench, &running, label, report).await;
    bench.stop(running, false).await;
    if let (Ok((tasks, _)), "file") = (&result, label) {
        // What the registry's reads cost by themselves, on the same records, once the app let go of them.
        match get_rate(&data_dir, tasks, Duration::from_secs(2)).await {
            Ok(rate) => report.add(Row::plain(
                "P2 diagnostic: FileStore::get alone, one caller",
                format!("{rate:.0} gets/s ({:.1} µs each)", 1e6 / rate.max(1e-9)),
            )),
            Err(error) => report.note(format!("FileStore::get alone could not be measured: {error:#}")),
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    result.map(|(_, status)| status)
}

async fn measure_on(
    bench: &Bench,
    running: &Running,
    store: &str,
    report: &mut Report,
) -> Result<(Arc<Vec<(String, String)>>, Run<()>)> {
    let base = running.service_b();
    let s = &bench.settings;
    let clients = http1_clients(s.connections, &bench.trust)?;
    let tasks = seed(bench, &clients, &base).await?;
    let slice = s.duration / SLICES;
    let (mut healthz, mut status) = (Vec::new(), Vec::new());
    for _ in 0..SLICES {
        let url = format!("{base}/healthz");
        healthz.push(
            closed_loop(&bench.load, clients.clone(), Until::Elapsed(slice), move |client, _| {
                let url = url.clone();
                async move { expect_ok(client.get(url)).await.map(drop) }
            })
            .await,
        );
        let (base, tasks) = (base.clone(), tasks.clone());
        status.push(
            closed_loop(
                &bench.load,
                clients.clone(),
                Until::Elapsed(slice),
                move |client, seq| {
                    let (device, task) = &tasks[(seq % tasks.len() as u64) as usize];
                    let url = format!("{base}/api/v1/equipment/cpe/{device}/task/{task}");
                    async move {
                        // A byte search, not a JSON parse: the load generator should spend on a status read
                        // what it spends on /healthz, so the ratio compares the server's two routes.
                        let body = expect_ok(client.get(&url)).await?;
                        if body.windows(COMPLETED.len()).any(|w| w == COMPLETED) {
                            Ok(())
                        } else {
                            Err(format!("{url} is not completed: {}", String::from_utf8_lossy(&body)))
                        }
                    }
                },
            )
            .await,
        );
    }
    let (healthz, status) = (Run::merge(healthz), Run::merge(status));
    let how = format!("{store} store, {SLICES} alternating slices");
    report.note(format!(
        "P2 ({how}) GET /healthz: {}; CPU {}",
        healthz.summary(),
        healthz.cpu
    ));
    report.note(format!(
        "P2 ({how}) GET status: {}; CPU {}",
        status.summary(),
        status.cpu
    ));
    let figure = if store == "file" {
        format!("P2 status throughput ({} conns, {:?})", s.connections, s.duration)
    } else {
        format!("P2 diagnostic: status with the {store} store")
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
    Ok((tasks, status))
}

/// Creates the tasks the GETs read, and waits until each is final, so all GETs read the same kind of record.
async fn seed(bench: &Bench, clients: &[reqwest::Client], base: &str) -> Result<Arc<Vec<(String, String)>>> {
    let seed_base = base.to_owned();
    let until = Until::Count {
        total: SEEDED,
        limit: bench.settings.limit,
    };
    let seeded = closed_loop(&bench.load, clients.to_vec(), until, move |client, seq| {
        let (base, device) = (seed_base.clone(), device(seq));
        async move { create_task(&client, &base, &device).await.map(|task| (device, task)) }
    })
    .await;
    if seeded.ok.len() as u64 != SEEDED {
        return Err(anyhow!(
            "seeding created {} of {SEEDED} tasks: {:?}",
            seeded.ok.len(),
            seeded.first_error
        ));
    }
    let tasks = Arc::new(seeded.ok);
    let (client, base, all) = (clients[0].clone(), base.to_owned(), tasks.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    bench
        .load
        .spawn(async move {
            for (device, task) in all.iter() {
                while task_code(&client, &base, device, task).await.map_err(|e| anyhow!(e))? == 204 {
                    if Instant::now() > deadline {
                        return Err(anyhow!("seeded tasks did not complete within 60 s"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(())
        })
        .await??;
    Ok(tasks)
}

/// Serial `FileStore::get` of the seeded tasks for `span`, in a blocking thread as the registry would.
async fn get_rate(dir: &Path, tasks: &Arc<Vec<(String, String)>>, span: Duration) -> Result<f64> {
    let ids: Vec<TaskId> = tasks.iter().filter_map(|(_, task)| TaskId::parse(task)).collect();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let (store, waited) = crate::harness::open_when_released(&dir)?;
        if waited > Duration::from_millis(500) {
            println!("  !! the stopped app released its file store only after {waited:?}");
        }
        let started = Instant::now();
        let mut count = 0usize;
        while started.elapsed() < span {
            store
                .get(ids[count % ids.len()])?
                .ok_or_else(|| anyhow!("a seeded task is missing"))?;
            count += 1;
        }
        Ok(count as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}
