//! Retry policy: exponential backoff with jitter (each wait uniform between half and all of its
//! cap), bounded by an attempt count.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls to Service A per task, the first included.
    pub max_attempts: u32,
    /// The delay cap after the first failure; it doubles with each further failure.
    pub base: Duration,
    /// No single wait is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): uniform in [cap/2, cap].
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        let cap = self.base.saturating_mul(factor).min(self.max_delay);
        let half = cap / 2;
        half + cap.saturating_sub(half).mul_f64(fastrand::f64())
    }

    /// The wait after failed attempt `attempt` when Service A may have said when to come back
    /// (`Retry-After`): never sooner than it asked, never sooner than the backoff, and never
    /// longer than `ceiling` (the call deadline) or `max_delay`, so the lease's arithmetic holds
    /// whatever a peer writes in that header.
    pub fn wait_after(&self, attempt: u32, hint: Option<Duration>, ceiling: Duration) -> Duration {
        let backoff = self.delay_after(attempt);
        match hint {
            Some(hint) => hint.max(backoff).min(ceiling.min(self.max_delay).max(backoff)),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = policy.delay_after(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay_after(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.delay_after(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_is_honoured_within_the_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
        };
        let ceiling = Duration::from_secs(30);
        assert_eq!(
            policy.wait_after(1, Some(Duration::from_secs(7)), ceiling),
            Duration::from_secs(7)
        );
        assert_eq!(policy.wait_after(1, Some(Duration::from_secs(3600)), ceiling), ceiling);
        let short = policy.wait_after(1, Some(Duration::ZERO), ceiling);
        assert!(short >= Duration::from_millis(50) && short <= Duration::from_millis(100));
    }
}
