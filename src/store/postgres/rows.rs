//! Task records to and from rows of `cpe_tasks`: statuses as small integers, times as bigint
//! milliseconds, the request as its JSON.

use cpe_actors::ports::StoreError;
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskRecord, TaskStatus};
use postgres::Row;
use uuid::Uuid;

/// The columns every read selects, in the order [`record`] reads them.
pub const COLUMNS: &str =
    "id, equipment_id, request, status, attempts, last_error, created_at, updated_at, retried_as, requested_by";

pub fn status_code(status: TaskStatus) -> i16 {
    match status {
        TaskStatus::Queued => 0,
        TaskStatus::Running => 1,
        TaskStatus::Completed => 2,
        TaskStatus::Failed => 3,
        TaskStatus::Cancelled => 4,
    }
}

pub fn status_from(code: i16) -> Option<TaskStatus> {
    TaskStatus::ALL.into_iter().find(|status| status_code(*status) == code)
}

pub fn uuid(id: TaskId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

pub fn task_id(id: Uuid) -> TaskId {
    TaskId::from_bytes(*id.as_bytes())
}

/// Milliseconds as PostgreSQL's bigint; times past year 292 million are clamped rather than wrapped.
pub fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn request_json(record: &TaskRecord) -> Result<String, StoreError> {
    serde_json::to_string(&record.request)
        .map_err(|e| StoreError::Unavailable(format!("task {}: request cannot be encoded: {e}", record.id)))
}

/// A row read back; a row another program damaged is an error that names the task, not a panic.
pub fn record(row: &Row) -> Result<TaskRecord, StoreError> {
    let id = task_id(row.get(0));
    let damaged = |what: &str| StoreError::Unavailable(format!("task {id}: stored {what} is not valid"));
    let equipment: &str = row.get(1);
    let request: &str = row.get(2);
    Ok(TaskRecord {
        id,
        equipment_id: EquipmentId::parse(equipment).map_err(|_| damaged("equipment id"))?,
        request: ConfigRequest::from_json(request.as_bytes()).map_err(|_| damaged("request"))?,
        status: status_from(row.get(3)).ok_or_else(|| damaged("status"))?,
        attempts: u32::try_from(row.get::<_, i32>(4)).map_err(|_| damaged("attempt count"))?,
        last_error: row.get(5),
        created_at: u64::try_from(row.get::<_, i64>(6)).map_err(|_| damaged("creation time"))?,
        updated_at: u64::try_from(row.get::<_, i64>(7)).map_err(|_| damaged("update time"))?,
        retried_as: row.get::<_, Option<Uuid>>(8).map(task_id),
        requested_by: row.get(9),
    })
}
