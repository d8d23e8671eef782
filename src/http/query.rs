//! Query strings of the operator routes, read strictly: each parameter known, each value checked,
//! and a 400 that names what is wrong. Values are plain ASCII (statuses, numbers, cursors,
//! durations), so percent-escapes are refused rather than decoded.

use crate::duration::parse_duration;
use cpe_actors::{Cursor, TaskId, TaskStatus};
use std::time::Duration;

/// Default and largest page size.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// Longest `?wait=`: longer waits meet proxies' idle timeouts.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// `name=value` pairs; a parameter without `=` has an empty value.
pub fn pairs<'q>(query: &'q str, known: &[&str]) -> Result<Vec<(&'q str, &'q str)>, String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&name) {
            return Err(format!(
                "Unknown query parameter `{}`; this route takes {}",
                shown(name),
                known.join(", ")
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,".contains(&b)) {
            return Err(format!(
                "Query parameter `{name}` must be plain letters, digits, `-`, `_`, `.` or `,`"
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// A parameter that takes one value, given at most once: which of two would win is a guess.
fn once(pairs: &[(&str, &str)], name: &str) -> Result<(), String> {
    match pairs.iter().filter(|(given, _)| *given == name).count() {
        0 | 1 => Ok(()),
        _ => Err(repeated(name)),
    }
}

fn repeated(name: &str) -> String {
    format!("Query parameter `{name}` is given more than once; give it once")
}

/// A listing's page request: statuses (repeatable or comma-separated), limit and cursor.
#[derive(Debug)]
pub struct ListParams {
    pub statuses: Vec<TaskStatus>,
    pub limit: usize,
    pub before: Option<Cursor>,
}

pub fn list_params(query: &str) -> Result<ListParams, String> {
    let mut params = ListParams {
        statuses: Vec::new(),
        limit: DEFAULT_LIMIT,
        before: None,
    };
    let pairs = pairs(query, &["status", "limit", "cursor"])?;
    for single in ["limit", "cursor"] {
        once(&pairs, single)?;
    }
    for (name, value) in pairs {
        match name {
            "status" => {
                for one in value.split(',') {
                    let status = TaskStatus::from_name(one).ok_or_else(|| {
                        let names: Vec<_> = TaskStatus::ALL.iter().map(|s| s.name()).collect();
                        format!("status `{}` is not one of {}", shown(one), names.join(", "))
                    })?;
                    if !params.statuses.contains(&status) {
                        params.statuses.push(status);
                    }
                }
            }
            "limit" => params.limit = parse_limit(value)?,
            _ => params.before = Some(parse_cursor(value)?),
        }
    }
    Ok(params)
}

/// A page size: 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(|| {
            format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got `{}`",
                shown(value)
            )
        })
}

/// `?wait=30s` on the status route: None without it; more than [`MAX_WAIT`] is refused.
/// Other parameters are ignored there, as they always were.
pub fn wait_param(query: &str) -> Result<Option<Duration>, String> {
    let mut waits = query.split('&').filter_map(|pair| pair.strip_prefix("wait="));
    let Some(value) = waits.next() else {
        return Ok(None);
    };
    if waits.next().is_some() {
        return Err(repeated("wait"));
    }
    let wait = parse_duration(value).map_err(|why| format!("wait: {why}"))?;
    if wait > MAX_WAIT {
        return Err(format!("wait may be at most 60s, got `{}`", shown(value)));
    }
    Ok(Some(wait))
}

/// The opaque cursor handed out as `nextCursor`: the hex of the last task's creation time and id.
pub fn format_cursor(cursor: Cursor) -> String {
    format!(
        "{:016x}{}",
        cursor.created_at,
        uuid::Uuid::from_bytes(*cursor.id.as_bytes()).simple()
    )
}

fn parse_cursor(raw: &str) -> Result<Cursor, String> {
    let refused = || "cursor is not one this service gave out: pass `nextCursor` of the page before".to_string();
    if raw.len() != 48 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let created_at = u64::from_str_radix(&raw[..16], 16).map_err(|_| refused())?;
    let id = uuid::Uuid::try_parse(&raw[16..]).map_err(|_| refused())?;
    Ok(Cursor {
        created_at,
        id: TaskId::from_bytes(*id.as_bytes()),
    })
}

/// Echoes at most 40 characters of what the client sent, so a message cannot be made huge.
pub(super) fn shown(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests;
