//! The app's Prometheus metrics (prometheus-client): counters and histograms moved as things
//! happen, gauges read from their source at scrape time, all under the `cpe_config_` prefix.
//!
//! Labels hold only bounded values (results, outcomes, states, route templates, methods, status
//! codes): never a device id, task id, key, error text, raw path or peer address, so the number of
//! series stays fixed however many tasks pass. The list, with alerts, is in docs/operations.md.

use crate::config::Config;
use crate::queue::amqp::AmqpLink;
use cpe_actors::observe::{CallOutcome, DeadLetter, Finished, Observer};
use cpe_actors::ports::TaskStore;
use cpe_actors::TaskStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use warp::http::{Method, StatusCode};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds of a Service A call at the default 60 s delay; scaled by `--config-delay / 60 s`,
/// so they sit around the configured delay (a faster or slower device shows the same shape).
const CALL_BUCKETS_AT_60S: [f64; 11] = [1.0, 5.0, 15.0, 30.0, 45.0, 55.0, 60.0, 65.0, 75.0, 90.0, 120.0];

/// HTTP answers: milliseconds for status reads and creates, up to a minute for `?wait=` and for
/// Service A's own configurations.
const HTTP_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The `reason` values of `messages_dead_lettered`.
const DEAD_LETTER_REASONS: [&str; 4] = ["attempts_used_up", "not_a_task", "mismatch", "unknown_task"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    route: &'static str,
    method: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: &'static str,
    route: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Builds each histogram of a family with the same buckets.
#[derive(Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// How a task create ended: a new task, an `Idempotency-Key` seen before, or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    Duplicate,
    Refused,
}

/// One app's metrics; shared by its services, workers and queue links.
pub struct Metrics {
    registry: Registry,
    created: Family<ResultLabel, Counter>,
    finished: Family<ResultLabel, Counter>,
    dead_lettered: Family<ReasonLabel, Counter>,
    calls: Family<OutcomeLabel, Counter>,
    call_seconds: Family<OutcomeLabel, Histogram, Buckets>,
    slots_used: Gauge,
    slots_available: Gauge,
    redeliveries: Counter,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, Buckets>,
    sources: Arc<Sources>,
}

/// What gauges are read from at scrape time, attached once the app has built them.
#[derive(Default)]
struct Sources {
    /// Weak: an open connection may keep the metrics alive after a stop, and must not keep the
    /// store's file locked, so the app can start again on the same data directory.
    store: OnceLock<Weak<dyn TaskStore>>,
    links: OnceLock<Vec<(&'static str, AmqpLink)>>,
}

impl Metrics {
    /// Registers the families this process's roles can move: a worker-only process shows no task
    /// creates, Service B alone shows no calls or worker slots.
    pub fn new(config: &Config) -> Arc<Self> {
        let mut registry = Registry::with_prefix("cpe_config");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("CPE_CONFIG_COMMIT"),
            })
            .set(1);
        registry.register("build_info", "Version and git commit of this build; always 1", build);

        let scale = config.service_a.config_delay.as_secs_f64() / 60.0;
        let call_buckets = Buckets(CALL_BUCKETS_AT_60S.iter().map(|b| b * scale).collect());
        let metrics = Metrics {
            created: Family::default(),
            finished: Family::default(),
            dead_lettered: Family::default(),
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(call_buckets),
            slots_used: Gauge::default(),
            slots_available: Gauge::default(),
            redeliveries: Counter::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(Buckets(HTTP_BUCKETS.into())),
            sources: Arc::default(),
            registry: Registry::default(),
        };
        // Every label value a family can take is created now, so a series exists at 0 from the
        // start: `rate()` and `increase()` see the first event, and an alert on a missing series
        // is not needed.
        if config.runs_service_b() {
            for result in ["accepted", "duplicate", "refused"] {
                drop(metrics.created.get_or_create(&ResultLabel { result }));
            }
            registry.register(
                "tasks_created",
                "Task creates (POST on Service B) by result: accepted, duplicate (Idempotency-Key seen before) or refused (4xx, 503)",
                metrics.created.clone(),
            );
            registry.register_collector(Box::new(StoreGauges(metrics.sources.clone())));
        }
        if config.runs_service_b() || config.runs_workers() {
            let results: &[&'static str] = match (config.runs_service_b(), config.runs_workers()) {
                (true, true) => &["completed", "failed", "cancelled"],
                (false, true) => &["completed", "failed"],
                _ => &["cancelled"],
            };
            for result in results {
                drop(metrics.finished.get_or_create(&ResultLabel { result }));
            }
            registry.register(
                "tasks_finished",
                "Tasks made final by this process, by their final status: completed, failed (whatever the cause), cancelled (by Service B)",
                metrics.finished.clone(),
            );
        }
        if config.runs_workers() {
            for reason in DEAD_LETTER_REASONS {
                drop(metrics.dead_lettered.get_or_create(&ReasonLabel { reason }));
            }
            registry.register(
                "messages_dead_lettered",
                "Queue messages this process sent to the dead-letter queue, by reason: attempts_used_up (the task failed after its last attempt; also counted as failed), not_a_task (the body is not a task), mismatch (it names another device or request than the stored task), unknown_task (the store has never seen its task)",
                metrics.dead_lettered.clone(),
            );
        }
        if config.runs_workers() {
            for outcome in ["ok", "transient", "permanent", "timeout"] {
                drop(metrics.calls.get_or_create(&OutcomeLabel { outcome }));
                drop(metrics.call_seconds.get_or_create(&OutcomeLabel { outcome }));
            }
            registry.register(
                "service_a_calls",
                "Calls to Service A by outcome: ok, transient (retried), permanent (not retried), timeout (given up at --call-timeout)",
                metrics.calls.clone(),
            );
            registry.register(
                "service_a_call_duration_seconds",
                "Duration of calls to Service A by outcome; buckets scaled to --config-delay",
                metrics.call_seconds.clone(),
            );
            registry.register(
                "worker_slots_used",
                "Workers holding a delivery",
                metrics.slots_used.clone(),
            );
            registry.register(
                "worker_slots_available",
                "Workers free to take a delivery",
                metrics.slots_available.clone(),
            );
            registry.register(
                "queue_redeliveries",
                "Deliveries the queue marked as delivered before (after a crash, a requeue or a lost connection)",
                metrics.redeliveries.clone(),
            );
        }
        if config.broker.amqp_url.is_some() {
            registry.register_collector(Box::new(BrokerGauges(metrics.sources.clone())));
        }
        registry.register(
            "http_requests",
            "HTTP requests answered, by service, route template, method and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head), by service, route template and method",
            metrics.request_seconds.clone(),
        );
        Arc::new(Metrics { registry, ..metrics })
    }

    /// The store the task gauges are read from (Service B's).
    pub fn watch_store(&self, store: &Arc<dyn TaskStore>) {
        let _ = self.sources.store.set(Arc::downgrade(store));
    }

    /// The broker links whose state and reconnects are shown, by name (`publish`, `consume`).
    pub fn watch_links(&self, links: Vec<(&'static str, AmqpLink)>) {
        let _ = self.sources.links.set(links);
    }

    pub fn task_created(&self, admission: Admission) {
        let result = match admission {
            Admission::Accepted => "accepted",
            Admission::Duplicate => "duplicate",
            Admission::Refused => "refused",
        };
        self.created.get_or_create(&ResultLabel { result }).inc();
    }

    /// One answered request. `path` is turned into its route template here, so no raw path (and
    /// no id in it) ever becomes a label.
    pub fn request(&self, service: &'static str, method: &Method, path: &str, status: StatusCode, took: Duration) {
        let (route, method) = (crate::http::routes::template(path), method_label(method));
        let labels = RequestLabels {
            service,
            route,
            method,
            code: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&RouteLabels { service, route, method })
            .observe(took.as_secs_f64());
    }

    /// The text a scrape answers, in the Prometheus text format (version 0.0.4). Reads the store:
    /// call it off the async threads.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail, and the collectors log their own read errors.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

impl Observer for Metrics {
    fn call_ended(&self, outcome: CallOutcome, took: Duration) {
        let outcome = match outcome {
            CallOutcome::Ok => "ok",
            CallOutcome::Transient => "transient",
            CallOutcome::Permanent => "permanent",
            CallOutcome::Timeout => "timeout",
        };
        let label = OutcomeLabel { outcome };
        self.calls.get_or_create(&label).inc();
        self.call_seconds.get_or_create(&label).observe(took.as_secs_f64());
    }

    fn task_finished(&self, result: Finished) {
        let result = match result {
            Finished::Completed => "completed",
            Finished::Failed => "failed",
            Finished::Cancelled => "cancelled",
        };
        self.finished.get_or_create(&ResultLabel { result }).inc();
    }

    fn dead_lettered(&self, why: DeadLetter) {
        let reason = match why {
            DeadLetter::AttemptsUsedUp => "attempts_used_up",
            DeadLetter::NotATask => "not_a_task",
            DeadLetter::Mismatch => "mismatch",
            DeadLetter::UnknownTask => "unknown_task",
        };
        self.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
    }

    fn slots(&self, used: usize, total: usize) {
        self.slots_used.set(used as i64);
        self.slots_available.set(total.saturating_sub(used) as i64);
    }

    fn redelivered(&self) {
        self.redeliveries.inc();
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Tasks by state, and the creation time of the oldest queued one, read from the store's
/// tallies on each scrape: the store is the truth, so these never drift from it.
struct StoreGauges(Arc<Sources>);

impl std::fmt::Debug for StoreGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreGauges")
    }
}

impl Collector for StoreGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.0.store.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let counts = match store.counts() {
            Ok(counts) => counts,
            Err(error) => {
                // The other metrics are still worth a scrape; the missing series say what failed.
                tracing::warn!(%error, "metrics: cannot read the task tallies");
                return Ok(());
            }
        };
        let mut family = encoder.encode_descriptor(
            "tasks",
            "Tasks kept in the store, by state (final ones until --retention removes them)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for status in TaskStatus::ALL {
            let labels = [("state", status.name())];
            let value = i64::try_from(counts.of(status)).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        if let Some(millis) = counts.oldest_queued {
            let gauge = ConstGauge::new(millis as f64 / 1000.0);
            gauge.encode(encoder.encode_descriptor(
                "oldest_queued_task_timestamp_seconds",
                "When the oldest task still queued was accepted, as a Unix timestamp; absent when none is queued",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Whether each broker link is connected, and how often it connected again after the first time.
struct BrokerGauges(Arc<Sources>);

impl std::fmt::Debug for BrokerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerGauges")
    }
}

impl Collector for BrokerGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(links) = self.0.links.get() else {
            return Ok(());
        };
        {
            let mut family = encoder.encode_descriptor(
                "broker_connected",
                "1 while the link's RabbitMQ connection is open, else 0",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (name, link) in links {
                let labels = [("link", *name)];
                ConstGauge::new(i64::from(link.is_connected())).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "broker_reconnects",
            "Connections to RabbitMQ opened after the link's first one",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (name, link) in links {
            let labels = [("link", *name)];
            ConstCounter::new(link.connects().saturating_sub(1)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
