//! The QEMU driver's migration logic, sans-IO: flags, capabilities, phases, job state and events,
//! as libvirt 11.3's QEMU driver does them (written down in docs/driver-behaviour.md).
//!
//! [`Migration`] runs one migrate call: it takes [`Input`]s (a QMP reply, a QMP event, an API
//! call, a closed monitor) and returns [`Action`]s (a command to send, a domain event, an API
//! result, a QEMU to stop, a milestone, a warning, the end). The [`domain`] rules answer what a
//! domain object decides without a running migration.
//!
//! Each side walks libvirt's [`Phase`]s. The source:
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> None
//!     None --> Begin3: Begin, flags valid
//!     Begin3 --> None: Prepare flag check fails
//!     Begin3 --> Perform3: destination answered migrate-incoming
//!     Perform3 --> Perform3Done: wait returns at postcopy-active or completed
//!     Perform3Done --> Confirm3: destination completed and reset
//!     Confirm3 --> None: completed, source SHUTOFF/MIGRATED
//!     Perform3 --> PostcopyFailed: postcopy-paused or error after the switch
//!     Perform3Done --> PostcopyFailed: postcopy-paused or error
//!     Confirm3 --> PostcopyFailed: postcopy-paused
//!     Perform3 --> [*]: failure before the switch, job ends
//!     PostcopyFailed --> BeginResume: next call with POSTCOPY_RESUME, both QEMUs postcopy-paused
//!     BeginResume --> PerformResume: destination answered migrate-recover
//!     BeginResume --> PostcopyFailed: error
//!     PerformResume --> ConfirmResume: destination completed and reset
//!     PerformResume --> PostcopyFailed: postcopy-paused, failed or error
//!     ConfirmResume --> None: completed
//!     ConfirmResume --> PostcopyFailed: postcopy-paused
//! ```
//!
//! The destination:
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> None
//!     None --> Prepare: Begin, flags valid for Prepare
//!     Prepare --> Finish3: source wait returned
//!     Prepare --> PostcopyFailed: postcopy-paused after the switch
//!     Prepare --> [*]: failure before the switch, QEMU stopped
//!     Finish3 --> None: completed, capabilities and parameters reset
//!     Finish3 --> PostcopyFailed: postcopy-paused or error
//!     Finish3 --> [*]: failed or cancelled before the switch, QEMU stopped
//!     PostcopyFailed --> PrepareResume: next call, migrate-recover sent
//!     PrepareResume --> FinishResume: source migrate resume answered, or postcopy-active again
//!     PrepareResume --> PostcopyFailed: error or postcopy-paused
//!     FinishResume --> None: completed, capabilities and parameters reset
//!     FinishResume --> PostcopyFailed: postcopy-paused
//! ```
//!
//! `Confirm3Cancelled` is never entered: a failure before the switch ends the job where it is.
//! `PostcopyFailed --> BeginResume/PrepareResume` is the next call finding, from QEMU's
//! `postcopy-paused`, the job the failed call left.
//!
//! The code is split by concern: `migration` (the state machine, attach and Begin), `source`
//! (Perform, the wait, Confirm), `destination` (Prepare, Finish), `switch` (the switch to
//! post-copy), `policy` (our switch policies), `resume` (recovery), `failure` (cleanup and failure in post-copy), `events` (QMP
//! events), `job` (API calls on the job), `flags` (flag checks), `domain` (the domain object's
//! rules), `params` and `stats` (what QEMU is told and what it reports).

mod deadline;
mod destination;
pub mod domain;
mod events;
mod failure;
pub mod flags;
mod job;
pub mod libvirt_values;
mod messages;
pub mod migration;
pub mod params;
mod phase;
pub mod policy;
pub mod recovery;
mod resume;
mod side;
mod source;
pub mod stats;
mod switch;
pub mod vocab;

pub use domain::{answer_on_destination, answer_without_job, state_after};
pub use flags::{check_driver_flags, check_public_flags};
pub use messages::{
    Action, ApiCall, ApiValue, DomainEvent, Input, JobMemory, MigrateRequest, Milestone, Outcome,
    SwitchedBy, DOMAIN_NAME,
};
pub use migration::{Migration, Ticket};
pub use phase::{AsyncJob, DomainView, Phase};
pub use policy::SwitchPolicy;
pub use recovery::RecoveryPolicy;
pub use side::{PerSide, Side};
pub use stats::{JobStats, MigStatus, ReplyError};
pub use vocab::{DomainState, VirError};
