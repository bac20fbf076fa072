//! The benchmark's statistics: pure functions, no IO.
//!
//! Policies are compared pair by pair (two runs of the same block, workload and preempt setting),
//! as a ratio `policy / reference` per pair. What is reported for a ratio: its median, a
//! distribution-free confidence interval for that median (order statistics of the binomial), and
//! the exact two-sided sign test of "the ratio is as often above 1 as below" (docs/benchmark.md,
//! "Method"). Neither assumes a distribution of the ratios: with 6 pairs, the only claim the data
//! can make is "all six one way" (p = 2/64 = 0.031), and the interval is the range.

/// Exact two-sided sign test on paired differences: ties (0) are dropped; with `n` non-zero
/// differences of which `k` are in the rarer direction, `p = min(1, 2 * P(Bin(n, 1/2) <= k))`.
/// No difference at all: `p = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignTest {
    /// Differences above 0 / below 0 (ties dropped).
    pub above: usize,
    pub below: usize,
    pub p: f64,
}

/// `sum_{i <= k} C(n, i) / 2^n`, exactly enough for the n a benchmark has (n < 1000).
fn binom_cdf_half(n: usize, k: usize) -> f64 {
    // Terms C(n, i) / 2^n built in log space would lose nothing here either, but the direct
    // recurrence is exact in f64 for n up to ~1000 when scaled as it goes.
    let mut term = 0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX)); // C(n,0)/2^n
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            term *= (n - i + 1) as f64 / i as f64;
        }
        sum += term;
    }
    sum
}

/// The sign test of `diffs` (each a paired difference; NaN counts as a tie).
pub fn sign_test(diffs: &[f64]) -> SignTest {
    let above = diffs.iter().filter(|d| **d > 0.0).count();
    let below = diffs.iter().filter(|d| **d < 0.0).count();
    let n = above + below;
    let p = if n == 0 {
        1.0
    } else {
        (2.0 * binom_cdf_half(n, above.min(below))).min(1.0)
    };
    SignTest { above, below, p }
}

/// A confidence interval for the median from order statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianCi {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    /// The interval's exact coverage, `1 - 2 P(Bin(n, 1/2) <= k - 1)` for ranks `k` and
    /// `n + 1 - k`: the largest k whose coverage is at least `level`, or k = 1 (the range) when
    /// even the range falls short (n <= 5 at 95 %).
    pub coverage: f64,
    pub n: usize,
}

/// The median of `v` with its distribution-free interval at `level` (e.g. 0.95). None when `v`
/// is empty or holds a NaN.
pub fn median_ci(v: &[f64], level: f64) -> Option<MedianCi> {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let coverage_of = |k: usize| 1.0 - 2.0 * binom_cdf_half(n, k - 1);
    let mut k = 1;
    while k < n.div_ceil(2) && coverage_of(k + 1) >= level {
        k += 1;
    }
    let coverage = if n == 1 { 0.0 } else { coverage_of(k) };
    Some(MedianCi {
        median,
        lo: s[k - 1],
        hi: s[n - k],
        coverage,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn six_of_six_one_way_is_two_in_sixty_four() {
        // P(Bin(6, 1/2) <= 0) = 1/64; two-sided: 2/64 = 0.03125.
        let t = sign_test(&[-0.5, -0.1, -0.2, -0.3, -0.9, -0.01]);
        assert_eq!((t.above, t.below), (0, 6));
        assert!(close(t.p, 0.03125), "{}", t.p);
    }

    #[test]
    fn seven_of_eight_and_an_even_split() {
        // P(Bin(8, 1/2) <= 1) = (1 + 8) / 256; two-sided 18/256 = 0.0703125.
        let t = sign_test(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0]);
        assert_eq!((t.above, t.below), (7, 1));
        assert!(close(t.p, 0.0703125), "{}", t.p);
        // 3 of 6: 2 * (1 + 6 + 15 + 20) / 64 = 84/64 > 1: p = 1.
        let t = sign_test(&[1.0, 1.0, 1.0, -1.0, -1.0, -1.0]);
        assert!(close(t.p, 1.0));
    }

    #[test]
    fn ties_are_dropped_and_no_difference_is_p_one() {
        // + + 0 + -> n = 3, all above: 2 * 1/8 = 0.25.
        let t = sign_test(&[0.2, 0.1, 0.0, 0.3]);
        assert_eq!((t.above, t.below), (3, 0));
        assert!(close(t.p, 0.25));
        let t = sign_test(&[0.0, 0.0, f64::NAN]);
        assert_eq!((t.above, t.below, t.p), (0, 0, 1.0));
        assert_eq!(sign_test(&[]).p, 1.0);
    }

    #[test]
    fn the_interval_of_six_is_the_range_with_coverage_31_in_32() {
        // n = 6: ranks (1, 6) cover 1 - 2/64 = 0.96875; ranks (2, 5) cover 1 - 2*7/64 = 0.78125
        // < 0.95, so the interval is the range. Median of 1 2 3 4 5 6 = 3.5.
        let c = median_ci(&[6.0, 1.0, 5.0, 2.0, 4.0, 3.0], 0.95).expect("values");
        assert_eq!((c.median, c.lo, c.hi, c.n), (3.5, 1.0, 6.0, 6));
        assert!(close(c.coverage, 0.96875));
    }

    #[test]
    fn the_interval_of_ten_drops_one_at_each_end() {
        // n = 10: P(Bin <= 1) = 11/1024, ranks (2, 9) cover 1 - 22/1024 = 0.978515625 >= 0.95;
        // P(Bin <= 2) = 56/1024, ranks (3, 8) cover 1 - 112/1024 = 0.890625 < 0.95.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let c = median_ci(&v, 0.95).expect("values");
        assert_eq!((c.median, c.lo, c.hi), (5.5, 2.0, 9.0));
        assert!(close(c.coverage, 0.978515625));
    }

    #[test]
    fn short_samples_keep_the_range_and_say_how_little_it_covers() {
        // n = 3: the range covers 1 - 2/8 = 0.75.
        let c = median_ci(&[3.0, 1.0, 2.0], 0.95).expect("values");
        assert_eq!((c.median, c.lo, c.hi), (2.0, 1.0, 3.0));
        assert!(close(c.coverage, 0.75));
        let c = median_ci(&[7.0], 0.95).expect("one value");
        assert_eq!((c.median, c.lo, c.hi, c.coverage), (7.0, 7.0, 7.0, 0.0));
        assert_eq!(median_ci(&[], 0.95), None);
        assert_eq!(median_ci(&[1.0, f64::NAN], 0.95), None);
    }
}
