//! The store part: the task store the options name, the registry that owns it, the sweeper, and
//! with PostgreSQL the outbox relay. Runs wherever Service B does.

use super::part::Part;
use crate::config::{StoreKind, StoreOptions};
use crate::metrics::Metrics;
use crate::store::postgres::{outbox, reconcile, PgStore};
use anyhow::{Context, Result};
use cpe_actors::memory::MemoryStore;
use cpe_actors::observe::Observer;
use cpe_actors::ports::{TaskPublisher, TaskReader, TaskStore};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::slot::Slot;
use cpe_actors::sweeper::{self, SweeperArgs};
use cpe_actors::task_guard::AbortOnDrop;
use std::sync::Arc;
use std::time::Duration;

/// How often each instance looks for tasks stored but not queued.
const RELAY_EVERY: Duration = Duration::from_secs(2);

pub(super) struct Registry {
    pub handle: RegistryHandle,
    /// The same store when it is PostgreSQL: shared by instances, with an outbox to relay.
    outbox: Option<Arc<PgStore>>,
    /// Counts the tasks the reconciler fails.
    observer: Arc<dyn Observer>,
}

impl Registry {
    /// With PostgreSQL: the relay, which publishes tasks stored or made due but not queued, and
    /// the reconciler, which hands on due tasks whose message was lost (after `reconcile_after`).
    /// Both stop when dropped.
    pub fn outbox(
        &self,
        publisher: Arc<dyn TaskPublisher>,
        reconcile_after: Duration,
        queue: &str,
    ) -> Vec<AbortOnDrop> {
        let Some(store) = self.outbox.clone() else {
            return Vec::new();
        };
        vec![
            AbortOnDrop(outbox::relay(store.clone(), publisher.clone(), RELAY_EVERY)),
            AbortOnDrop(reconcile::run(
                store,
                publisher,
                reconcile_after,
                queue.to_owned(),
                self.observer.clone(),
            )),
        ]
    }
}

/// `lease`: how long a worker may hold a task before the sweeper fails it. `in_process_queue`:
/// the tasks go through this process's own queue, so no other instance may share a PostgreSQL store.
pub(super) fn part(
    options: &StoreOptions,
    lease: Duration,
    in_process_queue: bool,
    metrics: &Arc<Metrics>,
) -> Result<(Part, Registry)> {
    let (store, outbox) = open_store(options)?;
    if let Some(shared) = &outbox {
        shared
            .join_instances(in_process_queue)
            .context("--store (PostgreSQL)")?;
    }
    metrics.watch_store(&store);
    let mut part = Part::default();
    let slot = Slot::default();
    // Reads outside the registry: on PostgreSQL on connections of their own.
    let reader: Arc<dyn TaskReader> = match &outbox {
        Some(shared) => shared.reader(),
        None => store.clone(),
    };
    part.child(cpe_actors::registry::spec(store, slot.clone()));
    let handle = RegistryHandle::new(slot, reader);
    let every = (options.retention / 10).min(lease / 4);
    part.child(sweeper::spec(SweeperArgs {
        registry: handle.clone(),
        retention: options.retention,
        lease,
        every: every.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        observer: metrics.clone(),
    }));
    let observer = metrics.clone();
    Ok((
        part,
        Registry {
            handle,
            outbox,
            observer,
        },
    ))
}

/// The store, and the same store as PostgreSQL when it is that one (shared, with an outbox).
type OpenedStore = (Arc<dyn TaskStore>, Option<Arc<PgStore>>);

fn open_store(options: &StoreOptions) -> Result<OpenedStore> {
    Ok(match options.kind() {
        StoreKind::Memory => (Arc::new(MemoryStore::default()), None),
        StoreKind::File => (
            Arc::new(
                crate::store::file::FileStore::open(&options.data_dir)
                    .with_context(|| format!("--data-dir {}", options.data_dir.display()))?,
            ),
            None,
        ),
        StoreKind::Postgres(url) => {
            let store = Arc::new(PgStore::open(&url).context("--store (PostgreSQL)")?);
            (store.clone(), Some(store))
        }
    })
}
