use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::message::decode_id;
use super::{encode_command, Greeting, Message, ProtocolError, QmpError};

/// The id of the `qmp_capabilities` command a session sends by itself.
const NEGOTIATION_ID: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    AwaitingGreeting,
    Negotiating,
    Ready,
    Closed,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::AwaitingGreeting => "awaiting-greeting",
            SessionState::Negotiating => "negotiating",
            SessionState::Ready => "ready",
            SessionState::Closed => "closed",
        })
    }
}

/// What a received line means to the user of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The greeting arrived; `transmit` is the `qmp_capabilities` line to send.
    Greeting {
        greeting: Greeting,
        transmit: String,
    },
    /// Negotiation finished: commands may be sent.
    Ready,
    Reply {
        id: u64,
        command: String,
        result: Result<Value, QmpError>,
    },
    Event {
        name: String,
        data: Value,
    },
    /// A message that was dropped, and why (reply to an unknown id, error without id).
    Dropped {
        reason: String,
    },
}

/// The QMP client state machine for one monitor.
#[derive(Debug)]
pub struct Session {
    state: SessionState,
    greeting: Option<Greeting>,
    in_flight: BTreeMap<u64, String>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            state: SessionState::AwaitingGreeting,
            greeting: None,
            in_flight: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// Name of a command still waiting for its reply, if any.
    pub fn pending(&self) -> Option<&str> {
        self.in_flight.values().next().map(String::as_str)
    }

    /// Encodes a command. Only a ready session sends commands.
    pub fn command(
        &mut self,
        name: &str,
        args: Option<&Value>,
        id: u64,
    ) -> Result<String, ProtocolError> {
        if self.state != SessionState::Ready {
            return Err(ProtocolError::WrongState {
                command: name.to_string(),
                state: self.state,
                needed: SessionState::Ready,
            });
        }
        self.in_flight.insert(id, name.to_string());
        Ok(encode_command(name, args, id))
    }

    /// Handles one line received from QEMU.
    pub fn receive(&mut self, line: &str) -> Result<Output, ProtocolError> {
        let msg = Message::parse(line)?;
        match (self.state, msg) {
            (SessionState::AwaitingGreeting, Message::Greeting(g)) => {
                self.state = SessionState::Negotiating;
                self.greeting = Some(g.clone());
                self.in_flight
                    .insert(NEGOTIATION_ID, "qmp_capabilities".into());
                Ok(Output::Greeting {
                    greeting: g,
                    transmit: encode_command("qmp_capabilities", None, NEGOTIATION_ID),
                })
            }
            (SessionState::AwaitingGreeting, _) => Err(ProtocolError::MissingGreeting {
                line: line.chars().take(200).collect(),
            }),
            (SessionState::Negotiating, Message::Return { id, .. })
                if id.as_ref().and_then(decode_id) == Some(NEGOTIATION_ID) =>
            {
                self.in_flight.remove(&NEGOTIATION_ID);
                self.state = SessionState::Ready;
                Ok(Output::Ready)
            }
            (SessionState::Negotiating, Message::Error { error, .. }) => {
                Err(ProtocolError::NegotiationFailed { desc: error.desc })
            }
            (_, Message::Event { name, data }) => Ok(Output::Event { name, data }),
            (_, Message::Greeting(_)) => Ok(Output::Dropped {
                reason: "second greeting on an open session".into(),
            }),
            (_, Message::Return { id, value }) => Ok(self.reply(id, Ok(value))),
            (_, Message::Error { id, error }) => Ok(self.reply(id, Err(error))),
        }
    }

    fn reply(&mut self, id: Option<Value>, result: Result<Value, QmpError>) -> Output {
        let Some(raw) = id else {
            let what = match &result {
                Err(e) => format!("error reply without id: {}: {}", e.class, e.desc),
                Ok(v) => format!("reply without id: {v}"),
            };
            return Output::Dropped { reason: what };
        };
        match decode_id(&raw).and_then(|n| self.in_flight.remove(&n).map(|c| (n, c))) {
            Some((id, command)) => Output::Reply {
                id,
                command,
                result,
            },
            None => Output::Dropped {
                reason: format!("reply to unknown id {raw}"),
            },
        }
    }

    /// The monitor closed. Returns the error to report, if the close cut anything short.
    pub fn eof(&mut self) -> Option<ProtocolError> {
        let before = self.state;
        self.state = SessionState::Closed;
        match before {
            SessionState::AwaitingGreeting => Some(ProtocolError::Eof {
                what: "waiting for the greeting".into(),
            }),
            _ => self.in_flight.values().next().map(|c| ProtocolError::Eof {
                what: format!("waiting for the reply to '{c}'"),
            }),
        }
    }
}
