//! Route tables: each service lists its routes as (method, path pattern, handler) rows, which
//! its `handle` looks requests up in and the OpenAPI checks enumerate, so a route cannot be
//! served without being documented, nor documented without being served.

use super::{method_not_allowed, HttpRequest};
use warp::http::Method;
use warp::reply::Response;

/// One row: a method (None: every method alike, as the health routes take), a path pattern
/// whose `{name}` segments take any one segment, and what answers.
pub struct Route<H> {
    pub method: Option<Method>,
    pub pattern: &'static str,
    pub handler: H,
}

impl<H> Route<H> {
    pub fn on(method: Method, pattern: &'static str, handler: H) -> Route<H> {
        Route {
            method: Some(method),
            pattern,
            handler,
        }
    }

    pub fn any(pattern: &'static str, handler: H) -> Route<H> {
        Route {
            method: None,
            pattern,
            handler,
        }
    }
}

/// The raw (still percent-encoded) path segments that `{name}` segments of a pattern took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params<'p>(Vec<(&'static str, &'p str)>);

impl<'p> Params<'p> {
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, value)| *value)
    }
}

/// What a table says about a request.
pub enum Lookup<'t, 'p, H> {
    Found(&'t H, Params<'p>),
    /// The path is served, but not on this method: the 405, with the methods it takes.
    WrongMethod(Response),
    /// No row knows the path: the service's 404, or (for a wrapper) the service's own routes.
    NoPath,
}

/// A service's rows, in the order `Allow` lists a path's methods.
pub struct Table<H>(Vec<Route<H>>);

impl<H> Table<H> {
    pub fn new(routes: Vec<Route<H>>) -> Table<H> {
        Table(routes)
    }

    /// Every row as (method, pattern), None standing for every method: what the OpenAPI
    /// document must list.
    pub fn served(&self) -> Vec<(Option<Method>, &'static str)> {
        self.0
            .iter()
            .map(|route| (route.method.clone(), route.pattern))
            .collect()
    }

    /// The row for the request's path and method. The first pattern that matches the path owns
    /// it (no two patterns of a table match the same path), and only its rows are tried.
    pub fn lookup<'t, 'p>(&'t self, request: &'p HttpRequest) -> Lookup<'t, 'p, H> {
        let Some((pattern, params)) = self.0.iter().find_map(|route| {
            let params = matches(route.pattern, &request.path)?;
            Some((route.pattern, params))
        }) else {
            return Lookup::NoPath;
        };
        let rows = || self.0.iter().filter(move |route| route.pattern == pattern);
        let taken = rows().find(|route| route.method.as_ref().is_none_or(|m| *m == request.method));
        match taken {
            Some(route) => Lookup::Found(&route.handler, params),
            None => {
                let allowed: Vec<&str> = rows().filter_map(|r| r.method.as_ref()).map(Method::as_str).collect();
                Lookup::WrongMethod(method_not_allowed(request, &allowed.join(", ")))
            }
        }
    }
}

/// The pattern of the first row of any service's table that `path` matches, or "other": a label
/// for metrics that can never hold an id, a key or a raw path.
pub fn template(path: &str) -> &'static str {
    static PATTERNS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut patterns = Vec::new();
        for service in [super::openapi::Service::A, super::openapi::Service::B] {
            for (_, pattern) in super::openapi::routes(service) {
                if !patterns.contains(&pattern) {
                    patterns.push(pattern);
                }
            }
        }
        patterns
    });
    PATTERNS
        .iter()
        .find(|pattern| matches(pattern, path).is_some())
        .copied()
        .unwrap_or("other")
}

/// Matches segment by segment: a `{name}` takes any one segment, an empty one too (the id
/// checks answer for it, not the router). A path without its leading `/` matches nothing; the
/// edge refuses such request targets before any route runs.
fn matches<'p>(pattern: &'static str, path: &'p str) -> Option<Params<'p>> {
    let path = path.strip_prefix('/')?;
    let pattern = pattern.strip_prefix('/').expect("a pattern starts with /");
    let (mut wanted, mut given) = (pattern.split('/'), path.split('/'));
    let mut params = Params::default();
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(want), Some(segment)) => match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(name) => params.0.push((name, segment)),
                None if want == segment => {}
                None => return None,
            },
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests;
