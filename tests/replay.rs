//! Replays every recorded transcript against the driver, one insta snapshot per fixture, and
//! shows that an edited transcript fails with a diff naming the first divergence.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;

use std::path::Path;

use common::{fixtures, load, replay};
use postcopy_core::engine::EngineError;
use postcopy_core::transcript::{Transcript, TranscriptError};

#[test]
fn every_fixture_replays_and_matches_its_snapshot() {
    let mut n = 0;
    insta::glob!("../qemu-fixtures", "**/*.jsonl", |path| {
        if path.parent().is_some_and(|d| d.ends_with("mutated")) {
            return; // edited recordings, each asserted by its own test below
        }
        n += 1;
        let t = load(path);
        let (_, r) = replay(t);
        if let Err(e) = r {
            panic!("{}: {e}", path.display());
        }
        insta::assert_snapshot!(common::snapshot_text(path));
    });
    assert!(n >= 10, "expected the recorded fixtures, found {n}");
}

fn load_text(rel: &str) -> (String, String) {
    let p = fixtures().join(rel);
    (
        p.display().to_string(),
        std::fs::read_to_string(&p).expect("fixture"),
    )
}

#[test]
fn an_edited_command_stops_the_replay_with_a_diff() {
    let (file, text) = load_text("qemu-10.0/postcopy-after-precopy.jsonl");
    // Change the recorded bandwidth of the source's migrate-set-parameters (QEMU's cap: on the
    // testbed, where the link is the limit, libvirt's "unlimited").
    let mut edited_line = 0;
    let mut recorded = String::new();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let at = l.find("\"max-bandwidth\":");
            match at {
                Some(at)
                    if edited_line == 0
                        && l.contains("\"send\"")
                        && l.contains("\"migrate-set-parameters\"") =>
                {
                    edited_line = i + 1;
                    let value: String = l[at + 16..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    recorded = format!("\"max-bandwidth\":{value}");
                    l.replace(&recorded, "\"max-bandwidth\":1048576")
                }
                _ => l.to_string(),
            }
        })
        .collect();
    assert!(
        edited_line > 0,
        "fixture has no max-bandwidth command to edit"
    );
    let t = Transcript::parse(&file, &lines.join("\n")).expect("still a valid transcript");
    let (_, r) = replay(t);
    match r {
        Err(EngineError::Divergence(d)) => {
            assert_eq!(d.line, edited_line);
            assert_eq!(d.file, file);
            assert!(
                d.expected.contains("\"max-bandwidth\":1048576"),
                "{}",
                d.expected
            );
            assert!(d.got.contains(&recorded), "{} (recorded {recorded})", d.got);
            let shown = d.to_string();
            assert!(shown.contains(&format!("{file}:{edited_line}")), "{shown}");
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn a_removed_command_is_named() {
    let (file, text) = load_text("qemu-10.0/postcopy-start-api.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    let pos = lines
        .iter()
        .position(|l| l.contains("\"send\"") && l.contains("\"migrate-continue\""))
        .expect("fixture sends migrate-continue");
    let mut kept = lines.clone();
    kept.remove(pos);
    let t = Transcript::parse(&file, &kept.join("\n")).expect("valid");
    let (_, r) = replay(t);
    match r {
        Err(EngineError::Divergence(d)) => assert!(d.got.contains("migrate-continue"), "{d}"),
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn a_changed_event_order_changes_what_the_driver_does() {
    // Without the MIGRATION_PASS 2 event the driver must not switch: the recording's
    // migrate-start-postcopy then has no counterpart.
    let (file, text) = load_text("qemu-10.0/postcopy-after-precopy.jsonl");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !(l.contains("MIGRATION_PASS") && l.contains("\"pass\":2")))
        .collect();
    let t = Transcript::parse(&file, &kept.join("\n")).expect("valid");
    let (_, r) = replay(t);
    match r {
        Err(EngineError::Divergence(d)) => {
            assert!(d.expected.contains("migrate-start-postcopy"), "{d}");
            assert!(d.got.contains("nothing"), "{d}");
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
}

fn corrupt(text: &str) -> TranscriptError {
    Transcript::parse("x.jsonl", text).expect_err("must be refused")
}

#[test]
fn corrupt_transcripts_are_refused_with_file_and_line() {
    let e = corrupt("");
    assert!(e.to_string().contains("x.jsonl:1: empty transcript"), "{e}");
    let e = corrupt("not json\n");
    assert!(
        e.to_string().contains("x.jsonl:1: header is not JSON"),
        "{e}"
    );
    let e = corrupt("{\"format\":\"other\"}\n");
    assert!(e.to_string().contains("lacks \"format\""), "{e}");
    let (_, text) = load_text("qemu-10.0/precopy-converges.jsonl");
    let header = text.lines().next().expect("header");
    let e = corrupt(&header.replace("\"version\":1", "\"version\":99"));
    assert!(
        e.to_string().contains("unsupported transcript version 99"),
        "{e}"
    );
    let e = corrupt(&format!("{header}\n{{\"kind\":\"recv\",\"t\":0}}\n"));
    assert!(e.to_string().contains("x.jsonl:2: invalid record"), "{e}");
    let e = corrupt(&format!(
        "{header}\n{{\"kind\":\"api\",\"t\":0,\"api\":{{\"call\":\"reboot\"}}}}\n"
    ));
    assert!(e.to_string().contains("unknown API call 'reboot'"), "{e}");
    let e = corrupt(&format!(
        "{header}\n{{\"kind\":\"send\",\"t\":0,\"mon\":\"src\",\"msg\":{{}}}}\n"
    ));
    assert!(
        e.to_string().contains("x.jsonl:2: send record without"),
        "{e}"
    );
}

#[test]
fn a_truncated_transcript_says_where_the_driver_waits() {
    let (file, text) = load_text("qemu-10.0/postcopy-after-precopy.jsonl");
    let cut: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("postcopy-active"))
        .collect();
    let t = Transcript::parse(&file, &cut.join("\n")).expect("valid");
    let (_, r) = replay(t);
    match r {
        Err(EngineError::Ended(what)) => assert!(what.contains("perform3"), "{what}"),
        other => panic!("expected the end of input, got {other:?}"),
    }
}

#[test]
fn malformed_qmp_from_a_peer_is_dropped_with_a_warning_and_changes_nothing() {
    let (file, text) = load_text("qemu-10.0/precopy-converges.jsonl");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let pos = lines
        .iter()
        .position(|l| l.contains("\"event\":\"MIGRATION\"") && l.contains("\"mon\":\"src\""))
        .expect("event");
    // Garbage, an unknown-status event and an error without id, before the first source MIGRATION event.
    let garbage = r#"{"kind":"recv","t":0,"mon":"src","msg":"{not json"}"#;
    let unknown =
        r#"{"kind":"recv","t":0,"mon":"src","msg":{"event":"MIGRATION","data":{"status":"colo"}}}"#;
    let no_id = r#"{"kind":"recv","t":0,"mon":"src","msg":{"error":{"class":"GenericError","desc":"JSON parse error"}}}"#;
    lines.insert(pos, no_id.to_string());
    lines.insert(pos, unknown.to_string());
    lines.insert(pos, garbage.to_string());
    let t = Transcript::parse(&file, &lines.join("\n")).expect("valid transcript");
    let (trace, r) = replay(t);
    let reps = r.expect("the migration still completes");
    assert!(reps[0].result.is_ok());
    assert!(
        trace
            .iter()
            .any(|l| l.contains("dropped: malformed QMP message")),
        "{trace:?}"
    );
    assert!(
        trace
            .iter()
            .any(|l| l.contains("unknown migration status 'colo'")),
        "{trace:?}"
    );
    assert!(
        trace.iter().any(|l| l.contains("error reply without id")),
        "{trace:?}"
    );
}

#[test]
fn a_missing_greeting_is_fatal_and_named() {
    let (file, text) = load_text("qemu-10.0/precopy-converges.jsonl");
    // The destination's first message is an event, not the greeting.
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.contains("\"QMP\"") && l.contains("\"mon\":\"dst\"") {
                r#"{"kind":"recv","t":0,"mon":"dst","msg":{"event":"STOP"}}"#.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let t = Transcript::parse(&file, &lines.join("\n")).expect("valid");
    let (_, r) = replay(t);
    let e = r.expect_err("no greeting");
    assert!(
        e.to_string()
            .contains("dst monitor: expected the QMP greeting"),
        "{e}"
    );
    let _ = Path::new(&file);
}

/// Issue 12 item 1: each side fails from its own monitor (qemuProcessHandleMigrationStatus on each
/// daemon). In the mutated recording only the source reports `postcopy-paused` while the
/// destination's Finish waits: the source's job fails (PAUSED/POSTCOPY_FAILED, one
/// SUSPENDED_POSTCOPY_FAILED), the destination reports nothing and stays in Finish.
#[test]
fn a_source_only_postcopy_paused_fails_only_the_source() {
    let t = load(&fixtures().join("mutated/source-only-postcopy-paused.jsonl"));
    let desc = t.header.description.clone().unwrap_or_default();
    assert!(desc.starts_with("MUTATED"), "{desc}");
    let (trace, r) = replay(t);
    match r {
        Err(EngineError::Ended(what)) => assert_eq!(
            what, "source phase postcopy_failed, destination phase finish3",
            "the destination's Finish still waits on its own monitor"
        ),
        other => panic!("expected the destination still waiting, got {other:?}"),
    }
    let events: Vec<&String> = trace.iter().filter(|l| l.contains(" event ")).collect();
    assert_eq!(
        events
            .iter()
            .filter(|l| l.ends_with("SUSPENDED_POSTCOPY_FAILED"))
            .count(),
        1,
        "{trace:#?}"
    );
    assert!(
        !trace
            .iter()
            .any(|l| l.starts_with("dst event") && l.contains("POSTCOPY_FAILED")),
        "the destination reported nothing: {trace:#?}"
    );
}

/// The arguments of each command the shim sent on `mon` (from the replay's trace).
fn sent_args(trace: &[String], mon: &str, cmd: &str) -> Vec<serde_json::Value> {
    let prefix = format!("{mon} -> {cmd} ");
    trace
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|a| serde_json::from_str(a).expect("arguments are JSON"))
        .collect()
}

/// Issue 12 item 4: an abort in pre-copy restores the source: capabilities all cleared and the
/// parameters QEMU had before, after QEMU reported `cancelled` (docs/driver-behaviour.md §10.1).
#[test]
fn abort_in_precopy_resets_capabilities_and_restores_the_parameters() {
    for rel in [
        "qemu-10.0/abort-precopy.jsonl",
        "qemu-11.1/abort-precopy.jsonl",
    ] {
        let (file, text) = load_text(rel);
        let t = Transcript::parse(&file, &text).expect("valid");
        // The source's parameters before the migration: its first query-migrate-parameters reply.
        let orig = {
            let lines: Vec<serde_json::Value> = text
                .lines()
                .skip(1)
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect();
            let id = lines
                .iter()
                .find(|r| {
                    r["kind"] == "send"
                        && r["mon"] == "src"
                        && r["msg"]["execute"] == "query-migrate-parameters"
                })
                .map(|r| r["msg"]["id"].clone())
                .expect("the source's parameters were read");
            lines
                .iter()
                .find(|r| r["kind"] == "recv" && r["mon"] == "src" && r["msg"]["id"] == id)
                .map(|r| r["msg"]["return"].clone())
                .expect("answered")
        };
        let (trace, r) = replay(t);
        let reps = r.unwrap_or_else(|e| panic!("{rel}: {e}"));
        let e = reps[0].result.as_ref().expect_err("aborted");
        assert_eq!(
            (e.code_name(), e.message()),
            (
                "VIR_ERR_OPERATION_ABORTED",
                "operation aborted: job 'migration out' canceled by client".to_string()
            ),
            "{rel}"
        );
        let cancel = trace
            .iter()
            .position(|l| l == "src -> migrate_cancel")
            .expect("cancelled");
        let cancelled = trace
            .iter()
            .position(|l| l.starts_with("src <- MIGRATION") && l.contains("\"cancelled\""))
            .expect("QEMU reported cancelled");
        let reset = trace
            .iter()
            .rposition(|l| l.starts_with("src -> migrate-set-capabilities"))
            .expect("reset");
        assert!(cancel < cancelled && cancelled < reset, "{rel}: {trace:#?}");
        let caps = sent_args(&trace, "src", "migrate-set-capabilities");
        let last = caps.last().expect("reset");
        assert!(
            last["capabilities"]
                .as_array()
                .expect("list")
                .iter()
                .all(|c| c["state"] == false),
            "{rel}: every capability cleared: {last}"
        );
        let params = sent_args(&trace, "src", "migrate-set-parameters");
        let restored = params.last().expect("parameters restored");
        for (k, v) in restored.as_object().expect("object") {
            assert_eq!(&orig[k], v, "{rel}: {k} restored to QEMU's original");
        }
        assert_eq!(restored["max-bandwidth"], orig["max-bandwidth"]);
        assert_ne!(
            params.first(),
            Some(restored),
            "{rel}: the restore is not the migration's own setting"
        );
    }
}
