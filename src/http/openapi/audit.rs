//! The audit trail's route in Service B's document, and the schema of its records.

use super::components::{
    error_response, json_response, malformed_request, responses, schema_ref, unauthorized, STORE_DOWN, TASK_ID,
};
use crate::http::audit::ACTOR_PATTERN;
use crate::http::audit::LOOPBACK_ONLY;
use crate::http::query::{DEFAULT_LIMIT, MAX_LIMIT};
use cpe_actors::AuditAction;
use serde_json::{json, Value};

pub fn path() -> Value {
    let parameter = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let example = json!({
        "code": 200,
        "records": [{
            "id": "42", "at": "2026-12-02T16:36:08.123Z", "actor": "provisioning", "source": "10.0.4.17",
            "action": "create", "route": "POST /api/v1/equipment/cpe/abc123", "taskIds": [TASK_ID],
            "equipmentIds": ["abc123"], "filter": null, "counts": null, "idempotencyKey": "order-7731",
            "status": 200, "outcome": "accepted",
        }],
        "nextCursor": null,
    });
    let bad = [
        (
            "badAction",
            "action `delete` is not one of create, cancel, retry, bulkCancel, bulkRetry, refused",
        ),
        (
            "repeated",
            "Query parameter `actor` is given more than once; give it once",
        ),
        malformed_request(),
    ];
    json!({"get": {
        "operationId": "listAudit",
        "summary": "The audit trail, newest first, in pages: every accepted change and every refused write.",
        "description": "Needs an `admin` token; without a token configured, a loopback client. Each accepted \
                        create, cancel, retry and bulk action leaves one record, written with the change; a write \
                        refused with 401 or 403 leaves one too (at most 20 a second), without its body. Kept for \
                        `--retention`, like tasks.",
        "tags": ["audit"],
        "security": [{"bearer": []}, {}],
        "parameters": [
            parameter(
                "actor",
                "Only this actor's records (a token's name, `loopback` or `anonymous`).",
                json!({"type": "string", "pattern": ACTOR_PATTERN}),
            ),
            parameter("action", "Only this action.", schema_ref("AuditAction")),
            parameter("equipmentId", "Only records that name this device.", schema_ref("EquipmentId")),
            parameter(
                "since",
                "Only records this long ago or later (`24h`, `7d`), or since this time in milliseconds since the epoch.",
                json!({"type": "string", "pattern": "^[0-9]{1,15}(ms|s|m|h|d)?$"}),
            ),
            parameter("limit", "Records per page.", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT})),
            parameter("cursor", "`nextCursor` of the page before.", json!({"type": "string", "pattern": "^[0-9]{1,19}$"})),
        ],
        "responses": responses(json!({
            "200": json_response("One page, newest first.", schema_ref("AuditPage"), &[("page", example)]),
            "400": error_response(400, "A bad query parameter; the message names it.", &bad),
            "401": unauthorized(),
            "403": error_response(
                403,
                "A token whose scope is not `admin`; or, without a token configured, a client not on loopback.",
                &[
                    ("scopeTooNarrow", "Token `provisioning` has scope operate; this route needs admin"),
                    ("notLoopback", LOOPBACK_ONLY),
                ],
            ),
            "503": error_response(503, "The task store failed.", &[("storeDown", STORE_DOWN)]),
        })),
    }})
}

pub fn schemas() -> Value {
    let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.name()).collect();
    let strings = |description: &str| json!({"type": "array", "items": {"type": "string"}, "description": description});
    json!({
        "AuditAction": {"enum": names},
        "AuditRecord": {
            "type": "object",
            "required": [
                "id", "at", "actor", "source", "action", "route", "taskIds", "equipmentIds", "filter", "counts",
                "idempotencyKey", "status", "outcome",
            ],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "at": {"type": "string", "format": "date-time"},
                "actor": {"type": "string", "description": "The token's name, `loopback` or `anonymous`."},
                "source": {"type": "string", "description": "The client's IP address."},
                "action": schema_ref("AuditAction"),
                "route": {"type": "string", "description": "Method and path asked for."},
                "taskIds": strings("The tasks changed (a retry: the new task, then the failed one)."),
                "equipmentIds": strings("The devices concerned."),
                "filter": {"type": ["object", "null"], "description": "A bulk action's filter, as understood."},
                "counts": {
                    "type": ["object", "null"],
                    "required": ["done", "skipped"],
                    "properties": {"done": {"type": "integer"}, "skipped": {"type": "integer"}},
                },
                "idempotencyKey": {"type": ["string", "null"]},
                "status": {"type": "integer", "description": "The HTTP status answered."},
                "outcome": {"type": "string"},
            },
        },
        "AuditPage": {
            "type": "object",
            "required": ["code", "records", "nextCursor"],
            "properties": {
                "code": {"const": 200},
                "records": {"type": "array", "items": schema_ref("AuditRecord")},
                "nextCursor": {"type": ["string", "null"], "description": "Pass as `cursor`; null on the last page."},
            },
        },
    })
}
