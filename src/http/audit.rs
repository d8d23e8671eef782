//! `GET /api/v1/audit`: the audit trail, newest first, by cursor, with filters (actor, action,
//! device, since), and the JSON of one record.

use super::query::{pairs, parse_limit, shown, DEFAULT_LIMIT};
use super::tasks::{rfc3339, unavailable};
use super::{error, reply};
use cpe_actors::registry::RegistryHandle;
use cpe_actors::{AuditAction, AuditQuery, AuditRecord, EquipmentId};
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;

pub const PATH: &str = "/api/v1/audit";

/// What an actor's name may be: a token's name (1 to 64 letters, digits, `-`, `_`, `.`), `loopback`
/// or `anonymous`.
pub const ACTOR_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

pub const LOOPBACK_ONLY: &str = "The audit trail is served only to loopback (127.0.0.1 or ::1) when the service \
                                 runs without a token; set --api-token or --tokens-file to read it from elsewhere";

pub fn loopback_only() -> Response {
    error(StatusCode::FORBIDDEN, LOOPBACK_ONLY)
}

pub async fn list(registry: &RegistryHandle, query: &str) -> Response {
    let query = match params(query, cpe_actors::domain::now_millis()) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match registry.audit(query).await {
        Ok(page) => reply(
            StatusCode::OK,
            json!({
                "code": 200,
                "records": page.records.iter().map(record_json).collect::<Vec<_>>(),
                "nextCursor": page.next.map(|id| id.to_string()),
            }),
        ),
        Err(store_error) => unavailable(store_error),
    }
}

/// The query string: each parameter at most once. `since` is a duration back from `now`
/// (`24h`) or a time in milliseconds since the Unix epoch.
pub fn params(query: &str, now: u64) -> Result<AuditQuery, String> {
    const KNOWN: [&str; 6] = ["actor", "action", "equipmentId", "since", "limit", "cursor"];
    let given = pairs(query, &KNOWN)?;
    let mut out = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    for (name, value) in given {
        if seen.contains(&name) {
            return Err(format!(
                "Query parameter `{name}` is given more than once; give it once"
            ));
        }
        seen.push(name);
        match name {
            "actor" => out.actor = Some(actor(value)?),
            "action" => {
                out.action = Some(AuditAction::from_name(value).ok_or_else(|| {
                    let names: Vec<_> = AuditAction::ALL.iter().map(|a| a.name()).collect();
                    format!("action `{}` is not one of {}", shown(value), names.join(", "))
                })?)
            }
            "equipmentId" => {
                out.equipment = Some(
                    EquipmentId::parse(value)
                        .map_err(|_| format!("equipmentId `{}` is not an equipment id", shown(value)))?,
                )
            }
            "since" => out.since = Some(since(value, now)?),
            "limit" => out.limit = parse_limit(value)?,
            _ => {
                out.before = Some(value.parse().ok().filter(|_| value.len() <= 19).ok_or_else(|| {
                    "cursor is not one this service gave out: pass `nextCursor` of the page before".to_string()
                })?)
            }
        }
    }
    Ok(out)
}

/// An actor's name as the trail records it: a token's name, `loopback` or `anonymous`.
fn actor(value: &str) -> Result<String, String> {
    if (1..=64).contains(&value.len()) && !value.contains(',') {
        return Ok(value.to_owned());
    }
    Err(format!(
        "actor `{}` is not a token name (1 to 64 letters, digits, `-`, `_`, `.`), `loopback` or `anonymous`",
        shown(value)
    ))
}

/// `since`: up to 15 digits, and a unit (`ms`, `s`, `m`, `h`, `d`) for a time back from `now`, or
/// none for milliseconds since the epoch. A time further back than the epoch means from the start.
fn since(value: &str, now: u64) -> Result<u64, String> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let refused = || {
        format!(
            "since `{}` is not a duration back (24h, 7d) or milliseconds since the epoch (up to 15 digits)",
            shown(value)
        )
    };
    let number: u64 = match digits.len() {
        1..=15 => digits.parse().map_err(|_| refused())?,
        _ => return Err(refused()),
    };
    let per_unit: u64 = match unit {
        "" => return Ok(number),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(refused()),
    };
    Ok(now.saturating_sub(number.saturating_mul(per_unit)))
}

/// A record as the API shows it.
pub fn record_json(record: &AuditRecord) -> Value {
    json!({
        "id": record.id.to_string(),
        "at": rfc3339(record.at),
        "actor": record.actor,
        "source": record.source,
        "action": record.action.name(),
        "route": record.route,
        "taskIds": record.task_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "equipmentIds": record.equipment_ids.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "filter": record.filter,
        "counts": record.counts.map(|c| json!({"done": c.done, "skipped": c.skipped})),
        "idempotencyKey": record.idempotency_key,
        "status": record.status,
        "outcome": record.outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_is_read_once_and_checked() {
        let query = params(
            "actor=ops-1&action=bulkRetry&equipmentId=abc123&since=2h&limit=5&cursor=42",
            10_000_000,
        )
        .unwrap();
        assert_eq!(query.actor.as_deref(), Some("ops-1"));
        assert_eq!(query.action, Some(AuditAction::BulkRetry));
        assert_eq!(query.equipment.as_ref().map(|e| e.as_str()), Some("abc123"));
        assert_eq!(
            (query.since, query.limit, query.before),
            (Some(10_000_000 - 7_200_000), 5, Some(42))
        );
        assert_eq!(params("since=1700000000000", 0).unwrap().since, Some(1_700_000_000_000));
        for bad in [
            "actor=a&actor=b",
            "action=delete",
            "since=soon",
            "limit=0",
            "cursor=x",
            "equipmentId=a",
            "who=me",
        ] {
            assert!(params(bad, 0).is_err(), "{bad} is refused");
        }
    }
}
