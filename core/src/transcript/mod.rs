//! The transcript format (JSON Lines, version 1; documented in qemu-fixtures/README.md) and the
//! replaying transport.

pub mod format;
mod replay;

pub use format::{ApiRecord, Header, Record, Transcript, TranscriptError, FORMAT_VERSION};
pub use replay::{Divergence, ReplayTransport};
