//! `cpe-config campaign`: one configuration task per row of a file, sent with bounded concurrency,
//! watched to the end with a progress bar, summed up in a table and written to a results file.
//! Each row carries an `Idempotency-Key` made from the campaign file's name and the row, so running
//! the same command again after Ctrl-C, a crash or a lost network creates nothing twice and picks
//! up where it stopped.

use super::args::CampaignArgs;
use super::rows::{read, Row};
use super::{message, Client, Outcome};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Long-polls in flight at once: one HTTP/2 connection carries up to 1,000 streams.
const WATCHES: usize = 900;

/// What became of one row.
struct Done {
    serial: String,
    task: Option<String>,
    status: String,
    error: String,
}

pub async fn run(client: &Client, args: &CampaignArgs) -> Result<Outcome> {
    let (rows, bad) = read(&args.file)?;
    for row in &bad {
        eprintln!("line {}: skipped, not sent: {}", row.line, row.why);
    }
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let progress = Progress::new(rows.len() as u64, args.wait);
    // Two stages: --concurrency requests create tasks, and many more long-polls (cheap, multiplexed
    // on HTTP/2) watch them, so watching never holds back sending.
    let done: Vec<Done> = futures_util::stream::iter(rows)
        .map(|row| {
            let (name, progress) = (&name, &progress);
            async move {
                let done = submit(client, name, &row).await;
                progress.accepted(done.task.is_some());
                done
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .map(|done| {
            let progress = &progress;
            async move {
                if !args.wait || done.task.is_none() {
                    return done;
                }
                let done = watch(client, done).await;
                progress.finished(&done.status);
                done
            }
        })
        .buffer_unordered(WATCHES)
        .collect()
        .await;
    progress.finish();
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| args.file.with_extension("results.csv"));
    write_results(&results, &done)?;
    summary(&done, bad.len(), started.elapsed(), &results);
    let failed = done
        .iter()
        .any(|d| d.task.is_none() || ["failed", "cancelled"].contains(&d.status.as_str()));
    Ok(match (failed, bad.is_empty()) {
        (true, _) => Outcome::TaskFailed,
        (false, false) => Outcome::Refused,
        (false, true) => Outcome::Done,
    })
}

/// Sends one row; a 503 or a lost answer is tried again (the key makes that safe).
async fn submit(client: &Client, campaign: &str, row: &Row) -> Done {
    let key = idempotency_key(campaign, row);
    let path = format!("/api/v1/equipment/cpe/{}", row.serial);
    let mut last = String::new();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match client.call_keyed(Method::POST, &path, &row.body, &key).await {
            Ok((200, answer)) => {
                return Done {
                    serial: row.serial.clone(),
                    task: answer["taskId"].as_str().map(str::to_owned),
                    status: "queued".into(),
                    error: String::new(),
                }
            }
            Ok((503, answer)) => last = message(&answer),
            Ok((_, answer)) => {
                last = message(&answer);
                break;
            }
            Err(error) => last = format!("{error:#}"),
        }
    }
    Done {
        serial: row.serial.clone(),
        task: None,
        status: "not accepted".into(),
        error: last,
    }
}

/// Long-polls a task until it is final.
async fn watch(client: &Client, mut done: Done) -> Done {
    let task = done.task.clone().unwrap_or_default();
    let path = format!("/api/v1/equipment/cpe/{}/task/{task}?wait=60s", done.serial);
    loop {
        match client.call(Method::GET, &path, None).await {
            Ok((200, answer)) if answer["code"] != 204 => {
                done.status = answer["status"].as_str().unwrap_or("unknown").to_owned();
                done.error = answer["lastError"].as_str().unwrap_or_default().to_owned();
                return done;
            }
            Ok((200, _)) => {}
            // The service may be restarting: ask again shortly.
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The same row of the same campaign file always gets the same key (FNV-1a, stable across runs).
fn idempotency_key(campaign: &str, row: &Row) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in campaign
        .bytes()
        .chain([0])
        .chain(row.serial.bytes())
        .chain([0])
        .chain(row.body.to_string().bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("campaign-{hash:016x}-{}", row.serial)
}

fn write_results(path: &std::path::Path, done: &[Done]) -> Result<()> {
    let mut writer = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    writer.write_record(["serial", "taskId", "status", "lastError"])?;
    for row in done {
        writer.write_record([&row.serial, row.task.as_deref().unwrap_or(""), &row.status, &row.error])?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

fn summary(done: &[Done], bad: usize, elapsed: Duration, results: &std::path::Path) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in done {
        *counts.entry(row.status.as_str()).or_default() += 1;
    }
    if bad > 0 {
        counts.insert("bad row (not sent)", bad);
    }
    println!("{:<20} {:>8}", "STATUS", "ROWS");
    for (status, count) in &counts {
        println!("{status:<20} {count:>8}");
    }
    let rate = done.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} rows in {:.1} s ({rate:.0} rows/s); results in {}",
        done.len(),
        elapsed.as_secs_f64(),
        results.display()
    );
}

/// The progress bar on a terminal; nothing otherwise (scripts read the summary and the results).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    counts: std::sync::Mutex<Counts>,
    /// With --wait a row counts once final; without, once accepted.
    wait: bool,
}

#[derive(Default)]
struct Counts {
    accepted: u64,
    refused: u64,
    completed: u64,
    failed: u64,
}

impl Progress {
    fn new(rows: u64, wait: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(rows);
            let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} {per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            counts: Default::default(),
            wait,
        }
    }

    fn accepted(&self, ok: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            counts.accepted += 1;
        } else {
            counts.refused += 1;
        }
        self.show(&counts, !ok || !self.wait);
    }

    fn finished(&self, status: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if status == "completed" {
            counts.completed += 1;
        } else {
            counts.failed += 1;
        }
        self.show(&counts, true);
    }

    fn show(&self, counts: &Counts, step: bool) {
        if let Some(bar) = &self.bar {
            let running = counts.accepted - counts.completed - counts.failed;
            bar.set_message(format!(
                "accepted {} running {running} completed {} failed {} refused {}",
                counts.accepted, counts.completed, counts.failed, counts.refused
            ));
            if step {
                bar.inc(1);
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

impl Client {
    /// A POST with an `Idempotency-Key`.
    pub async fn call_keyed(&self, method: Method, path: &str, body: &Value, key: &str) -> Result<(u16, Value)> {
        self.send(self.request(method, path).header("Idempotency-Key", key).json(body))
            .await
    }
}
