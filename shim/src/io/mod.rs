//! The only place with sockets, threads, processes and clocks.
//!
//! [`LiveTransport`] connects the engine to two QEMU monitors; [`Recorder`] wraps any transport
//! and writes the transcript of what the engine consumed and sent, in that order; [`Controller`]
//! lets another thread call the API while a migration blocks; `run` puts them together for
//! [`crate::api::migrate_with`], the one entry every caller migrates through. Starting QEMUs, the
//! link and faults are the tools crate's.

mod live;
mod recorder;
pub(crate) mod run;

pub use live::{Controller, LiveTransport, Monitor, TransportStats};
pub use recorder::Recorder;
pub use run::{header, EventHook, RecordSpec, StopHook};
