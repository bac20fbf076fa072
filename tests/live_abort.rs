//! Live abort and deadline on real QEMU (docs/driver-behaviour.md §10.3, §10.4): the pause through
//! VIR_DOMAIN_ABORT_JOB_POSTCOPY once the guest runs on the destination, then a recovery; a call
//! whose deadline passes in pre-copy (cancelled) and in post-copy (paused, never killed).
//! Set POSTCOPY_SKIP_LIVE=1 to skip where no QEMU can run; CI never sets it.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;
#[path = "common/qemu.rs"]
mod qemu;

use pretty_assertions::assert_eq;
use std::sync::Mutex;
use std::time::Duration;

use common::live::live_enabled;
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{ApiCall, DomainState};
use postcopy_core::engine::Report;
use postcopy_tools::scenario::{self, Fault, Plan, Recovery, ScenarioResult, Trigger};

/// One scenario at a time: two TCG guests already fill two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const PC: u32 = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;

fn plan(name: &str, flags: u32, faults: Vec<Fault>, recovery: Recovery) -> Plan {
    qemu::fault_plan("abort", name, flags, faults, recovery)
}

/// Runs the scenario; ends the QEMUs a failed post-copy leaves running on purpose and removes
/// the work directory (sockets, serial logs) before the test looks at the result.
fn run(p: Plan) -> ScenarioResult {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = p.workdir.clone();
    let r = scenario::run(p).expect("scenario ran");
    for (_, pid) in &r.left_running {
        if let Some(p) = pid {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(p.to_string())
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn st(s: i32, r: i32) -> DomainState {
    DomainState::new(s, r)
}

fn error_of(rep: &Report) -> (i32, String) {
    let e = rep.result.as_ref().expect_err("the call fails");
    (e.code, e.message())
}

#[test]
fn abort_with_the_postcopy_flag_once_the_destination_runs_pauses_then_resume_completes() {
    if !live_enabled("this live abort test") {
        return;
    }
    let r = run(plan(
        "pause",
        PC,
        qemu::early_switch_then(ApiCall::AbortJob {
            flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
        }),
        Recovery::Manual { after_ms: 500 },
    ));
    let abort = r
        .api_log
        .iter()
        .find(|(c, _)| c.starts_with("abort_job"))
        .unwrap_or_else(|| panic!("the abort was made: {:?}", r.api_log));
    assert_eq!(
        abort.1,
        "ok",
        "migrate-pause accepted: {:?}, calls ended {:?}",
        r.api_log,
        r.runs.iter().map(|x| &x.result).collect::<Vec<_>>()
    );
    assert_eq!(r.runs.len(), 2, "the paused call, then the recovery");
    let paused = &r.runs[0];
    // The destination's own monitor reports the pause and its Finish fails.
    assert_eq!(
        error_of(paused),
        (
            code::OPERATION_FAILED,
            "operation failed: job 'migration in' failed in post-copy phase".to_string()
        )
    );
    common::assert_failed_in_postcopy(paused);
    common::assert_completed_in_postcopy(&r.runs[1]);
    let g = r.guest.as_ref().expect("the guest was checked");
    assert_eq!(g.check_failures, 0, "{:?}", g.failures);
    assert!(g.checks_ok >= 1 && g.heartbeats > 0, "{g:?}");
}

#[test]
fn a_deadline_in_precopy_cancels_and_names_the_phases() {
    if !live_enabled("this live deadline test") {
        return;
    }
    // 192 MiB at 32 MiB/s: pre-copy alone takes about 6 s.
    let mut p = plan("deadline-pre", PC, Vec::new(), Recovery::None);
    p.deadline = Some(Duration::from_secs(2));
    let r = run(p);
    assert_eq!(r.runs.len(), 1);
    let rep = &r.runs[0];
    assert_eq!(
        error_of(rep),
        (
            code::OPERATION_TIMEOUT,
            "Timed out during operation: migration deadline of 2 s passed (source phase perform3, destination phase prepare); the migration was cancelled".to_string()
        )
    );
    assert_eq!(rep.src_state.state, state::RUNNING, "the source runs on");
    assert!(r.src_alive);
    assert_eq!(rep.dst_state, st(state::SHUTOFF, state::SHUTOFF_FAILED));
    assert!(
        !r.dst_alive,
        "the destination, which never ran the guest, is stopped"
    );
}

#[test]
fn a_deadline_in_postcopy_pauses_and_leaves_both_recoverable() {
    if !live_enabled("this live deadline test") {
        return;
    }
    // StartPostCopy after 0.5 s; then post-copy's background transfer at 1 MiB/s would take
    // minutes: the 4 s deadline passes in post-copy.
    let mut p = plan(
        "deadline-post",
        PC,
        vec![Fault::Call {
            call: ApiCall::StartPostCopy { flags: 0 },
            at: Trigger::AfterMs(500),
        }],
        Recovery::None,
    );
    p.postcopy_bandwidth_mib = Some(1);
    p.deadline = Some(Duration::from_secs(4));
    let r = run(p);
    let rep = &r.runs[0];
    let (code, msg) = error_of(rep);
    assert_eq!(code, code::OPERATION_TIMEOUT, "{msg}");
    assert!(
        msg.starts_with("Timed out during operation: migration deadline of 4 s passed (source phase ")
            && msg.ends_with(
                "after the guest started on the destination: post-copy was paused (migrate-pause); nothing was cancelled or killed, both QEMUs are left for VIR_MIGRATE_POSTCOPY_RESUME"
            ),
        "{msg}"
    );
    common::assert_failed_in_postcopy(rep);
    assert!(r.src_alive && r.dst_alive, "never killed");
    assert_eq!(
        r.left_running.len(),
        2,
        "left for a recovery: {:?}",
        r.left_running
    );
}
