//! Job statistics from `query-migrate`, under libvirt's typed-parameter names
//! (qemu_domainjob.c:qemuDomainMigrationJobDataToParams).

use serde_json::Value;
use thiserror::Error;

use super::vocab::{job, param};

/// A QEMU reply the driver cannot read (libvirt's monitor reports these as internal errors).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    #[error("query-migrate-capabilities reply is not an array")]
    CapabilitiesNotArray,
    #[error("capability entry without a name: {entry}")]
    CapabilityWithoutName { entry: String },
    #[error("info migration reply was missing return status")]
    MissingStatus,
    #[error("unexpected migration status in {status}")]
    UnknownStatus { status: String },
}

/// QEMU's MigrationStatus, as libvirt's monitor parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigStatus {
    Setup,
    Cancelling,
    Cancelled,
    Active,
    Completed,
    Failed,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecoverSetup,
    PostcopyRecover,
    PreSwitchover,
    Device,
    WaitUnplug,
    /// QEMU 11.1: the device state is sent at the switch to post-copy, on both sides, between
    /// `device` and `postcopy-active`. Not yet post-copy: the wait goes on as for `device`.
    PostcopyDevice,
    /// QEMU 11.1: a migration that fails is `failing` while QEMU cleans up, then `failed`. Not
    /// yet failed: the wait goes on until `failed`.
    Failing,
}

impl MigStatus {
    /// None for `none` (libvirt rejects it), `colo` and anything unknown.
    pub fn parse(s: &str) -> Option<MigStatus> {
        Some(match s {
            "setup" => MigStatus::Setup,
            "cancelling" => MigStatus::Cancelling,
            "cancelled" => MigStatus::Cancelled,
            "active" => MigStatus::Active,
            "completed" => MigStatus::Completed,
            "failed" => MigStatus::Failed,
            "postcopy-active" => MigStatus::PostcopyActive,
            "postcopy-paused" => MigStatus::PostcopyPaused,
            "postcopy-recover-setup" => MigStatus::PostcopyRecoverSetup,
            "postcopy-recover" => MigStatus::PostcopyRecover,
            "pre-switchover" => MigStatus::PreSwitchover,
            "device" => MigStatus::Device,
            "wait-unplug" => MigStatus::WaitUnplug,
            "postcopy-device" => MigStatus::PostcopyDevice,
            "failing" => MigStatus::Failing,
            _ => return None,
        })
    }

    /// The public virDomainJobType (docs/driver-behaviour.md §8.1).
    pub fn job_type(self) -> i32 {
        match self {
            MigStatus::Completed => job::COMPLETED,
            MigStatus::Failed => job::FAILED,
            MigStatus::Cancelled => job::CANCELLED,
            _ => job::UNBOUNDED,
        }
    }

    pub fn is_postcopy(self) -> bool {
        matches!(
            self,
            MigStatus::PostcopyActive
                | MigStatus::PostcopyPaused
                | MigStatus::PostcopyRecoverSetup
                | MigStatus::PostcopyRecover
        )
    }
}

/// Statistics of one job: its virDomainJobType and typed parameters (all unsigned 64-bit here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobStats {
    pub job_type: i32,
    pub params: Vec<(&'static str, u64)>,
}

impl JobStats {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Builds the statistics from a `query-migrate` reply.
    pub fn from_query_migrate(reply: &Value) -> Result<JobStats, ReplyError> {
        let status = reply
            .get("status")
            .and_then(Value::as_str)
            .ok_or(ReplyError::MissingStatus)?;
        let st = MigStatus::parse(status).ok_or_else(|| ReplyError::UnknownStatus {
            status: status.to_string(),
        })?;
        let u = |path: &[&str]| -> Option<u64> {
            let mut v = reply;
            for p in path {
                v = v.get(p)?;
            }
            v.as_u64()
        };
        let mut params: Vec<(&'static str, u64)> =
            vec![(param::operation(), param::OPERATION_MIGRATION_OUT as u64)];
        let mut push = |name: &'static str, v: Option<u64>| {
            if let Some(v) = v {
                params.push((name, v));
            }
        };
        push(param::time_elapsed(), u(&["total-time"]));
        let downtime = if st == MigStatus::Completed {
            u(&["downtime"])
        } else {
            u(&["expected-downtime"]).or(u(&["downtime"]))
        };
        push(param::downtime(), downtime);
        push(param::setup_time(), u(&["setup-time"]));
        let total = u(&["ram", "total"]);
        let processed = u(&["ram", "transferred"]);
        let remaining = u(&["ram", "remaining"]);
        push(param::data_total(), total);
        push(param::data_processed(), processed);
        push(param::data_remaining(), remaining);
        push(param::memory_total(), total);
        push(param::memory_processed(), processed);
        push(param::memory_remaining(), remaining);
        push(param::memory_constant(), u(&["ram", "duplicate"]));
        push(param::memory_normal(), u(&["ram", "normal"]));
        push(param::memory_normal_bytes(), u(&["ram", "normal-bytes"]));
        let bps = reply
            .get("ram")
            .and_then(|r| r.get("mbps"))
            .and_then(Value::as_f64)
            .map(|m| (m * (1000.0 * 1000.0 / 8.0)) as u64);
        push(param::memory_bps(), bps);
        push(param::memory_dirty_rate(), u(&["ram", "dirty-pages-rate"]));
        push(param::memory_page_size(), u(&["ram", "page-size"]));
        push(param::memory_iteration(), u(&["ram", "dirty-sync-count"]));
        push(
            param::memory_postcopy_requests(),
            u(&["ram", "postcopy-requests"]),
        );
        Ok(JobStats {
            job_type: st.job_type(),
            params,
        })
    }
}
