//! Service B's actions on tasks already made: retry one, and retry or cancel in bulk.

use super::components::{
    equipment_id_parameter, error_response, json_response, malformed_request, responses, schema_ref, unauthorized,
    STORE_DOWN,
};
use super::service_b::{forbidden, not_found, task_parameter, token, NEW_TASK_ID, NOT_ACCEPTING};
use serde_json::{json, Value};

pub fn retry() -> Value {
    json!({"post": {
        "operationId": "retryTask",
        "summary": "Queue a new task with the same request as a failed one; the old task names it (`retriedAs`).",
        "tags": ["tasks"],
        "security": token(),
        "parameters": [equipment_id_parameter(), task_parameter()],
        "responses": responses(json!({
            "200": json_response("The new task.", schema_ref("TaskAccepted"), &[(
                "retried",
                json!({"code": 200, "taskId": NEW_TASK_ID}),
            )]),
            "400": error_response(400, "The request could not be parsed.", &[malformed_request()]),
            "401": unauthorized(),
            "403": forbidden(),
            "404": not_found(),
            "409": error_response(409, "The task is not failed, or was retried already.", &[
                ("notFailed", "Task is completed; only a failed task can be retried"),
                ("alreadyRetried", &format!("Task was retried already, as task {NEW_TASK_ID}")),
            ]),
            "503": error_response(503, "Not retried: starting or stopping, or the store or queue failed.", &[
                ("notAccepting", NOT_ACCEPTING),
                ("storeDown", STORE_DOWN),
                ("queueDown", "Task queue unavailable; the task was not retried, retry shortly"),
            ]),
        })),
    }})
}

/// A bulk action on the tasks in status `only` that the filter selects; `other` is a status it refuses.
pub fn bulk(operation: &str, verb: &str, only: &str, other: &str) -> Value {
    let mut unavailable = vec![
        ("storeDown", STORE_DOWN.to_owned()),
        (
            "stoppedMidway",
            "Stopped midway, after 12 done and 3 skipped: the task store or queue is unavailable; send the same \
             request again to go on"
                .to_owned(),
        ),
    ];
    if only == "failed" {
        unavailable.insert(0, ("notAccepting", NOT_ACCEPTING.to_owned()));
    }
    let unavailable: Vec<(&str, &str)> = unavailable.iter().map(|(n, m)| (*n, m.as_str())).collect();
    json!({"post": {
        "operationId": operation,
        "summary": format!(
            "{verb} every {only} task the filter selects; answers how many were done and skipped. Nothing is \
             undone on a failure midway: the same call goes on where it stopped."
        ),
        "tags": ["tasks"],
        "security": token(),
        "requestBody": {
            "required": true,
            "description": "Which tasks: the devices (each counted once however often named), or `{\"all\": true}` \
                            for every task in that status. An empty filter is refused.",
            "content": {"application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "status": {"type": "array", "items": {"const": only}},
                        "equipmentIds": {"type": "array", "maxItems": 1000, "items": schema_ref("EquipmentId")},
                        "all": {"type": "boolean", "description": "Every task in that status; not with equipmentIds."},
                    },
                    // The devices, or every task: one of the two, never both, never neither.
                    "oneOf": [
                        {"required": ["equipmentIds"], "properties": {
                            "status": {}, "equipmentIds": {"minItems": 1}, "all": {"const": false},
                        }},
                        {"required": ["all"], "properties": {
                            "status": {}, "all": {"const": true}, "equipmentIds": {"maxItems": 0},
                        }},
                    ],
                },
                "examples": {
                    "devices": {"value": {"status": [only], "equipmentIds": ["abc123"]}},
                    "everything": {"value": {"all": true}},
                },
            }},
        },
        "responses": responses(json!({
            "200": json_response("Counts.", schema_ref("BulkResult"), &[(
                "counts",
                json!({"code": 200, "done": 12, "skipped": 3}),
            )]),
            "400": error_response(400, "The body is not JSON.", &[
                ("notJson", "Request body is not a valid filter: expected value at line 1 column 1"),
                malformed_request(),
            ]),
            "401": unauthorized(),
            "403": forbidden(),
            "422": error_response(422, "JSON that is not a filter; the message says why.", &[
                ("otherStatus", &format!("status may only be [\"{only}\"] here, got `{other}`")),
                (
                    "badDevice",
                    "equipmentIds: `abc` is not an equipment id (6 or more letters and digits)",
                ),
                (
                    "noFilter",
                    &format!("The filter names no tasks: give equipmentIds, or {{\"all\": true}} for every {only} task"),
                ),
                (
                    "notAnObject",
                    &format!("The filter must be a JSON object: give equipmentIds, or {{\"all\": true}} for every {only} task"),
                ),
            ]),
            "503": error_response(503, "Not done: starting or stopping, or the store or queue failed.", &unavailable),
        })),
    }})
}
