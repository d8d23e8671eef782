//! P7, operator reads at scale: what one page of the task listing costs in a store of 10k tasks and in
//! one of 1M (issue 10: "a page costs the same at 1,000,000 tasks as at 1,000"), read through
//! `TaskStore::list` and, for the first page, over HTTPS; then 10,000 long-poll waiters (`waiters.rs`).

use crate::harness::Bench;
use crate::load::{device, http1_clients};
use crate::p1::sample_message;
use crate::report::{size, Report, Row, Target};
use crate::sys;
use anyhow::{anyhow, Result};
use cpe_actors::memory::MemoryStore;
use cpe_actors::ports::{TaskStore, WriteOp};
use cpe_actors::{Cursor, EquipmentId, Outcome, TaskId, TaskMessage, TaskQuery, TaskRecord, TaskStatus};
use cpe_config::store::file::FileStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records per `write_batch` while filling: one transaction (one fsync) each, so a million tasks take a
/// hundred commits, not a million.
const BATCH: u64 = 10_000;
/// Tasks per device, spread evenly through the history: a device's first page is full and has a next.
const PER_DEVICE: u64 = 100;
/// Failed tasks in the history whatever its size: the status an operator looks for, rare in a big store.
const RARE: u64 = 100;
const LIMIT: usize = 50;
/// "About the same": the ratio of a page's median time at the largest size to the smallest's.
const TARGET_RATIO: f64 = 1.5;

/// The pages timed, each a `TaskStore::list` query.
#[derive(Clone, Copy, Debug)]
enum Page {
    First,
    /// From a cursor nine tenths of the way back into the history.
    Deep,
    /// `status=failed`: 100 failed tasks among all the completed ones.
    Rare,
    /// One device's tasks (100 of them).
    Device,
}

const PAGES: [Page; 4] = [Page::First, Page::Deep, Page::Rare, Page::Device];

impl Page {
    fn name(self) -> &'static str {
        match self {
            Page::First => "first page",
            Page::Deep => "deep page (cursor 90% back)",
            Page::Rare => "status=failed page (100 failed in all)",
            Page::Device => "device page (100 tasks of that device)",
        }
    }
}

/// A store filled for P7, with what its queries need.
struct Filled {
    kind: &'static str,
    n: u64,
    /// Tasks actually stored: fewer than `n` when the fill reached the time limit.
    reached: u64,
    store: Arc<dyn TaskStore>,
    dir: Option<PathBuf>,
    deep: Cursor,
    device: EquipmentId,
    took: Duration,
}

impl Filled {
    fn query(&self, page: Page) -> TaskQuery {
        let mut query = TaskQuery {
            equipment: None,
            statuses: Vec::new(),
            limit: LIMIT,
            before: None,
        };
        match page {
            Page::First => {}
            Page::Deep => query.before = Some(self.deep),
            Page::Rare => query.statuses = vec![TaskStatus::Failed],
            Page::Device => query.equipment = Some(self.device.clone()),
        }
        query
    }
}

pub async fn run(bench: &Bench, report: &mut Report) {
    if let Err(error) = pages(bench, report).await {
        report.add(Row::skipped("P7 page cost", format!("{error:#}")));
    }
}

async fn pages(bench: &Bench, report: &mut Report) -> Result<()> {
    let s = &bench.settings;
    let mut filled = Vec::new();
    for kind in ["file", "memory"] {
        for &n in &s.page_sizes {
            let one = fill(bench, kind, n, s.limit).await?;
            let cut = if one.reached < n {
                format!(", stopped at {} by the {:?} limit", one.reached, s.limit)
            } else {
                String::new()
            };
            let disk = one.dir.as_ref().map_or(String::new(), |dir| {
                format!(", {:.1} MiB on disk", sys::mib(sys::disk_bytes(dir)))
            });
            report.note(format!(
                "P7 {kind} store, N={}: filled with write_batch of {BATCH} in {:.1} s{cut}{disk}",
                size(n),
                one.took.as_secs_f64()
            ));
            filled.push(one);
        }
    }
    let rounds = if s.quick { 21 } else { 101 };
    let limit = s.limit;
    let (filled, times) = tokio::task::spawn_blocking(move || {
        let times = time_pages(&filled, rounds, limit);
        (filled, times)
    })
    .await?;
    let times = times?;
    for kind in ["file", "memory"] {
        let of_kind: Vec<usize> = (0..filled.len()).filter(|&i| filled[i].kind == kind).collect();
        let (Some(&small), Some(&large)) = (of_kind.first(), of_kind.last()) else {
            continue;
        };
        for (p, page) in PAGES.iter().enumerate() {
            let at = |i: usize| median(&times[i][p]);
            let figure = format!("P7 {} ({kind} store, limit {LIMIT})", page.name());
            let ratio = at(large) as f64 / at(small).max(1) as f64;
            let row = Row::ratio(
                figure.clone(),
                format!("{} at {}", shown(at(large)), size(filled[large].reached)),
                format!("{} at {}", shown(at(small)), size(filled[small].reached)),
                ratio,
            );
            report.add(row.target(Target::AtMost(TARGET_RATIO)));
            let all: Vec<String> = of_kind
                .iter()
                .map(|&i| format!("{} {}", size(filled[i].reached), shown(at(i))))
                .collect();
            report.note(format!(
                "{figure}: medians of {} calls: {}",
                times[large][p].len(),
                all.join(", ")
            ));
        }
    }
    let dirs: Vec<(u64, PathBuf)> = filled
        .into_iter()
        .filter_map(|f| f.dir.map(|dir| (f.reached, dir)))
        .collect();
    // The file stores are closed now (dropped with `filled`), so an app can open them.
    let https = over_https(bench, &dirs, rounds, report).await;
    for (_, dir) in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    https
}

/// Which device task `seq` of `n` is for, and whether it failed: devices take turns, so each has
/// [`PER_DEVICE`] tasks spread through the history, and [`RARE`] tasks evenly apart failed.
fn layout(seq: u64, n: u64) -> (u64, bool) {
    let devices = (n / PER_DEVICE).max(1);
    let stride = (n / RARE).max(1);
    (seq % devices, seq % stride == stride / 2)
}

/// Task `seq` of `n`, final (a worker's outcome), created `n - seq` milliseconds before `now`: one
/// task per millisecond, oldest first, so the history has a distinct time per task.
fn record(seq: u64, n: u64, now: u64, template: &TaskMessage) -> TaskRecord {
    let (owner, failed) = layout(seq, n);
    let equipment = EquipmentId::parse(&device(owner)).expect("a valid id");
    let mut record = TaskRecord::queued(TaskId::new(), equipment, template.request.clone());
    record.move_to(TaskStatus::Running);
    let outcome = if failed {
        Outcome::Failed {
            attempts: 5,
            reason: "Service A answered HTTP 500".into(),
        }
    } else {
        Outcome::Completed { attempts: 1 }
    };
    record.finish(&outcome);
    record.created_at = now - (n - seq);
    record.updated_at = record.created_at;
    record
}

/// Fills a store of `kind` with N final tasks, in batches, until done or `limit`.
async fn fill(bench: &Bench, kind: &'static str, n: u64, limit: Duration) -> Result<Filled> {
    let (store, dir): (Arc<dyn TaskStore>, _) = match kind {
        "file" => {
            let dir = bench.fresh_dir("p7");
            (Arc::new(FileStore::open(&dir)?), Some(dir))
        }
        _ => (Arc::new(MemoryStore::default()), None),
    };
    let writer = store.clone();
    let (reached, deep, took) = tokio::task::spawn_blocking(move || {
        let template = sample_message();
        let now = cpe_actors::domain::now_millis();
        let deep_seq = n / 10;
        let (mut seq, mut deep) = (0, None);
        let started = Instant::now();
        while seq < n && started.elapsed() < limit {
            let end = (seq + BATCH).min(n);
            let batch: Vec<WriteOp> = (seq..end).map(|s| WriteOp::Put(record(s, n, now, &template))).collect();
            if (seq..end).contains(&deep_seq) {
                if let WriteOp::Put(r) = &batch[(deep_seq - seq) as usize] {
                    deep = Some(Cursor::of(r));
                }
            }
            writer.write_batch(&batch)?;
            seq = end;
        }
        Ok::<_, cpe_actors::ports::StoreError>((seq, deep, started.elapsed()))
    })
    .await??;
    Ok(Filled {
        kind,
        n,
        reached,
        store,
        dir,
        deep: deep.ok_or_else(|| anyhow!("the {kind} store's fill stopped before a tenth of {n}"))?,
        device: EquipmentId::parse(&device(layout(n - 1, n).0)).expect("a valid id"),
        took,
    })
}

/// Times every page of every store, round after round (so a change in the machine's load falls on
/// all alike), until `rounds` or `limit`. Answers `[store][page]` in nanoseconds.
fn time_pages(filled: &[Filled], rounds: usize, limit: Duration) -> Result<Vec<Vec<Vec<u64>>>> {
    let mut times = vec![vec![Vec::with_capacity(rounds); PAGES.len()]; filled.len()];
    let started = Instant::now();
    for round in 0..rounds {
        if round > 0 && started.elapsed() >= limit {
            break;
        }
        for (i, one) in filled.iter().enumerate() {
            for (p, page) in PAGES.iter().enumerate() {
                let query = one.query(*page);
                let called = Instant::now();
                let answer = one.store.list(&query)?;
                times[i][p].push(called.elapsed().as_nanos() as u64);
                if round == 0 && (answer.tasks.len() != LIMIT || answer.next.is_none()) {
                    println!(
                        "  !! {} store N={}: {page:?} answered {} tasks (next: {})",
                        one.kind,
                        one.n,
                        answer.tasks.len(),
                        answer.next.is_some()
                    );
                }
            }
        }
    }
    Ok(times)
}

/// The first page over HTTPS (GET /api/v1/tasks?limit=50) against GET /healthz of the same app, one
/// keep-alive connection, alternating, on each filled file store.
async fn over_https(bench: &Bench, dirs: &[(u64, PathBuf)], rounds: usize, report: &mut Report) -> Result<()> {
    let mut medians = Vec::new();
    for (n, dir) in dirs {
        let running = bench.start(dir, None, &["--store=file".to_string()]).await?;
        let base = running.service_b();
        let client = http1_clients(1, &bench.trust)?.remove(0);
        let timed = bench
            .load
            .spawn(async move {
                let (mut list, mut health) = (Vec::new(), Vec::new());
                for round in 0..rounds {
                    health.push(timed_get(&client, &format!("{base}/healthz")).await?.0);
                    let (took, body) = timed_get(&client, &format!("{base}/api/v1/tasks?limit={LIMIT}")).await?;
                    list.push(took);
                    if round == 0 {
                        let page: serde_json::Value = serde_json::from_slice(&body)?;
                        let count = page["tasks"].as_array().map_or(0, Vec::len);
                        if count != LIMIT {
                            return Err(anyhow!("GET /api/v1/tasks answered {count} tasks, not {LIMIT}"));
                        }
                    }
                }
                Ok((median(&list), median(&health)))
            })
            .await;
        bench.stop(running, false).await;
        let (list, health) = timed??;
        let figure = format!(
            "P7 first page over HTTPS (GET /api/v1/tasks, file store, N={})",
            size(*n)
        );
        report.add(Row::ratio(
            figure,
            shown(list),
            format!("{} GET /healthz", shown(health)),
            list as f64 / health.max(1) as f64,
        ));
        medians.push((*n, list));
    }
    if let (Some(small), Some(large)) = (medians.first(), medians.last()) {
        if medians.len() > 1 {
            let figure = format!("P7 first page over HTTPS, {} / {}", size(large.0), size(small.0));
            let row = Row::ratio(
                figure,
                format!("{} at {}", shown(large.1), size(large.0)),
                format!("{} at {}", shown(small.1), size(small.0)),
                large.1 as f64 / small.1.max(1) as f64,
            );
            report.add(row.target(Target::AtMost(TARGET_RATIO)));
        }
    }
    report.note(format!(
        "P7 over HTTPS: medians of {rounds} calls each on one keep-alive HTTP/1.1 connection, the two routes alternating"
    ));
    Ok(())
}

async fn timed_get(client: &reqwest::Client, url: &str) -> Result<(u64, bytes::Bytes)> {
    let sent = Instant::now();
    let body = crate::load::expect_ok(client.get(url))
        .await
        .map_err(|e| anyhow!("{url}: {e}"))?;
    Ok((sent.elapsed().as_nanos() as u64, body))
}

/// The median (nearest rank, the lower of the two middles) of unsorted samples, 0 for none.
fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        len => sorted[(len - 1) / 2],
    }
}

/// Nanoseconds as `12.3 µs` or `4.56 ms`.
fn shown(nanos: u64) -> String {
    if nanos < 1_000_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else {
        format!("{:.2} ms", nanos as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_sample() {
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
        assert_eq!(median(&[]), 0);
        assert_eq!(shown(12_345), "12.3 µs");
        assert_eq!(shown(4_560_000), "4.56 ms");
    }

    #[test]
    fn every_size_has_the_same_rare_status_and_device_share() {
        for n in [10_000, 1_000_000] {
            let failed = (0..n).filter(|&seq| layout(seq, n).1).count() as u64;
            let of_device = (0..n).filter(|&seq| layout(seq, n).0 == layout(n - 1, n).0).count() as u64;
            assert_eq!((failed, of_device), (RARE, PER_DEVICE), "n = {n}");
        }
        let template = sample_message();
        let (older, newer) = (record(1, 10, 1_000, &template), record(2, 10, 1_000, &template));
        assert!(Cursor::of(&older) < Cursor::of(&newer));
        assert_eq!(newer.created_at, 992);
    }
}
