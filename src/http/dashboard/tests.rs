//! Unit tests of `http/dashboard/mod.rs`.

use super::*;

#[test]
fn without_a_token_only_loopback_may_write() {
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    let remote: IpAddr = "192.0.2.7".parse().unwrap();
    assert!(may_write(false, Some(v4)));
    assert!(may_write(false, Some(mapped)));
    assert!(may_write(false, Some("::1".parse().unwrap())));
    assert!(!may_write(false, Some(remote)));
    assert!(!may_write(false, None));
    assert!(may_write(true, Some(remote)));
}
