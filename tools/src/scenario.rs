//! A whole live scenario on this machine: two local QEMUs with our guest, the migration stream
//! through our relay if asked, faults injected at chosen moments, API calls from other threads,
//! recovery (by hand or by the automatic policy), and the guest's own verdict on its memory.
//! `postcopy migrate`, the live tests and the benchmark all run through here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::guest_report::GuestLine;
use crate::qemu::{QemuConfig, QemuProcess, SerialFollower};
use crate::relay::Relay;
use postcopy_core::driver::vocab::state;
use postcopy_core::driver::DomainState;
use postcopy_core::driver::{
    ApiCall, ApiValue, DomainEvent, JobMemory, MigrateRequest, RecoveryPolicy, Side, VirError,
};
use postcopy_core::engine::{api_result_text, EngineError, Report};
use postcopy_shim::io::run::{self, Hooks, RecordSpec};
use postcopy_shim::io::{Controller, TransportStats};

/// When a fault or an API call happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The source reported postcopy-active (SUSPENDED_POSTCOPY).
    Postcopy,
    /// MIGRATION_ITERATION n on the source.
    Iteration(u64),
    /// Milliseconds after the migrate call started.
    AfterMs(u64),
    /// The destination vCPUs started in post-copy (RESUMED_POSTCOPY).
    DestinationRunning,
}

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

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{what}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn setup(what: String) -> impl FnOnce(std::io::Error) -> ScenarioError {
    move |source| ScenarioError::Setup { what, source }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

type Procs = Arc<Mutex<Vec<QemuProcess>>>;

/// Runs a plan to its end.
pub fn run(plan: Plan) -> Result<ScenarioResult, ScenarioError> {
    std::fs::create_dir_all(&plan.workdir)
        .map_err(setup(format!("cannot create {}", plan.workdir.display())))?;
    let (env, extra) = crate::qemu::extracted_qemu(plan.qemu_root.as_deref());
    let cfg = QemuConfig {
        binary: plan.qemu.clone(),
        kernel: plan.kernel.clone(),
        append: plan.guest.clone(),
        memory_mib: plan.memory_mib,
        extra_args: extra,
        env,
    };
    let mut src = QemuProcess::start(&cfg, &plan.workdir, "src", false)
        .map_err(setup("source QEMU".into()))?;
    let dst = QemuProcess::start(&cfg, &plan.workdir, "dst", true)
        .map_err(setup("destination QEMU".into()))?;
    src.wait_serial("READY", Duration::from_secs(120))
        .map_err(setup("guest on the source".into()))?;
    let src_qmp = src.qmp.display().to_string();
    let dst_qmp = dst.qmp.display().to_string();
    let dst_follow_from = std::fs::metadata(&dst.serial).map(|m| m.len()).unwrap_or(0);
    let dst_serial = dst.serial.clone();
    let procs: Procs = Arc::new(Mutex::new(vec![src, dst]));

    let port = free_port().map_err(setup("a free port".into()))?;
    let uri = format!("tcp:127.0.0.1:{port}");
    let relay = match plan.link {
        Some(link) => {
            let target: SocketAddr = ([127, 0, 0, 1], port).into();
            let r = Relay::start(target).map_err(setup("the relay".into()))?;
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
    let mut memory = None;
    let calls = run::with_recovery(req, policy.as_ref(), |req| {
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
            memory.take(),
            record.as_ref(),
            first,
            &procs,
            relay.clone(),
            &api_log,
            &notes,
            &src_qmp,
            &dst_qmp,
        );
        first = false;
        if let Some(r) = record.as_mut() {
            r.append = true;
        }
        match one {
            Ok(one) => {
                memory = Some(one.report.memory.clone());
                let failed_in_postcopy = one.report.result.is_err()
                    && one.report.src_state
                        == DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED);
                if failed_in_postcopy {
                    failed_at.get_or_insert_with(Instant::now);
                }
                (Some(one), failed_in_postcopy)
            }
            Err(e) => {
                setup_error = Some(e);
                (None, false)
            }
        }
    });
    if let Some(e) = setup_error {
        return Err(e);
    }
    for one in calls.into_iter().flatten() {
        warnings.extend(one.warnings.iter().cloned());
        stats.push(one.stats.clone());
        if one.report.result.is_ok() {
            recovery_time = failed_at.map(|t| t.elapsed());
            if plan.api_after {
                let r = one.idle.call_after(ApiCall::StartPostCopy { flags: 0 });
                push_log(&api_log, "start_postcopy (after)", &r);
            }
        }
        runs.push(one.report);
    }

    // Stop what libvirt would stop; leave a guest that may hold the only copy of its memory.
    let last_ok = runs.last().is_some_and(|r| r.result.is_ok());
    let mut left_running = Vec::new();
    let mut guest = None;
    if let Ok(mut p) = procs.lock() {
        if last_ok {
            p[0].kill();
            guest = Some(verify_guest(
                &dst_serial,
                dst_follow_from,
                plan.verify_timeout,
            ));
        } else if runs.last().is_some_and(|r| {
            r.dst_state.state == state::RUNNING
                || r.src_state.reason == state::PAUSED_POSTCOPY_FAILED
        }) {
            for q in p.iter_mut() {
                if q.alive() {
                    q.keep();
                    left_running.push((q.qmp.display().to_string(), q.pid()));
                }
            }
        }
    }
    let (src_alive, dst_alive) = procs
        .lock()
        .map(|mut p| (p[0].alive(), p[1].alive()))
        .unwrap_or((false, false));
    let api_log = api_log.lock().map(|l| l.clone()).unwrap_or_default();
    let notes = notes.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(ScenarioResult {
        runs,
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

struct Once {
    report: Report,
    stats: TransportStats,
    warnings: Vec<String>,
    idle: run::LiveRun,
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    plan: &Plan,
    req: &MigrateRequest,
    memory: Option<JobMemory>,
    record: Option<&RecordSpec>,
    first: bool,
    procs: &Procs,
    relay: Option<Arc<Relay>>,
    api_log: &Arc<Mutex<Vec<(String, String)>>>,
    notes: &Arc<Mutex<Vec<String>>>,
    src_qmp: &str,
    dst_qmp: &str,
) -> Result<Once, ScenarioError> {
    let ctl: Arc<Mutex<Option<Controller>>> = Arc::default();
    let started = Instant::now();
    // Faults of the first call only; recovery attempts run undisturbed.
    let faults: Vec<Fault> = if first {
        plan.faults.clone()
    } else {
        Vec::new()
    };
    let fired: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![false; faults.len()]));
    let act = {
        let procs = procs.clone();
        let relay = relay.clone();
        let ctl = ctl.clone();
        let api_log = api_log.clone();
        let notes = notes.clone();
        Arc::new(move |f: &Fault| fire(f, &procs, relay.as_ref(), &ctl, &api_log, &notes))
    };
    let on_event = {
        let faults = faults.clone();
        let fired = fired.clone();
        let act = act.clone();
        let user = plan.on_event.clone();
        Box::new(move |side: Side, ev: &DomainEvent| {
            if let Some(u) = &user {
                (u.0)(side, ev);
            }
            for (i, f) in faults.iter().enumerate() {
                let at = match f {
                    Fault::Cut { at, .. } | Fault::Kill { at, .. } | Fault::Call { at, .. } => *at,
                };
                let hit = match (at, side, ev) {
                    (Trigger::Postcopy, Side::Src, DomainEvent::Lifecycle { event, detail }) => {
                        *event == postcopy_core::driver::vocab::event::SUSPENDED
                            && *detail == postcopy_core::driver::vocab::event::SUSPENDED_POSTCOPY
                    }
                    (
                        Trigger::DestinationRunning,
                        Side::Dst,
                        DomainEvent::Lifecycle { event, detail },
                    ) => {
                        *event == postcopy_core::driver::vocab::event::RESUMED
                            && *detail == postcopy_core::driver::vocab::event::RESUMED_POSTCOPY
                    }
                    (
                        Trigger::Iteration(n),
                        Side::Src,
                        DomainEvent::MigrationIteration { iteration },
                    ) => *iteration == n,
                    _ => false,
                };
                let mut g = match fired.lock() {
                    Ok(g) => g,
                    Err(_) => return,
                };
                if hit && !g[i] {
                    g[i] = true;
                    drop(g);
                    act(f);
                }
            }
        })
    };
    let (ctl_tx, ctl_rx) = channel::<Controller>();
    let done = Arc::new(AtomicBool::new(false));
    let helper = {
        let ctl = ctl.clone();
        let api_log = api_log.clone();
        let faults = faults.clone();
        let fired = fired.clone();
        let act = act.clone();
        let done = done.clone();
        let api_before = plan.api_before && first;
        thread::spawn(move || {
            let Ok(c) = ctl_rx.recv() else { return };
            if let Ok(mut g) = ctl.lock() {
                *g = Some(c.clone());
            }
            if api_before {
                if let Some(r) = c.call(ApiCall::StartPostCopy { flags: 0 }) {
                    push_log(&api_log, "start_postcopy (before)", &r);
                }
            }
            // Timed faults.
            let mut timed: Vec<(u64, usize)> = faults
                .iter()
                .enumerate()
                .filter_map(|(i, f)| match f {
                    Fault::Cut {
                        at: Trigger::AfterMs(ms),
                        ..
                    }
                    | Fault::Kill {
                        at: Trigger::AfterMs(ms),
                        ..
                    }
                    | Fault::Call {
                        at: Trigger::AfterMs(ms),
                        ..
                    } => Some((*ms, i)),
                    _ => None,
                })
                .collect();
            timed.sort();
            for (ms, i) in timed {
                while started.elapsed() < Duration::from_millis(ms) {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                let go = fired
                    .lock()
                    .map(|mut g| !std::mem::replace(&mut g[i], true))
                    .unwrap_or(false);
                if go {
                    act(&faults[i]);
                }
            }
        })
    };
    let spec = record.map(|r| RecordSpec {
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
                p[if side == Side::Src { 0 } else { 1 }].kill();
            }
            if let Ok(mut n) = notes.lock() {
                n.push(format!("{} QEMU stopped by the driver", side.tag()));
            }
        })
    };
    let hooks = Hooks {
        on_event: Some(on_event),
        on_stop: Some(on_stop),
        controller: Some(ctl_tx),
    };
    let live = run::migrate_continuing(src_qmp, dst_qmp, req.clone(), memory, spec.as_ref(), hooks);
    done.store(true, Ordering::SeqCst);
    if let Ok(mut g) = ctl.lock() {
        g.take();
    }
    let _ = helper.join();
    let live = live?;
    Ok(Once {
        report: live.report.clone(),
        stats: live.stats.clone(),
        warnings: live.warnings.clone(),
        idle: live,
    })
}

fn fire(
    f: &Fault,
    procs: &Procs,
    relay: Option<&Arc<Relay>>,
    ctl: &Arc<Mutex<Option<Controller>>>,
    api_log: &Arc<Mutex<Vec<(String, String)>>>,
    notes: &Arc<Mutex<Vec<String>>>,
) {
    let note = |text: String| {
        if let Some(c) = ctl.lock().ok().and_then(|g| g.clone()) {
            c.note(text.clone());
        }
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
                let i = if *side == Side::Src { 0 } else { 1 };
                p[i].kill();
            }
            note(format!("{} QEMU killed (SIGKILL)", side.tag()));
        }
        Fault::Call { call, .. } => {
            let Some(c) = ctl.lock().ok().and_then(|g| g.clone()) else {
                return;
            };
            let call = call.clone();
            let api_log = api_log.clone();
            // Never block the loop that answers the call.
            thread::spawn(move || {
                if let Some(r) = c.call(call.clone()) {
                    push_log(&api_log, call.name(), &r);
                }
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
