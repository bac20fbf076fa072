//! The switch to post-copy: by virDomainMigrateStartPostCopy (docs/driver-behaviour.md §6) or by
//! the driver itself with VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY once the first pre-copy pass is done
//! (§7), and the milestones a transport times it by.

use serde_json::Value;

use super::domain;
use super::messages::{Action, ApiCall, DomainEvent, Milestone, SwitchedBy};
use super::migration::{Migration, Purpose};
use super::phase::AsyncJob;
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    /// MIGRATION_PASS: the source finished a pass over memory. libvirt reports it as
    /// MIGRATION_ITERATION; with our flag, pass 2 (the first pass done) is the switch point.
    pub(super) fn on_pass(&mut self, side: Side, data: &Value, out: &mut Vec<Action>) {
        let pass = data.get("pass").and_then(Value::as_u64).unwrap_or(0);
        let first_pass_done = pass >= 2 && self.last_pass < 2;
        self.last_pass = pass;
        if side != Side::Src {
            return;
        }
        if first_pass_done {
            out.push(Action::Milestone(Milestone::Pass2Seen { pass }));
        }
        out.push(Action::Emit {
            side,
            event: DomainEvent::MigrationIteration { iteration: pass },
        });
        if self.flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0
            && pass >= 2
            && self.sides.src.status == Some(MigStatus::Active)
            && self.switch.is_none()
            && self.sides.src.job == AsyncJob::MigrationOut
        {
            self.send(
                Side::Src,
                Command::MigrateStartPostcopy,
                Purpose::AutoSwitch,
                out,
            );
            self.note_switch(SwitchedBy::AfterPrecopy { pass }, out);
        }
    }

    /// virDomainMigrateStartPostCopy's checks while the source's job runs (§6).
    pub(super) fn check_start_postcopy(&self, flags: u32) -> Result<(), VirError> {
        let src = &self.sides.src;
        if flags != 0 || !src.active || src.job != AsyncJob::MigrationOut {
            return Err(domain::start_postcopy_without_job(flags, src.active));
        }
        if self.flags & VIR_MIGRATE_POSTCOPY == 0 {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "switching to post-copy requires migration to be started with VIR_MIGRATE_POSTCOPY flag",
            ));
        }
        Ok(())
    }

    /// virDomainMigrateStartPostCopy, checked: `migrate-start-postcopy`, each time it is called
    /// (QEMU only sets a flag again); the first request is the one the outcome names.
    pub(super) fn request_switch(&mut self, call: ApiCall, out: &mut Vec<Action>) {
        self.send(
            Side::Src,
            Command::MigrateStartPostcopy,
            Purpose::Api(call),
            out,
        );
        if self.switch.is_none() {
            let pass = self.last_pass;
            self.note_switch(SwitchedBy::Api { pass }, out);
        }
    }

    /// The first switch request of the call; its milestone follows the command, so a transport
    /// that writes the command at once times the write.
    fn note_switch(&mut self, by: SwitchedBy, out: &mut Vec<Action>) {
        self.switch = Some(by);
        out.push(Action::Milestone(Milestone::SwitchRequested(by)));
    }

    /// QEMU reported postcopy-active on `side`: the guest runs on the destination.
    pub(super) fn enter_postcopy(&mut self, side: Side, out: &mut Vec<Action>) {
        if !self.entered_postcopy {
            out.push(Action::Milestone(Milestone::PostcopyActive { side }));
        }
        self.entered_postcopy = true;
    }
}
