//! The root supervisor: starts its children in order, restarts one that dies (with backoff), and
//! gives up, stopping the process, when a child keeps dying past its restart budget.

use crate::slot::Slot;
use async_trait::async_trait;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most `max_restarts` restarts within any `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    pub max_restarts: usize,
    pub window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max_restarts: usize, window: Duration) -> Self {
        Self {
            max_restarts,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Counts one restart; false once the budget is spent.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max_restarts
    }

    /// Restarts counted in the current window.
    pub fn recent(&self) -> usize {
        self.recent.len()
    }
}

/// Which child a caller means, as a value: each spec gets its own when made, and whoever started a
/// child keeps it to retire that child at shutdown (names are for logs, and may repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildId(u64);

impl ChildId {
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// How to (re)start one child: specs keep their arguments, so a restart rebuilds the same child.
#[async_trait]
pub trait ChildSpec: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn id(&self) -> ChildId;
    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr>;
}

/// The one child spec every actor uses: its name, the actor, and how to build its arguments
/// anew for each start. With a slot, each new actor is published there, so callers holding the
/// slot find the current one after a restart.
pub struct Spec<A: Actor> {
    name: &'static str,
    id: ChildId,
    actor: A,
    args: Box<dyn Fn() -> A::Arguments + Send + Sync>,
    slot: Option<Slot<A::Msg>>,
}

impl<A: Actor + Clone> Spec<A> {
    pub fn new(name: &'static str, actor: A, args: impl Fn() -> A::Arguments + Send + Sync + 'static) -> Self {
        Self {
            name,
            id: ChildId::fresh(),
            actor,
            args: Box::new(args),
            slot: None,
        }
    }

    pub fn published_in(mut self, slot: Slot<A::Msg>) -> Self {
        self.slot = Some(slot);
        self
    }
}

#[async_trait]
impl<A: Actor + Clone> ChildSpec for Spec<A> {
    fn name(&self) -> &str {
        self.name
    }

    fn id(&self) -> ChildId {
        self.id
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(None, self.actor.clone(), (self.args)(), supervisor).await?;
        if let Some(slot) = &self.slot {
            slot.set(actor.clone());
        }
        Ok(actor.get_cell())
    }
}

pub struct SupervisorArgs {
    pub children: Vec<Box<dyn ChildSpec>>,
    pub max_restarts: usize,
    pub window: Duration,
    /// First restart delay; doubles with each restart in the window, up to five seconds.
    pub backoff: Duration,
    /// Set when the supervisor gives up, with the reason, so `main` can exit non-zero.
    pub gave_up: Arc<Mutex<Option<String>>>,
}

pub enum SupervisorMsg {
    Restart(usize),
    /// Stops a child for good (shutdown): it is not restarted.
    Retire(ChildId, RpcReplyPort<()>),
    /// The current cell of a child, by name (tests use it to kill one).
    Child(String, RpcReplyPort<Option<ActorCell>>),
}

struct Child {
    spec: Box<dyn ChildSpec>,
    cell: Option<ActorCell>,
    budget: RestartBudget,
    retired: bool,
}

pub struct SupervisorState {
    children: Vec<Child>,
    backoff: Duration,
    gave_up: Arc<Mutex<Option<String>>>,
}

pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let cell = spec
                .start(myself.get_cell())
                .await
                .map_err(|e| format!("could not start {}: {e}", spec.name()))?;
            tracing::debug!(child = spec.name(), "started");
            children.push(Child {
                spec,
                cell: Some(cell),
                budget: RestartBudget::new(args.max_restarts, args.window),
                retired: false,
            });
        }
        Ok(SupervisorState {
            children,
            backoff: args.backoff,
            gave_up: args.gave_up,
        })
    }

    /// ractor kills the children of a stopping parent without their `post_stop`: stop them here
    /// instead, newest first (Service B before the registry it asks), so each finishes its message
    /// and releases what it holds (the registry joins the store's writer thread).
    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        for child in state.children.iter_mut().rev() {
            child.retired = true;
            if let Some(cell) = child.cell.take() {
                let _ = cell
                    .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(30)))
                    .await;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(index) => {
                let child = &mut state.children[index];
                if child.retired || child.cell.is_some() {
                    return Ok(());
                }
                match child.spec.start(myself.get_cell()).await {
                    Ok(cell) => {
                        tracing::info!(child = child.spec.name(), "restarted");
                        child.cell = Some(cell);
                    }
                    Err(error) => on_child_exit(&myself, state, index, format!("restart failed: {error}")),
                }
            }
            SupervisorMsg::Retire(id, reply) => {
                if let Some(child) = state.children.iter_mut().find(|c| c.spec.id() == id) {
                    child.retired = true;
                    if let Some(cell) = child.cell.take() {
                        let _ = cell
                            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(30)))
                            .await;
                    }
                }
                let _ = reply.send(());
            }
            SupervisorMsg::Child(name, reply) => {
                let cell = state
                    .children
                    .iter()
                    .find(|c| c.spec.name() == name)
                    .and_then(|c| c.cell.clone());
                let _ = reply.send(cell);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, format!("failed: {error}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.as_deref().unwrap_or("no reason given")),
            ),
            _ => return Ok(()),
        };
        let found = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|own| own.get_id() == cell.get_id()));
        if let Some(index) = found {
            state.children[index].cell = None;
            if !state.children[index].retired {
                on_child_exit(&myself, state, index, why);
            }
        }
        Ok(())
    }
}

/// Schedules a restart with backoff, or gives up when the child's budget is spent.
fn on_child_exit(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, index: usize, why: String) {
    let child = &mut state.children[index];
    let name = child.spec.name().to_owned();
    if !child.budget.allow() {
        let reason = format!(
            "{name} exited {} times within {:?} (last: {why}); giving up",
            child.budget.recent(),
            child.budget.window
        );
        tracing::error!(child = %name, "{reason}");
        *state.gave_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        myself.stop(Some(reason));
        return;
    }
    let exponent = child.budget.recent().saturating_sub(1).min(8) as u32;
    let delay = state.backoff.saturating_mul(1 << exponent).min(Duration::from_secs(5));
    tracing::warn!(child = %name, %why, ?delay, "child exited; restarting");
    myself.send_after(delay, move || SupervisorMsg::Restart(index));
}

/// Asks the supervisor for a child's current cell.
pub async fn child_cell(supervisor: &ActorRef<SupervisorMsg>, name: &str) -> Option<ActorCell> {
    let name = name.to_owned();
    match supervisor
        .call(|reply| SupervisorMsg::Child(name, reply), Some(Duration::from_secs(5)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(cell)) => cell,
        _ => None,
    }
}

#[cfg(test)]
mod tests;
