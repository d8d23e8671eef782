//! The workers part: the pool that calls Service A, the consumer that feeds it from the task queue,
//! and, when instances share PostgreSQL, the per-device leases between them.

use super::part::{Part, Stop};
use super::Common;
use crate::config::{StoreKind, WorkerOptions};
use crate::provisioner::ServiceAClient;
use crate::queue::Transport;
use crate::store::postgres::leases::PgLeases;
use crate::tls;
use anyhow::{anyhow, Context, Result};
use cpe_actors::consumer;
use cpe_actors::pool::{PoolHandle, WorkerDeps};
use cpe_actors::ports::{DeviceLeases, StatusSink};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::retry::RetryPolicy;
use cpe_actors::slot::Slot;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Where the workers stand: what they need from outside their own options.
pub(super) struct Surroundings<'a> {
    /// Service A's default deadline depends on its delay, so the caller works it out.
    pub call_timeout: Duration,
    /// Workers trust the certificate there when calling Service A.
    pub certs_dir: &'a Path,
    /// Service A in the same process, called there unless --service-a-url says otherwise.
    pub service_a_addr: Option<SocketAddr>,
    /// The registry in the same process; without it, outcomes go on the results queue.
    pub registry: Option<&'a RegistryHandle>,
    pub store: StoreKind,
    pub transport: &'a Transport,
}

pub(super) fn part(options: &WorkerOptions, around: Surroundings<'_>, common: &Common) -> Result<Part> {
    let sink: Arc<dyn StatusSink> = match around.registry {
        Some(registry) => Arc::new(registry.clone()),
        None => around
            .transport
            .results_sink()
            .ok_or_else(|| anyhow!("workers in their own process need --amqp-url"))?,
    };
    let trust = tls::client_trust(around.certs_dir)?;
    let service_a_url = options.service_a_url(around.service_a_addr);
    let provisioner = ServiceAClient::new(&service_a_url, trust, options.workers as usize)?;
    let metrics = &common.metrics;
    let deps = Arc::new(WorkerDeps {
        provisioner: Arc::new(provisioner),
        sink,
        retry: RetryPolicy {
            max_attempts: options.max_attempts,
            base: options.retry_base,
            ..RetryPolicy::default()
        },
        call_timeout: around.call_timeout,
        observer: metrics.clone(),
        leases: device_leases(&around.store)?,
        adopt_unknown: options.adopt_unknown_tasks,
    });
    let mut part = Part::default();
    let pool = Slot::default();
    let child = part.child(cpe_actors::pool::spec(options.workers as usize, deps, pool.clone()));
    // The pool is stopped after the consumer: see `Stop`'s order in `App::shutdown`.
    part.stops.push(Stop::Pool {
        pool: pool.clone(),
        child,
    });
    let connected = Arc::new(AtomicBool::new(false));
    part.queue_flags.push(connected.clone());
    let consumer = part.child(consumer::spec(
        "consumer",
        around.transport.tasks.clone(),
        Arc::new(PoolHandle::new(pool, metrics.clone())),
        connected,
    ));
    part.stops.push(Stop::Consumer(consumer));
    let (workers, queue) = (options.workers, around.transport.tasks.describe());
    part.announce(
        move || tracing::info!(workers, %queue, service_a = %crate::redact::redact_url(&service_a_url), "workers consuming"),
    );
    Ok(part)
}

/// Per-device leases when instances share a PostgreSQL store; none otherwise (the pool alone keeps
/// one task per device at a time in one process).
fn device_leases(store: &StoreKind) -> Result<Option<Arc<dyn DeviceLeases>>> {
    let StoreKind::Postgres(url) = store else {
        return Ok(None);
    };
    let holder = format!("pid {} ({})", std::process::id(), uuid::Uuid::new_v4());
    let leases = PgLeases::open(url, holder).context("--store (PostgreSQL device leases)")?;
    Ok(Some(Arc::new(leases)))
}
