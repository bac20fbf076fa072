//! Frame metrics (docs/benchmark-method.md): pure functions over the times of the guest's `FR`
//! lines. No clock and no IO: the host times are given, in ms from any origin shared by one run.

/// One frame as the host saw it: when its `FR` line arrived on the host, and the guest clock the
/// line carried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSample {
    pub host_ms: f64,
    pub guest_us: u64,
}

/// Input the metrics cannot be computed from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("frame rate {0} is not a positive number")]
    Fps(f64),
    #[error("the blackout's median window must hold at least one frame")]
    Window,
    #[error("frame {index}: host time {ms} ms is before the previous frame's")]
    HostTimeBackwards { index: usize, ms: f64 },
    #[error("frame {index}: guest clock {us} us is before the previous frame's")]
    GuestTimeBackwards { index: usize, us: u64 },
}

/// One interval between two frames longer than twice the frame period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    /// Host time of the frame before the stall.
    pub start_ms: f64,
    pub len_ms: f64,
    /// Whole frame periods in the stall beyond the first: `floor(len / period) - 1`.
    pub missed: u64,
}

/// The stalls of a run of frames.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameStalls {
    pub stalls: Vec<Stall>,
    /// The longest stall (0 without stalls).
    pub longest_ms: f64,
    /// The stalls' lengths added up.
    pub total_ms: f64,
    /// The stalls' missed frames added up.
    pub frames_missed: u64,
}

/// The blackout as the guest's clock shows it: the largest lasting rise of the clock's standstill
/// (host time elapsed minus guest time elapsed since the first frame) across one frame interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlackoutEstimate {
    /// Host time of the first frame after the rise.
    pub at_ms: f64,
    /// The interval ending at `at_ms`, on the host's and on the guest's clock.
    pub host_gap_ms: f64,
    pub guest_gap_ms: f64,
    /// The rise: the median standstill over the `window` frames from `at_ms` on, minus the median
    /// over the `window` frames before it (fewer at the ends). With a window of 1 it is
    /// `host_gap_ms - guest_gap_ms`.
    pub blackout_ms: f64,
    /// The standstill over the whole run: its median over the last `window` frames minus its
    /// median over the first `window` frames (with a window of 1: (last - first host time) -
    /// (last - first guest time)).
    pub total_ms: f64,
}

fn period_ms(fps: f64) -> Result<f64, MetricsError> {
    if fps.is_finite() && fps > 0.0 {
        Ok(1000.0 / fps)
    } else {
        Err(MetricsError::Fps(fps))
    }
}

fn check_host_order(host_ms: &[f64]) -> Result<(), MetricsError> {
    match host_ms.windows(2).position(|w| w[1] < w[0]) {
        Some(i) => Err(MetricsError::HostTimeBackwards {
            index: i + 1,
            ms: host_ms[i + 1],
        }),
        None => Ok(()),
    }
}

/// The frame stalls: intervals between consecutive frames (host time) longer than twice the
/// frame period `1000 / fps` ms.
pub fn frame_stalls(host_ms: &[f64], fps: f64) -> Result<FrameStalls, MetricsError> {
    let period = period_ms(fps)?;
    check_host_order(host_ms)?;
    let mut out = FrameStalls::default();
    for w in host_ms.windows(2) {
        let len = w[1] - w[0];
        if len > 2.0 * period {
            // len > 2 periods, so the quotient is >= 2 and the subtraction cannot wrap.
            let missed = (len / period).floor() as u64 - 1;
            out.stalls.push(Stall {
                start_ms: w[0],
                len_ms: len,
                missed,
            });
            out.longest_ms = out.longest_ms.max(len);
            out.total_ms += len;
            out.frames_missed += missed;
        }
    }
    Ok(out)
}

/// The degraded period: from `from_ms` (the switch) until the frame rate holds at least 90 % of
/// nominal for 1 s. A window of 1 s starts at `from_ms` or at a frame at or after it; it holds
/// when the frames in (start, start + 1000 ms] number at least `0.9 * fps`. The answer is the
/// first holding window's start minus `from_ms`; `None` when no window that ends within the
/// observed frames holds (the guest did not recover while it was watched).
pub fn degraded_period(
    host_ms: &[f64],
    from_ms: f64,
    fps: f64,
) -> Result<Option<f64>, MetricsError> {
    period_ms(fps)?;
    check_host_order(host_ms)?;
    let Some(&last) = host_ms.last() else {
        return Ok(None);
    };
    let need = 0.9 * fps - 1e-9;
    let first = host_ms.partition_point(|&t| t < from_ms);
    let starts = std::iter::once(from_ms).chain(host_ms[first..].iter().copied());
    for start in starts {
        let end = start + 1000.0;
        if end > last {
            return Ok(None);
        }
        let lo = host_ms.partition_point(|&t| t <= start);
        let hi = host_ms.partition_point(|&t| t <= end);
        if (hi - lo) as f64 >= need {
            return Ok(Some(start - from_ms));
        }
    }
    Ok(None)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The blackout as the guest's clock shows it. The guest's clock stops while the guest is
/// stopped, so the standstill `S(i) = (host_ms[i] - host_ms[0]) - (guest[i] - guest[0])` rises by
/// the time the guest was stopped. A line the host happens to read late raises `S` for that line
/// only (the next line, read on time, brings it back); comparing the medians of `window` frames
/// on each side of an interval keeps such spikes out, as long as fewer than half of a window's
/// lines are late. The interval chosen is the one with the largest min(its own rise, the median
/// step), so a spike is not chosen and the step is placed on the interval that made it.
/// `None` with fewer than two frames.
pub fn blackout_estimate(
    frames: &[FrameSample],
    window: usize,
) -> Result<Option<BlackoutEstimate>, MetricsError> {
    if window == 0 {
        return Err(MetricsError::Window);
    }
    let host: Vec<f64> = frames.iter().map(|f| f.host_ms).collect();
    check_host_order(&host)?;
    if let Some(i) = frames
        .windows(2)
        .position(|w| w[1].guest_us < w[0].guest_us)
    {
        return Err(MetricsError::GuestTimeBackwards {
            index: i + 1,
            us: frames[i + 1].guest_us,
        });
    }
    let Some(first) = frames.first() else {
        return Ok(None);
    };
    let guest_ms = |a: &FrameSample, b: &FrameSample| (b.guest_us - a.guest_us) as f64 / 1000.0;
    let standstill: Vec<f64> = frames
        .iter()
        .map(|f| (f.host_ms - first.host_ms) - guest_ms(first, f))
        .collect();
    let n = frames.len();
    let total_ms =
        median(&standstill[n.saturating_sub(window)..]) - median(&standstill[..window.min(n)]);
    // The interval is the one where the standstill rises both across it (the raw excess) and in
    // the medians around it: the largest min(raw, median step).
    let mut best: Option<(f64, BlackoutEstimate)> = None;
    for i in 1..frames.len() {
        let before = &standstill[i.saturating_sub(window)..i];
        let after = &standstill[i..(i + window).min(frames.len())];
        let blackout_ms = median(after) - median(before);
        let score = blackout_ms.min(standstill[i] - standstill[i - 1]);
        if best.map_or(true, |(b, _)| score > b) {
            best = Some((
                score,
                BlackoutEstimate {
                    at_ms: frames[i].host_ms,
                    host_gap_ms: frames[i].host_ms - frames[i - 1].host_ms,
                    guest_gap_ms: guest_ms(&frames[i - 1], &frames[i]),
                    blackout_ms,
                    total_ms,
                },
            ));
        }
    }
    Ok(best.map(|(_, b)| b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_are_intervals_over_twice_the_period() {
        // 25 fps: period 40 ms, a stall is an interval > 80 ms.
        // Intervals: 40, 40, 120, 40, 40, 80, 40, 1000, 40.
        // 120 -> stall, missed floor(120/40) - 1 = 2.
        // 80 is exactly twice the period: not a stall.
        // 1000 -> stall, missed floor(1000/40) - 1 = 24.
        // Longest 1000, sum 120 + 1000 = 1120, missed 2 + 24 = 26.
        let t = [
            0.0, 40.0, 80.0, 200.0, 240.0, 280.0, 360.0, 400.0, 1400.0, 1440.0,
        ];
        let s = frame_stalls(&t, 25.0).expect("valid input");
        assert_eq!(
            s.stalls,
            vec![
                Stall {
                    start_ms: 80.0,
                    len_ms: 120.0,
                    missed: 2
                },
                Stall {
                    start_ms: 400.0,
                    len_ms: 1000.0,
                    missed: 24
                },
            ]
        );
        assert_eq!(s.longest_ms, 1000.0);
        assert_eq!(s.total_ms, 1120.0);
        assert_eq!(s.frames_missed, 26);
    }

    #[test]
    fn no_stall_on_a_steady_rate_nor_with_one_frame() {
        let t: Vec<f64> = (0..50).map(|i| f64::from(i) * 40.0).collect();
        assert_eq!(frame_stalls(&t, 25.0), Ok(FrameStalls::default()));
        assert_eq!(frame_stalls(&[5.0], 25.0), Ok(FrameStalls::default()));
        assert_eq!(frame_stalls(&[], 25.0), Ok(FrameStalls::default()));
    }

    /// 10 fps: 1 s holds when it has >= 0.9 * 10 = 9 frames in (start, start + 1000].
    /// Frames every 100 ms up to the switch at 1000; then 1600, every 200 ms to 2600, then every
    /// 100 ms to 4000.
    fn recovering() -> Vec<f64> {
        let mut t: Vec<f64> = (0..=10).map(|i| f64::from(i) * 100.0).collect();
        t.extend((0..=5).map(|i| 1600.0 + f64::from(i) * 200.0));
        t.extend((1..=14).map(|i| 2600.0 + f64::from(i) * 100.0));
        t
    }

    #[test]
    fn degraded_period_ends_when_one_second_holds_ninety_percent() {
        // Windows from the switch (1000) and from each frame after it:
        //   1000: (1000,2000] has 1600 1800 2000                        = 3
        //   1600: (1600,2600] has 1800 2000 2200 2400 2600              = 5
        //   1800: (1800,2800] has 2000..2600 by 200 (4) + 2700 2800     = 6
        //   2000: (2000,3000] has 2200 2400 2600 + 2700..3000 (4)       = 7
        //   2200: (2200,3200] has 2400 2600 + 2700..3200 (6)            = 8
        //   2400: (2400,3400] has 2600 + 2700..3400 (8)                 = 9 >= 9: holds
        // Degraded period: 2400 - 1000 = 1400 ms.
        assert_eq!(
            degraded_period(&recovering(), 1000.0, 10.0),
            Ok(Some(1400.0))
        );
    }

    #[test]
    fn no_degraded_period_when_the_rate_holds_at_the_switch() {
        // Every 100 ms from 0 to 3000, switch at 1050: (1050,2050] has 1100..2000 = 10 >= 9.
        let t: Vec<f64> = (0..=30).map(|i| f64::from(i) * 100.0).collect();
        assert_eq!(degraded_period(&t, 1050.0, 10.0), Ok(Some(0.0)));
    }

    #[test]
    fn no_answer_when_the_guest_was_not_watched_long_enough() {
        // Cut at 3300: the first holding window (2400, ends 3400) is not observed; the windows
        // before it do not hold, so the guest is not known to have recovered.
        let t: Vec<f64> = recovering().into_iter().filter(|&x| x <= 3300.0).collect();
        assert_eq!(degraded_period(&t, 1000.0, 10.0), Ok(None));
        assert_eq!(degraded_period(&[], 0.0, 10.0), Ok(None));
        // A switch after the last frame: nothing observed after it.
        assert_eq!(degraded_period(&recovering(), 5000.0, 10.0), Ok(None));
    }

    fn samples(v: &[(f64, u64)]) -> Vec<FrameSample> {
        v.iter()
            .map(|&(host_ms, guest_ms)| FrameSample {
                host_ms,
                guest_us: guest_ms * 1000,
            })
            .collect()
    }

    #[test]
    fn blackout_over_one_interval_is_host_gap_minus_guest_gap() {
        // (host ms, guest ms): intervals host 40 45 1045 40, guest 40 40 40 40 ms.
        // Standstill S = 0 0 5 1010 1010; with a window of 1 the step at i is S(i) - S(i-1):
        // 0, 5, 1005, 0; the largest ends at host 1130. Total: S(last) = 1010.
        let f = samples(&[
            (0.0, 1000),
            (40.0, 1040),
            (85.0, 1080),
            (1130.0, 1120),
            (1170.0, 1160),
        ]);
        let b = blackout_estimate(&f, 1).expect("valid").expect("frames");
        assert_eq!(
            b,
            BlackoutEstimate {
                at_ms: 1130.0,
                host_gap_ms: 1045.0,
                guest_gap_ms: 40.0,
                blackout_ms: 1005.0,
                total_ms: 1010.0,
            }
        );
    }

    #[test]
    fn a_line_read_late_is_no_blackout_with_a_median_window() {
        // Guest frames every 40 ms; the host reads frames 3 and 4 together at 190 (70 and 30 ms
        // late). S = 0 0 0 70 30 0 0 0 0 0.
        // Window 1: the largest step is S(3) - S(2) = 70 at host 190.
        // Window 5: every median of 5 (or fewer at the start) holds at most two of 70 and 30
        // among zeros, so every median is 0 and every step 0: the first interval (i = 1, host 40)
        // is kept, with blackout 0. Total: median of the last five (0) - median of the first five
        // (0 0 0 70 30: 0) = 0.
        let f = samples(&[
            (0.0, 0),
            (40.0, 40),
            (80.0, 80),
            (190.0, 120),
            (190.0, 160),
            (200.0, 200),
            (240.0, 240),
            (280.0, 280),
            (320.0, 320),
            (360.0, 360),
        ]);
        let one = blackout_estimate(&f, 1).expect("valid").expect("frames");
        assert_eq!((one.at_ms, one.blackout_ms), (190.0, 70.0));
        let five = blackout_estimate(&f, 5).expect("valid").expect("frames");
        assert_eq!(
            (five.at_ms, five.blackout_ms, five.total_ms),
            (40.0, 0.0, 0.0)
        );
    }

    #[test]
    fn a_stop_is_a_lasting_step_in_the_standstill() {
        // Guest frames every 40 ms (0..440); the guest is stopped 1000 ms between frames 5 and 6;
        // the host reads frame 8 30 ms late. S = 0 0 0 0 0 0 1000 1000 1030 1000 1000 1000.
        // Window 5, i = 6: medians 1000 (S 6..10) - 0 (S 1..5) = 1000, its own rise 1000.
        // i = 5 has the same median step (1000: S 5..9 = 0 1000 1000 1030 1000) but its own
        // rise is 0, so i = 6 (host 1240, gaps 1040 and 40) is chosen. i = 8: the spike's own
        // rise is 30, its median step 0. Total: median S 7..11 (1000 1030 1000 1000 1000) -
        // median S 0..4 (0) = 1000.
        let mut v: Vec<(f64, u64)> = (0..12u32)
            .map(|i| {
                let g = u64::from(i) * 40;
                (g as f64 + if i >= 6 { 1000.0 } else { 0.0 }, g)
            })
            .collect();
        v[8].0 += 30.0;
        let b = blackout_estimate(&samples(&v), 5)
            .expect("valid")
            .expect("frames");
        assert_eq!(
            b,
            BlackoutEstimate {
                at_ms: 1240.0,
                host_gap_ms: 1040.0,
                guest_gap_ms: 40.0,
                blackout_ms: 1000.0,
                total_ms: 1000.0,
            }
        );
    }

    #[test]
    fn a_stall_while_the_guest_runs_is_no_blackout() {
        // A guest that waits 500 ms for pages: its clock runs (guest gap 495 ms).
        // S = 0 0 5 5: the largest step, window 1, is 5 at host 540; frame_stalls sees 500 ms.
        let f = samples(&[(0.0, 0), (40.0, 40), (540.0, 535), (580.0, 575)]);
        let b = blackout_estimate(&f, 1).expect("valid").expect("frames");
        assert_eq!((b.at_ms, b.blackout_ms, b.total_ms), (540.0, 5.0, 5.0));
        let host: Vec<f64> = f.iter().map(|x| x.host_ms).collect();
        assert_eq!(frame_stalls(&host, 25.0).expect("valid").longest_ms, 500.0);
        assert_eq!(blackout_estimate(&f[..1], 1), Ok(None));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(frame_stalls(&[0.0], 0.0), Err(MetricsError::Fps(0.0)));
        assert_eq!(
            frame_stalls(&[0.0], f64::NAN).map_err(|e| e.to_string()),
            Err("frame rate NaN is not a positive number".to_string())
        );
        assert_eq!(
            degraded_period(&[0.0, 40.0, 30.0], 0.0, 25.0),
            Err(MetricsError::HostTimeBackwards { index: 2, ms: 30.0 })
        );
        let f =
            [(0.0, 100), (40.0, 50)].map(|(host_ms, guest_us)| FrameSample { host_ms, guest_us });
        let e = blackout_estimate(&f, 1).expect_err("guest clock backwards");
        assert_eq!(e, MetricsError::GuestTimeBackwards { index: 1, us: 50 });
        assert_eq!(
            e.to_string(),
            "frame 1: guest clock 50 us is before the previous frame's"
        );
        assert_eq!(blackout_estimate(&f, 0), Err(MetricsError::Window));
    }
}
