//! The only place with sockets, threads, processes and clocks.
//!
//! [`LiveTransport`] connects the engine to two QEMU monitors; [`Recorder`] wraps any transport
//! and writes the transcript of what the engine consumed and sent, in that order; [`Controller`]
//! lets another thread call the API while a migration blocks; [`qemu`] starts QEMU processes.

mod live;
pub mod qemu;
mod recorder;
pub mod relay;
pub mod run;
pub mod scenario;
pub mod testbed;

pub use live::{Controller, LiveTransport, Monitor, TransportStats};
pub use recorder::Recorder;
