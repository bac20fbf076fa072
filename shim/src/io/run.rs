//! One live migration between two monitors, recorded if asked: what `postcopy migrate`, the live
//! tests and the benchmark run.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Controller, LiveTransport, Monitor, Recorder, TransportStats};
use crate::driver::vocab::flag_names;
use crate::driver::JobMemory;
use crate::driver::{ApiCall, ApiValue, DomainEvent, MigrateRequest, Side, VirError};
use crate::engine::{self, EngineError, Report, Transport};
use crate::transcript::format::{QemuVersions, MAGIC};
use crate::transcript::{Header, FORMAT_VERSION};

/// Where the transcript goes and what it says about itself.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub path: PathBuf,
    pub scenario: String,
    pub description: Option<String>,
    pub qemu_src: String,
    pub qemu_dst: String,
    /// Continue the file with a `migrate` record instead of writing a header.
    pub append: bool,
    /// The recording's clock (`t` counts from here), shared by its migrate calls.
    pub epoch: Option<std::time::Instant>,
}

/// A domain-event callback, run on the loop thread.
pub type EventHook = Box<dyn FnMut(Side, &DomainEvent) + Send>;
/// Called when libvirt would stop a QEMU.
pub type StopHook = Box<dyn FnMut(Side) + Send>;

/// Hooks of a live run, all optional.
#[derive(Default)]
pub struct Hooks {
    /// Called on the loop thread for every domain event. Must not block on the controller.
    pub on_event: Option<EventHook>,
    /// Called when libvirt would stop a QEMU.
    pub on_stop: Option<StopHook>,
    /// Receives the controller as soon as the loop exists (for API calls from other threads).
    pub controller: Option<Sender<Controller>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// What a live run produced.
#[derive(Debug)]
pub struct LiveRun {
    pub report: Report,
    pub stats: TransportStats,
    pub warnings: Vec<String>,
    recorder: Option<Arc<Mutex<Option<Recorder<Idle>>>>>,
}

/// After the run, API calls meet no job; they are recorded into the same transcript.
#[derive(Debug)]
pub struct Idle;

impl Transport for Idle {
    fn next(&mut self) -> Result<engine::Incoming, EngineError> {
        Ok(engine::Incoming::End)
    }
    fn send(&mut self, _side: Side, _line: &str) -> Result<(), EngineError> {
        Err(EngineError::transport_ended("no migration runs"))
    }
    fn api_return(
        &mut self,
        _call: &ApiCall,
        _result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        Ok(())
    }
}

impl LiveRun {
    /// An API call on the source after the migration ended (the job is gone).
    pub fn call_after(&self, call: ApiCall) -> Result<ApiValue, VirError> {
        let src_active = self.report.src_state.state != crate::driver::vocab::state::SHUTOFF;
        let result = engine::idle_api(&call, src_active);
        if let Some(rec) = &self.recorder {
            if let Ok(mut g) = rec.lock() {
                if let Some(r) = g.as_mut() {
                    let _ = r.record_idle_api(&call, &result);
                }
            }
        }
        result
    }
}

pub fn header(req: &MigrateRequest, spec: &RecordSpec) -> Header {
    Header {
        format: MAGIC.into(),
        version: FORMAT_VERSION,
        scenario: spec.scenario.clone(),
        recorder: format!(
            "postcopy {} (libvirt-postcopy recorder)",
            env!("CARGO_PKG_VERSION")
        ),
        qemu: QemuVersions {
            src: spec.qemu_src.clone(),
            dst: spec.qemu_dst.clone(),
        },
        flags: req.flags,
        flag_names: flag_names(req.flags)
            .into_iter()
            .map(String::from)
            .collect(),
        uri: req.uri.clone(),
        bandwidth: req.bandwidth_mib,
        postcopy_bandwidth: req.postcopy_bandwidth_mib,
        connect_uri: req.connect_uri.clone(),
        description: spec.description.clone(),
    }
}

/// Connects to both monitors and runs the migration.
pub fn migrate(
    src_qmp: &str,
    dst_qmp: &str,
    req: MigrateRequest,
    record: Option<&RecordSpec>,
    hooks: Hooks,
) -> Result<LiveRun, EngineError> {
    migrate_continuing(src_qmp, dst_qmp, req, None, record, hooks)
}

/// [`migrate`] for a later call of the same migration (a recovery): `memory` is what the failed
/// call's job kept ([`Report::memory`]).
pub fn migrate_continuing(
    src_qmp: &str,
    dst_qmp: &str,
    req: MigrateRequest,
    memory: Option<JobMemory>,
    record: Option<&RecordSpec>,
    hooks: Hooks,
) -> Result<LiveRun, EngineError> {
    let connect = |a: &str| {
        Monitor::connect(a, Duration::from_secs(20)).map_err(|e| {
            EngineError::transport(format!("cannot connect to the QMP monitor {a}"), e)
        })
    };
    let src = connect(src_qmp)?;
    let dst = connect(dst_qmp)?;
    let mut live = LiveTransport::new(src, dst);
    if let Some(f) = hooks.on_event {
        live.on_event(f);
    }
    if let Some(f) = hooks.on_stop {
        live.on_stop(f);
    }
    if let Some(tx) = hooks.controller {
        let _ = tx.send(live.controller());
    }
    match record {
        None => {
            let report = engine::run_with(req, memory, &mut live)?;
            Ok(LiveRun {
                report,
                stats: live.stats.clone(),
                warnings: live.warnings.clone(),
                recorder: None,
            })
        }
        Some(spec) => {
            let cannot = |e: std::io::Error| {
                EngineError::transport(format!("cannot write {}", spec.path.display()), e)
            };
            let epoch = spec.epoch.unwrap_or_else(std::time::Instant::now);
            let mut rec = if spec.append {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&spec.path)
                    .map_err(cannot)?;
                Recorder::append(live, file, &req, epoch).map_err(cannot)?
            } else {
                let file = File::create(&spec.path).map_err(cannot)?;
                Recorder::new(live, file, &header(&req, spec), epoch).map_err(cannot)?
            };
            let report = engine::run_with(req, memory, &mut rec)?;
            let stats = rec.inner().stats.clone();
            let warnings = rec.inner().warnings.clone();
            let idle = rec.rewrap(Idle);
            Ok(LiveRun {
                report,
                stats,
                warnings,
                recorder: Some(Arc::new(Mutex::new(Some(idle)))),
            })
        }
    }
}

/// Makes a migrate call with `req`; while it fails in post-copy (the call's second value) and
/// `policy` allows, sleeps the policy's delay and calls again with VIR_MIGRATE_POSTCOPY_RESUME.
/// Returns every call's result, in order. Without a policy, one call.
pub fn with_recovery<T>(
    mut req: MigrateRequest,
    policy: Option<&crate::driver::RecoveryPolicy>,
    mut call: impl FnMut(&MigrateRequest) -> (T, bool),
) -> Vec<T> {
    let mut out = Vec::new();
    let mut failed_at: Option<std::time::Instant> = None;
    let mut attempt = 0;
    loop {
        let (r, failed_in_postcopy) = call(&req);
        out.push(r);
        let Some(policy) = policy.filter(|_| failed_in_postcopy) else {
            return out;
        };
        let since = failed_at
            .get_or_insert_with(std::time::Instant::now)
            .elapsed();
        let Some(delay) = policy.next_delay(attempt, since) else {
            return out;
        };
        std::thread::sleep(delay);
        attempt += 1;
        req.flags = crate::driver::recovery::resume_flags(req.flags);
    }
}
