//! Live faults on real QEMU (docs/driver-behaviour.md §10, §11): a cut during post-copy and a
//! recovery, the automatic recovery policy, abort, and each QEMU dying before and after the switch. Each test
//! asserts the states left behind and what the guest says about its memory.
//! Set POSTCOPY_SKIP_LIVE=1 to skip where no QEMU can run; CI never sets it.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;
#[path = "common/qemu.rs"]
mod qemu;

use pretty_assertions::assert_eq;
use std::sync::Mutex;
use std::time::Duration;

use common::live::{live_enabled, GUEST, GUEST_MEMORY_MIB};
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{ApiCall, DomainState, RecoveryPolicy, Side};
use postcopy_tools::scenario::{self, Fault, Plan, Recovery, ScenarioResult, Trigger};

/// Live scenarios run one at a time: two TCG guests per scenario already fill two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const PC: u32 = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
const APC: u32 = PC | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;

fn skip() -> bool {
    !live_enabled("this live fault test")
}

fn plan(name: &str, flags: u32, faults: Vec<Fault>, recovery: Recovery) -> Plan {
    qemu::fault_plan("faults", name, flags, faults, recovery)
}

fn run(p: Plan) -> ScenarioResult {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    scenario::run(p).expect("scenario ran")
}

fn st(s: i32, r: i32) -> DomainState {
    DomainState::new(s, r)
}

fn assert_guest_intact(r: &ScenarioResult) {
    let g = r
        .guest
        .as_ref()
        .expect("the guest was checked on the destination");
    assert_eq!(
        g.check_failures, 0,
        "memory lost or stale on the destination: {:?}",
        g.failures
    );
    assert!(
        g.checks_ok >= 1 && g.heartbeats > 0,
        "destination guest did not run: {g:?}"
    );
}

#[test]
fn cut_in_postcopy_leaves_both_paused_then_resume_completes_with_memory_intact() {
    if skip() {
        return;
    }
    let r = run(plan(
        "cut",
        APC,
        vec![Fault::Cut {
            at: Trigger::DestinationRunning,
            down_ms: None,
        }],
        Recovery::Manual { after_ms: 1000 },
    ));
    assert_eq!(r.runs.len(), 2, "the failed call, then the recovery");
    let failed = &r.runs[0];
    let e = failed
        .result
        .as_ref()
        .expect_err("the cut fails the migration");
    assert_eq!(e.code, code::OPERATION_FAILED);
    assert!(e.detail.contains("failed in post-copy phase"), "{e}");
    // Nothing killed, nothing cancelled: the source paused, the destination running, both failed.
    common::assert_failed_in_postcopy(failed);
    common::assert_completed_in_postcopy(&r.runs[1]);
    assert_guest_intact(&r);
    eprintln!("recovery time {:?}", r.recovery_time);
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("the cut destroyed ") && n != "the cut destroyed 0 sockets"),
        "the cut destroyed the migration's sockets: {:?}",
        r.notes
    );
    cleanup(r);
}

/// A silent partition in post-copy (the link down 3 s, no RST): QEMU does not notice by itself
/// within that time; the automatic policy's stall detector sees no progress, pauses the source
/// (the destination cannot be paused through the API: refused, recorded), and the recovery
/// completes once the link is back, with the guest's memory intact.
#[test]
fn silent_partition_is_detected_as_a_stall_and_recovered() {
    if skip() {
        return;
    }
    let r = run(plan(
        "partition",
        APC,
        vec![Fault::Partition {
            at: Trigger::DestinationRunning,
            down_ms: 3000,
        }],
        Recovery::Auto(RecoveryPolicy::default()),
    ));
    eprintln!(
        "partition: {:?}, stall {:?}, {} calls, api {:?}",
        r.partitions,
        r.stall,
        r.runs.len(),
        r.api_log
    );
    let p = r.partitions.first().expect("the partition happened");
    let lasted = p.lasted_ms.expect("the link came back");
    assert!((3000..4000).contains(&lasted), "{p:?}");
    let stall = r
        .stall
        .as_ref()
        .expect("the stall detector declared a stall");
    assert!(
        stall.detected_ms > p.down_at_ms && stall.detected_ms < p.down_at_ms + lasted,
        "the stall is detected while the link is down: {stall:?} {p:?}"
    );
    assert!(stall.detected_ms - stall.since_ms >= 2000, "{stall:?}");
    // The source's pause took effect: its domain failed when the stall was declared (not when
    // the link came back). Its answer is "ok", or, when QEMU's failure event ends the driver's
    // loop before migrate-pause's reply arrives, the no-job answer (a shim defect: libvirt
    // returns the command's result); either way the call was made.
    let src_failed = p.src_failed_after_ms.expect("the source failed");
    assert!(
        p.down_at_ms + src_failed >= stall.detected_ms
            && p.down_at_ms + src_failed < stall.detected_ms + 1000,
        "{p:?} {stall:?}"
    );
    assert!(
        r.api_log
            .iter()
            .any(|(c, _)| c == "abort_job(POSTCOPY) on the source (stall)"),
        "{:?}",
        r.api_log
    );
    assert!(
        stall.dst_pause.contains("VIR_ERR_OPERATION_INVALID")
            && stall
                .dst_pause
                .contains("cannot abort incoming migration; use virDomainDestroy instead"),
        "{stall:?}"
    );
    let failed = &r.runs[0];
    let e = failed
        .result
        .as_ref()
        .expect_err("the pause fails the call");
    assert_eq!(e.code, code::OPERATION_FAILED);
    assert!(e.detail.contains("failed in post-copy phase"), "{e}");
    assert_eq!(
        failed.src_state,
        st(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    let last = r.last().unwrap();
    assert!(last.result.is_ok(), "{:?}", last.result);
    assert_eq!(last.src_state, st(state::SHUTOFF, state::SHUTOFF_MIGRATED));
    assert_eq!(last.dst_state, st(state::RUNNING, state::RUNNING_MIGRATED));
    assert_guest_intact(&r);
    cleanup(r);
}

#[test]
fn automatic_recovery_waits_out_the_outage() {
    if skip() {
        return;
    }
    let policy = RecoveryPolicy {
        initial: Duration::from_millis(500),
        factor: 2,
        max: Duration::from_secs(2),
        deadline: Duration::from_secs(60),
        attempts: 0,
    };
    let r = run(plan(
        "auto",
        APC,
        vec![Fault::Cut {
            at: Trigger::DestinationRunning,
            down_ms: Some(3000),
        }],
        Recovery::Auto(policy),
    ));
    let last = r.last().expect("runs");
    assert!(last.result.is_ok(), "{:?}", last.result);
    assert!(r.runs.len() >= 2, "at least one recovery call");
    assert_eq!(last.src_state, st(state::SHUTOFF, state::SHUTOFF_MIGRATED));
    assert_guest_intact(&r);
    eprintln!(
        "auto recovery: {} calls, recovery time {:?}",
        r.runs.len(),
        r.recovery_time
    );
    cleanup(r);
}

#[test]
fn abort_with_postcopy_flag_pauses_and_plain_abort_is_refused() {
    if skip() {
        return;
    }
    let mut faults = qemu::early_switch_then(ApiCall::AbortJob { flags: 0 });
    faults.push(Fault::Call {
        call: ApiCall::AbortJob {
            flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
        },
        at: Trigger::AfterMs(0),
    });
    let r = run(plan(
        "abort-pc",
        PC,
        faults,
        Recovery::Manual { after_ms: 500 },
    ));
    // The 0 ms call ran before the migration's job existed: refused, nothing paused (the pause
    // through VIR_DOMAIN_ABORT_JOB_POSTCOPY once the destination runs is tests/live_abort.rs).
    let before = r
        .api_log
        .iter()
        .find(|(c, _)| c == "abort_job")
        .expect("logged");
    assert_eq!(
        before.1,
        "VIR_ERR_OPERATION_INVALID: Requested operation is not valid: current job is not outgoing migration in post-copy mode",
        "{:?}",
        r.api_log
    );
    assert_eq!(r.runs.len(), 1, "no failure, no recovery call");
    assert!(
        r.api_log
            .iter()
            .any(|(_, res)| res.contains("cannot abort migration in post-copy mode")),
        "{:?}",
        r.api_log
    );
    assert!(
        r.last().unwrap().result.is_ok(),
        "plain abort changes nothing: {:?}",
        r.last().unwrap().result
    );
}

#[test]
fn abort_in_precopy_cancels_and_restores_the_source() {
    if skip() {
        return;
    }
    let r = run(plan(
        "abort",
        PC,
        vec![Fault::Call {
            call: ApiCall::AbortJob { flags: 0 },
            at: Trigger::Iteration(1),
        }],
        Recovery::None,
    ));
    let rep = r.last().unwrap();
    let e = rep.result.as_ref().expect_err("aborted");
    assert_eq!(r.api_log, [("abort_job".to_string(), "ok".to_string())]);
    // The call follows QEMU's final status, as libvirt's qemuMigrationJobCheckStatus does:
    // `cancelled`, or, in about one run of six on QEMU 10.0.2, `failed`: a `migrate_cancel` that
    // lands at the start of the stream races QEMU's own setup (it reports `active`, then
    // `failed` with "Channel error: Input/output error" or a broken pipe).
    let cancelled = (e.code, e.message())
        == (
            code::OPERATION_ABORTED,
            "operation aborted: job 'migration out' canceled by client".to_string(),
        );
    let qemu_failed = e.code == code::OPERATION_FAILED
        && e.message()
            .starts_with("operation failed: job 'migration out' failed: ");
    assert!(cancelled || qemu_failed, "{e:?}");
    assert_eq!(rep.src_state.state, state::RUNNING);
    assert!(r.src_alive, "the source keeps running");
    assert!(
        !r.dst_alive,
        "the destination, which never ran the guest, is stopped"
    );
}

#[test]
fn destination_dies_before_the_switch_source_keeps_running() {
    if skip() {
        return;
    }
    let r = run(plan(
        "kill-dst-pre",
        PC,
        vec![Fault::Kill {
            side: Side::Dst,
            at: Trigger::Iteration(1),
        }],
        Recovery::None,
    ));
    let rep = r.last().unwrap();
    assert_killed_error(rep, "destination", false);
    assert_eq!(rep.src_state.state, state::RUNNING);
    assert!(r.src_alive);
    assert_eq!(rep.dst_state, st(state::SHUTOFF, state::SHUTOFF_CRASHED));
    cleanup(r);
}

#[test]
fn source_dies_before_the_switch_destination_is_stopped() {
    if skip() {
        return;
    }
    let r = run(plan(
        "kill-src-pre",
        PC,
        vec![Fault::Kill {
            side: Side::Src,
            at: Trigger::Iteration(1),
        }],
        Recovery::None,
    ));
    let rep = r.last().unwrap();
    assert_killed_error(rep, "source", false);
    assert_eq!(rep.src_state, st(state::SHUTOFF, state::SHUTOFF_CRASHED));
    assert_eq!(rep.dst_state, st(state::SHUTOFF, state::SHUTOFF_FAILED));
    assert!(!r.dst_alive);
    cleanup(r);
}

#[test]
fn destination_dies_in_postcopy_source_is_left_paused_not_killed() {
    if skip() {
        return;
    }
    let r = run(plan(
        "kill-dst-post",
        APC,
        vec![Fault::Kill {
            side: Side::Dst,
            at: Trigger::DestinationRunning,
        }],
        Recovery::None,
    ));
    let rep = r.last().unwrap();
    assert_killed_error(rep, "destination", true);
    assert_eq!(
        rep.src_state,
        st(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
    );
    assert!(
        r.src_alive,
        "the source is never killed once the guest ran on the destination"
    );
    assert!(!r.left_running.is_empty());
    cleanup(r);
}

#[test]
fn source_dies_in_postcopy_destination_is_left_running_not_killed() {
    if skip() {
        return;
    }
    let r = run(plan(
        "kill-src-post",
        APC,
        vec![Fault::Kill {
            side: Side::Src,
            at: Trigger::DestinationRunning,
        }],
        Recovery::None,
    ));
    let rep = r.last().unwrap();
    assert_killed_error(rep, "source", true);
    assert_eq!(
        rep.dst_state,
        st(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
    );
    assert!(r.dst_alive, "the destination is never killed by us");
    cleanup(r);
}

/// The error of a migration whose `side` QEMU was killed: VIR_ERR_OPERATION_FAILED, saying that
/// QEMU's monitor closed (with what the driver was waiting for then: "end of file", or the
/// command whose reply never came). In post-copy the surviving QEMU's own failure (its stream
/// broke with the other's death) may reach the driver first: then the post-copy failure.
fn assert_killed_error(rep: &postcopy_core::engine::Report, side: &str, in_postcopy: bool) {
    let e = rep
        .result
        .as_ref()
        .expect_err("a killed QEMU fails the migration");
    eprintln!("{side} killed: {e}");
    assert_eq!(e.code, code::OPERATION_FAILED, "{e}");
    let msg = e.message();
    let closed = msg.starts_with(&format!("operation failed: {side} QEMU monitor closed: "));
    let postcopy_failed =
        in_postcopy && msg == "operation failed: job 'migration in' failed in post-copy phase";
    assert!(closed || postcopy_failed, "{e}");
}

/// The scenario leaves a failed post-copy's QEMUs running on purpose, in the testbed it hands
/// back; dropping it ends them. Then nothing may be left: no QEMU, no namespace holder.
fn cleanup(mut r: ScenarioResult) {
    let qemus: Vec<u32> = r.left_running.iter().filter_map(|(_, p)| *p).collect();
    drop(r.testbed.take());
    assert_nothing_left(&r, &qemus);
}

/// No QEMU of the scenario, no namespace holder of its testbed (a namespace lives while a
/// process holds it), and no veth end of ours in this machine's namespace.
fn assert_nothing_left(r: &ScenarioResult, qemus: &[u32]) {
    assert!(r.testbed.is_none(), "the testbed is still held");
    assert_eq!(
        r.testbed_holders.len(),
        2,
        "a source and a destination holder"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for pid in r.testbed_holders.iter().chain(qemus) {
        while alive(*pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} (a QEMU or a namespace holder) outlived the scenario"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("pc-src") && !links.contains("pc-dst"),
        "a veth end of the testbed in the machine's namespace: {links}"
    );
}

/// A process that exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// The public API's automatic recovery (what lpc_domain_migrate_auto_recover calls), on two
/// QEMUs of the caller's: the stream is cut once the destination runs, the link comes back 2 s
/// later, and the call returns success with nobody calling anything.
#[test]
fn api_migrate_with_recovery_completes_across_a_cut() {
    use postcopy_core::driver::MigrateRequest;
    use postcopy_shim::api::{self, Domain};
    use postcopy_tools::qemu::QemuPair;
    use postcopy_tools::testbed::{LinkConfig, Testbed};

    if skip() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("postcopy-faults-{}-api", std::process::id()));
    let tb = Testbed::new(LinkConfig::new(32.0)).unwrap();
    let probe = tb.probe();
    let cfg = qemu::config(GUEST, GUEST_MEMORY_MIB);
    let qemus = QemuPair::start_in_hosts(&cfg, &probe, &dir).unwrap();
    let port = 49152;
    let src = Domain::open_qmp(&qemus.src.qmp.display().to_string());
    let dst = Domain::open_qmp(&qemus.dst.qmp.display().to_string());
    let req = MigrateRequest {
        flags: APC,
        uri: tb.migration_uri(port),
        bandwidth_mib: None,
        postcopy_bandwidth_mib: Some(8),
        connect_uri: None,
        switch_policy: None,
    };
    // Cut (ss -K in both hosts) once the destination runs in post-copy; the link returns 2 s
    // later.
    let cutter = {
        let dst = dst.clone();
        std::thread::spawn(move || {
            let running_pc = DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY);
            for _ in 0..6000 {
                if dst.state(0).is_ok_and(|s| s == running_pc) {
                    let killed = probe.cut(port, true).unwrap();
                    std::thread::sleep(Duration::from_secs(2));
                    probe.set_link_up(true).unwrap();
                    return killed > 0;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        })
    };
    let mut attempts = Vec::new();
    let policy = RecoveryPolicy {
        initial: Duration::from_millis(300),
        ..Default::default()
    };
    let r = api::migrate_with_recovery(&src, &dst, req, &policy, |req, r| {
        attempts.push((req.flags & VIR_MIGRATE_POSTCOPY_RESUME != 0, r.is_ok()));
    });
    assert!(
        cutter.join().unwrap(),
        "the destination never ran in post-copy, or the cut found no socket"
    );
    assert!(r.is_ok(), "{r:?} after {attempts:?}");
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(
        attempts[0],
        (false, false),
        "the first call fails in post-copy"
    );
    assert!(
        attempts[1..].iter().all(|(resume, _)| *resume),
        "recoveries carry POSTCOPY_RESUME"
    );
    assert_eq!(
        src.state(0).unwrap(),
        DomainState::new(state::SHUTOFF, state::SHUTOFF_MIGRATED)
    );
    assert_eq!(
        dst.state(0).unwrap(),
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATED)
    );
    eprintln!("api auto recovery: {} calls", attempts.len());
    drop(qemus);
    tb.teardown()
        .expect("the testbed's holders exit by themselves");
}
