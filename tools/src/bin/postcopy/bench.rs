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
    /// One block of every cell with small guests: about 2 minutes (the CI smoke test).
    #[arg(long)]
    quick: bool,
    /// Blocks: every cell that decides a target (at once, AFTER_PRECOPY, adaptive) runs once per
    /// block (default 6; 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// The other cells (control, pre-copy only, half-pass, client-side) run in this many blocks
    /// (default 2; 1 with --quick).
    #[arg(long)]
    reps_other: Option<usize>,
    /// Seed of the order within each block (printed in the report).
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// postcopy-preempt levels: off (the destination does not offer it, as in 2014), on
    /// (libvirt 11.3's default).
    #[arg(long, value_delimiter = ',', default_value = "off,on")]
    preempt: Vec<String>,
    /// The testbed link's rate (tbf, each direction), MiB/s.
    #[arg(long, default_value_t = 64)]
    link_rate: u64,
    /// Round trip the testbed's delay stage adds, ms (0: none).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// Pre-copy only is aborted (AbortJob) after this many seconds: "did not converge"
    /// (default 6; 3 with --quick).
    #[arg(long)]
    precopy_limit: Option<f64>,
    /// Which default workloads (seed, churn, mid); or give your own with --workload.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// A custom workload: NAME:MEMORY_MIB:GUEST CMDLINE (repeatable), e.g.
    /// 'c:128:mode=frame ro=64 hot=8 cold=16 rate=4 beat=0'.
    #[arg(long)]
    workload: Vec<String>,
    /// Policies, in order: control, precopy, postcopy-at-once, after-precopy, half-pass,
    /// adaptive, client-event, client-poll (default: the first six).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Output directory (benchmark.md, CSV, SVG).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Also write the report page here, its links pointing into --out (e.g. --out docs/bench
    /// --doc docs/benchmark.md).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Replay every qemu-fixtures transcript this many times (0: skip; default 20, 1 with --quick).
    #[arg(long)]
    replay: Option<usize>,
    /// Where the transcripts are.
    #[arg(long)]
    fixtures: Option<PathBuf>,
    #[command(flatten)]
    local: QemuArgs,
    /// Serial console poll period, ms.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Seconds the host keeps watching the guest after the migration returned (default 1.5; 1
    /// with --quick).
    #[arg(long)]
    tail: Option<f64>,
    /// Seconds a control run watches the guest (default 3; 1.5 with --quick).
    #[arg(long)]
    control: Option<f64>,
    /// Work directory for the QEMUs' sockets and serial files.
    #[arg(long)]
    workdir: Option<PathBuf>,
}

pub fn main(a: BenchArgs) -> Result<ExitCode, CliError> {
    let kernel = a.local.kernel()?;
    let mut workloads: Vec<Workload> = bench::default_workloads(a.quick);
    if !a.workloads.is_empty() {
        let all = bench::default_workloads(a.quick);
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
        Policy::DEFAULT.to_vec()
    } else {
        a.policies
            .iter()
            .map(|p| Policy::parse(p).ok_or_else(|| CliError::UnknownPolicy(p.clone())))
            .collect::<Result<_, _>>()?
    };
    let preempt = a
        .preempt
        .iter()
        .map(|p| match p.as_str() {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(CliError::BadPreempt(other.to_string())),
        })
        .collect::<Result<Vec<bool>, _>>()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let q = a.quick;
    let config = Config {
        env: Env {
            qemu: a.local.qemu.clone(),
            qemu_root: a.local.qemu_root.clone(),
            kernel,
            workdir: a.workdir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("postcopy-bench-{}", std::process::id()))
            }),
            precopy_limit: Duration::from_secs_f64(a.precopy_limit.unwrap_or(if q {
                3.0
            } else {
                6.0
            })),
            control: Duration::from_secs_f64(a.control.unwrap_or(if q { 1.5 } else { 3.0 })),
            tail: Duration::from_secs_f64(a.tail.unwrap_or(if q { 1.0 } else { 1.5 })),
            poll: Duration::from_millis(a.poll_ms.max(1)),
            deadline: Duration::from_secs(120),
        },
        workloads,
        link: LinkSpec {
            rate_mib: a.link_rate,
            rtt_ms: a.rtt_ms,
        },
        policies,
        preempt,
        reps: a.reps.unwrap_or(if q { 1 } else { 6 }),
        reps_other: a.reps_other.unwrap_or(if q { 1 } else { 2 }),
        seed: a.seed,
        out: a.out.clone(),
        doc: a.doc.clone(),
        replay_n: a.replay.unwrap_or(if q { 1 } else { 20 }),
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
        "wrote {} (benchmark.md, runs.csv, summary.csv, ratios.csv, bench-*.svg) in {:.1} min",
        out.config.out.display(),
        out.elapsed.as_secs_f64() / 60.0
    );
    Ok(ExitCode::SUCCESS)
}
