//! The gate file and the candidate-versus-baseline decision. Each rule is a one-sided
//! test on the shifted per-query deltas `d_i - min_delta`; the randomization p-values of
//! all rules are Holm-adjusted together and each adjusted p is compared with its alpha.

use serde::Deserialize;

use crate::evaluate::Evaluation;
use crate::metric::MetricSpec;
use crate::stats::{self, TIE_EPSILON, Tail};

/// One gate rule, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateRule {
    pub metric: MetricSpec,
    /// The margin: non-inferiority fails when the candidate is significantly below
    /// baseline + min_delta; an improvement rule passes only when significantly above.
    pub min_delta: f64,
    pub alpha: f64,
    pub require_improvement: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GateFileError {
    #[error("not a valid gate file: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("gate rule {index} ({metric}): {reason}")]
    Rule {
        index: usize,
        metric: String,
        reason: String,
    },
    #[error("the gate has no rules")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    gate: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    metric: String,
    #[serde(default)]
    min_delta: f64,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default)]
    require_improvement: bool,
}

fn default_alpha() -> f64 {
    0.05
}

/// Parses and validates a gate file (YAML, see docs/eval.md).
pub fn parse_gate(text: &str) -> Result<Vec<GateRule>, GateFileError> {
    let file: GateFile = serde_yaml_ng::from_str(text)?;
    if file.gate.is_empty() {
        return Err(GateFileError::Empty);
    }
    let mut rules: Vec<GateRule> = Vec::with_capacity(file.gate.len());
    for (i, raw) in file.gate.into_iter().enumerate() {
        let fail = |reason: String| GateFileError::Rule {
            index: i + 1,
            metric: raw.metric.clone(),
            reason,
        };
        let metric: MetricSpec = raw.metric.parse().map_err(fail)?;
        if !(raw.alpha > 0.0 && raw.alpha < 1.0) {
            return Err(fail(format!("alpha must be in (0, 1), got {}", raw.alpha)));
        }
        if !raw.min_delta.is_finite() {
            return Err(fail("min_delta must be a finite number".into()));
        }
        if rules.iter().any(|r| r.metric == metric) {
            return Err(fail("the metric appears twice in the gate".into()));
        }
        rules.push(GateRule {
            metric,
            min_delta: raw.min_delta,
            alpha: raw.alpha,
            require_improvement: raw.require_improvement,
        });
    }
    Ok(rules)
}

/// Resampling settings, shared by every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resampling {
    pub permutations: usize,
    pub bootstrap: usize,
    pub seed: u64,
}

impl Default for Resampling {
    fn default() -> Self {
        Resampling {
            permutations: 10_000,
            bootstrap: 10_000,
            seed: 42,
        }
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rule: GateRule,
    pub queries: usize,
    pub baseline: f64,
    pub candidate: f64,
    pub delta: f64,
    pub ci95: (f64, f64),
    /// One-sided randomization p on the shifted deltas: the primary, gating p.
    pub p_randomization: f64,
    /// One-sided paired t-test p on the shifted deltas, for information.
    pub p_ttest: f64,
    /// `p_randomization` after Holm's adjustment across the gate's rules.
    pub p_holm: f64,
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    pub pass: bool,
}

/// Compares `candidate` with `baseline` (evaluated on the same queries and metrics) under
/// every rule. A rule whose metric was not evaluated yields `Err(metric)`.
pub fn compare(
    baseline: &Evaluation,
    candidate: &Evaluation,
    rules: &[GateRule],
    resampling: &Resampling,
) -> Result<Vec<Comparison>, MetricSpec> {
    let mut comparisons = Vec::with_capacity(rules.len());
    for rule in rules {
        let m = candidate
            .metrics
            .iter()
            .position(|s| *s == rule.metric)
            .ok_or(rule.metric)?;
        let deltas: Vec<f64> = candidate.scores[m]
            .iter()
            .zip(&baseline.scores[m])
            .map(|(c, b)| c - b)
            .collect();
        let shifted: Vec<f64> = deltas.iter().map(|d| d - rule.min_delta).collect();
        let tail = if rule.require_improvement {
            Tail::Above
        } else {
            Tail::Below
        };
        let n = deltas.len();
        let mean_delta = if n == 0 {
            0.0
        } else {
            deltas.iter().sum::<f64>() / n as f64
        };
        comparisons.push(Comparison {
            rule: *rule,
            queries: n,
            baseline: baseline.mean(m),
            candidate: candidate.mean(m),
            delta: mean_delta,
            ci95: stats::bootstrap_ci(&deltas, 0.95, resampling.bootstrap, resampling.seed),
            p_randomization: stats::randomization_p(
                &shifted,
                tail,
                resampling.permutations,
                resampling.seed,
            ),
            p_ttest: stats::t_test_p(&shifted, tail),
            p_holm: 1.0,
            wins: deltas.iter().filter(|d| **d > TIE_EPSILON).count(),
            losses: deltas.iter().filter(|d| **d < -TIE_EPSILON).count(),
            ties: deltas.iter().filter(|d| d.abs() <= TIE_EPSILON).count(),
            pass: false,
        });
    }
    let raw: Vec<f64> = comparisons.iter().map(|c| c.p_randomization).collect();
    for (c, p_holm) in comparisons.iter_mut().zip(stats::holm_adjust(&raw)) {
        c.p_holm = p_holm;
        let significant = p_holm <= c.rule.alpha;
        c.pass = if c.rule.require_improvement {
            significant
        } else {
            !significant
        };
    }
    Ok(comparisons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(metrics: &[&str], scores: Vec<Vec<f64>>) -> Evaluation {
        Evaluation {
            qids: (0..scores[0].len()).map(|i| i.to_string()).collect(),
            metrics: metrics.iter().map(|m| m.parse().unwrap()).collect(),
            scores,
        }
    }

    fn rule(metric: &str, min_delta: f64, require_improvement: bool) -> GateRule {
        GateRule {
            metric: metric.parse().unwrap(),
            min_delta,
            alpha: 0.05,
            require_improvement,
        }
    }

    #[test]
    fn parses_the_documented_example() {
        let rules = parse_gate(
            "gate:\n  - metric: ndcg@10\n    min_delta: 0.0\n    alpha: 0.05\n  - metric: rr@10\n    \
             min_delta: -0.01\n    require_improvement: true\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].min_delta, -0.01);
        assert_eq!(rules[1].alpha, 0.05);
        assert!(rules[1].require_improvement);
    }

    #[test]
    fn rejects_bad_gate_files() {
        let err = |t: &str| parse_gate(t).unwrap_err().to_string();
        assert!(err("gate: []").contains("no rules"));
        assert!(err("gate:\n  - metric: bleu@4\n").contains("unknown metric `bleu@4`"));
        assert!(
            err("gate:\n  - metric: p@5\n    alpha: 1.5\n").contains("alpha must be in (0, 1)")
        );
        assert!(err("gate:\n  - metric: p@5\n  - metric: p@5\n").contains("twice"));
        assert!(err("gate:\n  - metric: p@5\n    min_detla: 0.1\n").contains("unknown field"));
        assert!(err("gates: []").contains("not a valid gate file"));
    }

    #[test]
    fn identical_runs_pass_non_inferiority_and_fail_improvement() {
        let e = eval(
            &["p@1", "rr@10"],
            vec![vec![1.0, 0.0, 0.5], vec![0.2, 0.3, 1.0]],
        );
        let rules = [rule("p@1", 0.0, false), rule("rr@10", 0.0, true)];
        let c = compare(&e, &e, &rules, &Resampling::default()).unwrap();
        assert!(c[0].pass);
        assert!(!c[1].pass);
        for c in &c {
            assert_eq!((c.delta, c.ci95), (0.0, (0.0, 0.0)));
            assert_eq!((c.p_randomization, c.p_ttest, c.p_holm), (1.0, 1.0, 1.0));
            assert_eq!((c.wins, c.losses, c.ties), (0, 0, 3));
        }
    }

    fn gate_one(base: &Evaluation, cand: &Evaluation, rule: GateRule) -> Comparison {
        compare(base, cand, &[rule], &Resampling::default())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_clear_regression_fails_and_a_clear_gain_passes() {
        let n = 60;
        let base = eval(&["p@1"], vec![vec![0.5; n]]);
        let worse = eval(
            &["p@1"],
            vec![(0..n).map(|i| 0.3 + 0.01 * (i % 3) as f64).collect()],
        );
        let c = gate_one(&base, &worse, rule("p@1", 0.0, false));
        assert!(!c.pass);
        assert_eq!(c.losses, n);
        assert!(c.ci95.1 < 0.0);
        // The same drop is tolerated by a margin larger than it.
        assert!(gate_one(&base, &worse, rule("p@1", -0.3, false)).pass);
        // Reversed, it is a significant improvement...
        let c = gate_one(&worse, &base, rule("p@1", 0.0, true));
        assert!(c.pass && c.p_randomization < 0.001);
        // ...but not significantly above a margin of 0.25.
        assert!(!gate_one(&worse, &base, rule("p@1", 0.25, true)).pass);
    }

    #[test]
    fn holm_is_applied_across_rules() {
        // Rule p-values are each just under alpha on their own; Holm with two rules makes
        // the smaller one count double and the decision flips.
        let n = 8;
        let base = eval(&["p@1", "p@2"], vec![vec![0.5; n], vec![0.5; n]]);
        let cand_scores: Vec<f64> = (0..n).map(|i| if i < 6 { 0.6 } else { 0.45 }).collect();
        let cand = eval(&["p@1", "p@2"], vec![cand_scores.clone(), cand_scores]);
        let one = compare(
            &base,
            &cand,
            &[rule("p@1", 0.0, true)],
            &Resampling::default(),
        )
        .unwrap();
        let two = compare(
            &base,
            &cand,
            &[rule("p@1", 0.0, true), rule("p@2", 0.0, true)],
            &Resampling::default(),
        )
        .unwrap();
        let p = one[0].p_randomization;
        assert!(p <= 0.05 && 2.0 * p > 0.05, "{p}");
        assert!(one[0].pass);
        assert!(!two[0].pass && !two[1].pass);
        assert!((two[0].p_holm - 2.0 * two[0].p_randomization).abs() < 1e-12);
    }

    #[test]
    fn single_query_is_never_significant() {
        let base = eval(&["p@1"], vec![vec![1.0]]);
        let cand = eval(&["p@1"], vec![vec![0.0]]);
        let c = gate_one(&base, &cand, rule("p@1", 0.0, false));
        assert!(c.pass);
        assert_eq!(c.p_ttest, 1.0);
        assert_eq!(c.ci95, (-1.0, -1.0));
    }

    #[test]
    fn unknown_rule_metric_is_reported() {
        let e = eval(&["p@1"], vec![vec![1.0]]);
        let err = compare(&e, &e, &[rule("p@5", 0.0, false)], &Resampling::default());
        assert_eq!(err.unwrap_err().to_string(), "p@5");
    }
}
