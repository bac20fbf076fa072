//! The flag's value in the patched libvirt-domain.h (patches/) is the shim's. Run by ci/patches
//! with LIBVIRT_PATCHED_INCLUDE and LIBVIRT_PATCHED_BUILD_INCLUDE set (from
//! $CACHE/libvirt-patched.env); without them it says so and checks nothing.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use std::process::Command;

use postcopy_core::driver::vocab::VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;

#[test]
fn patched_libvirt_defines_the_shims_value() {
    let (Ok(inc), Ok(binc)) = (
        std::env::var("LIBVIRT_PATCHED_INCLUDE"),
        std::env::var("LIBVIRT_PATCHED_BUILD_INCLUDE"),
    ) else {
        eprintln!("LIBVIRT_PATCHED_INCLUDE not set: run through ci/patches; nothing checked");
        return;
    };
    let dir = std::env::temp_dir().join(format!("patched-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("flag.c");
    // An enum constant, not a macro: only the compiler can tell its value.
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <libvirt/libvirt.h>\n\
         int main(void) { printf(\"%u\\n\", (unsigned)VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY); return 0; }\n",
    )
    .unwrap();
    let exe = dir.join("flag");
    let st = Command::new("cc")
        .args(["-Wall", "-Werror", "-I", &binc, "-I", &inc, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "the patched header does not declare VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY"
    );
    let out = Command::new(&exe).output().unwrap();
    let value: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(value, 1 << 21);
    assert_eq!(
        value, VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
        "the shim and the patched libvirt disagree"
    );
    eprintln!("patched libvirt-domain.h: VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY = {value} (1 << 21), as the shim");
}
