//! The stop signals: SIGTERM (container stop), SIGINT (Ctrl-C) and SIGHUP (terminal closed) each
//! start a clean stop; a second one during it stops the process at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The handlers, installed at once so a signal that arrives while the app is still starting is
/// neither lost nor fatal (a signal with no handler kills the process: SIGHUP did, exit 129).
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal and returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }

    /// Completes on the first signal, and from then on watches for a second one: an operator who
    /// signals again does not want to wait out the grace period, so the process exits at once
    /// (anything unfinished is redelivered or resumed at the next start, as after a crash).
    pub async fn first_then_force(mut self) {
        let name = self.next().await;
        tracing::info!("{name} received; stopping cleanly (signal again to stop at once)");
        tokio::spawn(async move {
            let name = self.next().await;
            tracing::warn!("{name} received during the clean stop; stopping at once");
            std::process::exit(FORCED_EXIT);
        });
    }
}

/// Exit status of a forced stop: not 0, since work may have been cut.
pub const FORCED_EXIT: i32 = 130;
