//! Unit tests of the sans-IO driver: flag checks (docs/driver-behaviour.md §1, §7), StartPostCopy
//! preconditions (§6), the AFTER_PRECOPY switch rule (§7), job states and events (§9). A fake QEMU answers
//! commands from a table, so each test speaks only of the events that matter to it.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use postcopy_core::driver::domain;
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{
    check_driver_flags, check_public_flags, Action, ApiCall, ApiValue, DomainEvent, Input,
    MigrateRequest, Migration, Milestone, PerSide, Phase, Side, SwitchedBy, Ticket, VirError,
};
use postcopy_core::engine;
use postcopy_core::qmp::{Command, Session};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

#[path = "common/fake_qemu.rs"]
mod fake_qemu;
use fake_qemu::*;

const PC: u32 = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
const APC: u32 = PC | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;

fn err_of(r: Result<(), VirError>) -> (i32, String) {
    let e = r.expect_err("must be refused");
    (e.code, e.message())
}

// ---- flag validation (docs/driver-behaviour.md §1, §7) ----

#[test]
fn after_precopy_requires_postcopy() {
    let (c, m) = err_of(check_public_flags(
        VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
    ));
    assert_eq!(c, code::INVALID_ARG);
    assert_eq!(m, "invalid argument: Flag 'VIR_MIGRATE_POSTCOPY' is required by flag 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY'");
    assert!(check_public_flags(APC).is_ok());
}

#[test]
fn after_precopy_excludes_postcopy_resume() {
    let (c, m) = err_of(check_public_flags(APC | VIR_MIGRATE_POSTCOPY_RESUME));
    assert_eq!(c, code::INVALID_ARG);
    assert!(m.contains("'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY' and 'VIR_MIGRATE_POSTCOPY_RESUME' are mutually exclusive"), "{m}");
}

#[test]
fn postcopy_needs_live_and_not_paused() {
    for flags in [
        VIR_MIGRATE_POSTCOPY,
        PC | VIR_MIGRATE_PAUSED,
        VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_PAUSED,
    ] {
        let (c, m) = err_of(check_driver_flags(flags, "f"));
        assert_eq!(c, code::ARGUMENT_UNSUPPORTED);
        assert_eq!(m, "argument unsupported: post-copy migration is not supported with non-live or paused migration");
    }
    assert!(check_driver_flags(PC, "f").is_ok());
    assert!(check_driver_flags(APC, "f").is_ok());
    assert!(check_driver_flags(VIR_MIGRATE_LIVE, "f").is_ok());
}

#[test]
fn postcopy_refuses_tunnelled() {
    let (c, m) = err_of(check_driver_flags(PC | VIR_MIGRATE_TUNNELLED, "f"));
    assert_eq!(c, code::ARGUMENT_UNSUPPORTED);
    assert_eq!(
        m,
        "argument unsupported: post-copy is not supported with tunnelled migration"
    );
}

#[test]
fn resume_requires_postcopy() {
    let (c, m) = err_of(check_driver_flags(
        VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY_RESUME,
        "f",
    ));
    assert_eq!(c, code::ARGUMENT_UNSUPPORTED);
    assert!(m.ends_with("resuming failed post-copy migration requires post-copy to be enabled"));
}

#[test]
fn unknown_flag_bits_are_refused_naming_the_bits_and_function() {
    let (c, m) = err_of(check_driver_flags(
        PC | (1 << 30),
        "qemuDomainMigrateBegin3Params",
    ));
    assert_eq!(c, code::INVALID_ARG);
    assert_eq!(m, "invalid argument: unsupported flags (0x40000000) in function qemuDomainMigrateBegin3Params");
}

#[test]
fn out_of_scope_flags_are_refused_never_ignored() {
    for (bit, name) in OUT_OF_SCOPE_FLAGS {
        let flags = if *bit == VIR_MIGRATE_TUNNELLED {
            VIR_MIGRATE_LIVE | bit
        } else {
            PC | bit
        };
        let (c, m) = err_of(check_driver_flags(flags, "f"));
        assert_eq!(c, code::ARGUMENT_UNSUPPORTED, "{name}");
        assert!(m.contains(name), "{name}: {m}");
    }
}

#[test]
fn every_combination_of_the_postcopy_flags_is_decided() {
    // LIVE, PAUSED, POSTCOPY, POSTCOPY_RESUME, AFTER_PRECOPY, TUNNELLED: 64 combinations, each
    // either accepted or refused with one of the documented codes.
    let bits = [
        VIR_MIGRATE_LIVE,
        VIR_MIGRATE_PAUSED,
        VIR_MIGRATE_POSTCOPY,
        VIR_MIGRATE_POSTCOPY_RESUME,
        VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
        VIR_MIGRATE_TUNNELLED,
    ];
    let mut accepted = 0;
    for mask in 0u32..64 {
        let flags: u32 = bits
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, b)| *b)
            .sum();
        let r = check_public_flags(flags).and_then(|_| check_driver_flags(flags, "f"));
        let pc = flags & VIR_MIGRATE_POSTCOPY != 0;
        let expect_ok = flags & VIR_MIGRATE_TUNNELLED == 0
            && (!pc || (flags & VIR_MIGRATE_LIVE != 0 && flags & VIR_MIGRATE_PAUSED == 0))
            && (flags & VIR_MIGRATE_POSTCOPY_RESUME == 0 || pc)
            && (flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY == 0
                || (pc && flags & VIR_MIGRATE_POSTCOPY_RESUME == 0));
        assert_eq!(r.is_ok(), expect_ok, "flags 0x{flags:x}: {r:?}");
        if let Err(e) = r {
            assert!(
                [code::INVALID_ARG, code::ARGUMENT_UNSUPPORTED].contains(&e.code),
                "0x{flags:x}: {e:?}"
            );
        } else {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 7);
}

#[test]
fn a_refused_migration_sends_nothing_after_probing() {
    let mut f = Fake::new(VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY);
    f.start();
    let e = f.done.clone().expect("done").expect_err("refused");
    assert_eq!(e.code, code::INVALID_ARG);
    assert_eq!(f.count("migrate"), 0);
    assert_eq!(f.count("migrate-incoming"), 0);
}

#[test]
fn a_paused_source_fails_postcopy_in_prepare() {
    // libvirt adds VIR_MIGRATE_PAUSED after Begin for a paused domain; Prepare then refuses.
    let mut f = Fake::new(PC);
    f.src_running = false;
    f.start();
    let e = f.done.clone().expect("done").expect_err("refused");
    assert_eq!(e.code, code::ARGUMENT_UNSUPPORTED);
    assert!(e.detail.contains("non-live or paused"));
    assert_eq!(f.count("migrate-incoming"), 0);
}

// ---- capabilities and parameters (§2) ----

fn caps_on(args: &Value) -> Vec<String> {
    args["capabilities"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["state"] == json!(true))
        .map(|c| c["capability"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn capabilities_follow_libvirt_on_both_sides() {
    let f = Fake::started(APC);
    let dst = f.args_of(Side::Dst, "migrate-set-capabilities");
    let src = f.args_of(Side::Src, "migrate-set-capabilities");
    // [events on at probing, the migration's caps]
    assert_eq!(dst.len(), 2);
    assert_eq!(src.len(), 2);
    assert_eq!(
        dst[0],
        json!({"capabilities": [{"capability": "events", "state": true}]})
    );
    let mut d = caps_on(&dst[1]);
    d.sort();
    assert_eq!(
        d,
        [
            "late-block-activate",
            "postcopy-preempt",
            "postcopy-ram",
            "return-path",
            "switchover-ack"
        ]
    );
    let mut s = caps_on(&src[1]);
    s.sort();
    assert_eq!(
        s,
        [
            "pause-before-switchover",
            "postcopy-preempt",
            "postcopy-ram",
            "return-path",
            "switchover-ack"
        ]
    );
    // Every supported known capability is listed, `events` never, unknown ones never.
    let listed: Vec<&str> = src[1]["capabilities"]
        .as_array()
        .expect("l")
        .iter()
        .map(|c| c["capability"].as_str().unwrap_or(""))
        .collect();
    assert!(!listed.contains(&"events"));
    assert!(!listed.contains(&"release-ram"));
    assert!(listed.contains(&"xbzrle"));
}

#[test]
fn postcopy_preempt_only_when_both_sides_have_it() {
    let no_preempt: Vec<&str> = ALL_CAPS
        .iter()
        .copied()
        .filter(|c| *c != "postcopy-preempt")
        .collect();
    let mut f = Fake::with(PC, ALL_CAPS.to_vec(), no_preempt);
    f.start();
    for side in [Side::Src, Side::Dst] {
        let a = f.args_of(side, "migrate-set-capabilities");
        assert!(
            !caps_on(&a[1]).contains(&"postcopy-preempt".to_string()),
            "{side:?}"
        );
        assert!(caps_on(&a[1]).contains(&"postcopy-ram".to_string()));
    }
}

#[test]
fn a_qemu_without_postcopy_ram_is_refused_by_name() {
    let no_pc: Vec<&str> = ALL_CAPS
        .iter()
        .copied()
        .filter(|c| *c != "postcopy-ram")
        .collect();
    let mut f = Fake::with(PC, ALL_CAPS.to_vec(), no_pc);
    f.start();
    let e = f.done.clone().expect("done").expect_err("refused");
    assert_eq!(e.code, code::ARGUMENT_UNSUPPORTED);
    assert_eq!(
        e.detail,
        "Migration option 'postcopy-ram' is not supported by QEMU binary"
    );
    assert_eq!(f.count("migrate-incoming"), 0);
}

#[test]
fn parameters_bandwidth_and_incoming() {
    let mut f = Fake::new(PC);
    f.m = Migration::new(
        MigrateRequest {
            postcopy_bandwidth_mib: Some(5),
            ..req(PC)
        },
        PerSide::new((10, 0, 2), (10, 0, 2)),
    );
    f.start();
    let src = f.args_of(Side::Src, "migrate-set-parameters");
    assert_eq!(
        src[0],
        json!({"tls-creds": "", "tls-hostname": "", "max-bandwidth": 32u64 << 20, "max-postcopy-bandwidth": 5u64 << 20})
    );
    let dst = f.args_of(Side::Dst, "migrate-set-parameters");
    assert_eq!(
        dst[0],
        json!({"tls-creds": "", "tls-hostname": "", "max-postcopy-bandwidth": 5u64 << 20})
    );
    assert_eq!(
        f.args_of(Side::Dst, "migrate-incoming")[0],
        json!({"uri": "tcp:127.0.0.1:4444", "exit-on-error": false})
    );
    assert_eq!(
        f.args_of(Side::Src, "migrate")[0],
        json!({"uri": "tcp:127.0.0.1:4444", "resume": false})
    );
}

#[test]
fn exit_on_error_only_for_qemu_9_1_and_later() {
    let mut f = Fake::new(PC);
    f.m = Migration::new(req(PC), PerSide::new((7, 2, 22), (7, 2, 22)));
    f.start();
    assert_eq!(
        f.args_of(Side::Dst, "migrate-incoming")[0],
        json!({"uri": "tcp:127.0.0.1:4444"})
    );
}

// ---- the AFTER_PRECOPY switch (§7) ----

#[test]
fn after_precopy_switches_on_pass_two_exactly_once() {
    let mut f = Fake::started(APC);
    assert_eq!(
        f.count("migrate-start-postcopy"),
        0,
        "pass 1 must not switch"
    );
    f.pass(2);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
    f.pass(3);
    f.pass(4);
    assert_eq!(f.count("migrate-start-postcopy"), 1, "exactly once");
    f.through_switch();
    f.complete();
    let o = f.done.expect("done").expect("completed");
    assert!(o.postcopy);
    assert_eq!(o.switch, Some(SwitchedBy::AfterPrecopy { pass: 2 }));
}

#[test]
fn without_the_flag_pass_two_switches_nothing() {
    let mut f = Fake::started(PC);
    f.pass(2);
    f.pass(3);
    assert_eq!(f.count("migrate-start-postcopy"), 0);
}

#[test]
fn no_switch_once_qemu_left_active() {
    let mut f = Fake::started(APC);
    f.status(Side::Src, "device");
    f.pass(2);
    assert_eq!(
        f.count("migrate-start-postcopy"),
        0,
        "the driver switches only while active"
    );
    f.complete();
    let o = f.done.expect("done").expect("completed");
    assert!(!o.postcopy);
    assert_eq!(o.switch, None);
}

#[test]
fn a_manual_switch_before_pass_two_is_not_repeated() {
    let mut f = Fake::started(APC);
    f.feed(Input::Api(ApiCall::StartPostCopy { flags: 0 }));
    assert_eq!(f.count("migrate-start-postcopy"), 1);
    assert!(matches!(f.api.last(), Some((_, Ok(ApiValue::Done)))));
    f.pass(2);
    assert_eq!(
        f.count("migrate-start-postcopy"),
        1,
        "the driver does not switch twice"
    );
}

#[test]
fn a_failed_automatic_switch_does_not_fail_the_migration() {
    let mut f = Fake::started(APC);
    f.fail.push((
        Side::Src,
        "migrate-start-postcopy",
        "Postcopy must be started after migration has been started",
    ));
    f.pass(2);
    assert!(f.done.is_none());
    // QEMU's refusal of the driver's own request only warns; pre-copy goes on.
    assert_eq!(
        f.warnings,
        ["switching to post-copy failed: Postcopy must be started after migration has been started"]
    );
    assert_eq!(f.count("migrate-start-postcopy"), 1, "not retried");
    f.pass(3);
    assert_eq!(
        f.count("migrate-start-postcopy"),
        1,
        "not retried on a later pass"
    );
    f.complete();
    let o = f.done.expect("done").expect("pre-copy completes");
    assert!(!o.postcopy);
    assert_eq!(o.switch, Some(SwitchedBy::AfterPrecopy { pass: 2 }));
    assert_eq!(o.stats.job_type, job::COMPLETED);
}

#[test]
fn job_stats_report_failed_and_cancelled_job_types() {
    for (status, want) in [
        ("failed", job::FAILED),
        ("cancelled", job::CANCELLED),
        ("cancelling", job::UNBOUNDED),
        ("postcopy-paused", job::UNBOUNDED),
        ("completed", job::COMPLETED),
    ] {
        let mut f = Fake::started(PC);
        // QEMU's answer to the live query-migrate, before its event reached the driver.
        f.status[0] = status;
        f.feed(Input::Api(ApiCall::GetJobStats));
        match f.api.last() {
            Some((_, Ok(ApiValue::Stats(s)))) => assert_eq!(s.job_type, want, "{status}"),
            other => panic!("{status}: {other:?}"),
        }
    }
}

// ---- StartPostCopy (§6) ----

fn start_pc(f: &mut Fake, flags: u32) -> Result<ApiValue, VirError> {
    f.feed(Input::Api(ApiCall::StartPostCopy { flags }));
    f.api.last().expect("an answer").1.clone()
}

#[test]
fn start_postcopy_refuses_flags() {
    let mut f = Fake::started(PC);
    let e = start_pc(&mut f, 1).expect_err("refused");
    assert_eq!(e.code, code::INVALID_ARG);
    assert_eq!(
        e.detail,
        "unsupported flags (0x1) in function qemuDomainMigrateStartPostCopy"
    );
    assert_eq!(f.count("migrate-start-postcopy"), 0);
}

#[test]
fn start_postcopy_requires_the_postcopy_flag() {
    let mut f = Fake::started(VIR_MIGRATE_LIVE);
    let e = start_pc(&mut f, 0).expect_err("refused");
    assert_eq!(e.code, code::OPERATION_INVALID);
    assert_eq!(
        e.detail,
        "switching to post-copy requires migration to be started with VIR_MIGRATE_POSTCOPY flag"
    );
    assert_eq!(f.count("migrate-start-postcopy"), 0);
}

#[test]
fn start_postcopy_before_the_job_and_after_it() {
    let mut f = Fake::new(PC);
    // Before start: the driver has no job yet (probing).
    f.feed(Input::Api(ApiCall::StartPostCopy { flags: 0 }));
    let e = f
        .api
        .last()
        .expect("answer")
        .1
        .clone()
        .expect_err("refused");
    assert_eq!(
        e.detail,
        "post-copy can only be started while outgoing migration is in progress"
    );
    let mut f = Fake::started(PC);
    f.complete();
    assert!(f.done.as_ref().expect("done").is_ok());
    let e = start_pc(&mut f, 0).expect_err("refused");
    assert_eq!(e.code, code::OPERATION_INVALID);
    assert_eq!(e.detail, "domain is not running");
}

#[test]
fn start_postcopy_reports_qemu_errors_as_libvirt_does() {
    let mut f = Fake::started(PC);
    f.fail.push((
        Side::Src,
        "migrate-start-postcopy",
        "Postcopy must be started after migration has been started",
    ));
    let e = start_pc(&mut f, 0).expect_err("error");
    assert_eq!(e.code, code::INTERNAL_ERROR);
    assert_eq!(
        e.message(),
        "internal error: unable to execute QEMU command 'migrate-start-postcopy': Postcopy must be started after migration has been started"
    );
}

#[test]
fn start_postcopy_twice_succeeds_twice() {
    // §6: repeated calls succeed silently; QEMU only sets a flag again.
    let mut f = Fake::started(PC);
    assert!(start_pc(&mut f, 0).is_ok());
    assert!(start_pc(&mut f, 0).is_ok());
    assert_eq!(f.count("migrate-start-postcopy"), 2);
}

// ---- states and events (§9) ----

#[test]
fn postcopy_states_and_events_on_both_sides() {
    let mut f = Fake::started(APC);
    assert_eq!(f.m.view(Side::Src).phase, Phase::Perform3);
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
    );
    f.pass(2);
    f.event(Side::Src, "STOP", json!({}));
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
    );
    f.status(Side::Src, "pre-switchover");
    f.status(Side::Src, "device");
    f.status(Side::Src, "postcopy-active");
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY)
    );
    assert_eq!(f.m.view(Side::Src).phase, Phase::Perform3Done);
    f.status(Side::Dst, "postcopy-active");
    assert_eq!(f.count("cont"), 1);
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY)
    );
    f.complete();
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::SHUTOFF, state::SHUTOFF_MIGRATED)
    );
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATED)
    );
    assert_eq!(
        f.lifecycle(Side::Src),
        [
            "SUSPENDED_MIGRATED",
            "SUSPENDED_POSTCOPY",
            "STOPPED_MIGRATED"
        ]
    );
    assert_eq!(
        f.lifecycle(Side::Dst),
        ["STARTED_MIGRATED", "RESUMED_POSTCOPY", "RESUMED_MIGRATED"]
    );
    assert_eq!(f.stopped, [Side::Src]);
    let iters: Vec<u64> = f
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            DomainEvent::MigrationIteration { iteration } => Some(*iteration),
            _ => None,
        })
        .collect();
    assert_eq!(iters, [1, 2]);
    assert!(f
        .events
        .iter()
        .any(|(_, e)| *e == DomainEvent::JobCompleted));
    let o = f.done.clone().expect("done").expect("ok");
    assert_eq!(o.stats.job_type, job::COMPLETED);
    assert_eq!(o.stats.get(param::memory_iteration()), Some(3));
    assert_eq!(o.stats.get(param::memory_postcopy_requests()), Some(7));
    assert_eq!(o.stats.get(param::memory_bps()), Some(1_000_000));
    // Destination parameters reset after completion: all caps false, originals restored.
    let resets = f.args_of(Side::Dst, "migrate-set-capabilities");
    assert!(caps_on(resets.last().expect("reset")).is_empty());
    assert_eq!(
        f.args_of(Side::Dst, "migrate-set-parameters")
            .last()
            .expect("reset"),
        &json!({"tls-creds": "", "tls-hostname": "", "max-bandwidth": 134217728, "downtime-limit": 300, "max-postcopy-bandwidth": 0})
    );
}

#[test]
fn migrate_continue_waits_for_the_stop_event() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.status(Side::Src, "pre-switchover");
    assert_eq!(
        f.count("migrate-continue"),
        0,
        "no continue before STOP was processed"
    );
    f.event(Side::Src, "STOP", json!({}));
    assert_eq!(f.count("migrate-continue"), 1);
    f.status(Side::Src, "pre-switchover");
    assert_eq!(f.count("migrate-continue"), 1, "continue is sent once");
}

#[test]
fn job_stats_live_during_the_migration() {
    let mut f = Fake::started(PC);
    f.feed(Input::Api(ApiCall::GetJobStats));
    match f.api.last() {
        Some((_, Ok(ApiValue::Stats(s)))) => {
            assert_eq!(s.job_type, job::UNBOUNDED);
            assert_eq!(s.get(param::memory_remaining()), Some(10));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn precopy_failure_cancels_restores_and_stops_the_destination() {
    let mut f = Fake::started(PC);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "failed");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(e.code, code::OPERATION_FAILED);
    // Source: caps reset, parameters restored, vCPUs resumed; destination stopped.
    assert!(caps_on(
        f.args_of(Side::Src, "migrate-set-capabilities")
            .last()
            .expect("reset")
    )
    .is_empty());
    assert_eq!(f.count("cont"), 1);
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATION_CANCELED)
    );
    assert_eq!(f.stopped, [Side::Dst]);
}

#[test]
fn an_unknown_status_in_an_event_changes_nothing() {
    let mut f = Fake::started(APC);
    f.event(Side::Src, "MIGRATION", json!({"status": "colo"}));
    f.event(Side::Src, "MIGRATION", json!({}));
    assert_eq!(
        f.m.view(Side::Src).status,
        Some(postcopy_core::driver::MigStatus::Active)
    );
    f.pass(2);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

// ---- recovery (§11) ----

fn resumed(memory: Option<postcopy_core::driver::JobMemory>) -> Fake {
    let flags = PC | VIR_MIGRATE_POSTCOPY_RESUME;
    let mut f = Fake::new(flags);
    f.m = Migration::new(req(flags), PerSide::new((10, 0, 2), (10, 0, 2))).with_memory(memory);
    f.status = ["postcopy-paused", "postcopy-paused"];
    f.start();
    f
}

#[test]
fn resume_sends_no_capabilities_and_recovers_on_both_sides() {
    let mut f = resumed(None);
    assert_eq!(
        f.count("migrate-set-capabilities"),
        0,
        "capabilities never change in a recovery"
    );
    assert_eq!(
        f.args_of(Side::Dst, "migrate-recover"),
        [json!({"uri": "tcp:127.0.0.1:4444"})]
    );
    assert_eq!(
        f.args_of(Side::Src, "migrate"),
        [json!({"uri": "tcp:127.0.0.1:4444", "resume": true})]
    );
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    f.status(Side::Src, "postcopy-recover");
    f.status(Side::Dst, "postcopy-recover");
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY)
    );
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY)
    );
    f.status(Side::Src, "postcopy-active");
    f.status(Side::Dst, "postcopy-active");
    f.complete();
    assert!(f.done.clone().expect("done").is_ok());
    // Without the job's saved parameters there is nothing to restore: no empty command.
    assert_eq!(f.args_of(Side::Dst, "migrate-set-parameters").len(), 0);
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATED)
    );
}

#[test]
fn resume_restores_the_parameters_the_first_call_saved() {
    let orig = json!({"tls-creds": "", "max-bandwidth": 134217728});
    let mut f = resumed(Some(postcopy_core::driver::JobMemory {
        orig_params: PerSide::new(None, Some(orig.clone())),
    }));
    f.status(Side::Src, "postcopy-active");
    f.complete();
    assert!(f.done.clone().expect("done").is_ok());
    assert_eq!(f.args_of(Side::Dst, "migrate-set-parameters"), [orig]);
}

#[test]
fn resume_refuses_a_migration_that_has_not_failed() {
    let flags = PC | VIR_MIGRATE_POSTCOPY_RESUME;
    for (st, detail) in [
        ("none", "domain 'guest' is not being migrated"),
        (
            "active",
            "migration of domain guest is not in post-copy phase",
        ),
        (
            "postcopy-active",
            "post-copy migration of domain guest has not failed",
        ),
        (
            "postcopy-recover",
            "resuming failed post-copy migration of domain guest already in progress",
        ),
    ] {
        let mut f = Fake::new(flags);
        f.status = [st, "postcopy-paused"];
        f.start();
        let e = f.done.clone().expect("done").expect_err("refused");
        assert_eq!(
            (e.code, e.detail.as_str()),
            (code::OPERATION_INVALID, detail),
            "{st}"
        );
        assert_eq!(f.count("migrate-recover"), 0);
    }
}

/// A silent partition: the source paused (migrate-pause), the destination has not noticed yet.
/// The refused resume leaves both domains in the states their QEMUs stand for (the source's
/// failed post-copy, the destination's post-copy), so a policy can retry; not a fresh domain's
/// "running".
#[test]
fn a_refused_resume_leaves_the_failed_post_copy_states() {
    let mut f = Fake::new(PC | VIR_MIGRATE_POSTCOPY_RESUME);
    f.status = ["postcopy-paused", "postcopy-active"];
    f.start();
    let e = f.done.clone().expect("done").expect_err("refused");
    assert_eq!(
        (e.code, e.detail.as_str()),
        (
            code::OPERATION_INVALID,
            "post-copy migration of domain guest has not failed"
        )
    );
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY)
    );
}

#[test]
fn after_precopy_completion_the_statistics_are_not_read_again() {
    let mut f = Fake::started(VIR_MIGRATE_LIVE);
    f.status(Side::Src, "completed");
    let before = f.count("query-migrate");
    f.status(Side::Dst, "completed");
    assert!(f.done.clone().expect("done").is_ok());
    assert_eq!(
        f.count("query-migrate"),
        before,
        "qemuMigrationSrcComplete refreshes only after post-copy"
    );
}

/// A ready QMP session for the source monitor, as the engine has one.
fn ready_session() -> Session<Ticket> {
    let mut s = Session::new();
    s.receive(r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}"#)
        .expect("greeting");
    s.receive(r#"{"return": {}, "id": "lpc-0"}"#)
        .expect("ready");
    s
}

/// Hands the driver's commands for the source to `session`; returns the lines transmitted now.
fn execute_on(session: &mut Session<Ticket>, actions: Vec<Action>) -> Vec<String> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Send {
                side: Side::Src,
                command,
                ticket,
            } => session.execute(command, ticket).expect("ready"),
            _ => None,
        })
        .collect()
}

#[test]
fn one_command_at_a_time_per_monitor() {
    // QEMU may report pre-switchover before it answered migrate-start-postcopy. libvirt holds the
    // monitor for one command at a time: the statistics refresh waits for that reply. The driver
    // says what to send; the QMP session holds the monitor.
    let mut f = Fake::started(APC);
    let mut src = ready_session();
    let a = f.m.handle(Input::Event {
        side: Side::Src,
        name: "MIGRATION_PASS".into(),
        data: json!({"pass": 2}),
    });
    assert_eq!(
        execute_on(&mut src, a),
        ["{\"execute\":\"migrate-start-postcopy\",\"id\":\"lpc-1\"}\n"]
    );
    let a = f.m.handle(Input::Event {
        side: Side::Src,
        name: "STOP".into(),
        data: json!({}),
    });
    assert!(execute_on(&mut src, a).is_empty());
    let a = f.m.handle(Input::Event {
        side: Side::Src,
        name: "MIGRATION".into(),
        data: json!({"status": "pre-switchover"}),
    });
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::Send {
                command: Command::QueryMigrate,
                ..
            }
        )),
        "the driver asks for the statistics: {a:?}"
    );
    assert!(
        execute_on(&mut src, a).is_empty(),
        "nothing goes out while migrate-start-postcopy is unanswered"
    );
    assert_eq!(src.queued(), 1);
    let reply = src
        .receive(r#"{"return": {}, "id": "lpc-1"}"#)
        .expect("reply");
    let (input, transmit) = engine::driver_input(Side::Src, reply).expect("a reply");
    assert!(
        matches!(
            &input,
            Input::Reply {
                command: Command::MigrateStartPostcopy,
                ..
            }
        ),
        "{input:?}"
    );
    assert_eq!(
        transmit.as_deref(),
        Some("{\"execute\":\"query-migrate\",\"id\":\"lpc-2\"}\n"),
        "the statistics refresh goes out with the reply"
    );
    let a = f.m.handle(input);
    assert!(execute_on(&mut src, a).is_empty());
    assert_eq!(src.in_flight(), Some(&Command::QueryMigrate));
}

#[test]
fn milestones_time_the_switch_once() {
    let mut f = Fake::started(APC);
    f.pass(1);
    f.pass(2);
    f.pass(3);
    f.status(Side::Src, "postcopy-active");
    f.status(Side::Dst, "postcopy-active");
    assert_eq!(
        f.milestones,
        [
            Milestone::Pass2Seen { pass: 2 },
            Milestone::SwitchRequested(SwitchedBy::AfterPrecopy { pass: 2 }),
            Milestone::PostcopyActive { side: Side::Src },
        ]
    );
}

#[test]
fn a_manual_switch_is_a_milestone_too() {
    let mut f = Fake::started(PC);
    f.pass(1);
    assert!(start_pc(&mut f, 0).is_ok());
    assert!(start_pc(&mut f, 0).is_ok());
    assert_eq!(
        f.milestones,
        [Milestone::SwitchRequested(SwitchedBy::Api { pass: 1 })]
    );
}

// ---- the domain object's rules (docs/driver-behaviour.md §6, §8, §9, §12) ----

fn answer(e: VirError) -> (i32, String) {
    (e.code, e.message())
}

#[test]
fn calls_without_a_job_get_libvirts_answers() {
    let cases = [
        (
            ApiCall::StartPostCopy { flags: 0 },
            true,
            code::OPERATION_INVALID,
            "Requested operation is not valid: post-copy can only be started while outgoing migration is in progress",
        ),
        (
            ApiCall::StartPostCopy { flags: 1 },
            true,
            code::INVALID_ARG,
            "invalid argument: unsupported flags (0x1) in function qemuDomainMigrateStartPostCopy",
        ),
        (
            ApiCall::StartPostCopy { flags: 0 },
            false,
            code::OPERATION_INVALID,
            "Requested operation is not valid: domain is not running",
        ),
        (
            ApiCall::AbortJob { flags: 0 },
            true,
            code::OPERATION_INVALID,
            "Requested operation is not valid: no job is active on the domain",
        ),
        (
            ApiCall::AbortJob {
                flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
            },
            true,
            code::OPERATION_INVALID,
            "Requested operation is not valid: current job is not outgoing migration in post-copy mode",
        ),
        (
            ApiCall::AbortJob { flags: 4 },
            true,
            code::INVALID_ARG,
            "invalid argument: unsupported flags (0x4) in function qemuDomainAbortJobFlags",
        ),
        (
            ApiCall::GetJobStats,
            false,
            code::OPERATION_INVALID,
            "Requested operation is not valid: no job is active on the domain",
        ),
    ];
    for (call, active, code, message) in cases {
        assert_eq!(
            answer(domain::answer_without_job(&call, active)),
            (code, message.to_string()),
            "{call:?} active={active}"
        );
    }
}

#[test]
fn calls_on_the_destination_are_refused_as_libvirt_does() {
    let cases = [
        (
            ApiCall::StartPostCopy { flags: 0 },
            code::OPERATION_TIMEOUT,
            "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePrepare3Params)",
        ),
        (
            ApiCall::StartPostCopy { flags: 2 },
            code::INVALID_ARG,
            "invalid argument: unsupported flags (0x2) in function qemuDomainMigrateStartPostCopy",
        ),
        (
            ApiCall::AbortJob { flags: 0 },
            code::OPERATION_INVALID,
            "Requested operation is not valid: cannot abort incoming migration; use virDomainDestroy instead",
        ),
        (
            ApiCall::GetJobStats,
            code::OPERATION_UNSUPPORTED,
            "Operation not supported: migration statistics are available only on the source host",
        ),
    ];
    for (call, code, message) in cases {
        assert_eq!(
            answer(domain::answer_on_destination(&call)),
            (code, message.to_string()),
            "{call:?}"
        );
    }
    assert_eq!(
        domain::check_begin_job(true, true).map_err(answer),
        Err((
            code::OPERATION_TIMEOUT,
            "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePerform3Params)".to_string()
        ))
    );
    assert_eq!(
        domain::check_begin_job(false, false).map_err(answer),
        Err((
            code::OPERATION_INVALID,
            "Requested operation is not valid: domain is not running".to_string()
        ))
    );
    assert_eq!(domain::check_begin_job(false, true), Ok(()));
}

#[test]
fn a_finished_migration_answers_calls_as_without_a_job() {
    let mut f = Fake::started(PC);
    f.status(Side::Src, "completed");
    f.status(Side::Dst, "completed");
    assert!(f.done.clone().expect("done").is_ok());
    let r = start_pc(&mut f, 0).expect_err("no job");
    // The source QEMU was stopped: the domain is not running any more.
    assert_eq!(
        answer(r),
        answer(domain::answer_without_job(
            &ApiCall::StartPostCopy { flags: 0 },
            false
        ))
    );
}

#[test]
fn the_state_after_each_lifecycle_event() {
    let cases = [
        (
            event::STARTED,
            event::STARTED_MIGRATED,
            Some((state::PAUSED, state::PAUSED_MIGRATION)),
        ),
        (
            event::SUSPENDED,
            event::SUSPENDED_POSTCOPY,
            Some((state::PAUSED, state::PAUSED_POSTCOPY)),
        ),
        (
            event::SUSPENDED,
            event::SUSPENDED_POSTCOPY_FAILED,
            Some((state::PAUSED, state::PAUSED_POSTCOPY_FAILED)),
        ),
        (
            event::RESUMED,
            event::RESUMED_POSTCOPY,
            Some((state::RUNNING, state::RUNNING_POSTCOPY)),
        ),
        (
            event::RESUMED,
            event::RESUMED_MIGRATED,
            Some((state::RUNNING, state::RUNNING_MIGRATED)),
        ),
        (
            event::STOPPED,
            event::STOPPED_MIGRATED,
            Some((state::SHUTOFF, state::SHUTOFF_MIGRATED)),
        ),
        // A QEMU that crashed is reported by the driver's own state, not by this table.
        (event::STOPPED, event::STOPPED_FAILED, None),
    ];
    for (ev, detail, expected) in cases {
        assert_eq!(
            postcopy_core::driver::state_after(ev, detail),
            expected.map(|(s, r)| postcopy_core::driver::DomainState::new(s, r)),
            "{}",
            event::name(ev, detail)
        );
    }
}

#[test]
fn per_side_values_are_indexed_by_side() {
    let mut p = PerSide::new("a".to_string(), "b".to_string());
    p[Side::Dst].push('!');
    assert_eq!((p[Side::Src].as_str(), p.dst.as_str()), ("a", "b!"));
    assert_eq!(
        p.iter().map(|(s, v)| (s, v.len())).collect::<Vec<_>>(),
        [(Side::Src, 1), (Side::Dst, 2)]
    );
    assert_eq!(
        PerSide::from_fn(Side::other),
        PerSide::new(Side::Dst, Side::Src)
    );
    assert_eq!(p.map(|side, v| format!("{}:{v}", side.tag())).src, "src:a");
}

// ---- failure in post-copy, per side and once (issue 12 items 1-2, §10.2) ----

#[test]
fn a_failed_resume_reports_the_destination_failure_once() {
    let mut f = resumed(None);
    // QEMU 10.0 (the fake's version) says nothing before `migrate` is answered: the driver is in
    // the destination's Finish already.
    f.status(Side::Src, "postcopy-recover");
    f.status(Side::Src, "postcopy-paused");
    assert!(
        f.done.is_none(),
        "Finish waits on the destination: {:?}",
        f.done
    );
    f.status(Side::Dst, "postcopy-paused");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(
        (e.code, e.message()),
        (
            code::OPERATION_FAILED,
            "operation failed: job 'migration in' failed in post-copy phase".to_string()
        )
    );
    // The source left the failure (postcopy-recover) and failed again; the destination never
    // left postcopy-paused: qemuMigrationDstPostcopyFailed returns early, no second event.
    assert_eq!(
        f.lifecycle(Side::Src),
        ["SUSPENDED_POSTCOPY", "SUSPENDED_POSTCOPY_FAILED"]
    );
    assert_eq!(f.lifecycle(Side::Dst), Vec::<&str>::new());
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
    );
}

#[test]
fn a_source_postcopy_paused_during_finish_fails_only_the_source() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.through_switch();
    assert_eq!(
        f.count("cont"),
        1,
        "Finish started the guest on the destination"
    );
    f.status(Side::Src, "postcopy-paused");
    assert!(
        f.done.is_none(),
        "the destination's Finish decides: {:?}",
        f.done
    );
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    assert_eq!(f.m.view(Side::Src).phase, Phase::PostcopyFailed);
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY)
    );
    // Then the destination's own monitor reports the failure: its Finish fails.
    f.status(Side::Dst, "postcopy-paused");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(e.detail, "job 'migration in' failed in post-copy phase");
    assert_eq!(
        f.lifecycle(Side::Src)
            .iter()
            .filter(|e| **e == "SUSPENDED_POSTCOPY_FAILED")
            .count(),
        1
    );
    assert_eq!(
        f.lifecycle(Side::Dst),
        [
            "STARTED_MIGRATED",
            "RESUMED_POSTCOPY",
            "RESUMED_POSTCOPY_FAILED"
        ]
    );
}

/// QEMU refuses `migrate` (QEMU 11.1 refuses 11.3.0's `detach`): nothing to cancel; the source
/// goes straight to the reset and runs on, as libvirt's qemuMigrationSrcRun (ci/newest's
/// pq-detach-refused found the shim sending `migrate_cancel` and waiting for ever).
#[test]
fn a_refused_migrate_is_not_cancelled() {
    let mut f = Fake::new(PC);
    f.fail
        .push((Side::Src, "migrate", "Parameter 'detach' is unexpected"));
    f.start();
    assert_eq!(f.count("migrate"), 1);
    assert_eq!(f.count("migrate_cancel"), 0, "no migration runs");
    let e = f.done.clone().expect("done at once").expect_err("failed");
    assert_eq!(
        (e.code, e.message()),
        (
            code::INTERNAL_ERROR,
            "internal error: unable to execute QEMU command 'migrate': Parameter 'detach' is unexpected"
                .to_string()
        )
    );
    // The source's capabilities are reset (the attach's events, the planner's, the reset).
    assert_eq!(f.args_of(Side::Src, "migrate-set-capabilities").len(), 3);
    // Never paused: it runs on as it was.
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::RUNNING, state::RUNNING_UNPAUSED)
    );
}

/// The deadline passes in post-copy: the call ends at once, but the driver keeps awaiting QEMU's
/// answer to its `migrate-pause` (queued behind a command on its way, it reaches QEMU only when
/// the engine reads on), and a monitor that closes first leaves a warning, not a hang.
#[test]
fn the_deadline_pause_is_awaited_after_the_call_ended() {
    for answered in [true, false] {
        let mut f = Fake::started(APC);
        f.pass(2);
        f.through_switch();
        f.hold = Some("migrate-pause");
        f.feed(Input::Deadline {
            limit: std::time::Duration::from_secs(5),
        });
        assert_eq!(f.count("migrate-pause"), 1);
        let e = f.done.clone().expect("done").expect_err("timed out");
        assert_eq!(e.code, code::OPERATION_TIMEOUT, "{e:?}");
        assert!(f.m.awaits_reply(), "the pause is awaited");
        if answered {
            f.release();
            assert_eq!(f.warnings, Vec::<String>::new());
        } else {
            f.feed(Input::Closed {
                side: Side::Src,
                reason: "end of file".into(),
            });
            assert_eq!(
                f.warnings,
                vec![
                    "the migrate-pause sent at the deadline was not answered: operation failed: source QEMU monitor closed: end of file".to_string()
                ]
            );
        }
        assert!(!f.m.awaits_reply());
    }
}

/// "In post-copy" is the source domain's own state (libvirt's virDomainObjIsPostcopy): the
/// destination's postcopy-active, which QEMU reports first, does not make an abort a pause.
#[test]
fn an_abort_goes_by_the_sources_own_postcopy_state() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "pre-switchover");
    f.status(Side::Src, "device");
    f.status(Side::Dst, "postcopy-active");
    let pause = ApiCall::AbortJob {
        flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
    };
    f.feed(Input::Api(pause.clone()));
    assert_eq!(
        f.api,
        vec![(
            pause.clone(),
            Err(VirError::new(
                code::OPERATION_INVALID,
                "current job is not outgoing migration in post-copy mode"
            ))
        )]
    );
    assert_eq!(f.count("migrate-pause"), 0);
    f.api.clear();
    f.status(Side::Src, "postcopy-active");
    f.feed(Input::Api(pause.clone()));
    assert_eq!(f.api, vec![(pause, Ok(ApiValue::Done))]);
    assert_eq!(f.count("migrate-pause"), 1);
}

/// In post-copy, AbortJob(POSTCOPY) whose `migrate-pause` QEMU has not answered yet; with
/// `failed`, QEMU's `postcopy-paused` events came first and ended the migrate call.
fn pause_unanswered(failed: bool) -> (Fake, ApiCall) {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.through_switch();
    f.hold = Some("migrate-pause");
    let abort = ApiCall::AbortJob {
        flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
    };
    f.feed(Input::Api(abort.clone()));
    assert_eq!(f.count("migrate-pause"), 1);
    if failed {
        f.status(Side::Src, "postcopy-paused");
        f.status(Side::Dst, "postcopy-paused");
        let e = f.done.clone().expect("done").expect_err("failed");
        assert_eq!(e.detail, "job 'migration in' failed in post-copy phase");
    }
    assert!(f.api.is_empty(), "not answered yet: {:?}", f.api);
    assert!(f.m.awaits_reply());
    (f, abort)
}

/// The pause's failure events come before QEMU's answer to `migrate-pause`: the migrate call
/// fails in post-copy, and the abort still gets QEMU's answer (libvirt's AbortJob returns what
/// `migrate-pause` returned), not the answer of a call made without a job.
#[test]
fn an_abort_answered_after_its_failure_ended_the_call_still_succeeds() {
    let (mut f, abort) = pause_unanswered(true);
    f.release();
    assert_eq!(f.api, vec![(abort, Ok(ApiValue::Done))]);
    assert!(!f.m.awaits_reply());
}

/// The monitor closes under a call that waits for QEMU's answer (during the job or after it
/// ended): the call fails naming the closed monitor, never waits for ever.
#[test]
fn a_call_waiting_on_a_closed_monitor_fails_naming_it() {
    for failed in [false, true] {
        let (mut f, abort) = pause_unanswered(failed);
        f.feed(Input::Closed {
            side: Side::Src,
            reason: "Connection reset by peer".into(),
        });
        assert_eq!(
            f.api,
            vec![(
                abort,
                Err(VirError::new(
                    code::OPERATION_FAILED,
                    "source QEMU monitor closed: Connection reset by peer"
                ))
            )],
            "the call ended first: {failed}"
        );
        assert!(!f.m.awaits_reply());
    }
}

/// QEMU 11.1 reports `failing` before `failed` (seen when the destination died in pre-copy on the
/// testbed): known, silent, the migration fails at `failed` as before.
#[test]
fn qemu_11_1_failing_is_a_known_status_that_waits_for_failed() {
    let mut f = Fake::started(PC);
    let sent = f.sent.len();
    f.status(Side::Src, "failing");
    assert_eq!(f.warnings, Vec::<String>::new(), "known, no warning");
    assert_eq!(
        f.m.view(Side::Src).status,
        Some(postcopy_core::driver::MigStatus::Failing)
    );
    assert_eq!(f.sent.len(), sent, "nothing is sent for it");
    assert!(f.done.is_none(), "the wait goes on");
    assert_eq!(
        postcopy_core::driver::MigStatus::Failing.job_type(),
        job::UNBOUNDED
    );
    f.status(Side::Src, "failed");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(e.code, code::OPERATION_FAILED, "{e:?}");
}

#[test]
fn qemu_11_1_postcopy_device_is_a_known_status_that_waits_on() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "pre-switchover");
    f.status(Side::Src, "device");
    let sent = f.sent.len();
    f.status(Side::Src, "postcopy-device");
    f.status(Side::Dst, "postcopy-device");
    assert_eq!(
        f.warnings,
        Vec::<String>::new(),
        "mapped silently, like device"
    );
    assert_eq!(
        f.m.view(Side::Src).status,
        Some(postcopy_core::driver::MigStatus::PostcopyDevice)
    );
    assert_eq!(f.sent.len(), sent, "nothing is sent for it");
    assert_eq!(
        f.m.view(Side::Src).phase,
        Phase::Perform3,
        "the wait goes on"
    );
    assert_eq!(
        postcopy_core::driver::MigStatus::PostcopyDevice.job_type(),
        job::UNBOUNDED
    );
    f.status(Side::Dst, "postcopy-active");
    f.status(Side::Src, "postcopy-active");
    assert_eq!(f.count("cont"), 1);
}

#[test]
fn the_capability_reset_waits_until_the_cancel_finished() {
    let mut f = Fake::started(PC);
    let caps_before = f.args_of(Side::Src, "migrate-set-capabilities").len();
    f.feed(Input::Closed {
        side: Side::Dst,
        reason: "end of file".into(),
    });
    assert_eq!(f.count("migrate_cancel"), 1);
    f.status(Side::Src, "cancelling");
    assert_eq!(
        f.args_of(Side::Src, "migrate-set-capabilities").len(),
        caps_before,
        "QEMU refuses capability changes while the migration is cancelling"
    );
    assert!(f.done.is_none());
    f.status(Side::Src, "cancelled");
    let resets = f.args_of(Side::Src, "migrate-set-capabilities");
    assert_eq!(resets.len(), caps_before + 1);
    assert!(caps_on(resets.last().expect("reset")).is_empty());
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(
        (e.code, e.message()),
        (
            code::OPERATION_FAILED,
            "operation failed: destination QEMU monitor closed: end of file".to_string()
        )
    );
}

// ---- VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY on QEMU > 10.0: the first full pass (issue 15 a, §7) ----

/// 256 MiB of RAM in 4 KiB pages: 65536 pages.
fn ram_sent(normal: u64, zero: u64) -> Value {
    json!({"total": 268435456u64, "page-size": 4096, "normal": normal, "duplicate": zero,
        "transferred": normal * 4096, "remaining": 1000, "dirty-sync-count": 5})
}

#[test]
fn on_qemu_11_1_the_switch_waits_for_a_page_sent_per_page_of_ram() {
    let mut f = Fake::started_on(APC, (11, 1, 3));
    f.ram = Some(ram_sent(20000, 5000));
    f.pass(2);
    assert_eq!(f.count("query-migrate"), 1, "pass 2 asks how much was sent");
    assert_eq!(
        f.count("migrate-start-postcopy"),
        0,
        "25000 of 65536 pages: not yet"
    );
    assert!(f.milestones.is_empty(), "{:?}", f.milestones);
    f.pass(3);
    assert_eq!(f.count("migrate-start-postcopy"), 0);
    f.ram = Some(ram_sent(40000, 25536));
    f.pass(4);
    assert_eq!(
        f.count("query-migrate"),
        3,
        "one probe per pass until the switch"
    );
    assert_eq!(
        f.count("migrate-start-postcopy"),
        1,
        "65536 pages: the first pass is done"
    );
    assert_eq!(
        f.milestones,
        [
            Milestone::Pass2Seen { pass: 4 },
            Milestone::SwitchRequested(SwitchedBy::AfterPrecopy { pass: 4 })
        ]
    );
    f.pass(5);
    assert_eq!(f.count("query-migrate"), 3, "no probe once switched");
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

#[test]
fn on_qemu_11_1_no_probe_without_the_flag_or_outside_active() {
    let mut f = Fake::started_on(PC, (11, 1, 3));
    f.pass(2);
    f.pass(3);
    assert_eq!(f.count("query-migrate"), 0);
    let mut f = Fake::started_on(APC, (11, 1, 3));
    f.ram = Some(ram_sent(65536, 0));
    f.status(Side::Src, "device");
    f.pass(2);
    assert_eq!(f.count("query-migrate"), 0, "rule 3: only while active");
    assert_eq!(f.count("migrate-start-postcopy"), 0);
}

#[test]
fn up_to_qemu_10_0_pass_two_still_switches_without_a_query() {
    let mut f = Fake::started_on(APC, (10, 0, 2));
    f.ram = Some(ram_sent(1, 0));
    f.pass(2);
    assert_eq!(f.count("query-migrate"), 0);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

// ---- post-copy failing before the destination runs (issue 12 item 3, §10.1) ----

#[test]
fn a_destination_lost_before_performs_wait_returned_cancels_and_restores_the_source() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "pre-switchover");
    f.status(Side::Src, "device");
    f.hold = Some("query-migrate"); // Perform's wait has not returned yet
    f.status(Side::Src, "postcopy-active");
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY)
    );
    assert_eq!(f.count("cont"), 0, "the destination never ran the guest");
    f.hold = None;
    f.feed(Input::Closed {
        side: Side::Dst,
        reason: "end of file".into(),
    });
    // "destination is not running yet": relabelled PAUSED/MIGRATION, the migration cancelled.
    assert_eq!(f.count("migrate_cancel"), 1);
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
    );
    assert!(f.done.is_none(), "the cancel is waited for");
    f.status(Side::Src, "cancelled");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(
        (e.code, e.message()),
        (
            code::OPERATION_FAILED,
            "operation failed: destination QEMU monitor closed: end of file".to_string()
        )
    );
    // Confirm (cancelled): the source runs again with its parameters reset; no post-copy failure.
    assert!(caps_on(
        f.args_of(Side::Src, "migrate-set-capabilities")
            .last()
            .expect("reset")
    )
    .is_empty());
    assert_eq!(f.args_of(Side::Src, "cont").len(), 1);
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATION_CANCELED)
    );
    assert_eq!(
        f.lifecycle(Side::Src),
        [
            "SUSPENDED_MIGRATED",
            "SUSPENDED_POSTCOPY",
            "RESUMED_MIGRATED"
        ]
    );
    assert_eq!(
        f.lifecycle(Side::Dst),
        ["STARTED_MIGRATED", "STOPPED_FAILED"]
    );
    assert_eq!(
        f.m.view(Side::Src).phase,
        Phase::Perform3,
        "no postcopy_failed phase"
    );
}

#[test]
fn a_destination_lost_after_performs_wait_returned_is_a_post_copy_failure() {
    // Perform returned (Finish began): libvirt's Confirm finds the source PAUSED/POSTCOPY and
    // calls qemuMigrationSrcPostcopyFailed.
    let mut f = Fake::started(APC);
    f.pass(2);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "pre-switchover");
    f.status(Side::Src, "device");
    f.status(Side::Src, "postcopy-active");
    f.feed(Input::Closed {
        side: Side::Dst,
        reason: "end of file".into(),
    });
    assert_eq!(f.count("migrate_cancel"), 0);
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(e.detail, "destination QEMU monitor closed: end of file");
}

// ---- the overall deadline of a live call (issue 12 item 5, §10.4) ----

const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[test]
fn a_deadline_in_precopy_cancels_as_an_abort_and_names_the_phases() {
    let mut f = Fake::started(PC);
    f.feed(Input::Deadline { limit: LIMIT });
    assert_eq!(f.count("migrate_cancel"), 1);
    f.status(Side::Src, "cancelling");
    assert!(f.done.is_none());
    f.status(Side::Src, "cancelled");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(
        (e.code, e.message()),
        (
            code::OPERATION_TIMEOUT,
            "Timed out during operation: migration deadline of 600 s passed (source phase perform3, destination phase prepare); the migration was cancelled".to_string()
        )
    );
    assert!(caps_on(
        f.args_of(Side::Src, "migrate-set-capabilities")
            .last()
            .expect("reset")
    )
    .is_empty());
    assert_eq!(
        f.stopped,
        [Side::Dst],
        "the destination never ran the guest"
    );
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::RUNNING, state::RUNNING_UNPAUSED)
    );
}

#[test]
fn a_deadline_before_migrate_stops_before_qemu_begins() {
    let mut f = Fake::new(PC);
    f.hold = Some("query-migrate-parameters"); // the destination's Prepare waits
    f.start();
    f.feed(Input::Deadline { limit: LIMIT });
    // The reply never comes: the grace period passes, the call ends where it is.
    f.feed(Input::Deadline { limit: LIMIT });
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(e.code, code::OPERATION_TIMEOUT);
    assert_eq!(
        e.detail,
        "migration deadline of 600 s passed (source phase begin3, destination phase prepare); the migration was stopped before QEMU began it"
    );
    assert_eq!(f.count("migrate"), 0);
    assert_eq!(f.stopped, [Side::Dst]);
}

#[test]
fn a_deadline_once_the_guest_runs_on_the_destination_pauses_and_never_kills() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.through_switch();
    assert_eq!(f.count("cont"), 1);
    f.feed(Input::Deadline { limit: LIMIT });
    assert_eq!(f.count("migrate-pause"), 1);
    assert_eq!(f.count("migrate_cancel"), 0, "never cancelled in post-copy");
    assert_eq!(f.stopped, Vec::<Side>::new(), "never killed");
    let e = f.done.clone().expect("done").expect_err("failed");
    assert_eq!(
        (e.code, e.detail.as_str()),
        (
            code::OPERATION_TIMEOUT,
            "migration deadline of 600 s passed (source phase perform3_done, destination phase finish3) after the guest started on the destination: post-copy was paused (migrate-pause); nothing was cancelled or killed, both QEMUs are left for VIR_MIGRATE_POSTCOPY_RESUME"
        )
    );
    assert_eq!(
        f.m.view(Side::Src).state,
        DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
    );
    assert_eq!(f.m.view(Side::Src).phase, Phase::PostcopyFailed);
}

// ---- every error the driver returns, with its code and message (issue 12 item 7, §12) ----

fn the_error(f: &Fake) -> (String, String) {
    let e = f.done.clone().expect("done").expect_err("failed");
    (e.code_name().to_string(), e.message())
}

fn api_error(f: &Fake) -> (String, String) {
    match f.api.last() {
        Some((_, Err(e))) => (e.code_name().to_string(), e.message()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pair(code: &str, msg: &str) -> (String, String) {
    (code.to_string(), msg.to_string())
}

#[test]
fn resume_refuses_a_destination_that_is_not_migrating() {
    let flags = PC | VIR_MIGRATE_POSTCOPY_RESUME;
    let mut f = Fake::new(flags);
    f.status = ["postcopy-paused", "none"];
    f.start();
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_INVALID",
            "Requested operation is not valid: domain 'guest' is not processing incoming migration"
        )
    );
    assert_eq!(f.count("migrate-recover"), 0);
}

#[test]
fn a_source_failure_without_error_desc_unexpectedly_failed() {
    let mut f = Fake::started(PC);
    f.status(Side::Src, "failed"); // the fake's query-migrate has no error-desc
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_FAILED",
            "operation failed: job 'migration out' unexpectedly failed"
        )
    );
}

#[test]
fn a_source_failure_reports_qemus_error_desc() {
    let mut f = Fake::started(PC);
    f.error_desc = Some("Channel error: Input/output error");
    f.status(Side::Src, "failed");
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_FAILED",
            "operation failed: job 'migration out' failed: Channel error: Input/output error"
        )
    );
}

#[test]
fn a_destination_failure_in_finish_unexpectedly_failed() {
    let mut f = Fake::started(PC);
    f.event(Side::Src, "STOP", json!({}));
    f.status(Side::Src, "completed"); // Perform's wait returns: Finish waits on the destination
    f.status(Side::Dst, "failed");
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_FAILED",
            "operation failed: job 'migration in' unexpectedly failed"
        )
    );
    assert_eq!(
        f.stopped,
        [Side::Dst],
        "the destination never ran the guest"
    );
}

#[test]
fn job_stats_from_an_unreadable_reply_are_internal_errors() {
    for (status, msg) in [
        (
            "-",
            "internal error: info migration reply was missing return status",
        ),
        (
            "colo",
            "internal error: unexpected migration status in colo",
        ),
    ] {
        let mut f = Fake::started(PC);
        f.status[0] = status;
        f.feed(Input::Api(ApiCall::GetJobStats));
        assert_eq!(
            api_error(&f),
            pair("VIR_ERR_INTERNAL_ERROR", msg),
            "{status}"
        );
    }
}

#[test]
fn abort_on_the_destination_cannot_abort_incoming_migration() {
    assert_eq!(
        {
            let e = domain::answer_on_destination(&ApiCall::AbortJob { flags: 0 });
            (e.code_name().to_string(), e.message())
        },
        pair(
            "VIR_ERR_OPERATION_INVALID",
            "Requested operation is not valid: cannot abort incoming migration; use virDomainDestroy instead"
        )
    );
}

#[test]
fn qemu_refusing_migrate_pause_surfaces_as_libvirt_words_it() {
    let mut f = Fake::started(APC);
    f.pass(2);
    f.through_switch();
    f.fail.push((Side::Src, "migrate-pause", "migrate-pause is currently only supported during postcopy-active or postcopy-recover state"));
    f.feed(Input::Api(ApiCall::AbortJob {
        flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
    }));
    assert_eq!(
        api_error(&f),
        pair(
            "VIR_ERR_INTERNAL_ERROR",
            "internal error: unable to execute QEMU command 'migrate-pause': migrate-pause is currently only supported during postcopy-active or postcopy-recover state"
        )
    );
    assert!(f.done.is_none(), "the migration goes on");
}

#[test]
fn qemu_refusing_migrate_cancel_surfaces_as_libvirt_words_it() {
    let mut f = Fake::started(PC);
    f.fail
        .push((Side::Src, "migrate_cancel", "Migration is not running"));
    f.feed(Input::Api(ApiCall::AbortJob { flags: 0 }));
    assert_eq!(
        api_error(&f),
        pair(
            "VIR_ERR_INTERNAL_ERROR",
            "internal error: unable to execute QEMU command 'migrate_cancel': Migration is not running"
        )
    );
    assert!(f.done.is_none(), "the migration goes on");
}

#[test]
fn a_refused_cancel_in_the_cleanup_keeps_the_first_error_and_goes_on() {
    let mut f = Fake::started(PC);
    f.fail
        .push((Side::Src, "migrate_cancel", "Migration is not running"));
    f.feed(Input::Closed {
        side: Side::Dst,
        reason: "end of file".into(),
    });
    // No wait for `cancelled` after a refused cancel (qemuMigrationSrcCancel returns at once).
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_FAILED",
            "operation failed: destination QEMU monitor closed: end of file"
        )
    );
    assert!(caps_on(
        f.args_of(Side::Src, "migrate-set-capabilities")
            .last()
            .expect("reset")
    )
    .is_empty());
}

#[test]
fn qemu_refusing_migrate_recover_is_the_calls_error() {
    let flags = PC | VIR_MIGRATE_POSTCOPY_RESUME;
    let mut f = Fake::new(flags);
    f.status = ["postcopy-paused", "postcopy-paused"];
    f.fail.push((
        Side::Dst,
        "migrate-recover",
        "Migrate recover can only be run when postcopy is paused.",
    ));
    f.start();
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_INTERNAL_ERROR",
            "internal error: unable to execute QEMU command 'migrate-recover': Migrate recover can only be run when postcopy is paused."
        )
    );
    assert_eq!(f.count("migrate"), 0, "the source never reconnects");
    // Both stay failed in post-copy, without a second event (item 2).
    assert_eq!(f.lifecycle(Side::Src), Vec::<&str>::new());
    assert_eq!(f.lifecycle(Side::Dst), Vec::<&str>::new());
    assert_eq!(
        f.m.view(Side::Dst).state,
        DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
    );
}

#[test]
fn unreadable_capabilities_end_the_call_at_attach() {
    for (reply, msg) in [
        (
            json!({"capability": "events"}),
            "internal error: query-migrate-capabilities reply is not an array",
        ),
        (
            json!([{"state": true}]),
            "internal error: capability entry without a name: {\"state\":true}",
        ),
    ] {
        let mut f = Fake::new(PC);
        f.replies
            .push((Side::Src, "query-migrate-capabilities", reply));
        f.start();
        assert_eq!(the_error(&f), pair("VIR_ERR_INTERNAL_ERROR", msg));
        assert_eq!(f.sent.len(), 1, "nothing after the probe");
    }
}

#[test]
fn a_destination_not_waiting_for_a_migration_is_refused_at_attach() {
    let mut f = Fake::new(PC);
    f.replies.push((
        Side::Dst,
        "query-status",
        json!({"status": "running", "running": true}),
    ));
    f.start();
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_INVALID",
            "Requested operation is not valid: destination QEMU is not waiting for an incoming migration (status 'running'); start it with -incoming defer"
        )
    );
    assert_eq!(f.count("migrate-incoming"), 0);
}

#[test]
fn an_abort_before_qemu_migrates_is_canceled_by_client() {
    // During Prepare (the job exists, `migrate` not sent): the job stops before `migrate`.
    let mut f = Fake::new(PC);
    f.hold = Some("migrate-incoming");
    f.start();
    f.feed(Input::Api(ApiCall::AbortJob { flags: 0 }));
    assert!(matches!(f.api.last(), Some((_, Ok(ApiValue::Done)))));
    assert!(
        f.done.is_none(),
        "acted on where libvirt checks it: before `migrate`"
    );
    f.release();
    assert_eq!(
        the_error(&f),
        pair(
            "VIR_ERR_OPERATION_ABORTED",
            "operation aborted: migration out: canceled by client"
        )
    );
    assert_eq!(f.count("migrate"), 0);
    assert_eq!(f.count("migrate_cancel"), 0, "nothing to cancel in QEMU");
    assert_eq!(f.stopped, [Side::Dst]);
}

#[test]
fn an_out_of_scope_flag_names_itself() {
    let e = check_driver_flags(PC | VIR_MIGRATE_TLS, "qemuDomainMigrateBegin3Params")
        .expect_err("refused");
    assert_eq!(
        (e.code_name().to_string(), e.message()),
        pair(
            "VIR_ERR_ARGUMENT_UNSUPPORTED",
            "argument unsupported: migration flag VIR_MIGRATE_TLS is not supported by the post-copy shim"
        )
    );
}
