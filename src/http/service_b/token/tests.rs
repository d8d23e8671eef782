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
