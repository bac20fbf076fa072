//! The live tests' QEMUs. Only the tools' tests include this file (`#[path = "common/qemu.rs"]
//! mod qemu;` beside `mod common;`): the core's tests share tests/common/mod.rs and do not
//! depend on the tools crate.

#![allow(dead_code)] // each test file uses what it needs

use std::path::Path;

use postcopy_tools::qemu::{QemuConfig, QemuPair};

use crate::common::live::guest_kernel;

/// The system's qemu-system-x86_64 running our guest with this command line in `memory_mib`.
pub fn config(guest: &str, memory_mib: u64) -> QemuConfig {
    let kernel = guest_kernel();
    QemuConfig::guest(
        Path::new("qemu-system-x86_64"),
        None,
        &kernel,
        guest,
        memory_mib,
    )
}

/// The live tests' guest on a source and a destination QEMU in `dir`, each in its host of a
/// testbed whose link runs at `rate_mib_s` (tbf): the testbed (keep it as long as the QEMUs:
/// they end with it), the pair, and the migration URI (the destination host's address).
pub fn start_pair_on_testbed(
    cfg: &postcopy_tools::qemu::QemuConfig,
    dir: &Path,
    rate_mib_s: f64,
) -> (postcopy_tools::testbed::Testbed, QemuPair, String) {
    use postcopy_tools::testbed::{LinkConfig, Testbed};
    let tb = Testbed::new(LinkConfig::new(rate_mib_s)).unwrap_or_else(|e| {
        panic!(
            "cannot build the testbed: {}",
            postcopy_tools::error_chain(&e).join(": ")
        )
    });
    let pair = QemuPair::start_in_hosts(cfg, &tb.probe(), dir).unwrap_or_else(|e| {
        let causes = postcopy_tools::error_chain(&e).join(": ");
        panic!("cannot start the QEMUs (ci/install-deps qemu): {causes}")
    });
    let uri = tb.migration_uri(postcopy_tools::scenario::TESTBED_PORT);
    (tb, pair, uri)
}

/// A fault scenario's plan with the live tests' guest on the testbed's link (tbf, 32 MiB/s: the
/// limit, not QEMU's cap) and a slow post-copy background transfer (8 MiB/s), so that a fault
/// lands while pages are still missing. `prefix` names the test file in the work directory.
pub fn fault_plan(
    prefix: &str,
    name: &str,
    flags: u32,
    faults: Vec<postcopy_tools::scenario::Fault>,
    recovery: postcopy_tools::scenario::Recovery,
) -> postcopy_tools::scenario::Plan {
    use crate::common::live::{GUEST, GUEST_MEMORY_MIB};
    postcopy_tools::scenario::Plan {
        qemu: "qemu-system-x86_64".into(),
        qemu_root: None,
        kernel: guest_kernel(),
        memory_mib: GUEST_MEMORY_MIB,
        guest: GUEST.into(),
        workdir: std::env::temp_dir()
            .join(format!("postcopy-{prefix}-{}-{name}", std::process::id())),
        flags,
        bandwidth_mib: None,
        postcopy_bandwidth_mib: Some(8),
        switch_policy: None,
        link: Some(postcopy_tools::scenario::Link::default()),
        faults,
        recovery,
        record: None,
        api_before: false,
        api_after: false,
        verify_timeout: std::time::Duration::from_secs(40),
        deadline: None,
        on_event: None,
    }
}

/// Faults that switch early (StartPostCopy 0.5 s after the start, most of the guest's memory
/// still to come in post-copy at 8 MiB/s) and then make `call` once the destination runs: the
/// call meets a job still in post-copy for seconds. (After the first full pass, what is left
/// depends on how fast a starved TCG guest dirties memory: on a loaded machine post-copy
/// completed before such a call arrived.)
pub fn early_switch_then(
    call: postcopy_core::driver::ApiCall,
) -> Vec<postcopy_tools::scenario::Fault> {
    use postcopy_core::driver::ApiCall;
    use postcopy_tools::scenario::{Fault, Trigger};
    vec![
        Fault::Call {
            call: ApiCall::StartPostCopy { flags: 0 },
            at: Trigger::AfterMs(500),
        },
        Fault::Call {
            call,
            at: Trigger::DestinationRunning,
        },
    ]
}
