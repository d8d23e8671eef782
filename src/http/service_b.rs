//! Service B (`config_status_service`): accepts a configuration task at once and reports its status.

use super::health::{self, Readiness};
use super::{
    error, method_not_allowed, no_route, reply, request_error, HttpRequest, Routes, CPE_PREFIX, EQUIPMENT_NOT_FOUND,
    PROVISIONING_FAILED, TASK_NOT_FOUND,
};
use async_trait::async_trait;
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Created, RegistryHandle};
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord, TaskStatus};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;

pub struct ServiceB {
    pub registry: RegistryHandle,
    pub publisher: Arc<dyn TaskPublisher>,
    pub readiness: Readiness,
    /// When set, every task route requires `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
}

#[async_trait]
impl Routes for ServiceB {
    async fn handle(&self, request: HttpRequest) -> Response {
        if let Some(answer) = health::answer(&request, "config_status_service", &self.readiness) {
            return answer;
        }
        let segments = request.segments();
        let (id, task) = match segments.as_slice() {
            [a, b, c, d, id] if [*a, *b, *c, *d] == CPE_PREFIX => (*id, None),
            [a, b, c, d, id, "task", task] if [*a, *b, *c, *d] == CPE_PREFIX => (*id, Some(*task)),
            _ => return no_route(&request),
        };
        let expected = if task.is_some() { Method::GET } else { Method::POST };
        if request.method != expected {
            return method_not_allowed(&request, expected.as_str());
        }
        if let Some(denied) = self.check_token(&request) {
            return denied;
        }
        let Ok(equipment) = EquipmentId::parse(id) else {
            return error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND);
        };
        match task {
            None => self.create(equipment, &request).await,
            Some(task) => self.status(equipment, task).await,
        }
    }
}

impl ServiceB {
    async fn create(&self, equipment: EquipmentId, request: &HttpRequest) -> Response {
        if !self.readiness.accepting.load(Ordering::Acquire) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service is starting or shutting down and accepts no new tasks; retry shortly",
            );
        }
        let config = match ConfigRequest::from_json(&request.body) {
            Ok(config) => config,
            Err(rejection) => return request_error(rejection),
        };
        let key = match idempotency_key(request) {
            Ok(key) => key,
            Err(rejection) => return *rejection,
        };
        let task = TaskMessage {
            task_id: TaskId::new(),
            equipment_id: equipment,
            request: config,
        };
        let record = TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone());
        let (stored, published) = match key.clone() {
            // Without a key nothing depends on the store's answer: store and publish together, so
            // the answer waits for the slower of the two durable steps rather than for both in turn.
            None => {
                let stored = self.registry.start_create(record);
                let (stored, published) = tokio::join!(stored, self.publisher.publish(&task));
                (stored.map(|()| Created::New), Some(published))
            }
            Some(key) => (self.registry.create_with_key(record, key).await, None),
        };
        match stored {
            Ok(Created::New) => {}
            Ok(Created::Existing(task_id)) => return accepted(task_id),
            Ok(Created::Conflict) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency-Key was already used with a different request",
                )
            }
            Err(store_error) => {
                if matches!(published, Some(Ok(()))) {
                    // The queue has it and a worker will adopt it, but the caller is told 503.
                    tracing::error!(task_id = %task.task_id, %store_error, "task queued but not stored");
                }
                tracing::error!(%store_error, "could not store a new task");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Task store unavailable; the task was not accepted, retry shortly",
                );
            }
        }
        let published = match published {
            Some(published) => published,
            None => self.publisher.publish(&task).await,
        };
        if let Err(queue_error) = published {
            tracing::error!(task_id = %task.task_id, %queue_error, "could not queue a new task; not accepted");
            if let Err(store_error) = self.registry.remove(task.task_id, key).await {
                tracing::warn!(task_id = %task.task_id, %store_error, "could not forget the unqueued task");
            }
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Task queue unavailable; the task was not accepted, retry shortly",
            );
        }
        tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, "task accepted");
        accepted(task.task_id)
    }

    async fn status(&self, equipment: EquipmentId, task: &str) -> Response {
        let Some(task_id) = TaskId::parse(task) else {
            return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND);
        };
        let record = match self.registry.get(task_id).await {
            Ok(Some(record)) if record.equipment_id == equipment => record,
            Ok(_) => return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND),
            Err(store_error) => {
                tracing::error!(%store_error, "could not read a task");
                return error(StatusCode::SERVICE_UNAVAILABLE, "Task store unavailable; retry shortly");
            }
        };
        let (code, message) = match record.status {
            TaskStatus::Queued | TaskStatus::Running => (204, "Task is still running"),
            TaskStatus::Completed => (200, "Completed"),
            TaskStatus::Failed => (500, PROVISIONING_FAILED),
        };
        let mut body = json!({
            "code": code,
            "message": message,
            "status": record.status,
            "attempts": record.attempts,
        });
        if let Some(last_error) = record.last_error {
            body["lastError"] = json!(last_error);
        }
        reply(StatusCode::OK, body)
    }

    fn check_token(&self, request: &HttpRequest) -> Option<Response> {
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

fn accepted(task_id: TaskId) -> Response {
    reply(StatusCode::OK, json!({"code": 200, "taskId": task_id.to_string()}))
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, Box<Response>> {
    let mut values = request.headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key is given more than once; send exactly one",
        )));
    }
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ))),
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
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", " Bearer  abc "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        for given in [
            &b"secret-toke"[..],
            b"secret-token!",
            b"",
            b"secret-tokem",
            b"secret-token\0",
        ] {
            assert!(!constant_time_eq(given, b"secret-token"), "{given:?}");
        }
    }
}
