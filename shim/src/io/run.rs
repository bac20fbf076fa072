//! One live migration between two monitors, recorded if asked: the transport side of
//! [`crate::api::migrate_with`], which every caller (the C ABI, `postcopy migrate`, the scenarios,
//! the benchmark) goes through.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::{Controller, LiveTransport, Monitor, Recorder, TransportStats};
use crate::driver::vocab::flag_names;
use crate::driver::JobMemory;
use crate::driver::{ApiCall, ApiValue, DomainEvent, MigrateRequest, Side, VirError};
use crate::engine::{self, EngineError, Report, Transport};
use crate::transcript::format::QemuVersions;
use crate::transcript::format::MAGIC;
use crate::transcript::{Header, FORMAT_VERSION};

/// How often a switch policy samples `query-migrate` (docs/driver-behaviour.md §7.1): QEMU
/// refreshes its rate about every 100 ms.
pub const POLICY_TICK: Duration = Duration::from_millis(100);

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
pub(crate) struct Hooks {
    /// Called on the loop thread for every domain event. Must not block on the controller.
    pub(crate) on_event: Option<EventHook>,
    /// Called when libvirt would stop a QEMU.
    pub(crate) on_stop: Option<StopHook>,
    /// Receives the controller as soon as the loop exists (for API calls from other threads).
    pub(crate) controller: Option<Sender<Controller>>,
    /// The call's overall deadline (docs/driver-behaviour.md §10.4).
    pub(crate) deadline: Duration,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What a live run produced.
#[derive(Debug)]
pub(crate) struct LiveRun {
    pub(crate) report: Report,
    pub(crate) stats: TransportStats,
    pub(crate) warnings: Vec<String>,
    /// The recording, kept for the API calls made after the migration.
    pub(crate) recorder: Option<Recorder<Idle>>,
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

/// The header of a transcript of `req` (what the recorder and the libvirt-log importer write).
pub fn header(
    req: &MigrateRequest,
    scenario: &str,
    recorder: &str,
    qemu: QemuVersions,
    description: Option<String>,
) -> Header {
    Header {
        format: MAGIC.into(),
        version: FORMAT_VERSION,
        scenario: scenario.to_string(),
        recorder: recorder.to_string(),
        qemu,
        flags: req.flags,
        flag_names: flag_names(req.flags)
            .into_iter()
            .map(String::from)
            .collect(),
        uri: req.uri.clone(),
        bandwidth: req.bandwidth_mib,
        postcopy_bandwidth: req.postcopy_bandwidth_mib,
        connect_uri: req.connect_uri.clone(),
        description,
        switch_policy: req.switch_policy,
    }
}

fn recorded_header(req: &MigrateRequest, spec: &RecordSpec) -> Header {
    let recorder = format!(
        "postcopy {} (libvirt-postcopy recorder)",
        env!("CARGO_PKG_VERSION")
    );
    let qemu = QemuVersions {
        src: spec.qemu_src.clone(),
        dst: spec.qemu_dst.clone(),
    };
    header(
        req,
        &spec.scenario,
        &recorder,
        qemu,
        spec.description.clone(),
    )
}

/// Connects to both monitors and runs the migration. `memory` is what a failed call's job kept
/// ([`Report::memory`]) for a later call of the same migration (a recovery).
pub(crate) fn migrate(
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
    if req.switch_policy.is_some() {
        live.tick_every(POLICY_TICK);
    }
    live.set_deadline(hooks.deadline);
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
                Recorder::new(live, file, &recorded_header(&req, spec), epoch).map_err(cannot)?
            };
            let report = engine::run_with(req, memory, &mut rec)?;
            let stats = rec.inner().stats.clone();
            let warnings = rec.inner().warnings.clone();
            let idle = rec.rewrap(Idle);
            Ok(LiveRun {
                report,
                stats,
                warnings,
                recorder: Some(idle),
            })
        }
    }
}
