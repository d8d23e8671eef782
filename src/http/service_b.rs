//! Service B (`config_status_service`): accepts a configuration task at once and reports its status.

use super::health::{self, Probe, Readiness};
use super::openapi;
use super::query::wait_param;
use super::routes::{Lookup, Params, Route, Table};
use super::{bulk, dashboard, tasks};
use super::{
    error, no_route, reply, request_error, HttpRequest, Routes, DEVICE_PATH, EQUIPMENT_NOT_FOUND, PROVISIONING_FAILED,
    TASK_NOT_FOUND,
};
use crate::metrics::{Admission, Metrics};
use async_trait::async_trait;
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Created, RegistryHandle, Watch};
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord, TaskStatus};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
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

/// What answers a row of Service B's table.
enum Handler {
    Health(Probe),
    OpenApi,
    Asset(&'static dashboard::Asset),
    /// The dashboard's mode: writable, token required.
    Mode,
    /// A route over tasks: token, loopback for writes, then the equipment id come first.
    Tasks(TaskRoute),
}

/// The task routes, each checked the same way before it runs.
#[derive(Clone, Copy)]
enum TaskRoute {
    AllTasks,
    Bulk(bulk::Action),
    Create,
    DeviceTasks,
    Status,
    Cancel,
    Retry,
}

impl TaskRoute {
    /// Cancel, retry and the bulk actions: without `--api-token`, open to loopback peers only.
    fn is_operator_write(self) -> bool {
        matches!(self, Self::Retry | Self::Bulk(_) | Self::Cancel)
    }

    /// Routes that queue new tasks: refused with 503 while the process starts or stops.
    fn changes_tasks(self) -> bool {
        matches!(self, Self::Create | Self::Retry | Self::Bulk(bulk::Action::Retry))
    }
}

/// Service B's routes; `/metrics` is added around them (see `observe.rs`). A path's methods are
/// listed in `Allow` in this order.
fn table() -> &'static Table<Handler> {
    static TABLE: LazyLock<Table<Handler>> = LazyLock::new(|| {
        use Method as M;
        use TaskRoute::*;
        let health = health::ROUTES.map(|(path, probe)| Route::any(path, Handler::Health(probe)));
        let mut routes = Vec::from(health);
        routes.push(Route::on(M::GET, openapi::PATH, Handler::OpenApi));
        routes.extend(
            dashboard::ASSETS
                .iter()
                .map(|asset| Route::on(M::GET, asset.path, Handler::Asset(asset))),
        );
        routes.push(Route::on(M::GET, dashboard::MODE_PATH, Handler::Mode));
        let task = "/api/v1/equipment/cpe/{id}/task/{task}";
        for (method, pattern, route) in [
            (M::GET, "/api/v1/tasks", AllTasks),
            (M::POST, "/api/v1/tasks/retry", Bulk(bulk::Action::Retry)),
            (M::POST, "/api/v1/tasks/cancel", Bulk(bulk::Action::Cancel)),
            (M::POST, DEVICE_PATH, Create),
            (M::GET, "/api/v1/equipment/cpe/{id}/tasks", DeviceTasks),
            (M::GET, task, Status),
            (M::DELETE, task, Cancel),
            (M::POST, "/api/v1/equipment/cpe/{id}/task/{task}/retry", Retry),
        ] {
            routes.push(Route::on(method, pattern, Handler::Tasks(route)));
        }
        Table::new(routes)
    });
    &TABLE
}

/// Every route of the table, as (method, pattern); None: every method.
pub fn routes() -> Vec<(Option<Method>, &'static str)> {
    table().served()
}

#[async_trait]
impl Routes for ServiceB {
    async fn handle(&self, request: HttpRequest) -> Response {
        let (handler, params) = match table().lookup(&request) {
            Lookup::Found(handler, params) => (handler, params),
            Lookup::WrongMethod(refused) => return refused,
            Lookup::NoPath => return no_route(&request),
        };
        match handler {
            Handler::Health(probe) => health::answer(*probe, "config_status_service", &self.readiness),
            Handler::OpenApi => openapi::serve(openapi::Service::B),
            Handler::Asset(asset) => dashboard::serve(asset),
            Handler::Mode => {
                // Answered without a token: the page asks it first, to learn whether it needs one.
                let writable = self.check_token(&request).is_none()
                    && dashboard::may_write(self.api_token.is_some(), request.peer);
                dashboard::mode(writable, self.api_token.is_some())
            }
            Handler::Tasks(route) => self.tasks(*route, &request, &params).await,
        }
    }
}

impl ServiceB {
    /// A task route, after the checks every one of them takes, in the contract's order: token,
    /// loopback for writes, equipment id, then whether new tasks are accepted.
    async fn tasks(&self, route: TaskRoute, request: &HttpRequest, params: &Params<'_>) -> Response {
        if let Some(denied) = self.check_token(request) {
            return denied;
        }
        if route.is_operator_write() && !dashboard::may_write(self.api_token.is_some(), request.peer) {
            return dashboard::forbidden();
        }
        let equipment = match params.get("id") {
            None => None,
            Some(id) => match EquipmentId::parse(id) {
                Ok(equipment) => Some(equipment),
                Err(_) => return error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND),
            },
        };
        if route.changes_tasks() {
            if let Some(refused) = self.refuse_while_stopping() {
                if matches!(route, TaskRoute::Create) {
                    self.metrics.task_created(Admission::Refused);
                }
                return refused;
            }
        }
        use TaskRoute::*;
        match (route, equipment, params.get("task")) {
            (AllTasks, _, _) => tasks::list(&self.registry, None, &request.query).await,
            (Bulk(action), _, _) => {
                bulk::run(
                    &self.registry,
                    &self.publisher,
                    self.metrics.as_ref(),
                    action,
                    &request.body,
                )
                .await
            }
            (Retry, Some(device), Some(task)) => tasks::retry(&self.registry, &self.publisher, device, task).await,
            (DeviceTasks, device, _) => tasks::list(&self.registry, device, &request.query).await,
            (Create, Some(device), _) => self.create(device, request).await,
            (Cancel, Some(device), Some(task)) => {
                tasks::cancel(&self.registry, self.metrics.as_ref(), device, task).await
            }
            (Status, Some(device), Some(task)) => self.status(device, task, &request.query).await,
            // A row whose pattern lacks the `{id}` or `{task}` its handler needs: none is.
            (Retry | Create | Cancel | Status, _, _) => no_route(request),
        }
    }

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
    let record = TaskRecord::queued(task.task_id, task.equipment_id.clone(), task.request.clone());
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
