//! The migration state machine: libvirt's QEMU driver for one migrate call between two QEMUs.
//!
//! [`Migration`] takes [`Input`]s and returns [`Action`]s. Within libvirt's phases (the diagram in
//! the [driver module's docs](super)) it walks a `Step` at a time: one command, or a wait for
//! events. The steps are grouped by concern, each group handled in its own module: attach and
//! Begin here, Prepare and Finish in `destination`, Perform and Confirm in `source`, recovery in
//! `resume`, the cleanup after a failure in `failure`.

use serde_json::Value;

use super::domain;
use super::flags::{check_driver_flags, check_public_flags};
use super::messages::*;
use super::params;
use super::phase::{AsyncJob, DomainView, Phase};
use super::side::{PerSide, Side};
use super::stats::{JobStats, MigStatus};
use super::vocab::*;
use crate::qmp::{Command, QmpError};

/// The driver's main line, in the order a call walks it (the derived order is used: "before
/// Begin", "while migrating").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    /// Each side's capabilities, events and status (docs/driver-behaviour.md §0).
    Attach(Attach),
    /// Flag checks and the jobs (§1).
    Begin,
    /// The destination's Prepare (§3).
    Prepare(Prepare),
    /// The source's Perform up to `migrate` (§4.1).
    Perform(Perform),
    /// A recovery call's Prepare and Perform (§11.3).
    Resume(Resume),
    /// The source's wait for the migration to leave pre-copy (§4.2).
    Wait(Wait),
    /// The destination's Finish (§5).
    Finish(Finish),
    /// The source's Confirm (§5).
    Confirm(Confirm),
    /// Failure before the switch: read error-desc, cancel, restore the source (§10.1).
    Cleanup(Cleanup),
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Attach {
    QueryCaps(Side),
    EnableEvents(Side),
    QueryStatus(Side),
    /// POSTCOPY_RESUME: `query-migrate` must report postcopy-paused.
    ResumeQuery(Side),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Prepare {
    QueryParams,
    SetCaps,
    SetParams,
    Incoming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Perform {
    QueryParams,
    SetCaps,
    SetParams,
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Resume {
    DstRecover,
    SrcParams,
    SrcMigrate,
    SrcWaitRecovered,
    /// libvirt refreshes the statistics each time its wait returns: once recovery started...
    SrcStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Wait {
    Events,
    /// ... and at pre-switchover, before migrate-continue.
    PauseStats,
    Continue,
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Finish {
    WaitFirst,
    Cont,
    WaitResume,
    WaitCompleted,
    ResetCaps,
    ResetParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Confirm {
    WaitCompleted,
    QueryFinal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cleanup {
    Query,
    Cancel,
    /// qemuMigrationSrcCancel waits until QEMU's migration left `cancelling`.
    WaitCancelled,
    ResetCaps,
    ResetParams,
    Cont,
}

/// Why the driver sent a command.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Purpose {
    /// A step of the main line.
    Main(Step),
    /// An API call made while the migration runs.
    Api(ApiCall),
    /// VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY's (or our switch policy's) `migrate-start-postcopy`.
    AutoSwitch,
    /// Our switch policy's sample (`query-migrate`).
    Policy,
    /// VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY on QEMU > 10.0: the `query-migrate` that tells whether
    /// the first full pre-copy pass is done (docs/driver-behaviour.md §7).
    FirstPassProbe,
    /// The deadline passed in post-copy: `migrate-pause` (docs/driver-behaviour.md §10.4).
    DeadlinePause,
}

/// What the driver sends with a command and gets back with its reply: why it sent it. Only the
/// driver reads it; the QMP session carries it (the session owns the QMP ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// Tells apart the main-line commands, so a late reply does not end a newer wait.
    seq: u64,
    pub(super) purpose: Purpose,
}

/// A fresh migration, or a recovery (VIR_MIGRATE_POSTCOPY_RESUME) of one that failed in post-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    Fresh,
    Resume,
}

/// How far the source's wait got at `pre-switchover` (libvirt reads the statistics, then waits for
/// the STOP event, then sends `migrate-continue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Switchover {
    NotReached,
    StatsRead,
    Continued,
}

/// The QEMU driver for one migrate call.
#[derive(Debug)]
pub struct Migration {
    pub(super) req: MigrateRequest,
    /// The flags the job runs with (PAUSED may be added after Begin, as libvirt does).
    pub(super) flags: u32,
    pub(super) kind: CallKind,
    pub(super) sides: PerSide<DomainView>,
    pub(super) step: Step,
    /// The main-line command whose reply the main line waits for.
    pub(super) awaiting: Option<u64>,
    next_seq: u64,
    pub(super) last_pass: u64,
    /// The `migrate-start-postcopy` sent, and who asked for it.
    pub(super) switch: Option<SwitchedBy>,
    /// QEMU reported postcopy-active (or a recovery call: the migration already was in post-copy).
    pub(super) entered_postcopy: bool,
    /// What the destination's Finish saw before `cont` (libvirt's inPostCopy in
    /// qemuMigrationDstFinishFresh): post-copy-active, or already completed. It decides the
    /// RESUME event's detail and whether a second RESUMED_MIGRATED follows the completion.
    pub(super) finish_in_postcopy: bool,
    pub(super) stats: Option<JobStats>,
    pub(super) error: Option<VirError>,
    /// virDomainAbortJob came before `migrate` was answered.
    pub(super) abort_requested: bool,
    pub(super) dst_version: (u64, u64, u64),
    pub(super) src_version: (u64, u64, u64),
    /// A FirstPassProbe is on its way.
    pub(super) probe_pending: bool,
    /// The call's deadline passed once (the next expiry ends the call where it is).
    pub(super) deadline_passed: bool,
    pub(super) switchover: Switchover,
    /// libvirt's priv->migrationRecoverSetup: QEMU (9.1+) reported postcopy-recover-setup.
    pub(super) recover_setup_seen: bool,
    /// Our switch policy's samples (docs/driver-behaviour.md §7.1).
    pub(super) policy: super::policy::PolicyState,
    /// Commands whose reply matters after the call ended (ticket, side, what for): an API
    /// call's (answered from QEMU's reply, docs/driver-behaviour.md §10.3) and the deadline's
    /// `migrate-pause` (written and answered before the engine stops reading, §10.4).
    pub(super) awaited: Vec<(u64, Side, Awaited)>,
}

/// What a command that matters after the call ended was sent for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Awaited {
    Api(ApiCall),
    DeadlinePause,
}

/// QEMU answered the deadline's `migrate-pause`: only an error is worth a word.
fn deadline_pause_answered(result: Result<Value, QmpError>, out: &mut Vec<Action>) {
    if let Err(e) = result {
        out.push(Action::Warn(format!(
            "pausing post-copy at the deadline failed: {}",
            e.desc
        )));
    }
}

pub(super) fn qemu_cmd_error(command: &Command, e: &QmpError) -> VirError {
    VirError::new(
        code::INTERNAL_ERROR,
        format!(
            "unable to execute QEMU command '{}': {}",
            command.name(),
            e.desc
        ),
    )
}

impl Migration {
    /// `versions`: the QEMU versions of the source and the destination, from their greetings.
    /// With VIR_MIGRATE_POSTCOPY_RESUME in the flags, the migration recovers a failed post-copy.
    pub fn new(req: MigrateRequest, versions: PerSide<(u64, u64, u64)>) -> Self {
        let kind = if req.flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 {
            CallKind::Resume
        } else {
            CallKind::Fresh
        };
        Migration {
            flags: req.flags,
            req,
            kind,
            sides: PerSide::new(DomainView::source(), DomainView::destination()),
            step: Step::Attach(Attach::QueryCaps(Side::Src)),
            awaiting: None,
            next_seq: 1,
            last_pass: 0,
            switch: None,
            entered_postcopy: kind == CallKind::Resume,
            finish_in_postcopy: kind == CallKind::Resume,
            stats: None,
            error: None,
            abort_requested: false,
            dst_version: versions.dst,
            src_version: versions.src,
            probe_pending: false,
            deadline_passed: false,
            switchover: Switchover::NotReached,
            recover_setup_seen: false,
            policy: Default::default(),
            awaited: Vec::new(),
        }
    }

    /// A recovery call continues the job of the failed call: its saved parameters.
    pub fn with_memory(mut self, memory: Option<JobMemory>) -> Self {
        if let (CallKind::Resume, Some(m)) = (self.kind, memory) {
            let PerSide { src, dst } = m.orig_params;
            self.sides.src.orig_params = src;
            self.sides.dst.orig_params = dst;
        }
        self
    }

    /// What the job keeps for a later call of the same migration.
    pub fn memory(&self) -> JobMemory {
        JobMemory {
            orig_params: PerSide::from_fn(|side| self.sides[side].orig_params.clone()),
        }
    }

    pub fn view(&self, side: Side) -> &DomainView {
        &self.sides[side]
    }

    pub fn is_finished(&self) -> bool {
        self.step == Step::Finished
    }

    /// Whether a command whose reply matters is still unanswered: an API call's (its answer
    /// comes from that reply even once the migrate call ended: libvirt's AbortJob returns what
    /// `migrate-pause` returned, the failure its event causes is the migrate call's) or the
    /// deadline's `migrate-pause` (queued behind a command on its way, it is written only when
    /// that one is answered). Whoever runs the driver reads on until this is false.
    pub fn awaits_reply(&self) -> bool {
        !self.awaited.is_empty()
    }

    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Starts the migration: the first commands to send.
    pub fn start(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.advance(&mut out);
        out
    }

    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.step == Step::Finished {
            // The job is over: calls meet no job; events change nothing; a reply answers only
            // the API call still waiting for it.
            match input {
                Input::Api(call) => {
                    let err = domain::answer_without_job(&call, self.sides.src.active);
                    out.push(Action::ApiReturn {
                        call,
                        result: Err(err),
                    });
                }
                Input::Reply {
                    command,
                    ticket:
                        Ticket {
                            seq,
                            purpose: purpose @ (Purpose::Api(_) | Purpose::DeadlinePause),
                        },
                    result,
                    ..
                } => {
                    self.answered(seq);
                    match purpose {
                        Purpose::Api(call) => self.on_api_reply(call, &command, result, &mut out),
                        _ => deadline_pause_answered(result, &mut out),
                    }
                }
                Input::Closed { side, reason } => {
                    self.awaited_lost(side, &Migration::monitor_closed(side, &reason), &mut out)
                }
                Input::Deadline { limit } => {
                    let err = VirError::new(
                        code::OPERATION_TIMEOUT,
                        format!(
                            "migration deadline of {} s passed before QEMU answered the call",
                            limit.as_secs_f64()
                        ),
                    );
                    for side in Side::BOTH {
                        self.awaited_lost(side, &err, &mut out);
                    }
                }
                _ => {}
            }
            return out;
        }
        match input {
            Input::Reply {
                command,
                ticket,
                result,
                ..
            } => self.on_reply(command, ticket, result, &mut out),
            Input::Event { side, name, data } => self.on_event(side, &name, &data, &mut out),
            Input::Api(call) => self.on_api(call, &mut out),
            Input::Closed { side, reason } => {
                self.awaited_lost(side, &Migration::monitor_closed(side, &reason), &mut out);
                self.on_closed(side, reason, &mut out)
            }
            Input::Tick => self.on_tick(&mut out),
            Input::Deadline { limit } => self.on_deadline(limit, &mut out),
        }
        self.advance(&mut out);
        out
    }

    /// Sends `command` on `side`; the QMP session holds it while the monitor is busy.
    pub(super) fn send(
        &mut self,
        side: Side,
        command: Command,
        purpose: Purpose,
        out: &mut Vec<Action>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        match &purpose {
            Purpose::Api(call) => self.awaited.push((seq, side, Awaited::Api(call.clone()))),
            Purpose::DeadlinePause => self.awaited.push((seq, side, Awaited::DeadlinePause)),
            _ => {}
        }
        out.push(Action::Send {
            side,
            command,
            ticket: Ticket { seq, purpose },
        });
        seq
    }

    /// Sends the current step's command; the main line waits for its reply.
    pub(super) fn main_cmd(&mut self, side: Side, command: Command, out: &mut Vec<Action>) {
        let seq = self.send(side, command, Purpose::Main(self.step), out);
        self.awaiting = Some(seq);
    }

    pub(super) fn emit(&mut self, side: Side, ev: i32, detail: i32, out: &mut Vec<Action>) {
        out.push(Action::Emit {
            side,
            event: DomainEvent::Lifecycle { event: ev, detail },
        });
    }

    pub(super) fn set_state(&mut self, side: Side, st: i32, reason: i32) {
        self.sides[side].state = DomainState::new(st, reason);
    }

    fn advance(&mut self, out: &mut Vec<Action>) {
        loop {
            if self.awaiting.is_some() || self.step == Step::Finished {
                return;
            }
            let before = self.step;
            match self.step {
                Step::Attach(a) => self.attach_next(a, out),
                Step::Begin => self.begin(out),
                Step::Prepare(p) => self.prepare_next(p, out),
                Step::Perform(p) => self.perform_next(p, out),
                Step::Resume(r) => self.resume_next(r, out),
                Step::Wait(w) => self.wait_next(w, out),
                Step::Finish(f) => self.finish_next(f, out),
                Step::Confirm(c) => self.confirm_next(c, out),
                Step::Cleanup(c) => self.cleanup_next(c, out),
                Step::Finished => return,
            }
            if self.step == before && self.awaiting.is_none() {
                return; // waiting for events
            }
        }
    }

    fn on_reply(
        &mut self,
        command: Command,
        ticket: Ticket,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        match ticket.purpose {
            Purpose::Main(step) => {
                if self.awaiting != Some(ticket.seq) {
                    // A step the driver left (a failure started the cleanup meanwhile): its late
                    // reply changes nothing.
                    return;
                }
                self.awaiting = None;
                match result {
                    Ok(value) => self.on_main_reply(step, &value, out),
                    Err(e) => self.on_main_error(step, qemu_cmd_error(&command, &e), out),
                }
            }
            Purpose::Api(call) => {
                self.answered(ticket.seq);
                self.on_api_reply(call, &command, result, out)
            }
            Purpose::Policy => self.on_policy_reply(result, out),
            Purpose::FirstPassProbe => self.on_first_pass_probe(result, out),
            Purpose::DeadlinePause => {
                self.answered(ticket.seq);
                deadline_pause_answered(result, out);
            }
            Purpose::AutoSwitch => {
                if let Err(e) = result {
                    out.push(Action::Warn(format!(
                        "switching to post-copy failed: {}",
                        e.desc
                    )));
                }
            }
        }
    }

    pub(super) fn on_main_reply(&mut self, step: Step, value: &Value, out: &mut Vec<Action>) {
        match step {
            Step::Attach(a) => self.attach_reply(a, value, out),
            Step::Prepare(p) => self.prepare_reply(p, value, out),
            Step::Perform(p) => self.perform_reply(p, value),
            Step::Resume(r) => self.resume_reply(r, value),
            Step::Wait(w) => self.wait_reply(w, value),
            Step::Finish(f) => self.finish_reply(f),
            Step::Confirm(c) => self.confirm_reply(c, value, out),
            Step::Cleanup(c) => self.cleanup_reply(c, value, out),
            // No command is sent in these.
            Step::Begin | Step::Finished => {}
        }
    }

    fn attach_next(&mut self, step: Attach, out: &mut Vec<Action>) {
        match step {
            Attach::QueryCaps(side) => self.main_cmd(side, Command::QueryMigrateCapabilities, out),
            Attach::EnableEvents(side) => self.main_cmd(side, Command::enable_events(), out),
            Attach::QueryStatus(side) => self.main_cmd(side, Command::QueryStatus, out),
            Attach::ResumeQuery(side) => self.main_cmd(side, Command::QueryMigrate, out),
        }
    }

    fn attach_reply(&mut self, step: Attach, value: &Value, out: &mut Vec<Action>) {
        match step {
            Attach::QueryCaps(side) => match params::supported_caps(value) {
                Ok(mut caps) => {
                    caps.retain(|c| c != "events");
                    self.sides[side].caps = caps;
                    // A paused post-copy migration is still a migration: QEMU refuses capability
                    // changes, and `events` is on since the migration started.
                    self.step = Step::Attach(match self.kind {
                        CallKind::Resume => Attach::QueryStatus(side),
                        CallKind::Fresh => Attach::EnableEvents(side),
                    });
                }
                Err(e) => {
                    self.finish_early(VirError::new(code::INTERNAL_ERROR, e.to_string()), out)
                }
            },
            Attach::EnableEvents(side) => self.step = Step::Attach(Attach::QueryStatus(side)),
            Attach::QueryStatus(side) => self.status_reply(side, value, out),
            Attach::ResumeQuery(side) => {
                let st = value
                    .get("status")
                    .and_then(Value::as_str)
                    .and_then(MigStatus::parse);
                self.sides[side].status = st;
                self.step = match side {
                    Side::Src => Step::Attach(Attach::QueryCaps(Side::Dst)),
                    Side::Dst => Step::Begin,
                };
            }
        }
    }

    fn status_reply(&mut self, side: Side, value: &Value, out: &mut Vec<Action>) {
        let status = value.get("status").and_then(Value::as_str).unwrap_or("");
        let running = value
            .get("running")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match side {
            _ if self.kind == CallKind::Resume => {
                self.step = Step::Attach(Attach::ResumeQuery(side))
            }
            Side::Src => {
                if !running {
                    self.set_state(Side::Src, state::PAUSED, state::PAUSED_USER);
                }
                self.step = Step::Attach(Attach::QueryCaps(Side::Dst));
            }
            Side::Dst => {
                if status != "inmigrate" && status != "prelaunch" {
                    return self.finish_early(
                        VirError::new(
                            code::OPERATION_INVALID,
                            format!("destination QEMU is not waiting for an incoming migration (status '{status}'); start it with -incoming defer"),
                        ),
                        out,
                    );
                }
                self.step = Step::Begin;
            }
        }
    }

    fn begin(&mut self, out: &mut Vec<Action>) {
        if let Err(e) = check_public_flags(self.req.flags)
            .and_then(|_| check_driver_flags(self.req.flags, "qemuDomainMigrateBegin3Params"))
            .and_then(|_| super::policy::check_policy(self.req.switch_policy, self.req.flags))
        {
            return self.finish_early(e, out);
        }
        if !self.sides.src.active {
            return self.finish_early(
                VirError::new(code::OPERATION_INVALID, "domain is not running"),
                out,
            );
        }
        if self.kind == CallKind::Resume {
            return self.begin_resume(out);
        }
        self.sides.src.job = AsyncJob::MigrationOut;
        self.sides.src.phase = Phase::Begin3;
        // libvirt adds VIR_MIGRATE_PAUSED after Begin when the domain is paused
        // (docs/driver-behaviour.md §1.3).
        if self.sides.src.state.state == state::PAUSED
            && self.flags & VIR_MIGRATE_POSTCOPY_RESUME == 0
        {
            self.flags |= VIR_MIGRATE_PAUSED;
        }
        // Prepare on the destination sees the flags without our source-only flag.
        let dflags = self.flags & !VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
        if let Err(e) = check_driver_flags(dflags, "qemuDomainMigratePrepare3Params") {
            self.sides.src.job = AsyncJob::None;
            self.sides.src.phase = Phase::None;
            return self.finish_early(e, out);
        }
        self.sides.dst.job = AsyncJob::MigrationIn;
        self.sides.dst.phase = Phase::Prepare;
        self.step = Step::Prepare(Prepare::QueryParams);
    }
}
