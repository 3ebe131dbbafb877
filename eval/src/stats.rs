//! Paired statistics on per-query deltas: the sign-flip randomization test, the paired
//! t-test, the bootstrap confidence interval of the mean, and Holm's step-down
//! adjustment. All tests are one-sided; the gate chooses the direction.

use crate::rng::Rng;

/// Which tail of the test statistic counts as evidence against H0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// H1: mean delta < 0 (evidence that the candidate is worse).
    Below,
    /// H1: mean delta > 0 (evidence that the candidate is better).
    Above,
}

/// Deltas whose absolute value is at most this are ties; it also absorbs the rounding
/// error of sums when comparing permuted statistics with the observed one.
pub const TIE_EPSILON: f64 = 1e-12;

/// Paired randomization (sign-flip) test of H0 "the deltas are symmetric around 0".
/// Each of `permutations` rounds flips the sign of every delta with probability 1/2;
/// b counts rounds whose mean is at least as extreme as the observed one in `tail`, and
/// p = (b + 1) / (B + 1). With no deltas, or all deltas zero, p = 1.
pub fn randomization_p(deltas: &[f64], tail: Tail, permutations: usize, seed: u64) -> f64 {
    let n = deltas.len();
    if n == 0 || permutations == 0 {
        return 1.0;
    }
    let observed: f64 = deltas.iter().sum();
    let scale: f64 = deltas.iter().map(|d| d.abs()).sum();
    let tolerance = TIE_EPSILON * scale.max(1.0);
    let mut rng = Rng::new(seed);
    let mut extreme = 0usize;
    for _ in 0..permutations {
        // sum(s_i d_i) = total - 2 * (sum of the flipped deltas)
        let mut flipped = 0.0;
        for block in deltas.chunks(64) {
            let mut bits = rng.next_u64();
            for &d in block {
                if bits & 1 == 1 {
                    flipped += d;
                }
                bits >>= 1;
            }
        }
        let permuted = observed - 2.0 * flipped;
        let is_extreme = match tail {
            Tail::Below => permuted <= observed + tolerance,
            Tail::Above => permuted >= observed - tolerance,
        };
        extreme += usize::from(is_extreme);
    }
    (extreme + 1) as f64 / (permutations + 1) as f64
}

/// One-sided paired t-test of H0 "mean delta = 0" against the alternative in `tail`.
/// Degenerate cases: fewer than two deltas gives p = 1 (no variance estimate); zero
/// variance gives p = 1 when the mean is 0 or points away from `tail`, else p = 0.
pub fn t_test_p(deltas: &[f64], tail: Tail) -> f64 {
    let n = deltas.len();
    if n < 2 {
        return 1.0;
    }
    let nf = n as f64;
    let mean = deltas.iter().sum::<f64>() / nf;
    let var = deltas.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let signed = match tail {
        Tail::Below => -mean,
        Tail::Above => mean,
    };
    if var <= (TIE_EPSILON * TIE_EPSILON) * mean.abs().max(1.0) {
        return if signed > TIE_EPSILON { 0.0 } else { 1.0 };
    }
    let t = signed / (var / nf).sqrt();
    student_t_upper_tail(t, nf - 1.0)
}

/// Percentile bootstrap interval of the mean: `resamples` means of n deltas drawn with
/// replacement; returns the (1-level)/2 and (1+level)/2 quantiles (nearest rank).
pub fn bootstrap_ci(deltas: &[f64], level: f64, resamples: usize, seed: u64) -> (f64, f64) {
    let n = deltas.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    if resamples == 0 {
        let mean = deltas.iter().sum::<f64>() / n as f64;
        return (mean, mean);
    }
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| deltas[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = (q * resamples as f64).ceil() as usize;
        means[rank.clamp(1, resamples) - 1]
    };
    (at((1.0 - level) / 2.0), at((1.0 + level) / 2.0))
}

/// Holm's step-down adjusted p-values: sort ascending, multiply the j-th smallest
/// (0-based) by (m - j), enforce monotonicity, cap at 1. Rejecting H0_i when
/// adjusted_i <= alpha is Holm–Bonferroni at level alpha.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// P(T > t) for Student's t with `df` degrees of freedom.
pub fn student_t_upper_tail(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return 1.0;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    // P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)
    let two_sided = regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        two_sided / 2.0
    } else {
        1.0 - two_sided / 2.0
    }
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
    const COEFFS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEFFS[0];
    let t = x + 7.5;
    for (i, c) in COEFFS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// I_x(a, b) by the continued fraction (modified Lentz), using the symmetry
/// I_x(a,b) = 1 - I_{1-x}(b,a) where the fraction converges slowly.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + even * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + even / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + odd * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + odd / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_distribution_matches_scipy() {
        // scipy.stats.t.sf(t, df)
        let cases = [
            (2.0, 10.0, 0.036_694_017_385_370_196),
            (1.812_461_122_811_676, 10.0, 0.05),
            (-1.0, 3.0, 0.804_498_890_522_114_8),
            (0.5, 1.0, 0.352_416_382_349_566_7),
            (4.0, 200.0, 4.456_547_609_296_721e-5),
            (0.0, 7.0, 0.5),
        ];
        for (t, df, expected) in cases {
            let p = student_t_upper_tail(t, df);
            assert!(
                (p - expected).abs() < 1e-10,
                "t={t} df={df}: {p} vs {expected}"
            );
        }
    }

    #[test]
    fn t_test_edge_cases() {
        assert_eq!(t_test_p(&[], Tail::Below), 1.0);
        assert_eq!(t_test_p(&[-0.3], Tail::Below), 1.0);
        assert_eq!(t_test_p(&[0.0; 5], Tail::Below), 1.0);
        assert_eq!(t_test_p(&[0.0; 5], Tail::Above), 1.0);
        assert_eq!(t_test_p(&[-0.1; 5], Tail::Below), 0.0);
        assert_eq!(t_test_p(&[-0.1; 5], Tail::Above), 1.0);
        let d = [0.1, 0.2, -0.05, 0.3, 0.15];
        let above = t_test_p(&d, Tail::Above);
        assert!((above + t_test_p(&d, Tail::Below) - 1.0).abs() < 1e-12);
        // scipy.stats.ttest_1samp(d, 0, alternative='greater').pvalue
        assert!((above - 0.036_427_529_805_127_84).abs() < 1e-9, "{above}");
    }

    #[test]
    fn randomization_edge_cases() {
        assert_eq!(randomization_p(&[], Tail::Below, 1000, 1), 1.0);
        assert_eq!(randomization_p(&[0.0; 30], Tail::Below, 1000, 1), 1.0);
        assert_eq!(randomization_p(&[0.0; 30], Tail::Above, 1000, 1), 1.0);
        // One query: half of the flips are as extreme, so p is about 1/2 and never small.
        let p = randomization_p(&[-0.5], Tail::Below, 10_000, 1);
        assert!((p - 0.5).abs() < 0.02, "{p}");
        assert_eq!(randomization_p(&[0.5], Tail::Below, 10_000, 1), 1.0);
        // Every delta clearly negative: only the all-unflipped round is as extreme.
        let p = randomization_p(&[-0.2; 40], Tail::Below, 9_999, 1);
        assert_eq!(p, 1.0 / 10_000.0);
        // The same seed gives the same p.
        let d: Vec<f64> = (0..50).map(|i| f64::from(i % 7) / 10.0 - 0.25).collect();
        assert_eq!(
            randomization_p(&d, Tail::Above, 2000, 9),
            randomization_p(&d, Tail::Above, 2000, 9)
        );
    }

    #[test]
    fn randomization_agrees_with_exact_enumeration() {
        let d = [0.3, -0.1, 0.2, 0.05, -0.02, 0.15, 0.4, -0.3];
        let observed: f64 = d.iter().sum();
        let n = d.len();
        let exact = (0u32..1 << n)
            .filter(|mask| {
                let s: f64 = (0..n)
                    .map(|i| if mask >> i & 1 == 1 { -d[i] } else { d[i] })
                    .sum();
                s >= observed - 1e-12
            })
            .count() as f64
            / f64::from(1u32 << n);
        let p = randomization_p(&d, Tail::Above, 50_000, 3);
        assert!((p - exact).abs() < 0.01, "{p} vs {exact}");
    }

    #[test]
    fn bootstrap_interval() {
        assert_eq!(bootstrap_ci(&[], 0.95, 100, 1), (0.0, 0.0));
        assert_eq!(bootstrap_ci(&[0.25], 0.95, 100, 1), (0.25, 0.25));
        assert_eq!(bootstrap_ci(&[0.0; 10], 0.95, 100, 1), (0.0, 0.0));
        let d: Vec<f64> = (0..200).map(|i| f64::from(i % 10) / 10.0).collect();
        let (lo, hi) = bootstrap_ci(&d, 0.95, 5000, 4);
        // mean 0.45, standard error ~0.0203: the interval is about 0.45 +- 0.04.
        assert!(
            lo < 0.45 && hi > 0.45 && lo > 0.39 && hi < 0.51,
            "{lo} {hi}"
        );
    }

    #[test]
    fn holm() {
        let adj = holm_adjust(&[0.01, 0.04, 0.03]);
        let expected = [0.03, 0.06, 0.06];
        for (a, e) in adj.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm_adjust(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert_eq!(holm_adjust(&[0.2]), vec![0.2]);
        assert!(holm_adjust(&[]).is_empty());
    }
}
