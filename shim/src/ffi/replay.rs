//! `lpc_replay`: a recorded transcript standing in for two QEMUs.

use std::ffi::{c_char, c_int, c_uint};
use std::path::Path;

use virt_sys::virTypedParameterPtr;

use super::bindings::{lpc_domain, lpc_replay};
use super::domain::into_handle;
use super::params::{alloc_params, Value};
use super::{check_flags, entry, null_arg, require, string};
use crate::api::Replay;
use crate::driver::policy::{SwitchPolicy, PARAM_SWITCH_POLICY, PARAM_SWITCH_POLICY_RTT};
use crate::driver::vocab::param;
use crate::driver::VirError;

/// # Safety
/// `p` is NULL or a live handle from `lpc_replay_open`.
unsafe fn replay<'a>(p: *mut lpc_replay, function: &str) -> Result<&'a Replay, VirError> {
    if p.is_null() {
        return Err(null_arg("replay", function));
    }
    // SAFETY: a non-NULL handle is a `Box::into_raw` the caller has not released (contract).
    Ok(unsafe { &*(p as *const Replay) })
}

/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_open(path: *const c_char, flags: c_uint) -> *mut lpc_replay {
    entry!("lpc_replay_open", std::ptr::null_mut(), {
        // SAFETY: forwarded contract of this function.
        let path = unsafe { string(path, "path", F) }?;
        check_flags(flags, F)?;
        let r = Replay::open(Path::new(path))?;
        Ok(Box::into_raw(Box::new(r)) as *mut lpc_replay)
    })
}

/// # Safety
/// `replay` is NULL or a live handle, released here.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_free(replay: *mut lpc_replay) {
    entry!("lpc_replay_free", (), {
        if !replay.is_null() {
            // SAFETY: the caller gives back the handle it got from lpc_replay_open (contract).
            drop(unsafe { Box::from_raw(replay as *mut Replay) });
        }
        Ok(())
    })
}

/// # Safety
/// `r` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_get_source(r: *mut lpc_replay) -> *mut lpc_domain {
    entry!("lpc_replay_get_source", std::ptr::null_mut(), {
        // SAFETY: forwarded contract of this function.
        let r = unsafe { replay(r, F) }?;
        Ok(into_handle(r.source()))
    })
}

/// # Safety
/// `r` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_get_destination(r: *mut lpc_replay) -> *mut lpc_domain {
    entry!("lpc_replay_get_destination", std::ptr::null_mut(), {
        // SAFETY: forwarded contract of this function.
        let r = unsafe { replay(r, F) }?;
        Ok(into_handle(r.destination()))
    })
}

/// # Safety
/// `r` is NULL or a live handle; the outputs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_get_migrate_params(
    r: *mut lpc_replay,
    params: *mut virTypedParameterPtr,
    nparams: *mut c_int,
    flags: *mut c_uint,
) -> c_int {
    entry!("lpc_replay_get_migrate_params", -1, {
        // SAFETY: forwarded contract of this function.
        let r = unsafe { replay(r, F) }?;
        require!(F; params, nparams, flags);
        let Some(req) = r.next_request() else {
            return Ok(0);
        };
        let mut values = vec![(param::migrate_uri(), Value::Str(&req.uri))];
        if let Some(b) = req.bandwidth_mib {
            values.push((param::migrate_bandwidth(), Value::ULLong(b)));
        }
        if let Some(b) = req.postcopy_bandwidth_mib {
            values.push((param::migrate_bandwidth_postcopy(), Value::ULLong(b)));
        }
        if let Some(p) = req.switch_policy {
            values.push((PARAM_SWITCH_POLICY, Value::Str(p.name())));
            if let SwitchPolicy::Adaptive { rtt_us } = p {
                values.push((PARAM_SWITCH_POLICY_RTT, Value::ULLong(rtt_us)));
            }
        }
        let (p, n) = alloc_params(&values)?;
        // SAFETY: checked non-NULL above; the caller passes writable outputs (contract).
        unsafe {
            *params = p;
            *nparams = n;
            *flags = req.flags;
        }
        Ok(1)
    })
}
