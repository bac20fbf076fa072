//! What the driver knows of each domain: libvirt's job phase, the async job, the state.

use serde_json::Value;

use super::stats::MigStatus;
use super::vocab::{state, DomainState};

/// libvirt's migration phases (`qemuMigrationJobPhase`, qemu_migration.h), in order, without
/// `perform2`/`finish2`. Each side has its own; the diagram in the driver's module docs shows how
/// a call moves through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    None,
    Begin3,
    Perform3,
    Perform3Done,
    /// Never entered: a failure before the switch ends the job where it is.
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
    /// libvirt's spelling.
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

/// libvirt's async job on a domain.
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
    pub(super) caps: Vec<String>,
    pub(super) orig_params: Option<Value>,
    /// False once libvirt would have stopped this QEMU, or it went away.
    pub(super) active: bool,
}

impl DomainView {
    pub(super) fn new(state: DomainState) -> Self {
        DomainView {
            state,
            job: AsyncJob::None,
            phase: Phase::None,
            status: None,
            async_paused: false,
            caps: Vec::new(),
            orig_params: None,
            active: true,
        }
    }

    /// A domain libvirt is about to migrate: running.
    pub(super) fn source() -> Self {
        DomainView::new(DomainState::new(state::RUNNING, state::RUNNING_UNPAUSED))
    }

    /// The domain of a QEMU started with `-incoming defer`: paused.
    pub(super) fn destination() -> Self {
        DomainView::new(DomainState::new(state::PAUSED, state::PAUSED_UNKNOWN))
    }

    /// The migration capabilities QEMU reported (known to libvirt, `events` left out).
    pub fn supported_caps(&self) -> &[String] {
        &self.caps
    }

    /// Whether the QEMU still runs the domain (libvirt's virDomainObjIsActive).
    pub fn is_active(&self) -> bool {
        self.active
    }
}
