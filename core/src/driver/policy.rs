//! Our switch policies (an extension of ours, not libvirt's; docs/driver-behaviour.md §7.1): the
//! driver itself decides when to send `migrate-start-postcopy`, from QEMU's `query-migrate`
//! counters sampled at the io layer's [`Input::Tick`](super::Input::Tick)s.
//!
//! - `half-pass`: once half of the guest's memory has been sent once;
//! - `adaptive`: once staying in pre-copy until the end of the pass is predicted to cost the guest
//!   at least as much stall as switching now.
//!
//! Neither switches while the link makes no progress (the transferred bytes did not move between
//! two samples). [`decide`] is a pure function of two samples; the `impl Migration` below only
//! asks QEMU and acts on the verdict.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::messages::{Action, Milestone, SwitchedBy};
use super::migration::{Migration, Purpose};
use super::phase::AsyncJob;
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;
use crate::qmp::{Command, QmpError};

/// The typed parameter that selects a policy (string: `adaptive` or `half-pass`). Our own name
/// under our `lpc.` prefix, in libvirt's spelling style; not a libvirt parameter.
pub const PARAM_SWITCH_POLICY: &str = "lpc.switch_policy";
/// The round-trip time the adaptive policy assumes (ullong, microseconds; default 0).
pub const PARAM_SWITCH_POLICY_RTT: &str = "lpc.switch_policy.rtt";

/// A switch policy of ours, chosen per migrate call ([`MigrateRequest::switch_policy`]).
///
/// [`MigrateRequest::switch_policy`]: super::MigrateRequest::switch_policy
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum SwitchPolicy {
    /// Switch once half of the memory has been sent once.
    HalfPass,
    /// Switch when staying costs more guest stall than switching (§7.1). `rtt_us`: the round
    /// trip of one page request, which QEMU does not know.
    Adaptive { rtt_us: u64 },
}

/// A policy name or parameter the caller got wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("unknown switch policy '{0}' (expected 'adaptive' or 'half-pass')")]
    Unknown(String),
    #[error("a round-trip time is a parameter of the 'adaptive' switch policy only, not of '{0}'")]
    RttWithout(&'static str),
}

impl SwitchPolicy {
    /// The name the parameter, the CLI and the transcripts use.
    pub fn name(&self) -> &'static str {
        match self {
            SwitchPolicy::HalfPass => "half-pass",
            SwitchPolicy::Adaptive { .. } => "adaptive",
        }
    }

    /// A policy from its name and, for `adaptive` only, the round-trip time in microseconds.
    pub fn parse(name: &str, rtt_us: Option<u64>) -> Result<SwitchPolicy, PolicyError> {
        match name {
            "adaptive" => Ok(SwitchPolicy::Adaptive {
                rtt_us: rtt_us.unwrap_or(0),
            }),
            "half-pass" if rtt_us.is_some() => Err(PolicyError::RttWithout("half-pass")),
            "half-pass" => Ok(SwitchPolicy::HalfPass),
            other => Err(PolicyError::Unknown(other.to_string())),
        }
    }
}

/// The request's policy against its flags (run where Begin checks the flags): a policy needs
/// VIR_MIGRATE_POSTCOPY, and excludes our flag and VIR_MIGRATE_POSTCOPY_RESUME (a recovery is
/// already past the switch). VIR_ERR_INVALID_ARG, as libvirt's flag-pair checks.
pub fn check_policy(policy: Option<SwitchPolicy>, flags: u32) -> Result<(), VirError> {
    let Some(p) = policy else { return Ok(()) };
    let refuse = |what: &str| {
        Err(VirError::new(
            code::INVALID_ARG,
            format!("switch policy '{}' {what}", p.name()),
        ))
    };
    if flags & VIR_MIGRATE_POSTCOPY == 0 {
        return refuse("requires VIR_MIGRATE_POSTCOPY");
    }
    if flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0 {
        return refuse("and VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY are mutually exclusive");
    }
    if flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 {
        return refuse("and VIR_MIGRATE_POSTCOPY_RESUME are mutually exclusive");
    }
    Ok(())
}

/// The `query-migrate` counters the policies read (bytes, and bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// `ram.total`: the guest's memory.
    pub total: u64,
    /// `ram.remaining`: bytes still to send in this pass (QEMU's dirty bitmap).
    pub remaining: u64,
    /// `ram.transferred`: bytes on the wire so far.
    pub transferred: u64,
    /// (`ram.normal` + `ram.duplicate`) × `ram.page-size`: the memory sent so far, a page counted
    /// each time it was sent.
    pub sent: u64,
    pub page_size: u64,
    /// `ram.mbps` in bytes per second (the rate QEMU measured).
    pub rate: u64,
    /// `ram.dirty-pages-rate` × `ram.page-size` (0 until QEMU has measured it at a bitmap sync).
    pub dirty_rate: u64,
}

impl Sample {
    /// The counters of a `query-migrate` reply; None without a `ram` object (setup).
    pub fn from_query_migrate(reply: &Value) -> Option<Sample> {
        let ram = reply.get("ram")?;
        let u = |k: &str| ram.get(k).and_then(Value::as_u64).unwrap_or(0);
        let page_size = u("page-size");
        let mbps = ram.get("mbps").and_then(Value::as_f64).unwrap_or(0.0);
        Some(Sample {
            total: u("total"),
            remaining: u("remaining"),
            transferred: u("transferred"),
            sent: (u("normal") + u("duplicate")).saturating_mul(page_size),
            page_size,
            rate: (mbps.max(0.0) * 125_000.0).round() as u64,
            dirty_rate: u("dirty-pages-rate").saturating_mul(page_size),
        })
    }
}

/// Why a policy switched: what it saw, in the units of §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// half-pass: `sent` of `total` bytes sent once.
    HalfSent { sent: u64, total: u64 },
    /// adaptive: the guest dirties memory at least as fast as the link sends it.
    NoNetProgress { dirty_rate: u64, rate: u64 },
    /// adaptive: the predicted stall of staying to the end of the pass is at least that of now.
    StayCostsMore { stay_us: u64, switch_us: u64 },
}

impl SwitchReason {
    /// One line for traces and reports.
    pub fn describe(&self) -> String {
        match self {
            SwitchReason::HalfSent { sent, total } => {
                format!("{sent} of {total} bytes sent once")
            }
            SwitchReason::NoNetProgress { dirty_rate, rate } => {
                format!("dirty rate {dirty_rate} B/s >= rate {rate} B/s")
            }
            SwitchReason::StayCostsMore { stay_us, switch_us } => {
                format!("stall if staying {stay_us} us >= stall if switching {switch_us} us")
            }
        }
    }
}

/// Why a policy stays in pre-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StayReason {
    /// The first sample: progress needs two.
    FirstSample,
    /// The transferred bytes did not move since the last sample.
    NoProgress,
    /// half-pass: less than half sent.
    BeforeHalf,
    /// adaptive: QEMU has not measured a rate yet.
    NoRate,
    /// adaptive: staying is predicted to cost less stall.
    StayCheaper { stay_us: u64, switch_us: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Stay(StayReason),
    Switch(SwitchReason),
}

/// The predicted stall, in microseconds, of a guest that must pull `missing` bytes on demand in
/// the worst case: their transfer at `rate`, plus one round trip per page (serial faults).
fn stall_us(missing: u64, rate: u64, page_size: u64, rtt_us: u64) -> u64 {
    let transfer = u128::from(missing) * 1_000_000 / u128::from(rate.max(1));
    let faults = u128::from(missing) / u128::from(page_size.max(1));
    u64::try_from(transfer + faults * u128::from(rtt_us)).unwrap_or(u64::MAX)
}

/// A policy's verdict on the sample `now`, `prev` being the one before (§7.1).
pub fn decide(policy: SwitchPolicy, prev: Option<&Sample>, now: &Sample) -> Verdict {
    let Some(prev) = prev else {
        return Verdict::Stay(StayReason::FirstSample);
    };
    if now.transferred <= prev.transferred {
        return Verdict::Stay(StayReason::NoProgress);
    }
    match policy {
        SwitchPolicy::HalfPass => {
            if now.total > 0 && now.sent.saturating_mul(2) >= now.total {
                Verdict::Switch(SwitchReason::HalfSent {
                    sent: now.sent,
                    total: now.total,
                })
            } else {
                Verdict::Stay(StayReason::BeforeHalf)
            }
        }
        SwitchPolicy::Adaptive { rtt_us } => {
            let (b, d, u) = (now.rate, now.dirty_rate, now.remaining);
            if b == 0 {
                return Verdict::Stay(StayReason::NoRate);
            }
            if d >= b {
                return Verdict::Switch(SwitchReason::NoNetProgress {
                    dirty_rate: d,
                    rate: b,
                });
            }
            // Staying to the end of the pass takes u / b; the guest dirties d per second meanwhile.
            let dirtied = u128::from(d) * u128::from(u) / u128::from(b);
            let dirtied = u64::try_from(dirtied).unwrap_or(u64::MAX).min(now.total);
            let stay_us = stall_us(dirtied, b, now.page_size, rtt_us);
            let switch_us = stall_us(u, b, now.page_size, rtt_us);
            if u > 0 && stay_us >= switch_us {
                Verdict::Switch(SwitchReason::StayCostsMore { stay_us, switch_us })
            } else {
                Verdict::Stay(StayReason::StayCheaper { stay_us, switch_us })
            }
        }
    }
}

/// What the driver keeps for its policy between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PolicyState {
    /// A policy `query-migrate` is on its way (later ticks wait for it).
    querying: bool,
    prev: Option<Sample>,
}

impl Migration {
    /// Whether the policy may still switch: the source migrates in pre-copy, no switch was asked.
    fn policy_watching(&self) -> bool {
        self.req.switch_policy.is_some()
            && self.switch.is_none()
            && self.sides.src.job == AsyncJob::MigrationOut
            && self.sides.src.status == Some(MigStatus::Active)
    }

    /// The io layer's tick: sample the source's counters, unless a sample is on its way.
    pub(super) fn on_tick(&mut self, out: &mut Vec<Action>) {
        if self.policy_watching() && !self.policy.querying {
            self.policy.querying = true;
            self.send(Side::Src, Command::QueryMigrate, Purpose::Policy, out);
        }
    }

    /// The sample arrived: decide, and switch if the policy says so.
    pub(super) fn on_policy_reply(
        &mut self,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        self.policy.querying = false;
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                out.push(Action::Warn(format!(
                    "switch policy: query-migrate failed: {}",
                    e.desc
                )));
                return;
            }
        };
        let (Some(policy), true) = (self.req.switch_policy, self.policy_watching()) else {
            return;
        };
        let Some(now) = Sample::from_query_migrate(&value) else {
            return;
        };
        let verdict = decide(policy, self.policy.prev.as_ref(), &now);
        self.policy.prev = Some(now);
        if let Verdict::Switch(reason) = verdict {
            self.send(
                Side::Src,
                Command::MigrateStartPostcopy,
                Purpose::AutoSwitch,
                out,
            );
            let by = SwitchedBy::Policy {
                policy,
                pass: self.last_pass,
                reason,
            };
            self.switch = Some(by);
            out.push(Action::Milestone(Milestone::SwitchRequested(by)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests state their expectations by panicking
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn sample(transferred: u64, remaining: u64, rate: u64, dirty_rate: u64) -> Sample {
        Sample {
            total: 256 * MIB,
            remaining,
            transferred,
            sent: 256 * MIB - remaining,
            page_size: 4096,
            rate,
            dirty_rate,
        }
    }

    #[test]
    fn reads_the_counters_of_a_qemu_reply() {
        let reply = serde_json::json!({"status": "active", "ram": {
            "total": 268_435_456u64, "remaining": 100_000_000u64, "transferred": 50_000_000u64,
            "normal": 10_000, "duplicate": 30_000, "page-size": 4096, "mbps": 268.4,
            "dirty-pages-rate": 1000}});
        assert_eq!(
            Sample::from_query_migrate(&reply),
            Some(Sample {
                total: 268_435_456,
                remaining: 100_000_000,
                transferred: 50_000_000,
                sent: 40_000 * 4096,
                page_size: 4096,
                rate: 33_550_000,
                dirty_rate: 4_096_000,
            })
        );
        assert_eq!(
            Sample::from_query_migrate(&serde_json::json!({"status": "setup"})),
            None
        );
    }

    #[test]
    fn no_switch_without_two_samples_or_without_progress() {
        let a = sample(10 * MIB, 10 * MIB, 32 * MIB, 64 * MIB);
        for p in [SwitchPolicy::HalfPass, SwitchPolicy::Adaptive { rtt_us: 0 }] {
            assert_eq!(decide(p, None, &a), Verdict::Stay(StayReason::FirstSample));
            // Everything else says switch (half sent, dirty rate above the rate), but the link
            // did not move.
            assert_eq!(
                decide(p, Some(&a), &a),
                Verdict::Stay(StayReason::NoProgress)
            );
        }
    }

    #[test]
    fn half_pass_switches_at_half_of_the_memory_sent_once() {
        let p = SwitchPolicy::HalfPass;
        let prev = sample(0, 256 * MIB, 0, 0);
        // 127 MiB sent of 256: not yet; 128 MiB: exactly half, switch.
        let before = sample(127 * MIB, 129 * MIB, 32 * MIB, 0);
        assert_eq!(
            decide(p, Some(&prev), &before),
            Verdict::Stay(StayReason::BeforeHalf)
        );
        let half = sample(128 * MIB, 128 * MIB, 32 * MIB, 0);
        assert_eq!(
            decide(p, Some(&before), &half),
            Verdict::Switch(SwitchReason::HalfSent {
                sent: 128 * MIB,
                total: 256 * MIB
            })
        );
    }

    #[test]
    fn adaptive_waits_for_a_measured_rate() {
        let p = SwitchPolicy::Adaptive { rtt_us: 0 };
        let prev = sample(MIB, 255 * MIB, 0, 0);
        let now = sample(2 * MIB, 254 * MIB, 0, 0);
        assert_eq!(
            decide(p, Some(&prev), &now),
            Verdict::Stay(StayReason::NoRate)
        );
    }

    #[test]
    fn adaptive_switches_when_the_guest_dirties_faster_than_the_link() {
        let p = SwitchPolicy::Adaptive { rtt_us: 0 };
        let prev = sample(100 * MIB, 60 * MIB, 32 * MIB, 40 * MIB);
        let now = sample(103 * MIB, 57 * MIB, 32 * MIB, 40 * MIB);
        assert_eq!(
            decide(p, Some(&prev), &now),
            Verdict::Switch(SwitchReason::NoNetProgress {
                dirty_rate: 40 * MIB,
                rate: 32 * MIB
            })
        );
        // Equal rates: the pass cannot gain either.
        let equal = sample(103 * MIB, 57 * MIB, 32 * MIB, 32 * MIB);
        assert!(matches!(
            decide(p, Some(&prev), &equal),
            Verdict::Switch(SwitchReason::NoNetProgress { .. })
        ));
    }

    #[test]
    fn adaptive_stays_while_the_pass_gains_on_the_guest() {
        // B = 32 MiB/s, D = 8 MiB/s, U = 64 MiB. Switching now: 64 MiB / 32 MiB/s = 2 s.
        // Staying: the pass ends in 2 s, by when 16 MiB are dirty: 16 / 32 = 0.5 s.
        let p = SwitchPolicy::Adaptive { rtt_us: 0 };
        let prev = sample(100 * MIB, 65 * MIB, 32 * MIB, 8 * MIB);
        let now = sample(101 * MIB, 64 * MIB, 32 * MIB, 8 * MIB);
        assert_eq!(
            decide(p, Some(&prev), &now),
            Verdict::Stay(StayReason::StayCheaper {
                stay_us: 500_000,
                switch_us: 2_000_000
            })
        );
    }

    #[test]
    fn the_round_trip_adds_one_per_page_to_both_sides() {
        // As above with RTT 100 us: switching now faults 64 MiB / 4 KiB = 16384 pages (1.6384 s
        // of round trips), staying 4096 pages (0.4096 s).
        let p = SwitchPolicy::Adaptive { rtt_us: 100 };
        let prev = sample(100 * MIB, 65 * MIB, 32 * MIB, 8 * MIB);
        let now = sample(101 * MIB, 64 * MIB, 32 * MIB, 8 * MIB);
        assert_eq!(
            decide(p, Some(&prev), &now),
            Verdict::Stay(StayReason::StayCheaper {
                stay_us: 500_000 + 409_600,
                switch_us: 2_000_000 + 1_638_400
            })
        );
    }

    #[test]
    fn an_empty_pass_is_no_reason_to_switch() {
        // Nothing left to send (QEMU is about to converge): both costs are 0; stay.
        let p = SwitchPolicy::Adaptive { rtt_us: 0 };
        let prev = sample(100 * MIB, MIB, 32 * MIB, 8 * MIB);
        let now = sample(101 * MIB, 0, 32 * MIB, 8 * MIB);
        assert_eq!(
            decide(p, Some(&prev), &now),
            Verdict::Stay(StayReason::StayCheaper {
                stay_us: 0,
                switch_us: 0
            })
        );
    }

    #[test]
    fn names_and_parameters() {
        assert_eq!(
            SwitchPolicy::parse("adaptive", Some(250)),
            Ok(SwitchPolicy::Adaptive { rtt_us: 250 })
        );
        assert_eq!(
            SwitchPolicy::parse("adaptive", None),
            Ok(SwitchPolicy::Adaptive { rtt_us: 0 })
        );
        assert_eq!(
            SwitchPolicy::parse("half-pass", None),
            Ok(SwitchPolicy::HalfPass)
        );
        assert_eq!(
            SwitchPolicy::parse("half-pass", Some(1))
                .unwrap_err()
                .to_string(),
            "a round-trip time is a parameter of the 'adaptive' switch policy only, not of 'half-pass'"
        );
        assert_eq!(
            SwitchPolicy::parse("eager", None).unwrap_err().to_string(),
            "unknown switch policy 'eager' (expected 'adaptive' or 'half-pass')"
        );
        assert_eq!(
            serde_json::to_string(&SwitchPolicy::Adaptive { rtt_us: 5 }).unwrap(),
            r#"{"name":"adaptive","rtt_us":5}"#
        );
    }

    #[test]
    fn a_policy_needs_postcopy_and_excludes_our_flag_and_resume() {
        let p = Some(SwitchPolicy::HalfPass);
        let live_pc = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
        assert_eq!(check_policy(p, live_pc), Ok(()));
        assert_eq!(check_policy(None, VIR_MIGRATE_LIVE), Ok(()));
        let e = check_policy(p, VIR_MIGRATE_LIVE).unwrap_err();
        assert_eq!(e.code, code::INVALID_ARG);
        assert_eq!(
            e.message(),
            "invalid argument: switch policy 'half-pass' requires VIR_MIGRATE_POSTCOPY"
        );
        let e = check_policy(p, live_pc | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY).unwrap_err();
        assert_eq!(
            e.message(),
            "invalid argument: switch policy 'half-pass' and VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY are mutually exclusive"
        );
        let e = check_policy(p, live_pc | VIR_MIGRATE_POSTCOPY_RESUME).unwrap_err();
        assert_eq!(
            e.message(),
            "invalid argument: switch policy 'half-pass' and VIR_MIGRATE_POSTCOPY_RESUME are mutually exclusive"
        );
    }
}
