//! `postcopy`: migrate a QEMU guest through the reference driver, or replay a recorded transcript.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use postcopy_shim::driver::vocab::*;
use postcopy_shim::driver::{ApiCall, ApiValue, DomainEvent, MigrateRequest, Side, SwitchedBy};
use postcopy_shim::engine::{self, api_result_text};
use postcopy_shim::io::qemu::{default_kernel, QemuConfig, QemuProcess, SerialFollower};
use postcopy_shim::io::run::{self, Hooks, RecordSpec};
use postcopy_shim::transcript::{ReplayTransport, Transcript};

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
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// VIR_MIGRATE_POSTCOPY.
    #[arg(long)]
    postcopy: bool,
    /// VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the driver switches once the first pass is done.
    #[arg(long)]
    postcopy_after_precopy: bool,
    /// VIR_MIGRATE_POSTCOPY_RESUME (recovery; see the faults issue).
    #[arg(long)]
    postcopy_resume: bool,
    /// Raw extra virDomainMigrateFlags bits, OR-ed in (for testing refusals).
    #[arg(long, value_parser = parse_u32)]
    extra_flags: Option<u32>,
    /// Leave out VIR_MIGRATE_LIVE (it is on by default, as `virsh migrate --live`).
    #[arg(long)]
    no_live: bool,
    /// VIR_MIGRATE_PARAM_BANDWIDTH in MiB/s. Default with local QEMUs: 32.
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
    /// QEMU binary for local QEMUs.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// A QEMU extracted from .deb files (root of the tree): sets QEMU_MODULE_DIR and -L.
    #[arg(long)]
    qemu_root: Option<PathBuf>,
    /// The guest kernel (default: $POSTCOPY_GUEST or target/guest/postcopy-guest.elf).
    #[arg(long)]
    kernel: Option<PathBuf>,
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
    /// Working directory for sockets and serial logs (default: a fresh one under /tmp).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = if let Some(h) = s.strip_prefix("0x") {
        u32::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|e| format!("not a number: {s} ({e})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay { file, trace } => replay(&file, trace),
        Cmd::Migrate(a) => match migrate(*a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("postcopy: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn replay(file: &Path, trace: bool) -> ExitCode {
    let t = match Transcript::load(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("postcopy replay: {e}");
            return ExitCode::from(2);
        }
    };
    let req = t.request();
    let mut rt = ReplayTransport::new(t);
    let r = engine::run(req, &mut rt);
    if trace {
        for l in &rt.trace {
            println!("{l}");
        }
    }
    match r {
        Ok(rep) => {
            let res = match &rep.result {
                Ok(o) => format!(
                    "completed{}",
                    if o.postcopy {
                        " (post-copy)"
                    } else {
                        " (pre-copy)"
                    }
                ),
                Err(e) => format!("failed: {}: {}", e.code_name(), e.message()),
            };
            println!("{}: replay matches; migration {res}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
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

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn migrate(a: MigrateArgs) -> Result<ExitCode, String> {
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

    // Local QEMUs, or attach.
    let mut procs: Vec<QemuProcess> = Vec::new();
    let (src_qmp, dst_qmp, uri, qemu_src, qemu_dst, bandwidth);
    if let (Some(s), Some(d), Some(u)) = (&a.src_qmp, &a.dst_qmp, &a.uri) {
        src_qmp = s.clone();
        dst_qmp = d.clone();
        uri = u.clone();
        qemu_src = "attached".to_string();
        qemu_dst = "attached".to_string();
        bandwidth = a.bandwidth;
    } else {
        let dir = match &a.workdir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("postcopy-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut env = Vec::new();
        let mut extra = Vec::new();
        if let Some(root) = &a.qemu_root {
            env.push((
                "QEMU_MODULE_DIR".to_string(),
                root.join("usr/lib/x86_64-linux-gnu/qemu")
                    .display()
                    .to_string(),
            ));
            extra.extend([
                "-L".to_string(),
                root.join("usr/share/qemu").display().to_string(),
            ]);
            extra.extend(["-L".to_string(), "/usr/share/seabios".to_string()]);
        }
        let kernel = a.kernel.clone().unwrap_or_else(default_kernel);
        if !kernel.exists() {
            return Err(format!(
                "guest kernel {} not found: build it with qemu-fixtures/guest/build.sh target/guest",
                kernel.display()
            ));
        }
        let cfg = QemuConfig {
            binary: a.qemu.clone(),
            kernel,
            append: a.guest.clone(),
            memory_mib: a.memory,
            extra_args: extra,
            env: env.clone(),
        };
        let v = qemu_version(&a.qemu, &env);
        qemu_src = v.clone();
        qemu_dst = v;
        let mut src = QemuProcess::start(&cfg, &dir, "src", false).map_err(|e| e.to_string())?;
        let dst = QemuProcess::start(&cfg, &dir, "dst", true).map_err(|e| e.to_string())?;
        if progress {
            eprintln!("waiting for the guest to fill its memory ({})", a.guest);
        }
        src.wait_serial("READY", Duration::from_secs(120))
            .map_err(|e| e.to_string())?;
        src_qmp = src.qmp.display().to_string();
        dst_qmp = dst.qmp.display().to_string();
        uri = format!("tcp:127.0.0.1:{}", free_port().map_err(|e| e.to_string())?);
        bandwidth = a.bandwidth.or(Some(32));
        procs.push(src);
        procs.push(dst);
    }

    let req = MigrateRequest {
        flags,
        uri,
        bandwidth_mib: bandwidth,
        postcopy_bandwidth_mib: a.postcopy_bandwidth,
        connect_uri: None,
    };
    let spec = a.record.as_ref().map(|p| RecordSpec {
        path: p.clone(),
        scenario: a.scenario.clone(),
        description: a.description.clone(),
        qemu_src,
        qemu_dst,
    });

    // Controller for API calls from other threads.
    let (ctl_tx, ctl_rx) = channel();
    let api_log: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let stopped: Arc<Mutex<Vec<Side>>> = Arc::new(Mutex::new(Vec::new()));
    let events: Arc<Mutex<Vec<(Side, DomainEvent)>>> = Arc::new(Mutex::new(Vec::new()));
    let ctl_for_events: Arc<Mutex<Option<postcopy_shim::io::Controller>>> =
        Arc::new(Mutex::new(None));

    let mut hooks = Hooks {
        controller: Some(ctl_tx),
        ..Default::default()
    };
    {
        let events = events.clone();
        let ctl = ctl_for_events.clone();
        let api_log = api_log.clone();
        let switch_at = a.switch_at_iteration;
        hooks.on_event = Some(Box::new(move |side, ev| {
            if progress {
                eprintln!("  {} {}", side.tag(), ev.describe());
            }
            if let (DomainEvent::MigrationIteration { iteration }, Some(n)) = (ev, switch_at) {
                if *iteration == n {
                    if let Some(c) = ctl.lock().ok().and_then(|g| g.clone()) {
                        let api_log = api_log.clone();
                        // A callback must not block the loop: call from another thread, as virsh does.
                        thread::spawn(move || {
                            if let Some(r) = c.call(ApiCall::StartPostCopy { flags: 0 }) {
                                if let Ok(mut l) = api_log.lock() {
                                    l.push((
                                        "start_postcopy (iteration callback)".into(),
                                        api_result_text(&r),
                                    ));
                                }
                            }
                        });
                    }
                }
            }
            if let Ok(mut e) = events.lock() {
                e.push((side, ev.clone()));
            }
        }));
    }
    {
        let stopped = stopped.clone();
        hooks.on_stop = Some(Box::new(move |side| {
            if let Ok(mut s) = stopped.lock() {
                s.push(side);
            }
        }));
    }

    let started = Instant::now();
    let api_before = a.api_before;
    let start_after = a.start_postcopy_after;
    let api_log2 = api_log.clone();
    let ctl_slot = ctl_for_events.clone();
    let helper = thread::spawn(move || {
        let Ok(ctl) = ctl_rx.recv() else { return };
        if let Ok(mut s) = ctl_slot.lock() {
            *s = Some(ctl.clone());
        }
        if api_before {
            if let Some(r) = ctl.call(ApiCall::StartPostCopy { flags: 0 }) {
                if let Ok(mut l) = api_log2.lock() {
                    l.push(("start_postcopy (before)".into(), api_result_text(&r)));
                }
            }
        }
        if let Some(secs) = start_after {
            thread::sleep(Duration::from_secs_f64(secs));
            if let Some(r) = ctl.call(ApiCall::StartPostCopy { flags: 0 }) {
                if let Ok(mut l) = api_log2.lock() {
                    l.push(("start_postcopy".into(), api_result_text(&r)));
                }
            }
        }
    });
    let run_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = if progress {
        let ctl_slot = ctl_for_events.clone();
        let run_over = run_over.clone();
        Some(thread::spawn(move || loop {
            thread::sleep(Duration::from_secs(1));
            // The slot is empty until the loop exists and again once the migration ended.
            if run_over.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Some(c) = ctl_slot.lock().ok().and_then(|g| g.clone()) else {
                continue;
            };
            match c.call(ApiCall::GetJobStats) {
                Some(Ok(ApiValue::Stats(s))) => eprintln!(
                    "  progress: pass {} remaining {} MiB processed {} MiB",
                    s.get(param::memory_iteration()).unwrap_or(0),
                    s.get(param::memory_remaining()).unwrap_or(0) >> 20,
                    s.get(param::memory_processed()).unwrap_or(0) >> 20
                ),
                Some(_) => {}
                None => return,
            }
        }))
    } else {
        None
    };

    let run = run::migrate(&src_qmp, &dst_qmp, req.clone(), spec.as_ref(), hooks);
    run_over.store(true, std::sync::atomic::Ordering::SeqCst);
    let run = run.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let _ = helper.join();
    drop(ctl_for_events.lock().map(|mut g| g.take()));
    if let Some(p) = poller {
        let _ = p.join();
    }
    if a.api_after {
        let r = run.call_after(ApiCall::StartPostCopy { flags: 0 });
        if let Ok(mut l) = api_log.lock() {
            l.push(("start_postcopy (after)".into(), api_result_text(&r)));
        }
    }

    // Stop what libvirt would stop; never a guest that may hold the only copy of its memory.
    let stopped_sides = stopped.lock().map(|s| s.clone()).unwrap_or_default();
    let mut guest = Map::new();
    if procs.len() == 2 {
        if stopped_sides.contains(&Side::Src) {
            procs[0].kill();
        }
        if stopped_sides.contains(&Side::Dst) {
            procs[1].kill();
        }
        if run.report.result.is_ok() {
            guest = verify_guest(&procs[1], Duration::from_secs(a.verify_timeout));
        } else if run
            .report
            .result
            .as_ref()
            .is_err_and(|_| run.report.dst_state.state == state::RUNNING)
        {
            for p in procs.iter_mut() {
                p.keep();
            }
            eprintln!(
                "post-copy failed: both QEMUs are left running (pids {:?}, {:?}); QMP sockets {} and {}",
                procs[0].pid(),
                procs[1].pid(),
                procs[0].qmp.display(),
                procs[1].qmp.display()
            );
        }
    }

    let rep = &run.report;
    let mut out = Map::new();
    out.insert("flags".into(), json!(flag_names(req.flags)));
    out.insert("uri".into(), json!(req.uri));
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
    if let Some(l) = run.stats.switch_latency {
        out.insert("switch_latency_us".into(), json!(l.as_micros() as u64));
    }
    out.insert("wall_time_ms".into(), json!(elapsed.as_millis() as u64));
    if let Ok(l) = api_log.lock() {
        if !l.is_empty() {
            out.insert(
                "api_calls".into(),
                Value::Array(
                    l.iter()
                        .map(|(c, r)| json!({"call": c, "result": r}))
                        .collect(),
                ),
            );
        }
    }
    if !guest.is_empty() {
        out.insert("guest".into(), Value::Object(guest));
    }
    if !run.warnings.is_empty() {
        out.insert("warnings".into(), json!(run.warnings));
    }
    let out = Value::Object(out);
    if a.json {
        println!("{out}");
    } else {
        print_human(&out);
    }
    Ok(if rep.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads the destination guest's console after the migration: its memory checks and heartbeats.
fn verify_guest(dst: &QemuProcess, timeout: Duration) -> Map<String, Value> {
    let mut f = SerialFollower::new(&dst.serial);
    let start = Instant::now();
    let (mut ok, mut fail, mut beats) = (0u64, 0u64, 0u64);
    let mut fails = Vec::new();
    while start.elapsed() < timeout {
        for l in f.poll() {
            if l.starts_with("CHECK OK") {
                ok += 1;
            } else if l.starts_with("FAIL") || l.starts_with("CHECK FAIL") {
                fail += 1;
                if fails.len() < 5 {
                    fails.push(l);
                }
            } else if l.starts_with("HB ") {
                beats += 1;
            }
        }
        if ok >= 2 || fail > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut m = Map::new();
    m.insert("destination_checks_ok".into(), json!(ok));
    m.insert("destination_check_failures".into(), json!(fail));
    m.insert("destination_heartbeats".into(), json!(beats));
    if !fails.is_empty() {
        m.insert("failures".into(), json!(fails));
    }
    m
}

fn print_human(v: &Value) {
    let g = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    println!("migration: {}", g("result").as_str().unwrap_or("?"));
    if let Some(e) = v.get("error") {
        println!(
            "  error: {}",
            e.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    println!("  flags: {}", g("flags"));
    if let Some(s) = v.get("switch_requested").filter(|s| !s.is_null()) {
        println!(
            "  post-copy requested by {} at pass {}",
            s["by"].as_str().unwrap_or(""),
            s["pass"]
        );
    }
    println!("  went through post-copy: {}", g("postcopy"));
    println!("  source: {}", v["source"]["state"].as_str().unwrap_or(""));
    println!(
        "  destination: {}",
        v["destination"]["state"].as_str().unwrap_or("")
    );
    if let Some(Value::Object(st)) = v.get("stats") {
        println!("  job statistics:");
        for (k, val) in st {
            println!("    {k:<28} {val}");
        }
    }
    if let Some(gst) = v.get("guest") {
        println!("  guest on destination: {gst}");
    }
    if let Some(c) = v.get("api_calls") {
        println!("  api calls: {c}");
    }
}
