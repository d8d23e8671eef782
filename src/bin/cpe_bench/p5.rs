//! P5, memory and start-up: resident memory per task retained by the registry (memory store), bytes
//! on disk per task (file store), and the time from start to ready with those tasks stored.

use crate::harness::{unique_queue, Bench};
use crate::p1::sample_message;
use crate::report::{size, Report, Row, Target};
use crate::sys;
use anyhow::{anyhow, Result};
use cpe_actors::memory::MemoryStore;
use cpe_actors::ports::TaskStore;
use cpe_actors::registry::{Registry, RegistryHandle};
use cpe_actors::slot::Slot;
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord, TaskStatus};
use cpe_config::store::file::FileStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TARGET_BYTES: f64 = 1024.0;
/// The issue sets the memory target at these sizes and up.
const TARGET_FROM: u64 = 100_000;
/// Concurrent callers filling the registry.
const FILLERS: u64 = 64;

pub async fn run(bench: &Bench, report: &mut Report) {
    for &n in &bench.settings.memory_sizes {
        let figure = format!("P5 RSS per retained task, memory store, N={}", size(n));
        if let Err(error) = memory_per_task(n, sample_message(), &figure, report).await {
            report.add(Row::skipped(figure, format!("{error:#}")));
        }
    }
    // The same records without parameters: how much of a task's memory its parameter map takes.
    if let Some(&n) = bench.settings.memory_sizes.iter().filter(|&&n| n <= TARGET_FROM).max() {
        let figure = format!("P5 diagnostic: same, with empty parameters, N={}", size(n));
        let mut bare = sample_message();
        bare.request =
            ConfigRequest::from_json(br#"{"timeoutInSeconds": 14, "parameters": {}}"#).expect("a valid request");
        if let Err(error) = memory_per_task(n, bare, &figure, report).await {
            report.add(Row::skipped(figure, format!("{error:#}")));
        }
    }
    let figure = "P5 start to ready, memory store (empty)".to_string();
    if let Err(error) = start_to_ready(bench, None, &figure, report).await {
        report.add(Row::skipped(figure, format!("{error:#}")));
    }
    for &n in &bench.settings.sizes {
        let figure = format!("P5 file store, N={}", size(n));
        if let Err(error) = file_store(bench, n, &figure, report).await {
            report.add(Row::skipped(figure, format!("{error:#}")));
        }
    }
}

/// A completed task as the registry keeps it: the example request, a distinct device.
fn completed(seq: u64, template: &cpe_actors::TaskMessage) -> TaskRecord {
    let mut record = TaskRecord::queued(
        TaskId::new(),
        EquipmentId::parse(&crate::load::device(seq)).expect("a valid id"),
        template.request.clone(),
    );
    record.status = TaskStatus::Completed;
    record.attempts = 1;
    record
}

/// Fills a registry actor (memory store) with N completed tasks through `RegistryHandle::create`, the
/// path Service B uses, and divides the growth of this process's RSS by N.
async fn memory_per_task(n: u64, template: TaskMessage, figure: &str, report: &mut Report) -> Result<()> {
    let store = Arc::new(MemoryStore::default());
    let (actor, done) = ractor::Actor::spawn(None, Registry, store.clone() as Arc<dyn TaskStore>)
        .await
        .map_err(|e| anyhow!("cannot start a registry: {e}"))?;
    let slot = Slot::default();
    slot.set(actor.clone());
    let registry = RegistryHandle::new(slot);
    sys::trim_heap();
    let before = sys::rss();
    let started = Instant::now();
    let template = Arc::new(template);
    let fillers: Vec<_> = (0..FILLERS)
        .map(|k| {
            let (registry, template) = (registry.clone(), template.clone());
            tokio::spawn(async move {
                for seq in (k..n).step_by(FILLERS as usize) {
                    registry.create(completed(seq, &template)).await?;
                }
                Ok::<_, cpe_actors::ports::StoreError>(())
            })
        })
        .collect();
    for filler in fillers {
        filler.await??;
    }
    let filled_in = started.elapsed();
    let after = sys::rss();
    actor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
    drop(store);
    sys::trim_heap();
    let per_task = after.saturating_sub(before) as f64 / n as f64;
    let mut row = Row::plain(
        figure,
        format!(
            "{per_task:.0} B/task (+{:.1} MiB)",
            sys::mib(after.saturating_sub(before))
        ),
    );
    if n >= TARGET_FROM && !figure.contains("diagnostic") {
        row = row.target(Target::AtMost(TARGET_BYTES)).check_value(per_task, "B/task");
    }
    report.add(row);
    report.note(format!(
        "{figure}: filled through the registry actor in {:.2} s ({:.0} creates/s); RSS {:.0} -> {:.0} MiB",
        filled_in.as_secs_f64(),
        n as f64 / filled_in.as_secs_f64(),
        sys::mib(before),
        sys::mib(after)
    ));
    Ok(())
}

/// Fills a file store with up to N completed tasks (one fsync each, so bounded by the fill limit), reports
/// bytes on disk per task, then times an app's start to ready on that store.
async fn file_store(bench: &Bench, n: u64, figure: &str, report: &mut Report) -> Result<()> {
    let dir = bench.fresh_dir("p5");
    let store = FileStore::open(&dir)?;
    let limit = bench.settings.fill_limit;
    let before = sys::rss();
    let (count, elapsed) = tokio::task::spawn_blocking(move || {
        let template = sample_message();
        let started = Instant::now();
        let mut count = 0;
        while count < n && started.elapsed() < limit {
            store.put(&completed(count, &template))?;
            count += 1;
        }
        Ok::<_, cpe_actors::ports::StoreError>((count, started.elapsed()))
    })
    .await??;
    let rss_growth = sys::rss().saturating_sub(before);
    let bytes = sys::disk_bytes(&dir);
    let reached = if count < n {
        format!(", fill stopped at {} after {limit:?}", count)
    } else {
        String::new()
    };
    report.add(Row::plain(
        format!("{figure}: bytes on disk per task"),
        format!(
            "{:.0} B/task ({:.1} MiB for {count} tasks{reached})",
            bytes as f64 / count.max(1) as f64,
            sys::mib(bytes)
        ),
    ));
    report.note(format!(
        "{figure}: filled with FileStore::put at {:.0} puts/s; RSS grew {:.1} MiB while filling (page cache of redb)",
        count as f64 / elapsed.as_secs_f64(),
        sys::mib(rss_growth)
    ));
    let result = start_to_ready(
        bench,
        Some((&dir, count)),
        &format!("P5 start to ready, file store with {} tasks", size(count)),
        report,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Time from `App::build` to the first 200 of Service B's /readyz, with RabbitMQ when it is reachable.
async fn start_to_ready(
    bench: &Bench,
    file: Option<(&std::path::Path, u64)>,
    figure: &str,
    report: &mut Report,
) -> Result<()> {
    bench.broker_dropped().await;
    let queue = bench.broker.is_ok().then(|| unique_queue("p5"));
    let (dir, args) = match file {
        Some((dir, _)) => (dir.to_owned(), vec!["--store=file".to_string()]),
        None => (bench.fresh_dir("p5"), vec!["--store=memory".to_string()]),
    };
    let started = Instant::now();
    let running = bench.start(&dir, queue.as_deref(), &args).await?;
    let built = started.elapsed();
    let ready = bench.wait_ready(&running.service_b(), Duration::from_secs(30)).await;
    bench.stop(running, file.is_none()).await;
    let ready = ready?.duration_since(started);
    let transport = if queue.is_some() {
        "RabbitMQ"
    } else {
        "in-process queue"
    };
    let row = Row::plain(
        figure,
        format!(
            "{:.0} ms ({transport}; App::build {:.0} ms)",
            ready.as_secs_f64() * 1000.0,
            built.as_secs_f64() * 1000.0
        ),
    );
    let row = bench.check_broker_during(row, report).await;
    report.add(row);
    Ok(())
}
