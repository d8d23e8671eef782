//! Bulk operator actions on Service B: `POST /api/v1/tasks/retry` re-runs every failed task that
//! matches a filter, `POST /api/v1/tasks/cancel` cancels every queued one ("Service A was down for
//! an hour: re-run everything that failed"). One audit record tells what a call did: its filter
//! and its counts, written once the walk ends (or stops midway).

use super::query::shown;
use super::tasks::{retry_one, unavailable, By};
use super::{error, reply};
use cpe_actors::observe::{Finished, Observer};
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Cancel, RegistryHandle, Retry};
use cpe_actors::{AuditAction, AuditRecord, BulkCounts, EquipmentId, TaskQuery, TaskStatus};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// Devices one bulk call may name.
const MAX_DEVICES: usize = 1_000;
/// Tasks read per page while walking the matches.
const PAGE: usize = 500;

/// The body, an object: which tasks. The devices, or `"all": true`; never nothing, so a body left
/// empty by mistake does not act on every task.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    equipment_ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

#[derive(Clone, Copy)]
pub enum Action {
    Retry,
    Cancel,
}

impl Action {
    pub fn audit_action(self) -> AuditAction {
        match self {
            Self::Retry => AuditAction::BulkRetry,
            Self::Cancel => AuditAction::BulkCancel,
        }
    }

    /// The one status the action applies to.
    fn status(self) -> TaskStatus {
        match self {
            Self::Retry => TaskStatus::Failed,
            Self::Cancel => TaskStatus::Queued,
        }
    }
}

/// `draft` is the call's audit record, completed with the filter and the counts.
pub async fn run(
    registry: &RegistryHandle,
    publisher: &Arc<dyn TaskPublisher>,
    observer: &dyn Observer,
    action: Action,
    body: &[u8],
    mut draft: AuditRecord,
) -> Response {
    let devices = match read_filter(action, body) {
        Ok(devices) => devices,
        Err((status, message)) => return error(status, message),
    };
    draft.filter = Some(match devices.is_empty() {
        true => json!({"all": true}),
        false => json!({"equipmentIds": devices.iter().map(EquipmentId::as_str).collect::<Vec<_>>()}),
    });
    draft.equipment_ids = devices.clone();
    let walked = walk(registry, publisher, observer, action, devices, &draft.actor).await;
    let (answer, counts, outcome) = match walked {
        Ok(counts) => (
            reply(
                StatusCode::OK,
                json!({"code": 200, "done": counts.done, "skipped": counts.skipped}),
            ),
            counts,
            "done",
        ),
        Err((cause, counts)) => (partial(cause, counts), counts, "stopped midway"),
    };
    draft.counts = Some(counts);
    let record = draft.ended(answer.status().as_u16(), outcome);
    if let Err(store_error) = registry.record(record).await {
        tracing::warn!(%store_error, "could not record a bulk action in the audit trail");
    }
    answer
}

/// Acts on each matching task; the counts so far, and the cause, when it stops midway.
async fn walk(
    registry: &RegistryHandle,
    publisher: &Arc<dyn TaskPublisher>,
    observer: &dyn Observer,
    action: Action,
    devices: Vec<EquipmentId>,
    actor: &str,
) -> Result<BulkCounts, (Response, BulkCounts)> {
    let mut counts = BulkCounts::default();
    let scopes: Vec<Option<EquipmentId>> = if devices.is_empty() {
        vec![None]
    } else {
        devices.into_iter().map(Some).collect()
    };
    for equipment in scopes {
        let mut query = TaskQuery {
            equipment,
            statuses: vec![action.status()],
            limit: PAGE,
            before: None,
        };
        loop {
            let page = registry
                .list(query.clone())
                .await
                .map_err(|store_error| (unavailable(store_error), counts))?;
            for task in &page.tasks {
                let acted = match action {
                    Action::Retry => {
                        let by = By {
                            actor: actor.to_owned(),
                            audit: None,
                        };
                        match retry_one(registry, publisher, task.equipment_id.clone(), task.id, by).await {
                            Ok(Retry::Created(_)) => true,
                            Ok(_) => false,
                            Err(response) => return Err((response, counts)),
                        }
                    }
                    Action::Cancel => match registry.cancel(task.id, task.equipment_id.clone(), None).await {
                        Ok(Cancel::Cancelled) => {
                            observer.task_finished(Finished::Cancelled);
                            true
                        }
                        Ok(_) => false,
                        Err(store_error) => return Err((unavailable(store_error), counts)),
                    },
                };
                if acted {
                    counts.done += 1;
                } else {
                    counts.skipped += 1;
                }
            }
            match page.next {
                Some(next) => query.before = Some(next),
                None => break,
            }
        }
    }
    Ok(counts)
}

/// The devices named by the filter, each once (empty: `"all": true`); otherwise the status and
/// message of the refusal.
fn read_filter(action: Action, body: &[u8]) -> Result<Vec<EquipmentId>, (StatusCode, String)> {
    let refuse = |message: String| Err((StatusCode::UNPROCESSABLE_ENTITY, message));
    let only = action.status().name();
    let spelled = format!("give equipmentIds, or {{\"all\": true}} for every {only} task");
    let not_a_filter = |e: serde_json::Error| {
        let status = if e.is_syntax() || e.is_eof() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        (status, format!("Request body is not a valid filter: {e}"))
    };
    // serde would read a struct from an array too: `[]` must not mean "every task"; nor may an
    // empty body.
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if empty || body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        if !empty {
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_a_filter)?;
        }
        return refuse(format!("The filter must be a JSON object: {spelled}"));
    }
    let filter: Filter = serde_json::from_slice(body).map_err(not_a_filter)?;
    if let Some(other) = filter.status.iter().find(|s| s.as_str() != only) {
        return refuse(format!("status may only be [\"{only}\"] here, got `{}`", shown(other)));
    }
    if filter.equipment_ids.len() > MAX_DEVICES {
        return refuse(format!("equipmentIds may name at most {MAX_DEVICES} devices"));
    }
    match (filter.all, filter.equipment_ids.is_empty()) {
        (false, true) => return refuse(format!("The filter names no tasks: {spelled}")),
        (true, false) => return refuse("\"all\": true and equipmentIds exclude each other: give one".into()),
        _ => {}
    }
    let mut devices: Vec<EquipmentId> = Vec::with_capacity(filter.equipment_ids.len());
    for raw in &filter.equipment_ids {
        match EquipmentId::parse(raw) {
            // A device named twice is walked once: each task is counted once.
            Ok(device) if devices.contains(&device) => {}
            Ok(device) => devices.push(device),
            Err(_) => {
                return refuse(format!(
                    "equipmentIds: `{}` is not an equipment id (6 or more letters and digits)",
                    shown(raw)
                ))
            }
        }
    }
    Ok(devices)
}

/// A failure midway: nothing is undone, and the same call may be made again (it skips what is done).
fn partial(cause: Response, BulkCounts { done, skipped }: BulkCounts) -> Response {
    tracing::warn!(done, skipped, status = %cause.status(), "bulk action stopped midway");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "Stopped midway, after {done} done and {skipped} skipped: the task store or queue is \
             unavailable; send the same request again to go on"
        ),
    )
}
