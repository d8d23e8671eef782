//! P3, Service A concurrency: N configuration calls in flight at once, each taking the delay d; the
//! figure is the makespan over d, with the peak memory those calls cost.

use crate::harness::Bench;
use crate::load::{expect_ok, http2_clients, EXAMPLE};
use crate::report::{Report, Row, Target};
use crate::sys::{self, CpuMeter};
use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// HTTP/2 connections the calls are spread over. hyper serves at most 200 streams per connection, so
/// 64 connections carry up to 12,800 calls at once while using few file descriptors (10,000 HTTP/1
/// connections would need 20,000 in this one process, both ends, which is the hard limit here).
const CONNECTIONS: usize = 64;
const STREAMS_PER_CONNECTION: u64 = 200;

pub async fn run(bench: &Bench, report: &mut Report) {
    let s = &bench.settings;
    let figure = format!("P3 Service A makespan / d (N={}, d={:?})", s.n, s.delay);
    if let Err(error) = measure(bench, &figure, report).await {
        report.add(Row::skipped(figure, format!("{error:#}")));
    }
}

async fn measure(bench: &Bench, figure: &str, report: &mut Report) -> Result<()> {
    let (n, delay) = (bench.settings.n, bench.settings.delay);
    if n > CONNECTIONS as u64 * STREAMS_PER_CONNECTION {
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
    let result = async {
        let deadline = delay + Duration::from_secs(60);
        let clients = http2_clients(CONNECTIONS, &bench.trust, deadline)?;
        // Open every connection first, so the makespan counts configurations, not handshakes.
        for client in &clients {
            expect_ok(client.get(format!("{base}/healthz")))
                .await
                .map_err(|e| anyhow!("warm-up: {e}"))?;
        }
        sys::trim_heap();
        let peak_reset = sys::reset_peak();
        let before = sys::rss();
        let meter = CpuMeter::start();
        let started = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let client = clients[(i % CONNECTIONS as u64) as usize].clone();
                let url = format!("{base}/api/v1/equipment/cpe/bench{i:09}");
                bench
                    .load
                    .spawn(async move { expect_ok(client.post(url).body(EXAMPLE)).await })
            })
            .collect();
        let (mut ok, mut first_error) = (0u64, None);
        for call in calls {
            match tokio::time::timeout(deadline, call).await {
                Ok(Ok(Ok(_))) => ok += 1,
                Ok(Ok(Err(e))) => drop(first_error.get_or_insert(e)),
                Ok(Err(e)) => drop(first_error.get_or_insert(e.to_string())),
                Err(_) => drop(first_error.get_or_insert(format!("no answer within {deadline:?}"))),
            }
        }
        let makespan = started.elapsed();
        let cpu = meter.stop();
        let peak = if peak_reset { sys::peak_rss() } else { sys::rss() };
        Ok::<_, anyhow::Error>((ok, first_error, makespan, cpu, before, peak, peak_reset))
    }
    .await;
    bench.stop(running, true).await;
    let (ok, first_error, makespan, cpu, before, peak, peak_reset) = result?;
    if ok != n {
        return Err(anyhow!("{ok} of {n} calls succeeded; first error: {first_error:?}"));
    }
    let ratio = makespan.as_secs_f64() / delay.as_secs_f64();
    report.add(
        Row::ratio(
            figure,
            format!("{:.3} s makespan", makespan.as_secs_f64()),
            format!("d = {:.3} s", delay.as_secs_f64()),
            ratio,
        )
        .target(Target::AtMost(1.25)),
    );
    let growth = peak.saturating_sub(before);
    report.add(Row::plain(
        format!("P3 peak RSS with {n} calls in flight"),
        format!(
            "{:.0} MiB peak (+{:.0} MiB, {:.1} KiB per call, client and server)",
            sys::mib(peak),
            sys::mib(growth),
            growth as f64 / 1024.0 / n as f64
        ),
    ));
    report.note(format!(
        "P3: {n} calls over {CONNECTIONS} HTTP/2 connections; RSS before {:.0} MiB; peak {} ; CPU {cpu}",
        sys::mib(before),
        if peak_reset {
            "from VmHWM after a reset (clear_refs)"
        } else {
            "is the RSS at the end (VmHWM could not be reset)"
        }
    ));
    Ok(())
}
