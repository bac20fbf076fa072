//! One benchmark migration: two QEMUs with our guest, each in its host of the testbed (the link:
//! tbf's rate, the delay stage's round trip), one switching policy, and the guest's heartbeats
//! timestamped on the host as they appear on the source's and the destination's serial console.
//!
//! It migrates through the C library's public API ([`api::migrate_with`]), as the scenarios and C
//! callers do, but is not a [`crate::scenario`]: its policies call the API from their own threads
//! as clients do (a poller, an event callback).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::BenchError;
use crate::guest_report::GuestLine;
use crate::qemu::{QemuConfig, QemuPair};
use crate::testbed::{LinkConfig, LinkMonitor, Testbed};
use postcopy_core::driver::vocab::{
    param, VIR_MIGRATE_LIVE, VIR_MIGRATE_POSTCOPY, VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
};
use postcopy_core::driver::{DomainEvent, MigrateRequest, Side};
use postcopy_shim::api::{self, Domain, MigrateOptions};

/// How the switch to post-copy is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// VIR_MIGRATE_LIVE only, aborted (AbortJob) when the time limit passes.
    Precopy,
    /// VIR_MIGRATE_POSTCOPY + StartPostCopy as soon as MIGRATION_ITERATION 1 arrives.
    AtOnce,
    /// VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the driver switches.
    AfterPrecopy,
    /// virsh's emulation: an event callback's thread calls StartPostCopy at iteration 2.
    ClientEvent,
    /// Nova's way: another thread polls GetJobStats every 500 ms, switches at iteration >= 2.
    ClientPoll,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Precopy,
        Policy::AtOnce,
        Policy::AfterPrecopy,
        Policy::ClientEvent,
        Policy::ClientPoll,
    ];

    /// Short name (CSV, options).
    pub fn key(self) -> &'static str {
        match self {
            Policy::Precopy => "precopy",
            Policy::AtOnce => "postcopy-at-once",
            Policy::AfterPrecopy => "after-precopy",
            Policy::ClientEvent => "client-event",
            Policy::ClientPoll => "client-poll",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Policy::Precopy => "pre-copy only",
            Policy::AtOnce => "post-copy at once",
            Policy::AfterPrecopy => "POSTCOPY_AFTER_PRECOPY",
            Policy::ClientEvent => "virsh-style (event, iter 2)",
            Policy::ClientPoll => "Nova-style (poll 500 ms)",
        }
    }

    /// Name under a bar.
    pub fn short(self) -> &'static str {
        match self {
            Policy::Precopy => "pre-copy only",
            Policy::AtOnce => "post-copy at once",
            Policy::AfterPrecopy => "AFTER_PRECOPY flag",
            Policy::ClientEvent => "virsh-style",
            Policy::ClientPoll => "Nova-style",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.key() == s)
    }

    fn flags(self) -> u32 {
        match self {
            Policy::Precopy => VIR_MIGRATE_LIVE,
            Policy::AfterPrecopy => {
                VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
            }
            _ => VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY,
        }
    }

    /// True for the policies that switch to post-copy.
    pub fn switches(self) -> bool {
        self != Policy::Precopy
    }
}

/// A guest workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short name ("a", "b", ...).
    pub name: String,
    /// What it is, for the report.
    pub what: String,
    pub memory_mib: u64,
    /// The guest's command line (qemu-fixtures/guest/README.md).
    pub guest: String,
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
    /// How long the host keeps watching the guest after the migration returned.
    pub tail: Duration,
    /// The serial files are polled this often.
    pub poll: Duration,
}

/// The link: the testbed's (docs/testbed.md), its rate from tbf on each direction, its added
/// round trip from the testbed's delay stage (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    pub rate_mib: u64,
    pub rtt_ms: u64,
}

/// One heartbeat line as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    pub seq: u64,
    /// Host time since the migrate call, ms.
    pub host_ms: f64,
    pub on_dst: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub completed: bool,
    /// Pre-copy only: the time limit passed and the job was aborted.
    pub aborted_at_limit: bool,
    pub error: Option<String>,
    /// The migrate call, start to return, s.
    pub total_s: f64,
    pub went_postcopy: bool,
    /// postcopy-active seen, ms after the migrate call.
    pub switch_at_ms: Option<f64>,
    /// MIGRATION_PASS >= 2 taken -> migrate-start-postcopy written (TransportStats).
    pub switch_latency_ms: Option<f64>,
    pub qemu_downtime_ms: Option<u64>,
    pub postcopy_requests: Option<u64>,
    pub iterations: Option<u64>,
    /// QEMU's ram transferred, bytes.
    pub ram_transferred: Option<u64>,
    /// Bytes tbf let through source -> destination (frames with their headers).
    pub link_bytes: u64,
    /// Migration connections seen on the link (2: the main stream and postcopy-preempt's).
    pub connections: u64,
    pub beats: Vec<Beat>,
    /// Migration end, ms after the migrate call.
    pub end_ms: f64,
    /// Guest verdict after the migration: CHECK OK lines seen / FAIL lines seen.
    pub checks_ok: u64,
    pub check_failures: u64,
    /// The guest's verify passes that ended after the migrate call: (host ms when the STAT line
    /// appeared, the pass's duration in guest ms). A pass reads all of ro and hot and a window of
    /// cold, so its duration shows how fast the guest ran, faults included.
    pub passes: Vec<(f64, u64)>,
}

/// Heartbeats, and the other verdict lines with their host times (a malformed report line as the
/// text that did not parse).
type Seen = (Vec<Beat>, Vec<(f64, Result<GuestLine, String>)>);

struct Follower {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Seen>,
}

/// Follows a serial file from `from`, timestamping each complete line against `t0`.
fn follow(path: PathBuf, from: u64, t0: Instant, on_dst: bool, poll: Duration) -> Follower {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = thread::spawn(move || {
        let mut beats = Vec::new();
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
                        Ok(Some(GuestLine::Heartbeat { seq, .. })) => beats.push(Beat {
                            seq,
                            host_ms: now,
                            on_dst,
                        }),
                        Ok(Some(
                            r @ (GuestLine::CheckOk { .. }
                            | GuestLine::CheckFail { .. }
                            | GuestLine::Fail { .. }
                            | GuestLine::Stat { .. }),
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
        (beats, other)
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

/// Runs one migration of `w` with `policy` over `link`; `tag` names its work directory.
pub fn run_one(
    env: &Env,
    w: &Workload,
    link: LinkSpec,
    policy: Policy,
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
    let src = Domain::open_qmp(&pair.src.qmp.display().to_string());
    let dst = Domain::open_qmp(&pair.dst.qmp.display().to_string());
    let procs: Procs = Arc::new(Mutex::new(pair));

    let port = crate::scenario::TESTBED_PORT;
    let monitor = LinkMonitor::start(
        tb.probe(),
        port,
        link.rate_mib as f64,
        link.rtt_ms as f64,
        Duration::from_millis(100),
    );
    let req = MigrateRequest {
        flags: policy.flags(),
        uri: tb.migration_uri(port),
        // QEMU's caps off (libvirt's unlimited default): the testbed's link is the limit.
        bandwidth_mib: None,
        postcopy_bandwidth_mib: None,
        connect_uri: None,
        switch_policy: None,
    };

    let t0 = Instant::now();
    let fsrc = follow(src_serial.clone(), len_of(&src_serial), t0, false, env.poll);
    let fdst = follow(dst_serial.clone(), 0, t0, true, env.poll);

    let done = Arc::new(AtomicBool::new(false));
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
        Box::new(move |side: Side, ev: &DomainEvent| {
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
    let opts = MigrateOptions {
        on_event: Some(on_event),
        on_stop: Some(on_stop),
        job_started: Some(job_tx),
        ..MigrateOptions::default()
    };
    let live = api::migrate_with(&src, &dst, req, opts);
    let end = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    let link_detail = monitor.finish().map_err(BenchError::Testbed)?;
    let mut r = RunResult {
        total_s: end.as_secs_f64(),
        end_ms: end.as_secs_f64() * 1000.0,
        aborted_at_limit: aborted.load(Ordering::SeqCst),
        link_bytes: link_detail.bytes,
        connections: link_detail.report.connections as u64,
        ..RunResult::default()
    };
    match &live {
        Ok(l) => {
            let base = l
                .stats
                .started
                .map(|s| s.saturating_duration_since(t0).as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            r.switch_at_ms = l.stats.postcopy_at.map(|d| base + d.as_secs_f64() * 1000.0);
            r.switch_latency_ms = l.stats.switch_latency.map(|d| d.as_secs_f64() * 1000.0);
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
    // Keep watching the guest where it runs now: heartbeats for the tail, then one CHECK.
    let watch_until = Instant::now() + env.tail;
    let cap = Instant::now() + env.tail + Duration::from_secs(6);
    let check_file = if r.completed {
        &dst_serial
    } else {
        &src_serial
    };
    let from = len_of(check_file);
    loop {
        let now = Instant::now();
        if now >= cap {
            break;
        }
        if now >= watch_until {
            let text = std::fs::read(check_file).unwrap_or_default();
            let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
            if tail.lines().any(|l| {
                matches!(
                    GuestLine::parse(l),
                    Ok(Some(
                        GuestLine::CheckOk { .. } | GuestLine::CheckFail { .. }
                    ))
                )
            }) {
                break;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    let (mut beats, mut checks) = fsrc.finish();
    let (dbeats, dchecks) = fdst.finish();
    beats.extend(dbeats);
    checks.extend(dchecks);
    for (at, line) in &checks {
        match line {
            // The pass's duration on the guest's clock.
            Ok(GuestLine::Stat { ms, .. }) => r.passes.push((*at, *ms)),
            Ok(GuestLine::CheckOk { .. }) => r.checks_ok += 1,
            // CHECK FAIL, FAIL, or a report line that did not parse.
            _ => r.check_failures += 1,
        }
    }
    r.passes.sort_by(|a, b| a.0.total_cmp(&b.0));
    r.beats = beats;
    kill(&procs, Side::Src);
    kill(&procs, Side::Dst);
    tb.teardown().map_err(BenchError::Testbed)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}
