//! Checks answers against a document's examples, and keeps count of the examples produced.

use super::doc;
use super::schema::Validator;
use cpe_config::http::openapi::{document, Service};
use serde_json::Value;
use std::collections::BTreeSet;

/// Fields whose value differs per task or run: present and valid, but not compared.
const DYNAMIC: &[&str] = &[
    "taskId",
    "attempts",
    "lastError",
    "tasks",
    "records",
    "nextCursor",
    "done",
    "skipped",
];

/// The new task's id in the document's `alreadyRetried` example.
pub const EXAMPLE_NEW_TASK: &str = "7d1c9e20-8a4b-4f6e-b5a3-2c9d0e1f4a6b";

/// Examples this test cannot produce, and why (by example name, in any operation).
const NOT_PRODUCED: &[(&str, &str)] = &[
    (
        "notAPath",
        "answered before any route runs, so by no one operation: checked once, on listTasks",
    ),
    (
        "bodyTimeout",
        "takes `--body-timeout` (30 s); tests/api/edge.rs waits for it",
    ),
    (
        "notReady",
        "only while starting or stopping; tests/api/rabbitmq.rs shows a lost broker",
    ),
    ("notAccepting", "only while starting or stopping"),
    ("storeDown", "needs a failing store"),
    ("queueDown", "needs a failing broker; tests/api/rabbitmq.rs shows it"),
    (
        "stoppedMidway",
        "needs a store or queue that fails in the middle of a bulk action",
    ),
    (
        "scopeTooNarrow",
        "needs a tokens file with a read token; tests/api/tokens.rs shows it",
    ),
    (
        "notLoopback",
        "needs a client off loopback; tests/dashboard.rs shows it",
    ),
];

#[derive(Default)]
pub struct Checker {
    covered: BTreeSet<(String, String)>,
    used_requests: BTreeSet<String>,
}

fn key(service: Service, name: &str) -> String {
    format!("{service:?} {name}")
}

impl Checker {
    /// Checks an answer against the example `name` of `operation`, and marks that example produced.
    pub fn answer(&mut self, service: Service, operation: &str, name: &str, (status, body): (u16, Value)) {
        let document = document(service);
        let validator = Validator::new(document, true);
        let found = doc::operations(document)
            .into_iter()
            .find(|op| op.id == operation)
            .unwrap();
        let examples = doc::response_examples(&validator, &found);
        let example = examples
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{operation} has no example {name}"));
        let at = format!("{service:?} {operation} `{name}`");
        assert_eq!(status, example.status, "{at}: {body}");
        let schema = doc::answer_schema(&validator, document, operation, status).unwrap();
        validator
            .validate(schema, &body)
            .unwrap_or_else(|why| panic!("{at}: the answer breaks the document: {why}"));
        let strip = |value: &Value| {
            let mut value = value.clone();
            if let Some(object) = value.as_object_mut() {
                object.retain(|field, _| !DYNAMIC.contains(&field.as_str()));
            }
            value
        };
        assert_eq!(strip(&body), strip(example.value), "{at}: the app answered {body}");
        let place = example.component.unwrap_or(operation);
        self.covered.insert((key(service, place), name.to_owned()));
    }

    /// A request body example from the document, as sent.
    pub fn body(&mut self, service: Service, operation: &str, name: &str) -> String {
        self.used_requests
            .insert(key(service, &format!("{operation} body {name}")));
        let op = doc::operations(document(service))
            .into_iter()
            .find(|op| op.id == operation)
            .unwrap();
        op.body["requestBody"]["content"]["application/json"]["examples"][name]["value"].to_string()
    }

    /// A parameter example from the document, as text.
    pub fn param(&mut self, service: Service, parameter: &str, name: &str) -> String {
        self.used_requests.insert(key(service, &format!("{parameter} {name}")));
        let validator = Validator::new(document(service), false);
        let (_, _, value) = doc::request_examples(&validator, document(service))
            .into_iter()
            .find(|(k, _, _)| *k == format!("{parameter} {name}"))
            .unwrap();
        match value {
            Value::String(text) => text.clone(),
            Value::Array(items) => items.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        }
    }

    /// Fails on any example (or request example) of a served operation that nothing produced.
    pub fn all_covered(&self) {
        let mut missing = Vec::new();
        for service in [Service::A, Service::B] {
            let document = document(service);
            let validator = Validator::new(document, true);
            for operation in doc::operations(document).iter().filter(|op| !op.pending) {
                for example in doc::response_examples(&validator, operation) {
                    let place = key(service, example.component.unwrap_or(operation.id));
                    let exempt = NOT_PRODUCED.iter().any(|(name, _)| *name == example.name);
                    if !exempt && !self.covered.contains(&(place.clone(), example.name.to_owned())) {
                        missing.push(format!("{place} {} `{}`", example.status, example.name));
                    }
                }
            }
            for (name, _, _) in doc::request_examples(&validator, document) {
                if !self.used_requests.contains(&key(service, &name)) {
                    missing.push(format!("{service:?} request example {name}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "examples no scenario produced:\n{}",
            missing.join("\n")
        );
    }
}
