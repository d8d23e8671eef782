//! What both documents share: the error shape, the request body, health answers, the edge's own
//! errors, and helpers that keep each operation short.

use crate::http::{BODY_LIMIT, EQUIPMENT_NOT_FOUND};
use serde_json::{json, Map, Value};

/// The request body of both services' POST, as in `docs/api.md`.
pub const EXAMPLE_BODY: &str = r#"{"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#;

/// `^[a-zA-Z0-9]{6,}$`, at most 128 long: `EquipmentId::parse`.
pub const EQUIPMENT_ID_PATTERN: &str = "^[a-zA-Z0-9]{6,128}$";

/// The task id of Service B's examples.
pub const TASK_ID: &str = "0b5f3a52-4f0e-4c8a-9a57-3f1de0c2a4b1";
pub const UNAUTHORIZED: &str = "Missing or wrong bearer token in the Authorization header";
pub const STORE_DOWN: &str = "Task store unavailable; retry shortly";

pub fn unauthorized() -> Value {
    let mut response = error_response(
        401,
        "With `--api-token` set: the bearer token is missing or wrong.",
        &[("unauthorized", UNAUTHORIZED)],
    );
    response["headers"] = json!({"WWW-Authenticate": {"schema": {"const": "Bearer"}, "required": true}});
    response
}

pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// A JSON response with named examples.
pub fn json_response(description: &str, schema: Value, examples: &[(&str, Value)]) -> Value {
    let examples: Map<String, Value> = examples
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!({"value": value})))
        .collect();
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema, "examples": examples}},
    })
}

/// An error response: `{"code": status, "message": ...}`, one example per message.
pub fn error_response(status: u16, description: &str, examples: &[(&str, &str)]) -> Value {
    let examples: Vec<(&str, Value)> = examples
        .iter()
        .map(|(name, message)| (*name, json!({"code": status, "message": message})))
        .collect();
    json_response(description, schema_ref("Error"), &examples)
}

/// The errors any request can meet before a route runs: the edge's deadlines and size limits.
pub fn edge_responses(responses: &mut Map<String, Value>) {
    for (status, name) in [
        ("408", "RequestTimeout"),
        ("413", "PayloadTooLarge"),
        ("414", "UriTooLong"),
        ("431", "HeaderTooLarge"),
    ] {
        responses.insert(status.into(), response_ref(name));
    }
}

/// An operation's responses: the given ones plus the edge's.
pub fn responses(given: Value) -> Value {
    let mut responses = given.as_object().cloned().expect("responses are an object");
    edge_responses(&mut responses);
    Value::Object(responses)
}

pub fn equipment_id_parameter() -> Value {
    json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": "Equipment id: 6 to 128 ASCII letters or digits, matched against the raw path (no \
                        percent-decoding). Anything else answers the equipment 404.",
        "schema": schema_ref("EquipmentId"),
        "examples": {"device": {"value": "abc123"}},
    })
}

pub fn equipment_not_found() -> (&'static str, &'static str) {
    ("equipmentNotFound", EQUIPMENT_NOT_FOUND)
}

/// The 400 any request can get from the edge, before any route runs.
pub fn malformed_request() -> (&'static str, &'static str) {
    (
        "notAPath",
        "Request target must be a path starting with / (such as /api/v1/equipment/cpe/{id})",
    )
}

/// Body errors of both POSTs, 400 (not JSON) and 422 (JSON that breaks the schema).
pub fn body_errors() -> (Value, Value) {
    let bad_json = error_response(
        400,
        "The body is not JSON, or could not be read; or the request could not be parsed.",
        &[
            (
                "notJson",
                "request body is not valid JSON: expected value at line 1 column 1",
            ),
            malformed_request(),
        ],
    );
    let invalid = error_response(
        422,
        "JSON that breaks the schema, or a key given twice; the message names the field.",
        &[
            ("missingField", "missing field `timeoutInSeconds`"),
            ("vlanOutOfRange", "`vlan` must be from 1 to 4094, got 5000"),
            (
                "unknownField",
                "unknown field `x`: expected `timeoutInSeconds` and `parameters`",
            ),
            (
                "duplicateKey",
                "request body is ambiguous: key `vlan` appears twice at line 1 column 57",
            ),
        ],
    );
    (bad_json, invalid)
}

pub fn config_request_body() -> Value {
    let example: Value = serde_json::from_str(EXAMPLE_BODY).expect("the example is JSON");
    json!({
        "required": true,
        "description": format!(
            "Strict JSON of at most {BODY_LIMIT} bytes; no Content-Type is required. A key given twice \
             anywhere is refused (422). Names and strings are limited in bytes (UTF-8), which JSON Schema \
             counts in characters."
        ),
        "content": {"application/json": {
            "schema": schema_ref("ConfigRequest"),
            "examples": {
                "objectForm": {"summary": "parameters as an object", "value": example},
                "listForm": {
                    "summary": "the original specification's list of one-key objects, meaning the same",
                    "value": {"timeoutInSeconds": 14, "parameters": [
                        {"username": "admin"}, {"password": "admin"}, {"vlan": 534}, {"interfaces": [1, 2, 3, 4]}
                    ]},
                },
            },
        }},
    })
}

/// Schemas both services use.
pub fn schemas() -> Map<String, Value> {
    let int64 = json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX});
    let value = json!({"oneOf": [
        {"type": "string", "maxLength": 1024, "description": "At most 1024 bytes."},
        int64,
        {"type": "array", "maxItems": 256, "items": int64},
    ]});
    let known = json!({
        "vlan": {"type": "integer", "minimum": 1, "maximum": 4094},
        "interfaces": {"type": "array", "maxItems": 256, "items": {"type": "integer", "minimum": 1, "maximum": 1024}},
    });
    let name = json!({"minLength": 1, "maxLength": 64, "description": "1 to 64 bytes."});
    let schemas = json!({
        "Error": {
            "type": "object",
            "description": "Every error: `code` is the HTTP status, `message` says what is wrong.",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "message": {"type": "string"},
            },
        },
        "EquipmentId": {"type": "string", "pattern": EQUIPMENT_ID_PATTERN},
        "TaskId": {"type": "string", "format": "uuid", "description": "Canonical hyphenated UUID."},
        "ConfigRequest": {
            "type": "object",
            "required": ["timeoutInSeconds", "parameters"],
            "additionalProperties": false,
            "properties": {
                "timeoutInSeconds": {
                    "type": "integer", "minimum": 0, "maximum": 3600,
                    "description": "The device's own timeout, passed to Service A unchanged; not an HTTP timeout.",
                },
                "parameters": {"oneOf": [
                    {
                        "type": "object", "maxProperties": 64, "propertyNames": name,
                        "properties": known, "additionalProperties": schema_ref("ParameterValue"),
                    },
                    {
                        "type": "array", "maxItems": 64,
                        "description": "One key per element; a name may appear once in the list.",
                        "items": {
                            "type": "object", "minProperties": 1, "maxProperties": 1, "propertyNames": name,
                            "properties": known, "additionalProperties": schema_ref("ParameterValue"),
                        },
                    },
                ]},
            },
        },
        "ParameterValue": value,
        "Health": {
            "type": "object",
            "required": ["code", "message", "service"],
            "properties": {
                "code": {"enum": [200, 503]},
                "message": {"type": "string"},
                "service": {"enum": ["cpe_locate_service", "config_status_service"]},
            },
        },
    });
    schemas.as_object().cloned().expect("schemas are an object")
}

/// Responses every operation refers to: what the edge answers before any route runs.
pub fn edge_response_components() -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "RequestTimeout".into(),
        error_response(
            408,
            "The body did not arrive within `--body-timeout` of the request head.",
            &[("bodyTimeout", "Request body not received within 30s")],
        ),
    );
    out.insert(
        "PayloadTooLarge".into(),
        error_response(
            413,
            "A body larger than the limit, on any path.",
            &[("tooLarge", &format!("Request body is larger than {BODY_LIMIT} bytes"))],
        ),
    );
    out.insert(
        "UriTooLong".into(),
        error_response(
            414,
            "HTTP/1.1: a request target longer than 65,534 bytes.",
            &[("uriTooLong", "Request target is longer than 65534 bytes")],
        ),
    );
    out.insert(
        "HeaderTooLarge".into(),
        error_response(
            431,
            "HTTP/1.1: more than 100 header fields or a head over about 400 KiB.",
            &[(
                "headerTooLarge",
                "Request header is too large: at most 100 header fields and about 400 KiB in all",
            )],
        ),
    );
    out
}

/// The document's frame: version, info, and the components both services share.
pub fn frame(title: &str, description: &str, paths: Map<String, Value>, extra_schemas: Map<String, Value>) -> Value {
    let mut schemas = schemas();
    schemas.extend(extra_schemas);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": edge_response_components(),
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Only when the service runs with `--api-token` or `--tokens-file`: then every \
                                task route of Service B requires `Authorization: Bearer <token>`, of a scope \
                                that covers the route (`read`, `operate`, `admin`).",
            }},
        },
    })
}
