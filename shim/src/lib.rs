//! libvirt-postcopy's C library: the public Rust API ([`api`]: domains, virDomainMigrate3,
//! virDomainMigrateStartPostCopy, virDomainAbortJobFlags, virDomainGetJobStats, events), the live
//! transport and the recorder (`io`, the crate's own), and the C ABI facade over the API ([`ffi`], declared by
//! `include/libvirt_postcopy.h`).
//!
//! The decisions are the core's (`postcopy-core`): data flows API call -> driver (decides) -> qmp
//! (encodes) -> io (sends); replies and events come back io -> qmp -> driver.

pub mod api;
pub mod ffi;
mod io;

/// The header of a transcript of a migrate request (the recorder's, and the libvirt-log
/// importer's in the tools).
pub use io::header as transcript_header;

pub use postcopy_core;

use postcopy_core::{driver, engine, qmp, transcript};

/// Reads a transcript file (the core parses text; files are this crate's business).
pub fn load_transcript(
    path: &std::path::Path,
) -> Result<transcript::Transcript, transcript::TranscriptError> {
    let text = std::fs::read_to_string(path).map_err(|source| transcript::TranscriptError::Io {
        file: path.display().to_string(),
        source,
    })?;
    transcript::Transcript::parse(&path.display().to_string(), &text)
}
