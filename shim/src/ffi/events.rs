//! Event callbacks (virConnectDomainEventRegisterAny's, per domain): a C callback with its
//! opaque pointer and free callback, run on the library's event thread.

use std::ffi::{c_int, c_void};

use virt_sys::virFreeCallback;

use super::bindings::{
    lpc_domain, lpc_event_generic_cb, lpc_event_job_completed_cb, lpc_event_lifecycle_cb,
    lpc_event_migration_iteration_cb,
};
use super::domain::domain;
use super::params::{free_params, stats_params};
use super::{entry, null_arg};
use crate::api::{self, Domain};
use crate::driver::{DomainEvent, JobStats};

/// A C callback with its opaque pointer; releasing it calls the caller's free callback.
struct CCallback {
    cb: unsafe extern "C" fn(),
    opaque: *mut c_void,
    freecb: virFreeCallback,
}

// SAFETY: the header's contract: callbacks and their opaque data are used on a library thread,
// as with libvirt's event loop; the caller makes `opaque` fit for that.
unsafe impl Send for CCallback {}

impl Drop for CCallback {
    fn drop(&mut self) {
        if let Some(f) = self.freecb {
            // SAFETY: the caller's free callback, given with this opaque pointer.
            unsafe { f(self.opaque) }
        }
    }
}

impl CCallback {
    fn call(&self, dom: &Domain, ev: &DomainEvent, stats: Option<&JobStats>) {
        let d = dom as *const Domain as *mut lpc_domain;
        match ev {
            DomainEvent::Lifecycle { event, detail } => {
                // SAFETY: registered for VIR_DOMAIN_EVENT_ID_LIFECYCLE, so the caller cast a
                // lpc_event_lifecycle_cb to the generic type (header contract); cast it back.
                let f: lpc_event_lifecycle_cb = unsafe { std::mem::transmute(self.cb) };
                if let Some(f) = f {
                    // SAFETY: the caller's callback, with the arguments of its type.
                    unsafe { f(d, *event, *detail, self.opaque) }
                }
            }
            DomainEvent::MigrationIteration { iteration } => {
                // SAFETY: as above, for VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION.
                let f: lpc_event_migration_iteration_cb = unsafe { std::mem::transmute(self.cb) };
                let it = c_int::try_from(*iteration).unwrap_or(c_int::MAX);
                if let Some(f) = f {
                    // SAFETY: the caller's callback, with the arguments of its type.
                    unsafe { f(d, it, self.opaque) }
                }
            }
            DomainEvent::JobCompleted => {
                // SAFETY: as above, for VIR_DOMAIN_EVENT_ID_JOB_COMPLETED.
                let f: lpc_event_job_completed_cb = unsafe { std::mem::transmute(self.cb) };
                let (p, n) = stats
                    .map(stats_params)
                    .transpose()
                    .ok()
                    .flatten()
                    .unwrap_or((std::ptr::null_mut(), 0));
                if let Some(f) = f {
                    // SAFETY: the caller's callback; the array lives until it returns.
                    unsafe { f(d, p, n, self.opaque) }
                }
                // SAFETY: our own array (or NULL).
                unsafe { free_params(p, n) };
            }
        }
    }
}

/// # Safety
/// `dom` is NULL or a live handle; `cb` is a callback of the type its event id calls for.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_event_register_any(
    dom: *mut lpc_domain,
    event_id: c_int,
    cb: lpc_event_generic_cb,
    opaque: *mut c_void,
    freecb: virFreeCallback,
) -> c_int {
    entry!("lpc_domain_event_register_any", -1, {
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain(dom, "dom", F) }?;
        let Some(cb) = cb else {
            return Err(null_arg("cb", F));
        };
        // Checked first: on failure the caller keeps `opaque` and its free callback is not run.
        api::check_event_id(event_id)?;
        let c = CCallback { cb, opaque, freecb };
        d.register(
            event_id,
            Box::new(move |dom, ev, stats| c.call(dom, ev, stats)),
        )
    })
}

/// # Safety
/// `dom` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_event_deregister_any(
    dom: *mut lpc_domain,
    callback_id: c_int,
) -> c_int {
    entry!("lpc_domain_event_deregister_any", -1, {
        // SAFETY: forwarded contract of this function.
        unsafe { domain(dom, "dom", F) }?.deregister(callback_id)?;
        Ok(0)
    })
}
