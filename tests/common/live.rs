//! What the live tests share: their gate and the guest kernel they boot.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// False (and says so) when POSTCOPY_SKIP_LIVE is set, where no QEMU can run; CI never sets it.
pub fn live_enabled(test: &str) -> bool {
    if std::env::var_os("POSTCOPY_SKIP_LIVE").is_some() {
        eprintln!("POSTCOPY_SKIP_LIVE set: {test} skipped");
        return false;
    }
    true
}

/// The guest kernel, built once per test binary by qemu-fixtures/guest/build.sh into
/// target/live-guest (needs gcc).
pub fn guest_kernel() -> PathBuf {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            let out = super::root().join("target/live-guest");
            let st = Command::new(super::root().join("qemu-fixtures/guest/build.sh"))
                .arg(&out)
                .status()
                .unwrap_or_else(|e| panic!("cannot run qemu-fixtures/guest/build.sh: {e}"));
            assert!(st.success(), "qemu-fixtures/guest/build.sh failed: {st}");
            out.join("postcopy-guest.elf")
        })
        .clone()
}

/// The guest the live tests migrate: 192 MiB, read-mostly with a hot set (qemu-fixtures/guest).
pub const GUEST: &str = "ro=64 hot=16 cold=32 rate=40 beat=20";
pub const GUEST_MEMORY_MIB: u64 = 192;
