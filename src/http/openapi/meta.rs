//! The routes about a service rather than its tasks: health, metrics, and this document.

use super::components::{json_response, responses, schema_ref};
use serde_json::{json, Map, Value};

/// `/healthz` and `/readyz` of one service: answered on every method, without a token.
pub fn health_paths(service: &str) -> Map<String, Value> {
    let alive = json!({"code": 200, "message": "alive", "service": service});
    let ready = json!({"code": 200, "message": "ready", "service": service});
    let not_ready = json!({
        "code": 503,
        "message": "not ready: not accepting work (starting or shutting down)",
        "service": service,
    });
    let operation = |id: &str, summary: &str, responses: Value| {
        json!({
            super::ANY_METHOD: true,
            "get": {
                "operationId": id,
                "summary": summary,
                "description": "Answered alike on every method, without a token.",
                "tags": ["health"],
                "security": [],
                "responses": self::responses(responses),
            },
        })
    };
    let mut out = Map::new();
    out.insert(
        "/healthz".into(),
        operation(
            "healthz",
            "Liveness: answers while the process serves.",
            json!({"200": json_response("Alive.", schema_ref("Health"), &[("alive", alive)])}),
        ),
    );
    out.insert(
        "/readyz".into(),
        operation(
            "readyz",
            "Readiness: 200 only when the service can work.",
            json!({
                "200": json_response("Ready.", schema_ref("Health"), &[("ready", ready)]),
                "503": json_response(
                    "Not ready: starting, shutting down, or a queue subscription is down.",
                    schema_ref("Health"),
                    &[("notReady", not_ready)],
                ),
            }),
        ),
    );
    out
}

/// `/openapi.json` itself.
pub fn openapi_path() -> Value {
    json!({"get": {
        "operationId": "openapi",
        "summary": "This document (OpenAPI 3.1).",
        "tags": ["meta"],
        "security": [],
        "responses": responses(json!({"200": {
            "description": "The OpenAPI document of this service.",
            "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
        }})),
    }})
}

/// `/metrics`: Prometheus text, added by the metrics change (issue 10).
pub fn metrics_path() -> Value {
    json!({"get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics (text exposition format), prefixed `cpe_config_`.",
        "tags": ["meta"],
        "security": [],
        "responses": responses(json!({"200": {
            "description": "Metrics in the Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }})),
    }})
}
