//! The QMP protocol, sans-IO.
//!
//! [`Framer`] splits a byte stream into lines, [`Message`] parses one line, [`Command`] is a command
//! we send, and [`Session`] runs the protocol state machine: greeting, `qmp_capabilities`
//! negotiation, then ready. Nothing here reads a socket or a clock; the IO layer feeds bytes in
//! and writes the bytes that come out.
//!
//! The session owns the command ids and the monitor's one-command-at-a-time rule. Ids carry the
//! reserved prefix [`ID_PREFIX`]: a reply whose id lacks it, or names no command in flight, is
//! dropped with a warning and never reaches the driver.

mod command;
mod framing;
mod message;
mod session;

pub use command::Command;
pub use framing::{Framer, MAX_LINE};
pub use message::{encode_command, Greeting, Message, QmpError};
pub use session::{Output, Session, SessionState};

use thiserror::Error;

/// The prefix of every command id we send.
pub const ID_PREFIX: &str = "lpc-";

/// What can go wrong while speaking QMP. Peer input never panics: it ends up here.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("malformed QMP message: {reason}: {line}")]
    Malformed { reason: String, line: String },
    #[error("QMP line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("expected the QMP greeting, got: {line}")]
    MissingGreeting { line: String },
    #[error("QMP capability negotiation failed: {desc}")]
    NegotiationFailed { desc: String },
    #[error("monitor closed (EOF) while {what}")]
    Eof { what: String },
    #[error("command '{command}' sent in session state {state}; it needs state {needed}")]
    WrongState {
        command: String,
        state: SessionState,
        needed: SessionState,
    },
}
