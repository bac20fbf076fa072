//! libvirt-postcopy: a reference implementation of libvirt's QEMU driver side of the post-copy
//! migration API (VIR_MIGRATE_POSTCOPY, virDomainMigrateStartPostCopy and the proposed
//! VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY), speaking QMP to real QEMU processes.
//!
//! Data flows one way: API call -> [`driver`] (decides) -> [`qmp`] (encodes) -> [`io`] (sends);
//! replies and events come back io -> qmp -> driver.

pub mod api;
pub mod bench;
pub mod driver;
pub mod engine;
pub mod ffi;
pub mod guest_report;
pub mod io;
pub mod libvirt_log;
pub mod qmp;
pub mod transcript;
