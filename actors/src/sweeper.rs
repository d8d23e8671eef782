//! The sweeper actor: fails running tasks whose lease ran out, and removes finished tasks once
//! they are older than the retention period.

use crate::observe::{Finished, Observer};
use crate::registry::RegistryHandle;
use crate::supervisor::Spec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct SweeperArgs {
    pub registry: RegistryHandle,
    pub retention: Duration,
    /// How long a task may stay running without news before it is failed.
    pub lease: Duration,
    pub every: Duration,
    /// Counts the tasks failed here.
    pub observer: Arc<dyn Observer>,
}

pub struct Sweep;

#[derive(Clone)]
pub struct Sweeper;

/// The supervisor's spec: every (re)start sweeps with the same registry and periods.
pub fn spec(args: SweeperArgs) -> Spec<Sweeper> {
    Spec::new("sweeper", Sweeper, move || args.clone())
}

impl Actor for Sweeper {
    type Msg = Sweep;
    type State = SweeperArgs;
    type Arguments = SweeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.every, || Sweep);
        Ok(args)
    }

    async fn handle(&self, _: ActorRef<Self::Msg>, _: Sweep, args: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let now = crate::domain::now_millis();
        match args
            .registry
            .expire_leases(now.saturating_sub(args.lease.as_millis() as u64))
            .await
        {
            Ok(0) => {}
            Ok(expired) => {
                (0..expired).for_each(|_| args.observer.task_finished(Finished::Failed));
                tracing::warn!(expired, "failed running tasks whose lease ran out");
            }
            Err(error) => tracing::warn!(%error, "lease check failed"),
        }
        let cutoff = now.saturating_sub(args.retention.as_millis() as u64);
        match args.registry.sweep(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed finished tasks past their retention"),
            // A busy or restarting registry is swept on the next round.
            Err(error) => tracing::warn!(%error, "retention sweep failed"),
        }
        Ok(())
    }
}
