//! Builds the app from its configuration: each part of the process's role (store, Service A,
//! workers, Service B) is planned by its own module, and `App::build` assembles them under one
//! supervisor. Tests build it on port 0; `main` runs it until a signal.
//!
//! Parts: `store` (registry, sweeper, outbox relay), `service_a`, `workers` (pool, consumer, device
//! leases), `service_b` (with the results consumer of split roles); `part` (what a part hands back)
//! and `edge` (what both HTTPS servers share).

mod edge;
mod part;
mod service_a;
mod service_b;
mod store;
mod workers;

use crate::config::{Config, Role};
use crate::duration::format_duration;
use crate::http::connections::Connections;
use crate::metrics::Metrics;
use crate::queue::Transport;
use anyhow::{anyhow, Context, Result};
use cpe_actors::pool::PoolMsg;
use cpe_actors::supervisor::{child_cell, ChildId, Supervisor, SupervisorArgs, SupervisorMsg};
use cpe_actors::task_guard::AbortOnDrop;
use edge::Edge;
use part::{Part, Stop};
use ractor::{Actor, ActorCell, ActorRef};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// RabbitMQ's default delivery-acknowledgement timeout (`consumer_timeout`).
const BROKER_ACK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A running cpe-config: its addresses, and the handles needed to stop it cleanly.
pub struct App {
    pub service_a_addr: Option<SocketAddr>,
    pub service_b_addr: Option<SocketAddr>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: JoinHandle<()>,
    gave_up: Arc<Mutex<Option<String>>>,
    accepting: Arc<AtomicBool>,
    stops: Vec<Stop>,
    grace: Duration,
    transport: Transport,
    connections: Connections,
    /// With the PostgreSQL store: its outbox relay and reconciler.
    _outbox: Vec<AbortOnDrop>,
}

/// What every part may use, made once by `App::build`.
struct Common {
    /// False until the app accepts work, and again once a stop began: both services' readiness.
    accepting: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    edge: Edge,
}

impl App {
    pub async fn build(config: Config) -> Result<App> {
        let edge = Edge::open(&config.certs_dir, &config.http)?;
        let transport = Transport::open(&config.broker, config.worker.workers).await?;
        let metrics = Metrics::new(&config);
        metrics.watch_links(transport.broker_links());
        if config.broker.amqp_url.is_some() && config.lease() > BROKER_ACK_TIMEOUT {
            tracing::warn!(
                lease = %format_duration(config.lease()),
                "a task may hold its delivery longer than RabbitMQ's default consumer_timeout (30m): \
                 raise consumer_timeout on the broker, or lower --max-attempts or --call-timeout"
            );
        }
        let common = Common {
            accepting: Arc::new(AtomicBool::new(false)),
            metrics,
            edge,
        };

        // The parts in the order their children start (docs/architecture.md, "Supervision tree").
        let mut parts = Vec::new();
        let registry = if config.runs_service_b() {
            let (part, registry) = store::part(
                &config.store,
                config.lease(),
                config.broker.amqp_url.is_none(),
                &common.metrics,
            )?;
            parts.push(part);
            Some(registry)
        } else {
            None
        };
        let service_a_addr = if config.runs_service_a() {
            let (part, addr) = service_a::part(&config.service_a, &common)?;
            parts.push(part);
            Some(addr)
        } else {
            None
        };
        if config.runs_workers() {
            let around = workers::Surroundings {
                call_timeout: config.call_timeout(),
                certs_dir: &config.certs_dir,
                service_a_addr,
                registry: registry.as_ref().map(|registry| &registry.handle),
                store: config.store.kind(),
                transport: &transport,
            };
            parts.push(workers::part(&config.worker, around, &common)?);
        }
        let service_b_addr = match &registry {
            Some(registry) => {
                if config.role == Role::ServiceB {
                    parts.push(service_b::results_consumer(&registry.handle, &transport)?);
                }
                let queues = parts.iter().flat_map(|part| part.queue_flags.clone()).collect();
                let (part, addr) = service_b::part(
                    &config.http,
                    &config.certs_dir,
                    &registry.handle,
                    &transport,
                    queues,
                    &common,
                )?;
                parts.push(part);
                Some(addr)
            }
            None => None,
        };
        let Part {
            children,
            announce,
            stops,
            ..
        } = Part::assemble(parts);

        let gave_up = Arc::new(Mutex::new(None));
        let args = SupervisorArgs {
            children,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            gave_up: gave_up.clone(),
        };
        let (supervisor, supervisor_done) = Actor::spawn(None, Supervisor, args).await.map_err(|e| anyhow!("{e}"))?;
        if let Some(registry) = &registry {
            transport
                .resume(&registry.handle)
                .await
                .context("cannot requeue unfinished tasks")?;
        }
        let outbox = registry.map_or_else(Vec::new, |registry| {
            registry.outbox(
                transport.publisher.clone(),
                config.reconcile_after(),
                &config.broker.queue,
            )
        });
        common.accepting.store(true, Ordering::Release);
        announce.into_iter().for_each(|line| line());
        Ok(App {
            service_a_addr,
            service_b_addr,
            supervisor,
            supervisor_done,
            gave_up,
            accepting: common.accepting,
            stops,
            grace: config.shutdown_grace,
            transport,
            connections: common.edge.connections(),
            _outbox: outbox,
        })
    }

    /// Runs until `shutdown` completes (then stops cleanly) or the supervisor gives up (an error).
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            _ = shutdown => self.shutdown().await,
            _ = &mut self.supervisor_done => {
                let reason = self.gave_up.lock().unwrap_or_else(|e| e.into_inner()).clone();
                Err(anyhow!(reason.unwrap_or_else(|| "the supervisor stopped unexpectedly".into())))
            }
        }
    }

    /// Clean stop: refuse new tasks, stop consuming, let running configurations
    /// finish within the grace period, requeue the rest, then stop accepting connections and let
    /// the requests in flight (Service A's configurations included) finish within what is left
    /// of the grace period, and stop every actor.
    pub async fn shutdown(self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.grace;
        self.accepting.store(false, Ordering::Release);
        // Every subscription first, so no task arrives at a pool that is draining.
        for stop in &self.stops {
            if let Stop::Consumer(child) = stop {
                self.retire(*child).await;
            }
        }
        for stop in &self.stops {
            if let Stop::Pool { pool, child } = stop {
                self.drain(pool.get()).await;
                self.retire(*child).await;
            }
        }
        // Service A keeps serving until the workers are done: in one process they are its callers.
        // A request in flight gets at least a moment, even when the pool used up the grace period.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_secs(1));
        let open = self.connections.open_count();
        match self.connections.stop(left).await {
            0 if open > 0 => tracing::info!(connections = open, "requests in flight answered; connections closed"),
            0 => {}
            cut => tracing::warn!(
                connections = cut,
                "grace period over; connections with requests in flight closed"
            ),
        }
        self.supervisor.stop(Some("shutdown".into()));
        let _ = self.supervisor_done.await;
        self.transport.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Stops a child for good: the supervisor does not restart it.
    async fn retire(&self, child: ChildId) {
        let _ = self
            .supervisor
            .call(
                |reply| SupervisorMsg::Retire(child, reply),
                Some(Duration::from_secs(10)),
            )
            .await;
    }

    /// Lets the running configurations finish within the grace period; the rest are requeued.
    async fn drain(&self, pool: Option<ActorRef<PoolMsg>>) {
        let Some(pool) = pool else {
            return;
        };
        match pool.call(PoolMsg::Drain, Some(self.grace)).await {
            Ok(ractor::rpc::CallResult::Success(())) => tracing::info!("running configurations finished"),
            _ => {
                tracing::warn!(grace = %format_duration(self.grace), "grace period over; unfinished configurations are requeued")
            }
        }
    }

    /// A child's current actor, to kill it in tests of supervision.
    pub async fn child(&self, name: &str) -> Option<ActorCell> {
        child_cell(&self.supervisor, name).await
    }
}
