//! Reading Service A's answers without trusting them: bounded reads, the success check, and the
//! cleaning of an error body (secrets redacted, control characters escaped, cut on a character).

use cpe_actors::ConfigRequest;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// The most characters of a body kept in an error (and so in `lastError` and the logs).
const SHOWN_CHARS: usize = 300;
/// Numbers shorter than this are not redacted: single digits (interface numbers) would blank out
/// every status code and count in the text, and they are not secrets.
const MIN_REDACTED_DIGITS: usize = 3;
const REDACTED: &str = "[redacted]";

/// The first bytes of a body; `cut` when there was more.
#[derive(Debug, Default)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub cut: bool,
}

/// Reads chunk by chunk and stops at `cap`: the rest is never received (the connection, or the
/// HTTP/2 stream, is dropped with the response), so a 100 MB body costs at most `cap` bytes.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Body, reqwest::Error> {
    let mut body = Body::default();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.bytes.len();
        if chunk.len() > room {
            body.bytes.extend_from_slice(&chunk[..room]);
            body.cut = true;
            break;
        }
        body.bytes.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The contract's success answer: a JSON object with `"code": 200` and `"message": "success"`
/// (other fields are allowed).
pub fn is_success(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => {
            map.get("code").and_then(Value::as_u64) == Some(200)
                && map.get("message").and_then(Value::as_str) == Some("success")
        }
        _ => false,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date; None when absent or unreadable (the plain
/// backoff applies then). A date in the past means now.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time"; the worker caps it anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The values of a request's parameters, in the spellings an echo of the request would use.
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn of(request: &ConfigRequest) -> Self {
        let mut found = Vec::new();
        if let Some(Value::Object(parameters)) = request.to_value().get("parameters") {
            for value in parameters.values() {
                collect(value, &mut found);
            }
        }
        // Longest first, so a value that contains another is redacted whole.
        found.sort_by_key(|s| std::cmp::Reverse(s.len()));
        found.dedup();
        Self(found)
    }
}

fn collect(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) if !text.is_empty() => {
            found.push(text.clone());
            // As it appears inside a JSON echo: quotes, backslashes and controls escaped.
            let quoted = Value::String(text.clone()).to_string();
            found.push(quoted[1..quoted.len() - 1].to_owned());
        }
        Value::Number(number) => {
            let digits = number.to_string();
            if digits.trim_start_matches('-').len() >= MIN_REDACTED_DIGITS {
                found.push(digits);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

/// What an error keeps of a body: decoded (a character cut by the byte cap is dropped), every
/// parameter value replaced by `[redacted]` (also a value's beginning left at the end by the cap),
/// control and bidirectional characters escaped so the text cannot forge log lines or colour a
/// terminal, and at most [`SHOWN_CHARS`] characters.
pub fn describe(body: &Body, secrets: &Secrets) -> String {
    if body.bytes.is_empty() {
        return "(empty body)".into();
    }
    let mut text = decode(&body.bytes);
    for secret in &secrets.0 {
        if text.contains(secret.as_str()) {
            text = redact(&text, secret);
        }
    }
    if body.cut {
        redact_cut_tail(&mut text, secrets);
    }
    let escaped = escape_controls(&text);
    let mut shown: String = escaped.chars().take(SHOWN_CHARS).collect();
    if body.cut || shown.len() < escaped.len() {
        shown.push_str(" …(cut)");
    }
    shown
}

/// Replaces every occurrence of `secret`; a number only where it stands alone (534 in "vlan 534",
/// not in "15340"), so other figures in the text stay readable.
fn redact(text: &str, secret: &str) -> String {
    let numeric = secret.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit());
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in text.match_indices(secret) {
        if at < rest {
            continue;
        }
        let end = at + secret.len();
        let digit = |i: Option<&u8>| i.is_some_and(u8::is_ascii_digit);
        if numeric && (digit(text.as_bytes().get(end)) || at > 0 && digit(text.as_bytes().get(at - 1))) {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push_str(REDACTED);
        rest = end;
    }
    out.push_str(&text[rest..]);
    out
}

/// UTF-8 up to the last whole character; anything else invalid becomes U+FFFD.
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(error) if error.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The cap may have cut an echoed value in two: its first part, at the very end, goes too.
fn redact_cut_tail(text: &mut String, secrets: &Secrets) {
    let longest = secrets
        .0
        .iter()
        .filter_map(|secret| {
            (1..secret.len())
                .rev()
                .filter(|&n| secret.is_char_boundary(n))
                .find(|&n| text.ends_with(&secret[..n]))
        })
        .max();
    if let Some(n) = longest {
        text.truncate(text.len() - n);
        text.push_str(REDACTED);
    }
}

/// Escapes control characters (newlines, ESC of ANSI sequences) and the characters that reorder
/// or break lines (bidi overrides, line and paragraph separators), as `\n` or `\u{1b}`.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let reorders = matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || reorders {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
