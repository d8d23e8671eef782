//! Domain types: parsed once at the edge, trusted everywhere inside.

mod audit;
mod equipment_id;
mod message;
mod query;
mod request;
mod strict_json;
mod task;

pub use audit::{AuditAction, AuditPage, AuditQuery, AuditRecord, BulkCounts};
pub use equipment_id::{EquipmentId, InvalidEquipmentId};
pub use message::{StatusUpdate, TaskMessage};
pub use query::{Cursor, TaskPage, TaskQuery};
pub use request::{ConfigRequest, ParamValue, Parameters, RequestError};
pub use task::{Outcome, TaskId, TaskRecord, TaskStatus};

/// Milliseconds since the Unix epoch: the clock of every timestamp in a task.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
