//! The dashboard's routes in Service B's document: the page, its script and style, and its mode.

use super::components::{json_response, responses};
use crate::http::dashboard::MODE_PATH;
use serde_json::{json, Map, Value};

pub fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    for (path, operation, summary, content_type) in [
        (
            "/",
            "dashboard",
            "The operator dashboard (HTML); it reads this API.",
            "text/html",
        ),
        (
            "/dashboard.js",
            "dashboardScript",
            "The dashboard's script.",
            "text/javascript",
        ),
        ("/dashboard.css", "dashboardStyle", "The dashboard's style.", "text/css"),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {
                "operationId": operation,
                "summary": summary,
                "description": "Shipped inside the binary; no token (it holds no task data). Served with a strict \
                                `Content-Security-Policy` and `X-Content-Type-Options: nosniff`.",
                "tags": ["dashboard"],
                "security": [],
                "responses": responses(json!({"200": {
                    "description": "The file.",
                    "content": {content_type: {"schema": {"type": "string"}}},
                }})),
            }}),
        );
    }
    paths.insert(
        MODE_PATH.into(),
        json!({"get": {
            "operationId": "dashboardMode",
            "summary": "Whether this client may cancel and retry (`writable`), and whether the service needs a token.",
            "description": "No token needed. With `--api-token` or `--tokens-file`, `writable` is true when the \
                            request carries a token whose scope is `operate` or `admin`; without, when the client \
                            connects from loopback.",
            "tags": ["dashboard"],
            "security": [],
            "responses": responses(json!({"200": json_response(
                "The dashboard's mode.",
                json!({
                    "type": "object",
                    "required": ["code", "writable", "tokenRequired", "scope"],
                    "properties": {
                        "code": {"const": 200},
                        "writable": {"type": "boolean"},
                        "tokenRequired": {"type": "boolean"},
                        "scope": {
                            "enum": ["read", "operate", "admin", null],
                            "description": "The scope of the token given, null without a token in force.",
                        },
                    },
                }),
                &[
                    ("loopback", json!({"code": 200, "writable": true, "tokenRequired": false, "scope": null})),
                    ("needsToken", json!({"code": 200, "writable": false, "tokenRequired": true, "scope": null})),
                ],
            )})),
        }}),
    );
    paths
}
