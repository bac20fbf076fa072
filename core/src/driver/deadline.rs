//! The overall deadline of a live migrate call (docs/driver-behaviour.md §10.4; not in libvirt,
//! whose API call waits as long as QEMU takes). The transport owns the clock and tells the driver
//! when the deadline passed ([`Input::Deadline`](super::Input::Deadline)); the driver decides by
//! phase what that means:
//!
//! - before post-copy: the migration is cancelled as virDomainAbortJob would (§10.3, §10.1);
//! - once the guest runs on the destination in post-copy (or in a recovery call): never a cancel,
//!   never a kill: `migrate-pause` on a source in `postcopy-active`, both sides left failed in
//!   post-copy and recoverable (§10.2, §11);
//!
//! and the call ends with OPERATION_TIMEOUT naming both sides' phases. The cleanup before
//! post-copy waits for QEMU; a second expiry (the transport's grace period) ends the call where
//! it is.

use std::time::Duration;

use super::messages::Action;
use super::migration::{Migration, Perform, Purpose, Step};
use super::phase::Phase;
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    pub(super) fn on_deadline(&mut self, limit: Duration, out: &mut Vec<Action>) {
        let phases = format!(
            "source phase {}, destination phase {}",
            self.sides.src.phase.name(),
            self.sides.dst.phase.name()
        );
        let secs = limit.as_secs_f64();
        if self.deadline_passed {
            // The grace period passed too: QEMU did not let the cleanup finish.
            out.push(Action::Warn(format!(
                "the cleanup after the deadline did not finish ({phases})"
            )));
            self.awaiting = None;
            let in_postcopy = self.entered_postcopy;
            if in_postcopy {
                self.end_in_postcopy(out);
            } else {
                self.finish_failed(out);
            }
            return;
        }
        self.deadline_passed = true;
        let in_postcopy = self.entered_postcopy || self.sides.src.phase == Phase::PostcopyFailed;
        if in_postcopy {
            let paused =
                self.sides.src.active && self.sides.src.status == Some(MigStatus::PostcopyActive);
            if paused {
                self.send(
                    Side::Src,
                    Command::MigratePause,
                    Purpose::DeadlinePause,
                    out,
                );
            }
            let what = if paused {
                "post-copy was paused (migrate-pause)"
            } else {
                "post-copy was not running"
            };
            self.error = Some(VirError::new(
                code::OPERATION_TIMEOUT,
                format!(
                    "migration deadline of {secs} s passed ({phases}) after the guest started on the destination: {what}; nothing was cancelled or killed, both QEMUs are left for VIR_MIGRATE_POSTCOPY_RESUME"
                ),
            ));
            self.end_in_postcopy(out);
            return;
        }
        let before_migrate = self.step < Step::Perform(Perform::Migrate);
        let e = VirError::new(
            code::OPERATION_TIMEOUT,
            format!(
                "migration deadline of {secs} s passed ({phases}); the migration was {}",
                if before_migrate {
                    "stopped before QEMU began it"
                } else {
                    "cancelled"
                }
            ),
        );
        if matches!(self.step, Step::Attach(_) | Step::Begin) {
            return self.finish_early(e, out);
        }
        if self.sides.dst.state.state == state::RUNNING {
            // Pre-copy is over and the guest runs on the destination (Confirm): nothing to
            // cancel, and the source must not run again.
            let e = VirError::new(
                code::OPERATION_TIMEOUT,
                format!("migration deadline of {secs} s passed ({phases}) after the guest started on the destination; nothing was cancelled"),
            );
            return self.finish_early(e, out);
        }
        if matches!(self.step, Step::Cleanup(_)) {
            // Already cleaning up after a failure: that goes on; the next expiry ends it.
            return;
        }
        if self.step == Step::Perform(Perform::Migrate) && self.awaiting.is_some() {
            // `migrate` is on its way: cancel once it is answered, as an abort does (§10.3).
            self.abort_requested = true;
            self.error = Some(e);
            return;
        }
        self.error = Some(e);
        self.fail_after_deadline(out);
    }

    /// Ends the call with both sides failed in post-copy and the deadline's error.
    fn end_in_postcopy(&mut self, out: &mut Vec<Action>) {
        let err = self.error.clone();
        self.postcopy_failed(out);
        if let Some(e) = err {
            // postcopy_failed reports the job's failure; the deadline is the cause.
            self.report_instead(e, out);
        }
    }
}
