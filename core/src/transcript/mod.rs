//! The transcript format (JSON Lines, version 1; documented in qemu-fixtures/README.md) and the
//! replaying transport.

pub mod format;
mod replay;

/// Defined by the engine, whose error carries it; named here, where replays produce it.
pub use crate::engine::Divergence;
pub use format::{ApiRecord, Header, Record, Transcript, TranscriptError, FORMAT_VERSION};
pub use replay::ReplayTransport;
