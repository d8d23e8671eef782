//! Child specs for the supervisor: how to (re)start the registry, the pool and a consumer, and
//! publish the new actor in its slot so callers find it after a restart.

use crate::consumer::{Consumer, ConsumerArgs};
use crate::pool::WorkerDeps;
use crate::pool::{Pool, PoolArgs, PoolMsg};
use crate::ports::{DeliveryHandler, QueueSource, TaskStore};
use crate::registry::{Registry, RegistryMsg};
use crate::slot::Slot;
use crate::supervisor::ChildSpec;
use async_trait::async_trait;
use ractor::{Actor, ActorCell, ActorProcessingErr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub struct RegistrySpec {
    pub store: Arc<dyn TaskStore>,
    pub slot: Slot<RegistryMsg>,
}

#[async_trait]
impl ChildSpec for RegistrySpec {
    fn name(&self) -> &str {
        "registry"
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(None, Registry, self.store.clone(), supervisor).await?;
        self.slot.set(actor.clone());
        Ok(actor.get_cell())
    }
}

pub struct PoolSpec {
    pub size: usize,
    pub deps: Arc<WorkerDeps>,
    pub slot: Slot<PoolMsg>,
}

#[async_trait]
impl ChildSpec for PoolSpec {
    fn name(&self) -> &str {
        "pool"
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let args = PoolArgs {
            size: self.size,
            deps: self.deps.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Pool, args, supervisor).await?;
        self.slot.set(actor.clone());
        Ok(actor.get_cell())
    }
}

pub struct ConsumerSpec {
    pub name: &'static str,
    pub source: Arc<dyn QueueSource>,
    pub handler: Arc<dyn DeliveryHandler>,
    pub connected: Arc<AtomicBool>,
}

#[async_trait]
impl ChildSpec for ConsumerSpec {
    fn name(&self) -> &str {
        self.name
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let args = ConsumerArgs {
            source: self.source.clone(),
            handler: self.handler.clone(),
            connected: self.connected.clone(),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        };
        let (actor, _) = Actor::spawn_linked(None, Consumer, args, supervisor).await?;
        Ok(actor.get_cell())
    }
}
