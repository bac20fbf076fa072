//! The C ABI declared in `include/libvirt_postcopy.h`: a thin, defensive translation to
//! [`crate::api`]. Each entry point checks its pointers and counts, converts C values to Rust
//! ones, runs behind a panic boundary, writes its outputs only on success, and reports failures as
//! libvirt errors in the calling thread's last error. No migration logic lives here.
//!
//! One file per C object, as rustls-ffi has it: `error` (the last error and the panic boundary),
//! `domain` (`lpc_domain`: migrate, start post-copy, abort, statistics, state), `replay`
//! (`lpc_replay`), `params` (typed-parameter arrays), `events` (callbacks).
//!
//! Handles: an `lpc_domain *` is `Arc::into_raw` of an [`crate::api::Domain`] (one reference per handle
//! the caller holds); an `lpc_replay *` is `Box::into_raw` of an [`crate::api::Replay`].

pub mod bindings;
mod domain;
mod error;
mod events;
mod params;
mod replay;

use std::ffi::{c_char, c_uint, CStr};

pub use domain::*;
pub use error::*;
pub use events::*;
pub use params::lpc_typed_params_free;
pub use replay::*;

use crate::driver::vocab::code;
use crate::driver::VirError;

const _: () = assert!(
    bindings::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
        == crate::driver::vocab::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
);

/// An entry point: `$function`'s body runs behind the panic boundary ([`error::guard`]), with
/// the calling thread's last error reset first and set from an `Err`; `$on_error` is what C
/// gets back then. Inside, `F` names the function for error messages.
macro_rules! entry {
    ($function:literal, $on_error:expr, $body:block) => {{
        const F: &str = $function;
        $crate::ffi::error::guard(F, $on_error, || $body)
    }};
}
pub(crate) use entry;

/// Returns VIR_ERR_INVALID_ARG ("ARG in FUNCTION must not be NULL") from the enclosing
/// function when one of the pointers is NULL (rustls-ffi's `try_ref_from_ptr!`, for outputs).
macro_rules! require {
    ($function:expr; $($ptr:ident),+ $(,)?) => {
        $(
            if $ptr.is_null() {
                return Err($crate::ffi::null_arg(
                    stringify!($ptr).trim_end_matches('_'),
                    $function,
                ));
            }
        )+
    };
}
pub(crate) use require;

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
    use crate::api;

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

    #[test]
    fn the_header_names_our_policy_parameters_as_the_driver_does() {
        use crate::driver::policy::{PARAM_SWITCH_POLICY, PARAM_SWITCH_POLICY_RTT};
        let name = |b: &'static [u8]| {
            CStr::from_bytes_with_nul(b)
                .ok()
                .and_then(|c| c.to_str().ok())
        };
        assert_eq!(
            name(bindings::LPC_MIGRATE_PARAM_SWITCH_POLICY),
            Some(PARAM_SWITCH_POLICY)
        );
        assert_eq!(
            name(bindings::LPC_MIGRATE_PARAM_SWITCH_POLICY_RTT),
            Some(PARAM_SWITCH_POLICY_RTT)
        );
    }
}
