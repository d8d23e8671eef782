//! Builds the app from its configuration: binds the listeners, picks the store and the queue,
//! and starts the supervision tree. Tests build it on port 0; `main` runs it until a signal.

use crate::config::{Config, Role, StoreKind};
use crate::http::connections::Connections;
use crate::http::health::Readiness;
use crate::http::observe::{HttpObserver, Observed};
use crate::http::server::{self, EdgeLimits, ServerArgs};
use crate::http::{service_a::ServiceA, service_b::ServiceB, Routes};
use crate::metrics::Metrics;
use crate::provisioner::ServiceAClient;
use crate::queue::Transport;
use crate::store::postgres::{leases::PgLeases, outbox, PgStore};
use crate::{duration::format_duration, tls};
use anyhow::{anyhow, Context, Result};
use cpe_actors::consumer;
use cpe_actors::memory::MemoryStore;
use cpe_actors::pool::{PoolHandle, PoolMsg, WorkerDeps};
use cpe_actors::ports::{DeviceLeases, StatusSink, TaskStore};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::retry::RetryPolicy;
use cpe_actors::slot::Slot;
use cpe_actors::supervisor::{child_cell, ChildSpec, Supervisor, SupervisorArgs, SupervisorMsg};
use cpe_actors::sweeper::{self, SweeperArgs};
use cpe_actors::task_guard::AbortOnDrop;
use ractor::{Actor, ActorCell, ActorRef};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

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
    pool: Option<Slot<PoolMsg>>,
    consumers: Vec<&'static str>,
    grace: Duration,
    transport: Transport,
    connections: Connections,
    /// Publishes tasks stored but never queued, with the PostgreSQL store (its outbox).
    _relay: Option<AbortOnDrop>,
}

impl App {
    pub async fn build(config: Config) -> Result<App> {
        tls::install_crypto_provider();
        if tls::ensure_pair(&config.certs_dir)? {
            tracing::info!(dir = %config.certs_dir.display(), "generated a self-signed certificate pair for localhost, 127.0.0.1 and ::1");
        }
        let acceptor = TlsAcceptor::from(tls::server_config(&config.certs_dir)?);
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
        let accepting = Arc::new(AtomicBool::new(false));
        let mut children: Vec<Box<dyn ChildSpec>> = Vec::new();
        let mut consumers = Vec::new();
        let mut queue_flags = Vec::new();
        // Each component's line is logged once the app accepts work, so a reader of the log can act on it.
        let mut announce: Vec<Box<dyn FnOnce()>> = Vec::new();
        let (mut service_a_addr, mut service_b_addr) = (None, None);
        let limits = EdgeLimits {
            connections: Connections::new(config.http.max_connections as usize),
            body_timeout: config.http.body_timeout,
            idle_timeout: config.http.idle_timeout,
        };

        let mut shared_store = None;
        let registry = if config.runs_service_b() {
            let (store, shared) = open_store(&config)?;
            shared_store = shared;
            metrics.watch_store(&store);
            let slot = Slot::default();
            children.push(Box::new(cpe_actors::registry::spec(store, slot.clone())));
            let registry = RegistryHandle::new(slot);
            let every = (config.store.retention / 10).min(config.lease() / 4);
            children.push(Box::new(sweeper::spec(SweeperArgs {
                registry: registry.clone(),
                retention: config.store.retention,
                lease: config.lease(),
                every: every.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            })));
            Some(registry)
        } else {
            None
        };

        if config.runs_service_a() {
            let listener = bind(config.service_a.service_a_addr, "--service-a-addr")?;
            let addr = listener.local_addr()?;
            service_a_addr = Some(addr);
            let routes = ServiceA {
                delay: config.service_a.config_delay,
                fail_rate: config.service_a.fail_rate,
                readiness: Readiness {
                    accepting: accepting.clone(),
                    queues: vec![],
                },
            };
            let routes = observed(routes, "service_a", &metrics);
            children.push(server_spec("service-a", listener, &acceptor, routes, &limits));
            let delay = format_duration(config.service_a.config_delay);
            announce.push(Box::new(
                move || tracing::info!(%addr, %delay, "Service A (cpe_locate_service) listening on https"),
            ));
        }

        let pool = if config.runs_workers() {
            // In one process workers report to the registry; on their own, through the results queue.
            let sink: Arc<dyn StatusSink> = match &registry {
                Some(registry) => Arc::new(registry.clone()),
                None => transport
                    .results_sink()
                    .ok_or_else(|| anyhow!("workers in their own process need --amqp-url"))?,
            };
            let trust = tls::client_trust(&config.certs_dir)?;
            let service_a_url = config.worker.service_a_url(service_a_addr);
            let provisioner = ServiceAClient::new(&service_a_url, trust, config.worker.workers as usize)?;
            let deps = Arc::new(WorkerDeps {
                provisioner: Arc::new(provisioner),
                sink,
                retry: RetryPolicy {
                    max_attempts: config.worker.max_attempts,
                    base: config.worker.retry_base,
                    ..RetryPolicy::default()
                },
                call_timeout: config.call_timeout(),
                observer: metrics.clone(),
                leases: device_leases(&config)?,
            });
            let slot = Slot::default();
            children.push(Box::new(cpe_actors::pool::spec(
                config.worker.workers as usize,
                deps,
                slot.clone(),
            )));
            let connected = Arc::new(AtomicBool::new(false));
            queue_flags.push(connected.clone());
            children.push(Box::new(consumer::spec(
                "consumer",
                transport.tasks.clone(),
                Arc::new(PoolHandle::new(slot.clone(), metrics.clone())),
                connected,
            )));
            consumers.push("consumer");
            let (workers, queue) = (config.worker.workers, transport.tasks.describe());
            announce.push(Box::new(
                move || tracing::info!(workers, %queue, service_a = %crate::redact::redact_url(&service_a_url), "workers consuming"),
            ));
            Some(slot)
        } else {
            None
        };

        if let Some(registry) = &registry {
            if config.role == Role::ServiceB {
                let (source, handler) = transport
                    .results_consumer(registry.clone())
                    .ok_or_else(|| anyhow!("--role service-b needs --amqp-url"))?;
                let connected = Arc::new(AtomicBool::new(false));
                queue_flags.push(connected.clone());
                children.push(Box::new(consumer::spec("results-consumer", source, handler, connected)));
                consumers.push("results-consumer");
            }
            let listener = bind(config.http.service_b_addr, "--service-b-addr")?;
            let addr = listener.local_addr()?;
            service_b_addr = Some(addr);
            let readiness = Readiness {
                accepting: accepting.clone(),
                queues: queue_flags.clone(),
            };
            let routes = ServiceB {
                registry: registry.clone(),
                publisher: transport.publisher.clone(),
                readiness,
                api_token: config.http.api_token.as_ref().map(|token| token.expose().clone()),
                metrics: metrics.clone(),
            };
            let routes = observed(routes, "service_b", &metrics);
            children.push(server_spec("service-b", listener, &acceptor, routes, &limits));
            let queue = transport.tasks.describe();
            announce.push(Box::new(
                move || tracing::info!(%addr, %queue, "Service B (config_status_service) listening on https"),
            ));
        }

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
                .resume(registry)
                .await
                .context("cannot requeue unfinished tasks")?;
        }
        let relay =
            shared_store.map(|store| AbortOnDrop(outbox::relay(store, transport.publisher.clone(), RELAY_EVERY)));
        accepting.store(true, Ordering::Release);
        announce.into_iter().for_each(|line| line());
        Ok(App {
            service_a_addr,
            service_b_addr,
            supervisor,
            supervisor_done,
            gave_up,
            accepting,
            pool,
            consumers,
            grace: config.shutdown_grace,
            transport,
            connections: limits.connections,
            _relay: relay,
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
        for name in &self.consumers {
            let _ = self
                .supervisor
                .call(
                    |reply| SupervisorMsg::Retire(name.to_string(), reply),
                    Some(Duration::from_secs(10)),
                )
                .await;
        }
        if let Some(pool) = self.pool.as_ref().and_then(|slot| slot.get()) {
            match pool.call(PoolMsg::Drain, Some(self.grace)).await {
                Ok(ractor::rpc::CallResult::Success(())) => {
                    tracing::info!("running configurations finished")
                }
                _ => {
                    tracing::warn!(grace = %format_duration(self.grace), "grace period over; unfinished configurations are requeued")
                }
            }
            let _ = self
                .supervisor
                .call(
                    |reply| SupervisorMsg::Retire("pool".into(), reply),
                    Some(Duration::from_secs(10)),
                )
                .await;
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

    /// A child's current actor, to kill it in tests of supervision.
    pub async fn child(&self, name: &str) -> Option<ActorCell> {
        child_cell(&self.supervisor, name).await
    }
}

/// How often each instance looks for tasks stored but not queued.
const RELAY_EVERY: Duration = Duration::from_secs(2);

/// The store, and the same store as PostgreSQL when it is that one (shared, with an outbox).
type OpenedStore = (Arc<dyn TaskStore>, Option<Arc<PgStore>>);

fn open_store(config: &Config) -> Result<OpenedStore> {
    Ok(match config.store.kind() {
        StoreKind::Memory => (Arc::new(MemoryStore::default()), None),
        StoreKind::File => (
            Arc::new(
                crate::store::file::FileStore::open(&config.store.data_dir)
                    .with_context(|| format!("--data-dir {}", config.store.data_dir.display()))?,
            ),
            None,
        ),
        StoreKind::Postgres(url) => {
            let store = Arc::new(PgStore::open(&url).context("--store (PostgreSQL)")?);
            (store.clone(), Some(store))
        }
    })
}

/// Per-device leases when instances share a PostgreSQL store; none otherwise (the pool alone keeps
/// one task per device at a time in one process).
fn device_leases(config: &Config) -> Result<Option<Arc<dyn DeviceLeases>>> {
    let StoreKind::Postgres(url) = config.store.kind() else {
        return Ok(None);
    };
    let holder = format!("pid {} ({})", std::process::id(), uuid::Uuid::new_v4());
    let leases = PgLeases::open(&url, holder).context("--store (PostgreSQL device leases)")?;
    Ok(Some(Arc::new(leases)))
}

fn bind(addr: SocketAddr, option: &str) -> Result<Arc<std::net::TcpListener>> {
    let listener = crate::http::listener::bind(addr).with_context(|| format!("cannot listen on {addr} ({option})"))?;
    Ok(Arc::new(listener))
}

/// A service's routes with `/metrics` and request counts added.
fn observed(routes: impl Routes, service: &'static str, metrics: &Arc<Metrics>) -> Arc<dyn Routes> {
    Arc::new(Observed {
        inner: Arc::new(routes),
        observer: HttpObserver {
            metrics: metrics.clone(),
            service,
        },
    })
}

fn server_spec(
    name: &'static str,
    listener: Arc<std::net::TcpListener>,
    tls: &TlsAcceptor,
    routes: Arc<dyn Routes>,
    limits: &EdgeLimits,
) -> Box<dyn ChildSpec> {
    Box::new(server::spec(ServerArgs {
        name,
        listener,
        tls: tls.clone(),
        routes,
        limits: limits.clone(),
    }))
}
