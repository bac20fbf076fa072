//! Live: a real QEMU guest migrated with VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
//! through the driver, by the public API's one entry (`api::migrate_with`). Needs
//! qemu-system-x86_64 (ci/install-deps qemu) and gcc for the guest.
//! Set POSTCOPY_SKIP_LIVE=1 to skip where no QEMU can run; CI never sets it.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;
#[path = "common/qemu.rs"]
mod qemu;

use pretty_assertions::assert_eq;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::live::live_enabled;
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{MigrateRequest, Side, SwitchedBy};
use postcopy_shim::api::{self, Domain, MigrateOptions};
use postcopy_tools::guest_report::GuestLine;
use postcopy_tools::qemu::{QemuPair, SerialFollower};

#[test]
fn after_precopy_migrates_a_real_guest() {
    if !live_enabled("after_precopy_migrates_a_real_guest") {
        return;
    }
    let dir = tempdir("after-precopy");
    // Each QEMU in its host of the testbed; the link (tbf, 24 MiB/s) is the limit.
    let cfg = qemu::config(common::live::GUEST, common::live::GUEST_MEMORY_MIB);
    let (_testbed, QemuPair { mut src, mut dst }, uri) =
        qemu::start_pair_on_testbed(&cfg, &dir, 24.0);
    let req = MigrateRequest::new(
        VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
        uri,
    );
    let stopped = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = stopped.clone();
    let opts = MigrateOptions {
        on_stop: Some(Box::new(move |side| s2.lock().expect("lock").push(side))),
        ..MigrateOptions::default()
    };
    let (src_dom, dst_dom) = (
        Domain::open_qmp(&src.qmp.display().to_string()),
        Domain::open_qmp(&dst.qmp.display().to_string()),
    );
    let run = api::migrate_with(&src_dom, &dst_dom, req, opts).expect("migration ran");
    let outcome = run.report.result.clone().expect("migration completed");
    assert!(outcome.postcopy, "the migration went through post-copy");
    assert_eq!(
        outcome.switch,
        Some(SwitchedBy::AfterPrecopy { pass: 2 }),
        "switched by the driver after pass 1"
    );
    assert!(outcome.stats.get(param::memory_iteration()).unwrap_or(0) >= 2);
    assert_eq!(
        run.report.src_state,
        DomainState::new(state::SHUTOFF, state::SHUTOFF_MIGRATED)
    );
    assert_eq!(
        run.report.dst_state,
        DomainState::new(state::RUNNING, state::RUNNING_MIGRATED)
    );
    assert_eq!(*stopped.lock().expect("lock"), [Side::Src]);
    // The domains keep what the migration left, as libvirt's domain objects do.
    assert_eq!(src_dom.state(0), Ok(run.report.src_state));
    assert_eq!(dst_dom.state(0), Ok(run.report.dst_state));
    src.kill();
    // The destination guest runs and finds its memory intact.
    let mut follow = SerialFollower::new(&dst.serial);
    let start = Instant::now();
    let (mut ok, mut beats) = (0, 0);
    while ok < 2 && start.elapsed() < Duration::from_secs(60) {
        for l in follow.poll() {
            match GuestLine::parse(&l) {
                Ok(Some(GuestLine::CheckOk { .. })) => ok += 1,
                Ok(Some(GuestLine::Heartbeat { .. })) => beats += 1,
                Ok(Some(r)) => assert!(!r.is_failure(), "guest memory check failed: {l}"),
                Ok(None) => {}
                Err(e) => panic!("guest console corrupted: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ok >= 2 && beats > 0,
        "destination guest did not run: {ok} checks, {beats} beats"
    );
    assert!(dst.alive());
    eprintln!(
        "live: postcopy requests {:?}, switch latency {:?}",
        outcome.stats.get(param::memory_postcopy_requests()),
        run.stats.switch_latency
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("postcopy-live-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}
