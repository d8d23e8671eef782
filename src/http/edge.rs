//! The guard in front of warp, one per connection: refuses request targets warp cannot route
//! (no path, CONNECT), contains any panic of the whole service (not only the handler), gives
//! every error answer the contract's JSON body, and tracks activity for the idle deadline.

use super::{error, PROVISIONING_FAILED};
use futures_util::FutureExt;
use hyper::body::{Body as _, Incoming};
use hyper::service::Service;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warp::http::{Method, Request, StatusCode};
use warp::reply::Response;

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Wraps the warp service of one connection.
pub struct Edge<S> {
    inner: S,
    activity: Arc<Activity>,
    peer: Peer,
}

/// The TCP peer of the connection, handed to the routes as a request extension: the dashboard's
/// write routes are open to loopback peers only when no `--api-token` is set.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

impl<S> Edge<S> {
    pub fn new(inner: S, activity: Arc<Activity>, peer: std::net::SocketAddr) -> Edge<S> {
        Edge {
            inner,
            activity,
            peer: Peer(peer),
        }
    }
}

impl<S> Service<Request<Incoming>> for Edge<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut request: Request<Incoming>) -> Answer {
        request.extensions_mut().insert(self.peer);
        if let Some(refused) = refuse_target(&request) {
            return Box::pin(std::future::ready(Ok(refused)));
        }
        let busy = self.activity.begin();
        // warp reads the request target while building its future, so the call itself is guarded too.
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => future,
            Err(_) => return Box::pin(std::future::ready(Ok(panicked()))),
        };
        Box::pin(async move {
            let _busy = busy;
            let response = match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => panicked(),
            };
            Ok(with_json_body(response))
        })
    }
}

/// The panic itself was logged by the panic hook (see `telemetry`); the client gets a JSON 500.
fn panicked() -> Response {
    tracing::error!("request handling panicked; answered 500");
    error(StatusCode::INTERNAL_SERVER_ERROR, PROVISIONING_FAILED)
}

/// Only origin-form targets (`/path?query`) and absolute-form ones with a path reach the routes.
/// Authority-form (`host:443`), `*` and a bare `abc` have no path, and CONNECT asks for a tunnel.
fn refuse_target(request: &Request<Incoming>) -> Option<Response> {
    if request.method() == Method::CONNECT {
        let mut refused = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method CONNECT is not allowed: this server is no proxy; use GET or POST on a path",
        );
        refused.headers_mut().insert(
            warp::http::header::ALLOW,
            "GET, POST".parse().expect("a valid header value"),
        );
        return Some(refused);
    }
    if !request.uri().path().starts_with('/') {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "Request target must be a path starting with / (such as /api/v1/equipment/cpe/{id})",
        ));
    }
    None
}

/// An error answer with no body (one warp or hyper made) gets `{"code":N,"message":...}`.
fn with_json_body(response: Response) -> Response {
    let status = response.status();
    let empty = response.body().size_hint().exact() == Some(0);
    if !(status.is_client_error() || status.is_server_error()) || !empty {
        return response;
    }
    let message = status.canonical_reason().unwrap_or("Request refused");
    let mut answer = error(status, message);
    for (name, value) in response.headers() {
        if name != warp::http::header::CONTENT_LENGTH && name != warp::http::header::CONTENT_TYPE {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Requests in flight on one connection and when it last did anything, for the idle deadline.
pub struct Activity {
    epoch: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` of the last request start or end; u64::MAX: no request yet.
    last: AtomicU64,
}

/// Marks a request in flight until dropped (answered, or cancelled by the client).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
    }

    pub fn ever_asked(&self) -> bool {
        self.last.load(Ordering::Acquire) != u64::MAX
    }

    /// Completes once the connection had no request in flight for `idle` (or, before its first
    /// request, for `first`); never while a request is in flight.
    pub async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let last = self.last.load(Ordering::Acquire);
            let due = if last == u64::MAX {
                first
            } else {
                Duration::from_millis(last) + idle
            };
            let now = self.epoch.elapsed();
            if now >= due && self.in_flight.load(Ordering::Acquire) == 0 && self.last.load(Ordering::Acquire) == last {
                return;
            }
            // Busy, or touched since: look again one idle period on (a long request is not idle).
            let wait = if now >= due { idle } else { due - now };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests;
