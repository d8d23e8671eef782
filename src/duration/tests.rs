//! Unit tests of `duration.rs`.

use super::*;

#[test]
fn reads_every_unit() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
}

#[test]
fn rejects_what_it_cannot_read_with_a_reason() {
    assert!(parse_duration("60").unwrap_err().contains("needs a unit"));
    assert!(parse_duration("5 parsecs").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("-1s").unwrap_err().contains("not a duration"));
    assert!(parse_duration("").unwrap_err().contains("not a duration"));
    assert!(parse_duration("99999999999999999999d").is_err());
}

#[test]
fn formats_what_it_reads() {
    for raw in ["250ms", "2s", "1m", "1h", "7d", "90s"] {
        assert_eq!(format_duration(parse_duration(raw).unwrap()), raw);
    }
}
