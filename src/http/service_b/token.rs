//! Service B's bearer tokens: with `--api-token` or `--tokens-file`, every task route requires
//! `Authorization: Bearer <token>`, and a token's scope must cover the route (`read` for a GET,
//! `operate` for a write).

use super::ServiceB;
use crate::http::{error, HttpRequest};
use crate::tokens::{Holder, Scope};
use warp::http::{header, StatusCode};
use warp::reply::Response;

impl ServiceB {
    /// Ok(None) when no token is configured (then writes are for loopback only); Ok(holder) for
    /// a token in force whose scope covers `needed`; otherwise the 401 (with `WWW-Authenticate`)
    /// or the 403 that names the scope missing.
    pub(super) fn authorize(&self, request: &HttpRequest, needed: Scope) -> Result<Option<Holder>, Box<Response>> {
        if !self.tokens.required() {
            return Ok(None);
        }
        let presented = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let Some(holder) = presented.and_then(|token| self.tokens.check(token)) else {
            let mut denied = error(
                StatusCode::UNAUTHORIZED,
                "Missing or wrong bearer token in the Authorization header",
            );
            denied.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("a valid header value"),
            );
            return Err(Box::new(denied));
        };
        if holder.scope < needed {
            tracing::warn!(token = %holder.name, scope = holder.scope.name(), path = %request.path, "token scope too narrow; refused");
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                format!(
                    "Token `{}` has scope {}; this route needs {}",
                    holder.name,
                    holder.scope.name(),
                    needed.name()
                ),
            )));
        }
        Ok(Some(holder))
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

#[cfg(test)]
mod tests;
