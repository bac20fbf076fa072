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
    /// At most this many attempts; 0: as many as the deadline allows.
    pub attempts: u32,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            initial: Duration::from_millis(500),
            factor: 2,
            max: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            attempts: 0,
        }
    }
}

impl RecoveryPolicy {
    /// One attempt, `after` the failure: recovery by hand, scripted.
    pub fn once_after(after: Duration) -> Self {
        RecoveryPolicy {
            initial: after,
            factor: 1,
            max: after,
            deadline: Duration::MAX,
            attempts: 1,
        }
    }

    /// The delay before attempt `attempt` (0-based), `since_failure` after the failure; None when
    /// the deadline would pass.
    pub fn next_delay(&self, attempt: u32, since_failure: Duration) -> Option<Duration> {
        if self.attempts != 0 && attempt >= self.attempts {
            return None;
        }
        let mut d = self.initial;
        for _ in 0..attempt {
            d = d.saturating_mul(self.factor).min(self.max);
        }
        (since_failure.saturating_add(d) <= self.deadline).then_some(d)
    }
}

/// The flags of a recovery call made after a failed `flags` call: VIR_MIGRATE_POSTCOPY_RESUME
/// added, VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY (exclusive with it) removed.
pub fn resume_flags(flags: u32) -> u32 {
    (flags | super::vocab::VIR_MIGRATE_POSTCOPY_RESUME)
        & !super::vocab::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
}
