//! `postcopy bench`: the switching policies side by side on real QEMU (docs/benchmark.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::error::CliError;
use crate::QemuArgs;
use postcopy_tools::bench::{self, Config, Env, LinkSpec, Policy, Workload};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// 1 repetition, one small workload, short replay: about 1-2 minutes.
    #[arg(long)]
    quick: bool,
    /// Repetitions of every (link, workload, policy) (default 3; 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// The testbed link's rate (tbf, each direction), MiB/s; a comma list sweeps.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    link_rate: Vec<u64>,
    /// Round trip the testbed's delay stage adds, ms; a comma list sweeps
    /// (crossed with --link-rate).
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    rtt_ms: Vec<u64>,
    /// Pre-copy only is aborted (AbortJob) after this many seconds: "did not converge".
    #[arg(long, default_value_t = 15)]
    precopy_limit: u64,
    /// The guest's heartbeat period, ms.
    #[arg(long, default_value_t = 20)]
    beat: u64,
    /// Which default workloads (a, b); or give your own with --workload.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// A custom workload: NAME:MEMORY_MIB:GUEST CMDLINE (repeatable), e.g.
    /// 'c:256:ro=64 hot=64 cold=64 rate=64 beat=20'.
    #[arg(long)]
    workload: Vec<String>,
    /// Policies, in order: precopy, postcopy-at-once, after-precopy, client-event, client-poll.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Output directory (tables, CSV, SVG, benchmark.md).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Replay every qemu-fixtures transcript this many times (0: skip; default 20, 3 with --quick).
    #[arg(long)]
    replay: Option<usize>,
    /// Where the transcripts are.
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Only the replay table, no QEMU.
    #[arg(long)]
    replay_only: bool,
    #[command(flatten)]
    local: QemuArgs,
    /// Serial console poll period, ms.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Seconds the host keeps watching the guest after the migration returned.
    #[arg(long, default_value_t = 1.5)]
    tail: f64,
    /// Work directory for the QEMUs' sockets and serial files.
    #[arg(long)]
    workdir: Option<PathBuf>,
}

pub fn main(a: BenchArgs) -> Result<ExitCode, CliError> {
    let kernel = if a.replay_only {
        a.local.kernel.clone().unwrap_or_default()
    } else {
        a.local.kernel()?
    };
    let mut workloads: Vec<Workload> = bench::default_workloads(a.quick, a.beat);
    if !a.workloads.is_empty() {
        let all = bench::default_workloads(false, a.beat);
        workloads = a
            .workloads
            .iter()
            .map(|n| {
                all.iter()
                    .find(|w| &w.name == n)
                    .cloned()
                    .ok_or_else(|| CliError::UnknownWorkload(n.clone()))
            })
            .collect::<Result<_, _>>()?;
    }
    for spec in &a.workload {
        let mut it = spec.splitn(3, ':');
        let (Some(name), Some(mem), Some(guest)) = (it.next(), it.next(), it.next()) else {
            return Err(CliError::BadWorkload(spec.clone()));
        };
        let mem = mem
            .parse()
            .map_err(|_| CliError::BadWorkload(spec.clone()))?;
        // Custom workloads replace the defaults unless defaults were named with --workloads.
        if a.workloads.is_empty() && workloads.iter().all(|w| !w.what.starts_with("custom")) {
            workloads.clear();
        }
        workloads.push(Workload {
            name: name.to_string(),
            what: format!("custom: {guest}"),
            memory_mib: mem,
            guest: guest.to_string(),
        });
    }
    let policies = if a.policies.is_empty() {
        Policy::ALL.to_vec()
    } else {
        a.policies
            .iter()
            .map(|p| Policy::parse(p).ok_or_else(|| CliError::UnknownPolicy(p.clone())))
            .collect::<Result<_, _>>()?
    };
    let mut links = Vec::new();
    for &r in &a.link_rate {
        for &l in &a.rtt_ms {
            links.push(LinkSpec {
                rate_mib: r,
                rtt_ms: l,
            });
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config {
        env: Env {
            qemu: a.local.qemu.clone(),
            qemu_root: a.local.qemu_root.clone(),
            kernel,
            workdir: a.workdir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("postcopy-bench-{}", std::process::id()))
            }),
            precopy_limit: Duration::from_secs(a.precopy_limit),
            tail: Duration::from_secs_f64(a.tail),
            poll: Duration::from_millis(a.poll_ms.max(1)),
        },
        workloads: if a.replay_only { Vec::new() } else { workloads },
        links,
        policies,
        reps: a.reps.unwrap_or(if a.quick { 1 } else { 3 }),
        out: a.out.clone(),
        replay_n: a.replay.unwrap_or(if a.quick { 3 } else { 20 }),
        fixtures: a
            .fixtures
            .clone()
            .unwrap_or_else(|| root.join("qemu-fixtures")),
        command: std::iter::once("postcopy".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let workdir = config.env.workdir.clone();
    let out = bench::run(config)?;
    let _ = std::fs::remove_dir_all(&workdir);
    eprintln!(
        "wrote {} (benchmark.md, results.md, runs.csv, summary.csv, bench-*.svg) in {:.1} min",
        out.config.out.display(),
        out.elapsed.as_secs_f64() / 60.0
    );
    Ok(ExitCode::SUCCESS)
}
