//! Schema conformance: every command the shim sends, with the arguments it sends for a given QEMU
//! version, validates against that version's QAPI schema (the `query-qmp-schema` reply recorded in
//! libvirt's tests/qemucapabilitiesdata/caps_*_x86_64.replies, read from the libvirt 11.3.0 tarball
//! that ci/patches downloads, never copied here); and the capability planning is run against each
//! version's recorded `query-migrate-capabilities` reply.
//! Run by ci/patches with LIBVIRT_SRC set (`--include-ignored`); without it, it fails.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use std::collections::BTreeMap;
use std::path::Path;

mod schema;

use postcopy_core::driver::params::{self, Party};
use postcopy_core::driver::vocab::*;
use schema::command;
use serde_json::{json, Value};

/// One version's recorded session: its schema (by name) and its capability list.
struct Recorded {
    version: (u64, u64, u64),
    schema: BTreeMap<String, Value>,
    caps: Vec<String>,
}

fn load(path: &Path) -> Recorded {
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let (mut schema, mut caps, mut version) = (BTreeMap::new(), Vec::new(), (0, 0, 0));
    for v in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        let v = v.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(cmd) = v.get("execute").and_then(Value::as_str) {
            names.insert(id, cmd.to_string());
            continue;
        }
        let Some(ret) = v.get("return") else { continue };
        match names.get(&id).map(String::as_str) {
            Some("query-qmp-schema") => {
                for e in ret.as_array().unwrap() {
                    schema.insert(e["name"].as_str().unwrap().to_string(), e.clone());
                }
            }
            Some("query-migrate-capabilities") => caps = params::supported_caps(ret).unwrap(),
            Some("query-version") => {
                let q = &ret["qemu"];
                version = (
                    q["major"].as_u64().unwrap(),
                    q["minor"].as_u64().unwrap(),
                    q["micro"].as_u64().unwrap(),
                );
            }
            _ => {}
        }
    }
    assert!(
        !schema.is_empty(),
        "{}: no query-qmp-schema reply",
        path.display()
    );
    Recorded {
        version,
        schema,
        caps,
    }
}

/// libvirt's source tree (the tarball ci/patches imports); the test fails without it.
fn libvirt_src() -> String {
    std::env::var("LIBVIRT_SRC").unwrap_or_else(|_| {
        panic!("LIBVIRT_SRC is not set: ci/patches sets it to libvirt's source tree")
    })
}

#[test]
#[ignore = "needs LIBVIRT_SRC (libvirt's source tree); ci/patches runs it with --include-ignored"]
fn every_command_the_shim_sends_validates_against_each_recorded_qemu() {
    let src = libvirt_src();
    let dir = Path::new(&src).join("tests/qemucapabilitiesdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_x86_64.replies"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the x86_64 replies of QEMU 6.2 to 10.0 in {}",
        dir.display()
    );
    let flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
    let mut failures = Vec::new();
    println!(
        "{:<8} {:<9} {:<24} {:<15} {:<15}",
        "QEMU", "commands", "pause-before-switchover", "postcopy-preempt", "switchover-ack"
    );
    for f in &files {
        let r = load(f);
        let v = format!("{}.{}.{}", r.version.0, r.version.1, r.version.2);
        // The capability planning of both parties, this version on both sides.
        let src_caps = params::plan_caps(flags, Party::Source, &r.caps, &r.caps)
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        let dst_caps = params::plan_caps(flags, Party::Destination, &r.caps, &r.caps)
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        let on = schema::cap_on;
        let mut incoming = json!({"uri": "tcp:127.0.0.1:4444"});
        // The driver adds exit-on-error from 9.1 on, as libvirt does where QEMU has it.
        if r.version >= (9, 1, 0) {
            incoming["exit-on-error"] = json!(false);
        }
        let cleared = params::cleared_caps(&r.caps);
        let src_params =
            params::migration_params(Party::Source, &json!({"tls-creds": ""}), Some(32), Some(8));
        let dst_params =
            params::migration_params(Party::Destination, &json!({"tls-creds": ""}), None, Some(8));
        let sent: Vec<(&str, Option<Value>)> = vec![
            ("qmp_capabilities", None),
            ("query-migrate-capabilities", None),
            (
                "migrate-set-capabilities",
                Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
            ),
            ("query-status", None),
            ("query-migrate-parameters", None),
            ("migrate-set-capabilities", Some(src_caps.clone())),
            ("migrate-set-capabilities", Some(dst_caps.clone())),
            ("migrate-set-capabilities", Some(cleared)),
            ("migrate-set-parameters", Some(src_params)),
            ("migrate-set-parameters", Some(dst_params)),
            (
                "migrate-set-parameters",
                Some(json!({"max-postcopy-bandwidth": 8u64 << 20})),
            ),
            ("migrate-incoming", Some(incoming)),
            (
                "migrate",
                Some(json!({"uri": "tcp:127.0.0.1:4444", "resume": false})),
            ),
            (
                "migrate",
                Some(json!({"uri": "tcp:127.0.0.1:4444", "resume": true})),
            ),
            ("migrate-start-postcopy", None),
            ("migrate-continue", Some(json!({"state": "pre-switchover"}))),
            ("query-migrate", None),
            ("cont", None),
            (
                "migrate-recover",
                Some(json!({"uri": "tcp:127.0.0.1:4444"})),
            ),
            ("migrate-pause", None),
            ("migrate_cancel", None),
        ];
        for (name, args) in &sent {
            if let Err(e) = command(&r.schema, name, args.as_ref()) {
                failures.push(format!("QEMU {v}: {e}"));
            }
        }
        println!(
            "{:<8} {:<9} {:<24} {:<15} {:<15}",
            v,
            sent.len(),
            on(&src_caps, "pause-before-switchover"),
            on(&src_caps, "postcopy-preempt") && on(&dst_caps, "postcopy-preempt"),
            on(&src_caps, "switchover-ack")
        );
        // The required capabilities are on, on both sides, on every version libvirt 11.3 supports.
        for caps in [&src_caps, &dst_caps] {
            assert!(
                on(caps, "postcopy-ram") && on(caps, "return-path"),
                "{v}: {caps}"
            );
        }
        assert!(
            on(&dst_caps, "late-block-activate")
                || !r.caps.iter().any(|c| c == "late-block-activate")
        );
    }
    assert!(
        failures.is_empty(),
        "schema violations:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs LIBVIRT_SRC (libvirt's source tree); ci/patches runs it with --include-ignored"]
fn the_validator_refuses_what_a_version_lacks() {
    let src = libvirt_src();
    let r = load(&Path::new(&src).join("tests/qemucapabilitiesdata/caps_6.2.0_x86_64.replies"));
    // exit-on-error arrived in 9.1: the 6.2 schema must refuse it (the driver never sends it there).
    let e = command(
        &r.schema,
        "migrate-incoming",
        Some(&json!({"uri": "x", "exit-on-error": false})),
    )
    .unwrap_err();
    assert!(e.contains("exit-on-error"), "{e}");
    schema::assert_refuses_unknown_capability_and_missing_state(&r.schema);
}
