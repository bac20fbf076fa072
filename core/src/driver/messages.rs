//! What goes into the driver ([`Input`], [`ApiCall`], [`MigrateRequest`]) and what comes out
//! ([`Action`], [`DomainEvent`], [`Milestone`], [`Outcome`]).

use serde_json::Value;

use super::migration::Ticket;
use super::policy::{SwitchPolicy, SwitchReason};
use super::side::{PerSide, Side};
use super::stats::JobStats;
use super::vocab::{event, VirError};
use crate::qmp::{Command, QmpError};

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
    /// Our switch policy (`lpc.switch_policy`, not libvirt's; docs/driver-behaviour.md §7.1).
    pub switch_policy: Option<SwitchPolicy>,
}

impl MigrateRequest {
    pub fn new(flags: u32, uri: impl Into<String>) -> Self {
        MigrateRequest {
            flags,
            uri: uri.into(),
            bandwidth_mib: None,
            postcopy_bandwidth_mib: None,
            connect_uri: None,
            switch_policy: None,
        }
    }

    pub(super) fn source_uri(&self) -> &str {
        self.connect_uri.as_deref().unwrap_or(&self.uri)
    }
}

/// What libvirt's job keeps between the calls of one migration (it lives in the daemon's domain
/// object): the parameters saved in the first call's Prepare and Perform, which the end of a
/// recovery restores. The shim hands it from one call to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMemory {
    /// Each side's parameters before the migration changed them, once read.
    pub orig_params: PerSide<Option<Value>>,
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
    /// The reply to `command`, which the driver sent with `ticket`.
    Reply {
        side: Side,
        command: Command,
        ticket: Ticket,
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
    /// Time passed (the io layer's period, docs/driver-behaviour.md §7.1): a switch policy samples
    /// `query-migrate`. Fed only when the request has a policy; the driver has no clock.
    Tick,
    /// The call's overall deadline `limit` passed (a live transport's clock): cancel before
    /// post-copy, pause and leave recoverable after (docs/driver-behaviour.md §10.4). A second
    /// one (the grace period for that cleanup) ends the call where it is.
    Deadline {
        limit: std::time::Duration,
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
    /// Our switch policy, while the last pass reported was `pass`, for `reason` (§7.1).
    Policy {
        policy: SwitchPolicy,
        pass: u64,
        reason: SwitchReason,
    },
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

/// Points of a migration worth timing, for the transport (the driver has no clock): the
/// benchmark measures the switch from them instead of reading QMP lines itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// The source reported MIGRATION_PASS `pass` >= 2: the first pre-copy pass is done (the
    /// point VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY switches at). Once per call.
    Pass2Seen { pass: u64 },
    /// The driver asked for `migrate-start-postcopy` (it goes out once the source monitor is
    /// free). Once per call: a repeated StartPostCopy does not count.
    SwitchRequested(SwitchedBy),
    /// `side` reported `postcopy-active` for the first time in this call.
    PostcopyActive { side: Side },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Execute `command` on `side`'s monitor; its reply comes back as [`Input::Reply`] with
    /// `ticket`. The QMP session sends it when the monitor is free.
    Send {
        side: Side,
        command: Command,
        ticket: Ticket,
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
    /// A point worth timing (nothing to do but note when it happened).
    Milestone(Milestone),
    /// Something worth a warning that changes nothing (an unknown event status, a failed auto switch).
    Warn(String),
    Done(Result<Outcome, VirError>),
}
