//! Service B's create path, `POST /api/v1/equipment/cpe/{id}`: read the body and the
//! `Idempotency-Key`, then store the task and hand it to the queue, answering 200 only once both
//! are durable (promise 1).

use super::ServiceB;
use crate::http::{error, reply, request_error, HttpRequest};
use crate::metrics::Admission;
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::{Created, RegistryHandle};
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord};
use serde_json::json;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

impl ServiceB {
    /// A create refused before the hand-over is counted here; the hand-over counts its own end,
    /// which it reaches even when the client leaves.
    pub(super) async fn create(&self, equipment: EquipmentId, request: &HttpRequest) -> Response {
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
