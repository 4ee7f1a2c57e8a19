//! Capped exponential backoff with jitter, shared by every sink that retries.

use std::time::Duration;

use rand::Rng;

/// The longest a server's `Retry-After` is honoured for; past it we retry anyway, so that a
/// misconfigured proxy cannot park the pipeline for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The cap the doubling stops at.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0 for the first retry).
    ///
    /// "Equal jitter": a random delay between half and all of the capped exponential step, so
    /// that many instances retrying together spread out but none retries almost at once. A
    /// server's `Retry-After` is a floor.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        let half = step / 2;
        let jittered = half + rand::rng().random_range(Duration::ZERO..=half);
        match retry_after {
            Some(floor) => jittered.max(floor.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_jitter_bounds() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = policy.delay(0, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(2, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.delay(40, None);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_is_a_floor_with_a_sanity_cap() {
        let policy = RetryPolicy::default();
        assert!(policy.delay(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }
}
