//! Unit tests of `http/h1_errors.rs`.

use super::*;

#[test]
fn only_a_bodyless_4xx_head_is_replaced() {
    let replaced =
        replace_bodyless_error(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n")
            .unwrap();
    let text = String::from_utf8(replaced).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["code"], 431);
    for kept in [
        &b"HTTP/1.1 404 Not Found\r\ncontent-length: 70\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{\"partial",
        b"{\"code\":400}",
    ] {
        assert!(replace_bodyless_error(kept).is_none());
    }
}
