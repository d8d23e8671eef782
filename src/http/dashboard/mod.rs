//! The operator dashboard: one page, shipped inside the binary, that reads Service B's own JSON API.
//!
//! The page, its script and its style are separate routes so the Content-Security-Policy can forbid
//! inline script and style: task errors come from devices, and the page shows them (as text only).

use super::{error, reply};
use serde_json::json;
use std::net::IpAddr;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// The path of the mode route: whether the page may write, and whether it needs a token.
pub const MODE_PATH: &str = "/api/v1/dashboard";

/// One file of the page: its path, content type and body.
pub struct Asset {
    pub path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page, script and style.
pub static ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard.js"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard.css"),
    },
];

/// Only the page's own files and API: no inline script or style, no other origin, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// `GET` of the page, script or style; they hold no task data, so they need no token (the page
/// asks for it).
pub fn serve(asset: &Asset) -> Response {
    let mut response = Response::new(asset.body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A new binary may ship a new page: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Whether the operator routes that change tasks (cancel, retry, bulk) are open to this request:
/// with a token, to whoever holds it (checked before); without one, to loopback peers only, so a
/// service reachable from the network cannot be driven by anyone who finds the page.
pub fn may_write(token_set: bool, peer: Option<IpAddr>) -> bool {
    token_set || peer.is_some_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback())
}

pub const WRITE_FORBIDDEN: &str = "Cancel and retry are allowed only from loopback (127.0.0.1 or ::1) when the \
                                   service runs without a token; set --api-token or --tokens-file to operate from \
                                   elsewhere";

pub fn forbidden() -> Response {
    error(StatusCode::FORBIDDEN, WRITE_FORBIDDEN)
}

/// `GET /api/v1/dashboard`: the page's mode. `writable` is false with a token required and not
/// (or wrongly) given, or with a `read` token; `scope` is the given token's, null without one in
/// force, so the page can tell a wrong token from a narrow one.
pub fn mode(writable: bool, token_required: bool, scope: Option<crate::tokens::Scope>) -> Response {
    reply(
        StatusCode::OK,
        json!({
            "code": 200,
            "writable": writable,
            "tokenRequired": token_required,
            "scope": scope.map(crate::tokens::Scope::name),
        }),
    )
}

#[cfg(test)]
mod tests;
