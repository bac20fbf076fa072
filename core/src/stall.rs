//! A post-copy migration that makes no progress: the stall detector of the opt-in automatic
//! recovery policy.
//!
//! A hard cut of the migration connection ends in an error at once, and QEMU moves both sides to
//! `postcopy-paused`. A silent partition (packets dropped, no RST) does not: TCP retransmits for
//! minutes while the destination's guest waits for pages. The policy therefore watches the
//! source's transferred-bytes counter (`ram.transferred` of `query-migrate`) while the migration
//! is in post-copy, and declares a stall once it has not moved for the policy's window. The
//! caller then pauses both sides (`migrate-pause`) so the usual recovery can take over once the
//! link is back.
//!
//! Pure: the caller hands in the time (milliseconds since any fixed point) with each sample.

/// What the detector decided about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallVerdict {
    /// Not in post-copy, or the counter moved within the window.
    Progressing,
    /// The counter has not moved since `since_ms`; declared at `detected_ms` (once).
    Stalled { since_ms: u64, detected_ms: u64 },
    /// Stalled, already reported.
    StillStalled,
}

/// Declares a stall when the transferred-bytes counter stays put for `window_ms` in post-copy.
#[derive(Debug, Clone)]
pub struct StallDetector {
    window_ms: u64,
    last: Option<(u64, u64)>,
    reported: bool,
}

impl StallDetector {
    /// A detector with a window of `window_ms` (0 means every sample without progress is a stall).
    pub fn new(window_ms: u64) -> Self {
        StallDetector {
            window_ms,
            last: None,
            reported: false,
        }
    }

    /// One sample: the time, the source's transferred bytes, and whether the migration is in
    /// post-copy (`postcopy-active`). Leaving post-copy forgets the history.
    pub fn sample(&mut self, now_ms: u64, transferred: u64, in_postcopy: bool) -> StallVerdict {
        if !in_postcopy {
            self.last = None;
            self.reported = false;
            return StallVerdict::Progressing;
        }
        match self.last {
            Some((since, bytes)) if bytes == transferred => {
                if now_ms.saturating_sub(since) < self.window_ms {
                    StallVerdict::Progressing
                } else if self.reported {
                    StallVerdict::StillStalled
                } else {
                    self.reported = true;
                    StallVerdict::Stalled {
                        since_ms: since,
                        detected_ms: now_ms,
                    }
                }
            }
            _ => {
                self.last = Some((now_ms, transferred));
                self.reported = false;
                StallVerdict::Progressing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_stays_put_for_the_window_is_a_stall_reported_once() {
        let mut d = StallDetector::new(2000);
        assert_eq!(d.sample(0, 100, true), StallVerdict::Progressing);
        assert_eq!(d.sample(500, 200, true), StallVerdict::Progressing);
        assert_eq!(d.sample(1500, 200, true), StallVerdict::Progressing);
        assert_eq!(d.sample(2499, 200, true), StallVerdict::Progressing);
        assert_eq!(
            d.sample(2500, 200, true),
            StallVerdict::Stalled {
                since_ms: 500,
                detected_ms: 2500
            }
        );
        assert_eq!(d.sample(3000, 200, true), StallVerdict::StillStalled);
        // Progress again: a later stall is a new one.
        assert_eq!(d.sample(3500, 300, true), StallVerdict::Progressing);
        assert_eq!(
            d.sample(5600, 300, true),
            StallVerdict::Stalled {
                since_ms: 3500,
                detected_ms: 5600
            }
        );
    }

    #[test]
    fn nothing_is_a_stall_outside_post_copy() {
        let mut d = StallDetector::new(100);
        assert_eq!(d.sample(0, 5, false), StallVerdict::Progressing);
        assert_eq!(d.sample(10_000, 5, false), StallVerdict::Progressing);
        // Entering post-copy starts the window at the first sample in it.
        assert_eq!(d.sample(10_001, 5, true), StallVerdict::Progressing);
        assert_eq!(
            d.sample(10_101, 5, true),
            StallVerdict::Stalled {
                since_ms: 10_001,
                detected_ms: 10_101
            }
        );
    }
}
