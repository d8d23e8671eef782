//! Where the broker is and how to use it, and the URL redaction that keeps its password out of logs.

use std::fmt;
use std::time::Duration;

/// Where the broker is and how to use it. `Debug` hides the user info of `url`: it holds a password.
#[derive(Clone)]
pub struct AmqpConfig {
    pub url: String,
    pub queue: String,
    /// Most unacknowledged deliveries per subscription; 0 means no limit (AMQP's meaning).
    pub prefetch: u16,
    pub connect_timeout: Duration,
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

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
    fn debug_of_the_config_hides_the_password() {
        let config = AmqpConfig {
            url: "amqp://guest:s3cret@rabbit:5672/%2f".into(),
            queue: "config_tasks".into(),
            prefetch: 4,
            connect_timeout: Duration::from_secs(1),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && shown.contains("rabbit:5672"), "{shown}");
    }
}
