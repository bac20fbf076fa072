//! The opt-in automatic recovery policy: when a post-copy migration fails (both sides paused),
//! retry VIR_MIGRATE_POSTCOPY_RESUME with exponential backoff until it succeeds or a deadline
//! passes. Pure decisions; the IO layer sleeps and calls.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Delay before the first attempt.
    pub initial: Duration,
    /// Each further delay is multiplied by this, up to `max`.
    pub factor: u32,
    pub max: Duration,
    /// No attempt starts later than this after the failure.
    pub deadline: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            initial: Duration::from_millis(500),
            factor: 2,
            max: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

impl RecoveryPolicy {
    /// The delay before attempt `attempt` (0-based), `since_failure` after the failure; None when
    /// the deadline would pass.
    pub fn next_delay(&self, attempt: u32, since_failure: Duration) -> Option<Duration> {
        let mut d = self.initial;
        for _ in 0..attempt {
            d = d.saturating_mul(self.factor).min(self.max);
        }
        (since_failure + d <= self.deadline).then_some(d)
    }
}
