//! Service B's document: tasks (create, status, cancel, retry), listings, bulk actions, health,
//! metrics and the document itself.

use super::actions;
use super::components::{
    body_errors, config_request_body, equipment_id_parameter, equipment_not_found, error_response, frame,
    json_response, malformed_request, responses, schema_ref, unauthorized, STORE_DOWN, TASK_ID,
};
use super::meta::{health_paths, metrics_path, openapi_path};
use super::task_schemas::{self, task_example};
use crate::http::query::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::http::{PROVISIONING_FAILED, TASK_NOT_FOUND};
use serde_json::{json, Map, Value};

pub(super) const NEW_TASK_ID: &str = "7d1c9e20-8a4b-4f6e-b5a3-2c9d0e1f4a6b";
pub(super) const NOT_ACCEPTING: &str = "Service is starting or shutting down and accepts no new tasks; retry shortly";

pub fn document() -> Value {
    let mut paths = Map::new();
    paths.insert("/api/v1/equipment/cpe/{id}".into(), create());
    paths.insert("/api/v1/equipment/cpe/{id}/task/{task}".into(), task());
    paths.insert("/api/v1/equipment/cpe/{id}/task/{task}/retry".into(), actions::retry());
    paths.insert("/api/v1/equipment/cpe/{id}/tasks".into(), list("listDeviceTasks", true));
    paths.insert("/api/v1/tasks".into(), list("listTasks", false));
    paths.insert(crate::http::audit::PATH.into(), super::audit::path());
    paths.insert(
        "/api/v1/tasks/retry".into(),
        actions::bulk("retryTasks", "Retry", "failed", "queued"),
    );
    paths.insert(
        "/api/v1/tasks/cancel".into(),
        actions::bulk("cancelTasks", "Cancel", "queued", "failed"),
    );
    paths.extend(health_paths("config_status_service"));
    paths.insert("/metrics".into(), metrics_path());
    paths.insert(super::PATH.into(), openapi_path());
    paths.extend(super::dashboard::paths());
    for path in paths.values_mut() {
        for (method, operation) in path.as_object_mut().into_iter().flatten() {
            if method == "post" || method == "delete" {
                refuse_cross_site(operation);
            }
        }
    }
    let mut schemas = task_schemas::schemas();
    schemas.extend(
        super::audit::schemas()
            .as_object()
            .cloned()
            .expect("schemas are an object"),
    );
    frame(
        "cpe-config Service B (config_status_service)",
        "The asynchronous front: create a configuration task, get its id at once, then read its status. \
         Errors are `{\"code\": N, \"message\": \"...\"}` with HTTP status N; a method a path does not take \
         answers 405 with `Allow`, an unknown path 404. See docs/api.md.",
        paths,
        schemas,
    )
}

/// Optional bearer token: required only when the service runs with `--api-token`.
pub(super) fn token() -> Value {
    json!([{}, {"bearer": []}])
}

/// Cancel and retry without `--api-token`, from a peer that is not loopback.
pub(super) fn forbidden() -> Value {
    error_response(
        403,
        "Without `--api-token`: the client is not on loopback.",
        &[("notLoopback", crate::http::dashboard::WRITE_FORBIDDEN)],
    )
}

/// Every write: 403 from another site (besides the loopback rule where it applies), 415 for a body
/// that is not JSON (see `http/service_b/cross_site.rs`).
fn refuse_cross_site(operation: &mut Value) {
    let responses = &mut operation["responses"];
    let cross_site = ("crossSite", crate::http::service_b::CROSS_SITE);
    let narrow = (
        "scopeTooNarrow",
        "Token `wall-screen` has scope read; this route needs operate",
    );
    let mut forbidden = match responses.get("403") {
        Some(_) => error_response(
            403,
            "Another site's request (`Origin`, `Sec-Fetch-Site`); a token whose scope is `read`; or, without a \
             token configured, a client not on loopback.",
            &[
                cross_site,
                narrow,
                ("notLoopback", crate::http::dashboard::WRITE_FORBIDDEN),
            ],
        ),
        None => error_response(
            403,
            "Another site's request (`Origin`, `Sec-Fetch-Site`), or a token whose scope is `read`.",
            &[cross_site, narrow],
        ),
    };
    responses["403"] = forbidden.take();
    responses["415"] = error_response(
        415,
        "A body declared as anything but JSON (`Content-Type`).",
        &[("formBody", crate::http::service_b::NOT_JSON)],
    );
}

pub(super) fn task_parameter() -> Value {
    json!({
        "name": "task", "in": "path", "required": true,
        "description": "A task id as POST returned it. Anything else answers the task 404.",
        "schema": schema_ref("TaskId"),
        "examples": {"task": {"value": TASK_ID}},
    })
}

pub(super) fn not_found() -> Value {
    error_response(
        404,
        "Invalid equipment id; or no such task for this device.",
        &[equipment_not_found(), ("taskNotFound", TASK_NOT_FOUND)],
    )
}

fn create() -> Value {
    let (bad_json, mut invalid) = body_errors();
    invalid["content"]["application/json"]["examples"]["keyReused"] = json!({
        "value": {"code": 422, "message": "Idempotency-Key was already used with a different request"},
    });
    let mut bad = bad_json;
    bad["content"]["application/json"]["examples"]["badKey"] = json!({
        "value": {"code": 400, "message": "Idempotency-Key must be 1 to 255 visible ASCII characters"},
    });
    bad["content"]["application/json"]["examples"]["repeatedKey"] = json!({
        "value": {"code": 400, "message": "Idempotency-Key is given more than once; send exactly one"},
    });
    let task_link = |operation: &str| json!({"operationId": operation, "parameters": {"id": "$request.path.id", "task": "$response.body#/taskId"}});
    json!({"post": {
        "operationId": "createTask",
        "summary": "Create a configuration task; answers its id at once.",
        "description": "200 means the task is stored and handed to the queue (the broker confirmed it).",
        "tags": ["tasks"],
        "security": token(),
        "parameters": [equipment_id_parameter(), {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Makes a retried POST safe: the same key and request answer the first task's id; \
                            the same key with another request answers 422.",
            "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
            "examples": {"key": {"value": "order-4711"}},
        }],
        "requestBody": config_request_body(),
        "responses": responses(json!({
            "200": {
                "description": "Accepted (or, with a known Idempotency-Key and the same request, the first task).",
                "content": {"application/json": {
                    "schema": schema_ref("TaskAccepted"),
                    "examples": {"accepted": {"value": {"code": 200, "taskId": TASK_ID}}},
                }},
                "links": {
                    "status": task_link("getTaskStatus"),
                    "cancel": task_link("cancelTask"),
                    "deviceTasks": {"operationId": "listDeviceTasks", "parameters": {"id": "$request.path.id"}},
                },
            },
            "400": bad,
            "401": unauthorized(),
            "404": error_response(404, "Invalid equipment id.", &[equipment_not_found()]),
            "422": invalid,
            "503": error_response(503, "Not accepted; the task does not exist: retry the POST.", &[
                ("notAccepting", NOT_ACCEPTING),
                ("storeDown", "Task store unavailable; the task was not accepted, retry shortly"),
                ("queueDown", "Task queue unavailable; the task was not accepted, retry shortly"),
            ]),
        })),
    }})
}

fn task() -> Value {
    let running = |status: &str, attempts: u32| json!({"code": 204, "message": "Task is still running", "status": status, "attempts": attempts});
    let status_examples = [
        ("queued", running("queued", 0)),
        ("running", running("running", 1)),
        (
            "completed",
            json!({"code": 200, "message": "Completed", "status": "completed", "attempts": 1}),
        ),
        (
            "failed",
            json!({
                "code": 500, "message": PROVISIONING_FAILED, "status": "failed", "attempts": 5,
                "lastError": "Service A answered HTTP 500: {\"code\":500,\"message\":\"Internal provisioning exception\"}",
            }),
        ),
        (
            "cancelled",
            json!({"code": 410, "message": "Task was cancelled", "status": "cancelled", "attempts": 0}),
        ),
    ];
    let mut status_ok = json_response(
        "The task's status. A queued or running task answers HTTP 200 with `\"code\": 204` in the body.",
        schema_ref("TaskStatusAnswer"),
        &status_examples,
    );
    status_ok["headers"] = json!({"Retry-After": {
        "description": "Seconds before asking again; only while the task is queued or running.",
        "schema": {"type": "integer", "minimum": 0},
    }});
    json!({
        "parameters": [equipment_id_parameter(), task_parameter()],
        "get": {
            "operationId": "getTaskStatus",
            "summary": "A task's status; with `?wait=`, answered as soon as it is final.",
            "tags": ["tasks"],
            "security": token(),
            "parameters": [{
                "name": "wait", "in": "query", "required": false,
                "description": "Wait up to this long (at most 60s) for a final status: a whole number and a unit, \
                                ms, s, m, h or d. Past it, the running answer.",
                "schema": {
                    "type": "string",
                    "pattern": "^0*([0-9]{1,4}|[1-5][0-9]{4}|60000)ms$|^0*([0-9]|[1-5][0-9]|60)s$|^0*[01]m$|^0+[hd]$",
                },
                "examples": {"thirtySeconds": {"value": "30s"}},
            }],
            "responses": responses(json!({
                "200": status_ok,
                "400": error_response(400, "A bad `wait`.", &[
                    ("waitTooLong", "wait may be at most 60s, got `61s`"),
                    ("waitWithoutUnit", "wait: `30` needs a unit: ms, s, m, h or d (for example 30s)"),
                    malformed_request(),
                ]),
                "401": unauthorized(),
                "404": not_found(),
                "503": error_response(503, "The task store failed.", &[("storeDown", STORE_DOWN)]),
            })),
        },
        "delete": {
            "operationId": "cancelTask",
            "summary": "Cancel a queued task: it is never sent to Service A.",
            "tags": ["tasks"],
            "security": token(),
            "responses": responses(json!({
                "200": json_response("Cancelled.", schema_ref("Cancelled"), &[(
                    "cancelled",
                    json!({"code": 200, "message": "Task was cancelled", "status": "cancelled"}),
                )]),
                "400": error_response(400, "The request could not be parsed.", &[malformed_request()]),
                "401": unauthorized(),
                "403": forbidden(),
                "404": not_found(),
                "409": error_response(409, "The task is running or final already.", &[
                    ("running", "Task is running at the device and cannot be cancelled; wait for its outcome"),
                    ("final", "Task is completed already and cannot be cancelled"),
                ]),
                "503": error_response(503, "The task store failed.", &[("storeDown", STORE_DOWN)]),
            })),
        },
    })
}

fn list(operation: &str, per_device: bool) -> Value {
    let mut parameters = Vec::new();
    if per_device {
        parameters.push(equipment_id_parameter());
    }
    parameters.extend([
        json!({
            "name": "status", "in": "query", "required": false, "style": "form", "explode": true,
            "description": "Only tasks in these statuses; repeatable, or a comma-separated list.",
            "schema": {"type": "array", "items": schema_ref("Status")},
            "examples": {"failed": {"value": ["failed"]}},
        }),
        json!({
            "name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        }),
        json!({
            "name": "cursor", "in": "query", "required": false,
            "description": "`nextCursor` of the page before.",
            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{48}$"},
        }),
    ]);
    let page = json!({
        "code": 200,
        "tasks": [task_example(TASK_ID, "abc123", "failed")],
        "nextCursor": "0000019adf7c2e1b0b5f3a524f0e4c8a9a573f1de0c2a4b1",
    });
    let bad = [
        ("limitOutOfRange", "limit must be a whole number from 1 to 500, got `0`"),
        (
            "badCursor",
            "cursor is not one this service gave out: pass `nextCursor` of the page before",
        ),
        (
            "badStatus",
            "status `done` is not one of queued, running, completed, failed, cancelled",
        ),
        (
            "unknownParameter",
            "Unknown query parameter `sort`; this route takes status, limit, cursor",
        ),
        malformed_request(),
    ];
    let mut responses = json!({
        "200": json_response("One page, newest first.", schema_ref("TaskList"), &[("page", page)]),
        "401": unauthorized(),
        "503": error_response(503, "The task store failed.", &[("storeDown", STORE_DOWN)]),
    });
    if per_device {
        responses["404"] = error_response(404, "Invalid equipment id.", &[equipment_not_found()]);
    }
    responses["400"] = error_response(400, "A bad query parameter; the message names it.", &bad);
    json!({"get": {
        "operationId": operation,
        "summary": if per_device { "This device's tasks, newest first, in pages." } else { "All tasks, newest first, in pages." },
        "tags": ["tasks"],
        "security": token(),
        "parameters": parameters,
        "responses": super::components::responses(responses),
    }})
}
