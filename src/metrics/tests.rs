//! Unit tests of `metrics.rs`.

use super::*;

#[test]
fn route_templates_hold_no_ids() {
    let id = "abc123";
    let task = "0b5bb6e4-9c7e-4d4a-8f3e-1f0d1c2b3a49";
    assert_eq!(
        crate::http::routes::template(&format!("/api/v1/equipment/cpe/{id}")),
        "/api/v1/equipment/cpe/{id}"
    );
    assert_eq!(
        crate::http::routes::template(&format!("/api/v1/equipment/cpe/{id}/task/{task}")),
        "/api/v1/equipment/cpe/{id}/task/{task}"
    );
    assert_eq!(crate::http::routes::template("/api/v1/tasks"), "/api/v1/tasks");
    assert_eq!(crate::http::routes::template("/metrics"), "/metrics");
    // Built from the route tables, so every route served has its own label.
    assert_eq!(crate::http::routes::template("/dashboard.js"), "/dashboard.js");
    for odd in [
        "/metrics/",
        "/x",
        "/api/v1/equipment/cpe",
        "//",
        "/api/v1/tasks/abc/def",
    ] {
        assert_eq!(crate::http::routes::template(odd), "other", "{odd}");
    }
    assert_eq!(method_label(&Method::PUT), "other");
}
