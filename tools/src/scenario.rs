//! A whole live scenario on this machine: two local QEMUs with our guest, the migration stream
//! through our relay if asked, faults injected at chosen moments, API calls from other threads,
//! recovery (by hand or by the automatic policy), and the guest's own verdict on its memory.
//! `postcopy migrate` and the live fault tests run through here. Every migrate call goes through
//! the C library's public API ([`api::migrate_with`]), as a C caller's does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::guest_report::GuestLine;
use crate::qemu::{free_port, QemuConfig, QemuPair, SerialFollower, StartError};
use crate::relay::Relay;
use postcopy_core::driver::vocab::state;
use postcopy_core::driver::{
    ApiCall, ApiValue, DomainEvent, MigrateRequest, RecoveryPolicy, Side, SwitchPolicy, VirError,
};
use postcopy_core::engine::{api_result_text, Report};
use postcopy_core::faults::FaultSchedule;
use postcopy_shim::api::{self, Domain, MigrateOptions, Migration, RecordSpec, TransportStats};

/// When a fault or an API call happens: decided by the core ([`FaultSchedule`]), executed here.
pub use postcopy_core::faults::Trigger;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Cut every migration connection at the relay; the link stays down `down_ms` (None: until
    /// a recovery brings it up).
    Cut { at: Trigger, down_ms: Option<u64> },
    /// Kill a QEMU (SIGKILL).
    Kill { side: Side, at: Trigger },
    /// An API call from another thread.
    Call { call: ApiCall, at: Trigger },
}

impl Fault {
    pub fn trigger(&self) -> Trigger {
        match self {
            Fault::Cut { at, .. } | Fault::Kill { at, .. } | Fault::Call { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    None,
    /// VIR_MIGRATE_POSTCOPY_RESUME once, `after_ms` after the failure (the link comes back first).
    Manual {
        after_ms: u64,
    },
    /// The opt-in policy: retry with backoff until the link returns or the deadline passes.
    Auto(RecoveryPolicy),
}

/// The emulated link between the QEMUs (the relay), see BENCHMARK-NOTES.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Source -> destination, MiB/s; 0: unlimited.
    pub rate_mib: u64,
    pub latency_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub qemu: PathBuf,
    /// A QEMU extracted from .deb files: QEMU_MODULE_DIR and -L point into it.
    pub qemu_root: Option<PathBuf>,
    pub kernel: PathBuf,
    pub memory_mib: u64,
    pub guest: String,
    pub workdir: PathBuf,
    pub flags: u32,
    pub bandwidth_mib: Option<u64>,
    pub postcopy_bandwidth_mib: Option<u64>,
    /// Our switch policy (`lpc.switch_policy`, docs/driver-behaviour.md §7.1).
    pub switch_policy: Option<SwitchPolicy>,
    /// Route the stream through the relay.
    pub link: Option<Link>,
    pub faults: Vec<Fault>,
    pub recovery: Recovery,
    pub record: Option<RecordSpec>,
    pub api_before: bool,
    pub api_after: bool,
    pub verify_timeout: Duration,
    /// Called for every domain event (progress display).
    pub on_event: Option<EventCallback>,
    /// Each migrate call's overall deadline (None: the API's default, 10 minutes).
    pub deadline: Option<Duration>,
}

/// A domain-event callback shared by every migrate call of a scenario.
#[derive(Clone)]
pub struct EventCallback(pub Arc<EventFn>);

/// The callback's signature.
pub type EventFn = dyn Fn(Side, &DomainEvent) + Send + Sync;

impl std::fmt::Debug for EventCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventCallback")
    }
}

/// What the guest on the destination said after the migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestVerdict {
    pub checks_ok: u64,
    pub check_failures: u64,
    pub heartbeats: u64,
    pub failures: Vec<String>,
}

#[derive(Debug)]
pub struct ScenarioResult {
    /// One report per migrate call (the first, then each recovery attempt).
    pub runs: Vec<Report>,
    /// The request of each call, as `runs`.
    pub requests: Vec<MigrateRequest>,
    pub stats: Vec<TransportStats>,
    pub api_log: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub guest: Option<GuestVerdict>,
    pub src_alive: bool,
    pub dst_alive: bool,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
    /// From the failure to the end of the successful recovery, if there was one.
    pub recovery_time: Option<Duration>,
    /// The QMP sockets and pids of QEMUs left running on purpose (a failed post-copy).
    pub left_running: Vec<(String, Option<u32>)>,
}

impl ScenarioResult {
    pub fn last(&self) -> Option<&Report> {
        self.runs.last()
    }
}

/// Why a scenario could not run to its end (a migration that fails is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot set up the QEMUs")]
    Qemu(#[from] StartError),
    #[error("cannot find a free port for the migration stream")]
    Port(#[source] std::io::Error),
    #[error("cannot start the relay")]
    Relay(#[source] std::io::Error),
    #[error("migrate call {call} did not run")]
    Migrate {
        /// 1 for the first call, 2 for the first recovery, ...
        call: usize,
        #[source]
        source: VirError,
    },
}

type Procs = Arc<Mutex<QemuPair>>;

/// Runs a plan to its end.
pub fn run(plan: Plan) -> Result<ScenarioResult, ScenarioError> {
    let cfg = QemuConfig::guest(
        &plan.qemu,
        plan.qemu_root.as_deref(),
        &plan.kernel,
        &plan.guest,
        plan.memory_mib,
    );
    let pair = QemuPair::start(&cfg, &plan.workdir)?;
    let src = Domain::open_qmp(&pair.src.qmp.display().to_string());
    let dst = Domain::open_qmp(&pair.dst.qmp.display().to_string());
    let dst_follow_from = std::fs::metadata(&pair.dst.serial)
        .map(|m| m.len())
        .unwrap_or(0);
    let dst_serial = pair.dst.serial.clone();
    let procs: Procs = Arc::new(Mutex::new(pair));

    let port = free_port().map_err(ScenarioError::Port)?;
    let uri = format!("tcp:127.0.0.1:{port}");
    let relay = match plan.link {
        Some(link) => {
            let target: SocketAddr = ([127, 0, 0, 1], port).into();
            let r = Relay::start(target).map_err(ScenarioError::Relay)?;
            r.set_rate(link.rate_mib * 1024 * 1024);
            r.set_latency(Duration::from_millis(link.latency_ms));
            Some(Arc::new(r))
        }
        None => None,
    };
    let req = MigrateRequest {
        flags: plan.flags,
        uri,
        bandwidth_mib: plan.bandwidth_mib,
        postcopy_bandwidth_mib: plan.postcopy_bandwidth_mib,
        switch_policy: plan.switch_policy,
        connect_uri: relay
            .as_ref()
            .map(|r| format!("tcp:127.0.0.1:{}", r.port())),
    };

    let started = Instant::now();
    let api_log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut runs = Vec::new();
    let mut stats = Vec::new();
    let mut warnings = Vec::new();
    let mut failed_at: Option<Instant> = None;
    let mut recovery_time = None;
    let mut record = plan.record.clone();
    if let Some(r) = record.as_mut() {
        r.epoch = Some(started);
    }
    let policy = match &plan.recovery {
        Recovery::None => None,
        Recovery::Manual { after_ms } => {
            Some(RecoveryPolicy::once_after(Duration::from_millis(*after_ms)))
        }
        Recovery::Auto(p) => Some(*p),
    };
    let mut first = true;
    let mut setup_error = None;
    let calls = api::with_recovery(req, policy.as_ref(), |req| {
        if setup_error.is_some() {
            return (None, false);
        }
        if !first {
            if let (Recovery::Manual { .. }, Some(r)) = (&plan.recovery, &relay) {
                // Recovery by hand: whoever recovers has fixed the link first.
                r.up();
            }
        }
        let one = run_once(
            &plan,
            req,
            record.as_ref(),
            first,
            &procs,
            relay.clone(),
            &api_log,
            &notes,
            (&src, &dst),
        );
        first = false;
        if let Some(r) = record.as_mut() {
            r.append = true;
        }
        match one {
            Ok(one) => {
                let failed_in_postcopy =
                    one.report.result.is_err() && api::failed_in_postcopy(&src);
                if failed_in_postcopy {
                    failed_at.get_or_insert_with(Instant::now);
                }
                (Some((req.clone(), one)), failed_in_postcopy)
            }
            Err(e) => {
                setup_error = Some(e);
                (None, false)
            }
        }
    });
    if let Some(source) = setup_error {
        let call = calls.len();
        return Err(ScenarioError::Migrate { call, source });
    }
    let mut requests = Vec::new();
    for (req, one) in calls.into_iter().flatten() {
        requests.push(req);
        warnings.extend(one.warnings);
        stats.push(one.stats);
        if one.report.result.is_ok() {
            recovery_time = failed_at.map(|t| t.elapsed());
        }
        runs.push(one.report);
    }
    if plan.api_after && runs.last().is_some_and(|r| r.result.is_ok()) {
        // No job any more: the source answers as libvirt does, into the same transcript.
        let r = src.api(ApiCall::StartPostCopy { flags: 0 });
        push_log(&api_log, "start_postcopy (after)", &r);
    }

    // Stop what libvirt would stop; leave a guest that may hold the only copy of its memory.
    let last_ok = runs.last().is_some_and(|r| r.result.is_ok());
    let mut left_running = Vec::new();
    let mut guest = None;
    if let Ok(mut p) = procs.lock() {
        if last_ok {
            p.kill(Side::Src);
            guest = Some(verify_guest(
                &dst_serial,
                dst_follow_from,
                plan.verify_timeout,
            ));
        } else if runs.last().is_some_and(|r| {
            r.dst_state.state == state::RUNNING
                || r.src_state.reason == state::PAUSED_POSTCOPY_FAILED
        }) {
            let pair = &mut *p;
            for q in [&mut pair.src, &mut pair.dst] {
                if q.alive() {
                    q.keep();
                    left_running.push((q.qmp.display().to_string(), q.pid()));
                }
            }
        }
    }
    let (src_alive, dst_alive) = procs
        .lock()
        .map(|mut p| (p.src.alive(), p.dst.alive()))
        .unwrap_or((false, false));
    let api_log = api_log.lock().map(|l| l.clone()).unwrap_or_default();
    let notes = notes.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(ScenarioResult {
        runs,
        requests,
        stats,
        api_log,
        notes,
        guest,
        src_alive,
        dst_alive,
        warnings,
        elapsed: started.elapsed(),
        recovery_time,
        left_running,
    })
}

fn push_log(log: &Mutex<Vec<(String, String)>>, what: &str, r: &Result<ApiValue, VirError>) {
    if let Ok(mut l) = log.lock() {
        l.push((what.to_string(), api_result_text(r)));
    }
}

/// One migrate call with the plan's faults (the first call only) and hooks.
#[allow(clippy::too_many_arguments)]
fn run_once(
    plan: &Plan,
    req: &MigrateRequest,
    record: Option<&RecordSpec>,
    first: bool,
    procs: &Procs,
    relay: Option<Arc<Relay>>,
    api_log: &Arc<Mutex<Vec<(String, String)>>>,
    notes: &Arc<Mutex<Vec<String>>>,
    (src, dst): (&Arc<Domain>, &Arc<Domain>),
) -> Result<Migration, VirError> {
    let started = Instant::now();
    // Faults of the first call only; recovery attempts run undisturbed.
    let faults: Vec<Fault> = if first {
        plan.faults.clone()
    } else {
        Vec::new()
    };
    let schedule = Arc::new(Mutex::new(FaultSchedule::new(
        faults.iter().map(Fault::trigger).collect(),
    )));
    let act = {
        let procs = procs.clone();
        let relay = relay.clone();
        let src = src.clone();
        let api_log = api_log.clone();
        let notes = notes.clone();
        Arc::new(move |f: &Fault| fire(f, &procs, relay.as_ref(), &src, &api_log, &notes))
    };
    // Fires the faults the schedule says are due (outside its lock).
    let fire_due = {
        let faults = faults.clone();
        let act = act.clone();
        move |due: Vec<usize>| {
            for i in due {
                act(&faults[i]);
            }
        }
    };
    let on_event = {
        let schedule = schedule.clone();
        let fire_due = fire_due.clone();
        let user = plan.on_event.clone();
        Box::new(move |side: Side, ev: &DomainEvent| {
            if let Some(u) = &user {
                (u.0)(side, ev);
            }
            let due = schedule
                .lock()
                .map(|mut s| s.on_event(side, ev))
                .unwrap_or_default();
            fire_due(due);
        })
    };
    let (job_tx, job_rx) = channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let helper = {
        let src = src.clone();
        let api_log = api_log.clone();
        let done = done.clone();
        let api_before = plan.api_before && first;
        thread::spawn(move || {
            if job_rx.recv().is_err() {
                return; // the call failed before its job started
            }
            if api_before {
                let r = src.api(ApiCall::StartPostCopy { flags: 0 });
                push_log(&api_log, "start_postcopy (before)", &r);
            }
            // Timed faults: the schedule says when the next is due and which are due now.
            let next_due = || schedule.lock().ok().and_then(|s| s.next_due_ms());
            while let Some(ms) = next_due() {
                while started.elapsed() < Duration::from_millis(ms) {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                let elapsed = started.elapsed().as_millis() as u64;
                let due = schedule
                    .lock()
                    .map(|mut s| s.on_elapsed(elapsed))
                    .unwrap_or_default();
                fire_due(due);
            }
        })
    };
    let record = record.map(|r| RecordSpec {
        append: r.append || !first,
        ..r.clone()
    });
    let on_stop = {
        let procs = procs.clone();
        let notes = notes.clone();
        // libvirt's qemuProcessStop. The driver asks it only for a source that completed and for
        // a destination that never ran the guest.
        Box::new(move |side: Side| {
            if let Ok(mut p) = procs.lock() {
                p.kill(side);
            }
            if let Ok(mut n) = notes.lock() {
                n.push(format!("{} QEMU stopped by the driver", side.tag()));
            }
        })
    };
    let opts = MigrateOptions {
        record,
        on_event: Some(on_event),
        on_stop: Some(on_stop),
        job_started: Some(job_tx),
        deadline: plan.deadline,
    };
    let migration = api::migrate_with(src, dst, req.clone(), opts);
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    migration
}

fn fire(
    f: &Fault,
    procs: &Procs,
    relay: Option<&Arc<Relay>>,
    src: &Arc<Domain>,
    api_log: &Arc<Mutex<Vec<(String, String)>>>,
    notes: &Arc<Mutex<Vec<String>>>,
) {
    let note = |text: String| {
        src.note(text.clone());
        if let Ok(mut n) = notes.lock() {
            n.push(text);
        }
    };
    match f {
        Fault::Cut { down_ms, .. } => {
            let Some(r) = relay else { return };
            r.cut(true);
            note(format!(
                "link cut{}",
                down_ms
                    .map(|d| format!(", down for {d} ms"))
                    .unwrap_or_default()
            ));
            if let Some(d) = *down_ms {
                let r = r.clone();
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(d));
                    r.up();
                });
            }
        }
        Fault::Kill { side, .. } => {
            if let Ok(mut p) = procs.lock() {
                p.kill(*side);
            }
            note(format!("{} QEMU killed (SIGKILL)", side.tag()));
        }
        Fault::Call { call, .. } => {
            let (src, call) = (src.clone(), call.clone());
            let api_log = api_log.clone();
            // Never block the loop that answers the call.
            thread::spawn(move || {
                let r = src.api(call.clone());
                push_log(&api_log, call.name(), &r);
            });
        }
    }
}

fn verify_guest(serial: &std::path::Path, _from: u64, timeout: Duration) -> GuestVerdict {
    let mut f = SerialFollower::new(serial);
    let start = Instant::now();
    let mut v = GuestVerdict::default();
    while start.elapsed() < timeout {
        for l in f.poll() {
            // The destination QEMU never boots the guest itself (-incoming): a BOOT line there is
            // the guest rebooting after a fault (QEMU reports RESET), its migrated memory lost.
            if l.starts_with("BOOT ") {
                v.check_failures += 1;
                if v.failures.len() < 5 {
                    v.failures
                        .push(format!("the guest rebooted on the destination: {l}"));
                }
                continue;
            }
            // A malformed report line counts as a failure: a corrupted console is no verdict.
            match GuestLine::parse(&l) {
                Ok(Some(GuestLine::CheckOk { .. })) => v.checks_ok += 1,
                Ok(Some(GuestLine::Heartbeat { .. })) => v.heartbeats += 1,
                Ok(Some(GuestLine::CheckFail { .. } | GuestLine::Fail { .. })) | Err(_) => {
                    v.check_failures += 1;
                    if v.failures.len() < 5 {
                        v.failures.push(l);
                    }
                }
                Ok(_) => {}
            }
        }
        if v.checks_ok >= 2 || v.check_failures > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    v
}
