//! The consumer actor: owns one subscription and a small pump task that forwards each delivery to
//! a handler as a message, so no actor handler ever loops over an endless stream. When the
//! subscription ends (broker gone), it resubscribes with backoff and reports not ready meanwhile.

use crate::ports::{DeliveryHandler, QueueSource};
use crate::supervisor::Spec;
use crate::task_guard::AbortOnDrop;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct ConsumerArgs {
    pub source: Arc<dyn QueueSource>,
    pub handler: Arc<dyn DeliveryHandler>,
    /// True while a subscription is live: part of readiness.
    pub connected: Arc<AtomicBool>,
    /// First resubscribe delay; doubles per failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

pub enum ConsumerMsg {
    Subscribe,
    Ended,
}

pub struct ConsumerState {
    args: ConsumerArgs,
    pump: Option<AbortOnDrop>,
    failures: u32,
}

#[derive(Clone)]
pub struct Consumer;

/// The supervisor's spec for a consumer named `name` (its subscription is opened anew by each start).
pub fn spec(
    name: &'static str,
    source: Arc<dyn QueueSource>,
    handler: Arc<dyn DeliveryHandler>,
    connected: Arc<AtomicBool>,
) -> Spec<Consumer> {
    Spec::new(name, Consumer, move || ConsumerArgs {
        source: source.clone(),
        handler: handler.clone(),
        connected: connected.clone(),
        backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(10),
    })
}

impl Actor for Consumer {
    type Msg = ConsumerMsg;
    type State = ConsumerState;
    type Arguments = ConsumerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(ConsumerMsg::Subscribe)?;
        Ok(ConsumerState {
            args,
            pump: None,
            failures: 0,
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.pump = None;
        state.args.connected.store(false, Ordering::Release);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConsumerMsg::Subscribe => match state.args.source.subscribe().await {
                Ok(mut stream) => {
                    if state.failures > 0 {
                        tracing::info!(queue = %state.args.source.describe(), "consuming again");
                    }
                    state.failures = 0;
                    state.args.connected.store(true, Ordering::Release);
                    let handler = state.args.handler.clone();
                    state.pump = Some(AbortOnDrop(tokio::spawn(async move {
                        while let Some(delivery) = stream.next().await {
                            handler.handle(delivery);
                        }
                        let _ = myself.cast(ConsumerMsg::Ended);
                    })));
                }
                Err(error) => {
                    state.args.connected.store(false, Ordering::Release);
                    let delay = backoff(&state.args, state.failures);
                    state.failures += 1;
                    tracing::warn!(queue = %state.args.source.describe(), %error, ?delay, "cannot consume; retrying");
                    myself.send_after(delay, || ConsumerMsg::Subscribe);
                }
            },
            ConsumerMsg::Ended => {
                state.args.connected.store(false, Ordering::Release);
                state.pump = None;
                let delay = backoff(&state.args, state.failures);
                state.failures += 1;
                tracing::warn!(queue = %state.args.source.describe(), ?delay, "subscription ended; resubscribing");
                myself.send_after(delay, || ConsumerMsg::Subscribe);
            }
        }
        Ok(())
    }
}

fn backoff(args: &ConsumerArgs, failures: u32) -> Duration {
    args.backoff
        .saturating_mul(1u32 << failures.min(16))
        .min(args.max_backoff)
}
