//! The transcript format (JSON Lines, version 1; documented in qemu-fixtures/README.md) and the
//! replaying transport.

pub mod format;
mod replay;

/// Defined by the engine, whose error carries it; named here, where replays produce it.
pub use crate::engine::Divergence;
pub use format::{ApiRecord, Header, Record, Transcript, TranscriptError, FORMAT_VERSION};
pub use replay::ReplayTransport;

const DEADLINE_NOTE: &str = "deadline passed: ";

/// The note a recording holds where the call's deadline passed (docs/driver-behaviour.md §10.4);
/// a replay feeds it to the driver again.
pub fn deadline_note(limit: std::time::Duration) -> String {
    format!("{DEADLINE_NOTE}{} s", limit.as_secs_f64())
}

/// The deadline a note of [`deadline_note`] stands for.
pub fn deadline_from_note(text: &str) -> Option<std::time::Duration> {
    let secs = text.strip_prefix(DEADLINE_NOTE)?.strip_suffix(" s")?;
    let secs: f64 = secs.parse().ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}
