//! When a migration fails (docs/driver-behaviour.md §10). Before the guest runs on the
//! destination, libvirt cancels, restores the source and stops the destination; once the
//! migration is in post-copy, nothing is killed, cancelled or rolled back: both jobs wait in phase
//! `postcopy_failed` for a recovery.

use serde_json::{json, Value};

use super::messages::Action;
use super::migration::{Cleanup, Confirm, Finish, Migration, Perform, Step, Wait};
use super::params;
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    /// A main-line command failed in `step`: QEMU's error, as libvirt reports it.
    pub(super) fn on_main_error(&mut self, step: Step, err: VirError, out: &mut Vec<Action>) {
        match step {
            // Cleanup goes on whatever QEMU says; the first error is the one reported.
            Step::Cleanup(Cleanup::Cancel) => {
                self.error.get_or_insert(err);
                self.step = Step::Cleanup(Cleanup::ResetCaps);
            }
            Step::Cleanup(Cleanup::ResetCaps) => self.step = Step::Cleanup(Cleanup::ResetParams),
            Step::Cleanup(Cleanup::ResetParams) => self.step = Step::Cleanup(Cleanup::Cont),
            Step::Cleanup(Cleanup::Cont | Cleanup::Query | Cleanup::WaitCancelled) => {
                self.finish_failed(out)
            }
            Step::Finish(reset @ (Finish::ResetCaps | Finish::ResetParams)) => {
                out.push(Action::Warn(format!(
                    "resetting migration parameters failed: {err}"
                )));
                self.step = if reset == Finish::ResetCaps {
                    Step::Finish(Finish::ResetParams)
                } else {
                    Step::Confirm(Confirm::WaitCompleted)
                };
            }
            _ if self.entered_postcopy => {
                // After the switch nothing is rolled back (§10.2); the call reports QEMU's error
                // (e.g. migrate-recover's), as libvirt's failed API call does.
                self.postcopy_failed(out);
                self.report_instead(err, out);
            }
            _ if matches!(self.step, Step::Attach(_)) => self.finish_early(err, out),
            // QEMU refused `migrate`: no migration runs, nothing to cancel. qemuMigrationSrcRun
            // sets `cancel` only once `migrate` succeeded, so a refused one goes straight to the
            // reset (§10.1); a `migrate_cancel` here would wait for a status that never comes.
            Step::Perform(Perform::Migrate) => {
                self.error.get_or_insert(err);
                self.awaiting = None;
                self.step = Step::Cleanup(Cleanup::ResetCaps);
            }
            _ => self.fail(err, out),
        }
    }

    /// The deadline's failure before post-copy: the cleanup of §10.1 (cancel, reset, resume).
    pub(super) fn fail_after_deadline(&mut self, out: &mut Vec<Action>) {
        self.start_cleanup(out);
    }

    pub(super) fn fail(&mut self, err: VirError, out: &mut Vec<Action>) {
        if self.error.is_none() {
            self.error = Some(err);
        }
        self.start_cleanup(out);
    }

    /// Failure before the guest runs on the destination: cancel, restore the source, stop the
    /// destination.
    fn start_cleanup(&mut self, out: &mut Vec<Action>) {
        self.awaiting = None;
        let migrating =
            self.step >= Step::Perform(Perform::Migrate) && self.step <= Step::Wait(Wait::Stats);
        let qemu_ended = matches!(
            self.sides.src.status,
            Some(MigStatus::Failed | MigStatus::Cancelled)
        );
        self.step = Step::Cleanup(if migrating && !qemu_ended {
            Cleanup::Cancel
        } else if self.step >= Step::Perform(Perform::QueryParams) {
            Cleanup::ResetCaps
        } else {
            Cleanup::Cont
        });
        if self.step == Step::Cleanup(Cleanup::Cont) && self.sides.src.job == AsyncJob::None {
            self.finish_failed(out);
        }
    }

    pub(super) fn cleanup_next(&mut self, step: Cleanup, out: &mut Vec<Action>) {
        match step {
            Cleanup::Query => self.main_cmd(Side::Src, Command::QueryMigrate, out),
            Cleanup::Cancel => self.main_cmd(Side::Src, Command::MigrateCancel, out),
            // qemuMigrationSrcIsCanceled: QEMU refuses capability changes while a migration
            // runs, `cancelling` included, so the reset waits for the end (an event).
            Cleanup::WaitCancelled => {
                // A source that pauses in post-copy instead ends the wait too (libvirt would
                // wait on; the shim never waits for a status that cannot come).
                if matches!(
                    self.sides.src.status,
                    Some(
                        MigStatus::Completed
                            | MigStatus::Failed
                            | MigStatus::Cancelled
                            | MigStatus::PostcopyPaused
                    )
                ) {
                    self.step = Step::Cleanup(Cleanup::ResetCaps);
                }
            }
            Cleanup::ResetCaps => {
                let caps = params::cleared_caps(&self.sides.src.caps);
                self.main_cmd(Side::Src, Command::MigrateSetCapabilities(caps), out);
            }
            Cleanup::ResetParams => {
                let orig = self.sides.src.orig_params.clone();
                let orig = orig.unwrap_or_else(|| json!({}));
                self.main_cmd(Side::Src, Command::MigrateSetParameters(orig), out);
            }
            Cleanup::Cont => {
                if self.sides.src.state == DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
                {
                    self.main_cmd(Side::Src, Command::Cont, out);
                } else {
                    self.finish_failed(out);
                }
            }
        }
    }

    pub(super) fn cleanup_reply(&mut self, step: Cleanup, value: &Value, out: &mut Vec<Action>) {
        match step {
            Cleanup::Query => {
                let e = match value.get("error-desc").and_then(Value::as_str) {
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
                self.step = Step::Cleanup(Cleanup::ResetCaps);
            }
            Cleanup::Cancel => self.step = Step::Cleanup(Cleanup::WaitCancelled),
            Cleanup::WaitCancelled => {} // a wait: no command
            Cleanup::ResetCaps => self.step = Step::Cleanup(Cleanup::ResetParams),
            Cleanup::ResetParams => self.step = Step::Cleanup(Cleanup::Cont),
            Cleanup::Cont => {
                self.set_state(Side::Src, state::RUNNING, state::RUNNING_MIGRATION_CANCELED);
                self.emit(Side::Src, event::RESUMED, event::RESUMED_MIGRATED, out);
                self.finish_failed(out);
            }
        }
    }

    /// The call ends with `e` before (or without) a migration in QEMU.
    pub(super) fn finish_early(&mut self, e: VirError, out: &mut Vec<Action>) {
        self.error = Some(e.clone());
        self.step = Step::Finished;
        self.sides.src.job = AsyncJob::None;
        self.sides.dst.job = AsyncJob::None;
        out.push(Action::Done(Err(e)));
    }

    pub(super) fn finish_failed(&mut self, out: &mut Vec<Action>) {
        // The destination never ran the guest: libvirt stops it (Finish with cancelled=1).
        if self.sides.dst.active && !self.entered_postcopy {
            self.sides.dst.active = false;
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

    /// Failure in post-copy (§10.2): both jobs stay in phase postcopy_failed; the source is
    /// PAUSED/POSTCOPY_FAILED, the destination RUNNING/POSTCOPY_FAILED (or keeps its pause
    /// reason).
    pub(super) fn postcopy_failed(&mut self, out: &mut Vec<Action>) {
        for side in Side::BOTH {
            self.mark_postcopy_failed(side, out);
        }
        let who = if matches!(self.step, Step::Finish(_)) {
            "migration in"
        } else {
            "migration out"
        };
        let e = VirError::new(
            code::OPERATION_FAILED,
            format!("job '{who}' failed in post-copy phase"),
        );
        self.error = Some(e.clone());
        self.awaiting = None;
        self.step = Step::Finished;
        out.push(Action::Done(Err(e)));
    }

    /// The call just ended (its last action is `Done`): it reports `err` instead.
    pub(super) fn report_instead(&mut self, err: VirError, out: &mut [Action]) {
        self.error = Some(err.clone());
        if let Some(Action::Done(r)) = out.last_mut() {
            *r = Err(err);
        }
    }

    /// qemuMigrationSrcPostcopyFailed / qemuMigrationDstPostcopyFailed on one side: once per
    /// failure. A side already failed in post-copy (`asyncPaused`, or its state says so, libvirt's
    /// virDomainObjIsFailedPostcopy) keeps its state and emits nothing again: a recovery that fails
    /// before QEMU left `postcopy-paused` on that side is the same failure.
    pub(super) fn mark_postcopy_failed(&mut self, side: Side, out: &mut Vec<Action>) {
        let v = &mut self.sides[side];
        if !v.active {
            return;
        }
        v.phase = Phase::PostcopyFailed;
        let failed_state = matches!(
            (v.state.state, v.state.reason),
            (state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
                | (state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
        );
        if v.async_paused || failed_state {
            v.async_paused = true;
            return;
        }
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
            Side::Dst if self.sides.dst.state.state == state::RUNNING => {
                self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY_FAILED);
                self.emit(
                    Side::Dst,
                    event::RESUMED,
                    event::RESUMED_POSTCOPY_FAILED,
                    out,
                );
            }
            Side::Dst => self.emit(
                Side::Dst,
                event::SUSPENDED,
                event::SUSPENDED_POSTCOPY_FAILED,
                out,
            ),
        }
    }

    /// A monitor closed: the QEMU went away. Before the switch libvirt cancels and restores the
    /// source; after it, the surviving side is left paused and reported.
    pub(super) fn on_closed(&mut self, side: Side, reason: String, out: &mut Vec<Action>) {
        let v = &mut self.sides[side];
        v.active = false;
        v.state = DomainState::new(state::SHUTOFF, state::SHUTOFF_CRASHED);
        // qemuProcessHandleMonitorEOF: a QEMU gone without a SHUTDOWN event crashed.
        self.emit(side, event::STOPPED, event::STOPPED_FAILED, out);
        let err = Migration::monitor_closed(side, &reason);
        if self.entered_postcopy && side == Side::Dst && matches!(self.step, Step::Wait(_)) {
            // qemuMigrationSrcRun's error path: the source's Perform has not returned, so the
            // destination never ran the guest ("destination is not running yet"): the source is
            // relabelled PAUSED/MIGRATION and the migration cancelled as before the switch; the
            // Confirm then resumes the source and resets its parameters (§10.1).
            if self.sides.src.state == DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY) {
                self.set_state(Side::Src, state::PAUSED, state::PAUSED_MIGRATION);
            }
            self.entered_postcopy = false;
            self.fail(err, out);
            return;
        }
        if self.entered_postcopy {
            self.error = Some(err.clone());
            self.mark_postcopy_failed(side.other(), out);
            self.awaiting = None;
            self.step = Step::Finished;
            out.push(Action::Done(Err(err)));
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
