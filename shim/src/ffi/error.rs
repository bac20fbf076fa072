//! The per-thread last error, in libvirt's virError form (`lpc_get_last_error` and its
//! siblings), and the panic boundary of every entry point.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use virt_sys::{virError, virErrorPtr};

use crate::driver::vocab::code;
use crate::driver::VirError;

struct LastError {
    /// Boxed so the pointer handed out stays put until the next call of this thread.
    error: Box<virError>,
    _message: CString,
}

thread_local! {
    static LAST: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

pub(super) fn reset() {
    LAST.with(|l| *l.borrow_mut() = None);
}

pub(super) fn set(e: &VirError) {
    // A NUL inside a message (from a path, say) would cut it: replace it, keep the rest.
    let message = CString::new(e.message().replace('\0', " ")).unwrap_or_default();
    // SAFETY: virError is a C struct of integers and pointers, for which all zeroes (NULL
    // pointers, 0) is a valid value; libvirt's virGetLastError readers expect exactly that.
    let mut error: Box<virError> = Box::new(unsafe { std::mem::zeroed() });
    error.code = e.code;
    error.domain = e.domain();
    error.level = virt_sys::VIR_ERR_ERROR;
    error.message = message.as_ptr() as *mut c_char;
    LAST.with(|l| {
        *l.borrow_mut() = Some(LastError {
            error,
            _message: message,
        })
    });
}

pub(super) fn last() -> virErrorPtr {
    LAST.with(|l| {
        l.borrow_mut()
            .as_mut()
            .map_or(std::ptr::null_mut(), |e| &mut *e.error as virErrorPtr)
    })
}

pub(super) fn last_code() -> i32 {
    LAST.with(|l| l.borrow().as_ref().map_or(0, |e| e.error.code))
}

pub(super) fn last_message() -> *const c_char {
    LAST.with(|l| {
        l.borrow()
            .as_ref()
            .map_or(c"no error".as_ptr(), |e| e.error.message as *const c_char)
    })
}

/// Runs an entry point: resets the thread's error, catches panics, records the error of a failure
/// and returns `on_error` for it.
pub(super) fn guard<T>(function: &str, on_error: T, f: impl FnOnce() -> Result<T, VirError>) -> T {
    reset();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set(&e);
            on_error
        }
        Err(_) => {
            set(&VirError::new(
                code::INTERNAL_ERROR,
                format!("unexpected failure (Rust panic) in {function}"),
            ));
            on_error
        }
    }
}

/// The calling thread's last error (see the header).
#[no_mangle]
pub extern "C" fn lpc_get_last_error() -> virErrorPtr {
    last()
}

/// The code of the calling thread's last error, VIR_ERR_OK if none.
#[no_mangle]
pub extern "C" fn lpc_get_last_error_code() -> c_int {
    last_code()
}

/// The message of the calling thread's last error, "no error" if none.
#[no_mangle]
pub extern "C" fn lpc_get_last_error_message() -> *const c_char {
    last_message()
}

/// Clears the calling thread's last error.
#[no_mangle]
pub extern "C" fn lpc_reset_last_error() {
    reset()
}
