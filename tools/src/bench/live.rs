//! One benchmark run: two QEMUs with our frame-mode guest, each in its host of the testbed (the
//! link: tbf's rate, the delay stage's round trip), one switching policy (or none: a control run),
//! and the guest's `FR` lines timestamped on the host as they appear on the source's and the
//! destination's serial console.
//!
//! It migrates through the C library's public API ([`api::migrate_with`]), as the scenarios and C
//! callers do, but is not a [`crate::scenario`]: its client-side policies call the API from their
//! own threads as clients do (a poller, an event callback). Every migration is recorded as a
//! transcript in the run's directory, from which the QMP events' own timestamps (STOP on the
//! source, RESUME on the destination) and the capabilities the driver set are read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::qmp_filter::QmpFilter;
use super::BenchError;
use crate::guest_report::metrics::FrameSample;
use crate::guest_report::GuestLine;
use crate::qemu::{QemuConfig, QemuPair};
use crate::testbed::{LinkConfig, LinkMonitor, Testbed};
use postcopy_core::driver::policy::SwitchPolicy;
use postcopy_core::driver::vocab::{
    event, param, VIR_MIGRATE_LIVE, VIR_MIGRATE_POSTCOPY, VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
};
use postcopy_core::driver::{DomainEvent, MigrateRequest, Side};
use postcopy_core::transcript::format::MonitorTag;
use postcopy_core::transcript::Record;
use postcopy_shim::api::{self, Domain, MigrateOptions, RecordSpec};

/// How (and whether) the switch to post-copy is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// No migration: the guest is watched for as long as a migration takes (the noise floor).
    Control,
    /// VIR_MIGRATE_LIVE only, aborted (AbortJob) when the time limit passes.
    Precopy,
    /// VIR_MIGRATE_POSTCOPY + StartPostCopy as soon as MIGRATION_ITERATION 1 arrives.
    AtOnce,
    /// VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the driver switches at pass 2.
    AfterPrecopy,
    /// Our `lpc.switch_policy` `half-pass`: the driver switches once half the memory was sent.
    HalfPass,
    /// Our `lpc.switch_policy` `adaptive` (the link's added RTT as its `rtt`).
    Adaptive,
    /// virsh's emulation: an event callback's thread calls StartPostCopy at iteration 2.
    ClientEvent,
    /// Nova's way: another thread polls GetJobStats every 500 ms, switches at iteration >= 2.
    ClientPoll,
}

impl Policy {
    /// The default set (issue 14): virsh- and Nova-style switching differ in latency, not in
    /// where they switch, and are measured apart (`--policies client-event,client-poll`).
    pub const DEFAULT: [Policy; 6] = [
        Policy::Control,
        Policy::Precopy,
        Policy::AtOnce,
        Policy::AfterPrecopy,
        Policy::HalfPass,
        Policy::Adaptive,
    ];

    /// Outside the default set.
    pub const CLIENT_SIDE: [Policy; 2] = [Policy::ClientEvent, Policy::ClientPoll];

    /// Every policy: the default set, then the client-side switches.
    pub fn all() -> impl Iterator<Item = Policy> {
        Policy::DEFAULT.into_iter().chain(Policy::CLIENT_SIDE)
    }

    /// Short name (CSV, options).
    pub fn key(self) -> &'static str {
        match self {
            Policy::Control => "control",
            Policy::Precopy => "precopy",
            Policy::AtOnce => "postcopy-at-once",
            Policy::AfterPrecopy => "after-precopy",
            Policy::HalfPass => "half-pass",
            Policy::Adaptive => "adaptive",
            Policy::ClientEvent => "client-event",
            Policy::ClientPoll => "client-poll",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Policy::Control => "no migration (control)",
            Policy::Precopy => "pre-copy only",
            Policy::AtOnce => "post-copy at once",
            Policy::AfterPrecopy => "POSTCOPY_AFTER_PRECOPY",
            Policy::HalfPass => "half-pass (lpc.switch_policy)",
            Policy::Adaptive => "adaptive (lpc.switch_policy)",
            Policy::ClientEvent => "virsh-style (event, iter 2)",
            Policy::ClientPoll => "Nova-style (poll 500 ms)",
        }
    }

    /// Name in plots.
    pub fn short(self) -> &'static str {
        match self {
            Policy::Control => "control",
            Policy::Precopy => "pre-copy only",
            Policy::AtOnce => "at once",
            Policy::AfterPrecopy => "AFTER_PRECOPY",
            Policy::HalfPass => "half-pass",
            Policy::Adaptive => "adaptive",
            Policy::ClientEvent => "virsh-style",
            Policy::ClientPoll => "Nova-style",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::all().find(|p| p.key() == s)
    }

    fn flags(self) -> u32 {
        match self {
            Policy::Control | Policy::Precopy => VIR_MIGRATE_LIVE,
            Policy::AfterPrecopy => {
                VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
            }
            _ => VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY,
        }
    }

    /// True for the policies that switch to post-copy.
    pub fn switches(self) -> bool {
        !matches!(self, Policy::Precopy | Policy::Control)
    }

    /// True when postcopy-preempt can matter: the policy migrates with VIR_MIGRATE_POSTCOPY.
    pub fn uses_preempt(self) -> bool {
        self.switches()
    }
}

/// A guest workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short name ("seed", ...).
    pub name: String,
    /// What it is and the question it answers, for the report.
    pub what: String,
    pub memory_mib: u64,
    /// The guest's command line (qemu-fixtures/guest/README.md), `mode=frame` included.
    pub guest: String,
}

impl Workload {
    fn key(&self, k: &str) -> Option<u64> {
        self.guest
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    }

    /// Frames per second (the guest's `fps`, 25 unless given).
    pub fn fps(&self) -> f64 {
        self.key("fps").unwrap_or(25) as f64
    }

    /// Bytes the guest filled with non-zero data, which must cross the link at least once: its
    /// ro, hot and cold regions, the kernel set and the frame buffer (the guest's defaults where
    /// a key is not given; cold 0 means "the rest", counted as the rest of `-m`).
    pub fn must_cross_bytes(&self) -> u64 {
        let mib = 1024 * 1024;
        let ro = self.key("ro").unwrap_or(64);
        let hot = self.key("hot").unwrap_or(16);
        let cold = match self.key("cold") {
            Some(0) | None => self.memory_mib.saturating_sub(17 + ro + hot),
            Some(c) => c,
        };
        let kib = self.key("kern").unwrap_or(256) + self.key("fb").unwrap_or(256);
        (ro + hot + cold) * mib + kib * 1024
    }
}

/// What every run shares.
#[derive(Debug, Clone)]
pub struct Env {
    pub qemu: PathBuf,
    pub qemu_root: Option<PathBuf>,
    pub kernel: PathBuf,
    pub workdir: PathBuf,
    /// Pre-copy only is aborted after this long.
    pub precopy_limit: Duration,
    /// How long a control run watches the guest.
    pub control: Duration,
    /// How long the host keeps watching the guest after the migration returned.
    pub tail: Duration,
    /// The serial files are polled this often.
    pub poll: Duration,
    /// The migrate call's deadline.
    pub deadline: Duration,
}

/// The link: the testbed's (docs/testbed.md), its rate from tbf on each direction, its added
/// round trip from the testbed's delay stage (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    pub rate_mib: u64,
    pub rtt_ms: u64,
}

/// How long the guest is watched before the migrate call (its frames have negative host times).
pub const LEAD_IN: Duration = Duration::from_millis(300);

/// What one run measured. Host times are ms after the migrate call (control: after the
/// lead-in), negative in the lead-in.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub completed: bool,
    /// Pre-copy only: the time limit passed and the job was aborted.
    pub aborted_at_limit: bool,
    pub error: Option<String>,
    /// The migrate call, start to return, s.
    pub total_s: f64,
    pub went_postcopy: bool,
    /// postcopy-active seen (the transport's clock).
    pub switch_at_ms: Option<f64>,
    /// The pass in which the driver or a client asked for the switch (iterations at the switch).
    pub iterations: Option<u64>,
    pub qemu_downtime_ms: Option<u64>,
    pub postcopy_requests: Option<u64>,
    /// QEMU's ram transferred, bytes.
    pub ram_transferred: Option<u64>,
    /// Bytes tbf let through source -> destination (frames with their headers).
    pub link_bytes: u64,
    pub achieved_mib_s: f64,
    pub backlog_at_switch: Option<u64>,
    /// Migration connections seen on the link (2: the main stream and postcopy-preempt's).
    pub connections: u64,
    /// Whether the driver set postcopy-preempt on the source (from the transcript).
    pub preempt_set: Option<bool>,
    /// The source's STOP and the destination's RESUME, from the events' own timestamps.
    pub qmp_stop_ms: Option<f64>,
    pub qmp_resume_ms: Option<f64>,
    /// Frames merged by sequence number (first sighting), in host-time order.
    pub frames: Vec<FrameSample>,
    /// Migration end, ms after the migrate call.
    pub end_ms: f64,
    /// Guest verdict: CHECK OK lines seen / FAIL lines (or malformed report lines) seen.
    pub checks_ok: u64,
    pub check_failures: u64,
}

impl RunResult {
    /// QMP's blackout: the source's STOP to the destination's RESUME (a pre-copy completion too).
    pub fn qmp_blackout_ms(&self) -> Option<f64> {
        match (self.qmp_stop_ms, self.qmp_resume_ms) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        }
    }
}

/// Frames and the other verdict lines with their host times (a malformed report line as the
/// text that did not parse).
type Seen = (
    Vec<(u64, FrameSample)>,
    Vec<(f64, Result<GuestLine, String>)>,
);

struct Follower {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Seen>,
}

/// Follows a serial file from `from`, timestamping each complete line against `t0`.
fn follow(path: PathBuf, from: u64, t0: Instant, poll: Duration) -> Follower {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = thread::spawn(move || {
        let mut frames = Vec::new();
        let mut other = Vec::new();
        let mut file: Option<File> = None;
        let mut partial = Vec::<u8>::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let last = s.load(Ordering::SeqCst);
            if file.is_none() {
                if let Ok(mut f) = File::open(&path) {
                    if f.seek(SeekFrom::Start(from)).is_ok() {
                        file = Some(f);
                    }
                }
            }
            if let Some(f) = file.as_mut() {
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    partial.extend_from_slice(&buf[..n]);
                }
                let now = t0.elapsed().as_secs_f64() * 1000.0;
                while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    match GuestLine::parse(&line) {
                        Ok(Some(GuestLine::Frame { seq, guest_us })) => frames.push((
                            seq,
                            FrameSample {
                                host_ms: now,
                                guest_us,
                            },
                        )),
                        Ok(Some(
                            r @ (GuestLine::CheckOk { .. }
                            | GuestLine::CheckFail { .. }
                            | GuestLine::Fail { .. }),
                        )) => other.push((now, Ok(r))),
                        Ok(_) => {}
                        Err(_) => other.push((now, Err(line))),
                    }
                }
            }
            if last {
                break;
            }
            thread::sleep(poll);
        }
        (frames, other)
    });
    Follower { stop, handle }
}

impl Follower {
    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

fn len_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

type Procs = Arc<Mutex<QemuPair>>;

fn kill(procs: &Procs, side: Side) {
    if let Ok(mut p) = procs.lock() {
        p.kill(side);
    }
}

/// Merges both sides' frames by sequence number (the first sighting wins: a line can only be
/// printed once, by the side that ran it) and orders them by host time.
pub fn merge_frames(mut seen: Vec<(u64, FrameSample)>) -> Vec<FrameSample> {
    seen.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.host_ms.total_cmp(&b.1.host_ms)));
    seen.dedup_by_key(|f| f.0);
    let mut v: Vec<FrameSample> = seen.into_iter().map(|f| f.1).collect();
    v.sort_by(|a, b| a.host_ms.total_cmp(&b.host_ms));
    v
}

/// What a run's transcript says: the events' timestamps (s since the epoch) and the capability.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FromTranscript {
    pub src_stop_s: Option<f64>,
    pub dst_resume_s: Option<f64>,
    pub preempt_set: Option<bool>,
}

/// Reads a run's transcript records (qemu-fixtures/README.md): the first STOP of the source, the
/// first RESUME of the destination after it, and the state the driver gave postcopy-preempt in
/// its `migrate-set-capabilities` to the source.
pub fn read_transcript<'a>(records: impl IntoIterator<Item = &'a Record>) -> FromTranscript {
    let mut out = FromTranscript::default();
    let mut planned = false;
    let ts = |m: &serde_json::Value| {
        let t = m.get("timestamp")?;
        Some(t.get("seconds")?.as_f64()? + t.get("microseconds")?.as_f64()? / 1e6)
    };
    for record in records {
        match record {
            Record::Recv { mon, msg, .. } => match (mon, msg.get("event").and_then(|e| e.as_str()))
            {
                (MonitorTag::Src, Some("STOP")) if out.src_stop_s.is_none() => {
                    out.src_stop_s = ts(msg)
                }
                (MonitorTag::Dst, Some("RESUME"))
                    if out.src_stop_s.is_some() && out.dst_resume_s.is_none() =>
                {
                    out.dst_resume_s = ts(msg)
                }
                _ => {}
            },
            // The plan is the first call with more than `events` in it (the last one resets all).
            Record::Send {
                mon: MonitorTag::Src,
                msg,
                ..
            } if !planned
                && msg.get("execute").and_then(|e| e.as_str())
                    == Some("migrate-set-capabilities") =>
            {
                if let Some(caps) = msg
                    .pointer("/arguments/capabilities")
                    .and_then(|c| c.as_array())
                    .filter(|c| c.len() > 1)
                {
                    planned = true;
                    out.preempt_set = Some(caps.iter().any(|c| {
                        c.get("capability").and_then(|x| x.as_str()) == Some("postcopy-preempt")
                            && c.get("state").and_then(|s| s.as_bool()) == Some(true)
                    }));
                }
            }
            _ => {}
        }
    }
    out
}

/// Runs `policy` on `w` over `link`, postcopy-preempt offered by the destination or not
/// (`preempt`); `tag` names its work directory.
pub fn run_one(
    env: &Env,
    w: &Workload,
    link: LinkSpec,
    policy: Policy,
    preempt: bool,
    tag: &str,
) -> Result<RunResult, BenchError> {
    let dir = env.workdir.join(tag);
    let cfg = QemuConfig::guest(
        &env.qemu,
        env.qemu_root.as_deref(),
        &env.kernel,
        &w.guest,
        w.memory_mib,
    );
    // Two hosts and their link for this run; every QEMU in them ends with them.
    let tb = Testbed::new(LinkConfig::with_rtt(
        link.rate_mib as f64,
        Duration::from_millis(link.rtt_ms),
    ))
    .map_err(BenchError::Testbed)?;
    let pair = QemuPair::start_in_hosts(&cfg, &tb.probe(), &dir)?;
    let (src_serial, dst_serial) = (pair.src.serial.clone(), pair.dst.serial.clone());
    // Preempt off: the driver talks to the destination through the relay that hides it.
    let filter = if preempt {
        None
    } else {
        Some(
            QmpFilter::start(&dir.join("dst-filter.qmp"), &pair.dst.qmp).map_err(|source| {
                BenchError::Write {
                    path: dir.join("dst-filter.qmp"),
                    source,
                }
            })?,
        )
    };
    let dst_qmp = filter
        .as_ref()
        .map(|f| f.path.clone())
        .unwrap_or_else(|| pair.dst.qmp.clone());
    let src = Domain::open_qmp(&pair.src.qmp.display().to_string());
    let dst = Domain::open_qmp(&dst_qmp.display().to_string());
    let procs: Procs = Arc::new(Mutex::new(pair));

    // The guest is watched from LEAD_IN before the migrate call, so the interval that spans the
    // switch has its frame before it even when the source stops at once.
    let watch = Instant::now();
    let fsrc = follow(src_serial.clone(), len_of(&src_serial), watch, env.poll);
    let fdst = follow(dst_serial.clone(), 0, watch, env.poll);
    thread::sleep(LEAD_IN);
    let t0 = Instant::now();
    let t0_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let lead_ms = t0.duration_since(watch).as_secs_f64() * 1000.0;
    let mut r = RunResult::default();

    if policy == Policy::Control {
        thread::sleep(env.control);
        r.completed = true;
        r.total_s = env.control.as_secs_f64();
        r.end_ms = r.total_s * 1000.0;
    } else {
        migrate(
            env, w, link, policy, &tb, &src, &dst, &procs, &dir, t0, t0_epoch, &mut r,
        )?;
        // Keep watching the guest where it runs now.
        thread::sleep(env.tail);
    }
    let (mut frames, mut checks) = fsrc.finish();
    let (dframes, dchecks) = fdst.finish();
    frames.extend(dframes);
    checks.extend(dchecks);
    for (_, line) in &checks {
        match line {
            Ok(GuestLine::CheckOk { .. }) => r.checks_ok += 1,
            // CHECK FAIL, FAIL, or a report line that did not parse.
            _ => r.check_failures += 1,
        }
    }
    for f in &mut frames {
        f.1.host_ms -= lead_ms;
    }
    r.frames = merge_frames(frames);
    kill(&procs, Side::Src);
    kill(&procs, Side::Dst);
    drop(filter);
    tb.teardown().map_err(BenchError::Testbed)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn migrate(
    env: &Env,
    w: &Workload,
    link: LinkSpec,
    policy: Policy,
    tb: &Testbed,
    src: &Arc<Domain>,
    dst: &Arc<Domain>,
    procs: &Procs,
    dir: &Path,
    t0: Instant,
    t0_epoch: f64,
    r: &mut RunResult,
) -> Result<(), BenchError> {
    let port = crate::scenario::TESTBED_PORT;
    let monitor = Arc::new(LinkMonitor::start(
        tb.probe(),
        port,
        link.rate_mib as f64,
        link.rtt_ms as f64,
        Duration::from_millis(100),
    ));
    let (switch_tx, switch_rx) = channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let marker = {
        let (m, done) = (monitor.clone(), done.clone());
        thread::spawn(move || loop {
            match switch_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(()) => return Some(m.mark_switch()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !done.load(Ordering::SeqCst) => {
                }
                Err(_) => return None,
            }
        })
    };
    let req = MigrateRequest {
        flags: policy.flags(),
        uri: tb.migration_uri(port),
        // QEMU's caps off (libvirt's unlimited default): the testbed's link is the limit.
        bandwidth_mib: None,
        postcopy_bandwidth_mib: None,
        connect_uri: None,
        switch_policy: match policy {
            Policy::HalfPass => Some(SwitchPolicy::HalfPass),
            Policy::Adaptive => Some(SwitchPolicy::Adaptive {
                rtt_us: link.rtt_ms * 1000,
            }),
            _ => None,
        },
    };
    let aborted = Arc::new(AtomicBool::new(false));
    let (job_tx, job_rx) = channel::<()>();
    let helper = {
        let src = src.clone();
        let done = done.clone();
        let aborted = aborted.clone();
        let limit = env.precopy_limit;
        thread::spawn(move || {
            if job_rx.recv().is_err() {
                return; // the call failed before its job started
            }
            let started = Instant::now();
            let mut next_poll = started + Duration::from_millis(500);
            while !done.load(Ordering::SeqCst) {
                match policy {
                    Policy::Precopy if started.elapsed() >= limit => {
                        aborted.store(true, Ordering::SeqCst);
                        let _ = src.abort_job(0);
                        return;
                    }
                    Policy::ClientPoll if Instant::now() >= next_poll => {
                        next_poll += Duration::from_millis(500);
                        let iter = src
                            .job_stats(0)
                            .ok()
                            .and_then(|s| s.get(param::memory_iteration()));
                        if iter.is_some_and(|i| i >= 2) {
                            let _ = src.start_postcopy(0);
                            return;
                        }
                    }
                    _ => {}
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let on_event = {
        let src = src.clone();
        let mut fired = false;
        let switch_tx = Mutex::new(Some(switch_tx));
        Box::new(move |side: Side, ev: &DomainEvent| {
            if let (Side::Src, DomainEvent::Lifecycle { event: e, detail }) = (side, ev) {
                if *e == event::SUSPENDED && *detail == event::SUSPENDED_POSTCOPY {
                    if let Some(tx) = switch_tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(());
                    }
                }
            }
            let at = match policy {
                Policy::AtOnce => 1,
                Policy::ClientEvent => 2,
                _ => return,
            };
            if let (Side::Src, DomainEvent::MigrationIteration { iteration }) = (side, ev) {
                if *iteration == at && !fired {
                    fired = true;
                    let src = src.clone();
                    // An event callback must not block the loop that answers the call.
                    thread::spawn(move || {
                        let _ = src.start_postcopy(0);
                    });
                }
            }
        })
    };
    let on_stop = {
        let procs = procs.clone();
        Box::new(move |side: Side| kill(&procs, side))
    };
    let transcript = dir.join("run.jsonl");
    let opts = MigrateOptions {
        on_event: Some(on_event),
        on_stop: Some(on_stop),
        job_started: Some(job_tx),
        deadline: Some(env.deadline),
        record: Some(RecordSpec {
            path: transcript.clone(),
            scenario: format!("bench-{}", policy.key()),
            description: Some(format!("postcopy bench, workload {}", w.name)),
            qemu_src: "bench".into(),
            qemu_dst: "bench".into(),
            append: false,
            epoch: Some(t0),
        }),
    };
    let live = api::migrate_with(src, dst, req, opts);
    let end = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    // The marker thread ends when it marked the switch or sees `done`.
    let _ = marker.join();
    let link_detail = Arc::try_unwrap(monitor)
        .map_err(|_| {
            BenchError::Testbed(crate::testbed::TestbedError::Parse {
                command: "link monitor".into(),
                what: "still shared after the migration".into(),
            })
        })?
        .finish()
        .map_err(BenchError::Testbed)?;
    r.total_s = end.as_secs_f64();
    r.end_ms = end.as_secs_f64() * 1000.0;
    r.aborted_at_limit = aborted.load(Ordering::SeqCst);
    r.link_bytes = link_detail.bytes;
    r.connections = link_detail.report.connections as u64;
    r.achieved_mib_s = link_detail.report.achieved_mib_s;
    r.backlog_at_switch = link_detail.report.backlog_at_switch_bytes;
    match &live {
        Ok(l) => {
            let base = l
                .stats
                .started
                .map(|s| s.saturating_duration_since(t0).as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            r.switch_at_ms = l.stats.postcopy_at.map(|d| base + d.as_secs_f64() * 1000.0);
            match &l.report.result {
                Ok(o) => {
                    r.completed = true;
                    r.went_postcopy = o.postcopy;
                    r.qemu_downtime_ms = o.stats.get(param::downtime());
                    r.postcopy_requests = o.stats.get(param::memory_postcopy_requests());
                    r.iterations = o.stats.get(param::memory_iteration());
                    r.ram_transferred = o.stats.get(param::memory_processed());
                }
                Err(e) => r.error = Some(e.message().to_string()),
            }
        }
        Err(e) => r.error = Some(e.to_string()),
    }
    // The project's one transcript reader; a run whose transcript cannot be read has no QMP
    // times (its row says so).
    let t = postcopy_shim::load_transcript(&transcript)
        .map(|t| read_transcript(t.records.iter().map(|(_, r)| r)))
        .unwrap_or_default();
    r.preempt_set = t.preempt_set;
    r.qmp_stop_ms = t.src_stop_s.map(|s| (s - t0_epoch) * 1000.0);
    r.qmp_resume_ms = t.dst_resume_s.map(|s| (s - t0_epoch) * 1000.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_merge_by_sequence_first_sighting_wins() {
        let f = |seq, host_ms, guest_us| (seq, FrameSample { host_ms, guest_us });
        // Frame 2 seen on both sides (a serial buffer replayed): the earlier host time wins.
        let m = merge_frames(vec![
            f(3, 130.0, 120_000),
            f(1, 40.0, 40_000),
            f(2, 90.0, 80_000),
            f(2, 80.0, 80_000),
        ]);
        let host: Vec<f64> = m.iter().map(|x| x.host_ms).collect();
        assert_eq!(host, vec![40.0, 80.0, 130.0]);
    }

    #[test]
    fn the_transcript_gives_stop_resume_and_preempt() {
        let records = |text: &str| -> Vec<Record> {
            text.lines()
                .map(|l| serde_json::from_str(l).expect("a record"))
                .collect()
        };
        let t = r#"{"kind":"send","t":5,"mon":"src","msg":{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true},{"capability":"postcopy-preempt","state":true}]}}}
{"kind":"recv","t":1965,"mon":"dst","msg":{"timestamp":{"seconds":99,"microseconds":0},"event":"RESUME"}}
{"kind":"recv","t":1965,"mon":"src","msg":{"timestamp":{"seconds":100,"microseconds":500000},"event":"STOP"}}
{"kind":"recv","t":1980,"mon":"dst","msg":{"timestamp":{"seconds":100,"microseconds":750000},"event":"RESUME"}}
{"kind":"recv","t":1990,"mon":"dst","msg":{"timestamp":{"seconds":101,"microseconds":0},"event":"RESUME"}}
{"kind":"send","t":2000,"mon":"src","msg":{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":false},{"capability":"postcopy-preempt","state":false}]}}}"#;
        let r = read_transcript(&records(t));
        assert_eq!(
            r,
            FromTranscript {
                src_stop_s: Some(100.5),
                dst_resume_s: Some(100.75),
                preempt_set: Some(true),
            }
        );
        let off = r#"{"kind":"send","t":5,"mon":"src","msg":{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true},{"capability":"return-path","state":true}]}}}"#;
        assert_eq!(read_transcript(&records(off)).preempt_set, Some(false));
    }

    #[test]
    fn a_workload_knows_its_rate_and_what_must_cross() {
        let w = Workload {
            name: "x".into(),
            what: String::new(),
            memory_mib: 128,
            guest: "mode=frame ro=64 hot=8 cold=16 fps=20".into(),
        };
        assert_eq!(w.fps(), 20.0);
        assert_eq!(w.must_cross_bytes(), 88 * 1024 * 1024 + 512 * 1024);
        let rest = Workload {
            guest: "mode=frame ro=64 hot=8 cold=0 kern=128 fb=128".into(),
            ..w
        };
        // cold 0: the rest of 128 MiB after 16 MiB, ro, hot and the 1 MiB margin: 39 MiB.
        assert_eq!(rest.fps(), 25.0);
        assert_eq!(rest.must_cross_bytes(), 111 * 1024 * 1024 + 256 * 1024);
    }
}
