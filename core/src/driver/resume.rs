//! Recovery of a post-copy migration that failed: a call with VIR_MIGRATE_POSTCOPY_RESUME
//! (docs/driver-behaviour.md §11). The first call's job is found again from QEMU's status
//! (qemuMigrationAnyCanResume), the destination listens again (`migrate-recover`), the source
//! reconnects (`migrate` with `resume`), then the call finishes like a post-copy migration.

use serde_json::Value;

use super::messages::{Action, DOMAIN_NAME};
use super::migration::{Finish, Migration, Resume, Step};
use super::params;
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::{JobStats, MigStatus};
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    /// qemuMigrationAnyCanResume on both sides, then the QEMU check of Begin and Prepare. The shim
    /// keeps no job between calls: QEMU's migration status stands for libvirt's job and phase.
    pub(super) fn begin_resume(&mut self, out: &mut Vec<Action>) {
        // The domains are in the states their QEMUs' post-copy stands for (libvirt keeps them
        // across calls; the shim reads them back from QEMU): a refused resume leaves them so,
        // not as a fresh domain's "running".
        for side in Side::BOTH {
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
            let st = match self.sides[side].status {
                Some(MigStatus::PostcopyPaused) => Some(paused),
                Some(MigStatus::PostcopyActive) => Some(active),
                _ => None,
            };
            if let Some((s, r)) = st {
                self.set_state(side, s, r);
            }
        }
        for side in Side::BOTH {
            let not_migrating = match side {
                Side::Src => format!("domain '{DOMAIN_NAME}' is not being migrated"),
                Side::Dst => format!("domain '{DOMAIN_NAME}' is not processing incoming migration"),
            };
            let detail = match self.sides[side].status {
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
        self.sides.src.job = AsyncJob::MigrationOut;
        self.sides.dst.job = AsyncJob::MigrationIn;
        self.sides.src.phase = Phase::BeginResume;
        self.sides.src.async_paused = true;
        self.sides.dst.async_paused = true;
        self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY_FAILED);
        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY_FAILED);
        self.step = Step::Resume(Resume::DstRecover);
    }

    pub(super) fn resume_next(&mut self, step: Resume, out: &mut Vec<Action>) {
        match step {
            Resume::DstRecover => {
                self.sides.dst.phase = Phase::PrepareResume;
                let uri = self.req.uri.clone();
                self.main_cmd(Side::Dst, Command::MigrateRecover { uri }, out)
            }
            Resume::SrcParams => {
                self.sides.src.phase = Phase::PerformResume;
                // Capabilities may not change once a migration started: only the post-copy
                // bandwidth is re-applied (applyOnPostcopyResume).
                match self.req.postcopy_bandwidth_mib {
                    Some(bw) => {
                        let bytes = serde_json::json!(bw.saturating_mul(params::MIB));
                        let command = Command::set_parameter("max-postcopy-bandwidth", bytes);
                        self.main_cmd(Side::Src, command, out)
                    }
                    None => self.step = Step::Resume(Resume::SrcMigrate),
                }
            }
            Resume::SrcMigrate => {
                let command = Command::Migrate {
                    uri: self.req.source_uri().to_string(),
                    resume: true,
                };
                self.main_cmd(Side::Src, command, out)
            }
            Resume::SrcWaitRecovered => self.wait_recovered(out),
            Resume::SrcStats => self.main_cmd(Side::Src, Command::QueryMigrate, out),
        }
    }

    fn wait_recovered(&mut self, out: &mut Vec<Action>) {
        if !self.recover_setup_seen {
            out.push(Action::Warn("QEMU is too old, we may report a failure in post-copy phase even though the migration may be running just fine".into()));
            return self.enter_finish_resume();
        }
        match self.sides.src.status {
            Some(MigStatus::PostcopyActive | MigStatus::Completed) => {
                self.step = Step::Resume(Resume::SrcStats)
            }
            Some(MigStatus::PostcopyPaused | MigStatus::Failed) => self.postcopy_failed(out),
            _ => {}
        }
    }

    pub(super) fn resume_reply(&mut self, step: Resume, value: &Value) {
        match step {
            Resume::DstRecover => {
                // The destination listens again: its postcopy-paused is history, not a new
                // failure (QEMU 7.2 says `setup`, 10.0 says nothing until the source connects).
                if self.sides.dst.status == Some(MigStatus::PostcopyPaused) {
                    self.sides.dst.status = None;
                }
                self.step = Step::Resume(Resume::SrcParams)
            }
            Resume::SrcParams => self.step = Step::Resume(Resume::SrcMigrate),
            Resume::SrcMigrate => self.step = Step::Resume(Resume::SrcWaitRecovered),
            Resume::SrcStats => {
                if let Ok(st) = JobStats::from_query_migrate(value) {
                    self.stats = Some(st);
                }
                self.enter_finish_resume();
            }
            Resume::SrcWaitRecovered => {}
        }
    }

    fn enter_finish_resume(&mut self) {
        self.sides.dst.phase = Phase::FinishResume;
        self.step = Step::Finish(Finish::WaitCompleted);
    }
}
