//! Glue between a transport (live sockets or a replayed transcript), the QMP sessions and the
//! migration driver. No decisions here: the driver decides, the transport moves bytes.

use thiserror::Error;

use crate::driver::{
    abort_without_job, start_postcopy_without_job, Action, ApiCall, ApiValue, DomainEvent,
    DomainState, Input, JobMemory, MigrateRequest, Migration, Outcome, Side, VirError,
};
use crate::qmp::{Output, ProtocolError, Session, SessionState};
use crate::transcript::Divergence;

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
    /// No more input will come (replay: the transcript ended).
    End,
}

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
    #[error("{0}")]
    Io(String),
    #[error("input ended while the driver still waits ({0})")]
    Ended(String),
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
    pub versions: [(u64, u64, u64); 2],
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

/// The result of an API call made while no migration job runs on the source domain.
pub fn idle_api(call: &ApiCall, domain_active: bool) -> Result<ApiValue, VirError> {
    Err(match call {
        ApiCall::StartPostCopy { flags } => start_postcopy_without_job(*flags, domain_active),
        ApiCall::AbortJob { flags } => abort_without_job(*flags, domain_active),
        ApiCall::GetJobStats => VirError::new(
            crate::driver::vocab::code::OPERATION_INVALID,
            "no job is active on the domain",
        ),
    })
}

fn idx(side: Side) -> usize {
    match side {
        Side::Src => 0,
        Side::Dst => 1,
    }
}

/// Runs one migration over `transport`.
pub fn run(req: MigrateRequest, transport: &mut dyn Transport) -> Result<Report, EngineError> {
    run_with(req, None, transport)
}

/// Runs one migrate call; a recovery call continues the job `memory` of the failed call.
pub fn run_with(
    req: MigrateRequest,
    memory: Option<JobMemory>,
    transport: &mut dyn Transport,
) -> Result<Report, EngineError> {
    let mut memory = memory;
    let mut sessions = [Session::new(), Session::new()];
    let mut driver: Option<Migration> = None;
    let mut done: Option<Result<Outcome, VirError>> = None;
    let mut versions = [(0, 0, 0); 2];
    let mut src_active_after = true;
    loop {
        let incoming = transport.next()?;
        let mut actions = Vec::new();
        match incoming {
            Incoming::End => break,
            Incoming::Note(_) => {}
            Incoming::Api(call) => match (&mut driver, &done) {
                (Some(d), None) => actions = d.handle(Input::Api(call)),
                _ => {
                    let result = idle_api(&call, src_active_after);
                    transport.api_return(&call, &result)?;
                }
            },
            Incoming::Closed { side, reason } => {
                let s = &mut sessions[idx(side)];
                let cut = s.eof();
                match (&mut driver, &done) {
                    (Some(d), None) => {
                        let why = cut.map(|e| e.to_string()).unwrap_or(reason);
                        actions = d.handle(Input::Closed { side, reason: why });
                    }
                    (None, _) => {
                        return Err(EngineError::Protocol {
                            side,
                            source: cut.unwrap_or(ProtocolError::Eof {
                                what: "negotiating".into(),
                            }),
                        })
                    }
                    _ => {}
                }
            }
            Incoming::Line { side, line } => {
                let s = &mut sessions[idx(side)];
                let out = match s.receive(&line) {
                    Ok(out) => out,
                    // Garbage on an established session is dropped and reported; the driver's
                    // state stays what QEMU's well-formed messages made it.
                    Err(e) if s.state() == SessionState::Ready => {
                        transport.warn(&format!("{}: dropped: {e}", side.tag()));
                        continue;
                    }
                    Err(source) => return Err(EngineError::Protocol { side, source }),
                };
                match out {
                    Output::Greeting { greeting, transmit } => {
                        versions[idx(side)] = greeting.version;
                        transport.send(side, &transmit)?;
                    }
                    Output::Ready => {
                        if driver.is_none()
                            && sessions.iter().all(|s| s.state() == SessionState::Ready)
                        {
                            let mut d =
                                Migration::new(req.clone(), versions).with_memory(memory.take());
                            actions = d.start();
                            driver = Some(d);
                        }
                    }
                    Output::Reply { id, result, .. } => {
                        if let Some(d) = driver.as_mut() {
                            actions = d.handle(Input::Reply { side, id, result });
                        }
                    }
                    Output::Event { name, data } => {
                        if let Some(d) = driver.as_mut() {
                            actions = d.handle(Input::Event { side, name, data });
                        }
                    }
                    Output::Dropped { reason } => {
                        transport.warn(&format!("{}: dropped: {reason}", side.tag()))
                    }
                }
            }
        }
        for action in actions {
            match action {
                Action::Send {
                    side,
                    id,
                    command,
                    args,
                } => {
                    let line = sessions[idx(side)]
                        .command(&command, args.as_ref(), id)
                        .map_err(|source| EngineError::Protocol { side, source })?;
                    transport.send(side, &line)?;
                }
                Action::Emit { side, event } => transport.domain_event(side, &event),
                Action::ApiReturn { call, result } => transport.api_return(&call, &result)?,
                Action::StopQemu { side } => {
                    if side == Side::Src {
                        src_active_after = false;
                    }
                    transport.stop_qemu(side)
                }
                Action::Warn(w) => transport.warn(&w),
                Action::Done(r) => done = Some(r),
            }
        }
        if done.is_some() && transport.finished() {
            break;
        }
    }
    let Some(d) = driver else {
        return Err(EngineError::Ended(
            "the QMP handshake of both monitors never completed".into(),
        ));
    };
    let Some(result) = done else {
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
        versions,
        memory: d.memory(),
    })
}
