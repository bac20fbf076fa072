//! Glue between a transport (live sockets or a replayed transcript), the QMP sessions and the
//! migration driver. No decisions here: the driver decides, the sessions encode and hold each
//! monitor for one command at a time, the transport moves bytes.

use std::error::Error as StdError;
use std::fmt;

use thiserror::Error;

use crate::driver::{
    self, Action, ApiCall, ApiValue, DomainEvent, DomainState, Input, JobMemory, MigrateRequest,
    Migration, Milestone, Outcome, PerSide, Side, Ticket, VirError,
};
use crate::qmp::{Output, ProtocolError, Session, SessionState};

/// What a transport hands the engine next.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Line {
        side: Side,
        line: String,
    },
    Api(ApiCall),
    Closed {
        side: Side,
        reason: String,
    },
    /// A remark of the harness (a cut link, a killed QEMU): recorded, changes nothing.
    Note(String),
    /// The period of a switch policy passed ([`Input::Tick`]); recorded, so a replay samples
    /// where the recording did.
    Tick,
    /// No more input will come (replay: the transcript ended).
    End,
    /// The call's overall deadline `limit` passed (a live transport's clock; then once more when
    /// the grace period for the cleanup passed): docs/driver-behaviour.md §10.4.
    Deadline {
        limit: std::time::Duration,
    },
}

/// The first point where the shim and a recording disagree (a replaying transport reports it).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub file: String,
    pub line: usize,
    pub expected: String,
    pub got: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replay diverged at {}:{}\n  expected (recorded): {}\n  got (shim):          {}",
            self.file, self.line, self.expected, self.got
        )
    }
}

/// The cause of a transport failure.
pub type TransportCause = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{side} monitor: {source}", side = side.tag())]
    Protocol {
        side: Side,
        #[source]
        source: ProtocolError,
    },
    #[error(transparent)]
    Divergence(#[from] Box<Divergence>),
    /// The transport failed: `what` says what it was doing, `source` why (when there is a cause).
    #[error("{what}")]
    Transport {
        what: String,
        #[source]
        source: Option<TransportCause>,
    },
    #[error("input ended while the driver still waits ({0})")]
    Ended(String),
}

impl EngineError {
    /// A transport failure with its cause.
    pub fn transport(what: impl Into<String>, source: impl Into<TransportCause>) -> Self {
        EngineError::Transport {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// A transport that cannot go on, with no further cause.
    pub fn transport_ended(what: impl Into<String>) -> Self {
        EngineError::Transport {
            what: what.into(),
            source: None,
        }
    }

    /// The message with every cause after it: `what: cause: cause's cause`.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

/// The two ends of the engine that touch the world.
pub trait Transport {
    fn next(&mut self) -> Result<Incoming, EngineError>;
    fn send(&mut self, side: Side, line: &str) -> Result<(), EngineError>;
    /// An API call returned (live: wake the caller; replay: compare with the recording).
    fn api_return(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError>;
    /// libvirt would stop this QEMU now.
    fn stop_qemu(&mut self, _side: Side) {}
    /// A domain event for the user's callback.
    fn domain_event(&mut self, _side: Side, _event: &DomainEvent) {}
    /// A point of the migration worth timing (the driver has no clock; a live transport has).
    fn milestone(&mut self, _milestone: &Milestone) {}
    fn warn(&mut self, _message: &str) {}
    /// The driver finished; a live transport stops reading here, a replay keeps going to the end.
    fn finished(&mut self) -> bool {
        true
    }
}

/// What a run left behind.
#[derive(Debug, Clone)]
pub struct Report {
    pub result: Result<Outcome, VirError>,
    pub src_state: DomainState,
    pub dst_state: DomainState,
    pub versions: PerSide<(u64, u64, u64)>,
    /// What the job keeps for a later call of the same migration (a recovery).
    pub memory: JobMemory,
}

/// Formats an API result the way transcripts and snapshots record it.
pub fn api_result_text(result: &Result<ApiValue, VirError>) -> String {
    match result {
        Ok(ApiValue::Done) => "ok".into(),
        Ok(ApiValue::Stats(s)) => format!("ok stats job_type={}", s.job_type),
        Err(e) => format!("{}: {}", e.code_name(), e.message()),
    }
}

/// The result of an API call made while no migration job runs on the source domain (the
/// driver's [`driver::answer_without_job`]).
pub fn idle_api(call: &ApiCall, domain_active: bool) -> Result<ApiValue, VirError> {
    Err(driver::answer_without_job(call, domain_active))
}

/// What one message of `side`'s QMP session means for the driver: a reply or an event becomes
/// its input, a reply with the queued command it lets out (the monitor is free again). The
/// session's own messages (greeting, ready, dropped) come back as they were.
#[allow(clippy::result_large_err)] // the Err is the message itself, handed straight back
pub fn driver_input(
    side: Side,
    out: Output<Ticket>,
) -> Result<(Input, Option<String>), Output<Ticket>> {
    match out {
        Output::Reply {
            command,
            context,
            result,
            transmit,
        } => Ok((
            Input::Reply {
                side,
                command,
                ticket: context,
                result,
            },
            transmit,
        )),
        Output::Event { name, data } => Ok((Input::Event { side, name, data }, None)),
        other => Err(other),
    }
}

/// Runs one migration over `transport`.
pub fn run(req: MigrateRequest, transport: &mut dyn Transport) -> Result<Report, EngineError> {
    run_with(req, None, transport)
}

/// One migrate call in progress: the sessions, the driver once both monitors are ready, and how
/// the driver ended.
struct Run {
    req: MigrateRequest,
    memory: Option<JobMemory>,
    sessions: PerSide<Session<Ticket>>,
    versions: PerSide<(u64, u64, u64)>,
    driver: Option<Migration>,
    done: Option<Result<Outcome, VirError>>,
    src_active_after: bool,
}

/// Runs one migrate call; a recovery call continues the job `memory` of the failed call.
pub fn run_with(
    req: MigrateRequest,
    memory: Option<JobMemory>,
    transport: &mut dyn Transport,
) -> Result<Report, EngineError> {
    let mut run = Run {
        req,
        memory,
        sessions: PerSide::default(),
        versions: PerSide::default(),
        driver: None,
        done: None,
        src_active_after: true,
    };
    loop {
        let actions = match transport.next()? {
            Incoming::End => break,
            Incoming::Note(_) => Vec::new(),
            Incoming::Tick => match (&mut run.driver, &run.done) {
                (Some(d), None) => d.handle(Input::Tick),
                _ => Vec::new(),
            },
            Incoming::Api(call) => match (&mut run.driver, &run.done) {
                (Some(d), None) => d.handle(Input::Api(call)),
                _ => {
                    let result = idle_api(&call, run.src_active_after);
                    transport.api_return(&call, &result)?;
                    Vec::new()
                }
            },
            Incoming::Closed { side, reason } => run.closed(side, reason)?,
            Incoming::Deadline { limit } => match (&mut run.driver, &run.done) {
                // Also after the call ended: an API call still waiting for QEMU fails.
                (Some(d), _) => d.handle(Input::Deadline { limit }),
                (None, _) => {
                    return Err(EngineError::transport_ended(format!(
                        "migration deadline of {} s passed before both QMP monitors were ready",
                        limit.as_secs_f64()
                    )))
                }
            },
            Incoming::Line { side, line } => run.line(side, &line, transport)?,
        };
        run.execute(actions, transport)?;
        // An API call whose command QEMU has not answered yet is answered from that reply, and
        // the deadline's migrate-pause must reach QEMU, also once the call ended
        // (docs/driver-behaviour.md §10.3, §10.4): read on until then.
        let waits = run.driver.as_ref().is_some_and(Migration::awaits_reply);
        if run.done.is_some() && !waits && transport.finished() {
            break;
        }
    }
    run.report()
}

impl Run {
    fn closed(&mut self, side: Side, reason: String) -> Result<Vec<Action>, EngineError> {
        let cut = self.sessions[side].eof();
        match &mut self.driver {
            // Also after the call ended: an API call still waiting on that monitor fails.
            Some(d) => {
                let why = cut.map(|e| e.to_string()).unwrap_or(reason);
                Ok(d.handle(Input::Closed { side, reason: why }))
            }
            None => Err(EngineError::Protocol {
                side,
                source: cut.unwrap_or(ProtocolError::Eof {
                    what: "negotiating".into(),
                }),
            }),
        }
    }

    fn line(
        &mut self,
        side: Side,
        line: &str,
        transport: &mut dyn Transport,
    ) -> Result<Vec<Action>, EngineError> {
        let session = &mut self.sessions[side];
        let out = match session.receive(line) {
            Ok(out) => out,
            // Garbage on an established session is dropped and reported; the driver's state
            // stays what QEMU's well-formed messages made it.
            Err(e) if session.state() == SessionState::Ready => {
                transport.warn(&format!("{}: dropped: {e}", side.tag()));
                return Ok(Vec::new());
            }
            Err(source) => return Err(EngineError::Protocol { side, source }),
        };
        let input = match driver_input(side, out) {
            Ok((input, transmit)) => {
                // The monitor is free: the command that waited for it goes first.
                if let Some(next) = transmit {
                    transport.send(side, &next)?;
                }
                input
            }
            Err(Output::Greeting { greeting, transmit }) => {
                self.versions[side] = greeting.version;
                transport.send(side, &transmit)?;
                return Ok(Vec::new());
            }
            Err(Output::Ready) => return Ok(self.start_when_both_ready()),
            Err(Output::Dropped { reason }) => {
                transport.warn(&format!("{}: dropped: {reason}", side.tag()));
                return Ok(Vec::new());
            }
            Err(_) => return Ok(Vec::new()), // replies and events became inputs above
        };
        Ok(match self.driver.as_mut() {
            Some(d) => d.handle(input),
            None => Vec::new(),
        })
    }

    fn start_when_both_ready(&mut self) -> Vec<Action> {
        let ready = self
            .sessions
            .iter()
            .all(|(_, s)| s.state() == SessionState::Ready);
        if self.driver.is_some() || !ready {
            return Vec::new();
        }
        let mut d = Migration::new(self.req.clone(), self.versions).with_memory(self.memory.take());
        let actions = d.start();
        self.driver = Some(d);
        actions
    }

    fn execute(
        &mut self,
        actions: Vec<Action>,
        transport: &mut dyn Transport,
    ) -> Result<(), EngineError> {
        for action in actions {
            match action {
                Action::Send {
                    side,
                    command,
                    ticket,
                } => {
                    let line = self.sessions[side]
                        .execute(command, ticket)
                        .map_err(|source| EngineError::Protocol { side, source })?;
                    if let Some(line) = line {
                        transport.send(side, &line)?;
                    }
                }
                Action::Emit { side, event } => transport.domain_event(side, &event),
                Action::ApiReturn { call, result } => transport.api_return(&call, &result)?,
                Action::StopQemu { side } => {
                    if side == Side::Src {
                        self.src_active_after = false;
                    }
                    transport.stop_qemu(side)
                }
                Action::Milestone(m) => transport.milestone(&m),
                Action::Warn(w) => transport.warn(&w),
                Action::Done(r) => self.done = Some(r),
            }
        }
        Ok(())
    }

    fn report(self) -> Result<Report, EngineError> {
        let Some(d) = self.driver else {
            return Err(EngineError::Ended(
                "the QMP handshake of both monitors never completed".into(),
            ));
        };
        let Some(result) = self.done else {
            return Err(EngineError::Ended(format!(
                "source phase {}, destination phase {}",
                d.view(Side::Src).phase.name(),
                d.view(Side::Dst).phase.name()
            )));
        };
        Ok(Report {
            result,
            src_state: d.view(Side::Src).state,
            dst_state: d.view(Side::Dst).state,
            versions: self.versions,
            memory: d.memory(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::EngineError;

    #[test]
    fn a_transport_error_keeps_its_cause() {
        let e = EngineError::transport(
            "src monitor write failed",
            io::Error::new(io::ErrorKind::BrokenPipe, "Broken pipe"),
        );
        assert_eq!(e.to_string(), "src monitor write failed");
        let cause = e.source().expect("chained");
        assert_eq!(
            cause.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::BrokenPipe)
        );
        assert_eq!(e.with_causes(), "src monitor write failed: Broken pipe");
        let ended = EngineError::transport_ended("no migration runs");
        assert!(ended.source().is_none());
        assert_eq!(ended.with_causes(), "no migration runs");
    }
}
