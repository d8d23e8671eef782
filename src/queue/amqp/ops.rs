//! What every broker operation of the adapter goes through: a deadline, so nothing waits forever on a
//! broker that stopped answering, plus channel opening and a lock that tolerates poisoning.

use cpe_actors::ports::QueueError;
use lapin::{Channel, Connection};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Longest wait for one broker operation once connected (publish and confirm, declare, ack), so that
/// nothing hangs forever on a broker that stopped answering.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// Opens a channel under [`OPERATION_DEADLINE`].
pub(super) async fn open_channel(connection: &Connection) -> Result<Channel, QueueError> {
    step("opening a channel", connection.create_channel()).await
}

/// Runs one broker operation under [`OPERATION_DEADLINE`]; the outer error is the deadline.
pub(super) async fn within<T>(
    what: &str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<lapin::Result<T>, QueueError> {
    tokio::time::timeout(OPERATION_DEADLINE, operation)
        .await
        .map_err(|_| QueueError(format!("{what}: no answer within {OPERATION_DEADLINE:?}")))
}

/// Runs one broker operation under [`OPERATION_DEADLINE`], with either failure as a `QueueError` that
/// names `what` was being done.
pub(super) async fn step<T>(what: &str, operation: impl Future<Output = lapin::Result<T>>) -> Result<T, QueueError> {
    within(what, operation)
        .await?
        .map_err(|error| QueueError(format!("{what}: {error}")))
}

/// Locks even a poisoned mutex: the guarded values are only ever replaced whole, so a panic elsewhere
/// cannot have left them half-updated, and the adapter keeps working rather than panicking in turn.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
