//! cpe-actors: the domain, the ports and the actors of cpe-config, free of network adapters.
//!
//! Everything here can be driven in tests with the in-memory adapters of [`memory`].

pub mod consumer;
pub mod device_lease;
pub mod domain;
pub mod group_commit;
pub mod memory;
pub mod observe;
pub mod pool;
pub mod ports;
pub mod registry;
pub mod retry;
pub mod slot;
pub mod supervisor;
pub mod sweeper;
pub mod task_guard;

pub use domain::{
    AuditAction, AuditPage, AuditQuery, AuditRecord, BulkCounts, ConfigRequest, Cursor, EquipmentId, Outcome,
    ParamValue, Parameters, RequestError, StatusUpdate, TaskId, TaskMessage, TaskPage, TaskQuery, TaskRecord,
    TaskStatus,
};
