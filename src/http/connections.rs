//! The process's HTTP connections, shared by both servers: the cap on how many are open at once,
//! and the clean stop (stop accepting, let requests in flight finish, then close what is left).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// At most one "cap reached" warning per this interval, so a flood does not flood the log too.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where the servers stand in a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Accept no more; each connection ends once its requests in flight are answered.
    Draining,
    /// The grace period is over: close every connection now.
    Closing,
}

/// Shared by the accept loops and every connection task; outlives a restarted server.
#[derive(Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
    phase: watch::Sender<Phase>,
    /// Open connections; a connection's [`Open`] guard decrements it however the task ends.
    open: watch::Sender<usize>,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

/// Held by a connection task for its whole life.
pub struct Open {
    _permit: OwnedSemaphorePermit,
    open: watch::Sender<usize>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n -= 1);
    }
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections {
            permits: Arc::new(Semaphore::new(max)),
            max,
            phase: watch::channel(Phase::Serving).0,
            open: watch::channel(0).0,
            last_warning: Arc::new(Mutex::new(None)),
        }
    }

    /// Waits for a free slot before the next accept. Over the cap new connections wait in the
    /// listen backlog (the kernel finishes their TCP handshake) rather than being refused, so a
    /// burst slows down instead of failing; the log says so, at most every ten seconds.
    pub async fn slot(&self, server: &str) -> Open {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.warn_full(server);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        self.open.send_modify(|n| *n += 1);
        Open {
            _permit: permit,
            open: self.open.clone(),
        }
    }

    fn warn_full(&self, server: &str) {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_connections = self.max,
                server,
                "connection cap reached (--max-connections); new connections wait in the listen backlog"
            );
        }
    }

    /// Follows the phase: accept loops and connections select on its changes.
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn open_count(&self) -> usize {
        *self.open.borrow()
    }

    /// Stops accepting, lets every connection finish its requests in flight within `grace`, then
    /// closes the rest. Returns how many had to be closed.
    pub async fn stop(&self, grace: Duration) -> usize {
        self.phase.send_replace(Phase::Draining);
        let mut open = self.open.subscribe();
        let drained = tokio::time::timeout(grace, open.wait_for(|n| *n == 0)).await.is_ok();
        if drained {
            return 0;
        }
        let left = self.open_count();
        self.phase.send_replace(Phase::Closing);
        // Closing is immediate (each task drops its connection), but wait for it so nothing
        // outlives the app; a bound keeps a stuck task from holding the exit.
        let _ = tokio::time::timeout(Duration::from_secs(5), open.wait_for(|n| *n == 0)).await;
        left
    }
}

#[cfg(test)]
mod tests;
