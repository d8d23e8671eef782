//! P3, Service A concurrency: N configuration calls in flight at once, each taking the delay d; the
//! figure is the makespan over d, with the peak memory those calls cost.

use crate::harness::Bench;
use crate::load::{expect_ok, http2_clients, percentile, EXAMPLE};
use crate::report::{Report, Row, Target};
use crate::sys::{self, CpuMeter, CpuUse};
use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// HTTP/2 connections the calls are spread over. hyper serves at most 200 streams per connection, so
/// 64 connections carry up to 12,800 calls at once while using few file descriptors (10,000 HTTP/1
/// connections would need 20,000 in this one process, both ends, which is the hard limit here).
const CONNECTIONS: usize = 64;
const STREAMS_PER_CONNECTION: u64 = 200;
/// Calls of the diagnostic over a single connection: enough to show the per-connection stream limit.
const SINGLE_CONNECTION_CALLS: u64 = 1_000;

pub async fn run(bench: &Bench, report: &mut Report) {
    let s = &bench.settings;
    let figure = format!("P3 Service A makespan / d (N={}, d={:?})", s.n, s.delay);
    match measure(bench, CONNECTIONS, s.n).await {
        Ok(calls) => calls.report_main(&figure, s.delay, report),
        Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
    }
    // The workers call Service A through one reqwest client, which multiplexes over one HTTP/2 connection.
    let n = s.n.min(SINGLE_CONNECTION_CALLS);
    let figure = format!("P3 diagnostic: N={n} over one HTTP/2 connection");
    match measure(bench, 1, n).await {
        Ok(calls) => calls.report_single(&figure, s.delay, report),
        Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
    }
}

/// What one burst of calls did.
struct Calls {
    n: u64,
    makespan: Duration,
    /// When each call completed, in microseconds after the first was sent.
    done_at: Vec<u32>,
    cpu: CpuUse,
    rss_before: u64,
    peak: u64,
    peak_reset: bool,
}

impl Calls {
    fn ratio(&self, delay: Duration) -> f64 {
        self.makespan.as_secs_f64() / delay.as_secs_f64()
    }

    fn spread(&self) -> String {
        let at = |p: f64| f64::from(percentile(&self.done_at, p)) / 1e6;
        format!(
            "calls done after {:.3} s (first), {:.3} s (median), {:.3} s (last)",
            at(0.0),
            at(0.5),
            at(1.0)
        )
    }

    fn report_main(&self, figure: &str, delay: Duration, report: &mut Report) {
        let row = Row::ratio(
            figure,
            format!("{:.3} s makespan", self.makespan.as_secs_f64()),
            format!("d = {:.3} s", delay.as_secs_f64()),
            self.ratio(delay),
        );
        report.add(row.target(Target::AtMost(1.25)));
        let growth = self.peak.saturating_sub(self.rss_before);
        report.add(Row::plain(
            format!("P3 peak RSS with {} calls in flight", self.n),
            format!(
                "{:.0} MiB peak (+{:.0} MiB, {:.1} KiB per call, client and server)",
                sys::mib(self.peak),
                sys::mib(growth),
                growth as f64 / 1024.0 / self.n as f64
            ),
        ));
        let peak = if self.peak_reset {
            "peak is VmHWM after a reset (clear_refs)"
        } else {
            "peak is the RSS at the end (VmHWM could not be reset)"
        };
        report.note(format!(
            "P3: {} calls over {CONNECTIONS} HTTP/2 connections; {}; RSS before {:.0} MiB, {peak}; CPU {}",
            self.n,
            self.spread(),
            sys::mib(self.rss_before),
            self.cpu
        ));
    }

    fn report_single(&self, figure: &str, delay: Duration, report: &mut Report) {
        let ratio = self.ratio(delay);
        report.add(Row::ratio(
            figure,
            format!("{:.3} s makespan (x{ratio:.1} d)", self.makespan.as_secs_f64()),
            format!("d = {:.3} s", delay.as_secs_f64()),
            ratio,
        ));
        report.note(format!("{figure}: {}; CPU {}", self.spread(), self.cpu));
    }
}

/// Starts Service A alone with delay d, opens `connections` HTTP/2 connections, then sends N calls at
/// once spread over them and waits for all.
async fn measure(bench: &Bench, connections: usize, n: u64) -> Result<Calls> {
    let delay = bench.settings.delay;
    if connections == CONNECTIONS && n > CONNECTIONS as u64 * STREAMS_PER_CONNECTION {
        return Err(anyhow!(
            "N={n} exceeds {CONNECTIONS} connections x {STREAMS_PER_CONNECTION} streams"
        ));
    }
    let args = vec![
        "--role=service-a".to_string(),
        format!("--config-delay={}ms", delay.as_millis()),
    ];
    let running = bench.start(&bench.fresh_dir("p3"), None, &args).await?;
    let base = running.service_a();
    let result = burst(bench, &base, connections, n).await;
    bench.stop(running, true).await;
    result
}

async fn burst(bench: &Bench, base: &str, connections: usize, n: u64) -> Result<Calls> {
    let deadline = bench.settings.delay + Duration::from_secs(60);
    let clients = http2_clients(connections, &bench.trust, deadline)?;
    // Open every connection first, so the makespan counts configurations, not handshakes.
    for client in &clients {
        expect_ok(client.get(format!("{base}/healthz")))
            .await
            .map_err(|e| anyhow!("warm-up: {e}"))?;
    }
    sys::trim_heap();
    let peak_reset = sys::reset_peak();
    let rss_before = sys::rss();
    let meter = CpuMeter::start();
    let started = Instant::now();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = clients[(i % connections as u64) as usize].clone();
            let url = format!("{base}/api/v1/equipment/cpe/bench{i:09}");
            bench.load.spawn(async move {
                expect_ok(client.post(url).body(EXAMPLE)).await?;
                Ok::<_, String>(started.elapsed())
            })
        })
        .collect();
    let (mut done_at, mut first_error) = (Vec::new(), None);
    for call in calls {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(Ok(at))) => done_at.push(u32::try_from(at.as_micros()).unwrap_or(u32::MAX)),
            Ok(Ok(Err(e))) => drop(first_error.get_or_insert(e)),
            Ok(Err(e)) => drop(first_error.get_or_insert(e.to_string())),
            Err(_) => drop(first_error.get_or_insert(format!("no answer within {deadline:?}"))),
        }
    }
    let makespan = started.elapsed();
    let cpu = meter.stop();
    let peak = if peak_reset { sys::peak_rss() } else { sys::rss() };
    if done_at.len() as u64 != n {
        return Err(anyhow!(
            "{} of {n} calls succeeded; first error: {first_error:?}",
            done_at.len()
        ));
    }
    Ok(Calls {
        n,
        makespan,
        done_at,
        cpu,
        rss_before,
        peak,
        peak_reset,
    })
}
