//! Service B's operator routes over the registry: task listing and search, cancel, and the task
//! JSON they answer with (never the parameters).

use super::query::{format_cursor, list_params};
use super::{error, reply, TASK_NOT_FOUND};
use cpe_actors::observe::{Finished, Observer};
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Cancel, RegistryHandle, Retry};
use cpe_actors::{AuditRecord, EquipmentId, TaskId, TaskQuery, TaskRecord};
use serde_json::{json, Value};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// `GET /api/v1/tasks` and `GET /api/v1/equipment/cpe/{id}/tasks`: one page, newest first.
pub async fn list(registry: &RegistryHandle, equipment: Option<EquipmentId>, query: &str) -> Response {
    let params = match list_params(query) {
        Ok(params) => params,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let query = TaskQuery {
        equipment,
        statuses: params.statuses,
        limit: params.limit,
        before: params.before,
    };
    match registry.list(query).await {
        Ok(page) => reply(
            StatusCode::OK,
            json!({
                "code": 200,
                "tasks": page.tasks.iter().map(task_json).collect::<Vec<_>>(),
                "nextCursor": page.next.map(format_cursor),
            }),
        ),
        Err(store_error) => unavailable(store_error),
    }
}

/// `DELETE /api/v1/equipment/cpe/{id}/task/{task}`: a queued task is cancelled and never runs.
/// A cancel is a task's final outcome: `observer` counts it with the others. `draft` is its audit
/// record, written with the cancel.
pub async fn cancel(
    registry: &RegistryHandle,
    observer: &dyn Observer,
    equipment: EquipmentId,
    task: &str,
    draft: AuditRecord,
) -> Response {
    let Some(task_id) = TaskId::parse(task) else {
        return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND);
    };
    let audit = Some(Box::new(draft.ended(200, "cancelled")));
    match registry.cancel(task_id, equipment, audit).await {
        Ok(Cancel::Cancelled) => {
            observer.task_finished(Finished::Cancelled);
            reply(
                StatusCode::OK,
                json!({"code": 200, "message": "Task was cancelled", "status": "cancelled"}),
            )
        }
        Ok(Cancel::NotFound) => error(StatusCode::NOT_FOUND, TASK_NOT_FOUND),
        Ok(Cancel::Running) => error(
            StatusCode::CONFLICT,
            "Task is running at the device and cannot be cancelled; wait for its outcome",
        ),
        Ok(Cancel::Final(status)) => error(
            StatusCode::CONFLICT,
            format!("Task is {} already and cannot be cancelled", status.name()),
        ),
        Err(store_error) => unavailable(store_error),
    }
}

/// `POST /api/v1/equipment/cpe/{id}/task/{task}/retry`: a failed task's request runs again as a
/// new task, stored and queued before the answer (promise 1), like a create. `draft` is its audit
/// record, written with the retry; its actor is the new task's requester.
pub async fn retry(
    registry: &RegistryHandle,
    publisher: &Arc<dyn TaskPublisher>,
    equipment: EquipmentId,
    task: &str,
    draft: AuditRecord,
) -> Response {
    let Some(task_id) = TaskId::parse(task) else {
        return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND);
    };
    // Detached, so a client that leaves cannot strand a stored retry that was never queued.
    let (registry, publisher) = (registry.clone(), publisher.clone());
    let work = tokio::spawn(async move {
        let by = By::audited(draft.ended(200, "retried"));
        answer_retry(retry_one(&registry, &publisher, equipment, task_id, by).await)
    });
    work.await.unwrap_or_else(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Retry could not be made; retry shortly",
        )
    })
}

fn answer_retry(retried: Result<Retry, Response>) -> Response {
    match retried {
        Ok(Retry::Created(task)) => reply(StatusCode::OK, json!({"code": 200, "taskId": task.task_id.to_string()})),
        Ok(Retry::NotFound) => error(StatusCode::NOT_FOUND, TASK_NOT_FOUND),
        Ok(Retry::NotFailed(status)) => error(
            StatusCode::CONFLICT,
            format!("Task is {}; only a failed task can be retried", status.name()),
        ),
        Ok(Retry::AlreadyRetried(new_task)) => error(
            StatusCode::CONFLICT,
            format!("Task was retried already, as task {new_task}"),
        ),
        Err(response) => response,
    }
}

/// Who asks for a retry: the new task's requester, and the retry's own audit record unless the
/// caller records the change itself (a bulk action, once for all its tasks).
pub struct By {
    pub actor: String,
    pub audit: Option<AuditRecord>,
}

impl By {
    pub fn audited(record: AuditRecord) -> Self {
        Self {
            actor: record.actor.clone(),
            audit: Some(record),
        }
    }
}

/// Stores the retry and queues its new task; undoes the retry when the queue refuses it (and
/// records the undoing, when the retry was recorded).
pub async fn retry_one(
    registry: &RegistryHandle,
    publisher: &Arc<dyn TaskPublisher>,
    equipment: EquipmentId,
    task_id: TaskId,
    by: By,
) -> Result<Retry, Response> {
    let audit = by.audit.clone().map(Box::new);
    let retry = registry
        .retry(task_id, equipment, Some(by.actor), audit)
        .await
        .map_err(unavailable)?;
    if let Retry::Created(task) = &retry {
        if let Err(queue_error) = publisher.publish(task).await {
            tracing::error!(%task_id, %queue_error, "could not queue a retry; undone");
            if let Err(store_error) = registry.undo_retry(task_id, task.task_id).await {
                tracing::warn!(%task_id, %store_error, "could not undo the unqueued retry");
            }
            if let Some(mut undone) = by.audit {
                undone.task_ids = vec![task.task_id, task_id];
                let undone = undone.ended(503, "withdrawn: the task queue was unavailable");
                if let Err(store_error) = registry.record(undone).await {
                    tracing::warn!(%task_id, %store_error, "could not record the withdrawn retry");
                }
            }
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Task queue unavailable; the task was not retried, retry shortly",
            ));
        }
        registry.published(task.task_id);
        tracing::info!(%task_id, new_task_id = %task.task_id, equipment_id = %task.equipment_id, "task retried");
    }
    Ok(retry)
}

pub fn unavailable(store_error: cpe_actors::ports::StoreError) -> Response {
    if store_error.is_conflict() {
        // Still racing after the registry read again: busy, not broken.
        tracing::warn!(%store_error, "a task kept changing under a request");
    } else {
        tracing::error!(%store_error, "could not read or change tasks");
    }
    error(StatusCode::SERVICE_UNAVAILABLE, "Task store unavailable; retry shortly")
}

/// A task as listings show it: what an operator needs, never its parameters.
pub fn task_json(record: &TaskRecord) -> Value {
    json!({
        "taskId": record.id.to_string(),
        "equipmentId": record.equipment_id.as_str(),
        "status": record.status.name(),
        "attempts": record.attempts,
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
        "lastError": record.last_error,
        "retriedAs": record.retried_as.map(|id| id.to_string()),
        "requestedBy": record.requested_by,
    })
}

/// Milliseconds since the epoch as RFC 3339 UTC, like `2026-12-02T16:36:08.123Z`.
pub fn rfc3339(millis: u64) -> String {
    let (days, rest) = (millis / 86_400_000, millis % 86_400_000);
    let (year, month, day) = civil_from_days(days as i64);
    let (hour, minute) = (rest / 3_600_000, rest / 60_000 % 60);
    let (second, milli) = (rest / 1_000 % 60, rest % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
