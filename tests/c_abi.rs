//! The C ABI tested from C (tests/c/): built against the installed prefix through pkg-config.
#![allow(clippy::panic, clippy::unwrap_used)]
