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
use crate::qmp::{Command, QmpError};

impl Migration {
    /// MIGRATION_PASS: the source finished a pass over memory. libvirt reports it as
    /// MIGRATION_ITERATION; with our flag, pass 2 (the first pass done) is the switch point.
    pub(super) fn on_pass(&mut self, side: Side, data: &Value, out: &mut Vec<Action>) {
        let pass = data.get("pass").and_then(Value::as_u64).unwrap_or(0);
        let second_pass = pass >= 2 && self.last_pass < 2;
        self.last_pass = pass;
        if side != Side::Src {
            return;
        }
        let passes_are_full = self.passes_count_full_passes();
        if second_pass && passes_are_full {
            out.push(Action::Milestone(Milestone::Pass2Seen { pass }));
        }
        out.push(Action::Emit {
            side,
            event: DomainEvent::MigrationIteration { iteration: pass },
        });
        if !(pass >= 2 && self.may_switch_after_precopy()) {
            return;
        }
        if passes_are_full {
            self.switch_after_precopy(pass, out);
        } else if !self.probe_pending {
            // QEMU > 10.0 reports a pass per dirty-bitmap sync: ask how much was sent.
            self.probe_pending = true;
            self.send(
                Side::Src,
                Command::QueryMigrate,
                Purpose::FirstPassProbe,
                out,
            );
        }
    }

    /// Up to QEMU 10.0 (recorded: 7.2.22, 10.0.2) MIGRATION_PASS counts full passes over RAM:
    /// pass 2 starts once the first is done. QEMU 11.1 sends one per dirty-bitmap sync, about
    /// every 100 ms while rate-limited (qemu-fixtures/README.md); versions after 10.0 are asked.
    fn passes_count_full_passes(&self) -> bool {
        self.src_version < (10, 1, 0)
    }

    /// Rules 1, 3, 4 and 5 of docs/driver-behaviour.md §7.
    fn may_switch_after_precopy(&self) -> bool {
        self.flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0
            && self.sides.src.status == Some(MigStatus::Active)
            && self.switch.is_none()
            && self.sides.src.job == AsyncJob::MigrationOut
    }

    fn switch_after_precopy(&mut self, pass: u64, out: &mut Vec<Action>) {
        self.send(
            Side::Src,
            Command::MigrateStartPostcopy,
            Purpose::AutoSwitch,
            out,
        );
        self.note_switch(SwitchedBy::AfterPrecopy { pass }, out);
    }

    /// The probe's answer: the first full pass is done once QEMU sent at least one page (normal
    /// or zero) per page of guest RAM (docs/driver-behaviour.md §7, rule 2).
    pub(super) fn on_first_pass_probe(
        &mut self,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        self.probe_pending = false;
        let reply = match result {
            Ok(v) => v,
            Err(e) => {
                out.push(Action::Warn(format!(
                    "switching to post-copy failed: query-migrate: {}",
                    e.desc
                )));
                return;
            }
        };
        if !self.may_switch_after_precopy() || !first_pass_done(&reply) {
            return;
        }
        let pass = self.last_pass;
        out.push(Action::Milestone(Milestone::Pass2Seen { pass }));
        self.switch_after_precopy(pass, out);
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

/// Whether a `query-migrate` reply shows the first full pre-copy pass done: `ram.normal +
/// ram.duplicate` pages (sent, and sent as zero) cover `ram.total` bytes of `ram.page-size`. A
/// reply without these fields counts as done (the pass event alone decides, as up to QEMU 10.0).
pub(super) fn first_pass_done(reply: &Value) -> bool {
    let ram = |k: &str| {
        reply
            .get("ram")
            .and_then(|r| r.get(k))
            .and_then(Value::as_u64)
    };
    match (
        ram("normal"),
        ram("duplicate"),
        ram("page-size"),
        ram("total"),
    ) {
        (Some(normal), Some(zero), Some(page), Some(total)) if page > 0 => {
            normal.saturating_add(zero).saturating_mul(page) >= total
        }
        _ => true,
    }
}
