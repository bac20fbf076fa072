//! libvirt's vocabulary, with libvirt's values (kept in `libvirt_values`, checked against libvirt's
//! header by the C library's tests): flags, error numbers,
//! domain states and reasons, event types and details, job types, typed-parameter names.
//! The one value libvirt's header lacks is the flag this project proposes.

use std::fmt;

use crate::driver::libvirt_values as sys;
use thiserror::Error;

/// `VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY`: switch to post-copy once the first pre-copy pass is done.
/// Proposed by this project (patches/); libvirt 11.3's header ends at `VIR_MIGRATE_ZEROCOPY`.
pub const VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: u32 = 1 << 21;

pub const VIR_MIGRATE_LIVE: u32 = sys::VIR_MIGRATE_LIVE;
pub const VIR_MIGRATE_PEER2PEER: u32 = sys::VIR_MIGRATE_PEER2PEER;
pub const VIR_MIGRATE_TUNNELLED: u32 = sys::VIR_MIGRATE_TUNNELLED;
pub const VIR_MIGRATE_PERSIST_DEST: u32 = sys::VIR_MIGRATE_PERSIST_DEST;
pub const VIR_MIGRATE_UNDEFINE_SOURCE: u32 = sys::VIR_MIGRATE_UNDEFINE_SOURCE;
pub const VIR_MIGRATE_PAUSED: u32 = sys::VIR_MIGRATE_PAUSED;
pub const VIR_MIGRATE_NON_SHARED_DISK: u32 = sys::VIR_MIGRATE_NON_SHARED_DISK;
pub const VIR_MIGRATE_NON_SHARED_INC: u32 = sys::VIR_MIGRATE_NON_SHARED_INC;
pub const VIR_MIGRATE_CHANGE_PROTECTION: u32 = sys::VIR_MIGRATE_CHANGE_PROTECTION;
pub const VIR_MIGRATE_UNSAFE: u32 = sys::VIR_MIGRATE_UNSAFE;
pub const VIR_MIGRATE_OFFLINE: u32 = sys::VIR_MIGRATE_OFFLINE;
pub const VIR_MIGRATE_COMPRESSED: u32 = sys::VIR_MIGRATE_COMPRESSED;
pub const VIR_MIGRATE_ABORT_ON_ERROR: u32 = sys::VIR_MIGRATE_ABORT_ON_ERROR;
pub const VIR_MIGRATE_AUTO_CONVERGE: u32 = sys::VIR_MIGRATE_AUTO_CONVERGE;
pub const VIR_MIGRATE_RDMA_PIN_ALL: u32 = sys::VIR_MIGRATE_RDMA_PIN_ALL;
pub const VIR_MIGRATE_POSTCOPY: u32 = sys::VIR_MIGRATE_POSTCOPY;
pub const VIR_MIGRATE_TLS: u32 = sys::VIR_MIGRATE_TLS;
pub const VIR_MIGRATE_PARALLEL: u32 = sys::VIR_MIGRATE_PARALLEL;
pub const VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES: u32 =
    sys::VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES;
pub const VIR_MIGRATE_POSTCOPY_RESUME: u32 = sys::VIR_MIGRATE_POSTCOPY_RESUME;
pub const VIR_MIGRATE_ZEROCOPY: u32 = sys::VIR_MIGRATE_ZEROCOPY;

pub const VIR_DOMAIN_ABORT_JOB_POSTCOPY: u32 = sys::VIR_DOMAIN_ABORT_JOB_POSTCOPY;

/// libvirt's `QEMU_MIGRATION_FLAGS` (src/qemu/qemu_migration.h, 11.3) plus our flag: any other bit
/// is refused with "unsupported flags".
pub const QEMU_MIGRATION_FLAGS: u32 = VIR_MIGRATE_LIVE
    | VIR_MIGRATE_PEER2PEER
    | VIR_MIGRATE_TUNNELLED
    | VIR_MIGRATE_PERSIST_DEST
    | VIR_MIGRATE_UNDEFINE_SOURCE
    | VIR_MIGRATE_PAUSED
    | VIR_MIGRATE_NON_SHARED_DISK
    | VIR_MIGRATE_NON_SHARED_INC
    | VIR_MIGRATE_CHANGE_PROTECTION
    | VIR_MIGRATE_UNSAFE
    | VIR_MIGRATE_OFFLINE
    | VIR_MIGRATE_COMPRESSED
    | VIR_MIGRATE_ABORT_ON_ERROR
    | VIR_MIGRATE_AUTO_CONVERGE
    | VIR_MIGRATE_RDMA_PIN_ALL
    | VIR_MIGRATE_POSTCOPY
    | VIR_MIGRATE_TLS
    | VIR_MIGRATE_PARALLEL
    | VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES
    | VIR_MIGRATE_POSTCOPY_RESUME
    | VIR_MIGRATE_ZEROCOPY
    | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;

/// Flags libvirt accepts but the shim does not implement (docs/driver-behaviour.md §14): refused with
/// VIR_ERR_ARGUMENT_UNSUPPORTED, never ignored.
pub const OUT_OF_SCOPE_FLAGS: &[(u32, &str)] = &[
    (VIR_MIGRATE_TUNNELLED, "VIR_MIGRATE_TUNNELLED"),
    (VIR_MIGRATE_PERSIST_DEST, "VIR_MIGRATE_PERSIST_DEST"),
    (VIR_MIGRATE_UNDEFINE_SOURCE, "VIR_MIGRATE_UNDEFINE_SOURCE"),
    (VIR_MIGRATE_NON_SHARED_DISK, "VIR_MIGRATE_NON_SHARED_DISK"),
    (VIR_MIGRATE_NON_SHARED_INC, "VIR_MIGRATE_NON_SHARED_INC"),
    (
        VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES,
        "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    ),
    (VIR_MIGRATE_OFFLINE, "VIR_MIGRATE_OFFLINE"),
    (VIR_MIGRATE_TLS, "VIR_MIGRATE_TLS"),
    (VIR_MIGRATE_COMPRESSED, "VIR_MIGRATE_COMPRESSED"),
    (VIR_MIGRATE_RDMA_PIN_ALL, "VIR_MIGRATE_RDMA_PIN_ALL"),
    (VIR_MIGRATE_PARALLEL, "VIR_MIGRATE_PARALLEL"),
    (VIR_MIGRATE_ZEROCOPY, "VIR_MIGRATE_ZEROCOPY"),
];

/// The names of flag bits, for messages and snapshots.
pub fn flag_names(flags: u32) -> Vec<&'static str> {
    const NAMES: &[(u32, &str)] = &[
        (VIR_MIGRATE_LIVE, "LIVE"),
        (VIR_MIGRATE_PEER2PEER, "PEER2PEER"),
        (VIR_MIGRATE_PAUSED, "PAUSED"),
        (VIR_MIGRATE_CHANGE_PROTECTION, "CHANGE_PROTECTION"),
        (VIR_MIGRATE_UNSAFE, "UNSAFE"),
        (VIR_MIGRATE_ABORT_ON_ERROR, "ABORT_ON_ERROR"),
        (VIR_MIGRATE_AUTO_CONVERGE, "AUTO_CONVERGE"),
        (VIR_MIGRATE_POSTCOPY, "POSTCOPY"),
        (VIR_MIGRATE_POSTCOPY_RESUME, "POSTCOPY_RESUME"),
        (VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, "POSTCOPY_AFTER_PRECOPY"),
    ];
    let mut out: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    out.extend(
        OUT_OF_SCOPE_FLAGS
            .iter()
            .filter(|(b, _)| flags & b != 0)
            .map(|(_, n)| n.trim_start_matches("VIR_MIGRATE_")),
    );
    out
}

/// virErrorNumber values we report, from libvirt's header.
pub mod code {
    use crate::driver::libvirt_values as sys;
    pub const INTERNAL_ERROR: i32 = sys::VIR_ERR_INTERNAL_ERROR as i32;
    pub const INVALID_ARG: i32 = sys::VIR_ERR_INVALID_ARG as i32;
    pub const OPERATION_INVALID: i32 = sys::VIR_ERR_OPERATION_INVALID as i32;
    pub const OPERATION_FAILED: i32 = sys::VIR_ERR_OPERATION_FAILED as i32;
    pub const OPERATION_ABORTED: i32 = sys::VIR_ERR_OPERATION_ABORTED as i32;
    pub const OPERATION_TIMEOUT: i32 = sys::VIR_ERR_OPERATION_TIMEOUT as i32;
    pub const OPERATION_UNSUPPORTED: i32 = sys::VIR_ERR_OPERATION_UNSUPPORTED as i32;
    pub const ARGUMENT_UNSUPPORTED: i32 = sys::VIR_ERR_ARGUMENT_UNSUPPORTED as i32;
    pub const NO_DOMAIN: i32 = sys::VIR_ERR_NO_DOMAIN as i32;
    pub const SYSTEM_ERROR: i32 = sys::VIR_ERR_SYSTEM_ERROR as i32;
    pub const FROM_QEMU: i32 = sys::VIR_FROM_QEMU as i32;
}

/// An error as libvirt reports it: a virErrorNumber, the VIR_FROM_QEMU domain, and the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.message())]
pub struct VirError {
    pub code: i32,
    /// The text after libvirt's per-code prefix (what the driver passed to virReportError).
    pub detail: String,
}

impl VirError {
    pub fn new(code: i32, detail: impl Into<String>) -> Self {
        VirError {
            code,
            detail: detail.into(),
        }
    }

    pub fn domain(&self) -> i32 {
        code::FROM_QEMU
    }

    /// The full message, as libvirt's virErrorMsg formats it ("Requested operation is not valid: ...").
    pub fn message(&self) -> String {
        format!("{}: {}", error_prefix(self.code), self.detail)
    }

    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }
}

/// libvirt's per-code message prefix (src/util/virerror.c, virErrorMsg).
pub fn error_prefix(code: i32) -> &'static str {
    match code {
        code::INTERNAL_ERROR => "internal error",
        code::INVALID_ARG => "invalid argument",
        code::OPERATION_INVALID => "Requested operation is not valid",
        code::OPERATION_FAILED => "operation failed",
        code::OPERATION_ABORTED => "operation aborted",
        code::OPERATION_TIMEOUT => "Timed out during operation",
        code::OPERATION_UNSUPPORTED => "Operation not supported",
        code::ARGUMENT_UNSUPPORTED => "argument unsupported",
        code::NO_DOMAIN => "Domain not found",
        code::SYSTEM_ERROR => "system error",
        _ => "error",
    }
}

pub fn code_name(code: i32) -> &'static str {
    match code {
        code::INTERNAL_ERROR => "VIR_ERR_INTERNAL_ERROR",
        code::INVALID_ARG => "VIR_ERR_INVALID_ARG",
        code::OPERATION_INVALID => "VIR_ERR_OPERATION_INVALID",
        code::OPERATION_FAILED => "VIR_ERR_OPERATION_FAILED",
        code::OPERATION_ABORTED => "VIR_ERR_OPERATION_ABORTED",
        code::OPERATION_TIMEOUT => "VIR_ERR_OPERATION_TIMEOUT",
        code::OPERATION_UNSUPPORTED => "VIR_ERR_OPERATION_UNSUPPORTED",
        code::ARGUMENT_UNSUPPORTED => "VIR_ERR_ARGUMENT_UNSUPPORTED",
        code::NO_DOMAIN => "VIR_ERR_NO_DOMAIN",
        code::SYSTEM_ERROR => "VIR_ERR_SYSTEM_ERROR",
        _ => "VIR_ERR_?",
    }
}

/// virDomainState and its reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainState {
    pub state: i32,
    pub reason: i32,
}

pub mod state {
    use crate::driver::libvirt_values as sys;
    pub const RUNNING: i32 = sys::VIR_DOMAIN_RUNNING as i32;
    pub const PAUSED: i32 = sys::VIR_DOMAIN_PAUSED as i32;
    pub const SHUTOFF: i32 = sys::VIR_DOMAIN_SHUTOFF as i32;

    pub const RUNNING_UNPAUSED: i32 = sys::VIR_DOMAIN_RUNNING_UNPAUSED as i32;
    pub const RUNNING_MIGRATED: i32 = sys::VIR_DOMAIN_RUNNING_MIGRATED as i32;
    pub const RUNNING_MIGRATION_CANCELED: i32 = sys::VIR_DOMAIN_RUNNING_MIGRATION_CANCELED as i32;
    pub const RUNNING_POSTCOPY: i32 = sys::VIR_DOMAIN_RUNNING_POSTCOPY as i32;
    pub const RUNNING_POSTCOPY_FAILED: i32 = sys::VIR_DOMAIN_RUNNING_POSTCOPY_FAILED as i32;
    pub const PAUSED_UNKNOWN: i32 = sys::VIR_DOMAIN_PAUSED_UNKNOWN as i32;
    pub const PAUSED_USER: i32 = sys::VIR_DOMAIN_PAUSED_USER as i32;
    pub const PAUSED_MIGRATION: i32 = sys::VIR_DOMAIN_PAUSED_MIGRATION as i32;
    pub const PAUSED_POSTCOPY: i32 = sys::VIR_DOMAIN_PAUSED_POSTCOPY as i32;
    pub const PAUSED_POSTCOPY_FAILED: i32 = sys::VIR_DOMAIN_PAUSED_POSTCOPY_FAILED as i32;
    pub const SHUTOFF_MIGRATED: i32 = sys::VIR_DOMAIN_SHUTOFF_MIGRATED as i32;
    pub const SHUTOFF_FAILED: i32 = sys::VIR_DOMAIN_SHUTOFF_FAILED as i32;
    pub const SHUTOFF_CRASHED: i32 = sys::VIR_DOMAIN_SHUTOFF_CRASHED as i32;
}

impl DomainState {
    pub const fn new(state: i32, reason: i32) -> Self {
        DomainState { state, reason }
    }
}

impl fmt::Display for DomainState {
    /// As `virsh domstate --reason` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use state::*;
        let s = match self.state {
            RUNNING => "running",
            PAUSED => "paused",
            SHUTOFF => "shut off",
            _ => "other",
        };
        let r = match (self.state, self.reason) {
            (RUNNING, RUNNING_UNPAUSED) => "unpaused",
            (RUNNING, RUNNING_MIGRATED) => "migrated",
            (RUNNING, RUNNING_MIGRATION_CANCELED) => "migration canceled",
            (RUNNING, RUNNING_POSTCOPY) => "post-copy",
            (RUNNING, RUNNING_POSTCOPY_FAILED) => "post-copy failed",
            (PAUSED, PAUSED_USER) => "user",
            (PAUSED, PAUSED_MIGRATION) => "migrating",
            (PAUSED, PAUSED_POSTCOPY) => "post-copy",
            (PAUSED, PAUSED_POSTCOPY_FAILED) => "post-copy failed",
            (SHUTOFF, SHUTOFF_MIGRATED) => "migrated",
            (SHUTOFF, SHUTOFF_FAILED) => "failed",
            (SHUTOFF, SHUTOFF_CRASHED) => "crashed",
            _ => "unknown",
        };
        write!(f, "{s} ({r})")
    }
}

/// Lifecycle event types and details (virDomainEventType, virDomainEvent*DetailType).
pub mod event {
    use crate::driver::libvirt_values as sys;
    pub const STARTED: i32 = sys::VIR_DOMAIN_EVENT_STARTED as i32;
    pub const SUSPENDED: i32 = sys::VIR_DOMAIN_EVENT_SUSPENDED as i32;
    pub const RESUMED: i32 = sys::VIR_DOMAIN_EVENT_RESUMED as i32;
    pub const STOPPED: i32 = sys::VIR_DOMAIN_EVENT_STOPPED as i32;

    pub const STARTED_MIGRATED: i32 = sys::VIR_DOMAIN_EVENT_STARTED_MIGRATED as i32;
    pub const SUSPENDED_MIGRATED: i32 = sys::VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED as i32;
    pub const SUSPENDED_POSTCOPY: i32 = sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY as i32;
    pub const SUSPENDED_POSTCOPY_FAILED: i32 =
        sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED as i32;
    pub const RESUMED_UNPAUSED: i32 = sys::VIR_DOMAIN_EVENT_RESUMED_UNPAUSED as i32;
    pub const RESUMED_MIGRATED: i32 = sys::VIR_DOMAIN_EVENT_RESUMED_MIGRATED as i32;
    pub const RESUMED_POSTCOPY: i32 = sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY as i32;
    pub const RESUMED_POSTCOPY_FAILED: i32 = sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED as i32;
    pub const STOPPED_MIGRATED: i32 = sys::VIR_DOMAIN_EVENT_STOPPED_MIGRATED as i32;
    pub const STOPPED_FAILED: i32 = sys::VIR_DOMAIN_EVENT_STOPPED_FAILED as i32;
    pub const STOPPED_CRASHED: i32 = sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED as i32;

    /// VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, VIR_DOMAIN_EVENT_ID_JOB_COMPLETED.
    pub const ID_LIFECYCLE: i32 = sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as i32;
    pub const ID_MIGRATION_ITERATION: i32 = sys::VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION as i32;
    pub const ID_JOB_COMPLETED: i32 = sys::VIR_DOMAIN_EVENT_ID_JOB_COMPLETED as i32;

    pub fn name(event: i32, detail: i32) -> &'static str {
        match (event, detail) {
            (STARTED, STARTED_MIGRATED) => "STARTED_MIGRATED",
            (SUSPENDED, SUSPENDED_MIGRATED) => "SUSPENDED_MIGRATED",
            (SUSPENDED, SUSPENDED_POSTCOPY) => "SUSPENDED_POSTCOPY",
            (SUSPENDED, SUSPENDED_POSTCOPY_FAILED) => "SUSPENDED_POSTCOPY_FAILED",
            (RESUMED, RESUMED_UNPAUSED) => "RESUMED_UNPAUSED",
            (RESUMED, RESUMED_MIGRATED) => "RESUMED_MIGRATED",
            (RESUMED, RESUMED_POSTCOPY) => "RESUMED_POSTCOPY",
            (RESUMED, RESUMED_POSTCOPY_FAILED) => "RESUMED_POSTCOPY_FAILED",
            (STOPPED, STOPPED_MIGRATED) => "STOPPED_MIGRATED",
            (STOPPED, STOPPED_FAILED) => "STOPPED_FAILED",
            (STOPPED, STOPPED_CRASHED) => "STOPPED_CRASHED",
            _ => "OTHER",
        }
    }
}

/// virDomainJobType.
pub mod job {
    use crate::driver::libvirt_values as sys;
    pub const NONE: i32 = sys::VIR_DOMAIN_JOB_NONE as i32;
    pub const UNBOUNDED: i32 = sys::VIR_DOMAIN_JOB_UNBOUNDED as i32;
    pub const COMPLETED: i32 = sys::VIR_DOMAIN_JOB_COMPLETED as i32;
    pub const FAILED: i32 = sys::VIR_DOMAIN_JOB_FAILED as i32;
    pub const CANCELLED: i32 = sys::VIR_DOMAIN_JOB_CANCELLED as i32;
}

/// Typed-parameter names of job statistics (virDomainGetJobStats), from libvirt's header.
pub mod param {
    use crate::driver::libvirt_values as sys;
    fn s(c: &'static str) -> &'static str {
        c
    }
    pub fn time_elapsed() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_TIME_ELAPSED)
    }
    pub fn data_total() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_DATA_TOTAL)
    }
    pub fn data_processed() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_DATA_PROCESSED)
    }
    pub fn data_remaining() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_DATA_REMAINING)
    }
    pub fn memory_total() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_TOTAL)
    }
    pub fn memory_processed() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_PROCESSED)
    }
    pub fn memory_remaining() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_REMAINING)
    }
    pub fn memory_constant() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_CONSTANT)
    }
    pub fn memory_normal() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_NORMAL)
    }
    pub fn memory_normal_bytes() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES)
    }
    pub fn memory_bps() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_BPS)
    }
    pub fn memory_dirty_rate() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE)
    }
    pub fn memory_page_size() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE)
    }
    pub fn memory_iteration() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_ITERATION)
    }
    pub fn memory_postcopy_requests() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS)
    }
    pub fn downtime() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_DOWNTIME)
    }
    pub fn setup_time() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_SETUP_TIME)
    }
    pub fn operation() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_OPERATION)
    }
    pub fn success() -> &'static str {
        s(sys::VIR_DOMAIN_JOB_SUCCESS)
    }
    /// Migration parameter names (virDomainMigrate3 typed parameters).
    pub fn migrate_bandwidth() -> &'static str {
        s(sys::VIR_MIGRATE_PARAM_BANDWIDTH)
    }
    pub fn migrate_bandwidth_postcopy() -> &'static str {
        s(sys::VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY)
    }
    pub fn migrate_uri() -> &'static str {
        s(sys::VIR_MIGRATE_PARAM_URI)
    }
    pub const OPERATION_MIGRATION_OUT: i32 = sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i32;
}
