//! `postcopy bench`: does one pre-copy pass before the switch really cut guest-visible downtime?
//!
//! Every policy migrates the same guest over the same link (the testbed's: two network
//! namespaces, a veth pair shaped by tbf, the delay stage for added round trip; QEMU's own caps
//! off), alternating policy by policy within each repetition, and the host timestamps the
//! guest's heartbeats on both serial consoles. A gap between consecutive beats (the sequence
//! continues across the migration) is time the guest could not run. See docs/benchmark.md.

pub mod live;
pub mod replay;
pub mod report;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use live::{Beat, Env, LinkSpec, Policy, RunResult, Workload};

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
    pub links: Vec<LinkSpec>,
    pub policies: Vec<Policy>,
    pub reps: usize,
    pub out: PathBuf,
    /// Replay every fixture transcript this many times (0: skip the replay table).
    pub replay_n: usize,
    pub fixtures: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// The default workloads (see docs/benchmark.md). `beat` is the heartbeat period in ms.
pub fn default_workloads(quick: bool, beat: u64) -> Vec<Workload> {
    if quick {
        return vec![Workload {
            name: "a".into(),
            what: "read-mostly 64 MiB, hot 8 MiB rewritten at 8 MiB/s (small guest)".into(),
            memory_mib: 128,
            guest: format!("ro=64 hot=8 cold=16 cverify=16 rate=8 beat={beat}"),
        }];
    }
    vec![
        Workload {
            name: "a".into(),
            what: "read-mostly 128 MiB, hot 16 MiB rewritten at 16 MiB/s: dirty rate below \
                   the link (the case the API was designed for)"
                .into(),
            memory_mib: 256,
            guest: format!("ro=128 hot=16 cold=64 cverify=64 rate=16 beat={beat}"),
        },
        Workload {
            name: "b".into(),
            what: "read-mostly 96 MiB, hot 96 MiB rewritten at 128 MiB/s: dirty rate above \
                   the link (pre-copy cannot converge)"
                .into(),
            memory_mib: 256,
            guest: format!("ro=96 hot=96 cold=32 cverify=32 rate=128 beat={beat}"),
        },
    ]
}

/// The heartbeat period a guest command line asks for (the guest's default: 20 ms).
pub fn beat_of(guest: &str) -> u64 {
    guest
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("beat="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Gaps between consecutive heartbeats, whichever side printed them.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    /// (start of the gap, ms after the migrate call; gap length, ms).
    pub gaps: Vec<(f64, f64)>,
    pub longest_ms: f64,
    /// Sum over gaps longer than [`STALL_FACTOR`] beats of (gap - beat), whole window.
    pub stall_ms: f64,
    /// The same, counting only gaps that start at or after the switch to post-copy.
    pub stall_after_switch_ms: Option<f64>,
    /// Sum over gaps longer than [`LOST_FACTOR`] beats of (gap - beat): also counts the many
    /// short waits a fast heartbeat splits a slow stretch into.
    pub lost_ms: f64,
    pub beats: usize,
    /// The slowest guest verify pass that ended after the migrate call, guest ms.
    pub slowest_pass_ms: Option<f64>,
}

/// A gap counts as lost time when it is longer than this many beat periods.
pub const LOST_FACTOR: f64 = 1.5;

/// A gap counts as a stall when it is longer than this many beat periods.
pub const STALL_FACTOR: f64 = 3.0;

/// Merges both sides' beats by sequence number (first sighting wins) and measures the gaps.
pub fn gaps(r: &RunResult, beat_ms: f64) -> Gaps {
    let mut by_seq: BTreeMap<u64, f64> = BTreeMap::new();
    for b in &r.beats {
        let e = by_seq.entry(b.seq).or_insert(b.host_ms);
        if b.host_ms < *e {
            *e = b.host_ms;
        }
    }
    let times: Vec<f64> = by_seq.values().copied().collect();
    let mut g = Gaps {
        beats: times.len(),
        ..Gaps::default()
    };
    let mut after = 0.0;
    for w in times.windows(2) {
        let (a, b) = (w[0], w[1]);
        let gap = (b - a).max(0.0);
        g.gaps.push((a, gap));
        g.longest_ms = g.longest_ms.max(gap);
        if gap > LOST_FACTOR * beat_ms {
            g.lost_ms += gap - beat_ms;
        }
        if gap > STALL_FACTOR * beat_ms {
            g.stall_ms += gap - beat_ms;
            if r.switch_at_ms.is_some_and(|s| b >= s) {
                after += gap - beat_ms - (r.switch_at_ms.unwrap_or(0.0) - a).max(0.0);
            }
        }
    }
    if r.switch_at_ms.is_some() {
        g.stall_after_switch_ms = Some(after.max(0.0));
    }
    g.slowest_pass_ms = r.passes.iter().map(|p| p.1 as f64).reduce(f64::max);
    g
}

/// One run of the benchmark with its analysis.
#[derive(Debug, Clone)]
pub struct Sample {
    pub link: usize,
    pub workload: usize,
    pub rep: usize,
    pub policy: Policy,
    /// Position within its repetition (policies alternate).
    pub order: usize,
    pub result: RunResult,
    pub gaps: Gaps,
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

/// nproc, CPU model, QEMU version, kernel, load.
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
        date: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}

/// Runs the whole benchmark, printing a progress line per run on stderr, and writes the
/// tables and plots into `config.out`.
pub fn run(config: Config) -> Result<Outcome, BenchError> {
    std::fs::create_dir_all(&config.out).map_err(|source| BenchError::CreateDir {
        path: config.out.clone(),
        source,
    })?;
    let mut machine = machine(&config.env.qemu);
    let started = Instant::now();
    let np = config.policies.len();
    let total = config.links.len() * config.workloads.len() * config.reps * np;
    let mut samples: Vec<Sample> = Vec::new();
    let mut k = 0usize;
    for (li, link) in config.links.iter().enumerate() {
        for (wi, w) in config.workloads.iter().enumerate() {
            let beat = beat_of(&w.guest) as f64;
            for rep in 0..config.reps {
                for j in 0..np {
                    // Alternate: each repetition starts one policy further.
                    let order = j;
                    let policy = config.policies[(j + rep) % np];
                    k += 1;
                    let tag = format!("l{li}-{}-r{rep}-{}", w.name, policy.key());
                    let eta = if k > 1 {
                        let per = started.elapsed().as_secs_f64() / (k - 1) as f64;
                        format!(", ~{:.0} s left", per * (total + 1 - k) as f64)
                    } else {
                        String::new()
                    };
                    eprint!(
                        "[{k}/{total}] link {} MiB/s, RTT +{} ms, workload {}, rep {}/{}, {}{eta} ... ",
                        link.rate_mib,
                        link.rtt_ms,
                        w.name,
                        rep + 1,
                        config.reps,
                        policy.key()
                    );
                    let load = load1();
                    let result = match live::run_one(&config.env, w, *link, policy, &tag) {
                        Ok(r) => r,
                        Err(e) => RunResult {
                            error: Some(crate::error_chain(&e).join(": ")),
                            ..RunResult::default()
                        },
                    };
                    let g = gaps(&result, beat);
                    eprintln!(
                        "{} in {:.1} s, longest gap {:.0} ms, stall {:.0} ms{}",
                        if result.completed {
                            "completed"
                        } else if result.aborted_at_limit {
                            "did not converge (aborted)"
                        } else {
                            "FAILED"
                        },
                        result.total_s,
                        g.longest_ms,
                        g.stall_ms,
                        result
                            .error
                            .as_ref()
                            .filter(|_| !result.aborted_at_limit)
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                    samples.push(Sample {
                        link: li,
                        workload: wi,
                        rep,
                        policy,
                        order,
                        result,
                        gaps: g,
                        load,
                    });
                    report::write_runs_csv(&config, &samples)?;
                }
            }
        }
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

/// Nearest-rank percentile (p in 0..=100).
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s.get(rank.min(s.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_merge_sides_and_sum_stalls() {
        let mk = |seq, host_ms, on_dst| Beat {
            seq,
            host_ms,
            on_dst,
        };
        let r = RunResult {
            beats: vec![
                mk(0, 0.0, false),
                mk(1, 20.0, false),
                mk(2, 40.0, false),
                mk(3, 540.0, true),
                mk(4, 560.0, true),
                mk(5, 760.0, true),
            ],
            switch_at_ms: Some(45.0),
            ..RunResult::default()
        };
        let g = gaps(&r, 20.0);
        assert_eq!(g.beats, 6);
        assert!((g.longest_ms - 500.0).abs() < 1e-9);
        assert!((g.stall_ms - (480.0 + 180.0)).abs() < 1e-9);
        assert!((g.stall_after_switch_ms.unwrap_or(0.0) - (475.0 + 180.0)).abs() < 1e-9);
        assert_eq!(mmm(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), Some(4.0));
    }
}
