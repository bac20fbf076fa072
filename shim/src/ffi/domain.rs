//! `lpc_domain`: a domain handle, and the migration calls on it (virDomainMigrate3,
//! virDomainMigrateStartPostCopy, virDomainAbortJobFlags, virDomainGetJobStats,
//! virDomainGetState).

use std::ffi::{c_char, c_int, c_uint};
use std::mem::ManuallyDrop;
use std::sync::Arc;

use virt_sys::virTypedParameterPtr;

use super::bindings::lpc_domain;
use super::params::{migrate_request, stats_params};
use super::{check_flags, entry, invalid, null_arg, require, string};
use crate::api::{self, Domain};
use crate::driver::VirError;

/// # Safety
/// `p` is NULL or a live handle from `lpc_domain_open_qmp` / `lpc_replay_get_*`.
pub(super) unsafe fn domain<'a>(
    p: *mut lpc_domain,
    arg: &str,
    function: &str,
) -> Result<&'a Domain, VirError> {
    if p.is_null() {
        return Err(null_arg(arg, function));
    }
    // SAFETY: a non-NULL handle is an `Arc::into_raw` the caller has not released (contract).
    Ok(unsafe { &*(p as *const Domain) })
}

/// A new reference to a handle's domain, leaving the caller's reference alone.
///
/// # Safety
/// As [`domain`].
unsafe fn domain_arc(
    p: *mut lpc_domain,
    arg: &str,
    function: &str,
) -> Result<Arc<Domain>, VirError> {
    // SAFETY: forwarded contract.
    unsafe { domain(p, arg, function) }?;
    // SAFETY: `p` came from `Arc::into_raw` and is still owned by the caller; ManuallyDrop keeps
    // that reference, the clone is ours.
    let held = ManuallyDrop::new(unsafe { Arc::from_raw(p as *const Domain) });
    Ok(Arc::clone(&held))
}

pub(super) fn into_handle(d: Arc<Domain>) -> *mut lpc_domain {
    Arc::into_raw(d) as *mut lpc_domain
}

/// # Safety
/// `qmp` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_open_qmp(qmp: *const c_char, flags: c_uint) -> *mut lpc_domain {
    entry!("lpc_domain_open_qmp", std::ptr::null_mut(), {
        // SAFETY: forwarded contract of this function.
        let addr = unsafe { string(qmp, "qmp", F) }?;
        check_flags(flags, F)?;
        if addr.is_empty() {
            return Err(invalid(format!("qmp in {F} must not be empty")));
        }
        Ok(into_handle(Domain::open_qmp(addr)))
    })
}

/// # Safety
/// `dom` is NULL or a live handle, released here.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_free(dom: *mut lpc_domain) {
    entry!("lpc_domain_free", (), {
        if !dom.is_null() {
            // SAFETY: the caller gives back one reference it got from this library (contract).
            drop(unsafe { Arc::from_raw(dom as *const Domain) });
        }
        Ok(())
    })
}

/// The two domains and the request of a migrate call.
///
/// # Safety
/// As [`lpc_domain_migrate`].
unsafe fn migrate_args(
    src: *mut lpc_domain,
    dst: *mut lpc_domain,
    params: virTypedParameterPtr,
    nparams: c_int,
    flags: c_uint,
    function: &str,
) -> Result<(Arc<Domain>, Arc<Domain>, crate::driver::MigrateRequest), VirError> {
    // SAFETY: forwarded contract (handles NULL or live).
    let s = unsafe { domain_arc(src, "src", function) }?;
    // SAFETY: forwarded contract (handles NULL or live).
    let d = unsafe { domain_arc(dst, "dst", function) }?;
    // SAFETY: forwarded contract (`params` points to `nparams` parameters).
    let req = unsafe { migrate_request(params, nparams, flags, function) }?;
    Ok((s, d, req))
}

/// # Safety
/// Handles NULL or live; `params` points to `nparams` parameters.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_migrate(
    src: *mut lpc_domain,
    dst: *mut lpc_domain,
    params: virTypedParameterPtr,
    nparams: c_int,
    flags: c_uint,
) -> c_int {
    entry!("lpc_domain_migrate", -1, {
        // SAFETY: forwarded contract of this function.
        let (s, d, req) = unsafe { migrate_args(src, dst, params, nparams, flags, F) }?;
        api::migrate(&s, &d, req).map(|_| 0)
    })
}

/// # Safety
/// As [`lpc_domain_migrate`].
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_migrate_auto_recover(
    src: *mut lpc_domain,
    dst: *mut lpc_domain,
    params: virTypedParameterPtr,
    nparams: c_int,
    flags: c_uint,
    deadline_ms: c_uint,
) -> c_int {
    entry!("lpc_domain_migrate_auto_recover", -1, {
        if deadline_ms == 0 {
            return Err(invalid(format!(
                "deadline_ms in {F} must be greater than zero"
            )));
        }
        // SAFETY: forwarded contract of this function.
        let (s, d, req) = unsafe { migrate_args(src, dst, params, nparams, flags, F) }?;
        let policy = crate::driver::RecoveryPolicy {
            deadline: std::time::Duration::from_millis(u64::from(deadline_ms)),
            ..Default::default()
        };
        api::migrate_with_recovery(&s, &d, req, &policy, |_, _| {}).map(|_| 0)
    })
}

/// # Safety
/// `dom` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_migrate_start_post_copy(
    dom: *mut lpc_domain,
    flags: c_uint,
) -> c_int {
    entry!("lpc_domain_migrate_start_post_copy", -1, {
        // SAFETY: forwarded contract of this function.
        unsafe { domain(dom, "dom", F) }?.start_postcopy(flags)?;
        Ok(0)
    })
}

/// # Safety
/// `dom` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_abort_job_flags(dom: *mut lpc_domain, flags: c_uint) -> c_int {
    entry!("lpc_domain_abort_job_flags", -1, {
        // SAFETY: forwarded contract of this function.
        unsafe { domain(dom, "dom", F) }?.abort_job(flags)?;
        Ok(0)
    })
}

/// # Safety
/// `dom` is NULL or a live handle; the outputs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_get_job_stats(
    dom: *mut lpc_domain,
    type_: *mut c_int,
    params: *mut virTypedParameterPtr,
    nparams: *mut c_int,
    flags: c_uint,
) -> c_int {
    entry!("lpc_domain_get_job_stats", -1, {
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain(dom, "dom", F) }?;
        require!(F; type_, params, nparams);
        let stats = d.job_stats(flags)?;
        let (p, n) = stats_params(&stats)?;
        // SAFETY: checked non-NULL above; the caller passes writable outputs (contract).
        unsafe {
            *type_ = stats.job_type;
            *params = p;
            *nparams = n;
        }
        Ok(0)
    })
}

/// # Safety
/// `dom` is NULL or a live handle; `state` NULL or writable; `reason` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_get_state(
    dom: *mut lpc_domain,
    state: *mut c_int,
    reason: *mut c_int,
    flags: c_uint,
) -> c_int {
    entry!("lpc_domain_get_state", -1, {
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain(dom, "dom", F) }?;
        require!(F; state);
        let st = d.state(flags)?;
        // SAFETY: checked non-NULL; writable by contract. `reason` is optional.
        unsafe {
            *state = st.state;
            if !reason.is_null() {
                *reason = st.reason;
            }
        }
        Ok(0)
    })
}
