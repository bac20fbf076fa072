//! The benchmark's tables (Markdown, CSV, printed) and its report page.

use std::fmt::Write as _;

use super::{
    beat_of, mmm, percentile, svg, BenchError, Config, Outcome, Policy, Sample, LOST_FACTOR,
    STALL_FACTOR,
};

fn werr(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    BenchError::write(path)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// One line per run (rewritten after every run, so an interrupted benchmark keeps its data).
pub fn write_runs_csv(config: &Config, samples: &[Sample]) -> Result<(), BenchError> {
    let mut s = String::from(
        "link_mib_s,rtt_ms,workload,rep,order,policy,completed,aborted_at_limit,total_s,\
         longest_gap_ms,stall_ms,stall_after_switch_ms,lost_ms,slowest_pass_ms,beats,connections,qemu_downtime_ms,postcopy_requests,\
         postcopy_blocktime_ms,link_bytes,ram_transferred,iterations,switch_at_ms,\
         switch_latency_ms,checks_ok,check_failures,load1,error\n",
    );
    for x in samples {
        let l = config.links[x.link];
        let r = &x.result;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.3},{:.1},{:.1},{},{:.1},{},{},{},{},{},n/a,{},{},{},{},{},{},{},{:.2},\"{}\"",
            l.rate_mib,
            l.rtt_ms,
            config.workloads[x.workload].name,
            x.rep + 1,
            x.order + 1,
            x.policy.key(),
            r.completed,
            r.aborted_at_limit,
            r.total_s,
            x.gaps.longest_ms,
            x.gaps.stall_ms,
            opt(x.gaps.stall_after_switch_ms.map(|v| format!("{v:.1}"))),
            x.gaps.lost_ms,
            opt(x.gaps.slowest_pass_ms),
            x.gaps.beats,
            r.connections,
            opt(r.qemu_downtime_ms),
            opt(r.postcopy_requests),
            r.link_bytes,
            opt(r.ram_transferred),
            opt(r.iterations),
            opt(r.switch_at_ms.map(|v| format!("{v:.1}"))),
            opt(r.switch_latency_ms.map(|v| format!("{v:.3}"))),
            r.checks_ok,
            r.check_failures,
            x.load,
            r.error.clone().unwrap_or_default().replace('"', "'"),
        );
    }
    let p = config.out.join("runs.csv");
    std::fs::write(&p, s).map_err(werr(&p))
}

fn cell(v: &[f64], digits: usize) -> String {
    match mmm(v) {
        None => "n/a".into(),
        Some((m, lo, hi)) if v.len() == 1 || (lo - hi).abs() < f64::EPSILON => {
            format!("{m:.digits$}")
        }
        Some((m, lo, hi)) => format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]"),
    }
}

/// The summary of one policy on one link and workload.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub policy: Option<Policy>,
    pub runs: usize,
    pub completed: usize,
    pub aborted: usize,
    pub failed: usize,
    /// Runs that went through post-copy (QEMU may complete a pre-copy despite the switch request).
    pub in_postcopy: usize,
    pub total_s: Vec<f64>,
    pub longest: Vec<f64>,
    pub stall: Vec<f64>,
    pub stall_after: Vec<f64>,
    pub lost: Vec<f64>,
    pub slowest_pass: Vec<f64>,
    pub downtime: Vec<f64>,
    pub requests: Vec<f64>,
    pub sent_mib: Vec<f64>,
    pub switch_lat: Vec<f64>,
    /// Pair by pair (same repetition) against post-copy at once; both completed.
    pub gap_ratio: Vec<f64>,
    pub time_ratio: Vec<f64>,
    pub stall_ratio: Vec<f64>,
    pub guest_failures: u64,
}

/// Rows of one (link, workload), in the configured policy order.
pub fn rows(out: &Outcome, link: usize, wl: usize) -> Vec<Row> {
    let of = |p: Policy| {
        out.samples
            .iter()
            .filter(move |s| s.link == link && s.workload == wl && s.policy == p)
    };
    out.config
        .policies
        .iter()
        .map(|&p| {
            let mut r = Row {
                policy: Some(p),
                ..Row::default()
            };
            for s in of(p) {
                let x = &s.result;
                r.runs += 1;
                r.guest_failures += x.check_failures;
                if x.went_postcopy {
                    r.in_postcopy += 1;
                }
                if x.completed {
                    r.completed += 1;
                } else if x.aborted_at_limit {
                    r.aborted += 1;
                } else {
                    r.failed += 1;
                }
                if x.completed || x.aborted_at_limit {
                    r.total_s.push(x.total_s);
                    r.longest.push(s.gaps.longest_ms);
                    r.stall.push(s.gaps.stall_ms);
                    r.lost.push(s.gaps.lost_ms);
                    if let Some(v) = s.gaps.slowest_pass_ms {
                        r.slowest_pass.push(v);
                    }
                    r.sent_mib.push(x.link_bytes as f64 / 1048576.0);
                }
                if let Some(v) = s.gaps.stall_after_switch_ms {
                    r.stall_after.push(v);
                }
                if let Some(v) = x.qemu_downtime_ms {
                    r.downtime.push(v as f64);
                }
                if let Some(v) = x.postcopy_requests {
                    r.requests.push(v as f64);
                }
                if let Some(v) = x.switch_latency_ms {
                    r.switch_lat.push(v);
                }
                if let Some(base) = of(Policy::AtOnce).find(|b| b.rep == s.rep) {
                    if x.completed && base.result.completed {
                        if base.gaps.longest_ms > 0.0 {
                            r.gap_ratio.push(s.gaps.longest_ms / base.gaps.longest_ms);
                        }
                        if base.result.total_s > 0.0 {
                            r.time_ratio.push(x.total_s / base.result.total_s);
                        }
                        if base.gaps.stall_ms > 0.0 {
                            r.stall_ratio.push(s.gaps.stall_ms / base.gaps.stall_ms);
                        }
                    }
                }
            }
            r
        })
        .collect()
}

fn outcome_cell(r: &Row) -> String {
    let mut parts = Vec::new();
    if r.completed > 0 {
        parts.push(format!("{}/{} completed", r.completed, r.runs));
    }
    if r.policy.is_some_and(Policy::switches) {
        parts.push(format!("{}/{} via post-copy", r.in_postcopy, r.runs));
    }
    if r.aborted > 0 {
        parts.push(format!("{}/{} did not converge", r.aborted, r.runs));
    }
    if r.failed > 0 {
        parts.push(format!("{}/{} FAILED", r.failed, r.runs));
    }
    if r.guest_failures > 0 {
        parts.push(format!("{} guest FAIL lines", r.guest_failures));
    }
    parts.join(", ")
}

fn lat_cell(v: &[f64]) -> String {
    match (mmm(v), percentile(v, 99.0)) {
        (Some((m, lo, _)), Some(p99)) => {
            format!("{m:.3} (min {lo:.3}, p99 {p99:.3}, n={})", v.len())
        }
        _ => "—".into(),
    }
}

/// The Markdown table of one (link, workload).
pub fn table_md(out: &Outcome, link: usize, wl: usize) -> String {
    let mut s = String::from(
        "| policy | outcome | total time s | longest gap ms | stall ms | stall after switch ms \
         | lost ms | slowest guest pass ms | QEMU downtime ms | postcopy requests | postcopy-blocktime | sent MiB | switch latency ms \
         | longest gap / at once | total time / at once |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows(out, link, wl) {
        let p = r.policy.unwrap_or(Policy::AtOnce);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | n/a | {} | {} | {} | {} |",
            p.label(),
            outcome_cell(&r),
            cell(&r.total_s, 1),
            cell(&r.longest, 0),
            cell(&r.stall, 0),
            if r.stall_after.is_empty() {
                "—".into()
            } else {
                cell(&r.stall_after, 0)
            },
            cell(&r.lost, 0),
            cell(&r.slowest_pass, 0),
            cell(&r.downtime, 0),
            cell(&r.requests, 0),
            cell(&r.sent_mib, 0),
            lat_cell(&r.switch_lat),
            if p == Policy::AtOnce {
                "1".into()
            } else if r.gap_ratio.is_empty() {
                "—".into()
            } else {
                cell(&r.gap_ratio, 2)
            },
            if p == Policy::AtOnce {
                "1".into()
            } else if r.time_ratio.is_empty() {
                "—".into()
            } else {
                cell(&r.time_ratio, 2)
            },
        );
    }
    s
}

fn summary_csv(out: &Outcome) -> String {
    let mut s = String::from(
        "link_mib_s,rtt_ms,workload,policy,runs,completed,did_not_converge,failed,\
         total_s_med,total_s_min,total_s_max,longest_gap_ms_med,longest_gap_ms_min,longest_gap_ms_max,\
         stall_ms_med,stall_ms_min,stall_ms_max,stall_after_switch_ms_med,qemu_downtime_ms_med,\
         postcopy_requests_med,postcopy_blocktime,sent_mib_med,switch_latency_ms_med,\
         switch_latency_ms_p99,gap_ratio_med,gap_ratio_min,gap_ratio_max,time_ratio_med,\
         time_ratio_min,time_ratio_max\n",
    );
    let f = |v: &[f64], i: usize| {
        mmm(v)
            .map(|m| format!("{:.3}", [m.0, m.1, m.2][i]))
            .unwrap_or_default()
    };
    for (li, l) in out.config.links.iter().enumerate() {
        for (wi, w) in out.config.workloads.iter().enumerate() {
            for r in rows(out, li, wi) {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},n/a,{},{},{},{},{},{},{},{},{}",
                    l.rate_mib,
                    l.rtt_ms,
                    w.name,
                    r.policy.map(Policy::key).unwrap_or(""),
                    r.runs,
                    r.completed,
                    r.aborted,
                    r.failed,
                    f(&r.total_s, 0),
                    f(&r.total_s, 1),
                    f(&r.total_s, 2),
                    f(&r.longest, 0),
                    f(&r.longest, 1),
                    f(&r.longest, 2),
                    f(&r.stall, 0),
                    f(&r.stall, 1),
                    f(&r.stall, 2),
                    f(&r.stall_after, 0),
                    f(&r.downtime, 0),
                    f(&r.requests, 0),
                    f(&r.sent_mib, 0),
                    f(&r.switch_lat, 0),
                    percentile(&r.switch_lat, 99.0)
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or_default(),
                    f(&r.gap_ratio, 0),
                    f(&r.gap_ratio, 1),
                    f(&r.gap_ratio, 2),
                    f(&r.time_ratio, 0),
                    f(&r.time_ratio, 1),
                    f(&r.time_ratio, 2),
                );
            }
        }
    }
    s
}

/// The targets of the issue, checked against what was measured (never tuned to them).
pub fn targets(out: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    let find = |p: Policy, rows: &[Row]| rows.iter().find(|r| r.policy == Some(p)).cloned();
    for (li, l) in out.config.links.iter().enumerate() {
        for (wi, w) in out.config.workloads.iter().enumerate() {
            let rs = rows(out, li, wi);
            let link = format!("link {} MiB/s, RTT +{} ms", l.rate_mib, l.rtt_ms);
            if let Some(a) = find(Policy::AfterPrecopy, &rs) {
                if let (Some((g, glo, ghi)), Some((t, tlo, thi))) =
                    (mmm(&a.gap_ratio), mmm(&a.time_ratio))
                {
                    let ok = g <= 1.0 / 3.0 && t <= 1.2;
                    v.push(format!(
                        "workload {} ({link}): AFTER_PRECOPY longest gap / at once = {g:.2} \
                         [{glo:.2}–{ghi:.2}] (target ≤ 0.33), total time / at once = {t:.2} \
                         [{tlo:.2}–{thi:.2}] (target ≤ 1.2): {}",
                        w.name,
                        if ok { "met" } else { "NOT met" }
                    ));
                }
            }
            if let (Some(p), Some(o), Some(a)) = (
                find(Policy::Precopy, &rs),
                find(Policy::AtOnce, &rs),
                find(Policy::AfterPrecopy, &rs),
            ) {
                v.push(format!(
                    "workload {} ({link}): pre-copy did not converge in its limit in {}/{} runs; \
                     post-copy at once completed {}/{}, AFTER_PRECOPY {}/{}",
                    w.name, p.aborted, p.runs, o.completed, o.runs, a.completed, a.runs
                ));
            }
        }
    }
    let lat = |p: Policy| -> Vec<f64> {
        out.samples
            .iter()
            .filter(|s| s.policy == p)
            .filter_map(|s| s.result.switch_latency_ms)
            .collect()
    };
    let a = lat(Policy::AfterPrecopy);
    if let Some(p99) = percentile(&a, 99.0) {
        let mut line = format!(
            "switch latency p99 (nearest rank, n={}): AFTER_PRECOPY {p99:.3} ms (target < 1 ms: {})",
            a.len(),
            if p99 < 1.0 { "met" } else { "NOT met" }
        );
        for p in [Policy::ClientEvent, Policy::ClientPoll] {
            let v = lat(p);
            if let Some(q) = percentile(&v, 99.0) {
                let _ = write!(line, "; {} {q:.3} ms (n={})", p.label(), v.len());
            }
        }
        v.push(line);
    }
    v
}

fn replay_md(out: &Outcome) -> String {
    let Some(r) = &out.replay else {
        return "Not run (`--replay 0`).\n".into();
    };
    format!(
        "| transcripts | records | replays (N each) | divergences | replays/s | per transcript µs (median, max) | whole suite ms (load + parse + replay, median) |\n\
         |---|---|---|---|---|---|---|\n\
         | {} | {} | {} (N={}) | {} | {:.0} | {:.0}, {:.0} | {:.1} |\n",
        r.files,
        r.records,
        r.replays,
        r.n,
        r.errors,
        r.replays as f64 / r.replay_s.max(1e-9),
        r.per_median_us,
        r.per_max_us,
        r.suite_ms
    )
}

/// The report page (docs/benchmark.md is a copy of it).
pub fn page(out: &Outcome) -> String {
    let c = &out.config;
    let m = &out.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmark: does one pre-copy pass before the switch cut guest-visible downtime?\n"
    );
    let _ = writeln!(
        s,
        "Generated by `postcopy bench` on {}; the whole run took {:.1} min.\n\n    {}\n",
        m.date,
        out.elapsed.as_secs_f64() / 60.0,
        c.command
    );
    let _ = writeln!(
        s,
        "To reproduce on a fresh machine (Debian 12, root; see the README):\n\n\
         \x20   ci/migrate --postcopy --postcopy-after-precopy   # installs QEMU 10.0, builds target/release/postcopy\n\
         \x20   qemu-fixtures/guest/build.sh target/guest        # the guest kernel\n\
         \x20   target/release/postcopy bench                    # the default set: tables, CSV, SVG in target/bench\n\
         \x20   target/release/postcopy bench --quick            # 1 repetition, small guest: about 1 minute\n\n\
         Options: `--link-rate 16,32,64` and `--rtt-ms 0,10,50` sweep the link, `--reps`, \
         `--precopy-limit`, `--beat`, `--workloads a,b`, `--workload NAME:MEM:GUEST`, \
         `--policies`, `--replay N`; `postcopy bench --help`.\n"
    );
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(
        s,
        "- {} CPUs (nproc), {}\n- {}\n- {}\n- load average (1, 5, 15 min) before: {}, after: {}\n",
        m.nproc, m.cpu, m.qemu, m.kernel, m.load_before, m.load_after
    );
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(
        s,
        "Two QEMUs (TCG, `-M pc`), our guest kernel (qemu-fixtures/guest), each in its host of \
         the testbed (docs/testbed.md): two network namespaces joined by a veth pair, each \
         direction shaped by the kernel's `tbf` at the stated rate, TCP buffers sized to the \
         link; the stated added RTT comes from the testbed's delay stage, which every connection \
         of the migration (page requests included) shares. Every connection (the main stream \
         and postcopy-preempt's) crosses the same shaped link. QEMU's own caps are off (no \
         bandwidth parameters: libvirt's unlimited default), see docs/benchmark-method.md.\n"
    );
    let _ = writeln!(s, "Links: {}.\n", {
        c.links
            .iter()
            .map(|l| format!("{} MiB/s, RTT +{} ms", l.rate_mib, l.rtt_ms))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let _ = writeln!(s, "Workloads ({} repetitions each):\n", c.reps);
    for w in &c.workloads {
        let _ = writeln!(
            s,
            "- **{}**: {}. `-m {}`, guest `{}`",
            w.name, w.what, w.memory_mib, w.guest
        );
    }
    let _ = writeln!(
        s,
        "\nPolicies, alternated within each repetition (repetition r starts with policy r):\n\n\
         - pre-copy only: VIR_MIGRATE_LIVE; aborted (AbortJob, flags 0) when {} s pass: \
         \"did not converge\".\n\
         - post-copy at once: VIR_MIGRATE_POSTCOPY, StartPostCopy from another thread on \
         MIGRATION_ITERATION 1 (right after `migrate`).\n\
         - POSTCOPY_AFTER_PRECOPY: VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, \
         the driver switches on MIGRATION_PASS 2.\n\
         - virsh-style: VIR_MIGRATE_POSTCOPY, an event callback's thread calls StartPostCopy on \
         MIGRATION_ITERATION 2.\n\
         - Nova-style: VIR_MIGRATE_POSTCOPY, a thread calls GetJobStats every 500 ms and \
         StartPostCopy once memory_iteration ≥ 2.\n",
        c.env.precopy_limit.as_secs()
    );
    let _ = writeln!(s, "## What is measured\n");
    let beats: Vec<String> = c
        .workloads
        .iter()
        .map(|w| format!("{}: {} ms", w.name, beat_of(&w.guest)))
        .collect();
    let _ = writeln!(
        s,
        "- **heartbeat gaps**: the guest prints `HB <seq>` every beat ({}); the host follows \
         both serial files (polled every {} ms) and timestamps each line as it appears. The \
         sequence continues across the migration, so beats are merged by sequence number and \
         a gap between consecutive beats is time the guest could not run (guest-visible \
         downtime), measured from the migrate call to {:.1} s after it returned.\n\
         - **longest gap**; **stall** = sum over gaps longer than {STALL_FACTOR} beats of \
         (gap − beat), over the whole window; **stall after switch** = the same from the moment \
         QEMU reported postcopy-active; **lost** = sum over gaps longer than {LOST_FACTOR} \
         beats of (gap − beat), which also counts the many short waits a frequent heartbeat \
         splits a slow stretch into.\n\
         - **slowest guest pass**: the longest verify pass (all of ro and hot, a window of cold; \
         the guest's `STAT ... ms=`) that ended between the migrate call and the end of the \
         window: a guest that keeps beating but crawls through memory it must fault in shows \
         here, not in the gaps.\n\
         - **total time**: the migrate call, start to return (host clock). For pre-copy that did \
         not converge: until the abort returned.\n\
         - **QEMU downtime**: QEMU's `downtime` statistic (for post-copy not guest-visible \
         downtime); **postcopy requests**: QEMU's `postcopy-requests`; **sent**: bytes tbf let \
         through source → destination (frames with their headers).\n\
         - **postcopy-blocktime**: n/a: libvirt does not set QEMU's `postcopy-blocktime` \
         capability, so the shim does not either, and the benchmark reports none.\n\
         - **switch latency**: from the moment the driver's loop took MIGRATION_PASS ≥ 2 to \
         the moment `migrate-start-postcopy` was written to the source monitor (the same clock \
         and the same two points for the driver flag and both client-side emulations).\n\
         - **ratios**: each policy against post-copy at once of the same repetition (pair by \
         pair), only where both completed.\n\
         - Each cell: median [min–max] over the repetitions.\n",
        beats.join(", "),
        c.env.poll.as_millis(),
        c.env.tail.as_secs_f64()
    );
    let _ = writeln!(s, "## Noise\n");
    let _ = writeln!(
        s,
        "The machine's CPUs are shared with other builds: TCG guest speed varies up to 2x between \
         runs. Policies are alternated run by run and compared pair by pair; cells show the \
         median with min and max. The 1-minute load average at each run's start is in runs.csv \
         (column load1); here it ranged {}.\n",
        {
            let l: Vec<f64> = out.samples.iter().map(|x| x.load).collect();
            mmm(&l)
                .map(|(m, lo, hi)| format!("from {lo:.2} to {hi:.2} (median {m:.2})"))
                .unwrap_or_else(|| "n/a".into())
        }
    );
    let _ = writeln!(s, "## Targets\n");
    for t in targets(out) {
        let _ = writeln!(s, "- {t}");
    }
    let _ = writeln!(s, "\n## Results\n");
    for (li, l) in c.links.iter().enumerate() {
        for (wi, w) in c.workloads.iter().enumerate() {
            let _ = writeln!(
                s,
                "### Workload {} — link {} MiB/s, RTT +{} ms\n\n{}\n\n{}\n",
                w.name,
                l.rate_mib,
                l.rtt_ms,
                w.what,
                table_md(out, li, wi)
            );
            let tag = svg::tag(li, &w.name, c.links.len());
            let _ = writeln!(
                s,
                "![heartbeat gaps, workload {n}](bench-gaps-{tag}.svg)\n\n\
                 ![longest gap and total time, workload {n}](bench-bars-{tag}.svg)\n",
                n = w.name
            );
        }
    }
    let _ = writeln!(s, "## Replay speed\n\n{}", replay_md(out));
    let _ = writeln!(
        s,
        "Files: `runs.csv` (one line per run), `summary.csv`, `results.md` and the SVGs in the \
         output directory."
    );
    s
}

/// Writes runs.csv, summary.csv, results.md, benchmark.md and the SVGs; prints the tables.
pub fn write_all(out: &Outcome) -> Result<(), BenchError> {
    let dir = &out.config.out;
    write_runs_csv(&out.config, &out.samples)?;
    let p = dir.join("summary.csv");
    std::fs::write(&p, summary_csv(out)).map_err(werr(&p))?;
    let mut md = String::new();
    for (li, l) in out.config.links.iter().enumerate() {
        for (wi, w) in out.config.workloads.iter().enumerate() {
            let _ = writeln!(
                md,
                "### Workload {} — link {} MiB/s, RTT +{} ms\n\n{}",
                w.name,
                l.rate_mib,
                l.rtt_ms,
                table_md(out, li, wi)
            );
            svg::write(out, li, wi)?;
        }
    }
    let _ = writeln!(md, "### Targets\n");
    for t in targets(out) {
        let _ = writeln!(md, "- {t}");
    }
    let _ = writeln!(md, "\n### Replay speed\n\n{}", replay_md(out));
    println!("{md}");
    let p = dir.join("results.md");
    std::fs::write(&p, &md).map_err(werr(&p))?;
    let p = dir.join("benchmark.md");
    std::fs::write(&p, page(out)).map_err(werr(&p))?;
    Ok(())
}
