//! Unit tests of `http/routes.rs`.

use super::*;

fn request(method: Method, path: &str) -> HttpRequest {
    HttpRequest {
        method,
        path: path.to_owned(),
        query: String::new(),
        headers: Default::default(),
        body: Default::default(),
        peer: None,
        authority: None,
    }
}

#[test]
fn patterns_take_one_segment_per_parameter_and_literals_exactly() {
    let found = matches("/cpe/{id}/task/{task}", "/cpe/abc123/task/t1").unwrap();
    assert_eq!((found.get("id"), found.get("task")), (Some("abc123"), Some("t1")));
    assert_eq!(matches("/cpe/{id}", "/cpe/").unwrap().get("id"), Some(""));
    for path in ["/cpe", "/cpe/abc123/", "/cpe/abc123/x", "cpe/abc123", "//cpe/abc123"] {
        assert_eq!(matches("/cpe/{id}", path), None, "{path}");
    }
    assert!(matches("/", "/").is_some());
    assert_eq!(matches("/", "//"), None);
    assert_eq!(matches("/healthz", "/healthz/"), None);
}

#[test]
fn a_path_answers_405_with_its_methods_in_table_order() {
    let table = Table::new(vec![
        Route::on(Method::GET, "/t/{task}", 1),
        Route::on(Method::DELETE, "/t/{task}", 2),
        Route::any("/h", 3),
    ]);
    assert!(matches!(
        table.lookup(&request(Method::DELETE, "/t/x")),
        Lookup::Found(2, _)
    ));
    assert!(matches!(table.lookup(&request(Method::PUT, "/h")), Lookup::Found(3, _)));
    assert!(matches!(table.lookup(&request(Method::GET, "/x")), Lookup::NoPath));
    let Lookup::WrongMethod(refused) = table.lookup(&request(Method::POST, "/t/x")) else {
        panic!("expected a 405");
    };
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET, DELETE");
}
