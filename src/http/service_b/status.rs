//! Service B's status route, `GET /api/v1/equipment/cpe/{id}/task/{task}`, with `?wait=`.

use super::ServiceB;
use crate::http::query::wait_param;
use crate::http::{error, reply, tasks, PROVISIONING_FAILED, TASK_NOT_FOUND};
use cpe_actors::registry::Watch;
use cpe_actors::{EquipmentId, TaskId, TaskRecord, TaskStatus};
use serde_json::json;
use warp::http::{header, StatusCode};
use warp::reply::Response;

/// `Retry-After` of a running task's answer: a configuration takes about a minute.
const RETRY_AFTER_SECONDS: &str = "5";

impl ServiceB {
    /// The task's status; with `?wait=`, answered as soon as the task is final, or after the wait
    /// with the running answer. The registry tells the waiter: no polling of the store.
    pub(super) async fn status(&self, equipment: EquipmentId, task: &str, query: &str) -> Response {
        let Some(task_id) = TaskId::parse(task) else {
            return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND);
        };
        let wait = match wait_param(query) {
            Ok(wait) => wait,
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        };
        let found = match wait {
            None => self.registry.get(task_id).await,
            Some(wait) => match self.registry.watch(task_id).await {
                Ok(Some(Watch {
                    finished: Some(finished),
                    now,
                })) if now.equipment_id == equipment => {
                    // Only what the answer shows is kept while waiting, not the task's request.
                    let shown = Shown::from(&now);
                    drop(now);
                    let later = tokio::time::timeout(wait, finished).await;
                    return answer(
                        later
                            .ok()
                            .and_then(Result::ok)
                            .map_or(shown, |done| Shown::from(&*done)),
                    );
                }
                other => other.map(|watch| watch.map(|watch| std::sync::Arc::new(watch.now))),
            },
        };
        match found {
            Ok(Some(record)) if record.equipment_id == equipment => answer(Shown::from(&*record)),
            Ok(_) => error(StatusCode::NOT_FOUND, TASK_NOT_FOUND),
            Err(store_error) => tasks::unavailable(store_error),
        }
    }
}

/// What a status answer shows of a task: its record without the request (and its parameters).
struct Shown {
    status: TaskStatus,
    attempts: u32,
    last_error: Option<String>,
    retried_as: Option<TaskId>,
}

impl From<&TaskRecord> for Shown {
    fn from(record: &TaskRecord) -> Self {
        Self {
            status: record.status,
            attempts: record.attempts,
            last_error: record.last_error.clone(),
            retried_as: record.retried_as,
        }
    }
}

fn answer(task: Shown) -> Response {
    let (code, message) = match task.status {
        TaskStatus::Queued | TaskStatus::Running => (204, "Task is still running"),
        TaskStatus::Completed => (200, "Completed"),
        TaskStatus::Failed => (500, PROVISIONING_FAILED),
        TaskStatus::Cancelled => (410, "Task was cancelled"),
    };
    let mut body = json!({
        "code": code,
        "message": message,
        "status": task.status,
        "attempts": task.attempts,
    });
    if let Some(last_error) = task.last_error {
        body["lastError"] = json!(last_error);
    }
    if let Some(retried_as) = task.retried_as {
        body["retriedAs"] = json!(retried_as.to_string());
    }
    let mut response = reply(StatusCode::OK, body);
    if !task.status.is_final() {
        // When to ask again; a client using `?wait=` may ask again at once.
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}
