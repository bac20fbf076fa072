//! The only place with sockets, threads, processes and clocks.
//!
//! [`LiveTransport`] connects the engine to two QEMU monitors; [`Recorder`] wraps any transport
//! and writes the transcript of what the engine consumed and sent, in that order; [`Controller`]
//! lets another thread call the API while a migration blocks. Starting QEMUs, the link and faults
//! are the tools crate's.

mod live;
mod recorder;
pub mod run;

pub use live::{Controller, LiveTransport, Monitor, TransportStats};
pub use recorder::Recorder;
