//! P5, memory and start-up: resident memory per task retained by the registry (memory store), bytes
//! on disk per task (file store), and the time from start to ready with those tasks stored.

use crate::harness::Bench;
use crate::memory;
use crate::p1::sample_message;
use crate::report::{size, Report, Row, Target};
use crate::sys;
use anyhow::Result;
use cpe_actors::ports::TaskStore;
use cpe_config::store::file::FileStore;
use cpe_test_support::unique_queue;
use std::time::{Duration, Instant};

const TARGET_BYTES: f64 = 1024.0;
/// The issue sets the memory target at these sizes and up.
const TARGET_FROM: u64 = 100_000;

pub async fn run(bench: &Bench, report: &mut Report) {
    for &n in &bench.settings.memory_sizes {
        let figure = format!("P5 RSS per retained task, memory store, N={}", size(n));
        if let Err(error) = memory_per_task(n, false, &figure, report).await {
            report.add(Row::skipped(figure, format!("{error:#}")));
        }
    }
    // Tasks not yet final keep their parameters (the example's map), so they cost more.
    if let Some(&n) = bench.settings.memory_sizes.iter().filter(|&&n| n <= TARGET_FROM).max() {
        let figure = format!("P5 diagnostic: unfinished tasks (parameters kept), N={}", size(n));
        if let Err(error) = memory_per_task(n, true, &figure, report).await {
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

/// RSS growth per task of a registry (memory store) filled with N tasks, measured in a fresh child.
async fn memory_per_task(n: u64, unfinished: bool, figure: &str, report: &mut Report) -> Result<()> {
    let fill = memory::measure(n, unfinished, Duration::from_secs(300)).await?;
    let growth = fill.after.saturating_sub(fill.before);
    let per_task = growth as f64 / n as f64;
    let mut row = Row::plain(figure, format!("{per_task:.0} B/task (+{:.1} MiB)", sys::mib(growth)));
    if n >= TARGET_FROM && !unfinished {
        row = row.target(Target::AtMost(TARGET_BYTES)).check_value(per_task, "B/task");
    }
    report.add(row);
    report.note(format!(
        "{figure}: filled through the registry actor in a fresh process in {:.2} s ({:.0} creates/s); RSS {:.1} -> {:.1} MiB",
        fill.elapsed.as_secs_f64(),
        n as f64 / fill.elapsed.as_secs_f64().max(1e-9),
        sys::mib(fill.before),
        sys::mib(fill.after)
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
            store.put(&memory::retained(count, &template, false))?;
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
    let queue = bench.broker.is_ok().then(|| unique_queue("bench-p5"));
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
