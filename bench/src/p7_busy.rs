//! P7, a busy device: four operators list one device of 30,000 tasks with `?status=failed` in a loop
//! while tasks are created, on the file store and on PostgreSQL. The median create latency with the
//! listers running against its value without them (issue 16: at most 2×).

use crate::harness::Bench;
use crate::load::{closed_loop, create_task, device, expect_ok, http1_clients, Run, Until};
use crate::p1::sample_message;
use crate::report::{Report, Row, Target};
use anyhow::Result;
use cpe_actors::ports::{TaskStore, WriteOp};
use cpe_actors::{EquipmentId, Outcome, TaskId, TaskRecord, TaskStatus};
use cpe_config::store::file::FileStore;
use cpe_config::store::postgres::PgStore;
use std::path::Path;

/// The busy device's tasks: all completed but every thousandth, which failed.
const TASKS: u64 = 30_000;
const BATCH: u64 = 5_000;
const LISTERS: usize = 4;
/// Connections creating tasks (of other devices) while the device is listed.
const CREATORS: usize = 8;
const TARGET: f64 = 2.0;
const BUSY: &str = "busy0001";

pub async fn run(bench: &Bench, report: &mut Report) {
    let dir = bench.fresh_dir("p7-busy");
    let at = dir.clone();
    let file = measure(bench, "file", "file", &dir, move || fill(&FileStore::open(&at)?)).await;
    add(report, "file", file);
    let _ = std::fs::remove_dir_all(&dir);
    let Some(schema) = cpe_config::store::postgres::scratch::ScratchSchema::create() else {
        report.add(Row::skipped(figure("PostgreSQL"), "no PostgreSQL on 127.0.0.1:5432"));
        return;
    };
    let dir = bench.fresh_dir("p7-busy");
    let url = schema.url.clone();
    let shared = measure(bench, "PostgreSQL", &schema.url, &dir, move || {
        fill(&PgStore::open(&url)?)
    })
    .await;
    add(report, "PostgreSQL", shared);
}

fn figure(store: &str) -> String {
    format!("P7 create p50 while {LISTERS} clients list a {TASKS}-task device by status ({store} store)")
}

fn add(report: &mut Report, store: &str, measured: Result<(Run<()>, Run<()>, Run<()>)>) {
    match measured {
        Ok((quiet, busy, listed)) => {
            report.note(format!("P7 busy device ({store}): creates alone: {}", quiet.summary()));
            report.note(format!(
                "P7 busy device ({store}): creates while listed: {}",
                busy.summary()
            ));
            report.note(format!("P7 busy device ({store}): listings: {}", listed.summary()));
            let ratio = busy.percentile_ms(0.5) / quiet.percentile_ms(0.5).max(1e-9);
            let row = Row::ratio(
                figure(store),
                format!("{:.1} ms ({:.0} listings/s)", busy.percentile_ms(0.5), listed.rate()),
                format!("{:.1} ms without the listers", quiet.percentile_ms(0.5)),
                ratio,
            );
            report.add(row.target(Target::AtMost(TARGET)));
        }
        Err(error) => report.add(Row::skipped(figure(store), format!("{error:#}"))),
    }
}

/// Creates alone, then creates and listings at once, on an app over the filled store.
async fn measure(
    bench: &Bench,
    store: &str,
    store_arg: &str,
    dir: &Path,
    filling: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<(Run<()>, Run<()>, Run<()>)> {
    tokio::task::spawn_blocking(filling).await??;
    let args = vec![format!("--store={store_arg}"), "--config-delay=0ms".into()];
    let running = bench.start(dir, None, &args).await?;
    let base = running.service_b();
    let span = bench.settings.duration;
    let creates = || {
        let base = base.clone();
        let clients = http1_clients(CREATORS, &bench.trust);
        async move {
            let call = move |client: std::sync::Arc<reqwest::Client>, seq| {
                let base = base.clone();
                async move { create_task(&client, &base, &device(seq)).await.map(drop) }
            };
            Ok::<_, anyhow::Error>(closed_loop(&bench.load, clients?, Until::Elapsed(span), call).await)
        }
    };
    let quiet = creates().await?;
    let url = format!("{base}/api/v1/equipment/cpe/{BUSY}/tasks?status=failed&limit=50");
    let listers = http1_clients(LISTERS, &bench.trust)?;
    let listing = closed_loop(&bench.load, listers, Until::Elapsed(span), move |client, _| {
        let url = url.clone();
        async move { expect_ok(client.get(url)).await.map(drop) }
    });
    let (busy, listed) = tokio::join!(creates(), listing);
    bench.stop(running, true).await;
    println!("  .. P7 busy device on the {store} store measured");
    Ok((quiet, busy?, listed))
}

/// The busy device's tasks, written straight to the store before the app starts.
fn fill(store: &dyn TaskStore) -> Result<()> {
    let template = sample_message();
    let now = cpe_actors::domain::now_millis();
    let equipment = EquipmentId::parse(BUSY).expect("a valid id");
    for start in (0..TASKS).step_by(BATCH as usize) {
        let batch: Vec<WriteOp> = (start..(start + BATCH).min(TASKS))
            .map(|seq| {
                let mut record = TaskRecord::queued(TaskId::new(), equipment.clone(), template.request.clone());
                record.move_to(TaskStatus::Running);
                record.finish(&if seq % 1_000 == 0 {
                    Outcome::Failed {
                        attempts: 5,
                        reason: "Service A answered HTTP 500".into(),
                    }
                } else {
                    Outcome::Completed { attempts: 1 }
                });
                record.created_at = now - (TASKS - seq);
                record.updated_at = record.created_at;
                WriteOp::Put(record)
            })
            .collect();
        store.write_batch(&batch)?;
    }
    Ok(())
}
