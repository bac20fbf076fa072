//! The destination's phases: Prepare (docs/driver-behaviour.md §3) and Finish (§5).

use serde_json::Value;

use super::messages::Action;
use super::migration::{CallKind, Confirm, Finish, Migration, Perform, Prepare, Step};
use super::params;
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::MigStatus;
use super::vocab::*;
use crate::qmp::Command;

impl Migration {
    pub(super) fn prepare_next(&mut self, step: Prepare, out: &mut Vec<Action>) {
        match step {
            Prepare::QueryParams => self.main_cmd(Side::Dst, Command::QueryMigrateParameters, out),
            Prepare::SetCaps => self.set_caps(Side::Dst, out),
            Prepare::SetParams => self.set_params(Side::Dst, Step::Prepare(Prepare::Incoming), out),
            Prepare::Incoming => {
                let command = Command::MigrateIncoming {
                    uri: self.req.uri.clone(),
                    // exit-on-error exists since QEMU 9.1; libvirt sends it only where QEMU has it
                    // (it probes the schema).
                    exit_on_error: (self.dst_version >= (9, 1, 0)).then_some(false),
                };
                self.main_cmd(Side::Dst, command, out);
            }
        }
    }

    pub(super) fn prepare_reply(&mut self, step: Prepare, value: &Value, out: &mut Vec<Action>) {
        match step {
            Prepare::QueryParams => {
                self.sides.dst.orig_params = Some(params::original_params(value));
                self.step = Step::Prepare(Prepare::SetCaps);
            }
            Prepare::SetCaps => self.step = Step::Prepare(Prepare::SetParams),
            Prepare::SetParams => self.step = Step::Prepare(Prepare::Incoming),
            Prepare::Incoming => {
                self.set_state(Side::Dst, state::PAUSED, state::PAUSED_MIGRATION);
                self.emit(Side::Dst, event::STARTED, event::STARTED_MIGRATED, out);
                self.sides.src.phase = Phase::Perform3;
                self.step = Step::Perform(Perform::QueryParams);
            }
        }
    }

    pub(super) fn finish_next(&mut self, step: Finish, out: &mut Vec<Action>) {
        match step {
            Finish::WaitFirst => match self.sides.dst.status {
                Some(status @ (MigStatus::PostcopyActive | MigStatus::Completed)) => {
                    // Decided once, here, as libvirt's Finish does (docs/driver-behaviour.md §5).
                    self.finish_in_postcopy = status == MigStatus::PostcopyActive;
                    self.step = Step::Finish(Finish::Cont)
                }
                Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                Some(MigStatus::Failed | MigStatus::Cancelled) => self.fail(
                    VirError::new(
                        code::OPERATION_FAILED,
                        "job 'migration in' unexpectedly failed",
                    ),
                    out,
                ),
                _ => {}
            },
            Finish::Cont => self.main_cmd(Side::Dst, Command::Cont, out),
            Finish::WaitResume => {
                if self.sides.dst.state.state == state::RUNNING {
                    self.step = Step::Finish(Finish::WaitCompleted);
                }
            }
            Finish::WaitCompleted => match self.sides.dst.status {
                Some(MigStatus::Completed) => {
                    if self.finish_in_postcopy {
                        self.set_state(Side::Dst, state::RUNNING, state::RUNNING_MIGRATED);
                        self.emit(Side::Dst, event::RESUMED, event::RESUMED_MIGRATED, out);
                    }
                    self.step = Step::Finish(Finish::ResetCaps);
                }
                Some(MigStatus::PostcopyPaused) => self.postcopy_failed(out),
                _ => {}
            },
            Finish::ResetCaps => {
                let caps = params::cleared_caps(&self.sides.dst.caps);
                self.main_cmd(Side::Dst, Command::MigrateSetCapabilities(caps), out);
            }
            Finish::ResetParams => match self.sides.dst.orig_params.clone() {
                // A recovery without the first call's saved parameters has nothing to restore;
                // libvirt sends nothing for an empty parameter set.
                None => self.finish_reply(Finish::ResetParams),
                Some(orig) => self.main_cmd(Side::Dst, Command::MigrateSetParameters(orig), out),
            },
        }
    }

    pub(super) fn finish_reply(&mut self, step: Finish) {
        match step {
            Finish::Cont => self.step = Step::Finish(Finish::WaitResume),
            Finish::ResetCaps => self.step = Step::Finish(Finish::ResetParams),
            Finish::ResetParams => {
                let dst = &mut self.sides.dst;
                dst.job = AsyncJob::None;
                dst.phase = Phase::None;
                dst.async_paused = false;
                self.sides.src.phase = match self.kind {
                    CallKind::Resume => Phase::ConfirmResume,
                    CallKind::Fresh => Phase::Confirm3,
                };
                self.step = Step::Confirm(Confirm::WaitCompleted);
            }
            // Waits: no command.
            Finish::WaitFirst | Finish::WaitResume | Finish::WaitCompleted => {}
        }
    }
}
