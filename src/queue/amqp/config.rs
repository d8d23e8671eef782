//! Where the broker is and how to use it; its `Debug` keeps the password out of logs.

pub use crate::redact::redact_url;
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

#[cfg(test)]
mod tests {
    use super::*;

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
