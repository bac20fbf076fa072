//! Hand-written SVG plots: heartbeat gaps over time per policy, and bars of the longest gap and
//! the total time (median, min–max whiskers).

use std::fmt::Write as _;

use super::{mmm, report, Outcome, Policy, Sample};

const COLORS: [&str; 5] = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

fn color(p: Policy) -> &'static str {
    COLORS[Policy::ALL.iter().position(|&q| q == p).unwrap_or(0) % COLORS.len()]
}

/// The file tag of one (link, workload): the workload's name, with the link index when several.
pub fn tag(link: usize, wl: &str, links: usize) -> String {
    if links > 1 {
        format!("{wl}-l{link}")
    } else {
        wl.to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn head(w: f64, h: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    )
}

/// The run shown for a policy: the one with the median longest gap.
fn representative(out: &Outcome, link: usize, wl: usize, p: Policy) -> Option<&Sample> {
    let mut v: Vec<&Sample> = out
        .samples
        .iter()
        .filter(|s| s.link == link && s.workload == wl && s.policy == p && !s.gaps.gaps.is_empty())
        .collect();
    v.sort_by(|a, b| a.gaps.longest_ms.total_cmp(&b.gaps.longest_ms));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

fn gaps_svg(out: &Outcome, link: usize, wl: usize) -> String {
    let pols = &out.config.policies;
    let (w, ph, left, top) = (920.0, 100.0, 70.0, 40.0);
    let h = top + ph * pols.len() as f64 + 45.0;
    let reps: Vec<Option<&Sample>> = pols
        .iter()
        .map(|&p| representative(out, link, wl, p))
        .collect();
    let xmax = reps
        .iter()
        .flatten()
        .flat_map(|s| s.gaps.gaps.iter().map(|g| (g.0 + g.1) / 1000.0))
        .fold(1.0f64, f64::max);
    let beat = super::beat_of(&out.config.workloads[wl].guest) as f64;
    let ymin = (beat / 2.0).max(1.0);
    let ymax = reps
        .iter()
        .flatten()
        .map(|s| s.gaps.longest_ms)
        .fold(beat * 4.0, f64::max)
        * 1.3;
    let pw = w - left - 20.0;
    let x = |t: f64| left + t / xmax * pw;
    let ly = |v: f64, y0: f64| {
        let f = (v.max(ymin).ln() - ymin.ln()) / (ymax.ln() - ymin.ln());
        y0 + ph - 12.0 - f * (ph - 22.0)
    };
    let l = out.config.links[link];
    let mut s = head(w, h);
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"18\" font-size=\"14\">Heartbeat gaps, workload {} (link {} MiB/s, RTT +{} ms); \
         beat {beat} ms; run shown: the median longest gap of each policy</text>",
        esc(&out.config.workloads[wl].name),
        l.rate_mib,
        l.rtt_ms
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"32\" fill=\"#555\">y: gap to the previous beat, ms (log scale); \
         orange dashed: postcopy-active; black dashed: migration returned</text>"
    );
    for (i, (&p, r)) in pols.iter().zip(&reps).enumerate() {
        let y0 = top + ph * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{}\" width=\"{pw}\" height=\"{}\" fill=\"none\" stroke=\"#ccc\"/>",
            y0 + 2.0,
            ph - 12.0
        );
        for v in [beat, 100.0, 1000.0, 10000.0] {
            if v < ymax && v >= ymin {
                let yy = ly(v, y0);
                let _ = writeln!(
                    s,
                    "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>\
                     <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\" font-size=\"9\">{v}</text>",
                    left + pw,
                    left - 4.0,
                    yy + 3.0
                );
            }
        }
        let Some(r) = r else {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\">{}: no data</text>",
                left + 8.0,
                y0 + 20.0,
                esc(p.label())
            );
            continue;
        };
        let c = color(p);
        for &(at, g) in &r.gaps.gaps {
            let xx = x((at + g) / 1000.0);
            let _ = write!(
                s,
                "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\"/>",
                y0 + ph - 10.0,
                ly(g, y0)
            );
        }
        s.push('\n');
        if let Some(sw) = r.result.switch_at_ms {
            let xx = x(sw / 1000.0);
            let _ = writeln!(
                s,
                "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#ff7f0e\" stroke-dasharray=\"4 3\"/>",
                y0 + 2.0,
                y0 + ph - 10.0
            );
        }
        let xx = x(r.result.end_ms / 1000.0);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>",
            y0 + 2.0,
            y0 + ph - 10.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\" font-weight=\"bold\">{} (rep {}): longest {:.0} ms, stall {:.0} ms{}</text>",
            left + 6.0,
            y0 + 15.0,
            esc(p.label()),
            r.rep + 1,
            r.gaps.longest_ms,
            r.gaps.stall_ms,
            if r.result.aborted_at_limit {
                ", did not converge"
            } else {
                ""
            }
        );
    }
    let yb = top + ph * pols.len() as f64;
    let mut t = 0.0;
    let step = if xmax > 40.0 {
        10.0
    } else if xmax > 15.0 {
        5.0
    } else if xmax > 6.0 {
        2.0
    } else {
        1.0
    };
    while t <= xmax + 1e-9 {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{t}</text>",
            x(t),
            yb + 8.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the migrate call</text></svg>",
        left + pw / 2.0,
        yb + 28.0
    );
    s
}

fn bars_svg(out: &Outcome, link: usize, wl: usize) -> String {
    let rows = report::rows(out, link, wl);
    let (w, h) = (920.0, 330.0);
    let mut s = head(w, h);
    let l = out.config.links[link];
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"18\" font-size=\"14\">Workload {} (link {} MiB/s, RTT +{} ms): median, whiskers min–max over {} repetitions</text>",
        esc(&out.config.workloads[wl].name),
        l.rate_mib,
        l.rtt_ms,
        out.config.reps
    );
    type Get = fn(&report::Row) -> &Vec<f64>;
    let panels: [(&str, Get); 3] = [
        ("longest heartbeat gap, ms", |r| &r.longest),
        ("total migration time, s", |r| &r.total_s),
        ("slowest guest verify pass, ms", |r| &r.slowest_pass),
    ];
    for (pi, (title, get)) in panels.iter().enumerate() {
        let x0 = 20.0 + pi as f64 * 303.0;
        let (pw, y0, phh) = (285.0, 60.0, 200.0);
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"44\" font-size=\"12\" font-weight=\"bold\">{title}</text>"
        );
        let vmax = rows
            .iter()
            .filter_map(|r| mmm(get(r)).map(|m| m.2))
            .fold(1e-9f64, f64::max)
            * 1.15;
        let n = rows.len().max(1) as f64;
        let bw = pw / n;
        let yv = |v: f64| y0 + phh - v / vmax * phh;
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\"/>",
            x0 + pw,
            y0 + phh,
            y0 + phh
        );
        for (i, r) in rows.iter().enumerate() {
            let p = r.policy.unwrap_or(Policy::AtOnce);
            let bx = x0 + bw * i as f64 + bw * 0.15;
            let bwi = bw * 0.7;
            let c = color(p);
            if let Some((m, lo, hi)) = mmm(get(r)) {
                let _ = writeln!(
                    s,
                    "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bwi:.1}\" height=\"{:.1}\" fill=\"{c}\" fill-opacity=\"0.8\"/>",
                    yv(m),
                    (y0 + phh - yv(m)).max(0.0)
                );
                let cx = bx + bwi / 2.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
                    yv(lo),
                    yv(hi),
                    cx - 6.0,
                    cx + 6.0,
                    yv(lo),
                    yv(lo),
                    cx - 6.0,
                    cx + 6.0,
                    yv(hi),
                    yv(hi)
                );
                let label = if m >= 100.0 {
                    format!("{m:.0}")
                } else {
                    format!("{m:.1}")
                };
                let _ = writeln!(
                    s,
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}{}</text>",
                    yv(hi) - 4.0,
                    if r.aborted > 0 { "*" } else { "" }
                );
            }
            let words: Vec<&str> = p.short().split(' ').collect();
            let mid = words.len().div_ceil(2).max(1);
            for (k, line) in [words[..mid].join(" "), words[mid..].join(" ")]
                .iter()
                .enumerate()
            {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"8\">{}</text>",
                    bx + bwi / 2.0,
                    y0 + phh + 14.0 + 11.0 * k as f64,
                    esc(line)
                );
            }
        }
    }
    if rows.iter().any(|r| r.aborted > 0) {
        let _ = writeln!(
            s,
            "<text x=\"20\" y=\"{}\" fill=\"#555\">* did not converge: aborted at the pre-copy time limit</text>",
            h - 8.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes bench-gaps-TAG.svg and bench-bars-TAG.svg into the output directory.
pub fn write(out: &Outcome, link: usize, wl: usize) -> Result<(), super::BenchError> {
    let t = tag(link, &out.config.workloads[wl].name, out.config.links.len());
    for (name, text) in [
        (format!("bench-gaps-{t}.svg"), gaps_svg(out, link, wl)),
        (format!("bench-bars-{t}.svg"), bars_svg(out, link, wl)),
    ] {
        let p = out.config.out.join(name);
        std::fs::write(&p, text).map_err(super::BenchError::write(&p))?;
    }
    Ok(())
}
