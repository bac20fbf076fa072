//! The benchmark's plots, drawn with `plotters` (SVG backend: text is SVG `<text>`, so no system
//! font or C library is needed).
//!
//! - `bench-frames-<workload>-<preempt>.svg`: the frame timeline of one run per policy (the run
//!   with the median longest frame interval): each frame's interval since the previous one over
//!   the time since the migrate call, with QMP's STOP and RESUME marked;
//! - `bench-longest-<workload>.svg`: the longest frame interval of every run, per policy and
//!   preempt level.

use std::path::Path;

use plotters::prelude::*;

use super::report::{cell, mode, Mode};
use super::{BenchError, Outcome, Policy, Sample};

/// The file tag of one (workload, preempt level).
pub fn tag(wl: &str, preempt: bool) -> String {
    format!("{wl}-preempt-{}", if preempt { "on" } else { "off" })
}

fn colour(p: Policy) -> RGBColor {
    match p {
        Policy::Control => RGBColor(127, 127, 127),
        Policy::Precopy => RGBColor(148, 103, 189),
        Policy::AtOnce => RGBColor(214, 39, 40),
        Policy::AfterPrecopy => RGBColor(31, 119, 180),
        Policy::HalfPass => RGBColor(255, 127, 14),
        Policy::Adaptive => RGBColor(44, 160, 44),
        Policy::ClientEvent => RGBColor(140, 86, 75),
        Policy::ClientPoll => RGBColor(227, 119, 194),
    }
}

fn plot_err(path: &Path) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> BenchError + '_ {
    move |source| BenchError::Plot {
        path: path.to_path_buf(),
        source,
    }
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// The run shown for a policy: the one with the median longest frame interval among the runs
/// that went as intended, or else among those that completed in pre-copy.
fn representative<'a>(out: &'a Outcome, wl: usize, pre: bool, p: Policy) -> Option<&'a Sample> {
    let of = |m: Mode| -> Vec<&'a Sample> {
        cell(out, wl, pre, p)
            .into_iter()
            .filter(|s| mode(s) == m && s.result.frames.len() > 1)
            .collect()
    };
    let mut v = of(Mode::AsIntended);
    if v.is_empty() {
        v = of(Mode::InPrecopy);
    }
    v.sort_by(|a, b| {
        a.metrics
            .longest_interval_ms
            .total_cmp(&b.metrics.longest_interval_ms)
    });
    v.get(v.len().saturating_sub(1) / 2).copied()
}

fn frames_svg(out: &Outcome, wl: usize, pre: bool, path: &Path) -> Result<(), BenchError> {
    let pols: Vec<Policy> = out.config.policies.clone();
    let shown: Vec<(Policy, Option<&Sample>)> = pols
        .iter()
        .map(|&p| (p, representative(out, wl, pre, p)))
        .collect();
    let xmax = shown
        .iter()
        .filter_map(|(_, s)| s.and_then(|s| s.result.frames.last()).map(|f| f.host_ms))
        .fold(1000.0f64, f64::max)
        / 1000.0;
    let xmin = shown
        .iter()
        .filter_map(|(_, s)| s.and_then(|s| s.result.frames.first()).map(|f| f.host_ms))
        .fold(0.0f64, f64::min)
        / 1000.0;
    let ymax = shown
        .iter()
        .filter_map(|(_, s)| s.map(|s| s.metrics.longest_interval_ms))
        .fold(200.0f64, f64::max)
        * 1.3;
    let h = 40 + 150 * shown.len() as u32;
    let root = SVGBackend::new(path, (960, h)).into_drawing_area();
    let e = plot_err(path);
    root.fill(&WHITE).map_err(boxed).map_err(&e)?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            &format!(
                "{} — postcopy-preempt {}: frame interval (ms, log) over time since the migrate call (s)",
                out.config.workloads[wl].name,
                if pre { "on" } else { "off" }
            ),
            ("sans-serif", 16),
        )
        .map_err(boxed)
        .map_err(&e)?;
    let panels = body.split_evenly((shown.len(), 1));
    for ((p, s), area) in shown.iter().zip(panels.iter()) {
        let caption = match s {
            Some(s) => format!(
                "{}{} (block {}): longest {:.0} ms, {} frames missed; red: STOP, green: RESUME",
                p.label(),
                if mode(s) == Mode::InPrecopy {
                    ", completed in pre-copy"
                } else {
                    ""
                },
                s.planned.block + 1,
                s.metrics.longest_interval_ms,
                s.metrics.frames_missed
            ),
            None => format!("{}: no run completed", p.label()),
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 13))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(50)
            .build_cartesian_2d(xmin..xmax, (10f64..ymax).log_scale())
            .map_err(boxed)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(12)
            .y_labels(5)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(boxed)
            .map_err(&e)?;
        let Some(s) = s else { continue };
        // Twice the period: above this line an interval is a stall.
        let two_p = 2000.0 / out.config.workloads[wl].fps();
        chart
            .draw_series(LineSeries::new(
                [(xmin, two_p), (xmax, two_p)],
                BLACK.mix(0.3),
            ))
            .map_err(boxed)
            .map_err(&e)?;
        for (t, c) in [(s.result.qmp_stop_ms, RED), (s.result.qmp_resume_ms, GREEN)] {
            if let Some(t) = t {
                chart
                    .draw_series(LineSeries::new(
                        [(t / 1000.0, 10.0), (t / 1000.0, ymax)],
                        c.mix(0.6),
                    ))
                    .map_err(boxed)
                    .map_err(&e)?;
            }
        }
        // A step per interval: the wait from one frame to the next, at its length.
        let pts: Vec<(f64, f64)> = s
            .result
            .frames
            .windows(2)
            .flat_map(|w| {
                let d = (w[1].host_ms - w[0].host_ms).max(10.0);
                [(w[0].host_ms / 1000.0, d), (w[1].host_ms / 1000.0, d)]
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts, colour(*p).stroke_width(1)))
            .map_err(boxed)
            .map_err(&e)?;
    }
    root.present().map_err(boxed).map_err(&e)?;
    Ok(())
}

fn longest_svg(out: &Outcome, wl: usize, path: &Path) -> Result<(), BenchError> {
    let pols: Vec<Policy> = out.config.policies.clone();
    let levels = out.config.preempt.clone();
    let mut pts: Vec<(f64, f64, Policy, bool)> = Vec::new();
    for (i, &p) in pols.iter().enumerate() {
        for (j, &pre) in levels.iter().enumerate() {
            if !p.uses_preempt() && j > 0 {
                continue;
            }
            for s in cell(out, wl, pre, p) {
                if mode(s) == Mode::Failed || s.result.frames.len() < 2 {
                    continue;
                }
                let x = i as f64
                    + if p.uses_preempt() {
                        0.25 * j as f64
                    } else {
                        0.0
                    };
                pts.push((
                    x,
                    s.metrics.longest_interval_ms.max(10.0),
                    p,
                    mode(s) == Mode::InPrecopy,
                ));
            }
        }
    }
    let ymax = pts.iter().map(|p| p.1).fold(200.0f64, f64::max) * 1.3;
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    let e = plot_err(path);
    root.fill(&WHITE).map_err(boxed).map_err(&e)?;
    let names: Vec<&'static str> = pols.iter().map(|p| p.short()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: longest frame interval of every run (ms, log); per policy: preempt {} (left){}; hollow: completed in pre-copy",
                out.config.workloads[wl].name,
                if levels.first() == Some(&true) { "on" } else { "off" },
                if levels.len() > 1 { ", then the other level (right)" } else { "" }
            ),
            ("sans-serif", 14),
        )
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..(pols.len() as f64 - 0.25), (10f64..ymax).log_scale())
        .map_err(boxed)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_labels(pols.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(boxed)
        .map_err(&e)?;
    chart
        .draw_series(pts.iter().map(|&(x, y, p, hollow)| {
            let style = if hollow {
                colour(p).stroke_width(2)
            } else {
                colour(p).filled()
            };
            Circle::new((x, y), 4, style)
        }))
        .map_err(boxed)
        .map_err(&e)?;
    root.present().map_err(boxed).map_err(&e)?;
    Ok(())
}

/// Every plot of the benchmark into its output directory.
pub fn write_all(out: &Outcome) -> Result<(), BenchError> {
    for (wl, w) in out.config.workloads.iter().enumerate() {
        for &pre in &out.config.preempt {
            let p = out
                .config
                .out
                .join(format!("bench-frames-{}.svg", tag(&w.name, pre)));
            frames_svg(out, wl, pre, &p)?;
        }
        let p = out.config.out.join(format!("bench-longest-{}.svg", w.name));
        longest_svg(out, wl, &p)?;
    }
    Ok(())
}
