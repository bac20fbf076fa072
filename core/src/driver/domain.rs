//! The rules of a libvirt domain object around a migration job: the state a lifecycle event
//! leaves, whether a job may begin, and how API calls are answered when the domain has no
//! migration job or is the destination of one. Decided here once, for the driver, the engine and
//! the C library's domains alike (docs/driver-behaviour.md §6, §8, §9, §12).

use super::messages::ApiCall;
use super::stats::JobStats;
use super::vocab::*;

/// libvirt's state after a lifecycle event of a migration (docs/driver-behaviour.md §9: the
/// table of states and events, read from event to state). None for an event that leaves the
/// state as it was.
pub fn state_after(ev: i32, detail: i32) -> Option<DomainState> {
    let s = |st, reason| Some(DomainState::new(st, reason));
    match (ev, detail) {
        (event::STARTED, event::STARTED_MIGRATED) => s(state::PAUSED, state::PAUSED_MIGRATION),
        (event::SUSPENDED, event::SUSPENDED_MIGRATED) => s(state::PAUSED, state::PAUSED_MIGRATION),
        (event::SUSPENDED, event::SUSPENDED_POSTCOPY) => s(state::PAUSED, state::PAUSED_POSTCOPY),
        (event::SUSPENDED, event::SUSPENDED_POSTCOPY_FAILED) => {
            s(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
        }
        (event::RESUMED, event::RESUMED_POSTCOPY) => s(state::RUNNING, state::RUNNING_POSTCOPY),
        (event::RESUMED, event::RESUMED_POSTCOPY_FAILED) => {
            s(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
        }
        (event::RESUMED, event::RESUMED_MIGRATED) => s(state::RUNNING, state::RUNNING_MIGRATED),
        (event::RESUMED, _) => s(state::RUNNING, state::RUNNING_UNPAUSED),
        (event::STOPPED, event::STOPPED_MIGRATED) => s(state::SHUTOFF, state::SHUTOFF_MIGRATED),
        _ => None,
    }
}

/// Whether a migration job may begin on a domain: not while another job holds it (libvirt times
/// out on the state change lock), not on a domain that is not running.
pub fn check_begin_job(has_job: bool, domain_active: bool) -> Result<(), VirError> {
    if has_job {
        return Err(VirError::new(
            code::OPERATION_TIMEOUT,
            "cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePerform3Params)",
        ));
    }
    if !domain_active {
        return Err(VirError::new(
            code::OPERATION_INVALID,
            "domain is not running",
        ));
    }
    Ok(())
}

/// The statistics of "no job": virDomainGetJobStats with no job gives VIR_DOMAIN_JOB_NONE and
/// no parameters.
pub fn no_job_stats() -> JobStats {
    JobStats {
        job_type: job::NONE,
        params: Vec::new(),
    }
}

/// The answer to an API call on a domain with no migration job (or whose job ended): libvirt's
/// error for each call.
pub fn answer_without_job(call: &ApiCall, domain_active: bool) -> VirError {
    match *call {
        ApiCall::StartPostCopy { flags } => start_postcopy_without_job(flags, domain_active),
        ApiCall::AbortJob { flags } => abort_without_job(flags, domain_active),
        ApiCall::GetJobStats => no_active_job(),
    }
}

/// The answer to an API call on the destination of a running migration: its job belongs to
/// Prepare/Finish, which hold the domain, and its statistics live on the source.
pub fn answer_on_destination(call: &ApiCall) -> VirError {
    match *call {
        ApiCall::StartPostCopy { flags } if flags != 0 => start_postcopy_without_job(flags, true),
        ApiCall::StartPostCopy { .. } => VirError::new(
            code::OPERATION_TIMEOUT,
            "cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePrepare3Params)",
        ),
        ApiCall::AbortJob { flags } if flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 => {
            abort_without_job(flags, true)
        }
        ApiCall::AbortJob { .. } => VirError::new(
            code::OPERATION_INVALID,
            "cannot abort incoming migration; use virDomainDestroy instead",
        ),
        ApiCall::GetJobStats => stats_only_on_source(),
    }
}

/// virDomainGetJobStats on the destination (also with VIR_DOMAIN_JOB_STATS_COMPLETED).
pub fn stats_only_on_source() -> VirError {
    VirError::new(
        code::OPERATION_UNSUPPORTED,
        "migration statistics are available only on the source host",
    )
}

pub(super) fn no_active_job() -> VirError {
    VirError::new(code::OPERATION_INVALID, "no job is active on the domain")
}

/// virDomainMigrateStartPostCopy's checks when no outgoing migration job runs on the domain
/// (docs/driver-behaviour.md §6, rows 3, 7, 8).
pub(super) fn start_postcopy_without_job(flags: u32, domain_active: bool) -> VirError {
    if flags != 0 {
        return VirError::new(
            code::INVALID_ARG,
            format!("unsupported flags (0x{flags:x}) in function qemuDomainMigrateStartPostCopy"),
        );
    }
    if !domain_active {
        return VirError::new(code::OPERATION_INVALID, "domain is not running");
    }
    VirError::new(
        code::OPERATION_INVALID,
        "post-copy can only be started while outgoing migration is in progress",
    )
}

/// virDomainAbortJobFlags when no outgoing migration job runs on the domain.
pub(super) fn abort_without_job(flags: u32, domain_active: bool) -> VirError {
    if flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
        return VirError::new(
            code::INVALID_ARG,
            format!(
                "unsupported flags (0x{:x}) in function qemuDomainAbortJobFlags",
                flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY
            ),
        );
    }
    if !domain_active {
        return VirError::new(code::OPERATION_INVALID, "domain is not running");
    }
    if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
        return VirError::new(
            code::OPERATION_INVALID,
            "current job is not outgoing migration in post-copy mode",
        );
    }
    VirError::new(code::OPERATION_INVALID, "no job is active on the domain")
}
