//! The migration state machine: libvirt's QEMU driver for one live migration between two QEMUs.
//!
//! ```mermaid
//! stateDiagram-v2
//!     Probe --> Begin: caps of both QEMUs known, events on
//!     Begin --> Prepare: flags valid (B.3, A.1)
//!     Prepare --> Perform: dst migrate-incoming
//!     Perform --> SrcWait: src migrate
//!     SrcWait --> SrcWait: pre-switchover + STOP / migrate-continue
//!     SrcWait --> Finish: postcopy-active or completed
//!     SrcWait --> Cleanup: failed / cancelled
//!     Finish --> Confirm: dst completed, cont
//!     Finish --> PostcopyFailed: postcopy-paused
//!     Confirm --> [*]
//! ```
//!
//! Input comes in as [`Input`], decisions go out as [`Action`]s. No sockets, no clocks, no threads.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::params::{self, Party};
use super::stats::{JobStats, MigStatus};
use super::vocab::*;
use crate::qmp::QmpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    pub fn tag(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dst => "dst",
        }
    }
}

/// What the caller asked for: virDomainMigrate3's flags and the parameters that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateRequest {
    pub flags: u32,
    /// Where the destination listens, in QEMU's syntax: `tcp:HOST:PORT` or `unix:PATH`.
    pub uri: String,
    /// VIR_MIGRATE_PARAM_BANDWIDTH, MiB/s.
    pub bandwidth_mib: Option<u64>,
    /// VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, MiB/s.
    pub postcopy_bandwidth_mib: Option<u64>,
    /// Where the source connects, when it differs from `uri` (a relay between the two QEMUs).
    pub connect_uri: Option<String>,
}

impl MigrateRequest {
    pub fn new(flags: u32, uri: impl Into<String>) -> Self {
        MigrateRequest {
            flags,
            uri: uri.into(),
            bandwidth_mib: None,
            postcopy_bandwidth_mib: None,
            connect_uri: None,
        }
    }

    fn source_uri(&self) -> &str {
        self.connect_uri.as_deref().unwrap_or(&self.uri)
    }
}

/// What libvirt's job keeps between the calls of one migration (it lives in the daemon's domain
/// object): the parameters saved in the first call's Prepare and Perform, which the end of a
/// recovery restores. The shim hands it from one call to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMemory {
    pub src_orig_params: Option<Value>,
    pub dst_orig_params: Option<Value>,
}

/// The name the shim gives the domain in libvirt's messages ("domain '%s' ...").
pub const DOMAIN_NAME: &str = "guest";

/// A libvirt domain event, as a callback would receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Lifecycle { event: i32, detail: i32 },
    MigrationIteration { iteration: u64 },
    JobCompleted,
}

impl DomainEvent {
    pub fn describe(&self) -> String {
        match self {
            DomainEvent::Lifecycle { event, detail } => event::name(*event, *detail).to_string(),
            DomainEvent::MigrationIteration { iteration } => {
                format!("MIGRATION_ITERATION {iteration}")
            }
            DomainEvent::JobCompleted => "JOB_COMPLETED".to_string(),
        }
    }
}

/// API calls made while the migration runs (from another thread, through the IO layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    StartPostCopy { flags: u32 },
    AbortJob { flags: u32 },
    GetJobStats,
}

impl ApiCall {
    pub fn name(&self) -> &'static str {
        match self {
            ApiCall::StartPostCopy { .. } => "start_postcopy",
            ApiCall::AbortJob { .. } => "abort_job",
            ApiCall::GetJobStats => "get_job_stats",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Reply {
        side: Side,
        id: u64,
        result: Result<Value, QmpError>,
    },
    Event {
        side: Side,
        name: String,
        data: Value,
    },
    Api(ApiCall),
    /// A monitor closed or broke; `reason` says how.
    Closed {
        side: Side,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiValue {
    Done,
    Stats(JobStats),
}

/// Who switched the migration to post-copy, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchedBy {
    /// VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the driver itself, on MIGRATION_PASS `pass`.
    AfterPrecopy { pass: u64 },
    /// virDomainMigrateStartPostCopy, while the last pass reported was `pass`.
    Api { pass: u64 },
}

/// The result of a migration that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Completed statistics, as virDomainGetJobStats(VIR_DOMAIN_JOB_STATS_COMPLETED) on the source.
    pub stats: JobStats,
    /// True if the migration went through post-copy (QEMU reported postcopy-active).
    pub postcopy: bool,
    /// The `migrate-start-postcopy` the driver or the API sent, if any.
    pub switch: Option<SwitchedBy>,
    /// The last MIGRATION_PASS seen.
    pub last_pass: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        side: Side,
        id: u64,
        command: String,
        args: Option<Value>,
    },
    Emit {
        side: Side,
        event: DomainEvent,
    },
    ApiReturn {
        call: ApiCall,
        result: Result<ApiValue, VirError>,
    },
    /// libvirt's qemuProcessStop: the source after a completed migration, the destination after a
    /// failure before the switch. Never issued once the guest runs on the destination in post-copy.
    StopQemu {
        side: Side,
    },
    /// Something worth a warning that changes nothing (an unknown event status, a failed auto switch).
    Warn(String),
    Done(Result<Outcome, VirError>),
}

/// libvirt's migration phases (qemu_migration.h), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    None,
    Begin3,
    Perform3,
    Perform3Done,
    Confirm3Cancelled,
    Confirm3,
    Prepare,
    Finish3,
    PostcopyFailed,
    BeginResume,
    PerformResume,
    ConfirmResume,
    PrepareResume,
    FinishResume,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::None => "none",
            Phase::Begin3 => "begin3",
            Phase::Perform3 => "perform3",
            Phase::Perform3Done => "perform3_done",
            Phase::Confirm3Cancelled => "confirm3_cancelled",
            Phase::Confirm3 => "confirm3",
            Phase::Prepare => "prepare",
            Phase::Finish3 => "finish3",
            Phase::PostcopyFailed => "postcopy_failed",
            Phase::BeginResume => "begin_resume",
            Phase::PerformResume => "perform_resume",
            Phase::ConfirmResume => "confirm_resume",
            Phase::PrepareResume => "prepare_resume",
            Phase::FinishResume => "finish_resume",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncJob {
    None,
    MigrationOut,
    MigrationIn,
}

/// What the driver knows of one domain (one QEMU).
#[derive(Debug, Clone)]
pub struct DomainView {
    pub state: DomainState,
    pub job: AsyncJob,
    pub phase: Phase,
    pub status: Option<MigStatus>,
    /// libvirt's `job->asyncPaused`: the migration failed in post-copy and waits for recovery.
    pub async_paused: bool,
    caps: Vec<String>,
    orig_params: Option<Value>,
    active: bool,
}

impl DomainView {
    fn new() -> Self {
        DomainView {
            state: DomainState::new(state::RUNNING, state::RUNNING_UNPAUSED),
            job: AsyncJob::None,
            phase: Phase::None,
            status: None,
            async_paused: false,
            caps: Vec::new(),
            orig_params: None,
            active: true,
        }
    }
    pub fn supported_caps(&self) -> &[String] {
        &self.caps
    }
}

/// The driver's main line: one command at a time, or a wait for events. Ordered as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    QueryCaps(Side),
    EnableEvents(Side),
    QueryStatus(Side),
    /// POSTCOPY_RESUME: `query-migrate` must report postcopy-paused.
    ResumeQuery(Side),
    Begin,
    DstQueryParams,
    DstSetCaps,
    DstSetParams,
    DstIncoming,
    SrcQueryParams,
    SrcSetCaps,
    SrcSetParams,
    SrcMigrate,
    DstRecover,
    SrcResumeParams,
    SrcResume,
    SrcWaitRecovered,
    /// libvirt refreshes the statistics each time its wait returns: once recovery started...
    SrcRecoveredStats,
    SrcWait,
    /// ... and at pre-switchover, before migrate-continue.
    SrcPauseStats,
    SrcContinue,
    SrcQueryStats,
    DstWaitFirst,
    DstCont,
    DstWaitResume,
    DstWaitCompleted,
    DstResetCaps,
    DstResetParams,
    SrcWaitCompleted,
    SrcQueryFinal,
    /// Failure before the switch: read error-desc, cancel, restore the source, stop the destination.
    FailQuery,
    FailCancel,
    FailResetCaps,
    FailResetParams,
    FailCont,
    Finished,
}

#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Main(Step),
    Api(ApiCall),
    AutoSwitch,
}

/// The QEMU driver for one migration.
#[derive(Debug)]
pub struct Migration {
    req: MigrateRequest,
    /// The flags the job runs with (PAUSED may be added after Begin, as libvirt does).
    flags: u32,
    src: DomainView,
    dst: DomainView,
    step: Step,
    awaiting: Option<u64>,
    pending: BTreeMap<u64, Purpose>,
    next_id: u64,
    last_pass: u64,
    switch: Option<SwitchedBy>,
    switch_sent: bool,
    entered_postcopy: bool,
    stats: Option<JobStats>,
    error: Option<VirError>,
    abort_requested: bool,
    dst_version: (u64, u64, u64),
    continue_sent: bool,
    pause_stats_fetched: bool,
    /// Per monitor (source, destination): the command awaiting its reply, and those waiting.
    in_flight: [Option<u64>; 2],
    queued: [std::collections::VecDeque<Action>; 2],
    resume: bool,
    /// libvirt's priv->migrationRecoverSetup: QEMU (9.1+) reported postcopy-recover-setup.
    recover_setup_seen: bool,
}

fn qemu_cmd_error(command: &str, e: &QmpError) -> VirError {
    VirError::new(
        code::INTERNAL_ERROR,
        format!("unable to execute QEMU command '{command}': {}", e.desc),
    )
}

/// Flag checks of the public API (libvirt-domain.c, all six virDomainMigrate* entry points).
pub fn check_public_flags(flags: u32) -> Result<(), VirError> {
    if flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0 && flags & VIR_MIGRATE_POSTCOPY == 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            "Flag 'VIR_MIGRATE_POSTCOPY' is required by flag 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY'",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0 && flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            "Flags 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY' and 'VIR_MIGRATE_POSTCOPY_RESUME' are mutually exclusive",
        ));
    }
    Ok(())
}

/// The driver's flag checks, run in Begin (source) and again in Prepare (destination):
/// virCheckFlags, the post-copy rules of B.3, our flag's rules (A.1), then the shim's scope.
pub fn check_driver_flags(flags: u32, function: &str) -> Result<(), VirError> {
    let unknown = flags & !QEMU_MIGRATION_FLAGS;
    if unknown != 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            format!("unsupported flags (0x{unknown:x}) in function {function}"),
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY != 0
        && (flags & VIR_MIGRATE_LIVE == 0 || flags & VIR_MIGRATE_PAUSED != 0)
    {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "post-copy migration is not supported with non-live or paused migration",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY != 0 && flags & VIR_MIGRATE_TUNNELLED != 0 {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "post-copy is not supported with tunnelled migration",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 && flags & VIR_MIGRATE_POSTCOPY == 0 {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "resuming failed post-copy migration requires post-copy to be enabled",
        ));
    }
    check_public_flags(flags)?;
    for (bit, name) in OUT_OF_SCOPE_FLAGS {
        if flags & bit != 0 {
            return Err(VirError::new(
                code::ARGUMENT_UNSUPPORTED,
                format!("migration flag {name} is not supported by the post-copy shim"),
            ));
        }
    }
    Ok(())
}

/// virDomainMigrateStartPostCopy's checks when no migration job runs on the domain (B.2 rows 3, 7, 8).
pub fn start_postcopy_without_job(flags: u32, domain_active: bool) -> VirError {
    if flags != 0 {
        return VirError::new(
            code::INVALID_ARG,
            format!("unsupported flags (0x{flags:x}) in function qemuDomainMigrateStartPostCopy"),
        );
    }
    if !domain_active {
        return VirError::new(code::OPERATION_INVALID, "domain is not running");
    }
    VirError::new(
        code::OPERATION_INVALID,
        "post-copy can only be started while outgoing migration is in progress",
    )
}

/// virDomainAbortJobFlags when no job runs on the domain.
pub fn abort_without_job(flags: u32, domain_active: bool) -> VirError {
    if flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
        return VirError::new(
            code::INVALID_ARG,
            format!(
                "unsupported flags (0x{:x}) in function qemuDomainAbortJobFlags",
                flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY
            ),
        );
    }
    if !domain_active {
        return VirError::new(code::OPERATION_INVALID, "domain is not running");
    }
    if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
        return VirError::new(
            code::OPERATION_INVALID,
            "current job is not outgoing migration in post-copy mode",
        );
    }
    VirError::new(code::OPERATION_INVALID, "no job is active on the domain")
}

impl Migration {
    /// `versions`: the QEMU versions of the source and the destination, from their greetings.
    /// With VIR_MIGRATE_POSTCOPY_RESUME in the flags, the migration recovers a failed post-copy.
    pub fn new(req: MigrateRequest, versions: [(u64, u64, u64); 2]) -> Self {
        let mut dst = DomainView::new();
        dst.state = DomainState::new(state::PAUSED, state::PAUSED_UNKNOWN);
        let resume = req.flags & VIR_MIGRATE_POSTCOPY_RESUME != 0;
        let mut m = Migration::fresh(req, versions, dst);
        m.resume = resume;
        m.entered_postcopy = resume;
        m
    }

    /// A recovery call continues the job of the failed call: its saved parameters.
    pub fn with_memory(mut self, memory: Option<JobMemory>) -> Self {
        if let (true, Some(m)) = (self.resume, memory) {
            self.src.orig_params = m.src_orig_params;
            self.dst.orig_params = m.dst_orig_params;
        }
        self
    }

    /// What the job keeps for a later call of the same migration.
    pub fn memory(&self) -> JobMemory {
        JobMemory {
            src_orig_params: self.src.orig_params.clone(),
            dst_orig_params: self.dst.orig_params.clone(),
        }
    }

    fn fresh(req: MigrateRequest, versions: [(u64, u64, u64); 2], dst: DomainView) -> Self {
        Migration {
            flags: req.flags,
            req,
            src: DomainView::new(),
            dst,
            step: Step::QueryCaps(Side::Src),
            awaiting: None,
            pending: BTreeMap::new(),
            next_id: 1,
            last_pass: 0,
            switch: None,
            switch_sent: false,
            entered_postcopy: false,
            stats: None,
            error: None,
            abort_requested: false,
            dst_version: versions[1],
            continue_sent: false,
            pause_stats_fetched: false,
            in_flight: [None, None],
            queued: Default::default(),
            resume: false,
            recover_setup_seen: false,
        }
    }

    pub fn view(&self, side: Side) -> &DomainView {
        match side {
            Side::Src => &self.src,
            Side::Dst => &self.dst,
        }
    }

    fn view_mut(&mut self, side: Side) -> &mut DomainView {
        match side {
            Side::Src => &mut self.src,
            Side::Dst => &mut self.dst,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.step == Step::Finished
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
            if let Input::Api(call) = input {
                let err = match call {
                    ApiCall::StartPostCopy { flags } => {
                        start_postcopy_without_job(flags, self.src.active)
                    }
                    ApiCall::AbortJob { flags } => abort_without_job(flags, self.src.active),
                    ApiCall::GetJobStats => {
                        VirError::new(code::OPERATION_INVALID, "no job is active on the domain")
                    }
                };
                out.push(Action::ApiReturn {
                    call,
                    result: Err(err),
                });
            }
            return out;
        }
        match input {
            Input::Reply { side, id, result } => self.on_reply(side, id, result, &mut out),
            Input::Event { side, name, data } => self.on_event(side, &name, &data, &mut out),
            Input::Api(call) => self.on_api(call, &mut out),
            Input::Closed { side, reason } => self.on_closed(side, reason, &mut out),
        }
        self.advance(&mut out);
        out
    }

    fn send(
        &mut self,
        side: Side,
        command: &str,
        args: Option<Value>,
        purpose: Purpose,
        out: &mut Vec<Action>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, purpose);
        let cmd = Action::Send {
            side,
            id,
            command: command.to_string(),
            args,
        };
        // libvirt holds a monitor for one command at a time (qemuDomainObjEnterMonitor): a
        // command waits until the reply to the previous one on the same monitor arrived.
        let i = side_index(side);
        if self.in_flight[i].is_some() {
            self.queued[i].push_back(cmd);
        } else {
            self.in_flight[i] = Some(id);
            out.push(cmd);
        }
        id
    }

    /// The reply to `id` arrived on `side`: the next queued command there may go.
    fn release_monitor(&mut self, side: Side, id: u64, out: &mut Vec<Action>) {
        let i = side_index(side);
        if self.in_flight[i] != Some(id) {
            return;
        }
        self.in_flight[i] = None;
        if let Some(next) = self.queued[i].pop_front() {
            if let Action::Send { id, .. } = &next {
                self.in_flight[i] = Some(*id);
            }
            out.push(next);
        }
    }

    fn main_cmd(&mut self, side: Side, command: &str, args: Option<Value>, out: &mut Vec<Action>) {
        let id = self.send(side, command, args, Purpose::Main(self.step), out);
        self.awaiting = Some(id);
    }

    fn emit(&mut self, side: Side, ev: i32, detail: i32, out: &mut Vec<Action>) {
        out.push(Action::Emit {
            side,
            event: DomainEvent::Lifecycle { event: ev, detail },
        });
    }

    fn set_state(&mut self, side: Side, st: i32, reason: i32) {
        self.view_mut(side).state = DomainState::new(st, reason);
    }

    fn fail(&mut self, err: VirError, out: &mut Vec<Action>) {
        if self.error.is_none() {
            self.error = Some(err);
        }
        self.start_cleanup(out);
    }

    /// Failure before the guest runs on the destination: cancel, restore the source, stop the destination.
    fn start_cleanup(&mut self, out: &mut Vec<Action>) {
        self.awaiting = None;
        let migrating = self.step >= Step::SrcMigrate && self.step <= Step::SrcQueryStats;
        let qemu_ended = matches!(
            self.src.status,
            Some(MigStatus::Failed | MigStatus::Cancelled)
        );
        self.step = if migrating && !qemu_ended {
            Step::FailCancel
        } else if self.step >= Step::SrcQueryParams {
            Step::FailResetCaps
        } else {
            Step::FailCont
        };
        if self.step == Step::FailCont && self.src.job == AsyncJob::None {
            self.finish_failed(out);
        }
    }

    fn advance(&mut self, out: &mut Vec<Action>) {
        loop {
            if self.awaiting.is_some() || self.step == Step::Finished {
                return;
            }
            let before = self.step;
            match self.step {
                Step::QueryCaps(side) => {
                    self.main_cmd(side, "query-migrate-capabilities", None, out)
                }
                Step::EnableEvents(side) => self.main_cmd(
                    side,
                    "migrate-set-capabilities",
                    Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
                    out,
                ),
                Step::QueryStatus(side) => self.main_cmd(side, "query-status", None, out),
                Step::ResumeQuery(side) => self.main_cmd(side, "query-migrate", None, out),
                Step::Begin => self.begin(out),
                Step::DstQueryParams => {
                    self.main_cmd(Side::Dst, "query-migrate-parameters", None, out)
                }
                Step::DstSetCaps => self.set_caps(Side::Dst, out),
                Step::DstSetParams => self.set_params(Side::Dst, Step::DstIncoming, out),
                Step::DstIncoming => {
                    let mut args = json!({"uri": self.req.uri});
                    // exit-on-error exists since QEMU 9.1; libvirt sends it only where QEMU has it.
                    if self.dst_has_exit_on_error() {
                        args["exit-on-error"] = json!(false);
                    }
                    self.main_cmd(Side::Dst, "migrate-incoming", Some(args), out);
                }
                Step::SrcQueryParams => {
                    self.main_cmd(Side::Src, "query-migrate-parameters", None, out)
                }
                Step::SrcSetCaps => self.set_caps(Side::Src, out),
                Step::SrcSetParams => self.set_params(Side::Src, Step::SrcMigrate, out),
                // No `detach`: QEMU always ignored it and later removed it (11.1 refuses it); libvirt dropped it
                // upstream (Debian 13's 11.3.0 carries the backport, and so does our series).
                Step::SrcMigrate => self.main_cmd(
                    Side::Src,
                    "migrate",
                    Some(json!({"uri": self.req.source_uri(), "resume": false})),
                    out,
                ),
                Step::DstRecover => {
                    self.dst.phase = Phase::PrepareResume;
                    self.main_cmd(
                        Side::Dst,
                        "migrate-recover",
                        Some(json!({"uri": self.req.uri})),
                        out,
                    )
                }
                Step::SrcResumeParams => {
                    self.src.phase = Phase::PerformResume;
                    // Capabilities may not change once a migration started: only the post-copy
                    // bandwidth is re-applied (applyOnPostcopyResume).
                    match self.req.postcopy_bandwidth_mib {
                        Some(bw) => self.main_cmd(
                            Side::Src,
                            "migrate-set-parameters",
                            Some(json!({"max-postcopy-bandwidth": bw.saturating_mul(params::MIB)})),
                            out,
                        ),
                        None => self.step = Step::SrcResume,
                    }
                }
                Step::SrcResume => self.main_cmd(
                    Side::Src,
                    "migrate",
                    Some(json!({"uri": self.req.source_uri(), "resume": true})),
                    out,
                ),
                Step::SrcWaitRecovered => {
                    if !self.recover_setup_seen {
                        out.push(Action::Warn("QEMU is too old, we may report a failure in post-copy phase even though the migration may be running just fine".into()));
                        self.enter_finish_resume();
                    } else {
                        match self.src.status {
                            Some(MigStatus::PostcopyActive | MigStatus::Completed) => {
                                self.step = Step::SrcRecoveredStats
                            }
                            Some(MigStatus::PostcopyPaused | MigStatus::Failed) => {
                                self.postcopy_failed(out)
                            }
                            _ => {}
                        }
                    }
                }
                Step::SrcWait => self.src_wait(out),
                Step::SrcContinue => self.main_cmd(
                    Side::Src,
                    "migrate-continue",
                    Some(json!({"state": "pre-switchover"})),
                    out,
                ),
                Step::SrcQueryStats | Step::SrcPauseStats | Step::SrcRecoveredStats => {
                    self.main_cmd(Side::Src, "query-migrate", None, out)
                }
                Step::DstWaitFirst => match self.dst.status {
                    Some(MigStatus::PostcopyActive | MigStatus::Completed) => {
                        self.step = Step::DstCont
                    }
                    Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                    Some(MigStatus::Failed | MigStatus::Cancelled) => self.fail(
                        VirError::new(
                            code::OPERATION_FAILED,
                            "job 'migration in' unexpectedly failed",
                        ),
                        out,
                    ),
                    _ => {}
                },
                Step::DstCont => self.main_cmd(Side::Dst, "cont", None, out),
                Step::DstWaitResume => {
                    if self.dst.state.state == state::RUNNING {
                        self.step = Step::DstWaitCompleted;
                    }
                }
                Step::DstWaitCompleted => match self.dst.status {
                    Some(MigStatus::Completed) => {
                        if self.entered_postcopy {
                            self.set_state(Side::Dst, state::RUNNING, state::RUNNING_MIGRATED);
                            self.emit(Side::Dst, event::RESUMED, event::RESUMED_MIGRATED, out);
                        }
                        self.step = Step::DstResetCaps;
                    }
                    Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                    _ => {}
                },
                Step::DstResetCaps => {
                    let caps = params::cleared_caps(&self.dst.caps);
                    self.main_cmd(Side::Dst, "migrate-set-capabilities", Some(caps), out);
                }
                Step::DstResetParams => match self.dst.orig_params.clone() {
                    // A recovery never read the originals (the shim keeps no job between calls);
                    // libvirt sends nothing for an empty parameter set.
                    None => self.on_main_reply(Step::DstResetParams, Ok(json!({})), out),
                    Some(orig) => {
                        self.main_cmd(Side::Dst, "migrate-set-parameters", Some(orig), out)
                    }
                },
                // qemuMigrationSrcComplete re-reads the statistics only after post-copy (those of
                // the switch point are stale); after pre-copy it keeps those of Perform's wait.
                Step::SrcWaitCompleted => match self.src.status {
                    Some(MigStatus::Completed)
                        if self.src.state
                            == DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY) =>
                    {
                        self.step = Step::SrcQueryFinal
                    }
                    Some(MigStatus::Completed) => {
                        let stats = self.stats.clone().unwrap_or_default();
                        self.complete_source(stats, out)
                    }
                    Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                    _ => {}
                },
                Step::SrcQueryFinal => self.main_cmd(Side::Src, "query-migrate", None, out),
                Step::FailQuery => self.main_cmd(Side::Src, "query-migrate", None, out),
                Step::FailCancel => self.main_cmd(Side::Src, "migrate_cancel", None, out),
                Step::FailResetCaps => {
                    let caps = params::cleared_caps(&self.src.caps);
                    self.main_cmd(Side::Src, "migrate-set-capabilities", Some(caps), out);
                }
                Step::FailResetParams => {
                    let orig = self.src.orig_params.clone().unwrap_or_else(|| json!({}));
                    self.main_cmd(Side::Src, "migrate-set-parameters", Some(orig), out);
                }
                Step::FailCont => {
                    if self.src.state.state == state::PAUSED
                        && self.src.state.reason == state::PAUSED_MIGRATION
                    {
                        self.main_cmd(Side::Src, "cont", None, out);
                    } else {
                        self.finish_failed(out);
                    }
                }
                Step::Finished => return,
            }
            if self.step == before && self.awaiting.is_none() {
                return; // waiting for events
            }
        }
    }

    /// `migrate-set-capabilities` for a fresh migration (qemuMigrationParamsCheck): the peer's
    /// list stands for the cookie's, so both sides decide the optional capabilities alike.
    fn set_caps(&mut self, side: Side, out: &mut Vec<Action>) {
        let (party, local, peer) = match side {
            Side::Src => (Party::Source, &self.src.caps, &self.dst.caps),
            Side::Dst => (Party::Destination, &self.dst.caps, &self.src.caps),
        };
        match params::plan_caps(self.flags, party, local, peer) {
            Ok(caps) => self.main_cmd(side, "migrate-set-capabilities", Some(caps), out),
            Err(e) => self.fail(e, out),
        }
    }

    /// `migrate-set-parameters` for a fresh migration; nothing is sent for an empty set.
    fn set_params(&mut self, side: Side, next: Step, out: &mut Vec<Action>) {
        let (party, current) = match side {
            Side::Src => (Party::Source, &self.src.orig_params),
            Side::Dst => (Party::Destination, &self.dst.orig_params),
        };
        let p = params::migration_params(
            party,
            current.as_ref().unwrap_or(&Value::Null),
            self.req.bandwidth_mib,
            self.req.postcopy_bandwidth_mib,
        );
        if p.as_object().is_some_and(|o| o.is_empty()) {
            self.step = next;
        } else {
            self.main_cmd(side, "migrate-set-parameters", Some(p), out);
        }
    }

    fn dst_has_exit_on_error(&self) -> bool {
        // `migrate-incoming` has had `exit-on-error` since QEMU 9.1 (libvirt probes the schema).
        self.dst_version >= (9, 1, 0)
    }

    fn begin(&mut self, out: &mut Vec<Action>) {
        if let Err(e) = check_public_flags(self.req.flags)
            .and_then(|_| check_driver_flags(self.req.flags, "qemuDomainMigrateBegin3Params"))
        {
            return self.finish_early(e, out);
        }
        if !self.src.active {
            return self.finish_early(
                VirError::new(code::OPERATION_INVALID, "domain is not running"),
                out,
            );
        }
        if self.resume {
            return self.begin_resume(out);
        }
        self.src.job = AsyncJob::MigrationOut;
        self.src.phase = Phase::Begin3;
        // libvirt adds VIR_MIGRATE_PAUSED after Begin when the domain is paused (B.3).
        if self.src.state.state == state::PAUSED && self.flags & VIR_MIGRATE_POSTCOPY_RESUME == 0 {
            self.flags |= VIR_MIGRATE_PAUSED;
        }
        // Prepare on the destination sees the flags without our source-only flag.
        let dflags = self.flags & !VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
        if let Err(e) = check_driver_flags(dflags, "qemuDomainMigratePrepare3Params") {
            self.src.job = AsyncJob::None;
            self.src.phase = Phase::None;
            return self.finish_early(e, out);
        }
        self.dst.job = AsyncJob::MigrationIn;
        self.dst.phase = Phase::Prepare;
        self.step = Step::DstQueryParams;
    }

    /// The source's end of a completed migration (qemuMigrationSrcComplete): the completed
    /// statistics, SHUTOFF/MIGRATED, STOPPED_MIGRATED, JOB_COMPLETED, and QEMU stopped.
    fn complete_source(&mut self, mut stats: JobStats, out: &mut Vec<Action>) {
        stats.job_type = job::COMPLETED;
        self.src.job = AsyncJob::None;
        self.src.phase = Phase::None;
        self.src.active = false;
        self.set_state(Side::Src, state::SHUTOFF, state::SHUTOFF_MIGRATED);
        self.emit(Side::Src, event::STOPPED, event::STOPPED_MIGRATED, out);
        out.push(Action::Emit {
            side: Side::Src,
            event: DomainEvent::JobCompleted,
        });
        out.push(Action::StopQemu { side: Side::Src });
        self.step = Step::Finished;
        out.push(Action::Done(Ok(Outcome {
            stats,
            postcopy: self.entered_postcopy,
            switch: self.switch,
            last_pass: self.last_pass,
        })));
    }

    /// qemuMigrationAnyCanResume on both sides, then the QEMU check of Begin and Prepare. The shim
    /// keeps no job between calls: QEMU's migration status stands for libvirt's job and phase.
    fn begin_resume(&mut self, out: &mut Vec<Action>) {
        // The domains are in the states their QEMUs' post-copy stands for (libvirt keeps them
        // across calls; the shim reads them back): a refused resume leaves them so, not as a
        // fresh domain's "running".
        for side in [Side::Src, Side::Dst] {
            let view = self.view(side);
            let (paused, active) = match side {
                Side::Src => (
                    (state::PAUSED, state::PAUSED_POSTCOPY_FAILED),
                    (state::PAUSED, state::PAUSED_POSTCOPY),
                ),
                Side::Dst => (
                    (state::RUNNING, state::RUNNING_POSTCOPY_FAILED),
                    (state::RUNNING, state::RUNNING_POSTCOPY),
                ),
            };
            let st = match view.status {
                Some(MigStatus::PostcopyPaused) => Some(paused),
                Some(MigStatus::PostcopyActive) => Some(active),
                _ => None,
            };
            if let Some((s, r)) = st {
                self.set_state(side, s, r);
            }
        }
        for side in [Side::Src, Side::Dst] {
            let (not_migrating, status) = match side {
                Side::Src => (
                    format!("domain '{DOMAIN_NAME}' is not being migrated"),
                    self.src.status,
                ),
                Side::Dst => (
                    format!("domain '{DOMAIN_NAME}' is not processing incoming migration"),
                    self.dst.status,
                ),
            };
            let detail = match status {
                Some(MigStatus::PostcopyPaused) => continue,
                None | Some(MigStatus::Completed | MigStatus::Failed | MigStatus::Cancelled) => {
                    not_migrating
                }
                Some(MigStatus::PostcopyActive) => {
                    format!("post-copy migration of domain {DOMAIN_NAME} has not failed")
                }
                Some(MigStatus::PostcopyRecover | MigStatus::PostcopyRecoverSetup) => {
                    format!("resuming failed post-copy migration of domain {DOMAIN_NAME} already in progress")
                }
                Some(_) => format!("migration of domain {DOMAIN_NAME} is not in post-copy phase"),
            };
            return self.finish_early(VirError::new(code::OPERATION_INVALID, detail), out);
        }
        self.src.job = AsyncJob::MigrationOut;
        self.dst.job = AsyncJob::MigrationIn;
        self.src.phase = Phase::BeginResume;
        self.src.async_paused = true;
        self.dst.async_paused = true;
        self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY_FAILED);
        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY_FAILED);
        self.step = Step::DstRecover;
    }

    fn enter_finish_resume(&mut self) {
        self.dst.phase = Phase::FinishResume;
        self.step = Step::DstWaitCompleted;
    }

    fn finish_early(&mut self, e: VirError, out: &mut Vec<Action>) {
        self.error = Some(e.clone());
        self.step = Step::Finished;
        self.src.job = AsyncJob::None;
        self.dst.job = AsyncJob::None;
        out.push(Action::Done(Err(e)));
    }

    fn finish_failed(&mut self, out: &mut Vec<Action>) {
        // The destination never ran the guest: libvirt stops it (Finish with cancelled=1).
        if self.dst.active && !self.entered_postcopy {
            self.dst.active = false;
            self.set_state(Side::Dst, state::SHUTOFF, state::SHUTOFF_FAILED);
            self.emit(Side::Dst, event::STOPPED, event::STOPPED_FAILED, out);
            out.push(Action::StopQemu { side: Side::Dst });
        }
        let err = self
            .error
            .clone()
            .unwrap_or_else(|| VirError::new(code::OPERATION_FAILED, "migration failed"));
        self.finish_early(err, out);
    }

    fn src_wait(&mut self, out: &mut Vec<Action>) {
        match self.src.status {
            // The wait returns at pre-switchover: libvirt refreshes the statistics first, then
            // waits until the STOP event has been processed, then sends migrate-continue.
            Some(MigStatus::PreSwitchover) if !self.pause_stats_fetched => {
                self.pause_stats_fetched = true;
                self.step = Step::SrcPauseStats;
            }
            Some(MigStatus::PreSwitchover)
                if self.src.state.state != state::RUNNING && !self.continue_sent =>
            {
                self.continue_sent = true;
                self.step = Step::SrcContinue;
            }
            Some(MigStatus::PostcopyActive | MigStatus::Completed) => {
                self.step = Step::SrcQueryStats
            }
            Some(MigStatus::Failed) => {
                self.step = Step::FailQuery;
            }
            Some(MigStatus::Cancelled) => {
                let e = VirError::new(
                    code::OPERATION_ABORTED,
                    "job 'migration out' canceled by client",
                );
                self.fail(e, out);
            }
            Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
            _ => {}
        }
    }

    fn postcopy_failed(&mut self, out: &mut Vec<Action>) {
        // Part B.5: nothing killed, nothing cancelled, nothing rolled back. Both jobs stay in
        // phase postcopy_failed; the source is PAUSED/POSTCOPY_FAILED, the destination
        // RUNNING/POSTCOPY_FAILED (or keeps its pause reason).
        for side in [Side::Src, Side::Dst] {
            self.mark_postcopy_failed(side, out);
        }
        let who = if self.step >= Step::DstWaitFirst && self.step <= Step::DstResetParams {
            "migration in"
        } else {
            "migration out"
        };
        self.error = Some(VirError::new(
            code::OPERATION_FAILED,
            format!("job '{who}' failed in post-copy phase"),
        ));
        self.awaiting = None;
        self.step = Step::Finished;
        let e = self
            .error
            .clone()
            .unwrap_or_else(|| VirError::new(code::OPERATION_FAILED, ""));
        out.push(Action::Done(Err(e)));
    }

    fn mark_postcopy_failed(&mut self, side: Side, out: &mut Vec<Action>) {
        let v = self.view_mut(side);
        if v.phase == Phase::PostcopyFailed || !v.active {
            return;
        }
        v.phase = Phase::PostcopyFailed;
        v.async_paused = true;
        match side {
            Side::Src => {
                self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY_FAILED);
                self.emit(
                    Side::Src,
                    event::SUSPENDED,
                    event::SUSPENDED_POSTCOPY_FAILED,
                    out,
                );
            }
            Side::Dst => {
                if self.dst.state.state == state::RUNNING {
                    self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY_FAILED);
                    self.emit(
                        Side::Dst,
                        event::RESUMED,
                        event::RESUMED_POSTCOPY_FAILED,
                        out,
                    );
                } else {
                    self.emit(
                        Side::Dst,
                        event::SUSPENDED,
                        event::SUSPENDED_POSTCOPY_FAILED,
                        out,
                    );
                }
            }
        }
    }

    fn on_reply(
        &mut self,
        side: Side,
        id: u64,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        let Some(purpose) = self.pending.remove(&id) else {
            out.push(Action::Warn(format!(
                "{} reply to a command we did not send (id {id})",
                side.tag()
            )));
            return;
        };
        self.release_monitor(side, id, out);
        match purpose {
            Purpose::Main(step) => {
                if self.awaiting == Some(id) {
                    self.awaiting = None;
                }
                self.on_main_reply(step, result, out);
            }
            Purpose::Api(call) => self.on_api_reply(call, result, out),
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

    fn on_main_reply(
        &mut self,
        step: Step,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        let command = match step {
            Step::QueryCaps(_) => "query-migrate-capabilities",
            Step::EnableEvents(_)
            | Step::DstSetCaps
            | Step::SrcSetCaps
            | Step::DstResetCaps
            | Step::FailResetCaps => "migrate-set-capabilities",
            Step::QueryStatus(_) => "query-status",
            Step::ResumeQuery(_) => "query-migrate",
            Step::DstRecover => "migrate-recover",
            Step::SrcResumeParams => "migrate-set-parameters",
            Step::SrcResume => "migrate",
            Step::DstQueryParams | Step::SrcQueryParams => "query-migrate-parameters",
            Step::DstSetParams
            | Step::SrcSetParams
            | Step::DstResetParams
            | Step::FailResetParams => "migrate-set-parameters",
            Step::DstIncoming => "migrate-incoming",
            Step::SrcMigrate => "migrate",
            Step::SrcContinue => "migrate-continue",
            Step::SrcQueryStats
            | Step::SrcQueryFinal
            | Step::FailQuery
            | Step::SrcPauseStats
            | Step::SrcRecoveredStats => "query-migrate",
            Step::DstCont | Step::FailCont => "cont",
            Step::FailCancel => "migrate_cancel",
            _ => "?",
        };
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                let err = qemu_cmd_error(command, &e);
                return match step {
                    // Cleanup goes on whatever QEMU says; the first error is the one reported.
                    Step::FailCancel => {
                        self.error.get_or_insert(err);
                        self.step = Step::FailResetCaps;
                    }
                    Step::FailResetCaps | Step::FailResetParams => {
                        self.step = if step == Step::FailResetCaps {
                            Step::FailResetParams
                        } else {
                            Step::FailCont
                        };
                    }
                    Step::FailCont | Step::FailQuery => self.finish_failed(out),
                    Step::DstResetCaps | Step::DstResetParams => {
                        out.push(Action::Warn(format!(
                            "resetting migration parameters failed: {}",
                            err
                        )));
                        self.step = if step == Step::DstResetCaps {
                            Step::DstResetParams
                        } else {
                            Step::SrcWaitCompleted
                        };
                    }
                    _ if self.entered_postcopy => {
                        // After the switch nothing is rolled back (B.5).
                        self.error = Some(err);
                        self.postcopy_failed(out);
                    }
                    _ if self.step < Step::Begin => self.finish_early(err, out),
                    _ => self.fail(err, out),
                };
            }
        };
        match step {
            Step::QueryCaps(side) => match params::supported_caps(&value) {
                Ok(mut caps) => {
                    caps.retain(|c| c != "events");
                    self.view_mut(side).caps = caps;
                    // A paused post-copy migration is still a migration: QEMU refuses capability
                    // changes, and `events` is on since the migration started.
                    self.step = if self.resume {
                        Step::QueryStatus(side)
                    } else {
                        Step::EnableEvents(side)
                    };
                }
                Err(e) => self.finish_early(VirError::new(code::INTERNAL_ERROR, e), out),
            },
            Step::EnableEvents(side) => self.step = Step::QueryStatus(side),
            Step::QueryStatus(side) => {
                let status = value.get("status").and_then(Value::as_str).unwrap_or("");
                let running = value
                    .get("running")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match side {
                    _ if self.resume => self.step = Step::ResumeQuery(side),
                    Side::Src => {
                        if !running {
                            self.set_state(Side::Src, state::PAUSED, state::PAUSED_USER);
                        }
                        self.step = Step::QueryCaps(Side::Dst);
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
            Step::ResumeQuery(side) => {
                let st = value
                    .get("status")
                    .and_then(Value::as_str)
                    .and_then(MigStatus::parse);
                self.view_mut(side).status = st;
                self.step = match side {
                    Side::Src => Step::QueryCaps(Side::Dst),
                    Side::Dst => Step::Begin,
                };
            }
            Step::DstRecover => {
                // The destination listens again: its postcopy-paused is history, not a new
                // failure (QEMU 7.2 says `setup`, 10.0 says nothing until the source connects).
                if self.dst.status == Some(MigStatus::PostcopyPaused) {
                    self.dst.status = None;
                }
                self.step = Step::SrcResumeParams
            }
            Step::SrcResumeParams => self.step = Step::SrcResume,
            Step::SrcResume => self.step = Step::SrcWaitRecovered,
            Step::DstQueryParams => {
                self.dst.orig_params = Some(params::original_params(&value));
                self.step = Step::DstSetCaps;
            }
            Step::DstSetCaps => self.step = Step::DstSetParams,
            Step::DstSetParams => self.step = Step::DstIncoming,
            Step::DstIncoming => {
                self.set_state(Side::Dst, state::PAUSED, state::PAUSED_MIGRATION);
                self.emit(Side::Dst, event::STARTED, event::STARTED_MIGRATED, out);
                self.src.phase = Phase::Perform3;
                self.step = Step::SrcQueryParams;
            }
            Step::SrcQueryParams => {
                self.src.orig_params = Some(params::original_params(&value));
                self.step = Step::SrcSetCaps;
            }
            Step::SrcSetCaps => self.step = Step::SrcSetParams,
            Step::SrcSetParams => self.step = Step::SrcMigrate,
            Step::SrcMigrate => {
                if self.abort_requested {
                    self.step = Step::FailCancel;
                } else {
                    self.step = Step::SrcWait;
                }
            }
            Step::SrcContinue => self.step = Step::SrcWait,
            Step::SrcPauseStats | Step::SrcRecoveredStats => {
                if let Ok(st) = JobStats::from_query_migrate(&value) {
                    self.stats = Some(st);
                }
                if step == Step::SrcPauseStats {
                    self.step = Step::SrcWait;
                } else {
                    self.enter_finish_resume();
                }
            }
            Step::SrcQueryStats => {
                if let Ok(s) = JobStats::from_query_migrate(&value) {
                    self.stats = Some(s);
                }
                self.src.phase = Phase::Perform3Done;
                self.dst.phase = Phase::Finish3;
                self.step = Step::DstWaitFirst;
            }
            Step::DstCont => {
                self.step = Step::DstWaitResume;
            }
            Step::DstResetCaps => self.step = Step::DstResetParams,
            Step::DstResetParams => {
                self.dst.job = AsyncJob::None;
                self.dst.phase = Phase::None;
                self.dst.async_paused = false;
                self.src.phase = if self.resume {
                    Phase::ConfirmResume
                } else {
                    Phase::Confirm3
                };
                self.step = Step::SrcWaitCompleted;
            }
            Step::SrcQueryFinal => {
                let stats = match JobStats::from_query_migrate(&value) {
                    Ok(s) => s,
                    Err(e) => {
                        out.push(Action::Warn(format!("final statistics unavailable: {e}")));
                        self.stats.clone().unwrap_or_default()
                    }
                };
                self.complete_source(stats, out);
            }
            Step::FailQuery => {
                let desc = value.get("error-desc").and_then(Value::as_str);
                let e = match desc {
                    Some(d) => VirError::new(
                        code::OPERATION_FAILED,
                        format!("job 'migration out' failed: {d}"),
                    ),
                    None => VirError::new(
                        code::OPERATION_FAILED,
                        "job 'migration out' unexpectedly failed",
                    ),
                };
                self.error.get_or_insert(e);
                self.step = Step::FailResetCaps;
            }
            Step::FailCancel => self.step = Step::FailResetCaps,
            Step::FailResetCaps => self.step = Step::FailResetParams,
            Step::FailResetParams => self.step = Step::FailCont,
            Step::FailCont => {
                self.set_state(Side::Src, state::RUNNING, state::RUNNING_MIGRATION_CANCELED);
                self.emit(Side::Src, event::RESUMED, event::RESUMED_MIGRATED, out);
                self.finish_failed(out);
            }
            _ => {}
        }
    }

    fn on_event(&mut self, side: Side, name: &str, data: &Value, out: &mut Vec<Action>) {
        match name {
            "MIGRATION" => {
                let s = data.get("status").and_then(Value::as_str).unwrap_or("");
                let Some(st) = MigStatus::parse(s) else {
                    out.push(Action::Warn(format!(
                        "{}: unknown migration status '{s}' in MIGRATION event",
                        side.tag()
                    )));
                    return;
                };
                let view = self.view_mut(side);
                if view.job == AsyncJob::None && view.phase != Phase::PostcopyFailed {
                    return; // libvirt ignores the event without an async job
                }
                view.status = Some(st);
                match (side, st) {
                    (Side::Src, MigStatus::PostcopyActive) => {
                        self.entered_postcopy = true;
                        if self.src.state
                            == DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
                        {
                            self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY);
                            self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
                        }
                    }
                    (Side::Dst, MigStatus::PostcopyActive) => self.entered_postcopy = true,
                    (Side::Src, MigStatus::PostcopyRecoverSetup) => self.recover_setup_seen = true,
                    // Recovery started: the failed job is no longer paused (qemuProcessHandleMigrationStatus).
                    (Side::Src, MigStatus::PostcopyRecover) if self.src.async_paused => {
                        self.src.async_paused = false;
                        self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY);
                        self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
                    }
                    (Side::Dst, MigStatus::PostcopyRecover) if self.dst.async_paused => {
                        self.dst.async_paused = false;
                        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY);
                        self.emit(Side::Dst, event::RESUMED, event::RESUMED_POSTCOPY, out);
                    }
                    // No thread watches after Perform: handle the failure in the event itself.
                    (_, MigStatus::PostcopyPaused)
                        if self.step >= Step::SrcQueryStats || self.entered_postcopy =>
                    {
                        self.postcopy_failed(out);
                    }
                    _ => {}
                }
            }
            "MIGRATION_PASS" => {
                let pass = data.get("pass").and_then(Value::as_u64).unwrap_or(0);
                self.last_pass = pass;
                if side == Side::Src {
                    out.push(Action::Emit {
                        side,
                        event: DomainEvent::MigrationIteration { iteration: pass },
                    });
                    if self.flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0
                        && pass >= 2
                        && self.src.status == Some(MigStatus::Active)
                        && !self.switch_sent
                        && self.src.job == AsyncJob::MigrationOut
                    {
                        self.switch_sent = true;
                        self.switch = Some(SwitchedBy::AfterPrecopy { pass });
                        self.send(
                            Side::Src,
                            "migrate-start-postcopy",
                            None,
                            Purpose::AutoSwitch,
                            out,
                        );
                    }
                }
            }
            "STOP" => {
                if side == Side::Src && self.src.state.state == state::RUNNING {
                    if matches!(self.src.status, Some(s) if s.is_postcopy()) {
                        self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY);
                        self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
                    } else {
                        self.set_state(Side::Src, state::PAUSED, state::PAUSED_MIGRATION);
                        self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_MIGRATED, out);
                    }
                } else if side == Side::Dst && self.dst.state.state == state::RUNNING {
                    self.set_state(Side::Dst, state::PAUSED, state::PAUSED_UNKNOWN);
                }
            }
            "RESUME" => {
                if side == Side::Dst
                    && self.dst.state.state != state::RUNNING
                    && self.dst.job == AsyncJob::MigrationIn
                {
                    if self.dst.phase == Phase::PostcopyFailed {
                        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY_FAILED);
                        self.emit(
                            Side::Dst,
                            event::RESUMED,
                            event::RESUMED_POSTCOPY_FAILED,
                            out,
                        );
                    } else if self.dst.status == Some(MigStatus::PostcopyActive) {
                        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY);
                        self.emit(Side::Dst, event::RESUMED, event::RESUMED_POSTCOPY, out);
                    } else {
                        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_MIGRATED);
                        self.emit(Side::Dst, event::RESUMED, event::RESUMED_MIGRATED, out);
                    }
                } else if side == Side::Src
                    && self.src.state.state != state::RUNNING
                    && self.src.active
                {
                    // The source resumed by someone else; libvirt follows QEMU.
                    if self.step < Step::FailQuery {
                        self.set_state(Side::Src, state::RUNNING, state::RUNNING_UNPAUSED);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_api(&mut self, call: ApiCall, out: &mut Vec<Action>) {
        let result = match &call {
            ApiCall::StartPostCopy { flags } => self.check_start_postcopy(*flags),
            ApiCall::AbortJob { flags } => self.check_abort(*flags),
            ApiCall::GetJobStats => {
                if self.src.job == AsyncJob::MigrationOut && self.step >= Step::SrcWait {
                    Ok(())
                } else {
                    Err(VirError::new(
                        code::OPERATION_INVALID,
                        "no job is active on the domain",
                    ))
                }
            }
        };
        if let Err(e) = result {
            out.push(Action::ApiReturn {
                call,
                result: Err(e),
            });
            return;
        }
        match call {
            ApiCall::StartPostCopy { .. } => {
                if self.switch.is_none() {
                    self.switch = Some(SwitchedBy::Api {
                        pass: self.last_pass,
                    });
                }
                self.switch_sent = true;
                self.send(
                    Side::Src,
                    "migrate-start-postcopy",
                    None,
                    Purpose::Api(call),
                    out,
                );
            }
            ApiCall::AbortJob { flags } => {
                if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
                    self.send(Side::Src, "migrate-pause", None, Purpose::Api(call), out);
                } else if self.step < Step::SrcMigrate
                    || (self.step == Step::SrcMigrate && self.awaiting.is_some())
                {
                    // Not yet migrating in QEMU: the job stops before `migrate`.
                    self.abort_requested = true;
                    out.push(Action::ApiReturn {
                        call,
                        result: Ok(ApiValue::Done),
                    });
                    if self.step < Step::SrcMigrate && self.awaiting.is_none() {
                        self.fail(
                            VirError::new(
                                code::OPERATION_ABORTED,
                                "job 'migration out' canceled by client",
                            ),
                            out,
                        );
                    }
                } else {
                    self.send(Side::Src, "migrate_cancel", None, Purpose::Api(call), out);
                }
            }
            ApiCall::GetJobStats => {
                self.send(Side::Src, "query-migrate", None, Purpose::Api(call), out);
            }
        }
    }

    fn check_start_postcopy(&self, flags: u32) -> Result<(), VirError> {
        if flags != 0 || !self.src.active || self.src.job != AsyncJob::MigrationOut {
            return Err(start_postcopy_without_job(flags, self.src.active));
        }
        if self.flags & VIR_MIGRATE_POSTCOPY == 0 {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "switching to post-copy requires migration to be started with VIR_MIGRATE_POSTCOPY flag",
            ));
        }
        Ok(())
    }

    fn check_abort(&self, flags: u32) -> Result<(), VirError> {
        if flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0
            || !self.src.active
            || self.src.job != AsyncJob::MigrationOut
        {
            return Err(abort_without_job(flags, self.src.active));
        }
        let in_postcopy = self.entered_postcopy || self.src.phase == Phase::PostcopyFailed;
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 && !in_postcopy {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "current job is not outgoing migration in post-copy mode",
            ));
        }
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY == 0 && in_postcopy {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "cannot abort migration in post-copy mode",
            ));
        }
        Ok(())
    }

    fn on_api_reply(
        &mut self,
        call: ApiCall,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        let command = match &call {
            ApiCall::StartPostCopy { .. } => "migrate-start-postcopy",
            ApiCall::AbortJob { flags } if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 => {
                "migrate-pause"
            }
            ApiCall::AbortJob { .. } => "migrate_cancel",
            ApiCall::GetJobStats => "query-migrate",
        };
        let result = match result {
            Err(e) => Err(qemu_cmd_error(command, &e)),
            Ok(v) => match call {
                ApiCall::GetJobStats => JobStats::from_query_migrate(&v)
                    .map(ApiValue::Stats)
                    .map_err(|e| VirError::new(code::INTERNAL_ERROR, e)),
                _ => Ok(ApiValue::Done),
            },
        };
        out.push(Action::ApiReturn { call, result });
    }

    fn on_closed(&mut self, side: Side, reason: String, out: &mut Vec<Action>) {
        // A QEMU that went away is not running any more. Before the switch libvirt cancels and
        // restores the source; after it, the surviving side is left paused and reported.
        let v = self.view_mut(side);
        v.active = false;
        v.state = DomainState::new(state::SHUTOFF, state::SHUTOFF_CRASHED);
        // qemuProcessHandleMonitorEOF: a QEMU gone without a SHUTDOWN event crashed.
        self.emit(side, event::STOPPED, event::STOPPED_FAILED, out);
        let err = VirError::new(
            code::OPERATION_FAILED,
            format!(
                "{} QEMU monitor closed: {reason}",
                match side {
                    Side::Src => "source",
                    Side::Dst => "destination",
                }
            ),
        );
        if self.entered_postcopy {
            self.error = Some(err);
            let other = if side == Side::Src {
                Side::Dst
            } else {
                Side::Src
            };
            self.mark_postcopy_failed(other, out);
            self.awaiting = None;
            self.step = Step::Finished;
            let e = self
                .error
                .clone()
                .unwrap_or_else(|| VirError::new(code::OPERATION_FAILED, ""));
            out.push(Action::Done(Err(e)));
            return;
        }
        if side == Side::Src {
            self.error = Some(err);
            self.awaiting = None;
            // Nothing to restore on a dead source; the destination never ran the guest.
            self.finish_failed(out);
        } else {
            self.fail(err, out);
        }
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Src => 0,
        Side::Dst => 1,
    }
}
