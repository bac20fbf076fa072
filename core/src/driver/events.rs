//! QMP events: what QEMU reports changes libvirt's view of each domain (qemuProcessHandle*,
//! docs/driver-behaviour.md §9).

use serde_json::Value;

use super::messages::Action;
use super::migration::{Cleanup, Migration, Step, Wait};
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;

impl Migration {
    pub(super) fn on_event(&mut self, side: Side, name: &str, data: &Value, out: &mut Vec<Action>) {
        match name {
            "MIGRATION" => self.on_migration_status(side, data, out),
            "MIGRATION_PASS" => self.on_pass(side, data, out),
            "STOP" => self.on_stop(side, out),
            "RESUME" => self.on_resume(side, out),
            _ => {}
        }
    }

    fn on_migration_status(&mut self, side: Side, data: &Value, out: &mut Vec<Action>) {
        let s = data.get("status").and_then(Value::as_str).unwrap_or("");
        let Some(st) = MigStatus::parse(s) else {
            out.push(Action::Warn(format!(
                "{}: unknown migration status '{s}' in MIGRATION event",
                side.tag()
            )));
            return;
        };
        let view = &mut self.sides[side];
        if view.job == AsyncJob::None && view.phase != Phase::PostcopyFailed {
            return; // libvirt ignores the event without an async job
        }
        view.status = Some(st);
        let paused_postcopy = DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY);
        match (side, st) {
            (Side::Src, MigStatus::PostcopyActive) => {
                self.enter_postcopy(side, out);
                if self.sides.src.state == DomainState::new(state::PAUSED, state::PAUSED_MIGRATION)
                {
                    self.sides.src.state = paused_postcopy;
                    self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
                }
            }
            (Side::Dst, MigStatus::PostcopyActive) => self.enter_postcopy(side, out),
            (Side::Src, MigStatus::PostcopyRecoverSetup) => self.recover_setup_seen = true,
            // Recovery started: the failed job is no longer paused (qemuProcessHandleMigrationStatus).
            (Side::Src, MigStatus::PostcopyRecover) if self.sides.src.async_paused => {
                self.sides.src.async_paused = false;
                self.sides.src.state = paused_postcopy;
                self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
            }
            (Side::Dst, MigStatus::PostcopyRecover) if self.sides.dst.async_paused => {
                self.sides.dst.async_paused = false;
                self.set_state(Side::Dst, state::RUNNING, state::RUNNING_POSTCOPY);
                self.emit(Side::Dst, event::RESUMED, event::RESUMED_POSTCOPY, out);
            }
            // Each daemon reacts to its own QEMU (qemuProcessHandleMigrationStatus): a paused
            // source fails the source's job at once, since no thread may watch it.
            (Side::Src, MigStatus::PostcopyPaused) => {
                if self.sides.src.state.state == state::PAUSED {
                    self.mark_postcopy_failed(Side::Src, out);
                }
                // The call ends where the source's own wait runs; during Finish the destination
                // decides from its own monitor (docs/driver-behaviour.md §10.2).
                if !matches!(self.step, Step::Finish(_) | Step::Cleanup(_))
                    && (self.step >= Step::Wait(Wait::Stats) || self.entered_postcopy)
                {
                    self.postcopy_failed(out);
                }
            }
            // The destination's handler does nothing; its Finish fails from this status. The
            // shim acts at the event even while `cont` is unanswered (libvirt notices once `cont`
            // returned): the failure and its error are the same.
            (Side::Dst, MigStatus::PostcopyPaused) if matches!(self.step, Step::Finish(_)) => {
                self.postcopy_failed(out);
            }
            _ => {}
        }
    }

    fn on_stop(&mut self, side: Side, out: &mut Vec<Action>) {
        let view = &self.sides[side];
        if view.state.state != state::RUNNING {
            return;
        }
        match side {
            Side::Src if matches!(view.status, Some(s) if s.is_postcopy()) => {
                self.set_state(Side::Src, state::PAUSED, state::PAUSED_POSTCOPY);
                self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_POSTCOPY, out);
            }
            Side::Src => {
                self.set_state(Side::Src, state::PAUSED, state::PAUSED_MIGRATION);
                self.emit(Side::Src, event::SUSPENDED, event::SUSPENDED_MIGRATED, out);
            }
            Side::Dst => self.set_state(Side::Dst, state::PAUSED, state::PAUSED_UNKNOWN),
        }
    }

    fn on_resume(&mut self, side: Side, out: &mut Vec<Action>) {
        let view = &self.sides[side];
        if view.state.state == state::RUNNING {
            return;
        }
        match side {
            Side::Dst if view.job == AsyncJob::MigrationIn => {
                let (reason, detail) = if view.phase == Phase::PostcopyFailed {
                    (
                        state::RUNNING_POSTCOPY_FAILED,
                        event::RESUMED_POSTCOPY_FAILED,
                    )
                } else if self.finish_in_postcopy {
                    (state::RUNNING_POSTCOPY, event::RESUMED_POSTCOPY)
                } else {
                    (state::RUNNING_MIGRATED, event::RESUMED_MIGRATED)
                };
                self.set_state(Side::Dst, state::RUNNING, reason);
                self.emit(Side::Dst, event::RESUMED, detail, out);
            }
            // The source resumed by someone else; libvirt follows QEMU.
            Side::Src if view.active && self.step < Step::Cleanup(Cleanup::Query) => {
                self.set_state(Side::Src, state::RUNNING, state::RUNNING_UNPAUSED);
            }
            _ => {}
        }
    }
}
