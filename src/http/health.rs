//! Liveness and readiness: `/healthz` answers while the process serves; `/readyz` only when it can work.

use super::reply;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// What readiness depends on, shared by the components that know it.
#[derive(Clone, Default)]
pub struct Readiness {
    /// False until started, and again once a shutdown began.
    pub accepting: Arc<AtomicBool>,
    /// The queue subscriptions this process needs; all must be live.
    pub queues: Vec<Arc<AtomicBool>>,
}

impl Readiness {
    pub fn is_ready(&self) -> Option<&'static str> {
        if !self.accepting.load(Ordering::Acquire) {
            return Some("not accepting work (starting or shutting down)");
        }
        if self.queues.iter().any(|q| !q.load(Ordering::Acquire)) {
            return Some("queue disconnected");
        }
        None
    }
}

/// The two probes. They answer every method alike, without a token: a load balancer or an
/// orchestrator may probe with any method, and needs no credentials to do so.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// `/healthz`: the process serves.
    Alive,
    /// `/readyz`: the process can work.
    Ready,
}

/// Each probe's path, for the services' route tables.
pub const ROUTES: [(&str, Probe); 2] = [("/healthz", Probe::Alive), ("/readyz", Probe::Ready)];

/// The probe's answer for `service`.
pub fn answer(probe: Probe, service: &str, readiness: &Readiness) -> Response {
    match probe {
        Probe::Alive => reply(
            StatusCode::OK,
            json!({"code": 200, "message": "alive", "service": service}),
        ),
        Probe::Ready => match readiness.is_ready() {
            None => reply(
                StatusCode::OK,
                json!({"code": 200, "message": "ready", "service": service}),
            ),
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"code": 503, "message": format!("not ready: {why}"), "service": service}),
            ),
        },
    }
}
