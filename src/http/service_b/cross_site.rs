//! No cross-site writes: a page of another origin in the operator's browser must not create,
//! cancel or retry tasks, with or without a token (a browser on the operator's machine is a
//! loopback client). A browser names the page's origin on every cross-origin write (`Origin`, and
//! `Sec-Fetch-Site` in current ones), and a form or a `no-cors` fetch can only send a form or
//! `text/plain` body: so a write says where it comes from, and its body is JSON.

use crate::http::{error, HttpRequest};
use warp::http::{header, HeaderMap, StatusCode};
use warp::reply::Response;

pub const CROSS_SITE: &str = "Cross-site request refused: a write must come from this service's own origin";
pub const NOT_JSON: &str = "Content-Type must be application/json: a write's body is JSON";

/// A 403 when the request says it comes from another site (`Sec-Fetch-Site`), or names an origin
/// other than the one it was sent to (`Origin` against `Host`). Clients that are not browsers send
/// neither header and pass.
pub fn refuse_cross_site(request: &HttpRequest) -> Option<Response> {
    let fetch_site = text(&request.headers, "sec-fetch-site");
    if fetch_site.is_some_and(|site| !matches!(site, "same-origin" | "none")) {
        return Some(error(StatusCode::FORBIDDEN, CROSS_SITE));
    }
    let origin = text(&request.headers, header::ORIGIN.as_str())?;
    let asked = request.authority.as_deref().map(without_default_port);
    let same = origin_authority(origin).is_some_and(|from| asked == Some(without_default_port(&from)));
    (!same).then(|| error(StatusCode::FORBIDDEN, CROSS_SITE))
}

/// A 415 when a body is declared as anything but JSON. No `Content-Type` is taken as JSON, as the
/// original system took it; a browser cannot send a cross-site write without one.
pub fn refuse_non_json(request: &HttpRequest) -> Option<Response> {
    let declared = text(&request.headers, header::CONTENT_TYPE.as_str())?;
    let essence = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    (!json).then(|| error(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON))
}

/// A header's value, when it is given once and is text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap_or("\u{0}"))
}

/// `host:443` is `host`, as an `Origin` writes it.
fn without_default_port(authority: &str) -> &str {
    authority.strip_suffix(":443").unwrap_or(authority)
}

/// `host[:port]` of an `Origin` such as `https://example.com:8181`, lower-case; None for `null`
/// or anything that is not an https origin.
fn origin_authority(origin: &str) -> Option<String> {
    let rest = origin.strip_prefix("https://")?;
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@'])).then(|| rest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(headers: &[(&'static str, &str)], authority: Option<&str>) -> HttpRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        HttpRequest {
            method: warp::http::Method::POST,
            path: "/api/v1/tasks/cancel".into(),
            query: String::new(),
            headers: map,
            body: Default::default(),
            peer: None,
            authority: authority.map(str::to_owned),
        }
    }

    #[test]
    fn a_write_from_another_origin_or_site_is_refused_and_a_same_origin_one_passes() {
        let here = Some("127.0.0.1:8181");
        for refused in [
            write(&[("origin", "https://evil.example")], here),
            write(&[("origin", "null")], here),
            write(&[("origin", "http://127.0.0.1:8181")], here),
            write(&[("origin", "https://127.0.0.1:9999")], here),
            write(&[("origin", "https://127.0.0.1:8181")], None),
            write(&[("sec-fetch-site", "cross-site")], here),
            write(
                &[("sec-fetch-site", "same-site"), ("origin", "https://127.0.0.1:8181")],
                here,
            ),
        ] {
            assert!(refuse_cross_site(&refused).is_some(), "{:?}", refused.headers);
        }
        for passed in [
            write(&[], here),
            write(
                &[("origin", "https://127.0.0.1:8181"), ("sec-fetch-site", "same-origin")],
                here,
            ),
            write(&[("origin", "https://LOCALHOST:8181")], Some("localhost:8181")),
            write(&[("sec-fetch-site", "none")], here),
            write(&[("origin", "https://cpe.example")], Some("cpe.example:443")),
        ] {
            assert!(refuse_cross_site(&passed).is_none(), "{:?}", passed.headers);
        }
    }

    #[test]
    fn only_a_json_body_or_none_declared_is_a_write() {
        for refused in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert!(
                refuse_non_json(&write(&[("content-type", refused)], None)).is_some(),
                "{refused}"
            );
        }
        for passed in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(
                refuse_non_json(&write(&[("content-type", passed)], None)).is_none(),
                "{passed}"
            );
        }
        assert!(refuse_non_json(&write(&[], None)).is_none());
    }
}
