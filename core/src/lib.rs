//! The sans-IO core of libvirt-postcopy: QMP ([`qmp`]), libvirt's QEMU-driver migration logic
//! ([`driver`]), the [`engine`] that joins them to any transport, and the transcript format with
//! its replay ([`transcript`]); when a harness's planned faults fire ([`faults`]); the stall
//! detector of the automatic recovery policy ([`stall`]).
//!
//! No sockets, threads, processes, files or clocks: every input (a QMP line, an API call, a
//! closed monitor) comes in as a value and every decision goes out as an action. The C library
//! (`postcopy-shim`) moves the bytes; the tools crate starts QEMUs and injects faults.
//! The behaviour followed is written in docs/driver-behaviour.md.

#![forbid(unsafe_code)]

pub mod driver;
pub mod engine;
pub mod faults;
pub mod qmp;
pub mod stall;
pub mod transcript;
