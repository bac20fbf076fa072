//! The source's phases: Perform up to `migrate` (docs/driver-behaviour.md §4.1), the wait for the
//! migration to leave pre-copy (§4.2), and Confirm (§5). The capability and parameter setup of
//! both sides is here too (§2).

use serde_json::Value;

use super::messages::{Action, DomainEvent, Outcome};
use super::migration::{Cleanup, Confirm, Finish, Migration, Perform, Step, Switchover, Wait};
use super::params::{self, Party};
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::{JobStats, MigStatus};
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    /// `migrate-set-capabilities` for a fresh migration (qemuMigrationParamsCheck): the peer's
    /// list stands for the cookie's, so both sides decide the optional capabilities alike.
    pub(super) fn set_caps(&mut self, side: Side, out: &mut Vec<Action>) {
        let party = match side {
            Side::Src => Party::Source,
            Side::Dst => Party::Destination,
        };
        let (local, peer) = (&self.sides[side].caps, &self.sides[side.other()].caps);
        match params::plan_caps(self.flags, party, local, peer) {
            Ok(caps) => self.main_cmd(side, Command::MigrateSetCapabilities(caps), out),
            Err(e) => self.fail(e, out),
        }
    }

    /// `migrate-set-parameters` for a fresh migration; nothing is sent for an empty set.
    pub(super) fn set_params(&mut self, side: Side, next: Step, out: &mut Vec<Action>) {
        let party = match side {
            Side::Src => Party::Source,
            Side::Dst => Party::Destination,
        };
        let p = params::migration_params(
            party,
            self.sides[side]
                .orig_params
                .as_ref()
                .unwrap_or(&Value::Null),
            self.req.bandwidth_mib,
            self.req.postcopy_bandwidth_mib,
        );
        if p.as_object().is_some_and(|o| o.is_empty()) {
            self.step = next;
        } else {
            self.main_cmd(side, Command::MigrateSetParameters(p), out);
        }
    }

    pub(super) fn perform_next(&mut self, step: Perform, out: &mut Vec<Action>) {
        match step {
            Perform::QueryParams => self.main_cmd(Side::Src, Command::QueryMigrateParameters, out),
            Perform::SetCaps => self.set_caps(Side::Src, out),
            Perform::SetParams => self.set_params(Side::Src, Step::Perform(Perform::Migrate), out),
            // qemuMigrationSrcRun checks abortJob right before `migrate`.
            Perform::Migrate if self.abort_requested => {
                let e = self.error.clone().unwrap_or_else(|| {
                    VirError::new(code::OPERATION_ABORTED, "migration out: canceled by client")
                });
                // Nothing runs in QEMU yet: no cancel, only the source's reset.
                self.step = Step::Perform(Perform::SetParams);
                self.fail(e, out);
            }
            Perform::Migrate => {
                let command = Command::Migrate {
                    uri: self.req.source_uri().to_string(),
                    resume: false,
                };
                self.main_cmd(Side::Src, command, out)
            }
        }
    }

    pub(super) fn perform_reply(&mut self, step: Perform, value: &Value) {
        self.step = match step {
            Perform::QueryParams => {
                self.sides.src.orig_params = Some(params::original_params(value));
                Step::Perform(Perform::SetCaps)
            }
            Perform::SetCaps => Step::Perform(Perform::SetParams),
            Perform::SetParams => Step::Perform(Perform::Migrate),
            // virDomainAbortJob came while `migrate` was on its way: cancel it now.
            Perform::Migrate if self.abort_requested => Step::Cleanup(Cleanup::Cancel),
            Perform::Migrate => Step::Wait(Wait::Events),
        };
    }

    pub(super) fn wait_next(&mut self, step: Wait, out: &mut Vec<Action>) {
        match step {
            Wait::Events => self.src_wait(out),
            Wait::Continue => self.main_cmd(Side::Src, Command::MigrateContinue, out),
            Wait::PauseStats | Wait::Stats => self.main_cmd(Side::Src, Command::QueryMigrate, out),
        }
    }

    fn src_wait(&mut self, out: &mut Vec<Action>) {
        match self.sides.src.status {
            // The wait returns at pre-switchover: libvirt refreshes the statistics first, then
            // waits until the STOP event has been processed, then sends migrate-continue.
            Some(MigStatus::PreSwitchover) if self.switchover == Switchover::NotReached => {
                self.switchover = Switchover::StatsRead;
                self.step = Step::Wait(Wait::PauseStats);
            }
            Some(MigStatus::PreSwitchover)
                if self.sides.src.state.state != state::RUNNING
                    && self.switchover == Switchover::StatsRead =>
            {
                self.switchover = Switchover::Continued;
                self.step = Step::Wait(Wait::Continue);
            }
            Some(MigStatus::PostcopyActive | MigStatus::Completed) => {
                self.step = Step::Wait(Wait::Stats)
            }
            Some(MigStatus::Failed) => self.step = Step::Cleanup(Cleanup::Query),
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

    pub(super) fn wait_reply(&mut self, step: Wait, value: &Value) {
        match step {
            Wait::Continue => self.step = Step::Wait(Wait::Events),
            Wait::PauseStats => {
                if let Ok(st) = JobStats::from_query_migrate(value) {
                    self.stats = Some(st);
                }
                self.step = Step::Wait(Wait::Events);
            }
            Wait::Stats => {
                if let Ok(st) = JobStats::from_query_migrate(value) {
                    self.stats = Some(st);
                }
                self.sides.src.phase = Phase::Perform3Done;
                self.sides.dst.phase = Phase::Finish3;
                self.step = Step::Finish(Finish::WaitFirst);
            }
            Wait::Events => {}
        }
    }

    pub(super) fn confirm_next(&mut self, step: Confirm, out: &mut Vec<Action>) {
        match step {
            // qemuMigrationSrcComplete re-reads the statistics only after post-copy (those of
            // the switch point are stale); after pre-copy it keeps those of Perform's wait.
            Confirm::WaitCompleted => match self.sides.src.status {
                Some(MigStatus::Completed)
                    if self.sides.src.state
                        == DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY) =>
                {
                    self.step = Step::Confirm(Confirm::QueryFinal)
                }
                Some(MigStatus::Completed) => {
                    let stats = self.stats.clone().unwrap_or_default();
                    self.complete_source(stats, out)
                }
                Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                _ => {}
            },
            Confirm::QueryFinal => self.main_cmd(Side::Src, Command::QueryMigrate, out),
        }
    }

    pub(super) fn confirm_reply(&mut self, step: Confirm, value: &Value, out: &mut Vec<Action>) {
        if step != Confirm::QueryFinal {
            return;
        }
        let stats = match JobStats::from_query_migrate(value) {
            Ok(s) => s,
            Err(e) => {
                out.push(Action::Warn(format!("final statistics unavailable: {e}")));
                self.stats.clone().unwrap_or_default()
            }
        };
        self.complete_source(stats, out);
    }

    /// The source's end of a completed migration (qemuMigrationSrcComplete): the completed
    /// statistics, SHUTOFF/MIGRATED, STOPPED_MIGRATED, JOB_COMPLETED, and QEMU stopped.
    fn complete_source(&mut self, mut stats: JobStats, out: &mut Vec<Action>) {
        stats.job_type = job::COMPLETED;
        let src = &mut self.sides.src;
        src.job = AsyncJob::None;
        src.phase = Phase::None;
        src.active = false;
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
}
