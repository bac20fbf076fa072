//! The benchmark's tables (Markdown, CSV), its targets, policy map and findings, and its page.

use std::fmt::Write as _;

use super::stats::{median_ci, sign_test, MedianCi, SignTest};
use super::{mmm, plots, BenchError, Config, Outcome, Policy, Sample};

fn werr(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    BenchError::write(path)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn f1(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_default()
}

fn pre_key(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "on",
        Some(false) => "off",
        None => "n/a",
    }
}

/// One line per run (rewritten after every run, so an interrupted benchmark keeps its data).
pub fn write_runs_csv(config: &Config, samples: &[Sample]) -> Result<(), BenchError> {
    let mut s = String::from(
        "block,order,workload,preempt,policy,completed,via_postcopy,aborted_at_limit,total_s,\
         floor_s,frames,longest_interval_ms,longest_stall_ms,stall_sum_ms,frames_missed,\
         degraded_ms,blackout_qmp_ms,blackout_guest_ms,blackout_floor_ms,sent_twice_mib,\
         achieved_mib_s,backlog_at_switch_bytes,connections,preempt_set,qemu_downtime_ms,\
         postcopy_requests,iterations,ram_transferred,link_bytes,checks_ok,check_failures,load1,\
         error\n",
    );
    for x in samples {
        let (r, m, p) = (&x.result, &x.metrics, &x.planned);
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.3},{:.3},{},{:.1},{:.1},{:.1},{},{},{},{},{:.3},{},{:.2},{},{},{},{},{},{},{},{},{},{},{:.2},\"{}\"",
            p.block + 1,
            p.order + 1,
            config.workloads[p.workload].name,
            pre_key(p.preempt),
            p.policy.key(),
            r.completed,
            r.went_postcopy,
            r.aborted_at_limit,
            r.total_s,
            m.floor_s,
            m.frames,
            m.longest_interval_ms,
            m.longest_stall_ms,
            m.stall_sum_ms,
            m.frames_missed,
            f1(m.degraded_ms),
            f1(m.blackout_qmp_ms),
            f1(m.blackout_guest_ms),
            m.blackout_floor_ms,
            f1(m.sent_twice_mib),
            r.achieved_mib_s,
            opt(r.backlog_at_switch),
            r.connections,
            opt(r.preempt_set),
            opt(r.qemu_downtime_ms),
            opt(r.postcopy_requests),
            opt(r.iterations),
            opt(r.ram_transferred),
            r.link_bytes,
            r.checks_ok,
            r.check_failures,
            x.load,
            r.error.clone().unwrap_or_default().replace('"', "'"),
        );
    }
    let p = config.out.join("runs.csv");
    std::fs::write(&p, s).map_err(werr(&p))
}

/// How a run ended, for splitting rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Control runs; pre-copy only that completed or was aborted at its limit; a switching
    /// policy that completed through post-copy.
    AsIntended,
    /// A switching policy whose migration completed in pre-copy (no switch happened).
    InPrecopy,
    Failed,
}

pub fn mode(s: &Sample) -> Mode {
    let r = &s.result;
    match s.planned.policy {
        Policy::Control => Mode::AsIntended,
        Policy::Precopy if r.completed || r.aborted_at_limit => Mode::AsIntended,
        p if p.switches() && r.completed && r.went_postcopy => Mode::AsIntended,
        p if p.switches() && r.completed => Mode::InPrecopy,
        _ => Mode::Failed,
    }
}

/// The samples of one cell's table: workload `wl`, preempt level `pre` (runs where preempt does
/// not apply stand in both levels), policy `p`.
pub fn cell(out: &Outcome, wl: usize, pre: bool, p: Policy) -> Vec<&Sample> {
    out.samples
        .iter()
        .filter(|s| {
            s.planned.workload == wl
                && s.planned.policy == p
                && s.planned.preempt.map_or(true, |x| x == pre)
        })
        .collect()
}

/// The summary of one table row.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub label: String,
    pub policy: Option<Policy>,
    /// Runs of the policy in this cell, all modes.
    pub runs: usize,
    pub in_row: usize,
    pub outcome: String,
    pub longest_interval: Vec<f64>,
    pub longest_stall: Vec<f64>,
    pub stall_sum: Vec<f64>,
    pub missed: Vec<f64>,
    pub degraded: Vec<f64>,
    /// Runs with a STOP whose degraded period was not seen to end.
    pub not_recovered: usize,
    pub blackout_qmp: Vec<f64>,
    pub blackout_guest: Vec<f64>,
    pub blackout_excess: Vec<f64>,
    pub total_s: Vec<f64>,
    pub over_floor: Vec<f64>,
    pub sent_twice: Vec<f64>,
    pub achieved: Vec<f64>,
    pub backlog_kib: Vec<f64>,
    pub downtime: Vec<f64>,
    pub pass: Vec<f64>,
}

fn row_of(label: String, p: Policy, all: &[&Sample], picked: &[&Sample]) -> Row {
    let mut r = Row {
        label,
        policy: Some(p),
        runs: all.len(),
        in_row: picked.len(),
        ..Row::default()
    };
    for s in picked {
        let (x, m) = (&s.result, &s.metrics);
        r.longest_interval.push(m.longest_interval_ms);
        r.longest_stall.push(m.longest_stall_ms);
        r.stall_sum.push(m.stall_sum_ms);
        r.missed.push(m.frames_missed as f64);
        match (m.degraded_ms, x.qmp_stop_ms) {
            (Some(d), _) => r.degraded.push(d),
            (None, Some(_)) => r.not_recovered += 1,
            _ => {}
        }
        if let Some(b) = m.blackout_qmp_ms {
            r.blackout_qmp.push(b);
            r.blackout_excess.push(b - m.blackout_floor_ms);
        }
        if let Some(b) = m.blackout_guest_ms {
            r.blackout_guest.push(b);
        }
        if p != Policy::Control {
            r.total_s.push(x.total_s);
            if m.floor_s > 0.0 {
                r.over_floor.push(x.total_s / m.floor_s);
            }
            if let Some(v) = m.sent_twice_mib {
                r.sent_twice.push(v);
            }
            if x.achieved_mib_s > 0.0 {
                r.achieved.push(x.achieved_mib_s);
            }
            if let Some(b) = x.backlog_at_switch {
                r.backlog_kib.push(b as f64 / 1024.0);
            }
            if let Some(d) = x.qemu_downtime_ms {
                r.downtime.push(d as f64);
            }
            if let Some(i) = x.iterations {
                r.pass.push(i as f64);
            }
        }
    }
    r
}

fn outcome_of(p: Policy, all: &[&Sample]) -> String {
    let n = all.len();
    let count = |m: Mode| all.iter().filter(|s| mode(s) == m).count();
    let mut parts = Vec::new();
    match p {
        Policy::Control => parts.push(format!("{n} watched")),
        Policy::Precopy => {
            let conv = all.iter().filter(|s| s.result.completed).count();
            let ab = all.iter().filter(|s| s.result.aborted_at_limit).count();
            parts.push(format!("{conv}/{n} converged"));
            if ab > 0 {
                parts.push(format!("{ab}/{n} did not converge (aborted)"));
            }
        }
        _ => {
            parts.push(format!("{}/{n} via post-copy", count(Mode::AsIntended)));
            let pre = count(Mode::InPrecopy);
            if pre > 0 {
                parts.push(format!("{pre}/{n} completed in pre-copy"));
            }
        }
    }
    let failed = count(Mode::Failed);
    if failed > 0 {
        parts.push(format!("{failed}/{n} FAILED"));
    }
    let bad: u64 = all.iter().map(|s| s.result.check_failures).sum();
    if bad > 0 {
        parts.push(format!("{bad} guest FAIL lines"));
    }
    parts.join(", ")
}

/// The rows of one (workload, preempt) table, in the configured policy order; a switching
/// policy's runs that completed in pre-copy get a row of their own.
pub fn rows(out: &Outcome, wl: usize, pre: bool) -> Vec<Row> {
    let mut v = Vec::new();
    for &p in &out.config.policies {
        let all = cell(out, wl, pre, p);
        if all.is_empty() {
            continue;
        }
        let main: Vec<&Sample> = all
            .iter()
            .copied()
            .filter(|s| mode(s) == Mode::AsIntended)
            .collect();
        let mut r = row_of(p.label().to_string(), p, &all, &main);
        r.outcome = outcome_of(p, &all);
        v.push(r);
        let in_pre: Vec<&Sample> = all
            .iter()
            .copied()
            .filter(|s| mode(s) == Mode::InPrecopy)
            .collect();
        if !in_pre.is_empty() {
            let mut r = row_of(
                format!("{}: completed in pre-copy (no switch)", p.short()),
                p,
                &all,
                &in_pre,
            );
            r.outcome = format!("{}/{} runs", in_pre.len(), all.len());
            v.push(r);
        }
    }
    v
}

/// `median [min–max]`, or "—" when there is nothing.
fn mcell(v: &[f64], digits: usize) -> String {
    match mmm(v) {
        None => "—".into(),
        Some((m, lo, hi)) if v.len() == 1 || (lo - hi).abs() < f64::EPSILON => {
            format!("{m:.digits$}")
        }
        Some((m, lo, hi)) => format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]"),
    }
}

pub const TABLE_COLUMNS: [&str; 17] = [
    "policy",
    "runs",
    "longest frame interval ms",
    "longest stall ms",
    "stall sum ms",
    "frames missed",
    "degraded period ms",
    "blackout (QMP) ms",
    "blackout (guest clock) ms",
    "blackout − floor ms",
    "total time s",
    "total / floor",
    "sent twice MiB",
    "link achieved MiB/s",
    "backlog at switch KiB",
    "QEMU downtime ms",
    "pass at end",
];

/// The Markdown table of one (workload, preempt).
pub fn table_md(out: &Outcome, wl: usize, pre: bool) -> String {
    let mut s = format!("| {} |\n|", TABLE_COLUMNS.join(" | "));
    s.push_str(&"---|".repeat(TABLE_COLUMNS.len()));
    s.push('\n');
    for r in rows(out, wl, pre) {
        let degraded = if r.not_recovered > 0 {
            format!(
                "{} ({} not recovered)",
                mcell(&r.degraded, 0),
                r.not_recovered
            )
        } else {
            mcell(&r.degraded, 0)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.outcome,
            mcell(&r.longest_interval, 0),
            mcell(&r.longest_stall, 0),
            mcell(&r.stall_sum, 0),
            mcell(&r.missed, 0),
            degraded,
            mcell(&r.blackout_qmp, 0),
            mcell(&r.blackout_guest, 0),
            mcell(&r.blackout_excess, 0),
            mcell(&r.total_s, 1),
            mcell(&r.over_floor, 2),
            mcell(&r.sent_twice, 0),
            mcell(&r.achieved, 1),
            mcell(&r.backlog_kib, 0),
            mcell(&r.downtime, 0),
            mcell(&r.pass, 0),
        );
    }
    s
}

/// A paired comparison of two policies in one cell.
#[derive(Debug, Clone)]
pub struct Ratio {
    pub what: &'static str,
    pub policy: Policy,
    pub reference: Policy,
    /// Pairs (same block) in which both runs completed (any mode).
    pub pairs: usize,
    /// Of those, pairs in which a switching policy's run completed in pre-copy.
    pub pairs_in_precopy: usize,
    pub ci: Option<MedianCi>,
    pub sign: SignTest,
}

/// Pair by pair (same block) `metric(policy) / metric(reference)` in one cell, over the runs of
/// both that completed or (pre-copy only) ran to their limit.
pub fn ratio(
    out: &Outcome,
    wl: usize,
    pre: bool,
    policy: Policy,
    reference: Policy,
    what: &'static str,
    metric: fn(&Sample) -> f64,
) -> Ratio {
    let a = cell(out, wl, pre, policy);
    let b = cell(out, wl, pre, reference);
    let mut v = Vec::new();
    let mut in_pre = 0;
    for x in &a {
        let Some(y) = b.iter().find(|y| y.planned.block == x.planned.block) else {
            continue;
        };
        if mode(x) == Mode::Failed || mode(y) == Mode::Failed {
            continue;
        }
        let (mx, my) = (metric(x), metric(y));
        if mx.is_finite() && my.is_finite() && my > 0.0 {
            v.push(mx / my);
            if mode(x) == Mode::InPrecopy || mode(y) == Mode::InPrecopy {
                in_pre += 1;
            }
        }
    }
    let diffs: Vec<f64> = v.iter().map(|r| r.ln()).collect();
    Ratio {
        what,
        policy,
        reference,
        pairs: v.len(),
        pairs_in_precopy: in_pre,
        ci: median_ci(&v, 0.95),
        sign: sign_test(&diffs),
    }
}

fn stall_metric(s: &Sample) -> f64 {
    s.metrics.longest_interval_ms
}

fn time_metric(s: &Sample) -> f64 {
    s.result.total_s
}

impl Ratio {
    /// `0.31 [0.20–0.45, 97 %], 6/6 below 1, p = 0.031 (n = 6)`.
    pub fn text(&self) -> String {
        let Some(c) = self.ci else {
            return "no pairs".into();
        };
        let pre = if self.pairs_in_precopy > 0 {
            format!(
                "; {} pair(s) with a run completed in pre-copy",
                self.pairs_in_precopy
            )
        } else {
            String::new()
        };
        let interval = if c.n < 2 {
            "no interval from one pair".to_string()
        } else {
            format!("{:.2}–{:.2}, {:.1} %", c.lo, c.hi, c.coverage * 100.0)
        };
        format!(
            "{:.2} [{interval}], {}/{} below 1, p = {:.3}{pre}",
            c.median, self.sign.below, self.pairs, self.sign.p
        )
    }
}

/// The comparisons reported for one cell.
pub fn ratios(out: &Outcome, wl: usize, pre: bool) -> Vec<Ratio> {
    let has = |p: Policy| out.config.policies.contains(&p);
    let mut v = Vec::new();
    if has(Policy::AtOnce) {
        for &p in &out.config.policies {
            if matches!(p, Policy::AtOnce | Policy::Control) {
                continue;
            }
            v.push(ratio(
                out,
                wl,
                pre,
                p,
                Policy::AtOnce,
                "longest frame interval",
                stall_metric,
            ));
            v.push(ratio(
                out,
                wl,
                pre,
                p,
                Policy::AtOnce,
                "total time",
                time_metric,
            ));
        }
    }
    if has(Policy::Adaptive) && has(Policy::AfterPrecopy) {
        v.push(ratio(
            out,
            wl,
            pre,
            Policy::Adaptive,
            Policy::AfterPrecopy,
            "longest frame interval",
            stall_metric,
        ));
    }
    v
}

fn ratios_md(out: &Outcome, wl: usize, pre: bool) -> String {
    let mut s = String::from(
        "| policy / reference | metric | median ratio [interval, coverage], pairs below 1, sign test |\n|---|---|---|\n",
    );
    for r in ratios(out, wl, pre) {
        let _ = writeln!(
            s,
            "| {} / {} | {} | {} |",
            r.policy.short(),
            r.reference.short(),
            r.what,
            r.text()
        );
    }
    s
}

fn median_of(out: &Outcome, wl: usize, pre: bool, p: Policy) -> Option<f64> {
    let v: Vec<f64> = cell(out, wl, pre, p)
        .iter()
        .filter(|s| mode(s) != Mode::Failed)
        .map(|s| s.metrics.longest_interval_ms)
        .collect();
    mmm(&v).map(|m| m.0)
}

/// The noise floor of the longest frame interval in a workload: its control runs' median.
pub fn noise_floor(out: &Outcome, wl: usize) -> Option<f64> {
    median_of(out, wl, false, Policy::Control)
}

/// One cell of the policy map: workload, preempt level, the best and the runner-up with their
/// median longest frame interval.
pub type MapEntry = (usize, bool, Option<(Policy, f64)>, Option<(Policy, f64)>);

/// The policy map: per (workload, preempt), the policy with the lowest median longest frame
/// interval among those whose every run completed (or ran to its limit).
pub fn policy_map(out: &Outcome) -> Vec<MapEntry> {
    let mut v = Vec::new();
    for wl in 0..out.config.workloads.len() {
        for &pre in &out.config.preempt {
            let mut c: Vec<(Policy, f64)> = out
                .config
                .policies
                .iter()
                .filter(|p| **p != Policy::Control)
                .filter(|p| {
                    let all = cell(out, wl, pre, **p);
                    !all.is_empty()
                        && all.iter().all(|s| mode(s) != Mode::Failed)
                        && !(**p == Policy::Precopy
                            && all.iter().any(|s| s.result.aborted_at_limit))
                })
                .filter_map(|&p| median_of(out, wl, pre, p).map(|m| (p, m)))
                .collect();
            c.sort_by(|a, b| a.1.total_cmp(&b.1));
            v.push((wl, pre, c.first().copied(), c.get(1).copied()));
        }
    }
    v
}

fn policy_map_md(out: &Outcome) -> String {
    let mut s = String::from(
        "| workload | preempt | lowest median longest frame interval | runner-up | difference vs noise floor (control's median longest interval) |\n|---|---|---|---|---|\n",
    );
    for (wl, pre, a, b) in policy_map(out) {
        let noise = noise_floor(out, wl);
        let verdict = match (a, b, noise) {
            (Some(a), Some(b), Some(n)) if b.1 - a.1 < n => {
                format!("{:.0} ms < {n:.0} ms: within noise", b.1 - a.1)
            }
            (Some(a), Some(b), Some(n)) => format!("{:.0} ms ≥ {n:.0} ms", b.1 - a.1),
            _ => "—".into(),
        };
        let name = |x: Option<(Policy, f64)>| {
            x.map(|(p, m)| format!("{} ({m:.0} ms)", p.short()))
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {verdict} |",
            out.config.workloads[wl].name,
            if pre { "on" } else { "off" },
            name(a),
            name(b)
        );
    }
    s
}

fn find_wl(out: &Outcome, name: &str) -> Option<usize> {
    out.config.workloads.iter().position(|w| w.name == name)
}

/// The targets, checked against what was measured (never tuned to them).
pub fn targets(out: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    let has = |p: Policy| out.config.policies.contains(&p);
    // 1. The seed's claim.
    if let (Some(wl), true, true, true) = (
        find_wl(out, "seed"),
        out.config.preempt.contains(&false),
        has(Policy::AfterPrecopy),
        has(Policy::AtOnce),
    ) {
        let st = ratio(
            out,
            wl,
            false,
            Policy::AfterPrecopy,
            Policy::AtOnce,
            "longest frame interval",
            stall_metric,
        );
        let tt = ratio(
            out,
            wl,
            false,
            Policy::AfterPrecopy,
            Policy::AtOnce,
            "total time",
            time_metric,
        );
        let met = |r: &Ratio, lim: f64| match r.ci {
            Some(c) if c.median <= lim => "met",
            Some(_) => "NOT met",
            None => "not measured",
        };
        v.push(format!(
            "**Seed analogue, preempt off, AFTER_PRECOPY / at once**: longest frame stall \
             (interval) {} (target ≤ 0.33: {}); total time {} (target ≤ 1.2: {}).",
            st.text(),
            met(&st, 1.0 / 3.0),
            tt.text(),
            met(&tt, 1.2)
        ));
    }
    // 2. The adaptive policy.
    if has(Policy::Adaptive) && has(Policy::AfterPrecopy) && has(Policy::AtOnce) {
        let mut within = 0;
        let mut cells = 0;
        let mut better_both = Vec::new();
        let mut lines = Vec::new();
        for wl in 0..out.config.workloads.len() {
            for &pre in &out.config.preempt {
                let (Some(a), Some(o), Some(f)) = (
                    median_of(out, wl, pre, Policy::Adaptive),
                    median_of(out, wl, pre, Policy::AtOnce),
                    median_of(out, wl, pre, Policy::AfterPrecopy),
                ) else {
                    continue;
                };
                cells += 1;
                let best = if o <= f {
                    Policy::AtOnce
                } else {
                    Policy::AfterPrecopy
                };
                let r_best = ratio(
                    out,
                    wl,
                    pre,
                    Policy::Adaptive,
                    best,
                    "longest frame interval",
                    stall_metric,
                );
                let r_o = ratio(
                    out,
                    wl,
                    pre,
                    Policy::Adaptive,
                    Policy::AtOnce,
                    "",
                    stall_metric,
                );
                let r_f = ratio(
                    out,
                    wl,
                    pre,
                    Policy::Adaptive,
                    Policy::AfterPrecopy,
                    "",
                    stall_metric,
                );
                let ok = a <= 1.1 * o.min(f);
                if ok {
                    within += 1;
                }
                let strictly = [&r_o, &r_f]
                    .iter()
                    .all(|r| r.ci.is_some_and(|c| c.median < 1.0) && r.sign.p <= 0.05);
                if strictly {
                    better_both.push(format!(
                        "{} preempt {}",
                        out.config.workloads[wl].name,
                        if pre { "on" } else { "off" }
                    ));
                }
                lines.push(format!(
                    "  - {} preempt {}: adaptive {a:.0} ms, at once {o:.0} ms, AFTER_PRECOPY \
                     {f:.0} ms (medians); adaptive / {}: {}; within 10 %: {}{}",
                    out.config.workloads[wl].name,
                    if pre { "on" } else { "off" },
                    best.short(),
                    r_best.text(),
                    if ok { "yes" } else { "NO" },
                    if strictly {
                        "; better than both (p ≤ 0.05 against each)"
                    } else {
                        ""
                    }
                ));
            }
        }
        v.push(format!(
            "**Adaptive**: median longest frame interval within 10 % of the better of at once and \
             AFTER_PRECOPY in {within}/{cells} cells (target: all: {}); strictly better than both \
             (median ratio < 1 and sign test p ≤ 0.05 against each) in {} (target: at least one: {}).\n{}",
            if within == cells && cells > 0 { "met" } else { "NOT met" },
            if better_both.is_empty() {
                "no cell".to_string()
            } else {
                better_both.join(", ")
            },
            if better_both.is_empty() { "NOT met" } else { "met" },
            lines.join("\n")
        ));
    }
    // 3. Blackout over its floor.
    let mut lines = Vec::new();
    for (wl, w) in out.config.workloads.iter().enumerate() {
        for &pre in &out.config.preempt {
            for &p in &out.config.policies {
                if matches!(p, Policy::Control) {
                    continue;
                }
                if p == Policy::Precopy && pre != out.config.preempt[0] {
                    continue; // the same runs in both levels
                }
                let all = cell(out, wl, pre, p);
                let ex: Vec<f64> = all
                    .iter()
                    .filter(|s| mode(s) != Mode::Failed)
                    .filter_map(|s| {
                        s.metrics
                            .blackout_qmp_ms
                            .map(|b| b - s.metrics.blackout_floor_ms)
                    })
                    .collect();
                let agree: Vec<f64> = all
                    .iter()
                    .filter_map(|s| {
                        Some((s.metrics.blackout_qmp_ms? - s.metrics.blackout_guest_ms?).abs())
                    })
                    .collect();
                if ex.is_empty() {
                    continue;
                }
                lines.push(format!(
                    "{} {}{}: {} ms over the floor; |QMP − guest clock| {} ms",
                    w.name,
                    p.short(),
                    if p.uses_preempt() {
                        format!(" (preempt {})", if pre { "on" } else { "off" })
                    } else {
                        String::new()
                    },
                    mcell(&ex, 0),
                    mcell(&agree, 0)
                ));
            }
        }
    }
    if !lines.is_empty() {
        v.push(format!(
            "**Blackout** (source STOP to destination RESUME from QMP's timestamps, minus its \
             floor: the dirty bitmap over the rate plus the added RTT; device state and QEMU's \
             fixed stop/start cost are not measured apart, so they are part of the excess), \
             median [min–max]:\n{}",
            lines
                .iter()
                .map(|l| format!("  - {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    // 4. Non-convergence.
    if let Some(wl) = find_wl(out, "churn") {
        let pc = cell(out, wl, false, Policy::Precopy);
        let mut parts = Vec::new();
        let mut all_ok = true;
        for &pre in &out.config.preempt {
            for &p in &out.config.policies {
                if !p.switches() {
                    continue;
                }
                let all = cell(out, wl, pre, p);
                let done = all.iter().filter(|s| s.result.completed).count();
                all_ok &= done == all.len();
                parts.push(format!(
                    "{} (preempt {}) {done}/{}",
                    p.short(),
                    if pre { "on" } else { "off" },
                    all.len()
                ));
            }
        }
        let aborted = pc.iter().filter(|s| s.result.aborted_at_limit).count();
        v.push(format!(
            "**Churn**: pre-copy only did not converge within {} s in {aborted}/{} runs \
             (target: all: {}); completed: {} (target: all: {}).",
            out.config.env.precopy_limit.as_secs_f64(),
            pc.len(),
            if aborted == pc.len() && !pc.is_empty() {
                "met"
            } else {
                "NOT met"
            },
            parts.join(", "),
            if all_ok { "met" } else { "NOT met" }
        ));
    }
    v
}

/// Facts of the run a reader needs before trusting the tables, written from the data.
pub fn checks(out: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    let migr: Vec<&Sample> = out
        .samples
        .iter()
        .filter(|s| s.planned.policy != Policy::Control)
        .collect();
    let over: Vec<&&Sample> = migr
        .iter()
        .filter(|s| s.result.achieved_mib_s > out.config.link.rate_mib as f64 * 1.05)
        .collect();
    let ach: Vec<f64> = migr
        .iter()
        .map(|s| s.result.achieved_mib_s)
        .filter(|a| *a > 0.0)
        .collect();
    v.push(format!(
        "Link: achieved rate {} MiB/s over all migrations (configured {} MiB/s); {} run(s) above \
         1.05× the configured rate.",
        mcell(&ach, 1),
        out.config.link.rate_mib,
        over.len()
    ));
    let pre_wrong: Vec<String> = migr
        .iter()
        .filter(|s| s.planned.policy.uses_preempt())
        .filter(|s| {
            s.result
                .preempt_set
                .is_some_and(|x| Some(x) != s.planned.preempt)
        })
        .map(|s| {
            format!(
                "block {} {} {}",
                s.planned.block + 1,
                out.config.workloads[s.planned.workload].name,
                s.planned.policy.key()
            )
        })
        .collect();
    let two = migr
        .iter()
        .filter(|s| s.planned.preempt == Some(true) && s.result.went_postcopy)
        .filter(|s| s.result.connections >= 2)
        .count();
    let on = migr
        .iter()
        .filter(|s| s.planned.preempt == Some(true) && s.result.went_postcopy)
        .count();
    v.push(format!(
        "postcopy-preempt: the driver set it as planned in every run{}; {two}/{on} post-copy runs \
         with preempt on showed 2 connections on the link.",
        if pre_wrong.is_empty() {
            String::new()
        } else {
            format!(" except {}", pre_wrong.join(", "))
        }
    ));
    let in_pre = out
        .samples
        .iter()
        .filter(|s| mode(s) == Mode::InPrecopy)
        .count();
    let failed: Vec<String> = out
        .samples
        .iter()
        .filter(|s| mode(s) == Mode::Failed)
        .map(|s| {
            format!(
                "block {} {} {} preempt {}: {}",
                s.planned.block + 1,
                out.config.workloads[s.planned.workload].name,
                s.planned.policy.key(),
                pre_key(s.planned.preempt),
                s.result.error.clone().unwrap_or_default()
            )
        })
        .collect();
    v.push(format!(
        "{in_pre} run(s) of a switching policy completed in pre-copy (shown in rows of their own); \
         {} failed{}.",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join("; "))
        }
    ));
    let bad: u64 = out.samples.iter().map(|s| s.result.check_failures).sum();
    let ok: u64 = out.samples.iter().map(|s| s.result.checks_ok).sum();
    v.push(format!(
        "Guest memory checks: {ok} CHECK OK, {bad} failure line(s) over all runs."
    ));
    v
}

/// What this run showed, in sentences computed from its data (no figure is typed in by hand).
pub fn findings(out: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    let c = &out.config;
    let med = |wl: usize, pre: bool, p: Policy| median_of(out, wl, pre, p);
    let ms = |x: Option<f64>| {
        x.map(|x| format!("{x:.0} ms"))
            .unwrap_or_else(|| "—".into())
    };
    // The flag against at once, cell by cell.
    if c.policies.contains(&Policy::AfterPrecopy) && c.policies.contains(&Policy::AtOnce) {
        let mut parts = Vec::new();
        for (wl, w) in c.workloads.iter().enumerate() {
            for &pre in &c.preempt {
                let r = ratio(
                    out,
                    wl,
                    pre,
                    Policy::AfterPrecopy,
                    Policy::AtOnce,
                    "",
                    stall_metric,
                );
                parts.push(format!(
                    "{} preempt {}: {} vs {} ({})",
                    w.name,
                    if pre { "on" } else { "off" },
                    ms(med(wl, pre, Policy::AfterPrecopy)),
                    ms(med(wl, pre, Policy::AtOnce)),
                    r.text()
                ));
            }
        }
        v.push(format!(
            "AFTER_PRECOPY against post-copy at once, median longest frame interval (paired \
             ratio): {}.",
            parts.join("; ")
        ));
    }
    // What preempt changed.
    let mut parts = Vec::new();
    for (wl, w) in c.workloads.iter().enumerate() {
        for &p in &c.policies {
            if !p.uses_preempt() || c.preempt.len() < 2 {
                continue;
            }
            parts.push(format!(
                "{} {}: off {}, on {}",
                w.name,
                p.short(),
                ms(med(wl, false, p)),
                ms(med(wl, true, p))
            ));
        }
    }
    if !parts.is_empty() {
        v.push(format!(
            "postcopy-preempt off → on, median longest frame interval (different runs, not \
             paired): {}.",
            parts.join("; ")
        ));
    }
    // Where the policies did not switch.
    for &p in &c.policies {
        if !p.switches() {
            continue;
        }
        let mut parts = Vec::new();
        for (wl, w) in c.workloads.iter().enumerate() {
            for &pre in &c.preempt {
                let all = cell(out, wl, pre, p);
                let stayed: Vec<&Sample> = all
                    .iter()
                    .copied()
                    .filter(|s| mode(s) == Mode::InPrecopy)
                    .collect();
                if stayed.is_empty() {
                    continue;
                }
                let b: Vec<f64> = stayed
                    .iter()
                    .filter_map(|s| s.metrics.blackout_qmp_ms)
                    .collect();
                parts.push(format!(
                    "{} preempt {} {}/{} (blackout {} ms)",
                    w.name,
                    if pre { "on" } else { "off" },
                    stayed.len(),
                    all.len(),
                    mcell(&b, 0)
                ));
            }
        }
        if !parts.is_empty() {
            v.push(format!(
                "{} completed in pre-copy in: {}.",
                p.short(),
                parts.join("; ")
            ));
        }
    }
    // The noise floor.
    let mut parts = Vec::new();
    for (wl, w) in c.workloads.iter().enumerate() {
        let ctl: Vec<f64> = cell(out, wl, false, Policy::Control)
            .iter()
            .map(|s| s.metrics.longest_interval_ms)
            .collect();
        if !ctl.is_empty() {
            parts.push(format!("{} {} ms", w.name, mcell(&ctl, 0)));
        }
    }
    if !parts.is_empty() {
        v.push(format!(
            "Noise floor: the longest frame interval without any migration was {}.",
            parts.join(", ")
        ));
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

fn summary_csv(out: &Outcome) -> String {
    let mut s = String::from(
        "workload,preempt,row,policy,runs,in_row,outcome,longest_interval_ms_med,\
         longest_stall_ms_med,stall_sum_ms_med,frames_missed_med,degraded_ms_med,not_recovered,\
         blackout_qmp_ms_med,blackout_guest_ms_med,blackout_excess_ms_med,total_s_med,\
         total_over_floor_med,sent_twice_mib_med,achieved_mib_s_med,backlog_kib_med\n",
    );
    let m = |v: &[f64]| {
        mmm(v)
            .map(|x| format!("{:.3}", x.0))
            .unwrap_or_else(|| "none".into())
    };
    for (wl, w) in out.config.workloads.iter().enumerate() {
        for &pre in &out.config.preempt {
            for r in rows(out, wl, pre) {
                let _ = writeln!(
                    s,
                    "{},{},\"{}\",{},{},{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    w.name,
                    if pre { "on" } else { "off" },
                    r.label,
                    r.policy.map(Policy::key).unwrap_or(""),
                    r.runs,
                    r.in_row,
                    r.outcome,
                    m(&r.longest_interval),
                    m(&r.longest_stall),
                    m(&r.stall_sum),
                    m(&r.missed),
                    m(&r.degraded),
                    r.not_recovered,
                    m(&r.blackout_qmp),
                    m(&r.blackout_guest),
                    m(&r.blackout_excess),
                    m(&r.total_s),
                    m(&r.over_floor),
                    m(&r.sent_twice),
                    m(&r.achieved),
                    m(&r.backlog_kib),
                );
            }
        }
    }
    s
}

fn ratios_csv(out: &Outcome) -> String {
    let mut s = String::from(
        "workload,preempt,policy,reference,metric,pairs,pairs_in_precopy,median,lo,hi,coverage,below,above,p\n",
    );
    for (wl, w) in out.config.workloads.iter().enumerate() {
        for &pre in &out.config.preempt {
            for r in ratios(out, wl, pre) {
                let c = r.ci;
                let g = |f: fn(&MedianCi) -> f64| {
                    c.as_ref()
                        .map(|c| format!("{:.4}", f(c)))
                        .unwrap_or_else(|| "none".into())
                };
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.4}",
                    w.name,
                    if pre { "on" } else { "off" },
                    r.policy.key(),
                    r.reference.key(),
                    r.what,
                    r.pairs,
                    r.pairs_in_precopy,
                    g(|c| c.median),
                    g(|c| c.lo),
                    g(|c| c.hi),
                    g(|c| c.coverage),
                    r.sign.below,
                    r.sign.above,
                    r.sign.p
                );
            }
        }
    }
    s
}

/// The report page (docs/benchmark.md is a copy of it).
pub fn page(out: &Outcome) -> String {
    page_linked(out, "")
}

/// The report page with its links to the plots and CSV files prefixed by `prefix` (the output
/// directory as seen from where the page is put; "" beside them).
pub fn page_linked(out: &Outcome, prefix: &str) -> String {
    let c = &out.config;
    let m = &out.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmark: does one pre-copy pass pay off for a video guest?\n\n\
         Generated by `postcopy bench` on {}; the whole run took {:.1} min. Method and metric \
         definitions: docs/benchmark-method.md. Issue 14 is the question.\n\n    {}\n",
        m.date,
        out.elapsed.as_secs_f64() / 60.0,
        c.command
    );
    let _ = writeln!(
        s,
        "To reproduce (Debian 12, root; see the README):\n\n\
         \x20   ci/migrate --postcopy --postcopy-after-precopy   # installs QEMU 10.0, builds target/release/postcopy\n\
         \x20   qemu-fixtures/guest/build.sh target/guest        # the guest kernel\n\
         \x20   target/release/postcopy bench --seed {} --out docs/bench --doc docs/benchmark.md   # the default set: this page, CSV, SVG\n\
         \x20   target/release/postcopy bench --quick            # one block of every cell, small guests\n\n\
         Options: `--reps`, `--reps-other`, `--seed`, `--preempt off,on`, `--policies`, \
         `--workloads`, `--workload NAME:MEM:GUEST`, `--link-rate`, `--rtt-ms`, \
         `--precopy-limit`; `postcopy bench --help`.\n",
        c.seed
    );
    let _ = writeln!(s, "## Machine and load\n");
    let loads: Vec<f64> = out.samples.iter().map(|x| x.load).collect();
    let _ = writeln!(
        s,
        "- {} CPUs (nproc), {}\n- {}\n- {}\n- load average (1, 5, 15 min) before: {}, after: {}; \
         1-minute load at the start of each run: {}\n- other CI work running when the benchmark \
         started: {}\n",
        m.nproc,
        m.cpu,
        m.qemu,
        m.kernel,
        m.load_before,
        m.load_after,
        mcell(&loads, 2),
        if m.busy_before.is_empty() {
            "none (pgrep found no .ci/run, ci/e2e, ci/patches or ci/newest)".to_string()
        } else {
            format!("`{}`", m.busy_before.replace('\n', "`; `"))
        }
    );
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(
        s,
        "Two QEMUs (TCG, `-M pc`) with our guest kernel in frame mode \
         (qemu-fixtures/guest, `mode=frame`: 25 frames/s on the guest's clock, each reading a \
         2 MiB window of the video region in shuffled page order, the 256 KiB kernel set, and \
         writing the 256 KiB frame buffer), each QEMU in its host of the testbed \
         (docs/testbed.md): a veth pair shaped by the kernel's `tbf` at {} MiB/s each way, TCP \
         buffers sized to the link, {}. Every connection of a migration crosses the same shaped \
         link. QEMU's own caps are off.\n\n\
         **postcopy-preempt**: *on* is libvirt 11.3's default (both QEMUs offer it, the driver \
         sets it); *off* is 2014's situation: the destination's monitor is reached through a \
         relay that removes `postcopy-preempt` from its `query-migrate-capabilities` reply \
         (tools/src/bench/qmp_filter.rs), so the driver leaves it off on both sides, and \
         requested pages queue behind the background stream. Policies that do not set \
         VIR_MIGRATE_POSTCOPY (pre-copy only, control) run once per block and stand in both \
         levels' tables.\n",
        c.link.rate_mib,
        if c.link.rtt_ms == 0 {
            "no added round trip".to_string()
        } else {
            format!("{} ms added round trip (the delay stage)", c.link.rtt_ms)
        }
    );
    let _ = writeln!(s, "Workloads:\n");
    for w in &c.workloads {
        let _ = writeln!(
            s,
            "- **{}** (`-m {}`, guest `{}`; {:.1} MiB must cross): {}",
            w.name,
            w.memory_mib,
            w.guest,
            w.must_cross_bytes() as f64 / 1048576.0,
            w.what
        );
    }
    let _ = writeln!(
        s,
        "\nPolicies:\n\n\
         - no migration (control): the guest is watched for {:.0} s on the source: the noise \
         floor of every frame metric.\n\
         - pre-copy only: VIR_MIGRATE_LIVE; aborted (AbortJob) after {:.0} s: \"did not converge\".\n\
         - post-copy at once: VIR_MIGRATE_POSTCOPY, StartPostCopy from another thread on \
         MIGRATION_ITERATION 1 (right after `migrate`).\n\
         - POSTCOPY_AFTER_PRECOPY: VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, \
         the driver switches on MIGRATION_PASS 2.\n\
         - half-pass and adaptive: VIR_MIGRATE_POSTCOPY with our `lpc.switch_policy` \
         (docs/driver-behaviour.md §7.1), `lpc.switch_policy.rtt` = the added RTT.\n\n\
         virsh-style and Nova-style switching are not in the default set: they switch where \
         AFTER_PRECOPY does, later by their latency (`--policies client-event,client-poll`).\n",
        c.env.control.as_secs_f64(),
        c.env.precopy_limit.as_secs_f64()
    );
    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- **Blocks**: {} blocks; every cell of at once, AFTER_PRECOPY and adaptive (the cells \
         that decide a target) runs once per block; pre-copy only, half-pass and control run in \
         the first {} blocks. Within each block the order of all runs is shuffled (xorshift64*, \
         seed {}). {} runs in all.\n\
         - **Pairs**: a ratio compares two policies' runs of the same block, workload and \
         preempt level; the table gives the median ratio, a distribution-free interval for that \
         median (order statistics; its exact coverage is printed: with 6 pairs the range covers \
         96.9 %), how many pairs are below 1, and the exact two-sided sign test (6 of 6 one way: \
         p = 0.031). Ratios use the longest frame interval, which is the longest stall when there \
         is one and is never 0.\n\
         - **Runs not through post-copy**: a switching policy whose migration completed in \
         pre-copy is shown in a row of its own and counted in the outcome column; pairs that \
         include one are counted next to each ratio.\n\
         - **Frames** are merged from both serial consoles by frame number; the window is the \
         migrate call to {:.1} s after it returned.\n",
        c.reps.max(c.reps_other),
        c.reps_other,
        c.seed,
        out.samples.len(),
        c.env.tail.as_secs_f64()
    );
    let _ = writeln!(s, "## What is measured\n");
    let _ = writeln!(
        s,
        "- **longest frame interval**, **longest stall**, **stall sum**, **frames missed**: a \
         stall is an interval between frames (host clock) longer than twice the period (80 ms); \
         frames missed per stall: floor(stall / 40 ms) − 1.\n\
         - **degraded period**: from the source's STOP until the frame rate holds ≥ 90 % of \
         nominal for 1 s (\"not recovered\": not within the window).\n\
         - **blackout (QMP)**: the source's STOP to the destination's RESUME, both from the \
         events' own timestamps (one host clock), read from the run's transcript; **(guest \
         clock)**: the lasting step in host time minus guest time around it (median of 5 \
         frames each side). **Floor**: the dirty bitmap (1 bit per page) over the link's payload \
         rate plus the added RTT.\n\
         - **total time**: the migrate call, start to return; **floor**: the bytes the guest \
         filled (ro + hot + cold + kernel set + frame buffer), which must cross once, over the \
         link's payload rate ({:.1} % of the tbf rate: 1448 of 1514 bytes per frame). **Sent \
         twice**: QEMU's `ram.transferred` minus those bytes.\n\
         - **link achieved**: bytes tbf let through over the time they flowed (testbed \
         `LinkMonitor`); **backlog at switch**: bytes between the QEMUs (source Send-Q, \
         destination Recv-Q) when the source reported SUSPENDED_POSTCOPY.\n\
         - **QEMU downtime**: QEMU's own statistic, reported, not trusted (for post-copy it is \
         not what the guest sees). **pass at end**: QEMU's iteration count when the job ended.\n\
         - The frame metrics cover the whole window (300 ms before the call to the tail after \
         it), so a migration that takes longer has more time for a stall of the machine's own: \
         the control row (the same guest, no migration, {:.0} s) shows what the machine alone \
         does.\n\
         - Each cell: median [min–max] over the runs in the row.\n",
        super::PAYLOAD_SHARE * 100.0,
        c.env.control.as_secs_f64()
    );
    let _ = writeln!(s, "## Checks on this run\n");
    for t in checks(out) {
        let _ = writeln!(s, "- {t}");
    }
    let _ = writeln!(s, "\n## Targets\n");
    for t in targets(out) {
        let _ = writeln!(s, "- {t}");
    }
    let _ = writeln!(s, "\n## Findings (computed from this run)\n");
    for t in findings(out) {
        let _ = writeln!(s, "- {t}");
    }
    let _ = writeln!(
        s,
        "\n## Policy map\n\nWhich policy showed the guest the shortest worst freeze, per cell:\n\n{}",
        policy_map_md(out)
    );
    let _ = writeln!(s, "## Results\n");
    for (wl, w) in c.workloads.iter().enumerate() {
        for &pre in &c.preempt {
            let _ = writeln!(
                s,
                "### {} — postcopy-preempt {}\n\n{}\n\n{}\n{}",
                w.name,
                if pre { "on" } else { "off" },
                w.what,
                table_md(out, wl, pre),
                ratios_md(out, wl, pre),
            );
            let tag = plots::tag(&w.name, pre);
            let _ = writeln!(
                s,
                "![frame intervals over time, one run per policy, {} preempt {}]({prefix}bench-frames-{tag}.svg)\n",
                w.name,
                if pre { "on" } else { "off" }
            );
        }
        let _ = writeln!(
            s,
            "![longest frame interval of every run, {n}]({prefix}bench-longest-{n}.svg)\n",
            n = w.name
        );
    }
    let _ = writeln!(s, "## Replay speed\n\n{}", replay_md(out));
    let _ = writeln!(
        s,
        "Files: [`runs.csv`]({prefix}runs.csv) (one line per run), \
         [`summary.csv`]({prefix}summary.csv) (one line per table row), \
         [`ratios.csv`]({prefix}ratios.csv) (one line per comparison), \
         [`frames.csv`]({prefix}frames.csv) (every frame of every run: the plots' data; `run` is \
         block-workload-policy-preempt), the SVG plots."
    );
    s
}

/// Writes runs.csv, summary.csv, ratios.csv, benchmark.md and the plots; prints the targets.
pub fn write_all(out: &Outcome) -> Result<(), BenchError> {
    let dir = &out.config.out;
    write_runs_csv(&out.config, &out.samples)?;
    for (name, text) in [
        ("summary.csv", summary_csv(out)),
        ("ratios.csv", ratios_csv(out)),
        ("benchmark.md", page(out)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(werr(&p))?;
    }
    if let Some(doc) = &out.config.doc {
        // Links from the page's directory to the output directory.
        let base = doc.parent().unwrap_or(std::path::Path::new(""));
        let prefix = match dir.strip_prefix(base) {
            Ok(rel) if rel.as_os_str().is_empty() => String::new(),
            Ok(rel) => format!("{}/", rel.display()),
            Err(_) => format!("{}/", dir.display()),
        };
        std::fs::write(doc, page_linked(out, &prefix)).map_err(werr(doc))?;
    }
    plots::write_all(out)?;
    for t in targets(out) {
        println!("- {t}");
    }
    println!("\n{}", policy_map_md(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Env, LinkSpec, Machine, Metrics, Planned, RunResult, Workload};
    use std::path::PathBuf;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            env: Env {
                qemu: PathBuf::new(),
                qemu_root: None,
                kernel: PathBuf::new(),
                workdir: PathBuf::new(),
                precopy_limit: Duration::from_secs(6),
                control: Duration::from_secs(3),
                tail: Duration::from_secs(1),
                poll: Duration::from_millis(1),
                deadline: Duration::from_secs(60),
            },
            workloads: vec![Workload {
                name: "seed".into(),
                what: "test".into(),
                memory_mib: 64,
                guest: "mode=frame ro=32 hot=8 cold=4".into(),
            }],
            link: LinkSpec {
                rate_mib: 64,
                rtt_ms: 0,
            },
            policies: vec![Policy::Control, Policy::AtOnce, Policy::AfterPrecopy],
            preempt: vec![false],
            reps: 6,
            reps_other: 1,
            seed: 1,
            out: PathBuf::new(),
            doc: None,
            replay_n: 0,
            fixtures: PathBuf::new(),
            command: "test".into(),
        }
    }

    fn sample(block: usize, policy: Policy, longest: f64, total_s: f64, postcopy: bool) -> Sample {
        Sample {
            planned: Planned {
                block,
                order: 0,
                workload: 0,
                preempt: policy.uses_preempt().then_some(false),
                policy,
            },
            result: RunResult {
                completed: true,
                went_postcopy: postcopy,
                total_s,
                qmp_stop_ms: Some(100.0),
                qmp_resume_ms: Some(130.0),
                ..RunResult::default()
            },
            metrics: Metrics {
                frames: 50,
                longest_interval_ms: longest,
                longest_stall_ms: longest,
                blackout_qmp_ms: Some(30.0),
                floor_s: 1.0,
                ..Metrics::default()
            },
            load: 1.0,
        }
    }

    /// Six blocks: at once 900 ms and 2.0 s each time; AFTER_PRECOPY 200 ms and 2.2 s, but in
    /// block 3 it completed in pre-copy (300 ms); one control run at 50 ms.
    fn outcome() -> Outcome {
        let mut samples = vec![sample(0, Policy::Control, 50.0, 0.0, false)];
        for b in 0..6 {
            samples.push(sample(b, Policy::AtOnce, 900.0, 2.0, true));
            let in_pre = b == 2;
            samples.push(sample(
                b,
                Policy::AfterPrecopy,
                if in_pre { 300.0 } else { 200.0 },
                2.2,
                !in_pre,
            ));
        }
        Outcome {
            config: config(),
            samples,
            replay: None,
            machine: Machine::default(),
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_run_that_did_not_switch_gets_a_row_of_its_own_and_is_counted_in_the_ratio() {
        let out = outcome();
        let rows = rows(&out, 0, false);
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "no migration (control)",
                "post-copy at once",
                "POSTCOPY_AFTER_PRECOPY",
                "AFTER_PRECOPY: completed in pre-copy (no switch)"
            ]
        );
        assert_eq!(
            rows[2].outcome,
            "5/6 via post-copy, 1/6 completed in pre-copy"
        );
        assert_eq!((rows[2].runs, rows[2].in_row), (6, 5));
        assert_eq!(rows[3].longest_interval, vec![300.0]);
        // Ratios 200/900 five times and 300/900 once: median 2/9; all six below 1: p = 2/64.
        let r = ratio(
            &out,
            0,
            false,
            Policy::AfterPrecopy,
            Policy::AtOnce,
            "longest frame interval",
            stall_metric,
        );
        let c = r.ci.expect("pairs");
        assert!((c.median - 2.0 / 9.0).abs() < 1e-12);
        assert!((c.hi - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((r.pairs, r.pairs_in_precopy, r.sign.below), (6, 1, 6));
        assert!((r.sign.p - 0.03125).abs() < 1e-12);
        assert_eq!(
            r.text(),
            "0.22 [0.22–0.33, 96.9 %], 6/6 below 1, p = 0.031; 1 pair(s) with a run completed in pre-copy"
        );
    }

    #[test]
    fn the_seed_target_and_the_policy_map_come_from_the_pairs() {
        let out = outcome();
        let t = targets(&out);
        // 2/9 <= 1/3: met; total time 2.2 / 2.0 = 1.1 <= 1.2: met.
        assert!(
            t[0].contains("(target ≤ 0.33: met)") && t[0].contains("(target ≤ 1.2: met)"),
            "{}",
            t[0]
        );
        let map = policy_map(&out);
        // AFTER_PRECOPY's median over all its completed runs: 200 ms; at once 900 ms.
        assert_eq!(
            map,
            vec![(
                0,
                false,
                Some((Policy::AfterPrecopy, 200.0)),
                Some((Policy::AtOnce, 900.0))
            )]
        );
        let md = table_md(&out, 0, false);
        assert_eq!(md.lines().count(), 2 + 4, "{md}");
        assert!(!md.contains("NaN"));
    }
}
