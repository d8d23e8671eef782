//! The load generator: closed loops on the `load` runtime (one reqwest client, hence one keep-alive
//! connection, per loop), latencies in microseconds, and the HTTP calls the phases make.

use crate::sys::{CpuMeter, CpuUse};
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

pub use cpe_test_support::EXAMPLE;

/// No single call may take longer than this, so no loop can hang.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// One client per connection: HTTP/1.1 only, and at most one idle connection, so a loop owns exactly
/// one keep-alive connection, as a real client process would.
pub fn http1_clients(n: usize, trust: &reqwest::Certificate) -> anyhow::Result<Vec<reqwest::Client>> {
    (0..n)
        .map(|_| {
            Ok(base(trust, CALL_DEADLINE)
                .http1_only()
                .pool_max_idle_per_host(1)
                .build()?)
        })
        .collect()
}

/// HTTP/2 clients: each multiplexes its calls as streams over one connection.
pub fn http2_clients(
    n: usize,
    trust: &reqwest::Certificate,
    deadline: Duration,
) -> anyhow::Result<Vec<reqwest::Client>> {
    (0..n)
        .map(|_| Ok(base(trust, deadline).http2_prior_knowledge().build()?))
        .collect()
}

fn base(trust: &reqwest::Certificate, deadline: Duration) -> reqwest::ClientBuilder {
    cpe_test_support::trusting(trust)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(deadline)
}

/// When a closed loop stops.
#[derive(Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    /// After `total` calls in all, or at `limit`, whichever comes first.
    Count {
        total: u64,
        limit: Duration,
    },
}

/// What a closed loop did.
pub struct Run<T> {
    pub ok: Vec<T>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Successful calls only, in microseconds.
    pub latencies: Vec<u32>,
    pub elapsed: Duration,
    pub cpu: CpuUse,
    /// A count-bound run that reached its time limit first.
    pub cut_short: bool,
}

impl<T> Run<T> {
    /// One run out of several slices: counts and latencies add up, CPU is weighted by each slice's length.
    pub fn merge(runs: Vec<Run<T>>) -> Run<T> {
        let total = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>().max(1e-9);
        let weigh =
            |f: &dyn Fn(&CpuUse) -> f64| runs.iter().map(|r| f(&r.cpu) * r.elapsed.as_secs_f64()).sum::<f64>() / total;
        let cpu = CpuUse {
            load: weigh(&|c| c.load),
            app: weigh(&|c| c.app),
            lapin: weigh(&|c| c.lapin),
            broker: runs
                .iter()
                .all(|r| r.cpu.broker.is_some())
                .then(|| weigh(&|c| c.broker.unwrap_or(0.0))),
            disk: None,
        };
        let mut merged = Run {
            ok: Vec::new(),
            errors: 0,
            first_error: None,
            latencies: Vec::new(),
            elapsed: Duration::ZERO,
            cpu,
            cut_short: false,
        };
        for run in runs {
            merged.ok.extend(run.ok);
            merged.latencies.extend(run.latencies);
            merged.errors += run.errors;
            merged.first_error = merged.first_error.or(run.first_error);
            merged.elapsed += run.elapsed;
            merged.cut_short |= run.cut_short;
        }
        merged
    }

    pub fn rate(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency percentile in milliseconds (`p` from 0 to 1).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p) as f64 / 1000.0
    }

    /// `1234 /s, p50 1.2 ms, p99 8.0 ms, 0 errors` for the notes.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} ok in {:.1} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            self.ok.len(),
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.errors
        );
        if let Some(error) = &self.first_error {
            text.push_str(&format!(" (first: {error})"));
        }
        text
    }
}

/// The `p` quantile of unsorted samples (nearest rank), 0 for none.
pub fn percentile(samples: &[u32], p: f64) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Loop<T> {
    ok: Vec<T>,
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs one loop per connection on `runtime` until `until`; `call(connection, sequence number)` is one
/// request. Each call is bounded by [`CALL_DEADLINE`], so the whole run is bounded too.
pub async fn closed_loop<C, T, F, Fut>(runtime: &Handle, connections: Vec<C>, until: Until, call: F) -> Run<T>
where
    C: Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(Arc<C>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let meter = CpuMeter::start();
    let started = Instant::now();
    let (total, end) = match until {
        Until::Elapsed(d) => (u64::MAX, started + d),
        Until::Count { total, limit } => (total, started + limit),
    };
    let loops: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let (call, next, connection) = (call.clone(), next.clone(), Arc::new(connection));
            runtime.spawn(async move {
                let mut mine = Loop {
                    ok: Vec::new(),
                    latencies: Vec::new(),
                    errors: 0,
                    first_error: None,
                };
                while Instant::now() < end {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        break;
                    }
                    let sent = Instant::now();
                    let result = tokio::time::timeout(CALL_DEADLINE, call(connection.clone(), seq)).await;
                    let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    match result {
                        Ok(Ok(value)) => {
                            mine.ok.push(value);
                            mine.latencies.push(took);
                        }
                        Ok(Err(error)) => mine.fail(error),
                        Err(_) => mine.fail(format!("no answer within {CALL_DEADLINE:?}")),
                    }
                }
                mine
            })
        })
        .collect();
    let mut run = Run {
        ok: Vec::new(),
        errors: 0,
        first_error: None,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        cpu: CpuUse::default(),
        cut_short: false,
    };
    for handle in loops {
        match handle.await {
            Ok(mine) => {
                run.ok.extend(mine.ok);
                run.latencies.extend(mine.latencies);
                run.errors += mine.errors;
                run.first_error = run.first_error.or(mine.first_error);
            }
            Err(error) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!("a load loop failed: {error}"));
            }
        }
    }
    run.elapsed = started.elapsed();
    run.cpu = meter.stop();
    run.cut_short = total != u64::MAX && next.load(Ordering::Relaxed) < total;
    run
}

impl<T> Loop<T> {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// The same cause chain the workers log for Service A errors.
pub use cpe_config::provisioner::error_chain;

/// Sends a request and returns the body of a 200 answer; anything else is an error with its reason.
pub async fn expect_ok(request: reqwest::RequestBuilder) -> Result<bytes::Bytes, String> {
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| error_chain(&e))?;
    if status != reqwest::StatusCode::OK {
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("HTTP {}: {shown}", status.as_u16()));
    }
    Ok(body)
}

/// POSTs the example request for `device` to Service B at `base`; returns the task id.
pub async fn create_task(client: &reqwest::Client, base: &str, device: &str) -> Result<String, String> {
    let body = expect_ok(
        client
            .post(format!("{base}/api/v1/equipment/cpe/{device}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(EXAMPLE),
    )
    .await?;
    let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))?;
    answer["taskId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("answer has no taskId: {answer}"))
}

/// The `code` in the body of a task's status: 204 while queued or running, 200 or 500 when final.
pub async fn task_code(client: &reqwest::Client, base: &str, device: &str, task: &str) -> Result<i64, String> {
    let body = expect_ok(client.get(format!("{base}/api/v1/equipment/cpe/{device}/task/{task}"))).await?;
    let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))?;
    answer["code"]
        .as_i64()
        .ok_or_else(|| format!("answer has no code: {answer}"))
}

/// A distinct, valid equipment id per sequence number, so no two tasks wait on the same device.
pub fn device(seq: u64) -> String {
    format!("bench{seq:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&samples, 0.5), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
        assert!(cpe_actors::EquipmentId::parse(&device(7)).is_ok());
    }
}
