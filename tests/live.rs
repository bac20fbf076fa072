//! Live: a real QEMU guest migrated with VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
//! through the driver. Needs qemu-system-x86_64 (ci/install-deps qemu) and gcc for the guest.
//! Set POSTCOPY_SKIP_LIVE=1 to skip where no QEMU can run; CI never sets it.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{MigrateRequest, Side, SwitchedBy};
use postcopy_shim::io::run::{self, Hooks};
use postcopy_tools::guest_report::GuestLine;
use postcopy_tools::qemu::{QemuConfig, QemuProcess, SerialFollower};

fn live_enabled() -> bool {
    if std::env::var_os("POSTCOPY_SKIP_LIVE").is_some() {
        eprintln!("POSTCOPY_SKIP_LIVE set: live test skipped");
        return false;
    }
    true
}

fn guest_kernel() -> PathBuf {
    let out = common::root().join("target/live-guest");
    let st = Command::new(common::root().join("qemu-fixtures/guest/build.sh"))
        .arg(&out)
        .status()
        .expect("run qemu-fixtures/guest/build.sh");
    assert!(st.success(), "guest build failed");
    out.join("postcopy-guest.elf")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn after_precopy_migrates_a_real_guest() {
    if !live_enabled() {
        return;
    }
    let dir = tempdir("after-precopy");
    let cfg = QemuConfig {
        binary: "qemu-system-x86_64".into(),
        kernel: guest_kernel(),
        append: "ro=64 hot=16 cold=32 rate=40 beat=20".into(),
        memory_mib: 192,
        extra_args: vec![],
        env: vec![],
    };
    let mut src = QemuProcess::start(&cfg, &dir, "src", false)
        .expect("start source QEMU (ci/install-deps qemu)");
    let mut dst = QemuProcess::start(&cfg, &dir, "dst", true).expect("start destination QEMU");
    src.wait_serial("READY", Duration::from_secs(120))
        .expect("guest ready");
    let req = MigrateRequest {
        flags: VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
        uri: format!("tcp:127.0.0.1:{}", free_port()),
        bandwidth_mib: Some(24),
        postcopy_bandwidth_mib: None,
        connect_uri: None,
    };
    let stopped = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = stopped.clone();
    let hooks = Hooks {
        on_stop: Some(Box::new(move |side| s2.lock().expect("lock").push(side))),
        ..Default::default()
    };
    let run = run::migrate(
        &src.qmp.display().to_string(),
        &dst.qmp.display().to_string(),
        req,
        None,
        hooks,
    )
    .expect("migration ran");
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
