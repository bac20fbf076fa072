//! Schema conformance against a QEMU binary itself: the test starts the QEMU named by
//! POSTCOPY_SCHEMA_QEMU (`-S -machine none`, QMP on a unix socket, with a deadline), asks it for
//! `query-qmp-schema`, `query-version` and `query-migrate-capabilities` (never written to the
//! repository), and validates against that schema
//! - every command the shim sent in the fixtures recorded from this QEMU version
//!   (qemu-fixtures/*/*.jsonl whose header names the same major.minor), which together must cover
//!   every command the shim can send, and
//! - the capability and parameter commands the driver plans for this QEMU's capability list with
//!   every flag and both bandwidths.
//!
//! ci/newest runs it with the QEMU 11.1 of its Debian sid root:
//!   POSTCOPY_SCHEMA_QEMU=$CACHE/newest/qemu-11.1 cargo test --test qemu_schema_live -- --ignored
//! Ignored by default; run with --ignored and without POSTCOPY_SCHEMA_QEMU, or with a QEMU that
//! does not start, it fails.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;
mod schema;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postcopy_core::driver::params::{self, Party};
use postcopy_core::driver::vocab::*;
use postcopy_core::transcript::Record;
use schema::{command, Schema};
use serde_json::{json, Value};

/// Every command the shim can send to a QEMU; the fixtures of a version must use them all.
const ALL_COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-migrate-capabilities",
    "migrate-set-capabilities",
    "query-status",
    "query-migrate-parameters",
    "migrate-set-parameters",
    "migrate-incoming",
    "migrate",
    "migrate-start-postcopy",
    "migrate-continue",
    "query-migrate",
    "cont",
    "migrate-recover",
    "migrate-pause",
    "migrate_cancel",
];

const DEADLINE: Duration = Duration::from_secs(60);

/// A QEMU started for its schema; killed when dropped.
struct Probe {
    child: Child,
    dir: PathBuf,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the QEMU answered.
struct Live {
    version: (u64, u64, u64),
    package: String,
    schema: Schema,
    caps: Vec<String>,
}

fn ask_qemu(binary: &str) -> Live {
    let dir = std::env::temp_dir().join(format!("lpc-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("qmp.sock");
    let stderr = dir.join("stderr");
    let child = Command::new(binary)
        .args([
            "-S",
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "none",
            "-display",
            "none",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("POSTCOPY_SCHEMA_QEMU={binary}: cannot start it: {e}"));
    let mut probe = Probe { child, dir };
    let start = Instant::now();
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        if let Ok(Some(status)) = probe.child.try_wait() {
            panic!(
                "POSTCOPY_SCHEMA_QEMU={binary} exited ({status}) before its QMP socket came up: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default().trim()
            );
        }
        assert!(
            start.elapsed() < DEADLINE,
            "POSTCOPY_SCHEMA_QEMU={binary}: no QMP socket within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut next = |what: &str| -> Value {
        assert!(
            start.elapsed() < DEADLINE,
            "{binary}: no {what} within {DEADLINE:?}"
        );
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{binary}: the monitor closed while waiting for {what}"))
            .unwrap_or_else(|e| panic!("{binary}: reading {what}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{binary}: {e}: {line}"))
    };
    let greeting = next("the greeting");
    assert!(
        greeting.get("QMP").is_some(),
        "{binary}: greeting {greeting}"
    );
    let mut ask = |cmd: &str| -> Value {
        writeln!(out, "{}", json!({"execute": cmd, "id": cmd})).unwrap();
        loop {
            let v = next(cmd);
            if v.get("event").is_some() {
                continue;
            }
            assert_eq!(v["id"], json!(cmd), "{binary}: {v}");
            return v
                .get("return")
                .cloned()
                .unwrap_or_else(|| panic!("{binary}: {cmd} failed: {v}"));
        }
    };
    ask("qmp_capabilities");
    let v = ask("query-version");
    let schema = schema::index(&ask("query-qmp-schema"));
    let caps = params::supported_caps(&ask("query-migrate-capabilities")).unwrap();
    drop(probe);
    let q = &v["qemu"];
    Live {
        version: (
            q["major"].as_u64().unwrap(),
            q["minor"].as_u64().unwrap(),
            q["micro"].as_u64().unwrap(),
        ),
        package: v["package"].as_str().unwrap_or("").to_string(),
        schema,
        caps,
    }
}

fn binary() -> String {
    std::env::var("POSTCOPY_SCHEMA_QEMU").unwrap_or_else(|_| {
        panic!(
            "POSTCOPY_SCHEMA_QEMU is not set: name the QEMU binary (or wrapper) whose schema to \
             check, e.g. ci/newest's $CACHE/newest/qemu-11.1"
        )
    })
}

/// The fixtures recorded from this QEMU's major.minor (both sides).
fn fixtures_of(version: (u64, u64, u64)) -> Vec<PathBuf> {
    let prefix = format!("{}.{}.", version.0, version.1);
    let mut out = Vec::new();
    for d in std::fs::read_dir(common::fixtures()).unwrap() {
        let d = d.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&d).unwrap() {
            let f = f.unwrap().path();
            if f.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let t = common::load(&f);
            if t.header.qemu.src.starts_with(&prefix) && t.header.qemu.dst.starts_with(&prefix) {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs POSTCOPY_SCHEMA_QEMU (a QEMU binary); ci/newest runs it with --ignored"]
fn the_shims_commands_validate_against_the_schema_of_the_qemu_binary() {
    let bin = binary();
    let live = ask_qemu(&bin);
    let v = format!("{}.{}.{}", live.version.0, live.version.1, live.version.2);
    println!(
        "QEMU {v} ({}): {} schema entities, {} migration capabilities",
        live.package,
        live.schema.len(),
        live.caps.len()
    );
    let mut failures = Vec::new();

    // 1. What the shim sent to this QEMU version in the recorded fixtures.
    let files = fixtures_of(live.version);
    assert!(
        !files.is_empty(),
        "no fixture in qemu-fixtures/ was recorded from QEMU {}.{}",
        live.version.0,
        live.version.1
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for f in &files {
        let t = common::load(f);
        for (line, r) in &t.records {
            let Record::Send { msg, .. } = r else {
                continue;
            };
            let name = msg["execute"].as_str().unwrap();
            seen.insert(name.to_string());
            n += 1;
            if let Err(e) = command(&live.schema, name, msg.get("arguments")) {
                failures.push(format!("{}:{line}: {e}", f.display()));
            }
        }
    }
    println!(
        "{} commands in {} fixtures recorded from QEMU {}.{} validated",
        n,
        files.len(),
        live.version.0,
        live.version.1
    );
    let missing: Vec<_> = ALL_COMMANDS
        .iter()
        .filter(|c| !seen.contains(**c))
        .collect();
    assert!(
        missing.is_empty(),
        "the fixtures of QEMU {v} never send {missing:?}: record the scenarios that do"
    );

    // 2. What the driver plans for this QEMU's capabilities, every flag, both bandwidths.
    let flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
    let src_caps = params::plan_caps(flags, Party::Source, &live.caps, &live.caps)
        .unwrap_or_else(|e| panic!("{v}: {e}"));
    let dst_caps = params::plan_caps(flags, Party::Destination, &live.caps, &live.caps)
        .unwrap_or_else(|e| panic!("{v}: {e}"));
    let planned = [
        ("migrate-set-capabilities", src_caps.clone()),
        ("migrate-set-capabilities", dst_caps.clone()),
        ("migrate-set-capabilities", params::cleared_caps(&live.caps)),
        (
            "migrate-set-parameters",
            params::migration_params(Party::Source, &json!({"tls-creds": ""}), Some(32), Some(8)),
        ),
        (
            "migrate-set-parameters",
            params::migration_params(Party::Destination, &json!({"tls-creds": ""}), None, Some(8)),
        ),
    ];
    for (name, args) in &planned {
        if let Err(e) = command(&live.schema, name, Some(args)) {
            failures.push(format!("planned for QEMU {v}: {e}"));
        }
    }
    let on = schema::cap_on;
    for caps in [&src_caps, &dst_caps] {
        assert!(
            on(caps, "postcopy-ram") && on(caps, "return-path"),
            "{v}: {caps}"
        );
    }
    assert!(
        failures.is_empty(),
        "schema violations against QEMU {v}:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs POSTCOPY_SCHEMA_QEMU (a QEMU binary); ci/newest runs it with --ignored"]
fn the_schema_of_the_qemu_binary_refuses_what_it_lacks() {
    let live = ask_qemu(&binary());
    let (caps, state) = schema::assert_refuses_unknown_capability_and_missing_state(&live.schema);
    assert!(caps.contains("'no-such' is not a value of"), "{caps}");
    assert_eq!(state, "migrate-continue: required argument 'state' missing");
    // QEMU 11.1 answers `migrate` with detach "Parameter 'detach' is unexpected": its schema
    // no longer has the argument that libvirt 11.3.0 and QEMU <= 10.0 used.
    if live.version >= (11, 1, 0) {
        let e = command(
            &live.schema,
            "migrate",
            Some(&json!({"uri": "tcp:127.0.0.1:4444", "detach": true, "resume": false})),
        )
        .unwrap_err();
        assert!(
            e.contains("argument 'detach' does not exist in this QEMU"),
            "{e}"
        );
    }
}

#[test]
fn a_qemu_that_cannot_start_fails_the_check() {
    let r = std::panic::catch_unwind(|| ask_qemu("/nonexistent/qemu-system-x86_64"));
    let msg = r.err().and_then(|p| p.downcast::<String>().ok()).unwrap();
    assert!(
        msg.contains("POSTCOPY_SCHEMA_QEMU=/nonexistent/qemu-system-x86_64: cannot start it"),
        "{msg}"
    );
}
