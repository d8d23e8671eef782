//! The shutdown signal: SIGTERM (container stop) or SIGINT (Ctrl-C), whichever comes first.

use tokio::signal::unix::{signal as unix_signal, SignalKind};

pub async fn signal() {
    let mut terminate =
        unix_signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
    }
}
