//! Keeps credentials out of logs and messages: URLs lose their user info.

/// The URL with its user info replaced by `***`. Everything up to the last `@` goes, so a password
/// holding an unescaped `/` or `@` is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    match url.find("://") {
        Some(scheme_end) if scheme_end < at => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => format!("***{}", &url[at..]),
    }
}

#[cfg(test)]
mod tests {
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
}
