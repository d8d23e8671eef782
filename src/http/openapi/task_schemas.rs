//! Service B's task schemas: the accepted answer, the status answer, listings, bulk filters.

use super::components::schema_ref;
use cpe_actors::TaskStatus;
use serde_json::{json, Map, Value};

/// A task as listings show it, for examples.
pub fn task_example(id: &str, device: &str, status: &str) -> Value {
    json!({
        "taskId": id,
        "equipmentId": device,
        "status": status,
        "attempts": 5,
        "createdAt": "2026-12-02T16:36:08.123Z",
        "updatedAt": "2026-12-02T16:41:10.456Z",
        "lastError": "could not reach Service A: connection refused",
        "retriedAs": null,
        "requestedBy": "provisioning",
    })
}

pub fn schemas() -> Map<String, Value> {
    let names: Vec<&str> = TaskStatus::ALL.iter().map(|status| status.name()).collect();
    let attempts = json!({
        "type": "integer", "minimum": 0,
        "description": "Calls to Service A started for the task so far, each counted just before it is made.",
    });
    let last_error = json!({"type": "string", "description": "Why the last call failed."});
    let retried_as = json!({
        "type": "string", "format": "uuid",
        "description": "The task that retried this one; only once retried.",
    });
    let answer = |code: Value, message: &str, statuses: &[&str]| {
        json!({
            "type": "object",
            "required": ["code", "message", "status", "attempts"],
            "properties": {
                "code": code,
                "message": {"const": message},
                "status": {"enum": statuses},
                "attempts": attempts,
                "lastError": last_error,
                "retriedAs": retried_as,
            },
        })
    };
    let schemas = json!({
        "Status": {"enum": names},
        "TaskAccepted": {
            "type": "object",
            "required": ["code", "taskId"],
            "properties": {"code": {"const": 200}, "taskId": schema_ref("TaskId")},
        },
        "TaskStatusAnswer": {
            "description": "`code` and `message` are the original contract's; the other fields are additions.",
            "oneOf": [
                answer(json!({"const": 204}), "Task is still running", &["queued", "running"]),
                answer(json!({"const": 200}), "Completed", &["completed"]),
                answer(json!({"const": 500}), crate::http::PROVISIONING_FAILED, &["failed"]),
                answer(json!({"const": 410}), "Task was cancelled", &["cancelled"]),
            ],
        },
        "Cancelled": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"const": 200},
                "message": {"const": "Task was cancelled"},
                "status": {"const": "cancelled"},
            },
        },
        "Task": {
            "type": "object",
            "description": "A task as listings show it; never its parameters.",
            "required": [
                "taskId", "equipmentId", "status", "attempts", "createdAt", "updatedAt", "lastError", "retriedAs",
                "requestedBy",
            ],
            "properties": {
                "taskId": schema_ref("TaskId"),
                "equipmentId": schema_ref("EquipmentId"),
                "status": schema_ref("Status"),
                "attempts": attempts,
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
                "lastError": {"type": ["string", "null"]},
                "retriedAs": {"type": ["string", "null"], "format": "uuid", "description": "The task that retried this one."},
                "requestedBy": {
                    "type": ["string", "null"],
                    "description": "Who created the task: a token's name, `loopback` or `anonymous`; null for a task \
                                    adopted from the queue.",
                },
            },
        },
        "TaskList": {
            "type": "object",
            "required": ["code", "tasks", "nextCursor"],
            "properties": {
                "code": {"const": 200},
                "tasks": {"type": "array", "items": schema_ref("Task")},
                "nextCursor": {
                    "type": ["string", "null"],
                    "pattern": "^[0-9a-f]{48}$",
                    "description": "Pass as `cursor` for the next page; null on the last one.",
                },
            },
        },
        "BulkResult": {
            "type": "object",
            "required": ["code", "done", "skipped"],
            "properties": {
                "code": {"const": 200},
                "done": {"type": "integer", "minimum": 0},
                "skipped": {"type": "integer", "minimum": 0},
            },
        },
    });
    schemas.as_object().cloned().expect("schemas are an object")
}
