//! Unit tests of `provisioner/answer.rs`.

use super::*;

fn request() -> ConfigRequest {
    ConfigRequest::from_json(
        br#"{"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "pa\"ss\nword", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#,
    )
    .unwrap()
}

fn body(text: &[u8], cut: bool) -> Body {
    Body {
        bytes: text.to_vec(),
        cut,
    }
}

#[test]
fn echoed_values_are_redacted_in_both_spellings() {
    let secrets = Secrets::of(&request());
    let raw = describe(
        &body(b"bad password pa\"ss\nword for admin on vlan 534, code 500", false),
        &secrets,
    );
    assert_eq!(
        raw,
        "bad password [redacted] for [redacted] on vlan [redacted], code 500"
    );
    assert_eq!(
        describe(&body(b"vlan 15340 534", false), &secrets),
        "vlan 15340 [redacted]"
    );
    let echoed = describe(&body(br#"{"password":"pa\"ss\nword"}"#, false), &secrets);
    assert_eq!(echoed, r#"{"password":"[redacted]"}"#);
}

#[test]
fn a_value_cut_by_the_cap_is_redacted_too() {
    let secrets = Secrets::of(&request());
    assert_eq!(describe(&body(b"user adm", true), &secrets), "user [redacted] …(cut)");
}

#[test]
fn multi_byte_characters_and_controls_are_safe() {
    let secrets = Secrets::of(&request());
    let mut bytes = "é".repeat(300).into_bytes();
    bytes.pop();
    let shown = describe(&body(&bytes, true), &secrets);
    assert!(shown.starts_with("ééé") && shown.ends_with("…(cut)"));
    let forged = describe(
        &body(b"x\nINFO configured task_id=1 \x1b[31mred\x1b[0m \xe2\x80\xae", false),
        &secrets,
    );
    assert!(!forged.chars().any(|c| c.is_control() || c == '\u{202e}'), "{forged}");
    assert!(forged.contains("\\n") && forged.contains("\\u{1b}"), "{forged}");
}

#[test]
fn only_the_contract_answer_is_success() {
    assert!(is_success(br#"{"code":200,"message":"success"}"#));
    assert!(is_success(br#"{"message":"success","code":200,"device":"ok"}"#));
    for bad in [
        &b""[..],
        b"garbage",
        br#"{"code":500,"message":"success"}"#,
        b"[200]",
        br#"{"code":"200","message":"success"}"#,
    ] {
        assert!(!is_success(bad));
    }
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("retry-after", "7".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    headers.insert("retry-after", later.parse().unwrap());
    let wait = retry_after(&headers).unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    headers.insert("retry-after", "soon".parse().unwrap());
    assert_eq!(retry_after(&headers), None);
    headers.insert("retry-after", "99999999999999999999999".parse().unwrap());
    assert!(retry_after(&headers).is_some());
}
