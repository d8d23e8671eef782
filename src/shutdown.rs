//! The shutdown signal: SIGTERM (container stop) or SIGINT (Ctrl-C), whichever comes first.

use std::future::Future;
use tokio::signal::unix::{signal as unix_signal, SignalKind};

/// Installs the handlers now, so a signal that arrives while the app is still starting is not lost
/// (nor fatal), and returns the future that completes on the first one.
pub fn signal() -> impl Future<Output = ()> {
    let mut terminate = unix_signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut interrupt = unix_signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    }
}
