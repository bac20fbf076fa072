//! API calls on the source's migration job while it runs: virDomainGetJobStats
//! (docs/driver-behaviour.md §8), virDomainAbortJobFlags (§10.3) and virDomainMigrateStartPostCopy
//! (§6, the switch itself is in `switch`).

use serde_json::Value;

use super::domain;
use super::messages::{Action, ApiCall, ApiValue};
use super::migration::{qemu_cmd_error, Awaited, Migration, Perform, Purpose, Step, Wait};
use super::phase::{AsyncJob, Phase};
use super::side::Side;
use super::stats::JobStats;
use super::vocab::*;
use crate::qmp::{Command, QmpError};

impl Migration {
    pub(super) fn on_api(&mut self, call: ApiCall, out: &mut Vec<Action>) {
        let allowed = match &call {
            ApiCall::StartPostCopy { flags } => self.check_start_postcopy(*flags),
            ApiCall::AbortJob { flags } => self.check_abort(*flags),
            ApiCall::GetJobStats => self.check_job_stats(),
        };
        if let Err(e) = allowed {
            out.push(Action::ApiReturn {
                call,
                result: Err(e),
            });
            return;
        }
        match call {
            ApiCall::StartPostCopy { .. } => self.request_switch(call, out),
            ApiCall::AbortJob { flags } => self.abort(call, flags, out),
            ApiCall::GetJobStats => {
                self.send(Side::Src, Command::QueryMigrate, Purpose::Api(call), out);
            }
        }
    }

    /// Statistics exist once QEMU migrates (Perform's wait started).
    fn check_job_stats(&self) -> Result<(), VirError> {
        if self.sides.src.job == AsyncJob::MigrationOut && self.step >= Step::Wait(Wait::Events) {
            Ok(())
        } else {
            Err(domain::no_active_job())
        }
    }

    fn check_abort(&self, flags: u32) -> Result<(), VirError> {
        let src = &self.sides.src;
        if flags & !VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0
            || !src.active
            || src.job != AsyncJob::MigrationOut
        {
            return Err(domain::abort_without_job(flags, src.active));
        }
        // libvirt's virDomainObjIsPostcopy on the source domain: its state says post-copy (set
        // when the source's own QEMU reported postcopy-active), or its post-copy failed. The
        // destination's postcopy-active (it comes first, at the listen) does not count.
        let postcopy_state = matches!(
            (src.state.state, src.state.reason),
            (
                state::PAUSED,
                state::PAUSED_POSTCOPY | state::PAUSED_POSTCOPY_FAILED
            ) | (
                state::RUNNING,
                state::RUNNING_POSTCOPY | state::RUNNING_POSTCOPY_FAILED
            )
        );
        let in_postcopy = postcopy_state || src.async_paused || src.phase == Phase::PostcopyFailed;
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 && !in_postcopy {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "current job is not outgoing migration in post-copy mode",
            ));
        }
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY == 0 && in_postcopy {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "cannot abort migration in post-copy mode",
            ));
        }
        Ok(())
    }

    fn abort(&mut self, call: ApiCall, flags: u32, out: &mut Vec<Action>) {
        let before_migrate = self.step < Step::Perform(Perform::Migrate);
        let migrate_unanswered =
            self.step == Step::Perform(Perform::Migrate) && self.awaiting.is_some();
        if flags & VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 {
            self.send(Side::Src, Command::MigratePause, Purpose::Api(call), out);
        } else if before_migrate || migrate_unanswered {
            // Not yet migrating in QEMU: the job stops before `migrate`, or cancels once
            // `migrate` is answered. qemuMigrationSrcRun checks abortJob right before `migrate`
            // and reports "%s: canceled by client" with the async job's name.
            self.abort_requested = true;
            let aborted =
                VirError::new(code::OPERATION_ABORTED, "migration out: canceled by client");
            out.push(Action::ApiReturn {
                call,
                result: Ok(ApiValue::Done),
            });
            if before_migrate && self.awaiting.is_none() {
                self.fail(aborted, out);
            } else {
                self.error.get_or_insert(aborted);
            }
        } else {
            self.send(Side::Src, Command::MigrateCancel, Purpose::Api(call), out);
        }
    }

    pub(super) fn on_api_reply(
        &mut self,
        call: ApiCall,
        command: &Command,
        result: Result<Value, QmpError>,
        out: &mut Vec<Action>,
    ) {
        let result = match result {
            Err(e) => Err(qemu_cmd_error(command, &e)),
            Ok(v) => match call {
                ApiCall::GetJobStats => JobStats::from_query_migrate(&v)
                    .map(ApiValue::Stats)
                    .map_err(|e| VirError::new(code::INTERNAL_ERROR, e.to_string())),
                _ => Ok(ApiValue::Done),
            },
        };
        out.push(Action::ApiReturn { call, result });
    }
}

impl Migration {
    /// QEMU answered the awaited command sent as `seq`.
    pub(super) fn answered(&mut self, seq: u64) {
        self.awaited.retain(|(s, _, _)| *s != seq);
    }

    /// No reply will come on `side` (its monitor closed, or the deadline passed after the call
    /// ended): the calls waiting for one fail with `err`, as libvirt's monitor call fails when
    /// the monitor goes away under it; an unanswered deadline pause is said in a warning.
    pub(super) fn awaited_lost(&mut self, side: Side, err: &VirError, out: &mut Vec<Action>) {
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaited)
            .into_iter()
            .partition(|(_, s, _)| *s == side);
        self.awaited = kept;
        for (_, _, what) in lost {
            match what {
                Awaited::Api(call) => out.push(Action::ApiReturn {
                    call,
                    result: Err(err.clone()),
                }),
                Awaited::DeadlinePause => out.push(Action::Warn(format!(
                    "the migrate-pause sent at the deadline was not answered: {}",
                    err.message()
                ))),
            }
        }
    }

    /// `side`'s monitor closed: the error of the calls that waited on it (and of the migrate
    /// call, where the closing ends it: `failure::on_closed`).
    pub(super) fn monitor_closed(side: Side, reason: &str) -> VirError {
        VirError::new(
            code::OPERATION_FAILED,
            format!("{} QEMU monitor closed: {reason}", side.noun()),
        )
    }
}
