//! libvirt-postcopy's tools, around the C library's public API (`postcopy_shim::api`): QEMU
//! start-up ([`qemu`]), the link between two hosts and its faults and measurements
//! ([`testbed`]), scenarios with faults at triggers ([`scenario`]), the benchmark ([`bench`](mod@bench)), the importer of libvirt daemons' debug logs
//! ([`libvirt_log`]), and the `postcopy` command (src/bin/postcopy).

pub mod bench;
pub mod guest_report;
pub mod libvirt_log;
pub mod qemu;
pub mod scenario;
pub mod testbed;

/// An error's message, then each of its causes' (`source()`), outermost first.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect()
}
