//! What bindgen read from `include/libvirt_postcopy.h` (see build.rs): the handle and callback
//! types, the prototypes the exports in [`super`] are checked against, and the header's macros.
//! libvirt's own types (virTypedParameterPtr, virErrorPtr, virFreeCallback) come from virt-sys.

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

include!(concat!(env!("OUT_DIR"), "/lpc_bindings.rs"));
