//! `postcopy bench`: does one pre-copy pass before the switch pay off in what a video guest shows?
//!
//! Every policy migrates the same frame-mode guest over the same link (the testbed's: two network
//! namespaces, a veth pair shaped by tbf; QEMU's own caps off), with the destination offering
//! postcopy-preempt or not, in blocks: each block runs every cell once, in an order shuffled with
//! a printed seed. The host timestamps the guest's frames on both serial consoles; the frame
//! metrics are `guest_report::metrics`'. See docs/benchmark.md and docs/benchmark-method.md.

pub mod live;
pub mod plots;
pub mod qmp_filter;
pub mod replay;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::guest_report::metrics::{blackout_estimate, degraded_period, frame_stalls, FrameSample};
pub use live::{Env, LinkSpec, Policy, RunResult, Workload};

/// Why the benchmark, or one of its runs, could not go on.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot create {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {}", path.display())]
    Plot {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no transcripts under {}", .0.display())]
    NoTranscripts(PathBuf),
    #[error("cannot load a transcript to replay")]
    Transcript(#[from] postcopy_core::transcript::TranscriptError),
    #[error("cannot set up the QEMUs")]
    Qemu(#[from] crate::qemu::StartError),
    #[error("cannot build, measure or tear down the testbed (two hosts and their link)")]
    Testbed(#[source] crate::testbed::TestbedError),
}

impl BenchError {
    /// For `map_err`: a failed write of `path`.
    pub fn write(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
        move |source| BenchError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A whole benchmark.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Env,
    pub workloads: Vec<Workload>,
    pub link: LinkSpec,
    pub policies: Vec<Policy>,
    /// The destination offers postcopy-preempt (true) or not (false): each value a factor level.
    pub preempt: Vec<bool>,
    /// Blocks: every deciding cell runs once per block.
    pub reps: usize,
    /// The other cells (pre-copy only, half-pass, control, client-side) run in the first
    /// `reps_other` blocks only.
    pub reps_other: usize,
    /// The order within each block is shuffled with this seed (printed, so a run can be repeated).
    pub seed: u64,
    pub out: PathBuf,
    /// Also write the page here, its links pointing into `out` (docs/benchmark.md).
    pub doc: Option<PathBuf>,
    /// Replay every fixture transcript this many times (0: skip the replay table).
    pub replay_n: usize,
    pub fixtures: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// The policies whose cells decide a target (issue 14): AFTER_PRECOPY against at-once (the seed's
/// claim), the adaptive policy against both.
pub const DECIDING: [Policy; 3] = [Policy::AtOnce, Policy::AfterPrecopy, Policy::Adaptive];

/// The default workloads (docs/benchmark.md, "Workloads"): each answers one question. `quick`:
/// the same three shapes, smaller.
pub fn default_workloads(quick: bool) -> Vec<Workload> {
    let (m, seed, churn, mid) = if quick {
        (
            [64, 80, 80],
            "ro=32 hot=8 cold=4 rate=4",
            "ro=16 hot=40 cold=4 rate=200",
            "ro=16 hot=16 cold=28 rate=16",
        )
    } else {
        (
            [128, 96, 160],
            "ro=64 hot=24 cold=16 rate=12",
            "ro=32 hot=40 cold=4 rate=200",
            "ro=24 hot=24 cold=90 rate=20",
        )
    };
    vec![
        Workload {
            name: "seed".into(),
            what: "the seed's analogue: a large read-mostly video region, a smaller hot set \
                   dirtied far below the link (but more than QEMU's downtime limit lets it send \
                   at the stop, so a switch after one pass does happen). Does one pre-copy pass \
                   spare the guest the on-demand faults of its kernel and video (the case the \
                   flag was proposed for)?"
                .into(),
            memory_mib: m[0],
            guest: format!("mode=frame {seed} beat=0"),
        },
        Workload {
            name: "churn".into(),
            what: "a hot set as large as the read-mostly set, rewritten faster than the link: \
                   pre-copy cannot converge and every further pass costs. Does switching early \
                   win, and does every post-copy policy complete?"
                .into(),
            memory_mib: m[1],
            guest: format!("mode=frame {churn} beat=0"),
        },
        Workload {
            name: "mid".into(),
            what: "video and hot set low in memory, a large cold region above them, the hot set \
                   dirtied below the link: by half of the first pass the working set has crossed, \
                   while the rest of the pass only lets the hot set get dirty again. Is the best \
                   switch point neither at once nor after a full pass?"
                .into(),
            memory_mib: m[2],
            guest: format!("mode=frame {mid} beat=0"),
        },
    ]
}

/// One planned run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub block: usize,
    /// Position in its block (0-based), after shuffling.
    pub order: usize,
    pub workload: usize,
    /// None: the policy does not migrate with VIR_MIGRATE_POSTCOPY, so preempt does not apply
    /// (the run stands in the tables of both levels).
    pub preempt: Option<bool>,
    pub policy: Policy,
}

/// xorshift64* (a fixed, printed seed; no dependency).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The state is the seed through one splitmix64 step (never 0, and every seed bit counts).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)).max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The runs of a benchmark, block by block, each block shuffled.
pub fn plan(
    workloads: usize,
    policies: &[Policy],
    preempt: &[bool],
    reps: usize,
    reps_other: usize,
    seed: u64,
) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for block in 0..reps.max(reps_other) {
        let mut cells = Vec::new();
        for w in 0..workloads {
            for &p in policies {
                let runs_here = if DECIDING.contains(&p) {
                    block < reps
                } else {
                    block < reps_other
                };
                if !runs_here {
                    continue;
                }
                if p.uses_preempt() {
                    for &pre in preempt {
                        cells.push((w, Some(pre), p));
                    }
                } else {
                    cells.push((w, None, p));
                }
            }
        }
        rng.shuffle(&mut cells);
        for (order, (workload, preempt, policy)) in cells.into_iter().enumerate() {
            out.push(Planned {
                block,
                order,
                workload,
                preempt,
                policy,
            });
        }
    }
    out
}

/// The frame medians that decide the blackout from the guest's clock (200 ms at 25 fps;
/// docs/benchmark-method.md).
pub const BLACKOUT_WINDOW: usize = 5;

/// What a run's frames and counters give (docs/benchmark.md, "What is measured").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub frames: usize,
    /// The longest interval between two frames (a stall or not): the ratios use it, as it is
    /// never 0.
    pub longest_interval_ms: f64,
    pub longest_stall_ms: f64,
    pub stall_sum_ms: f64,
    pub frames_missed: u64,
    /// From the source's STOP; None when not observed to recover, or no STOP.
    pub degraded_ms: Option<f64>,
    pub blackout_qmp_ms: Option<f64>,
    pub blackout_guest_ms: Option<f64>,
    /// The physical floor of the blackout: the dirty bitmap over the rate plus the added RTT.
    pub blackout_floor_ms: f64,
    /// Bytes that must cross once over the link's payload rate, s.
    pub floor_s: f64,
    /// QEMU's ram.transferred minus the bytes that must cross once, MiB (never below 0).
    pub sent_twice_mib: Option<f64>,
}

/// Payload per frame on the wire (1448 bytes of TCP payload in a 1514-byte Ethernet frame).
pub const PAYLOAD_SHARE: f64 = 1448.0 / 1514.0;

/// Computes a run's metrics. `frames` must be in host-time order (as [`live::merge_frames`]
/// gives them).
pub fn metrics(w: &Workload, link: LinkSpec, r: &RunResult) -> Metrics {
    let fps = w.fps();
    let host: Vec<f64> = r.frames.iter().map(|f| f.host_ms).collect();
    let mib = 1024.0 * 1024.0;
    let rate = link.rate_mib as f64 * mib * PAYLOAD_SHARE;
    let must = w.must_cross_bytes() as f64;
    let pages = (w.memory_mib as f64 * mib / 4096.0).ceil();
    let mut m = Metrics {
        frames: host.len(),
        blackout_qmp_ms: r.qmp_blackout_ms(),
        blackout_floor_ms: (pages / 8.0) / rate * 1000.0 + link.rtt_ms as f64,
        floor_s: must / rate,
        sent_twice_mib: r
            .ram_transferred
            .map(|t| ((t as f64 - must) / mib).max(0.0)),
        ..Metrics::default()
    };
    m.longest_interval_ms = host.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    if let Ok(s) = frame_stalls(&host, fps) {
        m.longest_stall_ms = s.longest_ms;
        m.stall_sum_ms = s.total_ms;
        m.frames_missed = s.frames_missed;
    }
    if let Some(stop) = r.qmp_stop_ms {
        m.degraded_ms = degraded_period(&host, stop, fps).ok().flatten();
    }
    // The guest clock's view of the blackout: the lasting step nearest QMP's, within the frames
    // around the stop (a step elsewhere would be a different stop).
    let near: Vec<FrameSample> = match r.qmp_stop_ms {
        Some(stop) => r
            .frames
            .iter()
            .copied()
            .filter(|f| f.host_ms >= stop - 2000.0 && f.host_ms <= stop + 4000.0)
            .collect(),
        None => Vec::new(),
    };
    m.blackout_guest_ms = blackout_estimate(&near, BLACKOUT_WINDOW)
        .ok()
        .flatten()
        .map(|b| b.blackout_ms.max(0.0));
    m
}

/// One run with its analysis.
#[derive(Debug, Clone)]
pub struct Sample {
    pub planned: Planned,
    pub result: RunResult,
    pub metrics: Metrics,
    /// Host load average (1 min) when the run started.
    pub load: f64,
}

/// Everything a benchmark measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub config: Config,
    pub samples: Vec<Sample>,
    pub replay: Option<replay::ReplayStats>,
    pub machine: Machine,
    pub elapsed: Duration,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub qemu: String,
    pub kernel: String,
    pub load_before: String,
    pub load_after: String,
    /// Other heavy work seen when the benchmark started (CI lanes), as `pgrep -af` printed it.
    pub busy_before: String,
    pub date: String,
}

fn read_load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn load1() -> f64 {
    read_load()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// nproc, CPU model, QEMU version, kernel, load, other CI work running.
pub fn machine(qemu: &std::path::Path) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let qemu_v = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"));
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        qemu: qemu_v,
        kernel: cmd_out("uname", &["-sr"]),
        load_before: read_load(),
        load_after: String::new(),
        busy_before: cmd_out("pgrep", &["-af", r"\.ci/run|ci/e2e|ci/patches|ci/newest"]),
        date: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}

/// Runs the whole benchmark, printing a progress line per run on stderr, and writes the
/// tables, CSV and plots into `config.out`.
pub fn run(config: Config) -> Result<Outcome, BenchError> {
    std::fs::create_dir_all(&config.out).map_err(|source| BenchError::CreateDir {
        path: config.out.clone(),
        source,
    })?;
    let frames = config.out.join("frames.csv");
    if frames.exists() {
        std::fs::remove_file(&frames).map_err(BenchError::write(&frames))?;
    }
    let mut machine = machine(&config.env.qemu);
    let started = Instant::now();
    let planned = plan(
        config.workloads.len(),
        &config.policies,
        &config.preempt,
        config.reps,
        config.reps_other,
        config.seed,
    );
    eprintln!(
        "{} runs in {} blocks, order shuffled with seed {}",
        planned.len(),
        config.reps.max(config.reps_other),
        config.seed
    );
    let total = planned.len();
    let mut samples: Vec<Sample> = Vec::new();
    for (k, p) in planned.into_iter().enumerate() {
        let w = &config.workloads[p.workload];
        let preempt_s = match p.preempt {
            Some(true) => "preempt on",
            Some(false) => "preempt off",
            None => "preempt n/a",
        };
        let tag = format!(
            "b{}-{}-{}-{}",
            p.block + 1,
            w.name,
            p.policy.key(),
            match p.preempt {
                Some(true) => "on",
                Some(false) => "off",
                None => "na",
            }
        );
        let eta = if k > 0 {
            let per = started.elapsed().as_secs_f64() / k as f64;
            format!(", ~{:.0} s left", per * (total - k) as f64)
        } else {
            String::new()
        };
        eprint!(
            "[{}/{total}] block {}, {}, {preempt_s}, {}{eta} ... ",
            k + 1,
            p.block + 1,
            w.name,
            p.policy.key()
        );
        let load = load1();
        let result = match live::run_one(
            &config.env,
            w,
            config.link,
            p.policy,
            p.preempt.unwrap_or(true),
            &tag,
        ) {
            Ok(r) => r,
            Err(e) => RunResult {
                error: Some(crate::error_chain(&e).join(": ")),
                ..RunResult::default()
            },
        };
        let m = metrics(w, config.link, &result);
        write_frames(&config.out, &tag, &result)?;
        eprintln!(
            "{} in {:.1} s{}, {} frames, longest stall {:.0} ms, blackout {}{}",
            if p.policy == Policy::Control {
                "watched"
            } else if result.completed && result.went_postcopy {
                "completed via post-copy"
            } else if result.completed {
                "completed in pre-copy"
            } else if result.aborted_at_limit {
                "did not converge (aborted)"
            } else {
                "FAILED"
            },
            result.total_s,
            result
                .iterations
                .map(|i| format!(" (pass {i})"))
                .unwrap_or_default(),
            m.frames,
            m.longest_stall_ms,
            m.blackout_qmp_ms
                .map(|b| format!("{b:.0} ms"))
                .unwrap_or_else(|| "-".into()),
            result
                .error
                .as_ref()
                .filter(|_| !result.aborted_at_limit)
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        samples.push(Sample {
            planned: p,
            result,
            metrics: m,
            load,
        });
        report::write_runs_csv(&config, &samples)?;
    }
    let replay = if config.replay_n > 0 {
        eprintln!(
            "replaying every transcript under {} x{} ...",
            config.fixtures.display(),
            config.replay_n
        );
        Some(replay::run(&config.fixtures, config.replay_n)?)
    } else {
        None
    };
    machine.load_after = read_load();
    let out = Outcome {
        config,
        samples,
        replay,
        machine,
        elapsed: started.elapsed(),
    };
    report::write_all(&out)?;
    Ok(out)
}

/// One run's frames (host ms since the migrate call, guest us), with QMP's STOP and RESUME,
/// appended to `frames.csv` in the output directory: the data the timelines are drawn from.
fn write_frames(out: &Path, tag: &str, r: &RunResult) -> Result<(), BenchError> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let p = out.join("frames.csv");
    let fresh = !p.exists();
    let mut s = String::new();
    if fresh {
        s.push_str("run,host_ms,guest_us,stop_ms,resume_ms\n");
    }
    let o = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    for f in &r.frames {
        let _ = writeln!(
            s,
            "{tag},{:.1},{},{},{}",
            f.host_ms,
            f.guest_us,
            o(r.qmp_stop_ms),
            o(r.qmp_resume_ms)
        );
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .and_then(|mut f| f.write_all(s.as_bytes()))
        .map_err(BenchError::write(&p))
}

/// Median, minimum and maximum.
pub fn mmm(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((med, s[0], s[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_holds_every_deciding_cell_once_and_the_others_in_the_first_blocks() {
        let pols = Policy::DEFAULT;
        let p = plan(3, &pols, &[false, true], 6, 2, 42);
        // Deciding: 3 policies x 2 preempt x 3 workloads = 18 per block, 6 blocks.
        // Others: control and pre-copy (preempt n/a: 1 each), half-pass (x2) = 4 per workload,
        // 12 per block, 2 blocks. 108 + 24 = 132.
        assert_eq!(p.len(), 132);
        for b in 0..6 {
            let block: Vec<&Planned> = p.iter().filter(|x| x.block == b).collect();
            assert_eq!(block.len(), if b < 2 { 30 } else { 18 });
            let orders: Vec<usize> = block.iter().map(|x| x.order).collect();
            assert_eq!(orders, (0..block.len()).collect::<Vec<_>>());
        }
        assert!(p
            .iter()
            .all(|x| x.policy.uses_preempt() == x.preempt.is_some()));
        // Shuffled, and the same seed gives the same plan.
        let first: Vec<Policy> = p.iter().take(30).map(|x| x.policy).collect();
        let unshuffled = plan(3, &pols, &[false, true], 6, 2, 42);
        assert_eq!(p, unshuffled);
        let other = plan(3, &pols, &[false, true], 6, 2, 43);
        assert_ne!(p, other);
        assert!(first.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn metrics_of_a_run_with_one_stop() {
        // 25 fps; a 1000 ms stop between frames 10 and 11 (guest clock does not move); QMP saw
        // STOP at 420 and RESUME at 1420.
        let mut frames = Vec::new();
        for i in 0..60u32 {
            let g = u64::from(i) * 40_000;
            let h = f64::from(i) * 40.0 + if i > 10 { 1000.0 } else { 0.0 };
            frames.push(FrameSample {
                host_ms: h,
                guest_us: g,
            });
        }
        let r = RunResult {
            completed: true,
            qmp_stop_ms: Some(420.0),
            qmp_resume_ms: Some(1420.0),
            ram_transferred: Some(100 * 1024 * 1024),
            frames,
            ..RunResult::default()
        };
        let w = Workload {
            name: "t".into(),
            what: String::new(),
            memory_mib: 64,
            guest: "mode=frame ro=32 hot=2 cold=8".into(),
        };
        let link = LinkSpec {
            rate_mib: 32,
            rtt_ms: 0,
        };
        let m = metrics(&w, link, &r);
        assert_eq!(m.frames, 60);
        // The interval 400 -> 1440 is 1040 ms: floor(1040 / 40) - 1 = 25 missed.
        assert_eq!(m.longest_stall_ms, 1040.0);
        assert_eq!(m.longest_interval_ms, 1040.0);
        assert_eq!(m.stall_sum_ms, 1040.0);
        assert_eq!(m.frames_missed, 25);
        assert_eq!(m.blackout_qmp_ms, Some(1000.0));
        assert_eq!(m.blackout_guest_ms, Some(1000.0));
        // From the STOP at 420: the window (1440, 2440] holds 25 frames; windows starting
        // earlier hold fewer (only (420, 1420] before, with none in it): 1440 - 420 = 1020.
        assert_eq!(m.degraded_ms, Some(1020.0));
        // 42.5 MiB must cross (32 + 2 + 8 MiB + 512 KiB); 100 MiB were sent: 57.5 MiB twice.
        assert_eq!(m.sent_twice_mib, Some(57.5));
        let rate = 32.0 * 1024.0 * 1024.0 * PAYLOAD_SHARE;
        assert!((m.floor_s - 42.5 * 1024.0 * 1024.0 / rate).abs() < 1e-9);
        // 64 MiB = 16384 pages: a 2 KiB bitmap.
        assert!((m.blackout_floor_ms - 2048.0 / rate * 1000.0).abs() < 1e-9);
    }
}
