//! Typed-parameter arrays: virDomainMigrate3's parameters read into a request, the arrays this
//! library hands out (job statistics, a replay's recorded parameters) and
//! `lpc_typed_params_free`.

use std::ffi::{c_char, c_int, c_uint, c_void};

use virt_sys::{virTypedParameter, virTypedParameterPtr};

use super::{entry, invalid, null_arg, string};
use crate::driver::policy::{self, SwitchPolicy};
use crate::driver::vocab::{code, param};
use crate::driver::{JobStats, MigrateRequest, VirError};

extern "C" {
    // The C allocator, so that callers may release our arrays with free(3) or virTypedParamsFree.
    fn calloc(nmemb: usize, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
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

/// virDomainMigrate3's typed parameters -> the request (virTypedParamsValidate's checks);
/// `function` is the entry point called, for its errors.
///
/// # Safety
/// `params` points to `nparams` valid parameters (or is NULL with `nparams` 0).
pub(super) unsafe fn migrate_request(
    params: virTypedParameterPtr,
    nparams: c_int,
    flags: c_uint,
    function: &str,
) -> Result<MigrateRequest, VirError> {
    if nparams < 0 {
        return Err(invalid(format!(
            "nparams in {function} must be greater than or equal to zero"
        )));
    }
    if params.is_null() && nparams > 0 {
        return Err(null_arg("params", function));
    }
    let list: &[virTypedParameter] = if nparams == 0 {
        &[]
    } else {
        // SAFETY: not NULL, and the caller passes `nparams` parameters (contract).
        unsafe { std::slice::from_raw_parts(params, nparams as usize) }
    };
    let (mut uri, mut bw, mut pbw) = (None, None, None);
    let (mut switch_policy, mut rtt) = (None, None);
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
            uri = Some(unsafe { string(s, "VIR_MIGRATE_PARAM_URI", function) }?.to_string());
        } else if name == param::migrate_bandwidth() {
            expect(virt_sys::VIR_TYPED_PARAM_ULLONG)?;
            // SAFETY: the type says the union holds `ul`.
            bw = Some(unsafe { p.value.ul });
        } else if name == param::migrate_bandwidth_postcopy() {
            expect(virt_sys::VIR_TYPED_PARAM_ULLONG)?;
            // SAFETY: the type says the union holds `ul`.
            pbw = Some(unsafe { p.value.ul });
        } else if name == policy::PARAM_SWITCH_POLICY {
            expect(virt_sys::VIR_TYPED_PARAM_STRING)?;
            // SAFETY: the type says the union holds `s`.
            let s = unsafe { p.value.s };
            // SAFETY: a string parameter holds NULL or a NUL-terminated string (virTypedParameter).
            switch_policy = Some(
                unsafe { string(s, "LPC_MIGRATE_PARAM_SWITCH_POLICY", function) }?.to_string(),
            );
        } else if name == policy::PARAM_SWITCH_POLICY_RTT {
            expect(virt_sys::VIR_TYPED_PARAM_ULLONG)?;
            // SAFETY: the type says the union holds `ul`.
            rtt = Some(unsafe { p.value.ul });
        } else {
            return Err(VirError::new(
                code::ARGUMENT_UNSUPPORTED,
                format!("parameter '{name}' not supported"),
            ));
        }
    }
    let Some(uri) = uri else {
        return Err(invalid(format!(
            "{function} requires the VIR_MIGRATE_PARAM_URI parameter (where the destination QEMU listens)"
        )));
    };
    let mut req = MigrateRequest::new(flags, uri);
    req.bandwidth_mib = bw;
    req.postcopy_bandwidth_mib = pbw;
    req.switch_policy = match (switch_policy, rtt) {
        (Some(name), rtt) => {
            Some(SwitchPolicy::parse(&name, rtt).map_err(|e| invalid(e.to_string()))?)
        }
        (None, Some(_)) => {
            return Err(invalid(format!(
                "parameter '{}' requires '{}'",
                policy::PARAM_SWITCH_POLICY_RTT,
                policy::PARAM_SWITCH_POLICY
            )))
        }
        (None, None) => None,
    };
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
pub(super) enum Value<'a> {
    Int(c_int),
    ULLong(u64),
    Str(&'a str),
}

/// Allocates a typed-parameter array with the C allocator (NULL for none).
pub(super) fn alloc_params(
    values: &[(&str, Value<'_>)],
) -> Result<(virTypedParameterPtr, c_int), VirError> {
    if values.is_empty() {
        return Ok((std::ptr::null_mut(), 0));
    }
    let oom = || VirError::new(virt_sys::VIR_ERR_NO_MEMORY as i32, "cannot allocate memory");
    let n = c_int::try_from(values.len()).map_err(|_| oom())?;
    // SAFETY: plain C allocation; checked for NULL below. Zeroed memory is a valid
    // virTypedParameter array (empty names, integer values), so a partly filled array is safe
    // to release with free_params.
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
            unsafe { free_params(arr, n) };
            return Err(e);
        }
    }
    Ok((arr, n))
}

/// Job statistics as libvirt types them.
pub(super) fn stats_params(stats: &JobStats) -> Result<(virTypedParameterPtr, c_int), VirError> {
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

/// Releases an array of [`alloc_params`] (the export without its last-error handling, for the
/// library's own arrays).
///
/// # Safety
/// `params` is NULL or an array of `nparams` parameters this library allocated.
pub(super) unsafe fn free_params(params: virTypedParameterPtr, nparams: c_int) {
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
/// `params` is NULL or an array of `nparams` parameters this library allocated.
#[no_mangle]
pub unsafe extern "C" fn lpc_typed_params_free(params: virTypedParameterPtr, nparams: c_int) {
    entry!("lpc_typed_params_free", (), {
        // SAFETY: forwarded contract of this function.
        unsafe { free_params(params, nparams) };
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests state their expectations by panicking
mod tests {
    use std::ffi::CString;

    use super::*;
    use crate::driver::vocab::{VIR_MIGRATE_LIVE, VIR_MIGRATE_POSTCOPY};

    fn string_param(name: &str, value: &CString) -> virTypedParameter {
        // SAFETY: an all-zero virTypedParameter is valid (empty name, integer 0).
        let mut p: virTypedParameter = unsafe { std::mem::zeroed() };
        p.field = field(name).unwrap();
        p.type_ = virt_sys::VIR_TYPED_PARAM_STRING as c_int;
        p.value.s = value.as_ptr() as *mut c_char;
        p
    }

    fn ullong_param(name: &str, value: u64) -> virTypedParameter {
        // SAFETY: as above.
        let mut p: virTypedParameter = unsafe { std::mem::zeroed() };
        p.field = field(name).unwrap();
        p.type_ = virt_sys::VIR_TYPED_PARAM_ULLONG as c_int;
        p.value.ul = value;
        p
    }

    fn request(list: &mut [virTypedParameter]) -> Result<MigrateRequest, VirError> {
        // SAFETY: `list` holds `len` initialised parameters whose strings outlive the call.
        unsafe {
            migrate_request(
                list.as_mut_ptr(),
                list.len() as c_int,
                VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY,
                "lpc_domain_migrate",
            )
        }
    }

    #[test]
    fn our_switch_policy_parameters() {
        let uri = CString::new("tcp:127.0.0.1:4444").unwrap();
        let adaptive = CString::new("adaptive").unwrap();
        let r = request(&mut [
            string_param(param::migrate_uri(), &uri),
            string_param(policy::PARAM_SWITCH_POLICY, &adaptive),
            ullong_param(policy::PARAM_SWITCH_POLICY_RTT, 300),
        ])
        .unwrap();
        assert_eq!(
            r.switch_policy,
            Some(SwitchPolicy::Adaptive { rtt_us: 300 })
        );

        let half = CString::new("half-pass").unwrap();
        let e = request(&mut [
            string_param(param::migrate_uri(), &uri),
            string_param(policy::PARAM_SWITCH_POLICY, &half),
            ullong_param(policy::PARAM_SWITCH_POLICY_RTT, 300),
        ])
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_ARG);
        assert_eq!(
            e.message(),
            "invalid argument: a round-trip time is a parameter of the 'adaptive' switch policy only, not of 'half-pass'"
        );

        let eager = CString::new("eager").unwrap();
        let e = request(&mut [
            string_param(param::migrate_uri(), &uri),
            string_param(policy::PARAM_SWITCH_POLICY, &eager),
        ])
        .unwrap_err();
        assert_eq!(
            e.message(),
            "invalid argument: unknown switch policy 'eager' (expected 'adaptive' or 'half-pass')"
        );

        let e = request(&mut [
            string_param(param::migrate_uri(), &uri),
            ullong_param(policy::PARAM_SWITCH_POLICY_RTT, 300),
        ])
        .unwrap_err();
        assert_eq!(
            e.message(),
            "invalid argument: parameter 'lpc.switch_policy.rtt' requires 'lpc.switch_policy'"
        );

        let e = request(&mut [
            string_param(param::migrate_uri(), &uri),
            ullong_param(policy::PARAM_SWITCH_POLICY, 1),
        ])
        .unwrap_err();
        assert_eq!(
            e.message(),
            "invalid argument: invalid type 'ullong' for parameter 'lpc.switch_policy', expected 'string'"
        );
    }
}
