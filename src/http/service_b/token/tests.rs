//! Unit tests of `http/service_b/token.rs`.

use super::*;

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    for value in ["Bearer abc", "bearer abc", "BEARER abc", " Bearer  abc "] {
        assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
    }
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearerabc"), None);
}

#[test]
fn tokens_compare_equal_only_when_identical() {
    assert!(constant_time_eq(b"secret-token", b"secret-token"));
    for given in [
        &b"secret-toke"[..],
        b"secret-token!",
        b"",
        b"secret-tokem",
        b"secret-token\0",
    ] {
        assert!(!constant_time_eq(given, b"secret-token"), "{given:?}");
    }
}
