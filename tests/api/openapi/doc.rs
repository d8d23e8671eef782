//! Walking an OpenAPI document: its operations, their examples and their answers' schemas.

use super::schema::Validator;
use cpe_config::http::openapi::{ANY_METHOD, PENDING};
use serde_json::Value;

pub const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

pub struct Operation<'d> {
    pub path: &'d str,
    pub method: &'static str,
    pub id: &'d str,
    pub pending: bool,
    pub any_method: bool,
    pub body: &'d Value,
}

pub fn operations(document: &Value) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(body) = item.get(method) {
                out.push(Operation {
                    path,
                    method,
                    id: body["operationId"]
                        .as_str()
                        .expect("every operation has an operationId"),
                    pending: body.get(PENDING).is_some(),
                    any_method: item.get(ANY_METHOD).is_some(),
                    body,
                });
            }
        }
    }
    out
}

/// One response example: where it is, its value, and the schema it must meet.
pub struct ResponseExample<'d> {
    pub status: u16,
    pub name: &'d str,
    pub value: &'d Value,
    pub schema: &'d Value,
    /// The reusable response it comes from (`#/components/responses/...`), if any: such an example
    /// is produced once for the whole document.
    pub component: Option<&'d str>,
}

pub fn response_examples<'d>(validator: &Validator<'d>, operation: &Operation<'d>) -> Vec<ResponseExample<'d>> {
    let mut out = Vec::new();
    for (status, response) in operation.body["responses"].as_object().expect("responses") {
        let component = response["$ref"].as_str().and_then(|r| r.rsplit('/').next());
        let response = validator.deref(response);
        for media in response["content"].as_object().into_iter().flat_map(|c| c.values()) {
            for (name, example) in media["examples"].as_object().into_iter().flatten() {
                out.push(ResponseExample {
                    status: status.parse().expect("a numeric status"),
                    name,
                    value: &example["value"],
                    schema: &media["schema"],
                    component,
                });
            }
        }
    }
    out
}

/// The schema of an operation's JSON answer for `status`, or None when the status is undocumented.
pub fn answer_schema<'d>(
    validator: &Validator<'d>,
    document: &'d Value,
    operation: &str,
    status: u16,
) -> Option<&'d Value> {
    let found = operations(document).into_iter().find(|op| op.id == operation)?;
    let response = validator.deref(found.body["responses"].get(status.to_string())?);
    Some(&response["content"]["application/json"]["schema"])
}

/// Every request example: (key, schema, value); keys are `operationId body name` for bodies and
/// `parameter name` for parameters (shared parameters are one key).
pub fn request_examples<'d>(validator: &Validator<'d>, document: &'d Value) -> Vec<(String, &'d Value, &'d Value)> {
    let mut out = Vec::new();
    for item in document["paths"].as_object().expect("paths").values() {
        let shared = item["parameters"].as_array().into_iter().flatten();
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            if operation.get(PENDING).is_some() {
                continue;
            }
            let own = operation["parameters"].as_array().into_iter().flatten();
            for parameter in shared.clone().chain(own) {
                let parameter = validator.deref(parameter);
                for (name, example) in parameter["examples"].as_object().into_iter().flatten() {
                    let key = format!("{} {name}", parameter["name"].as_str().unwrap());
                    out.push((key, &parameter["schema"], &example["value"]));
                }
            }
            let body = &operation["requestBody"]["content"]["application/json"];
            for (name, example) in body["examples"].as_object().into_iter().flatten() {
                let key = format!("{} body {name}", operation["operationId"].as_str().unwrap());
                out.push((key, &body["schema"], &example["value"]));
            }
        }
    }
    out
}
