//! `cpe-config campaign`: one configuration task per row of a file, sent with bounded concurrency
//! (a device's rows one after another, in file order), watched to the end with a progress bar,
//! summed up in a table and written to a results file in input order. Each row carries an
//! `Idempotency-Key` made from the file's content (not its name) and the row's line, so running the
//! same command again after Ctrl-C, a crash or a lost network creates nothing twice and picks up
//! where it stopped, and another file with other content never meets those keys.

use super::args::CampaignArgs;
use super::rows::{parse, Row};
use super::{message, Client, Outcome};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Long-polls in flight at once: one HTTP/2 connection carries up to 1,000 streams.
const WATCHES: usize = 900;

/// What became of one row.
#[derive(Clone)]
struct Done {
    line: u64,
    serial: String,
    task: Option<String>,
    status: String,
    error: String,
    /// The service never answered for this row (not refused by it).
    unanswered: bool,
}

pub async fn run(client: &Client, args: &CampaignArgs) -> Result<Outcome> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let (rows, bad) = parse(&bytes).with_context(|| format!("{}", args.file.display()))?;
    for row in &bad {
        eprintln!("line {}: skipped, not sent: {}", row.line, row.why);
    }
    let content = content_digest(&bytes);
    let started = Instant::now();
    let progress = Progress::new(rows.len() as u64, args.wait);
    // Each row's latest state by line: accepted, then final; what an interruption leaves is written.
    let latest: Mutex<BTreeMap<u64, Done>> = Mutex::default();
    let note = |done: &Done| {
        let mut latest = latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.insert(done.line, done.clone());
    };
    let unreachable = AtomicBool::new(false);
    let all_rows: Vec<(u64, String)> = rows.iter().map(|r| (r.line, r.serial.clone())).collect();
    // Two stages: --concurrency devices send their rows, and many more long-polls (cheap,
    // multiplexed on HTTP/2) watch them, so watching never holds back sending.
    let work = by_device(rows)
        .map(|rows| {
            let (content, progress, unreachable, note) = (&content, &progress, &unreachable, &note);
            async move {
                let mut sent = Vec::with_capacity(rows.len());
                for row in rows {
                    let done = submit(client, content, &row, unreachable).await;
                    progress.accepted(done.task.is_some());
                    note(&done);
                    sent.push(done);
                }
                futures_util::stream::iter(sent)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .flatten()
        .map(|done| {
            let progress = &progress;
            async move {
                if done.task.is_none() {
                    return done;
                }
                let done = look(client, done, args.wait).await;
                if args.wait {
                    progress.finished(&done.status);
                }
                done
            }
        })
        .buffer_unordered(WATCHES)
        .for_each(|done| {
            note(&done);
            async {}
        });
    let interrupted = tokio::select! {
        () = work => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    progress.finish();
    let mut latest = latest.into_inner().unwrap_or_else(|e| e.into_inner());
    if interrupted {
        not_sent(&mut latest, &all_rows);
    }
    let done: Vec<Done> = latest.into_values().collect();
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| args.file.with_extension("results.csv"));
    write_results(&results, &done)?;
    summary(&done, bad.len(), started.elapsed(), &results);
    if interrupted {
        eprintln!("interrupted: the same command goes on where this one stopped (nothing is sent twice)");
    }
    let unanswered = done.iter().any(|d| d.unanswered);
    let failed = interrupted
        || done
            .iter()
            .any(|d| d.task.is_none() || ["failed", "cancelled", "gone"].contains(&d.status.as_str()));
    Ok(match (unanswered, failed, bad.is_empty()) {
        (true, _, _) => Outcome::Refused,
        (false, true, _) => Outcome::TaskFailed,
        (false, false, false) => Outcome::Refused,
        (false, false, true) => Outcome::Done,
    })
}

/// The rows grouped by device, each group in file order, the groups in order of first appearance.
fn by_device(rows: Vec<Row>) -> futures_util::stream::Iter<std::vec::IntoIter<Vec<Row>>> {
    let mut order: Vec<Vec<Row>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in rows {
        match index.get(&row.serial) {
            Some(&at) => order[at].push(row),
            None => {
                index.insert(row.serial.clone(), order.len());
                order.push(vec![row]);
            }
        }
    }
    futures_util::stream::iter(order)
}

/// The rows an interruption left unsent, as such in the results.
fn not_sent(latest: &mut BTreeMap<u64, Done>, rows: &[(u64, String)]) {
    for (line, serial) in rows {
        latest.entry(*line).or_insert_with(|| Done {
            line: *line,
            serial: serial.clone(),
            task: None,
            status: "not sent".into(),
            error: "interrupted".into(),
            unanswered: false,
        });
    }
}

/// Sends one row; a 503 or a lost answer is tried again (the key makes that safe). Once a row got
/// no answer at all after every try, the service is taken as unreachable and no other row waits
/// for it.
async fn submit(client: &Client, content: &str, row: &Row, unreachable: &AtomicBool) -> Done {
    let key = format!("campaign-{content}-{}", row.line);
    let path = format!("/api/v1/equipment/cpe/{}", row.serial);
    let (mut last, mut unanswered) = (String::new(), false);
    for attempt in 0..5u32 {
        if unreachable.load(Ordering::Relaxed) {
            (last, unanswered) = ("not sent: the service did not answer".into(), true);
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match client.call_keyed(Method::POST, &path, &row.body, &key).await {
            Ok((200, answer)) => {
                return Done {
                    line: row.line,
                    serial: row.serial.clone(),
                    task: answer["taskId"].as_str().map(str::to_owned),
                    status: "queued".into(),
                    error: String::new(),
                    unanswered: false,
                }
            }
            Ok((503, answer)) => (last, unanswered) = (message(&answer), false),
            Ok((_, answer)) => {
                (last, unanswered) = (message(&answer), false);
                break;
            }
            Err(error) => (last, unanswered) = (format!("{error:#}"), true),
        }
    }
    if unanswered {
        unreachable.store(true, Ordering::Relaxed);
    }
    Done {
        line: row.line,
        serial: row.serial.clone(),
        task: None,
        status: "not accepted".into(),
        error: last,
        unanswered,
    }
}

/// The task's status: with `wait`, long-polled until final; without, as it is now (a task
/// accepted before, by an earlier run, may be final already).
async fn look(client: &Client, mut done: Done, wait: bool) -> Done {
    let task = done.task.clone().unwrap_or_default();
    let query = if wait { "?wait=60s" } else { "" };
    let path = format!("/api/v1/equipment/cpe/{}/task/{task}{query}", done.serial);
    loop {
        match client.call(Method::GET, &path, None).await {
            Ok((200, answer)) if answer["code"] != 204 || !wait => {
                done.status = answer["status"].as_str().unwrap_or("unknown").to_owned();
                done.error = answer["lastError"].as_str().unwrap_or_default().to_owned();
                return done;
            }
            Ok((200, _)) => {}
            // Swept after its retention, or the service's store was replaced: nothing to wait for.
            Ok((404, _)) => {
                done.status = "gone".into();
                done.error = "the service no longer knows this task".into();
                return done;
            }
            // The service may be restarting: ask again shortly.
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The file's content, for the rows' keys: the same content gives the same keys, whatever the
/// file's name or path.
fn content_digest(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Written beside the target, then renamed over it: a reader never sees half a file, and an
/// existing symlink at the target is replaced, never written through.
fn write_results(path: &Path, done: &[Done]) -> Result<()> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut writer = csv::Writer::from_writer(file);
    writer.write_record(["line", "serial", "taskId", "status", "lastError"])?;
    for row in done {
        let line = row.line.to_string();
        writer.write_record([
            &line,
            &row.serial,
            row.task.as_deref().unwrap_or(""),
            &row.status,
            &row.error,
        ])?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", partial.display(), e.error()))?;
    file.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

fn summary(done: &[Done], bad: usize, elapsed: Duration, results: &std::path::Path) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in done {
        *counts.entry(row.status.as_str()).or_default() += 1;
    }
    if bad > 0 {
        counts.insert("bad row (not sent)", bad);
    }
    crate::say!("{:<20} {:>8}", "STATUS", "ROWS");
    for (status, count) in &counts {
        crate::say!("{status:<20} {count:>8}");
    }
    let rate = done.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    crate::say!(
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
