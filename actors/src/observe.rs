//! What the actors report for metrics: a port with a no-op default, so this crate needs no
//! metrics library and its tests need no recorder. The adapter lives in `cpe-config` (`src/metrics.rs`).

use std::time::Duration;

/// How one call to Service A ended, as an operator groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// May pass on another try: transport errors, 5xx, 429, unreadable successes, panics.
    Transient,
    /// Will not pass on another try: 404, other 4xx, redirects.
    Permanent,
    /// The worker gave up at the call's deadline and dropped it.
    Timeout,
}

/// How a task ended: its final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finished {
    Completed,
    /// Failed, whatever the cause (a permanent answer, its attempts used up, a crash each time).
    Failed,
    Cancelled,
}

/// Why a queue message went to the dead-letter queue: a fact about the message, not a task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetter {
    /// Its task failed after its last attempt.
    AttemptsUsedUp,
    /// The body is not a task.
    NotATask,
    /// The message names another device or request than the task stored under its id.
    Mismatch,
    /// The store has never seen its task.
    UnknownTask,
}

/// Receives events as they happen. Every method has a no-op default and must be cheap and
/// non-blocking: they are called from actor handlers and from the worker's call path.
pub trait Observer: Send + Sync + 'static {
    /// A call to Service A ended after `took`.
    fn call_ended(&self, _outcome: CallOutcome, _took: Duration) {}
    /// A task's final status is durable.
    fn task_finished(&self, _result: Finished) {}
    /// A message was sent to the dead-letter queue.
    fn dead_lettered(&self, _why: DeadLetter) {}
    /// The pool's workers: how many hold a delivery, out of how many.
    fn slots(&self, _used: usize, _total: usize) {}
    /// The queue delivered a message again (after a crash, a requeue or a lost connection).
    fn redelivered(&self) {}
}

/// Observes nothing: for tests, and for callers that do not measure.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}
