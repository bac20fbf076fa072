//! The QEMU driver's migration logic, sans-IO: flags, capabilities, phases, job state and events.

pub mod libvirt_values;
pub mod migration;
pub mod params;
pub mod recovery;
pub mod stats;
pub mod vocab;

pub use migration::{
    abort_without_job, check_driver_flags, check_public_flags, start_postcopy_without_job, Action,
    ApiCall, ApiValue, AsyncJob, DomainEvent, DomainView, Input, JobMemory, MigrateRequest,
    Migration, Outcome, Phase, Side, SwitchedBy,
};
pub use recovery::RecoveryPolicy;
pub use stats::{JobStats, MigStatus};
pub use vocab::{DomainState, VirError};
