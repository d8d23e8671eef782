//! The OpenAPI documents held against the code: each is well formed and its examples meet its own
//! schemas; `/openapi.json` serves it; the route tables and the document list the same routes;
//! every path and method the routers answer is in it, and nothing else is; and every example is
//! what the running app answers (`examples.rs`).

mod checker;
mod doc;
mod examples;
mod schema;

use crate::common::*;
use cpe_config::http::openapi::{document, routes, Service};
use schema::Validator;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

fn each_document() -> [(Service, &'static Value); 2] {
    [(Service::A, document(Service::A)), (Service::B, document(Service::B))]
}

#[test]
fn each_document_is_openapi_3_1_and_its_examples_meet_its_schemas() {
    for (service, document) in each_document() {
        assert_eq!(document["openapi"], "3.1.0", "{service:?}");
        let validator = Validator::new(document, true);
        every_reference_resolves(&validator, document);
        let operations = doc::operations(document);
        let ids: HashSet<&str> = operations.iter().map(|op| op.id).collect();
        assert_eq!(ids.len(), operations.len(), "{service:?}: operationIds are unique");
        for operation in &operations {
            let examples = doc::response_examples(&validator, operation);
            assert!(
                examples.iter().any(|e| (200..300).contains(&e.status))
                    || operation.id == "openapi"
                    || operation.id == "metrics"
                    || operation.id.starts_with("dashboard") && operation.id != "dashboardMode",
                "{service:?} {}: no example of a success",
                operation.id
            );
            for example in examples {
                validator.validate(example.schema, example.value).unwrap_or_else(|why| {
                    panic!(
                        "{service:?} {} {} example `{}`: {why}",
                        operation.id, example.status, example.name
                    )
                });
                if example.schema["$ref"] == "#/components/schemas/Error" {
                    assert_eq!(
                        example.value["code"], example.status,
                        "{}: code is the HTTP status",
                        example.name
                    );
                }
            }
        }
        for (key, schema, value) in doc::request_examples(&validator, document) {
            validator
                .validate(schema, value)
                .unwrap_or_else(|why| panic!("{service:?} request example `{key}`: {why}"));
        }
    }
}

/// The route tables and the documents list the same routes: a route added to a table without its
/// documentation, or documented without a route (and not `x-pending`), fails here, before any
/// server starts.
#[test]
fn every_route_of_the_tables_is_documented_and_every_documented_route_is_in_a_table() {
    for (service, document) in each_document() {
        let served: BTreeSet<(String, &str)> = routes(service)
            .into_iter()
            .map(|(method, pattern)| (method.map_or("any".to_owned(), |m| m.as_str().to_lowercase()), pattern))
            .collect();
        let operations = doc::operations(document);
        let documented: BTreeSet<(String, &str)> = operations
            .iter()
            .filter(|op| !op.pending)
            .map(|op| (if op.any_method { "any" } else { op.method }.to_owned(), op.path))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "{service:?}: in a route table but not documented: {undocumented:?}; documented but in no route \
             table: {unserved:?}"
        );
        for pending in operations.iter().filter(|op| op.pending) {
            assert!(
                !served.iter().any(|(_, pattern)| *pattern == pending.path),
                "{service:?} {}: the route is in its table now, so remove `x-pending`",
                pending.path
            );
        }
    }
}

fn every_reference_resolves(validator: &Validator, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                validator.resolve(reference);
            }
            map.values().for_each(|v| every_reference_resolves(validator, v));
        }
        Value::Array(items) => items.iter().for_each(|v| every_reference_resolves(validator, v)),
        _ => {}
    }
}

#[tokio::test]
async fn each_service_serves_its_document_without_a_token() {
    let app = start(&["--api-token=openapi-test-token-0123"]).await;
    for (addr, service) in [(app.service_a_addr, Service::A), (app.service_b_addr, Service::B)] {
        let response = client().get(url(addr, "/openapi.json")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let served: Value = response.json().await.unwrap();
        assert_eq!(&served, document(service), "{service:?}");
        let refused = client().post(url(addr, "/openapi.json")).send().await.unwrap();
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()["allow"], "GET");
    }
    app.shutdown().await.unwrap();
}

/// A concrete path for a template, from its parameters' examples.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "abc123")
        .replace("{task}", "0b5f3a52-4f0e-4c8a-9a57-3f1de0c2a4b1")
}

fn is_no_such_path(status: u16, body: &Value) -> bool {
    status == 404 && body["message"].as_str().is_some_and(|m| m.starts_with("No such path"))
}

#[tokio::test]
async fn every_path_and_method_the_routers_answer_is_documented_and_nothing_else() {
    let app = start(&["--config-delay=0s"]).await;
    for (service, document) in each_document() {
        let addr = match service {
            Service::A => app.service_a_addr,
            Service::B => app.service_b_addr,
        };
        let operations = doc::operations(document);
        let templates: BTreeSet<&str> = operations.iter().map(|op| op.path).collect();
        for template in &templates {
            let path = concrete(template);
            let here: Vec<_> = operations.iter().filter(|op| op.path == *template).collect();
            let documented: BTreeSet<String> = here.iter().map(|op| op.method.to_uppercase()).collect();
            let pending = here.iter().all(|op| op.pending);
            for method in doc::METHODS {
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let response = client().request(method.clone(), url(addr, &path)).send().await.unwrap();
                let status = response.status().as_u16();
                let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let at = format!("{service:?} {method} {path}: {status} {body}");
                if pending {
                    assert!(
                        is_no_such_path(status, &body),
                        "{at}: the route is served now, so remove `x-pending` from its operations"
                    );
                } else if here[0].any_method || documented.contains(method.as_str()) {
                    assert!(
                        status != 405 && !is_no_such_path(status, &body),
                        "{at}: documented but not answered"
                    );
                } else {
                    assert_eq!(status, 405, "{at}: a method the document does not list must be refused");
                    let allowed: BTreeSet<String> = allow.unwrap().split(", ").map(str::to_owned).collect();
                    assert_eq!(allowed, documented, "{at}: Allow must list the documented methods");
                }
            }
        }
        // Paths near the documented ones, and ones other changes might add, must be unknown unless documented.
        let mut probes: BTreeSet<String> = [
            "/",
            "/api",
            "/api/v1",
            "/dashboard",
            "/openapi",
            "/docs",
            "/api/v1/task",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for template in &templates {
            let path = concrete(template);
            let segments: Vec<&str> = path.split('/').collect();
            for end in 1..segments.len() {
                probes.insert(segments[..end].join("/"));
            }
            probes.insert(format!("{path}/"));
            probes.insert(format!("{path}/more"));
        }
        let documented: BTreeSet<String> = templates.iter().map(|t| concrete(t)).collect();
        for path in probes.iter().filter(|p| !p.is_empty() && !documented.contains(*p)) {
            for method in [reqwest::Method::GET, reqwest::Method::POST] {
                let (status, body) = send(client().request(method.clone(), url(addr, path))).await;
                assert!(
                    is_no_such_path(status, &body),
                    "{service:?} {method} {path} answers {status} {body}: document it in src/http/openapi/"
                );
            }
        }
    }
    app.shutdown().await.unwrap();
}
