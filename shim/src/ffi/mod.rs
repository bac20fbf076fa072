//! The C ABI declared in `include/libvirt_postcopy.h`: a thin, defensive translation to
//! [`crate::api`]. Each entry point checks its pointers and counts, converts C values to Rust
//! ones, runs behind a panic boundary, writes its outputs only on success, and reports failures as
//! libvirt errors in the calling thread's last error. No migration logic lives here.
//!
//! Handles: an `lpc_domain *` is `Arc::into_raw` of an [`api::Domain`] (one reference per handle
//! the caller holds); an `lpc_replay *` is `Box::into_raw` of an [`api::Replay`].

pub mod bindings;
mod error;

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::Arc;

use virt_sys::{virErrorPtr, virFreeCallback, virTypedParameter, virTypedParameterPtr};

use crate::api::{self, Domain, Replay};
use crate::driver::vocab::{code, param};
use crate::driver::{DomainEvent, JobStats, MigrateRequest, VirError};
use bindings::{
    lpc_domain, lpc_event_generic_cb, lpc_event_job_completed_cb, lpc_event_lifecycle_cb,
    lpc_event_migration_iteration_cb, lpc_replay,
};

extern "C" {
    // The C allocator, so that callers may release our arrays with free(3) or virTypedParamsFree.
    fn calloc(nmemb: usize, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

const _: () = assert!(
    bindings::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
        == crate::driver::vocab::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
);

fn invalid(detail: String) -> VirError {
    VirError::new(code::INVALID_ARG, detail)
}

fn null_arg(arg: &str, function: &str) -> VirError {
    invalid(format!("{arg} in {function} must not be NULL"))
}

fn check_flags(flags: c_uint, function: &str) -> Result<(), VirError> {
    if flags != 0 {
        return Err(invalid(format!(
            "unsupported flags (0x{flags:x}) in function {function}"
        )));
    }
    Ok(())
}

/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn string<'a>(p: *const c_char, arg: &str, function: &str) -> Result<&'a str, VirError> {
    if p.is_null() {
        return Err(null_arg(arg, function));
    }
    // SAFETY: not NULL, and the caller passes a NUL-terminated string (the header's contract).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| invalid(format!("{arg} in {function} is not valid UTF-8")))
}

/// # Safety
/// `p` is NULL or a live handle from `lpc_domain_open_qmp` / `lpc_replay_get_*`.
unsafe fn domain<'a>(
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

fn into_handle(d: Arc<Domain>) -> *mut lpc_domain {
    Arc::into_raw(d) as *mut lpc_domain
}

/// # Safety
/// `p` is NULL or a live handle from `lpc_replay_open`.
unsafe fn replay<'a>(p: *mut lpc_replay, function: &str) -> Result<&'a Replay, VirError> {
    if p.is_null() {
        return Err(null_arg("replay", function));
    }
    // SAFETY: a non-NULL handle is a `Box::into_raw` the caller has not released (contract).
    Ok(unsafe { &*(p as *const Replay) })
}

/// libvirt's names of typed-parameter types (virTypedParameterType), for its messages.
fn type_name(t: c_int) -> &'static str {
    match t as u32 {
        virt_sys::VIR_TYPED_PARAM_INT => "int",
        virt_sys::VIR_TYPED_PARAM_UINT => "uint",
        virt_sys::VIR_TYPED_PARAM_LLONG => "llong",
        virt_sys::VIR_TYPED_PARAM_ULLONG => "ullong",
        virt_sys::VIR_TYPED_PARAM_DOUBLE => "double",
        virt_sys::VIR_TYPED_PARAM_BOOLEAN => "boolean",
        virt_sys::VIR_TYPED_PARAM_STRING => "string",
        _ => "unknown",
    }
}

/// virDomainMigrate3's typed parameters -> the request (virTypedParamsValidate's checks).
///
/// # Safety
/// `params` points to `nparams` valid parameters (or is NULL with `nparams` 0).
unsafe fn migrate_request(
    params: virTypedParameterPtr,
    nparams: c_int,
    flags: c_uint,
) -> Result<MigrateRequest, VirError> {
    const F: &str = "lpc_domain_migrate";
    if nparams < 0 {
        return Err(invalid(format!(
            "nparams in {F} must be greater than or equal to zero"
        )));
    }
    if params.is_null() && nparams > 0 {
        return Err(null_arg("params", F));
    }
    let list: &[virTypedParameter] = if nparams == 0 {
        &[]
    } else {
        // SAFETY: not NULL, and the caller passes `nparams` parameters (contract).
        unsafe { std::slice::from_raw_parts(params, nparams as usize) }
    };
    let (mut uri, mut bw, mut pbw) = (None, None, None);
    for (i, p) in list.iter().enumerate() {
        let Some(end) = p.field.iter().position(|&c| c == 0) else {
            return Err(invalid(format!("parameter {i} has no NUL-terminated name")));
        };
        let name_bytes: Vec<u8> = p.field[..end].iter().map(|&c| c as u8).collect();
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        if list[..i].iter().any(|q| q.field[..=end] == p.field[..=end]) {
            return Err(invalid(format!("parameter '{name}' occurs multiple times")));
        }
        let expect = |t: u32| {
            if p.type_ as u32 == t {
                Ok(())
            } else {
                Err(invalid(format!(
                    "invalid type '{}' for parameter '{name}', expected '{}'",
                    type_name(p.type_),
                    type_name(t as c_int)
                )))
            }
        };
        if name == param::migrate_uri() {
            expect(virt_sys::VIR_TYPED_PARAM_STRING)?;
            // SAFETY: the type says the union holds `s`.
            let s = unsafe { p.value.s };
            // SAFETY: a string parameter holds NULL or a NUL-terminated string (virTypedParameter).
            uri = Some(unsafe { string(s, "VIR_MIGRATE_PARAM_URI", F) }?.to_string());
        } else if name == param::migrate_bandwidth() {
            expect(virt_sys::VIR_TYPED_PARAM_ULLONG)?;
            // SAFETY: the type says the union holds `ul`.
            bw = Some(unsafe { p.value.ul });
        } else if name == param::migrate_bandwidth_postcopy() {
            expect(virt_sys::VIR_TYPED_PARAM_ULLONG)?;
            // SAFETY: the type says the union holds `ul`.
            pbw = Some(unsafe { p.value.ul });
        } else {
            return Err(VirError::new(
                code::ARGUMENT_UNSUPPORTED,
                format!("parameter '{name}' not supported"),
            ));
        }
    }
    let Some(uri) = uri else {
        return Err(invalid(format!(
            "{F} requires the VIR_MIGRATE_PARAM_URI parameter (where the destination QEMU listens)"
        )));
    };
    let mut req = MigrateRequest::new(flags, uri);
    req.bandwidth_mib = bw;
    req.postcopy_bandwidth_mib = pbw;
    Ok(req)
}

fn field(name: &str) -> Result<[c_char; 80], VirError> {
    let mut f = [0 as c_char; 80];
    if name.len() >= f.len() {
        return Err(VirError::new(
            code::INTERNAL_ERROR,
            format!("parameter name too long: {name}"),
        ));
    }
    for (d, s) in f.iter_mut().zip(name.bytes()) {
        *d = s as c_char;
    }
    Ok(f)
}

/// One typed parameter of a returned array.
enum Value<'a> {
    Int(c_int),
    ULLong(u64),
    Str(&'a str),
}

/// Allocates a typed-parameter array with the C allocator (NULL for none).
fn alloc_params(values: &[(&str, Value<'_>)]) -> Result<(virTypedParameterPtr, c_int), VirError> {
    if values.is_empty() {
        return Ok((std::ptr::null_mut(), 0));
    }
    let oom = || VirError::new(virt_sys::VIR_ERR_NO_MEMORY as i32, "cannot allocate memory");
    let n = c_int::try_from(values.len()).map_err(|_| oom())?;
    // SAFETY: plain C allocation; checked for NULL below. Zeroed memory is a valid
    // virTypedParameter array (empty names, integer values), so a partly filled array is safe
    // to release with lpc_typed_params_free.
    let arr = unsafe { calloc(values.len(), std::mem::size_of::<virTypedParameter>()) }
        as virTypedParameterPtr;
    if arr.is_null() {
        return Err(oom());
    }
    for (i, (name, value)) in values.iter().enumerate() {
        let filled = (|| {
            let f = field(name)?;
            // SAFETY: `i` < the allocated count; the element is initialised (zeroed).
            let p = unsafe { &mut *arr.add(i) };
            p.field = f;
            match value {
                Value::Int(v) => {
                    p.type_ = virt_sys::VIR_TYPED_PARAM_INT as c_int;
                    p.value.i = *v;
                }
                Value::ULLong(v) => {
                    p.type_ = virt_sys::VIR_TYPED_PARAM_ULLONG as c_int;
                    p.value.ul = *v;
                }
                Value::Str(s) => {
                    // SAFETY: C allocation of len + 1 zeroed bytes, checked for NULL.
                    let buf = unsafe { calloc(s.len() + 1, 1) } as *mut u8;
                    if buf.is_null() {
                        return Err(oom());
                    }
                    // SAFETY: `buf` has room for the bytes and the final NUL (zeroed).
                    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len()) };
                    p.type_ = virt_sys::VIR_TYPED_PARAM_STRING as c_int;
                    p.value.s = buf as *mut c_char;
                }
            }
            Ok(())
        })();
        if let Err(e) = filled {
            // SAFETY: our own array of `n` parameters, zeroed where not filled.
            unsafe { lpc_typed_params_free(arr, n) };
            return Err(e);
        }
    }
    Ok((arr, n))
}

fn stats_params(stats: &JobStats) -> Result<(virTypedParameterPtr, c_int), VirError> {
    let values: Vec<(&str, Value<'_>)> = stats
        .params
        .iter()
        .map(|&(name, v)| {
            // libvirt types VIR_DOMAIN_JOB_OPERATION as int, every other migration statistic as ullong.
            if name == param::operation() {
                (name, Value::Int(c_int::try_from(v).unwrap_or(c_int::MAX)))
            } else {
                (name, Value::ULLong(v))
            }
        })
        .collect();
    alloc_params(&values)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The calling thread's last error (see the header).
#[no_mangle]
pub extern "C" fn lpc_get_last_error() -> virErrorPtr {
    error::last()
}

/// The code of the calling thread's last error, VIR_ERR_OK if none.
#[no_mangle]
pub extern "C" fn lpc_get_last_error_code() -> c_int {
    error::last_code()
}

/// The message of the calling thread's last error, "no error" if none.
#[no_mangle]
pub extern "C" fn lpc_get_last_error_message() -> *const c_char {
    error::last_message()
}

/// Clears the calling thread's last error.
#[no_mangle]
pub extern "C" fn lpc_reset_last_error() {
    error::reset()
}

// ---------------------------------------------------------------------------------------------
// Handles

/// # Safety
/// `qmp` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_open_qmp(qmp: *const c_char, flags: c_uint) -> *mut lpc_domain {
    const F: &str = "lpc_domain_open_qmp";
    error::guard(F, std::ptr::null_mut(), || {
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
    error::guard("lpc_domain_free", (), || {
        if !dom.is_null() {
            // SAFETY: the caller gives back one reference it got from this library (contract).
            drop(unsafe { Arc::from_raw(dom as *const Domain) });
        }
        Ok(())
    })
}

/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_open(path: *const c_char, flags: c_uint) -> *mut lpc_replay {
    const F: &str = "lpc_replay_open";
    error::guard(F, std::ptr::null_mut(), || {
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
    error::guard("lpc_replay_free", (), || {
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
    const F: &str = "lpc_replay_get_source";
    error::guard(F, std::ptr::null_mut(), || {
        // SAFETY: forwarded contract of this function.
        let r = unsafe { replay(r, F) }?;
        Ok(into_handle(r.source()))
    })
}

/// # Safety
/// `r` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_replay_get_destination(r: *mut lpc_replay) -> *mut lpc_domain {
    const F: &str = "lpc_replay_get_destination";
    error::guard(F, std::ptr::null_mut(), || {
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
    const F: &str = "lpc_replay_get_migrate_params";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        let r = unsafe { replay(r, F) }?;
        if params.is_null() {
            return Err(null_arg("params", F));
        }
        if nparams.is_null() {
            return Err(null_arg("nparams", F));
        }
        if flags.is_null() {
            return Err(null_arg("flags", F));
        }
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

// ---------------------------------------------------------------------------------------------
// Migration

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
    const F: &str = "lpc_domain_migrate";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        let s = unsafe { domain_arc(src, "src", F) }?;
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain_arc(dst, "dst", F) }?;
        // SAFETY: forwarded contract of this function.
        let req = unsafe { migrate_request(params, nparams, flags) }?;
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
    const F: &str = "lpc_domain_migrate_auto_recover";
    error::guard(F, -1, || {
        if deadline_ms == 0 {
            return Err(invalid(format!(
                "deadline_ms in {F} must be greater than zero"
            )));
        }
        // SAFETY: forwarded contract of this function.
        let s = unsafe { domain_arc(src, "src", F) }?;
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain_arc(dst, "dst", F) }?;
        // SAFETY: forwarded contract of this function.
        let req = unsafe { migrate_request(params, nparams, flags) }?;
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
    const F: &str = "lpc_domain_migrate_start_post_copy";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        unsafe { domain(dom, "dom", F) }?.start_postcopy(flags)?;
        Ok(0)
    })
}

/// # Safety
/// `dom` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lpc_domain_abort_job_flags(dom: *mut lpc_domain, flags: c_uint) -> c_int {
    const F: &str = "lpc_domain_abort_job_flags";
    error::guard(F, -1, || {
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
    const F: &str = "lpc_domain_get_job_stats";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain(dom, "dom", F) }?;
        if type_.is_null() {
            return Err(null_arg("type", F));
        }
        if params.is_null() {
            return Err(null_arg("params", F));
        }
        if nparams.is_null() {
            return Err(null_arg("nparams", F));
        }
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
/// `params` is NULL or an array of `nparams` parameters this library allocated.
#[no_mangle]
pub unsafe extern "C" fn lpc_typed_params_free(params: virTypedParameterPtr, nparams: c_int) {
    if params.is_null() {
        return;
    }
    for i in 0..nparams.max(0) as usize {
        // SAFETY: `i` < nparams, the array's count (contract).
        let p = unsafe { &*params.add(i) };
        if p.type_ == virt_sys::VIR_TYPED_PARAM_STRING as c_int {
            // SAFETY: a string value of our arrays is a C allocation or NULL.
            unsafe { free(p.value.s as *mut c_void) };
        }
    }
    // SAFETY: the array itself is a C allocation of ours.
    unsafe { free(params as *mut c_void) };
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
    const F: &str = "lpc_domain_get_state";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        let d = unsafe { domain(dom, "dom", F) }?;
        if state.is_null() {
            return Err(null_arg("state", F));
        }
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

// ---------------------------------------------------------------------------------------------
// Events

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
                unsafe { lpc_typed_params_free(p, n) };
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
    const F: &str = "lpc_domain_event_register_any";
    error::guard(F, -1, || {
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
    const F: &str = "lpc_domain_event_deregister_any";
    error::guard(F, -1, || {
        // SAFETY: forwarded contract of this function.
        unsafe { domain(dom, "dom", F) }?.deregister(callback_id)?;
        Ok(0)
    })
}

/// The exports have the header's prototypes: each is unified with bindgen's declaration of the
/// same name, so a change on one side alone does not compile.
macro_rules! same_prototypes {
    ($($name:ident($($arg:tt)*)),* $(,)?) => {
        #[allow(dead_code, clippy::fn_to_numeric_cast_any)]
        fn exports_match_the_header() {
            fn same<T>(_: T, _: T) {}
            $(
                same(
                    bindings::$name as unsafe extern "C" fn($($arg)*) -> _,
                    $name as unsafe extern "C" fn($($arg)*) -> _,
                );
            )*
        }
        /// Every function the header declares, for the export test.
        pub const DECLARED: &[&str] = &[$(stringify!($name)),*];
    };
}

same_prototypes!(
    lpc_get_last_error(),
    lpc_get_last_error_code(),
    lpc_get_last_error_message(),
    lpc_reset_last_error(),
    lpc_domain_open_qmp(_, _),
    lpc_domain_free(_),
    lpc_replay_open(_, _),
    lpc_replay_free(_),
    lpc_replay_get_source(_),
    lpc_replay_get_destination(_),
    lpc_replay_get_migrate_params(_, _, _, _),
    lpc_domain_migrate(_, _, _, _, _),
    lpc_domain_migrate_auto_recover(_, _, _, _, _, _),
    lpc_domain_migrate_start_post_copy(_, _),
    lpc_domain_abort_job_flags(_, _),
    lpc_domain_get_job_stats(_, _, _, _, _),
    lpc_typed_params_free(_, _),
    lpc_domain_get_state(_, _, _, _),
    lpc_domain_event_register_any(_, _, _, _, _),
    lpc_domain_event_deregister_any(_, _),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_divergence_message_starts_with_the_header_prefix() {
        let d = crate::transcript::Divergence {
            file: "f.jsonl".into(),
            line: 3,
            expected: "a".into(),
            got: "b".into(),
        };
        let e = api::engine_error(crate::engine::EngineError::Divergence(Box::new(d)));
        let prefix = CStr::from_bytes_with_nul(bindings::LPC_REPLAY_DIVERGED_PREFIX)
            .ok()
            .and_then(|c| c.to_str().ok())
            .unwrap_or("?");
        assert!(e.message().starts_with(prefix), "{}", e.message());
    }
}
