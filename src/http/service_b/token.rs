//! Service B's bearer token: with `--api-token` set, every task route requires
//! `Authorization: Bearer <token>`.

use super::ServiceB;
use crate::http::{error, HttpRequest};
use warp::http::{header, StatusCode};
use warp::reply::Response;

impl ServiceB {
    /// None when the request may go on (no token set, or the right one given); otherwise the 401,
    /// with `WWW-Authenticate` so a client learns which scheme to use.
    pub(super) fn check_token(&self, request: &HttpRequest) -> Option<Response> {
        let expected = self.api_token.as_deref()?;
        let given = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
            return None;
        }
        let mut denied = error(
            StatusCode::UNAUTHORIZED,
            "Missing or wrong bearer token in the Authorization header",
        );
        denied.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a valid header value"),
        );
        Some(denied)
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// Compares without an early exit, not even on a length mismatch: the time taken depends only on
/// the expected token's length, so it reveals neither how much of the token matched nor its length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, want) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ want;
    }
    diff == 0
}

#[cfg(test)]
mod tests;
