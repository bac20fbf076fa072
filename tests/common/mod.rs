//! Helpers shared by the test files: replaying a transcript into the one readable form that
//! snapshots hold.
#![allow(dead_code)]

pub mod live;

use std::path::{Path, PathBuf};

use postcopy_core::engine::{EngineError, Report};
use postcopy_core::transcript::{ReplayTransport, Transcript};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads and parses a transcript; a test fails with the parser's error.
pub fn load(path: &Path) -> Transcript {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Transcript::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

pub fn fixtures() -> PathBuf {
    root().join("qemu-fixtures")
}

/// Replays every migrate call of a transcript; returns the trace and the reports, or the first error.
pub fn replay(t: Transcript) -> (Vec<String>, Result<Vec<Report>, EngineError>) {
    let mut rt = ReplayTransport::new(t);
    let (reports, err) = rt.replay_all();
    let r = match err {
        Some(e) => Err(e),
        None => Ok(reports),
    };
    (rt.trace, r)
}

/// The snapshot text of one fixture: what was recorded, then the shim's conversation, one line per
/// message (ids, timestamps and job-stats polls left out), then the outcome.
pub fn snapshot_text(path: &Path) -> String {
    let t = load(path);
    // Our switch policy (docs/driver-behaviour.md §7.1) when the request had one.
    let policy = t
        .header
        .switch_policy
        .map(|p| format!("switch policy: {p:?}\n"))
        .unwrap_or_default();
    let mut s = format!(
        "scenario: {}\nqemu: src {} / dst {}\nflags: {}\n{policy}---\n",
        t.header.scenario,
        t.header.qemu.src,
        t.header.qemu.dst,
        t.header.flag_names.join(" | ")
    );
    let uri = t.header.uri.clone();
    let relay = t.header.connect_uri.clone();
    let (trace, r) = replay(t);
    for l in trace {
        // Ports are chosen at record time; keep snapshots about the protocol.
        let l = l.replace(&uri, "URI");
        let l = match &relay {
            Some(r) => l.replace(r, "RELAY_URI"),
            None => l,
        };
        s.push_str(&l);
        s.push('\n');
    }
    s.push_str("---\n");
    match r {
        Ok(reports) => {
            for rep in reports {
                match rep.result {
                    Ok(o) => {
                        s.push_str(&format!(
                            "result: completed, postcopy={}, switch_requested={:?}, memory_iteration={:?}, postcopy_requests>0={}\n",
                            o.postcopy,
                            o.switch,
                            o.stats.get("memory_iteration"),
                            o.stats.get("memory_postcopy_requests").unwrap_or(0) > 0
                        ));
                    }
                    Err(e) => s.push_str(&format!("result: {}: {}\n", e.code_name(), e.message())),
                }
                s.push_str(&format!(
                    "source: {}\ndestination: {}\n",
                    rep.src_state, rep.dst_state
                ));
            }
        }
        Err(e) => s.push_str(&format!("replay error: {e}\n")),
    }
    s
}

/// A migrate call left both sides failed in post-copy and recoverable: the source
/// PAUSED/POSTCOPY_FAILED, the destination RUNNING/POSTCOPY_FAILED (nothing killed or cancelled).
pub fn assert_failed_in_postcopy(rep: &Report) {
    use postcopy_core::driver::vocab::state;
    use postcopy_core::driver::DomainState;
    assert_eq!(
        (rep.src_state, rep.dst_state),
        (
            DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED),
            DomainState::new(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
        ),
        "source and destination states after a failure in post-copy"
    );
}

/// A migrate call completed through post-copy: the source SHUTOFF/MIGRATED, the destination
/// RUNNING/MIGRATED.
pub fn assert_completed_in_postcopy(rep: &Report) {
    use postcopy_core::driver::vocab::state;
    use postcopy_core::driver::DomainState;
    let o = rep.result.as_ref().expect("the call completes");
    assert!(o.postcopy, "the migration went through post-copy");
    assert_eq!(
        (rep.src_state, rep.dst_state),
        (
            DomainState::new(state::SHUTOFF, state::SHUTOFF_MIGRATED),
            DomainState::new(state::RUNNING, state::RUNNING_MIGRATED)
        ),
        "source and destination states after a completed post-copy"
    );
}
