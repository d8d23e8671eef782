//! `GET /openapi.json`: each service's OpenAPI 3.1 document, built from the constants the routes
//! use (messages, limits, names), and held against the running routes by `tests/api/openapi/` and
//! `tests/schemathesis.rs`.

mod actions;
mod audit;
mod components;
mod dashboard;
mod meta;
mod service_a;
mod service_b;
mod task_schemas;

use bytes::Bytes;
use serde_json::Value;
use std::sync::OnceLock;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;

pub const PATH: &str = "/openapi.json";

/// Marks an operation that is documented ahead of its route (another change adds it); tests skip
/// such operations and fail once the route answers, so the mark cannot outlive the route's arrival.
pub const PENDING: &str = "x-pending";

/// Marks a path answered alike on every method (the health routes), so no method is refused there.
pub const ANY_METHOD: &str = "x-any-method";

/// Which service's document to serve.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    A,
    B,
}

/// Every route the service serves, from its route table and the `/metrics` wrapper, as (method,
/// pattern), None standing for every method: what its document must list, and all it may list
/// without [`PENDING`]. `tests/api/openapi/` holds the two against each other.
pub fn routes(service: Service) -> Vec<(Option<Method>, &'static str)> {
    let mut routes = match service {
        Service::A => super::service_a::routes(),
        Service::B => super::service_b::routes(),
    };
    routes.extend(super::observe::routes());
    routes
}

/// The document as a JSON value, built once.
pub fn document(service: Service) -> &'static Value {
    static A: OnceLock<Value> = OnceLock::new();
    static B: OnceLock<Value> = OnceLock::new();
    match service {
        Service::A => A.get_or_init(service_a::document),
        Service::B => B.get_or_init(service_b::document),
    }
}

/// The serialised document, built once: answering costs one clone of a reference-counted buffer.
fn serialised(service: Service) -> Bytes {
    static A: OnceLock<Bytes> = OnceLock::new();
    static B: OnceLock<Bytes> = OnceLock::new();
    let cell = match service {
        Service::A => &A,
        Service::B => &B,
    };
    cell.get_or_init(|| Bytes::from(serde_json::to_vec(document(service)).expect("a JSON value serialises")))
        .clone()
}

/// `GET /openapi.json`, without a token: it holds no task data.
pub fn serve(service: Service) -> Response {
    let mut response = Response::new(serialised(service).into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
