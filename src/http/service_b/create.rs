//! Service B's create path, `POST /api/v1/equipment/cpe/{id}`: read the body and the
//! `Idempotency-Key`, then store the task and hand it to the queue, answering 200 only once both
//! are durable (promise 1). Every refusal is a [`CreateError`], with one answer each.

use super::ServiceB;
use crate::http::{error, reply, request_error, HttpRequest};
use crate::metrics::Admission;
use cpe_actors::ports::{QueueError, StoreError, TaskPublisher};
use cpe_actors::registry::{Created, RegistryHandle};
use cpe_actors::{AuditRecord, ConfigRequest, EquipmentId, RequestError, TaskId, TaskMessage, TaskRecord};
use serde_json::json;
use std::sync::Arc;
use tokio::task::JoinError;
use warp::http::StatusCode;
use warp::reply::Response;

/// Why a create was refused, one variant per answer a client can tell apart. The message
/// (`Display`) is what the client reads; the cause, when there is one, stays a `source` and is
/// logged where it happened, never sent.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Not JSON (400), or JSON that breaks the schema (422).
    #[error(transparent)]
    Body(#[from] RequestError),
    #[error("Idempotency-Key is given more than once; send exactly one")]
    RepeatedKey,
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    BadKey,
    #[error("Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error("Task store unavailable; the task was not accepted, retry shortly")]
    Store(#[source] StoreError),
    #[error("Task queue unavailable; the task was not accepted, retry shortly")]
    Queue(#[source] QueueError),
    /// The detached hand-over panicked or was cancelled: nothing says whether the task is kept.
    #[error("Task could not be accepted; retry shortly")]
    HandOverStopped(#[source] JoinError),
}

impl From<CreateError> for Response {
    fn from(refusal: CreateError) -> Response {
        let status = match refusal {
            CreateError::Body(rejection) => return request_error(rejection),
            CreateError::RepeatedKey | CreateError::BadKey => StatusCode::BAD_REQUEST,
            CreateError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            CreateError::Store(_) | CreateError::Queue(_) | CreateError::HandOverStopped(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        error(status, refusal.to_string())
    }
}

impl ServiceB {
    /// `draft` is the create's audit record: written with the task, which names its actor.
    pub(super) async fn create(&self, equipment: EquipmentId, request: &HttpRequest, draft: AuditRecord) -> Response {
        match self.try_create(equipment, request, draft).await {
            Ok(task_id) => accepted(task_id),
            Err(refusal) => refusal.into(),
        }
    }

    /// A create refused before the hand-over is counted here; the hand-over counts its own end,
    /// which it reaches even when the client leaves.
    async fn try_create(
        &self,
        equipment: EquipmentId,
        request: &HttpRequest,
        mut draft: AuditRecord,
    ) -> Result<TaskId, CreateError> {
        let (config, key) = read(request).inspect_err(|_| self.metrics.task_created(Admission::Refused))?;
        draft.idempotency_key = key.clone();
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
            let outcome = accept(registry, publisher, task, key, draft).await;
            metrics.task_created(outcome.as_ref().map_or(Admission::Refused, |(admission, _)| *admission));
            outcome.map(|(_, task_id)| task_id)
        });
        match handover.await {
            Ok(outcome) => outcome,
            Err(join_error) => {
                self.metrics.task_created(Admission::Refused);
                tracing::error!(%join_error, "the task hand-over stopped unexpectedly");
                Err(CreateError::HandOverStopped(join_error))
            }
        }
    }
}

/// The body, then the optional `Idempotency-Key`: a bad body answers 400 or 422 whatever the key.
fn read(request: &HttpRequest) -> Result<(ConfigRequest, Option<String>), CreateError> {
    let config = ConfigRequest::from_json(&request.body)?;
    let key = idempotency_key(request)?;
    Ok((config, key))
}

/// Stores the task and hands it to the queue; Ok only once both are durable (promise 1), with
/// `Accepted`, or `Duplicate` and the first task's id for a known key and the same request. The
/// audit record goes with the task; a task the queue then refuses is withdrawn, and so recorded.
async fn accept(
    registry: RegistryHandle,
    publisher: Arc<dyn TaskPublisher>,
    task: TaskMessage,
    key: Option<String>,
    draft: AuditRecord,
) -> Result<(Admission, TaskId), CreateError> {
    let record = TaskRecord {
        requested_by: Some(draft.actor.clone()),
        ..TaskRecord::from(&task)
    };
    let audit = Some(Box::new(draft.clone().ended(200, "accepted")));
    let (stored, published) = match key.clone() {
        // Without a key nothing depends on the store's answer: store and publish together, so
        // the answer waits for the slower of the two durable steps rather than for both in turn.
        None => {
            let stored = registry.start_create(record, audit);
            let (stored, published) = tokio::join!(stored, publisher.publish(&task));
            (stored.map(|()| Created::New), Some(published))
        }
        Some(key) => (registry.create_with_key(record, key, audit).await, None),
    };
    let stored = stored.map_err(|store_error| {
        if matches!(published, Some(Ok(()))) {
            // The queue has it and a worker will adopt it, but the caller is told 503.
            tracing::error!(task_id = %task.task_id, %store_error, "task queued but not stored");
        }
        tracing::error!(%store_error, "could not store a new task");
        CreateError::Store(store_error)
    })?;
    match stored {
        Created::New => {}
        Created::Existing(task_id) => return Ok((Admission::Duplicate, task_id)),
        Created::Conflict => return Err(CreateError::KeyReused),
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
        let mut withdrawn = draft.ended(503, "withdrawn: the task queue was unavailable");
        withdrawn.task_ids.push(task.task_id);
        if let Err(store_error) = registry.record(withdrawn).await {
            tracing::warn!(task_id = %task.task_id, %store_error, "could not record the withdrawn task");
        }
        return Err(CreateError::Queue(queue_error));
    }
    registry.published(task.task_id);
    tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, "task accepted");
    Ok((Admission::Accepted, task.task_id))
}

fn accepted(task_id: TaskId) -> Response {
    reply(StatusCode::OK, json!({"code": 200, "taskId": task_id.to_string()}))
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, CreateError> {
    let mut values = request.headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CreateError::RepeatedKey);
    }
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(CreateError::BadKey),
    }
}

#[cfg(test)]
mod tests;
