//! A whole live scenario on this machine: two QEMUs with our guest, each in its host of the
//! testbed (two network namespaces joined by a tbf-shaped veth pair, docs/testbed.md) unless the
//! plan asks for loopback, faults injected at chosen moments (a hard cut or a silent partition of
//! the link, a killed QEMU, API calls from other threads), recovery (by hand or by the automatic
//! policy, with its stall detector), the link's own measurements, and the guest's verdict on its
//! memory. `postcopy migrate` and the live fault tests run through here. Every migrate call goes
//! through the C library's public API ([`api::migrate_with`]), as a C caller's does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::guest_report::GuestLine;
use crate::qemu::{free_port, QemuConfig, QemuPair, SerialFollower, StartError};
use crate::testbed::measure::LinkDetail;
use crate::testbed::{LinkConfig, LinkMonitor, Probe, Testbed, TestbedError};
use postcopy_core::driver::vocab::{event, param, state, VIR_DOMAIN_ABORT_JOB_POSTCOPY};
use postcopy_core::driver::{
    ApiCall, ApiValue, DomainEvent, MigrateRequest, RecoveryPolicy, Side, SwitchPolicy, VirError,
};
use postcopy_core::engine::{api_result_text, Report};
use postcopy_core::faults::FaultSchedule;
use postcopy_core::stall::{StallDetector, StallVerdict};
use postcopy_shim::api::{self, Domain, MigrateOptions, Migration, RecordSpec, TransportStats};

/// When a fault or an API call happens: decided by the core ([`FaultSchedule`]), executed here.
pub use postcopy_core::faults::Trigger;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A hard cut: every migration connection destroyed (`ss -K` in both hosts, the testbed's
    /// [`Probe::cut`]); the link stays down `down_ms` (None: until a recovery brings it up).
    Cut { at: Trigger, down_ms: Option<u64> },
    /// A silent partition: the link down for `down_ms` (no RST, no FIN; packets dropped).
    Partition { at: Trigger, down_ms: u64 },
    /// Kill a QEMU (SIGKILL).
    Kill { side: Side, at: Trigger },
    /// An API call from another thread.
    Call { call: ApiCall, at: Trigger },
}

impl Fault {
    pub fn trigger(&self) -> Trigger {
        match self {
            Fault::Cut { at, .. }
            | Fault::Partition { at, .. }
            | Fault::Kill { at, .. }
            | Fault::Call { at, .. } => *at,
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

/// The link between the two QEMUs: the testbed's, shaped by the kernel (docs/testbed.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Each direction's rate (tbf), MiB/s.
    pub rate_mib_s: f64,
    /// Round trip added by the testbed's delay stage (0: none).
    pub rtt_ms: u64,
}

impl Default for Link {
    /// 32 MiB/s, no added round trip: `postcopy migrate`'s default.
    fn default() -> Self {
        Link {
            rate_mib_s: 32.0,
            rtt_ms: 0,
        }
    }
}

/// The port the destination QEMU listens on inside its host (nothing else runs there).
pub const TESTBED_PORT: u16 = 49152;

/// How the automatic recovery policy notices a silent partition: no progress of the source's
/// transferred bytes for this long while in post-copy.
pub const DEFAULT_STALL_WINDOW: Duration = Duration::from_secs(2);

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
    /// The testbed's link between the two hosts; None: both QEMUs on this machine's loopback
    /// (no link model: QEMU's own caps, if asked, are the only limit).
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
    /// What the testbed's link did (a plan with a link).
    pub link: Option<LinkDetail>,
    /// Every silent partition: when, how long, when each QEMU failed after it.
    pub partitions: Vec<PartitionRecord>,
    /// The stall detector's declaration (the automatic policy on the testbed), if it made one.
    pub stall: Option<StallRecord>,
    /// The testbed's namespace holders (source, destination, and the wire's with a delay
    /// stage): gone once the testbed is (a test checks that nothing is left).
    pub testbed_holders: Vec<u32>,
    /// The testbed, kept while QEMUs are left running in its hosts (`left_running`): they end
    /// when it is dropped. None otherwise (torn down before returning).
    pub testbed: Option<Testbed>,
}

/// A silent partition as it happened. Times are ms since the scenario's first migrate call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRecord {
    pub down_at_ms: u64,
    /// How long the link was actually down (None: it is not back up, an error is in warnings).
    pub lasted_ms: Option<u64>,
    /// From the link going down to the source's SUSPENDED_POSTCOPY_FAILED (QEMU noticed, or the
    /// stall detector paused it: see [`ScenarioResult::stall`]); None: it never failed.
    pub src_failed_after_ms: Option<u64>,
    /// From the link going down to the destination's RESUMED_POSTCOPY_FAILED.
    pub dst_failed_after_ms: Option<u64>,
}

/// The stall detector's verdict and what the scenario did about it (ms since the first call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallRecord {
    /// The last progress of the source's transferred bytes.
    pub since_ms: u64,
    pub detected_ms: u64,
    /// virDomainAbortJobFlags(VIR_DOMAIN_ABORT_JOB_POSTCOPY) on the source (migrate-pause).
    pub src_pause: String,
    /// The same call on the destination: libvirt has no call that pauses an incoming migration
    /// (it refuses), so the destination notices by itself once the link is back.
    pub dst_pause: String,
}

/// What happened on the link while the scenario ran (faults' threads write here).
#[derive(Debug, Default)]
struct Timeline {
    partitions: Vec<PartitionRecord>,
    /// (side, ms) of each POSTCOPY_FAILED lifecycle event.
    failures: Vec<(Side, u64)>,
    stall: Option<StallRecord>,
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
    #[error("cannot build the testbed (two hosts and their link)")]
    Testbed(#[source] TestbedError),
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
/// The testbed of a run, with what measures and faults it.
struct Net {
    probe: Probe,
    port: u16,
}

/// Everything a migrate call's hooks and fault threads share.
#[derive(Clone)]
struct Shared {
    procs: Procs,
    net: Option<Arc<Net>>,
    src: Arc<Domain>,
    dst: Arc<Domain>,
    api_log: Arc<Mutex<Vec<(String, String)>>>,
    notes: Arc<Mutex<Vec<String>>>,
    timeline: Arc<Mutex<Timeline>>,
    /// The scenario's clock (its first migrate call).
    epoch: Instant,
    /// Asks the marker thread to record the backlog at the switch (first switch only).
    switch_tx: Arc<Mutex<Option<std::sync::mpsc::Sender<()>>>>,
    /// The link's fault threads (a partition, a cut's way back up): joined before the end.
    link_threads: Arc<Mutex<Vec<thread::JoinHandle<()>>>>,
}

impl Shared {
    fn ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A remark for the transcript (between the messages it falls between) and the result.
    fn note(&self, text: String) {
        self.src.note(text.clone());
        self.remember(text);
    }

    /// A remark for the result only.
    fn remember(&self, text: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(text);
        }
    }

    fn warn(&self, text: String) {
        self.note(format!("warning: {text}"));
    }
}

/// Runs a plan to its end. With a link, the testbed is built first and torn down at the end
/// (and with it every QEMU still in its hosts, unless one is left running for a recovery by
/// hand: then the testbed is kept alive as long as this process).
pub fn run(plan: Plan) -> Result<ScenarioResult, ScenarioError> {
    let cfg = QemuConfig::guest(
        &plan.qemu,
        plan.qemu_root.as_deref(),
        &plan.kernel,
        &plan.guest,
        plan.memory_mib,
    );
    let testbed = match plan.link {
        Some(l) => Some(
            Testbed::new(LinkConfig::with_rtt(
                l.rate_mib_s,
                Duration::from_millis(l.rtt_ms),
            ))
            .map_err(ScenarioError::Testbed)?,
        ),
        None => None,
    };
    let (pair, uri, net) = match &testbed {
        Some(tb) => {
            let pair = QemuPair::start_in_hosts(&cfg, &tb.probe(), &plan.workdir)?;
            let net = Net {
                probe: tb.probe(),
                port: TESTBED_PORT,
            };
            (pair, tb.migration_uri(TESTBED_PORT), Some(net))
        }
        None => {
            let pair = QemuPair::start(&cfg, &plan.workdir)?;
            let port = free_port().map_err(ScenarioError::Port)?;
            (pair, format!("tcp:127.0.0.1:{port}"), None)
        }
    };
    let src = Domain::open_qmp(&pair.src.qmp.display().to_string());
    let dst = Domain::open_qmp(&pair.dst.qmp.display().to_string());
    let dst_follow_from = std::fs::metadata(&pair.dst.serial)
        .map(|m| m.len())
        .unwrap_or(0);
    let dst_serial = pair.dst.serial.clone();
    let procs: Procs = Arc::new(Mutex::new(pair));

    let req = MigrateRequest {
        flags: plan.flags,
        uri,
        bandwidth_mib: plan.bandwidth_mib,
        postcopy_bandwidth_mib: plan.postcopy_bandwidth_mib,
        switch_policy: plan.switch_policy,
        connect_uri: None,
    };

    let started = Instant::now();
    // The link is measured from before the first call to after the last one.
    let monitor = net.as_ref().map(|n| {
        let l = plan.link.unwrap_or_default();
        Arc::new(LinkMonitor::start(
            n.probe.clone(),
            n.port,
            l.rate_mib_s,
            l.rtt_ms as f64,
            Duration::from_millis(100),
        ))
    });
    let net = net.map(Arc::new);
    let (switch_tx, switch_rx) = channel::<()>();
    let marker = monitor
        .clone()
        .map(|mon| thread::spawn(move || switch_rx.recv().ok().map(|()| mon.mark_switch())));
    let shared = Shared {
        procs: procs.clone(),
        net: net.clone(),
        src: src.clone(),
        dst: dst.clone(),
        api_log: Arc::default(),
        notes: Arc::default(),
        timeline: Arc::default(),
        epoch: started,
        switch_tx: Arc::new(Mutex::new(Some(switch_tx))),
        link_threads: Arc::default(),
    };
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
    // The automatic policy watches for a silent partition on the testbed.
    let stall_window = match (&plan.recovery, &net) {
        (Recovery::Auto(_), Some(_)) => Some(DEFAULT_STALL_WINDOW),
        _ => None,
    };
    let mut first = true;
    let mut setup_error = None;
    let calls = api::with_recovery(req, policy.as_ref(), |req| {
        if setup_error.is_some() {
            return (None, false);
        }
        if !first {
            if let (Recovery::Manual { .. }, Some(n)) = (&plan.recovery, &shared.net) {
                // Recovery by hand: whoever recovers has fixed the link first.
                if let Err(e) = n.probe.set_link_up(true) {
                    shared.warn(format!("cannot bring the link back up: {e}"));
                }
            }
        }
        let one = run_once(&plan, req, record.as_ref(), first, stall_window, &shared);
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
        push_log(&shared.api_log, "start_postcopy (after)", &r);
    }
    // The link's faults run their course (a partition ends, a cut link comes back up).
    let threads = shared
        .link_threads
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    for t in threads {
        let _ = t.join();
    }
    // The link's numbers: the marker first (it holds the monitor), then the monitor.
    drop(shared.switch_tx.lock().map(|mut t| t.take()));
    if let Some(Some(Err(e))) = marker.map(|m| m.join().ok().flatten()) {
        warnings.push(format!("cannot measure the backlog at the switch: {e}"));
    }
    let link = match monitor.map(Arc::try_unwrap) {
        Some(Ok(m)) => match m.finish() {
            Ok(d) => Some(d),
            Err(e) => {
                warnings.push(format!("cannot measure the link: {e}"));
                None
            }
        },
        Some(Err(_)) => {
            warnings.push("cannot measure the link: its monitor is still shared".into());
            None
        }
        None => None,
    };

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
    let api_log = shared.api_log.lock().map(|l| l.clone()).unwrap_or_default();
    let notes = shared.notes.lock().map(|l| l.clone()).unwrap_or_default();
    let (partitions, stall) = shared
        .timeline
        .lock()
        .map(|t| (partitions_with_failures(&t), t.stall.clone()))
        .unwrap_or_default();
    let mut testbed_holders = Vec::new();
    let mut kept = None;
    if let Some(tb) = testbed {
        let (s, d) = tb.holder_pids();
        testbed_holders.extend([s, d]);
        testbed_holders.extend(tb.wire_pid());
        if left_running.is_empty() {
            // Every QEMU still in the hosts goes with them.
            if let Err(e) = tb.teardown() {
                warnings.push(format!("testbed teardown: {e}"));
            }
        } else {
            // QEMUs left for a recovery by hand live in the hosts: they last as long as it.
            kept = Some(tb);
        }
    }
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
        link,
        partitions,
        stall,
        testbed_holders,
        testbed: kept,
    })
}

/// Each partition with the first failure of each side after it went down.
fn partitions_with_failures(t: &Timeline) -> Vec<PartitionRecord> {
    t.partitions
        .iter()
        .map(|p| {
            let after = |side: Side| {
                t.failures
                    .iter()
                    .filter(|(s, at)| *s == side && *at >= p.down_at_ms)
                    .map(|(_, at)| at - p.down_at_ms)
                    .min()
            };
            PartitionRecord {
                src_failed_after_ms: after(Side::Src),
                dst_failed_after_ms: after(Side::Dst),
                ..p.clone()
            }
        })
        .collect()
}

fn push_log(log: &Mutex<Vec<(String, String)>>, what: &str, r: &Result<ApiValue, VirError>) {
    if let Ok(mut l) = log.lock() {
        l.push((what.to_string(), api_result_text(r)));
    }
}

/// One migrate call with the plan's faults (the first call only) and hooks.
fn run_once(
    plan: &Plan,
    req: &MigrateRequest,
    record: Option<&RecordSpec>,
    first: bool,
    stall_window: Option<Duration>,
    sh: &Shared,
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
    // Fires the faults the schedule says are due (outside its lock).
    let fire_due = {
        let faults = faults.clone();
        let sh = sh.clone();
        move |due: Vec<usize>| {
            for i in due {
                fire(&faults[i], &sh);
            }
        }
    };
    let on_event = {
        let schedule = schedule.clone();
        let fire_due = fire_due.clone();
        let user = plan.on_event.clone();
        let sh = sh.clone();
        Box::new(move |side: Side, ev: &DomainEvent| {
            if let Some(u) = &user {
                (u.0)(side, ev);
            }
            if let DomainEvent::Lifecycle { event: e, detail } = ev {
                let failed = (*e == event::SUSPENDED
                    && *detail == event::SUSPENDED_POSTCOPY_FAILED)
                    || (*e == event::RESUMED && *detail == event::RESUMED_POSTCOPY_FAILED);
                if failed {
                    let at = sh.ms();
                    if let Ok(mut t) = sh.timeline.lock() {
                        t.failures.push((side, at));
                    }
                }
                // The switch (the source paused for post-copy): the link's backlog now. No
                // driver milestone marks it more closely than this event.
                if side == Side::Src
                    && *e == event::SUSPENDED
                    && *detail == event::SUSPENDED_POSTCOPY
                {
                    if let Some(tx) = sh.switch_tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(());
                    }
                }
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
        let src = sh.src.clone();
        let api_log = sh.api_log.clone();
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
    let watcher = stall_window.map(|w| {
        let (sh, done) = (sh.clone(), done.clone());
        thread::spawn(move || watch_for_stall(&sh, w, &done))
    });
    let record = record.map(|r| RecordSpec {
        append: r.append || !first,
        ..r.clone()
    });
    let on_stop = {
        let procs = sh.procs.clone();
        let notes = sh.notes.clone();
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
    let migration = api::migrate_with(&sh.src, &sh.dst, req.clone(), opts);
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    if let Some(w) = watcher {
        let _ = w.join();
    }
    migration
}

/// The stall detector of the automatic policy: samples the source's job statistics (as a
/// client's poller does, `virDomainGetJobStats` from another thread) every 200 ms while the
/// call runs; once post-copy makes no progress for `window`, pauses the source
/// (`VIR_DOMAIN_ABORT_JOB_POSTCOPY`: migrate-pause) so that the call fails in post-copy and the
/// policy's recovery takes over. The destination cannot be paused through the API (libvirt
/// refuses the call on an incoming migration; the answer is recorded): it notices by itself
/// once the link is back and the source's closed connection reaches it.
fn watch_for_stall(sh: &Shared, window: Duration, done: &AtomicBool) {
    let mut det = StallDetector::new(window.as_millis() as u64);
    while !done.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(200));
        let in_postcopy = sh
            .src
            .state(0)
            .is_ok_and(|s| s.state == state::PAUSED && s.reason == state::PAUSED_POSTCOPY);
        let transferred = match sh.src.job_stats(0) {
            Ok(st) => st.get(param::memory_processed()).unwrap_or(0),
            Err(_) => continue,
        };
        if let StallVerdict::Stalled {
            since_ms,
            detected_ms,
        } = det.sample(sh.ms(), transferred, in_postcopy)
        {
            sh.note(format!(
                "stall: no post-copy progress since {since_ms} ms, detected at {detected_ms} ms; \
                 pausing both sides"
            ));
            // The destination first, while its job still runs (the source's pause ends it).
            let d = sh.dst.api(ApiCall::AbortJob {
                flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
            });
            push_log(
                &sh.api_log,
                "abort_job(POSTCOPY) on the destination (stall)",
                &d,
            );
            let s = sh.src.api(ApiCall::AbortJob {
                flags: VIR_DOMAIN_ABORT_JOB_POSTCOPY,
            });
            push_log(&sh.api_log, "abort_job(POSTCOPY) on the source (stall)", &s);
            if let Ok(mut t) = sh.timeline.lock() {
                t.stall.get_or_insert(StallRecord {
                    since_ms,
                    detected_ms,
                    src_pause: api_result_text(&s),
                    dst_pause: api_result_text(&d),
                });
            }
            return;
        }
    }
}

fn fire(f: &Fault, sh: &Shared) {
    match f {
        Fault::Cut { down_ms, .. } => {
            let Some(net) = sh.net.clone() else {
                sh.warn("a cut needs the testbed's link (the plan has none)".into());
                return;
            };
            // Noted before it happens: the failure it causes may end the call before a later
            // note reached the transcript.
            sh.note(format!(
                "link cut{}",
                down_ms
                    .map(|d| format!(", down for {d} ms"))
                    .unwrap_or_default()
            ));
            match net.probe.cut(net.port, true) {
                Ok(n) => sh.remember(format!("the cut destroyed {n} sockets")),
                Err(e) => sh.warn(format!("the cut failed: {e}")),
            }
            if let Some(d) = *down_ms {
                let sh2 = sh.clone();
                let t = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(d));
                    if let Err(e) = net.probe.set_link_up(true) {
                        sh2.warn(format!("cannot bring the link back up: {e}"));
                    }
                });
                if let Ok(mut l) = sh.link_threads.lock() {
                    l.push(t);
                }
            }
        }
        Fault::Partition { down_ms, .. } => {
            let Some(net) = sh.net.clone() else {
                sh.warn("a partition needs the testbed's link (the plan has none)".into());
                return;
            };
            let (sh2, d) = (sh.clone(), *down_ms);
            // Never block the thread that fired it (the migration's own, for an event trigger).
            let t = thread::spawn(move || {
                let sh = sh2;
                let down_at_ms = sh.ms();
                let index = sh.timeline.lock().map(|mut t| {
                    t.partitions.push(PartitionRecord {
                        down_at_ms,
                        ..PartitionRecord::default()
                    });
                    t.partitions.len() - 1
                });
                sh.note(format!("link down (silent partition) for {d} ms"));
                let lasted_ms = match net.probe.partition(Duration::from_millis(d)) {
                    Ok(l) => Some(l.as_millis() as u64),
                    Err(e) => {
                        sh.warn(format!("the partition failed: {e}"));
                        None
                    }
                };
                if let (Ok(mut t), Ok(i)) = (sh.timeline.lock(), index) {
                    t.partitions[i].lasted_ms = lasted_ms;
                }
                sh.note("link up (partition over)".into());
            });
            if let Ok(mut l) = sh.link_threads.lock() {
                l.push(t);
            }
        }
        Fault::Kill { side, .. } => {
            // Noted before it happens, as a cut.
            sh.note(format!("{} QEMU killed (SIGKILL)", side.tag()));
            if let Ok(mut p) = sh.procs.lock() {
                p.kill(*side);
            }
        }
        Fault::Call { call, .. } => {
            let (src, call) = (sh.src.clone(), call.clone());
            let api_log = sh.api_log.clone();
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
