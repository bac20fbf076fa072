//! The errors the Rust API constructs itself (docs/driver-behaviour.md §12, rows "shim
//! (`api::migrate`)" and the event callbacks), each with its code and message.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use std::path::PathBuf;

use postcopy_shim::api::{self, Domain, Replay};
use postcopy_shim::postcopy_core::driver::vocab::*;
use postcopy_shim::postcopy_core::driver::{ApiCall, MigrateRequest, VirError};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../qemu-fixtures")
        .join(rel)
}

fn err(r: Result<impl std::fmt::Debug, VirError>) -> (String, String) {
    let e = r.expect_err("refused");
    (e.code_name().to_string(), e.message())
}

fn pair(code: &str, msg: &str) -> (String, String) {
    (code.to_string(), msg.to_string())
}

fn req() -> MigrateRequest {
    MigrateRequest::new(VIR_MIGRATE_LIVE, "unix:/nonexistent")
}

#[test]
fn the_same_domain_twice_is_refused() {
    let d = Domain::open_qmp("/nonexistent/qmp.sock");
    assert_eq!(
        err(api::migrate(&d, &d, req())),
        pair(
            "VIR_ERR_INVALID_ARG",
            "invalid argument: the source and the destination are the same domain"
        )
    );
}

#[test]
fn a_live_domain_and_a_replayed_one_are_refused() {
    let r = Replay::open(&fixture("qemu-10.0/precopy-converges.jsonl")).expect("fixture");
    let live = Domain::open_qmp("/nonexistent/qmp.sock");
    assert_eq!(
        err(api::migrate(&live, &r.destination(), req())),
        pair(
            "VIR_ERR_INVALID_ARG",
            "invalid argument: the source and the destination must be two live domains, or the source and the destination of one replay"
        )
    );
}

#[test]
fn a_replay_answers_its_calls_from_the_transcript_then_has_no_more() {
    // A refused call leaves the source running: the next call meets the end of the recording.
    let path = fixture("qemu-10.0/refuse-postcopy-not-live.jsonl");
    let r = Replay::open(&path).expect("fixture");
    let text = std::fs::read_to_string(&path).unwrap();
    let head: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut header = MigrateRequest::new(
        head["flags"].as_u64().unwrap() as u32,
        head["uri"].as_str().unwrap(),
    );
    header.bandwidth_mib = head["bandwidth"].as_u64();
    let (code, _) = err(api::migrate(&r.source(), &r.destination(), header.clone()));
    assert_eq!(code, "VIR_ERR_ARGUMENT_UNSUPPORTED", "the recorded refusal");
    assert_eq!(
        err(api::migrate(&r.source(), &r.destination(), header)),
        pair(
            "VIR_ERR_OPERATION_INVALID",
            "Requested operation is not valid: every migrate call of this replay was made (or the replay failed)"
        )
    );
}

#[test]
fn event_callbacks_refuse_unknown_ids_and_unknown_callbacks() {
    let d = Domain::open_qmp("/nonexistent/qmp.sock");
    let (code, msg) = err(d.register(99, Box::new(|_, _, _| {})));
    assert_eq!(code, "VIR_ERR_INVALID_ARG");
    assert!(
        msg.starts_with("invalid argument: unsupported event ID 99"),
        "{msg}"
    );
    assert_eq!(
        err(d.deregister(7)),
        pair(
            "VIR_ERR_INVALID_ARG",
            "invalid argument: could not find event callback 7 for deregistration"
        )
    );
    // Without a job the calls get libvirt's answers.
    assert_eq!(
        err(d.api(ApiCall::AbortJob { flags: 0 })),
        pair(
            "VIR_ERR_OPERATION_INVALID",
            "Requested operation is not valid: no job is active on the domain"
        )
    );
}
