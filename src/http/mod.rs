//! HTTP: the shared request shape and JSON replies, the routes of Services A and B, and the
//! TLS server that serves them.

pub mod audit;
pub mod bulk;
pub mod connections;
pub mod dashboard;
pub mod edge;
pub mod h1_errors;
pub mod health;
pub mod listener;
pub mod observe;
pub mod openapi;
pub mod query;
pub mod routes;
pub mod server;
pub mod service_a;
pub mod service_b;
pub mod tasks;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use cpe_actors::RequestError;
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

/// Largest request body accepted; past it the answer is 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Before a 413, up to this much of the body is read and dropped, for at most [`DRAIN_TIME`]:
/// a client still sending when the connection closes (HTTP/1.1) or its stream is reset (HTTP/2)
/// loses the answer (curl exits 55 or 92), while one whose upload was taken in full reads it.
pub const DRAIN_LIMIT: usize = 1024 * 1024;
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

pub const EQUIPMENT_NOT_FOUND: &str = "The requested equipment is not found";
pub const TASK_NOT_FOUND: &str = "The requested task is not found";
pub const PROVISIONING_FAILED: &str = "Internal provisioning exception";
/// The device route both services serve: configure (A), create a task (B).
pub const DEVICE_PATH: &str = "/api/v1/equipment/cpe/{id}";

/// A request as the routes see it: the raw (still percent-encoded) path and a body within the limit.
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string, without the `?`; empty when there is none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The connection's TCP peer address; None only when served without the edge (no socket).
    pub peer: Option<std::net::IpAddr>,
    /// The host and port the client asked for (`Host`, or HTTP/2's `:authority`), when given.
    pub authority: Option<String>,
}

#[async_trait]
pub trait Routes: Send + Sync + 'static {
    async fn handle(&self, request: HttpRequest) -> Response;

    /// Whether the service answers to this `Host` (or `:authority`); refused with 421 before any
    /// route runs, health and metrics included. Every host by default.
    fn answers_to(&self, _authority: Option<&str>) -> bool {
        true
    }

    /// Where requests are counted and timed (see `observe.rs`); None: not measured.
    fn observer(&self) -> Option<observe::HttpObserver> {
        None
    }
}

/// `{"code": N, "message": "..."}` with HTTP status N.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, json!({"code": status.as_u16(), "message": message.into()}))
}

pub fn reply(status: StatusCode, body: Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// 405 with the methods the path does take, so a client can see what it should have sent.
pub fn method_not_allowed(request: &HttpRequest, allowed: &str) -> Response {
    let message = format!(
        "Method {} is not allowed on {}; use {allowed}",
        request.method, request.path
    );
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, message);
    response.headers_mut().insert(
        warp::http::header::ALLOW,
        allowed.parse().expect("a valid header value"),
    );
    response
}

/// 400 for bytes that are not JSON, 422 for JSON that breaks the schema; the message says why.
pub fn request_error(rejection: RequestError) -> Response {
    match rejection {
        RequestError::Malformed(message) => error(StatusCode::BAD_REQUEST, message),
        RequestError::Invalid(message) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

pub fn no_route(request: &HttpRequest) -> Response {
    error(StatusCode::NOT_FOUND, format!("No such path: {}", request.path))
}

/// The warp filter that serves `routes`: reads the body within [`BODY_LIMIT`] and `body_timeout`,
/// turns a panic of the handler into a JSON 500 instead of a dropped connection, and counts it.
pub fn filter(routes: Arc<dyn Routes>, body_timeout: Duration) -> BoxedFilter<(Response,)> {
    let observer = routes.observer();
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let served = warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<edge::Peer>())
        // A `Host` that does not parse is no authority, not a rejection: the routes decide.
        .and(warp::host::optional().or(warp::any().map(|| None)).unify())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<edge::Peer>,
                  authority: Option<warp::host::Authority>,
                  body| {
                let routes = routes.clone();
                async move {
                    let body = match read_body(&headers, body, body_timeout).await {
                        Ok(body) => body,
                        Err(response) => return response,
                    };
                    let request = HttpRequest {
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        headers,
                        body,
                        peer: peer.map(|peer| peer.0.ip()),
                        authority: authority.map(|authority| authority.as_str().to_ascii_lowercase()),
                    };
                    if !routes.answers_to(request.authority.as_deref()) {
                        return error(
                            StatusCode::MISDIRECTED_REQUEST,
                            "This service does not answer to that Host; see --public-host",
                        );
                    }
                    match AssertUnwindSafe(routes.handle(request)).catch_unwind().await {
                        Ok(response) => response,
                        Err(_) => {
                            tracing::error!("a request handler panicked");
                            error(StatusCode::INTERNAL_SERVER_ERROR, PROVISIONING_FAILED)
                        }
                    }
                }
            },
        );
    observe::wrap(served.map(secured), observer)
}

/// Every answer: never sniffed as another type; never kept by a cache (task data, metrics) unless
/// the route says otherwise (the dashboard's files revalidate).
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

enum BodyError {
    TooLarge,
    Unreadable(Response),
}

async fn read_body<B: Buf>(
    headers: &HeaderMap,
    body: impl Stream<Item = Result<B, warp::Error>>,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {BODY_LIMIT} bytes"),
        )
    };
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = std::pin::pin!(body);
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        // A client waiting for `100 Continue` has sent nothing yet: reading would only invite it to.
        let waits = headers
            .get(warp::http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits {
            drain(body.as_mut()).await;
        }
        return Err(too_large());
    }
    let collect = async {
        let mut collected = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BodyError::Unreadable(unreadable(&e)))?;
            if collected.len() + chunk.remaining() > BODY_LIMIT {
                return Err(BodyError::TooLarge);
            }
            collected.put(chunk);
        }
        Ok(collected.freeze())
    };
    let outcome = tokio::time::timeout(timeout, collect).await;
    match outcome {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(BodyError::Unreadable(response))) => Err(response),
        Ok(Err(BodyError::TooLarge)) => {
            drain(body.as_mut()).await;
            Err(too_large())
        }
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "Request body not received within {}",
                crate::duration::format_duration(timeout)
            ),
        )),
    }
}

/// Reads and drops the rest of a refused body, within [`DRAIN_LIMIT`] and [`DRAIN_TIME`].
async fn drain<B: Buf>(mut body: std::pin::Pin<&mut impl Stream<Item = Result<B, warp::Error>>>) {
    let read_all = async {
        let mut dropped = 0;
        while let Some(Ok(chunk)) = body.next().await {
            dropped += chunk.remaining();
            if dropped > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
}

/// 400 naming the deepest cause (such as `Invalid chunk size line`), not hyper's generic
/// "error reading a body from connection".
fn unreadable(failure: &warp::Error) -> Response {
    let mut cause: &dyn std::error::Error = failure;
    while let Some(deeper) = cause.source() {
        cause = deeper;
    }
    let eof = std::iter::successors(Some(failure as &dyn std::error::Error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::UnexpectedEof);
    let message = if eof {
        "Request body is incomplete: the connection ended before the body did".to_owned()
    } else {
        format!("Request body is malformed: {cause}")
    };
    error(StatusCode::BAD_REQUEST, message)
}
