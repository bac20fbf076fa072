//! Reads the hand-written C header (the ABI contract) with bindgen, so that the Rust exports in
//! `src/ffi/` are checked against it at compile time, and gives the shared library its soname.

use std::env;
use std::path::PathBuf;

fn main() {
    let header = "include/libvirt_postcopy.h";
    println!("cargo:rerun-if-changed={header}");
    println!("cargo:rerun-if-changed=build.rs");
    // A packaged library is found by its soname; bump it with any incompatible change of the header.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpostcopy_shim.so.0");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_function("lpc_.*")
        .allowlist_type("lpc_.*")
        .allowlist_var("LPC_.*|VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY")
        // libvirt's own types come from virt-sys, so both crates name the same types.
        .blocklist_type("_?vir.*")
        .raw_line("#[allow(unused_imports)]")
        .raw_line("use virt_sys::{virErrorPtr, virFreeCallback, virTypedParameterPtr};")
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen reads include/libvirt_postcopy.h (needs libclang-dev and libvirt-dev)");
    bindings
        .write_to_file(out.join("lpc_bindings.rs"))
        .expect("write the bindings");
}
