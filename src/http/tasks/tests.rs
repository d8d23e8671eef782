//! Unit tests of `http/tasks.rs`.

use super::*;

#[test]
fn times_are_rfc_3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(1_796_229_368_123), "2026-12-02T16:36:08.123Z");
}
