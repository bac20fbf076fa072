//! `postcopy`: migrate a QEMU guest through the reference driver, or replay a recorded transcript.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod bench;
mod error;
mod human;
mod import;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use error::{ArgError, CliError};
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{
    ApiCall, DomainEvent, MigrateRequest, RecoveryPolicy, Side, SwitchPolicy, SwitchedBy,
};
use postcopy_core::transcript::ReplayTransport;
use postcopy_shim::api::{self, Domain, MigrateOptions, RecordSpec};
use postcopy_tools::qemu::default_kernel;
use postcopy_tools::scenario::{
    self, EventCallback, Fault, Link, Plan, Recovery, ScenarioResult, Trigger,
};

#[derive(Parser, Debug)]
#[command(
    name = "postcopy",
    version,
    about = "Post-copy migration through libvirt's QEMU driver logic, over QMP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Migrate a guest: two local QEMUs started here (default), or two given QMP sockets.
    Migrate(Box<MigrateArgs>),
    /// Replay a transcript against the driver; exit 0 when every command matches.
    Replay {
        file: PathBuf,
        /// Print the readable trace (the snapshot form).
        #[arg(long)]
        trace: bool,
    },
    /// Benchmark the switching policies on real QEMU (docs/benchmark.md).
    Bench(Box<bench::BenchArgs>),
    /// Turn a source and a destination libvirt daemon log into a transcript of one migration.
    ImportLibvirtLog(Box<import::ImportArgs>),
    /// Build the testbed (docs/testbed.md) and hold it while standard input stays open, for
    /// scripts that run their own processes in its hosts (`nsenter --net=PATH`; ci/e2e's libvirt
    /// daemons). Prints one line, `testbed src_netns=PATH dst_netns=PATH src_addr=IP
    /// dst_addr=IP rate_mib_s=R rtt_ms=MS`; at the end of input it tears the link down (the
    /// namespaces go once the last process in them ended).
    Testbed {
        /// Each direction's rate in MiB/s (tbf).
        #[arg(long, default_value_t = 32.0, value_parser = parse_rate)]
        link_rate: f64,
        /// Round trip added by the delay stage, ms (default: none).
        #[arg(long)]
        rtt_ms: Option<u64>,
    },
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// VIR_MIGRATE_POSTCOPY.
    #[arg(long)]
    postcopy: bool,
    /// VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the driver switches once the first pass is done.
    #[arg(long)]
    postcopy_after_precopy: bool,
    /// Our switch policy, not libvirt's (the C ABI's LPC_MIGRATE_PARAM_SWITCH_POLICY): the driver
    /// switches to post-copy at half of the first pass (half-pass) or when staying is predicted
    /// to cost the guest more stall than switching (adaptive). Needs --postcopy.
    #[arg(long, value_parser = ["adaptive", "half-pass"])]
    switch_policy: Option<String>,
    /// The round trip of one page request the adaptive policy assumes, in microseconds
    /// (LPC_MIGRATE_PARAM_SWITCH_POLICY_RTT; default 0).
    #[arg(long, requires = "switch_policy")]
    switch_rtt_us: Option<u64>,
    /// VIR_MIGRATE_POSTCOPY_RESUME (recovery; see the faults issue).
    #[arg(long)]
    postcopy_resume: bool,
    /// Raw extra virDomainMigrateFlags bits, OR-ed in (for testing refusals).
    #[arg(long, value_parser = parse_u32)]
    extra_flags: Option<u32>,
    /// Leave out VIR_MIGRATE_LIVE (it is on by default, as `virsh migrate --live`).
    #[arg(long)]
    no_live: bool,
    /// VIR_MIGRATE_PARAM_BANDWIDTH in MiB/s (QEMU's own cap). Default: none on the testbed (the
    /// link is the limit), 32 with --loopback.
    #[arg(long)]
    bandwidth: Option<u64>,
    /// VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY in MiB/s.
    #[arg(long)]
    postcopy_bandwidth: Option<u64>,
    /// Call virDomainMigrateStartPostCopy from another thread this many seconds after the start.
    #[arg(long)]
    start_postcopy_after: Option<f64>,
    /// Call virDomainMigrateStartPostCopy from an event callback's thread on this iteration
    /// (virsh's client-side emulation of --postcopy-after-precopy uses 2).
    #[arg(long)]
    switch_at_iteration: Option<u64>,
    /// Also call StartPostCopy before the migration starts (it is refused).
    #[arg(long)]
    api_before: bool,
    /// Also call StartPostCopy after the migration ended (it is refused).
    #[arg(long)]
    api_after: bool,
    /// Print one JSON object at the end, with libvirt's typed-parameter names.
    #[arg(long)]
    json: bool,
    /// Record the transcript of both monitors into this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// The scenario name written into the transcript header.
    #[arg(long, default_value = "adhoc")]
    scenario: String,
    #[arg(long)]
    description: Option<String>,
    /// Attach to an existing source QMP socket (unix path or tcp:HOST:PORT) instead of starting QEMU.
    #[arg(long, requires_all = ["dst_qmp", "uri"])]
    src_qmp: Option<String>,
    #[arg(long)]
    dst_qmp: Option<String>,
    /// Migration URI in QEMU's syntax (tcp:HOST:PORT or unix:PATH).
    #[arg(long)]
    uri: Option<String>,
    #[command(flatten)]
    local: QemuArgs,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// The guest's command line (see qemu-fixtures/guest/README.md).
    #[arg(long, default_value = "ro=64 hot=16 cold=64 rate=40 beat=20")]
    guest: String,
    /// Show progress on stderr (default: when stderr is a terminal). Polls job stats every second.
    #[arg(long)]
    progress: bool,
    /// Seconds to wait for the guest on the destination to verify its memory after the migration.
    #[arg(long, default_value_t = 20)]
    verify_timeout: u64,
    /// Each migrate call's overall deadline in seconds: before post-copy the migration is then
    /// cancelled, once the guest runs on the destination post-copy is paused and left
    /// recoverable (never killed). Default 600.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline: Option<u64>,
    /// Working directory for sockets and serial logs (default: a fresh one under /tmp).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Both QEMUs on this machine's loopback instead of the testbed (no link model: QEMU's own
    /// cap, --bandwidth, is the only limit; no link faults).
    #[arg(long, conflicts_with_all = ["link_rate", "rtt_ms", "cut_at", "partition_at"])]
    loopback: bool,
    /// The testbed link's rate in MiB/s, each direction (tbf; docs/testbed.md).
    #[arg(long, default_value_t = 32.0, value_parser = parse_rate)]
    link_rate: f64,
    /// Round trip added by the testbed's delay stage, ms (default: none; a LAN's).
    #[arg(long)]
    rtt_ms: Option<u64>,
    /// A hard cut of the migration connections (`ss -K` in both hosts) at: postcopy (source
    /// postcopy-active), dst-running, iteration:N, or ms:N after the start.
    #[arg(long, value_parser = parse_trigger)]
    cut_at: Option<Trigger>,
    /// A silent partition (the link down, no RST) at a trigger, for --down-ms.
    #[arg(long, value_parser = parse_trigger, requires = "down_ms")]
    partition_at: Option<Trigger>,
    /// How long the link stays down after --cut-at (default: until a recovery) or
    /// --partition-at (required), ms.
    #[arg(long)]
    down_ms: Option<u64>,
    /// Kill a QEMU (src or dst) at a trigger, e.g. `--kill dst@postcopy`.
    #[arg(long, value_parser = parse_kill)]
    kill: Option<(Side, Trigger)>,
    /// Call virDomainAbortJobFlags(flags) at a trigger, e.g. `--abort 1@postcopy` (1 =
    /// VIR_DOMAIN_ABORT_JOB_POSTCOPY) or `--abort 0@ms:800`.
    #[arg(long, value_parser = parse_abort)]
    abort: Option<(u32, Trigger)>,
    /// After a post-copy failure, recover with VIR_MIGRATE_POSTCOPY_RESUME after this many ms.
    #[arg(long)]
    recover_after: Option<u64>,
    /// After a post-copy failure, retry VIR_MIGRATE_POSTCOPY_RESUME with backoff until it
    /// succeeds or this many seconds passed (the opt-in automatic recovery policy).
    #[arg(long, num_args = 0..=1, default_missing_value = "60")]
    auto_recover: Option<u64>,
}

/// The local QEMUs and their guest (`postcopy migrate`, `postcopy bench`).
#[derive(Args, Debug)]
pub(crate) struct QemuArgs {
    /// QEMU binary for local QEMUs.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub(crate) qemu: PathBuf,
    /// A QEMU extracted from .deb files (root of the tree): sets QEMU_MODULE_DIR and -L.
    #[arg(long)]
    pub(crate) qemu_root: Option<PathBuf>,
    /// The guest kernel (default: $POSTCOPY_GUEST or target/guest/postcopy-guest.elf).
    #[arg(long)]
    pub(crate) kernel: Option<PathBuf>,
}

impl QemuArgs {
    /// The guest kernel to boot; it must exist.
    pub(crate) fn kernel(&self) -> Result<PathBuf, CliError> {
        let kernel = self.kernel.clone().unwrap_or_else(default_kernel);
        if kernel.exists() {
            Ok(kernel)
        } else {
            Err(CliError::NoKernel(kernel))
        }
    }
}

fn parse_trigger(s: &str) -> Result<Trigger, ArgError> {
    let number = |n: &str| n.parse().map_err(|_| ArgError::Number(n.to_string()));
    match s {
        "postcopy" => Ok(Trigger::Postcopy),
        "dst-running" => Ok(Trigger::DestinationRunning),
        _ => {
            if let Some(n) = s.strip_prefix("iteration:") {
                number(n).map(Trigger::Iteration)
            } else if let Some(n) = s.strip_prefix("ms:") {
                number(n).map(Trigger::AfterMs)
            } else {
                Err(ArgError::Trigger(s.to_string()))
            }
        }
    }
}

fn parse_kill(s: &str) -> Result<(Side, Trigger), ArgError> {
    let (who, at) = s
        .split_once('@')
        .ok_or(ArgError::Shape("SIDE@TRIGGER, e.g. dst@postcopy"))?;
    let side = match who {
        "src" => Side::Src,
        "dst" => Side::Dst,
        _ => return Err(ArgError::Side(who.to_string())),
    };
    Ok((side, parse_trigger(at)?))
}

fn parse_abort(s: &str) -> Result<(u32, Trigger), ArgError> {
    let (flags, at) = s
        .split_once('@')
        .ok_or(ArgError::Shape("FLAGS@TRIGGER, e.g. 1@postcopy"))?;
    Ok((parse_u32(flags)?, parse_trigger(at)?))
}

fn parse_rate(s: &str) -> Result<f64, ArgError> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(ArgError::Rate(s.to_string())),
    }
}

fn parse_u32(s: &str) -> Result<u32, ArgError> {
    let r = if let Some(h) = s.strip_prefix("0x") {
        u32::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| ArgError::Number(s.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (command, result) = match cli.cmd {
        Cmd::Replay { file, trace } => ("replay", replay(&file, trace)),
        Cmd::Bench(a) => ("bench", bench::main(*a)),
        Cmd::ImportLibvirtLog(a) => ("import-libvirt-log", import::main(*a)),
        Cmd::Migrate(a) => ("migrate", migrate(*a)),
        Cmd::Testbed { link_rate, rtt_ms } => ("testbed", hold_testbed(link_rate, rtt_ms)),
    };
    result.unwrap_or_else(|e| {
        error::print(command, &e);
        ExitCode::from(2)
    })
}

fn hold_testbed(rate_mib_s: f64, rtt_ms: Option<u64>) -> Result<ExitCode, CliError> {
    use postcopy_tools::testbed::{Host, LinkConfig, Testbed};
    use std::io::{Read, Write};
    let config = match rtt_ms {
        Some(ms) => LinkConfig::with_rtt(rate_mib_s, Duration::from_millis(ms)),
        None => LinkConfig::new(rate_mib_s),
    };
    let tb = Testbed::new(config).map_err(CliError::Testbed)?;
    let probe = tb.probe();
    println!(
        "testbed src_netns={} dst_netns={} src_addr={} dst_addr={} rate_mib_s={rate_mib_s} rtt_ms={}",
        probe.netns_path(Host::Source).display(),
        probe.netns_path(Host::Destination).display(),
        Host::Source.addr(),
        Host::Destination.addr(),
        rtt_ms.unwrap_or(0)
    );
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::Write("standard output".into(), e))?;
    // Held until the caller closes its end (or dies): whatever comes before is ignored.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    tb.teardown().map_err(CliError::Testbed)?;
    println!("testbed down");
    Ok(ExitCode::SUCCESS)
}

fn replay(file: &Path, trace: bool) -> Result<ExitCode, CliError> {
    let t = postcopy_shim::load_transcript(file)?;
    let mut rt = ReplayTransport::new(t);
    let (reports, err) = rt.replay_all();
    if trace {
        for l in &rt.trace {
            println!("{l}");
        }
    }
    if let Some(e) = err {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    let outcomes: Vec<String> = reports
        .iter()
        .map(|rep| match &rep.result {
            Ok(o) => format!(
                "completed{}",
                if o.postcopy {
                    " (post-copy)"
                } else {
                    " (pre-copy)"
                }
            ),
            Err(e) => format!("failed: {}: {}", e.code_name(), e.message()),
        })
        .collect();
    println!(
        "{}: replay matches; migration {}",
        file.display(),
        outcomes.join("; then ")
    );
    Ok(ExitCode::SUCCESS)
}

fn qemu_version(bin: &Path, env: &[(String, String)]) -> String {
    let mut c = std::process::Command::new(bin);
    c.arg("--version");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("QEMU emulator version ").to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn migrate(a: MigrateArgs) -> Result<ExitCode, CliError> {
    let mut flags = if a.no_live { 0 } else { VIR_MIGRATE_LIVE };
    if a.postcopy {
        flags |= VIR_MIGRATE_POSTCOPY;
    }
    if a.postcopy_after_precopy {
        flags |= VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
    }
    if a.postcopy_resume {
        flags |= VIR_MIGRATE_POSTCOPY_RESUME;
    }
    flags |= a.extra_flags.unwrap_or(0);
    let progress = a.progress || (!a.json && std::io::stderr().is_terminal());
    let switch_policy = a
        .switch_policy
        .as_deref()
        .map(|name| SwitchPolicy::parse(name, a.switch_rtt_us))
        .transpose()
        .map_err(CliError::Policy)?;
    if let (Some(s), Some(d), Some(u)) = (&a.src_qmp, &a.dst_qmp, &a.uri) {
        return attach(&a, s, d, u, flags, switch_policy);
    }

    let (env, _) = postcopy_tools::qemu::extracted_qemu(a.local.qemu_root.as_deref());
    let version = qemu_version(&a.local.qemu, &env);
    let (guest, tlbflush) = postcopy_tools::qemu::guest_cmdline_for(&version, &a.guest);
    if tlbflush {
        eprintln!(
            "QEMU {version}: the guest flushes its TLB (tlbflush=1), or TCG loses its writes in \
             post-copy (qemu-fixtures/README.md); give --guest with tlbflush=0 to see that"
        );
    }
    let kernel = a.local.kernel()?;
    let mut faults = Vec::new();
    if let Some(secs) = a.start_postcopy_after {
        faults.push(Fault::Call {
            call: ApiCall::StartPostCopy { flags: 0 },
            at: Trigger::AfterMs((secs * 1000.0) as u64),
        });
    }
    if let Some(n) = a.switch_at_iteration {
        faults.push(Fault::Call {
            call: ApiCall::StartPostCopy { flags: 0 },
            at: Trigger::Iteration(n),
        });
    }
    if let Some(at) = a.cut_at {
        faults.push(Fault::Cut {
            at,
            down_ms: a.down_ms,
        });
    }
    if let (Some(at), Some(down_ms)) = (a.partition_at, a.down_ms) {
        faults.push(Fault::Partition { at, down_ms });
    }
    if let Some((side, at)) = a.kill {
        faults.push(Fault::Kill { side, at });
    }
    if let Some((f, at)) = a.abort {
        faults.push(Fault::Call {
            call: ApiCall::AbortJob { flags: f },
            at,
        });
    }
    let link = (!a.loopback).then(|| Link {
        rate_mib_s: a.link_rate,
        rtt_ms: a.rtt_ms.unwrap_or(0),
    });
    let recovery = match (a.recover_after, a.auto_recover) {
        (_, Some(deadline)) => Recovery::Auto(RecoveryPolicy {
            deadline: Duration::from_secs(deadline),
            ..RecoveryPolicy::default()
        }),
        (Some(ms), None) => Recovery::Manual { after_ms: ms },
        (None, None) => Recovery::None,
    };
    let workdir = a
        .workdir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("postcopy-{}", std::process::id())));
    let plan = Plan {
        qemu: a.local.qemu.clone(),
        qemu_root: a.local.qemu_root.clone(),
        kernel,
        memory_mib: a.memory,
        guest: guest.clone(),
        workdir,
        flags,
        // On the testbed the link is the limit: QEMU's caps are not a link model
        // (docs/benchmark-method.md, "Measuring migrations honestly"), so they are off unless asked. On loopback QEMU's cap is all there is.
        bandwidth_mib: a.bandwidth.or(a.loopback.then_some(32)),
        postcopy_bandwidth_mib: a.postcopy_bandwidth,
        switch_policy,
        link,
        faults,
        recovery,
        record: a.record.as_ref().map(|p| RecordSpec {
            path: p.clone(),
            scenario: a.scenario.clone(),
            description: a.description.clone(),
            qemu_src: version.clone(),
            qemu_dst: version.clone(),
            append: false,
            epoch: None,
        }),
        api_before: a.api_before,
        api_after: a.api_after,
        verify_timeout: Duration::from_secs(a.verify_timeout),
        deadline: a.deadline.map(Duration::from_secs),
        on_event: progress.then(|| {
            EventCallback(Arc::new(|side: Side, ev: &DomainEvent| {
                eprintln!("  {} {}", side.tag(), ev.describe());
            }))
        }),
    };
    if progress {
        eprintln!("waiting for the guest to fill its memory ({guest})");
    }
    let res = scenario::run(plan)?;
    let out = scenario_json(&res);
    if a.json {
        println!("{out}");
    } else {
        human::print(&out);
    }
    for (qmp, pid) in &res.left_running {
        if res.testbed.is_some() {
            eprintln!(
                "QEMU pid {pid:?} (QMP socket {qmp}) was left for a recovery, but it runs in a \
                 testbed host, which ends with this command: it is stopped now (use --loopback \
                 for QEMUs that outlive the command)"
            );
        } else {
            eprintln!("left running for recovery: QEMU pid {pid:?}, QMP socket {qmp}");
        }
    }
    let ok = res.last().is_some_and(|r| r.result.is_ok());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Migrates between two given monitors (nothing started or stopped here).
fn attach(
    a: &MigrateArgs,
    src: &str,
    dst: &str,
    uri: &str,
    flags: u32,
    switch_policy: Option<SwitchPolicy>,
) -> Result<ExitCode, CliError> {
    let req = MigrateRequest {
        flags,
        uri: uri.to_string(),
        bandwidth_mib: a.bandwidth,
        postcopy_bandwidth_mib: a.postcopy_bandwidth,
        connect_uri: None,
        switch_policy,
    };
    let spec = a.record.as_ref().map(|p| RecordSpec {
        path: p.clone(),
        scenario: a.scenario.clone(),
        description: a.description.clone(),
        qemu_src: "attached".into(),
        qemu_dst: "attached".into(),
        append: false,
        epoch: None,
    });
    let flags = req.flags;
    let opts = MigrateOptions {
        record: spec,
        deadline: a.deadline.map(Duration::from_secs),
        ..MigrateOptions::default()
    };
    let (src, dst) = (Domain::open_qmp(src), Domain::open_qmp(dst));
    let run = api::migrate_with(&src, &dst, req, opts).map_err(CliError::Migrate)?;
    let mut out = Map::new();
    report_json(&mut out, &run.report, flags);
    let out = Value::Object(out);
    if a.json {
        println!("{out}");
    } else {
        human::print(&out);
    }
    Ok(if run.report.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_json(out: &mut Map<String, Value>, rep: &postcopy_core::engine::Report, flags: u32) {
    out.insert("flags".into(), json!(flags));
    out.insert("flag_names".into(), json!(flag_names(flags)));
    match &rep.result {
        Ok(o) => {
            out.insert("result".into(), json!("completed"));
            out.insert("postcopy".into(), json!(o.postcopy));
            out.insert(
                "switch_requested".into(),
                match o.switch {
                    Some(SwitchedBy::AfterPrecopy { pass }) => {
                        json!({"by": "driver (VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY)", "pass": pass})
                    }
                    Some(SwitchedBy::Api { pass }) => {
                        json!({"by": "virDomainMigrateStartPostCopy", "pass": pass})
                    }
                    Some(SwitchedBy::Policy {
                        policy,
                        pass,
                        reason,
                    }) => {
                        json!({"by": format!("driver (our switch policy {})", policy.name()),
                               "pass": pass, "reason": reason.describe()})
                    }
                    None => Value::Null,
                },
            );
            out.insert("last_pass".into(), json!(o.last_pass));
            let mut st = Map::new();
            for (k, v) in &o.stats.params {
                st.insert((*k).to_string(), json!(v));
            }
            out.insert("job_type".into(), json!(o.stats.job_type));
            out.insert("stats".into(), Value::Object(st));
        }
        Err(e) => {
            out.insert("result".into(), json!("failed"));
            out.insert(
                "error".into(),
                json!({"code": e.code, "code_name": e.code_name(), "domain": e.domain(), "message": e.message()}),
            );
        }
    }
    out.insert(
        "source".into(),
        json!({"state": rep.src_state.to_string(), "state_code": rep.src_state.state, "reason_code": rep.src_state.reason}),
    );
    out.insert(
        "destination".into(),
        json!({"state": rep.dst_state.to_string(), "state_code": rep.dst_state.state, "reason_code": rep.dst_state.reason}),
    );
}

fn scenario_json(res: &ScenarioResult) -> Value {
    let mut out = Map::new();
    let flags_of = |i: usize| res.requests.get(i).map_or(0, |r| r.flags);
    if let Some(last) = res.last() {
        report_json(&mut out, last, flags_of(res.runs.len() - 1));
    }
    if res.runs.len() > 1 {
        let calls: Vec<Value> = res
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut m = Map::new();
                report_json(&mut m, r, flags_of(i));
                m.remove("stats");
                Value::Object(m)
            })
            .collect();
        out.insert("migrate_calls".into(), Value::Array(calls));
    }
    if let Some(l) = res.stats.first().and_then(|s| s.switch_latency) {
        out.insert("switch_latency_us".into(), json!(l.as_micros() as u64));
    }
    out.insert("wall_time_ms".into(), json!(res.elapsed.as_millis() as u64));
    if let Some(t) = res.recovery_time {
        out.insert("recovery_time_ms".into(), json!(t.as_millis() as u64));
    }
    if !res.api_log.is_empty() {
        out.insert(
            "api_calls".into(),
            Value::Array(
                res.api_log
                    .iter()
                    .map(|(c, r)| json!({"call": c, "result": r}))
                    .collect(),
            ),
        );
    }
    if !res.notes.is_empty() {
        out.insert("faults".into(), json!(res.notes));
    }
    if let Some(l) = &res.link {
        out.insert("link".into(), json!(l.report));
    }
    if !res.partitions.is_empty() {
        out.insert(
            "partitions".into(),
            Value::Array(
                res.partitions
                    .iter()
                    .map(|p| {
                        json!({"down_at_ms": p.down_at_ms, "lasted_ms": p.lasted_ms,
                               "src_failed_after_ms": p.src_failed_after_ms,
                               "dst_failed_after_ms": p.dst_failed_after_ms})
                    })
                    .collect(),
            ),
        );
    }
    if let Some(s) = &res.stall {
        out.insert(
            "stall".into(),
            json!({"no_progress_since_ms": s.since_ms, "detected_ms": s.detected_ms,
                   "source_pause": s.src_pause, "destination_pause": s.dst_pause}),
        );
    }
    if let Some(g) = &res.guest {
        out.insert(
            "guest".into(),
            json!({"destination_checks_ok": g.checks_ok, "destination_check_failures": g.check_failures,
                   "destination_heartbeats": g.heartbeats, "failures": g.failures}),
        );
    }
    out.insert(
        "qemu_alive".into(),
        json!({"src": res.src_alive, "dst": res.dst_alive}),
    );
    if !res.warnings.is_empty() {
        out.insert("warnings".into(), json!(res.warnings));
    }
    Value::Object(out)
}
