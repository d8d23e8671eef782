//! Unit tests of `redact.rs`.

use super::*;

#[test]
fn redaction_hides_user_info_only() {
    assert_eq!(
        redact_url("amqp://guest:s3cret@rabbit:5672/%2f"),
        "amqp://***@rabbit:5672/%2f"
    );
    assert_eq!(redact_url("amqp://u:pa/ss@w@rabbit/%2f"), "amqp://***@rabbit/%2f");
    assert_eq!(redact_url("amqp://rabbit:5672"), "amqp://rabbit:5672");
    assert_eq!(redact_url("u:pw@rabbit"), "***@rabbit");
}

#[test]
fn https_urls_lose_their_credentials_too() {
    assert_eq!(
        redact_url("https://ops:pw@device-api:8443/x"),
        "https://***@device-api:8443/x"
    );
}
