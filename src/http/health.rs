//! Liveness and readiness: `/healthz` answers while the process serves; `/readyz` only when it can work.

use super::{reply, HttpRequest};
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

/// Answers `/healthz` and `/readyz`, or None for any other path.
pub fn answer(request: &HttpRequest, service: &str, readiness: &Readiness) -> Option<Response> {
    match request.path.as_str() {
        "/healthz" => Some(reply(
            StatusCode::OK,
            json!({"code": 200, "message": "alive", "service": service}),
        )),
        "/readyz" => Some(match readiness.is_ready() {
            None => reply(
                StatusCode::OK,
                json!({"code": 200, "message": "ready", "service": service}),
            ),
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"code": 503, "message": format!("not ready: {why}"), "service": service}),
            ),
        }),
        _ => None,
    }
}
