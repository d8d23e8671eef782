//! Service B (`config_status_service`): accepts a configuration task at once and reports its status.

use super::health::{self, Readiness};
use super::openapi;
use super::query::wait_param;
use super::{bulk, dashboard, tasks};
use super::{
    error, method_not_allowed, no_route, reply, request_error, HttpRequest, Routes, CPE_PREFIX, EQUIPMENT_NOT_FOUND,
    PROVISIONING_FAILED, TASK_NOT_FOUND,
};
use crate::metrics::{Admission, Metrics};
use async_trait::async_trait;
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Created, RegistryHandle, Watch};
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord, TaskStatus};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;

/// `Retry-After` of a running task's answer: a configuration takes about a minute.
const RETRY_AFTER_SECONDS: &str = "5";

pub struct ServiceB {
    pub registry: RegistryHandle,
    pub publisher: Arc<dyn TaskPublisher>,
    pub readiness: Readiness,
    /// When set, every task route requires `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// Counts creates and cancels.
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Routes for ServiceB {
    async fn handle(&self, request: HttpRequest) -> Response {
        if let Some(answer) = health::answer(&request, "config_status_service", &self.readiness) {
            return answer;
        }
        if let Some(answer) = openapi::answer(&request, openapi::Service::B) {
            return answer;
        }
        if let Some(answer) = dashboard::asset(&request) {
            return answer;
        }
        let segments = request.segments();
        let route = match segments.as_slice() {
            ["api", "v1", "tasks"] => Route::AllTasks,
            ["api", "v1", "dashboard"] => Route::Dashboard,
            ["api", "v1", "tasks", "retry"] => Route::Bulk(bulk::Action::Retry),
            ["api", "v1", "tasks", "cancel"] => Route::Bulk(bulk::Action::Cancel),
            [a, b, c, d, id] if [*a, *b, *c, *d] == CPE_PREFIX => Route::Device(id),
            [a, b, c, d, id, "tasks"] if [*a, *b, *c, *d] == CPE_PREFIX => Route::DeviceTasks(id),
            [a, b, c, d, id, "task", task] if [*a, *b, *c, *d] == CPE_PREFIX => Route::Task(id, task),
            [a, b, c, d, id, "task", task, "retry"] if [*a, *b, *c, *d] == CPE_PREFIX => Route::Retry(id, task),
            _ => return no_route(&request),
        };
        if !route.methods().contains(&request.method) {
            let allowed: Vec<&str> = route.methods().iter().map(Method::as_str).collect();
            return method_not_allowed(&request, &allowed.join(", "));
        }
        if let Route::Dashboard = route {
            // Answered without a token: the page asks it first, to learn whether it needs one.
            let writable =
                self.check_token(&request).is_none() && dashboard::may_write(self.api_token.is_some(), request.peer);
            return dashboard::mode(writable, self.api_token.is_some());
        }
        if let Some(denied) = self.check_token(&request) {
            return denied;
        }
        if route.is_operator_write(&request.method) && !dashboard::may_write(self.api_token.is_some(), request.peer) {
            return dashboard::forbidden();
        }
        let equipment = match route.equipment() {
            None => None,
            Some(id) => match EquipmentId::parse(id) {
                Ok(equipment) => Some(equipment),
                Err(_) => return error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND),
            },
        };
        if route.changes_tasks() {
            if let Some(refused) = self.refuse_while_stopping() {
                if matches!(route, Route::Device(_)) {
                    self.metrics.task_created(Admission::Refused);
                }
                return refused;
            }
        }
        match (route, equipment) {
            (Route::AllTasks, _) => tasks::list(&self.registry, None, &request.query).await,
            (Route::Bulk(action), _) => {
                bulk::run(
                    &self.registry,
                    &self.publisher,
                    self.metrics.as_ref(),
                    action,
                    &request.body,
                )
                .await
            }
            (Route::Retry(_, task), Some(device)) => tasks::retry(&self.registry, &self.publisher, device, task).await,
            (Route::DeviceTasks(_), device) => tasks::list(&self.registry, device, &request.query).await,
            (Route::Device(_), Some(device)) => self.create(device, &request).await,
            (Route::Task(_, task), Some(device)) if request.method == Method::DELETE => {
                tasks::cancel(&self.registry, self.metrics.as_ref(), device, task).await
            }
            (Route::Task(_, task), Some(device)) => self.status(device, task, &request.query).await,
            (Route::Dashboard, _) | (_, None) => no_route(&request),
        }
    }
}

/// Service B's routes, matched on the raw path segments.
enum Route<'p> {
    AllTasks,
    /// The dashboard's mode: writable, token required.
    Dashboard,
    Bulk(bulk::Action),
    Device(&'p str),
    DeviceTasks(&'p str),
    Task(&'p str, &'p str),
    Retry(&'p str, &'p str),
}

impl Route<'_> {
    fn methods(&self) -> &'static [Method] {
        match self {
            Self::AllTasks | Self::DeviceTasks(_) | Self::Dashboard => &[Method::GET],
            Self::Device(_) | Self::Retry(..) | Self::Bulk(_) => &[Method::POST],
            Self::Task(..) => &[Method::GET, Method::DELETE],
        }
    }

    /// The equipment id in the path, checked before anything else the route does.
    fn equipment(&self) -> Option<&str> {
        match self {
            Self::AllTasks | Self::Bulk(_) | Self::Dashboard => None,
            Self::Device(id) | Self::DeviceTasks(id) | Self::Task(id, _) | Self::Retry(id, _) => Some(id),
        }
    }

    /// Cancel, retry and the bulk actions: without `--api-token`, open to loopback peers only.
    fn is_operator_write(&self, method: &Method) -> bool {
        match self {
            Self::Retry(..) | Self::Bulk(_) => true,
            Self::Task(..) => *method == Method::DELETE,
            _ => false,
        }
    }

    /// Routes that queue new tasks: refused with 503 while the process starts or stops.
    fn changes_tasks(&self) -> bool {
        matches!(
            self,
            Self::Device(_) | Self::Retry(..) | Self::Bulk(bulk::Action::Retry)
        )
    }
}

impl ServiceB {
    fn refuse_while_stopping(&self) -> Option<Response> {
        (!self.readiness.accepting.load(Ordering::Acquire)).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service is starting or shutting down and accepts no new tasks; retry shortly",
            )
        })
    }

    /// A create refused before the hand-over is counted here; the hand-over counts its own end,
    /// which it reaches even when the client leaves.
    async fn create(&self, equipment: EquipmentId, request: &HttpRequest) -> Response {
        let config = match ConfigRequest::from_json(&request.body) {
            Ok(config) => config,
            Err(rejection) => {
                self.metrics.task_created(Admission::Refused);
                return request_error(rejection);
            }
        };
        let key = match idempotency_key(request) {
            Ok(key) => key,
            Err(rejection) => {
                self.metrics.task_created(Admission::Refused);
                return *rejection;
            }
        };
        let task = TaskMessage {
            task_id: TaskId::new(),
            equipment_id: equipment,
            request: config,
        };
        // Detached from this request: a client that leaves (a dropped connection, a reset HTTP/2
        // stream) drops the request's future, and a task stored but never published would then be
        // returned to a retry with the same Idempotency-Key and never run. The spawned hand-over
        // always finishes, whatever the client does.
        let (registry, publisher, metrics) = (self.registry.clone(), self.publisher.clone(), self.metrics.clone());
        let handover = tokio::spawn(async move {
            let (admission, response) = accept(registry, publisher, task, key).await;
            metrics.task_created(admission);
            response
        });
        handover.await.unwrap_or_else(|join_error| {
            self.metrics.task_created(Admission::Refused);
            tracing::error!(%join_error, "the task hand-over stopped unexpectedly");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Task could not be accepted; retry shortly",
            )
        })
    }

    /// The task's status; with `?wait=`, answered as soon as the task is final, or after the wait
    /// with the running answer. The registry tells the waiter: no polling of the store.
    async fn status(&self, equipment: EquipmentId, task: &str, query: &str) -> Response {
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
                    let later = tokio::time::timeout(wait, finished).await;
                    Ok(Some(later.ok().and_then(Result::ok).unwrap_or(now)))
                }
                other => other.map(|watch| watch.map(|watch| watch.now)),
            },
        };
        let record = match found {
            Ok(Some(record)) if record.equipment_id == equipment => record,
            Ok(_) => return error(StatusCode::NOT_FOUND, TASK_NOT_FOUND),
            Err(store_error) => return tasks::unavailable(store_error),
        };
        let (code, message) = match record.status {
            TaskStatus::Queued | TaskStatus::Running => (204, "Task is still running"),
            TaskStatus::Completed => (200, "Completed"),
            TaskStatus::Failed => (500, PROVISIONING_FAILED),
            TaskStatus::Cancelled => (410, "Task was cancelled"),
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
        if let Some(retried_as) = record.retried_as {
            body["retriedAs"] = json!(retried_as.to_string());
        }
        let mut response = reply(StatusCode::OK, body);
        if !record.status.is_final() {
            // When to ask again; a client using `?wait=` may ask again at once.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
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

/// Stores the task and hands it to the queue; 200 only once both are durable (promise 1).
async fn accept(
    registry: RegistryHandle,
    publisher: Arc<dyn TaskPublisher>,
    task: TaskMessage,
    key: Option<String>,
) -> (Admission, Response) {
    let record = TaskRecord::from(&task);
    let (stored, published) = match key.clone() {
        // Without a key nothing depends on the store's answer: store and publish together, so
        // the answer waits for the slower of the two durable steps rather than for both in turn.
        None => {
            let stored = registry.start_create(record);
            let (stored, published) = tokio::join!(stored, publisher.publish(&task));
            (stored.map(|()| Created::New), Some(published))
        }
        Some(key) => (registry.create_with_key(record, key).await, None),
    };
    match stored {
        Ok(Created::New) => {}
        Ok(Created::Existing(task_id)) => return (Admission::Duplicate, accepted(task_id)),
        Ok(Created::Conflict) => {
            return refused(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key was already used with a different request",
            ))
        }
        Err(store_error) => {
            if matches!(published, Some(Ok(()))) {
                // The queue has it and a worker will adopt it, but the caller is told 503.
                tracing::error!(task_id = %task.task_id, %store_error, "task queued but not stored");
            }
            tracing::error!(%store_error, "could not store a new task");
            return refused(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Task store unavailable; the task was not accepted, retry shortly",
            ));
        }
    }
    let published = match published {
        Some(published) => published,
        None => publisher.publish(&task).await,
    };
    if let Err(queue_error) = published {
        tracing::error!(task_id = %task.task_id, %queue_error, "could not queue a new task; not accepted");
        if let Err(store_error) = registry.remove(task.task_id, key).await {
            tracing::warn!(task_id = %task.task_id, %store_error, "could not forget the unqueued task");
        }
        return refused(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Task queue unavailable; the task was not accepted, retry shortly",
        ));
    }
    registry.published(task.task_id);
    tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, "task accepted");
    (Admission::Accepted, accepted(task.task_id))
}

fn refused(response: Response) -> (Admission, Response) {
    (Admission::Refused, response)
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
