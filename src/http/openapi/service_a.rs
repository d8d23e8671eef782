//! Service A's document: the slow device endpoint, health, and the document itself.

use super::components::{
    body_errors, config_request_body, equipment_id_parameter, equipment_not_found, error_response, frame,
    json_response, responses, schema_ref,
};
use super::meta::{health_paths, metrics_path, openapi_path};
use crate::http::PROVISIONING_FAILED;
use serde_json::{json, Map, Value};

pub fn document() -> Value {
    let (bad_json, invalid) = body_errors();
    let configure = json!({"post": {
        "operationId": "configureDevice",
        "summary": "Configure one device; answers after the configured delay (about 60 s by default).",
        "tags": ["device"],
        "security": [],
        "parameters": [equipment_id_parameter()],
        "requestBody": config_request_body(),
        "responses": responses(json!({
            "200": json_response(
                "Configured.",
                schema_ref("Configured"),
                &[("configured", json!({"code": 200, "message": "success"}))],
            ),
            "400": bad_json,
            "404": error_response(404, "Invalid equipment id.", &[equipment_not_found()]),
            "422": invalid,
            "500": error_response(
                500,
                "The device failed (`--fail-rate` simulates it).",
                &[("deviceFailed", PROVISIONING_FAILED)],
            ),
        })),
    }});
    let mut paths = Map::new();
    paths.insert("/api/v1/equipment/cpe/{id}".into(), configure);
    paths.extend(health_paths("cpe_locate_service"));
    paths.insert("/metrics".into(), metrics_path());
    paths.insert(super::PATH.into(), openapi_path());
    let mut schemas = Map::new();
    schemas.insert(
        "Configured".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"const": 200}, "message": {"const": "success"}},
        }),
    );
    frame(
        "cpe-config Service A (cpe_locate_service)",
        "The slow, synchronous HTTPS endpoint that configures one device (simulated here). Errors are \
         `{\"code\": N, \"message\": \"...\"}` with HTTP status N; a method a path does not take answers 405 \
         with `Allow`, an unknown path 404. See docs/api.md.",
        paths,
        schemas,
    )
}
