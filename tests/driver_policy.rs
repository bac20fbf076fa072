//! Our switch policies in the sans-IO driver (docs/driver-behaviour.md §7.1): a tick samples
//! `query-migrate` while the source is in pre-copy, one sample at a time; the policy's verdict on
//! the counters decides `migrate-start-postcopy`. A fake QEMU answers the main line's commands at
//! once and holds the policy's samples until the test answers them with the counters it chose.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

#[path = "common/fake_qemu.rs"]
mod fake_qemu;
use fake_qemu::{req, Fake};

use postcopy_core::driver::policy::{SwitchPolicy, SwitchReason};
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{ApiCall, Input, Side, SwitchedBy};
use postcopy_core::qmp::QmpError;
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

const PC: u32 = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
const MIB: u64 = 1024 * 1024;

/// A fake QEMU pair (tests/common/fake_qemu.rs) for a migration with `policy`, holding every
/// `query-migrate` (the policy's samples) until the test answers it.
fn policy_fake(flags: u32, policy: SwitchPolicy) -> Fake {
    let mut r = req(flags);
    r.switch_policy = Some(policy);
    let mut f = Fake::for_request(r);
    f.hold = Some("query-migrate");
    f
}

/// Up to pre-copy: `migrate` answered, the source `active`.
fn migrating(flags: u32, policy: SwitchPolicy) -> Fake {
    let mut f = policy_fake(flags, policy);
    f.start();
    assert_eq!(f.count("migrate"), 1, "migration must start: {:?}", f.done);
    f.status(Side::Src, "setup");
    f.pass(1);
    f.status(Side::Src, "active");
    f
}

/// A tick, and the answer to the sample it asked for: `ram` counters.
fn sample(f: &mut Fake, ram: Value) {
    f.feed(Input::Tick);
    f.answer_held(Ok(json!({"status": "active", "ram": ram})));
}

/// `ram` of a 256 MiB guest: `sent` MiB sent once (as normal pages), `transferred` MiB on the
/// wire, the rate and the dirty rate in MiB/s.
fn ram(sent: u64, transferred: u64, rate: u64, dirty: u64) -> Value {
    json!({"total": 256 * MIB, "remaining": (256 - sent) * MIB, "transferred": transferred * MIB,
           "normal": sent * MIB / 4096, "duplicate": 0, "page-size": 4096,
           "mbps": (rate * MIB * 8) as f64 / 1e6, "dirty-pages-rate": dirty * MIB / 4096,
           "dirty-sync-count": 1})
}

/// Under `policy`, the samples `before` switch nothing and the sample `at` switches, once, in the
/// first pass: the reason the policy gave.
fn switch_reason(policy: SwitchPolicy, before: &[Value], at: Value) -> SwitchReason {
    let mut f = migrating(PC, policy);
    for r in before {
        sample(&mut f, r.clone());
    }
    assert_eq!(f.count("migrate-start-postcopy"), 0);
    sample(&mut f, at);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
    let [SwitchedBy::Policy {
        policy: by,
        pass: 1,
        reason,
    }] = f.switched()[..]
    else {
        panic!("one switch by the policy in pass 1: {:?}", f.switched());
    };
    assert_eq!(by, policy);
    // Switched: later ticks sample nothing.
    let asked = f.count("query-migrate");
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), asked);
    assert!(f.held.is_empty());
    reason
}

#[test]
fn half_pass_switches_on_the_first_sample_at_half() {
    assert_eq!(
        switch_reason(
            SwitchPolicy::HalfPass,
            &[ram(10, 10, 32, 0), ram(100, 100, 32, 0)],
            ram(130, 130, 32, 0)
        ),
        SwitchReason::HalfSent {
            sent: 130 * MIB,
            total: 256 * MIB
        }
    );
}

#[test]
fn a_tick_samples_only_in_pre_copy_and_one_sample_at_a_time() {
    let mut f = policy_fake(PC, SwitchPolicy::HalfPass);
    f.start();
    // Before the source is active (setup): nothing.
    f.status(Side::Src, "setup");
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 0);
    f.status(Side::Src, "active");
    f.feed(Input::Tick);
    f.feed(Input::Tick);
    assert_eq!(
        f.count("query-migrate"),
        1,
        "the second tick waits for the first sample"
    );
    f.answer_held(Ok(json!({"status": "active", "ram": ram(10, 10, 32, 0)})));
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 2);
}

#[test]
fn a_stalled_link_never_switches() {
    // The guest dirties 64 MiB/s over a 32 MiB/s link: a switch, if the link moved. It stalls
    // for three samples, then moves again.
    let stalled = ram(100, 100, 32, 64);
    assert_eq!(
        switch_reason(
            SwitchPolicy::Adaptive { rtt_us: 0 },
            &[stalled.clone(), stalled.clone(), stalled],
            ram(101, 101, 32, 64)
        ),
        SwitchReason::NoNetProgress {
            dirty_rate: 64 * MIB,
            rate: 33_554_432
        }
    );
}

#[test]
fn adaptive_stays_while_the_pass_gains() {
    let mut f = migrating(PC, SwitchPolicy::Adaptive { rtt_us: 0 });
    for sent in [10, 50, 100, 200] {
        sample(&mut f, ram(sent, sent, 32, 8));
    }
    assert_eq!(f.count("migrate-start-postcopy"), 0);
    assert!(f.switched().is_empty());
}

#[test]
fn start_postcopy_first_stops_the_policy() {
    let mut f = migrating(PC, SwitchPolicy::HalfPass);
    sample(&mut f, ram(10, 10, 32, 0));
    f.feed(Input::Api(ApiCall::StartPostCopy { flags: 0 }));
    assert_eq!(f.switched(), [SwitchedBy::Api { pass: 1 }]);
    // A sample in flight when the API switched changes nothing.
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 1);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

#[test]
fn a_failed_sample_warns_and_the_policy_goes_on() {
    let mut f = migrating(PC, SwitchPolicy::HalfPass);
    f.feed(Input::Tick);
    f.answer_held(Err(QmpError {
        class: "GenericError".into(),
        desc: "no migration".into(),
    }));
    assert_eq!(
        f.warnings,
        ["switch policy: query-migrate failed: no migration"]
    );
    sample(&mut f, ram(10, 10, 32, 0));
    sample(&mut f, ram(200, 200, 32, 0));
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

#[test]
fn a_policy_without_postcopy_is_refused_in_begin() {
    let mut f = policy_fake(VIR_MIGRATE_LIVE, SwitchPolicy::HalfPass);
    f.start();
    let e = f.done.clone().unwrap().unwrap_err();
    assert_eq!(e.code, code::INVALID_ARG);
    assert_eq!(
        e.message(),
        "invalid argument: switch policy 'half-pass' requires VIR_MIGRATE_POSTCOPY"
    );
    assert_eq!(f.count("migrate"), 0);
    assert_eq!(
        f.count("migrate-set-capabilities"),
        2,
        "only attach's events"
    );
}
