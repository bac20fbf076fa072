use std::collections::VecDeque;
use std::fmt;

use serde_json::Value;

use super::message::decode_id;
use super::{encode_command, Command, Greeting, Message, ProtocolError, QmpError};

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

/// What a received line means to the user of a session. `C` is what the user handed
/// [`Session::execute`] with each command; it comes back with the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<C> {
    /// The greeting arrived; `transmit` is the `qmp_capabilities` line to send.
    Greeting {
        greeting: Greeting,
        transmit: String,
    },
    /// Negotiation finished: commands may be sent.
    Ready,
    /// The reply to `command`. `transmit` is the next queued command's line, now due.
    Reply {
        command: Command,
        context: C,
        result: Result<Value, QmpError>,
        transmit: Option<String>,
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

/// A command sent and waiting for its reply.
#[derive(Debug)]
struct InFlight<C> {
    id: u64,
    command: Command,
    context: C,
}

/// The QMP client state machine for one monitor: the greeting, the negotiation, then commands.
///
/// The session owns the command ids and holds the monitor for one command at a time, as libvirt
/// does (`qemuDomainObjEnterMonitor`): a command executed while another awaits its reply waits in
/// a queue and is transmitted when that reply arrives. `C` is the caller's context for a command
/// (the driver's purpose), handed back with its reply.
#[derive(Debug)]
pub struct Session<C = ()> {
    state: SessionState,
    greeting: Option<Greeting>,
    next_id: u64,
    in_flight: Option<InFlight<C>>,
    queued: VecDeque<(Command, C)>,
}

impl<C> Default for Session<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Session<C> {
    pub fn new() -> Self {
        Session {
            state: SessionState::AwaitingGreeting,
            greeting: None,
            next_id: NEGOTIATION_ID + 1,
            in_flight: None,
            queued: VecDeque::new(),
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// The command awaiting its reply, if any (`qmp_capabilities` while negotiating).
    pub fn in_flight(&self) -> Option<&Command> {
        match (&self.in_flight, self.state) {
            (Some(f), _) => Some(&f.command),
            (None, SessionState::Negotiating) => Some(&Command::QmpCapabilities),
            (None, _) => None,
        }
    }

    /// How many commands wait for the monitor.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Executes a command: returns its line to transmit now, or None when it waits behind the
    /// command in flight (its line comes with that command's [`Output::Reply`]). Only a ready
    /// session executes commands.
    pub fn execute(
        &mut self,
        command: Command,
        context: C,
    ) -> Result<Option<String>, ProtocolError> {
        if self.state != SessionState::Ready {
            return Err(ProtocolError::WrongState {
                command: command.name().to_string(),
                state: self.state,
                needed: SessionState::Ready,
            });
        }
        if self.in_flight.is_some() {
            self.queued.push_back((command, context));
            return Ok(None);
        }
        Ok(Some(self.transmit(command, context)))
    }

    fn transmit(&mut self, command: Command, context: C) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let line = encode_command(command.name(), command.arguments().as_ref(), id);
        self.in_flight = Some(InFlight {
            id,
            command,
            context,
        });
        line
    }

    /// Handles one line received from QEMU.
    pub fn receive(&mut self, line: &str) -> Result<Output<C>, ProtocolError> {
        let msg = Message::parse(line)?;
        match (self.state, msg) {
            (SessionState::AwaitingGreeting, Message::Greeting(g)) => {
                self.state = SessionState::Negotiating;
                self.greeting = Some(g.clone());
                Ok(Output::Greeting {
                    greeting: g,
                    transmit: encode_command(Command::QmpCapabilities.name(), None, NEGOTIATION_ID),
                })
            }
            (SessionState::AwaitingGreeting, _) => Err(ProtocolError::MissingGreeting {
                line: line.chars().take(200).collect(),
            }),
            (SessionState::Negotiating, Message::Return { id, .. })
                if id.as_ref().and_then(decode_id) == Some(NEGOTIATION_ID) =>
            {
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

    fn reply(&mut self, id: Option<Value>, result: Result<Value, QmpError>) -> Output<C> {
        let Some(raw) = id else {
            let what = match &result {
                Err(e) => format!("error reply without id: {}: {}", e.class, e.desc),
                Ok(v) => format!("reply without id: {v}"),
            };
            return Output::Dropped { reason: what };
        };
        let ours = decode_id(&raw);
        match self.in_flight.take_if(|f| Some(f.id) == ours) {
            Some(done) => {
                let transmit = self
                    .queued
                    .pop_front()
                    .map(|(command, context)| self.transmit(command, context));
                Output::Reply {
                    command: done.command,
                    context: done.context,
                    result,
                    transmit,
                }
            }
            None => Output::Dropped {
                reason: format!("reply to unknown id {raw}"),
            },
        }
    }

    /// The monitor closed. Returns the error to report, if the close cut anything short. Queued
    /// commands are dropped with the monitor.
    pub fn eof(&mut self) -> Option<ProtocolError> {
        let cut = match self.state {
            SessionState::AwaitingGreeting => Some("waiting for the greeting".to_string()),
            _ => self
                .in_flight()
                .map(|c| format!("waiting for the reply to '{}'", c.name())),
        };
        self.state = SessionState::Closed;
        self.in_flight = None;
        self.queued.clear();
        cut.map(|what| ProtocolError::Eof { what })
    }
}
