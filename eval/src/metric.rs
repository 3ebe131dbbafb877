//! Metric names and trec_eval-compatible per-query computations over one ranked list of
//! relevance labels.

use std::fmt;
use std::str::FromStr;

/// The gain of a relevance label in NDCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gain {
    /// The label itself, as trec_eval's `ndcg_cut`.
    Linear,
    /// `2^label - 1`, as LightGBM and XGBoost use in training.
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// NDCG; `None` means the gain is taken from `--gain`.
    Ndcg(Option<Gain>),
    Ap,
    Rr,
    Precision,
    Recall,
}

/// A metric with its cutoff, e.g. `ndcg@10`. `cutoff: None` means the whole ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub kind: MetricKind,
    pub cutoff: Option<usize>,
}

/// The accepted metric names, for error messages and help.
pub const VALID_METRICS: &str = "ndcg@K, ndcg_linear@K, ndcg_exp@K, ap@K, rr@K, p@K, recall@K \
     (K a positive integer; `@K` may be omitted, except for p, to use the whole ranking)";

/// The metrics evaluated when none is named.
pub const DEFAULT_METRICS: [MetricSpec; 5] = [
    MetricSpec {
        kind: MetricKind::Ndcg(None),
        cutoff: Some(10),
    },
    MetricSpec {
        kind: MetricKind::Ap,
        cutoff: Some(10),
    },
    MetricSpec {
        kind: MetricKind::Rr,
        cutoff: Some(10),
    },
    MetricSpec {
        kind: MetricKind::Precision,
        cutoff: Some(10),
    },
    MetricSpec {
        kind: MetricKind::Recall,
        cutoff: Some(10),
    },
];

impl FromStr for MetricSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || format!("unknown metric `{s}`; valid metrics: {VALID_METRICS}");
        let (name, cutoff) = match s.split_once('@') {
            Some((name, k)) => match k.parse::<usize>() {
                Ok(k) if k >= 1 => (name, Some(k)),
                _ => {
                    return Err(format!(
                        "metric `{s}`: cutoff `{k}` must be a positive integer"
                    ));
                }
            },
            None => (s, None),
        };
        let kind = match name.to_ascii_lowercase().as_str() {
            "ndcg" => MetricKind::Ndcg(None),
            "ndcg_linear" => MetricKind::Ndcg(Some(Gain::Linear)),
            "ndcg_exp" => MetricKind::Ndcg(Some(Gain::Exp)),
            "ap" | "map" => MetricKind::Ap,
            "rr" | "mrr" => MetricKind::Rr,
            "p" => MetricKind::Precision,
            "recall" | "r" => MetricKind::Recall,
            _ => return Err(unknown()),
        };
        if kind == MetricKind::Precision && cutoff.is_none() {
            return Err(format!("metric `{s}`: precision needs a cutoff, e.g. p@10"));
        }
        Ok(MetricSpec { kind, cutoff })
    }
}

impl fmt::Display for MetricSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            MetricKind::Ndcg(None) => "ndcg",
            MetricKind::Ndcg(Some(Gain::Linear)) => "ndcg_linear",
            MetricKind::Ndcg(Some(Gain::Exp)) => "ndcg_exp",
            MetricKind::Ap => "ap",
            MetricKind::Rr => "rr",
            MetricKind::Precision => "p",
            MetricKind::Recall => "recall",
        };
        match self.cutoff {
            Some(k) => write!(f, "{name}@{k}"),
            None => f.write_str(name),
        }
    }
}

/// Parser for clap: an unknown name is a usage error that lists the valid ones.
pub fn parse_metric_arg(s: &str) -> Result<MetricSpec, String> {
    s.parse()
}

/// What a query's judgments contribute to every metric, computed once per query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryJudgments {
    /// Number of judged documents with label >= the relevance threshold.
    pub num_relevant: usize,
    /// Positive labels in descending order: the ideal ranking for NDCG.
    pub ideal_labels: Vec<i32>,
}

impl QueryJudgments {
    /// `depth`: the deepest cutoff that will be asked for (`None`: the whole ranking);
    /// only that many ideal labels are kept, found in linear time.
    pub fn from_labels(
        labels: impl IntoIterator<Item = i32>,
        threshold: i32,
        depth: Option<usize>,
    ) -> Self {
        let mut num_relevant = 0;
        let mut ideal_labels = Vec::new();
        for label in labels {
            if label >= threshold {
                num_relevant += 1;
            }
            if label > 0 {
                ideal_labels.push(label);
            }
        }
        if let Some(depth) = depth.filter(|&d| d > 0 && d < ideal_labels.len()) {
            ideal_labels.select_nth_unstable_by(depth - 1, |a, b| b.cmp(a));
            ideal_labels.truncate(depth);
        }
        ideal_labels.sort_unstable_by(|a, b| b.cmp(a));
        QueryJudgments {
            num_relevant,
            ideal_labels,
        }
    }
}

fn gain(label: i32, kind: Gain) -> f64 {
    // Negative labels ("judged, worse than non-relevant") carry no gain, as in trec_eval.
    if label <= 0 {
        return 0.0;
    }
    match kind {
        Gain::Linear => f64::from(label),
        Gain::Exp => f64::from(label).exp2() - 1.0,
    }
}

fn dcg(labels: &[i32], kind: Gain) -> f64 {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| gain(l, kind) / ((i + 2) as f64).log2())
        .sum()
}

/// Computes one metric for one query. `ranked_labels[i]` is the label of the document
/// at rank `i + 1` in trec_eval order (0 for unjudged documents).
pub fn compute(
    spec: MetricSpec,
    default_gain: Gain,
    threshold: i32,
    ranked_labels: &[i32],
    judgments: &QueryJudgments,
) -> f64 {
    let k = spec.cutoff.unwrap_or(usize::MAX);
    let top = &ranked_labels[..ranked_labels.len().min(k)];
    let is_rel = |l: &i32| *l >= threshold;
    let num_rel = judgments.num_relevant as f64;
    match spec.kind {
        MetricKind::Ndcg(g) => {
            let g = g.unwrap_or(default_gain);
            let ideal = &judgments.ideal_labels[..judgments.ideal_labels.len().min(k)];
            let ideal_dcg = dcg(ideal, g);
            if ideal_dcg > 0.0 {
                dcg(top, g) / ideal_dcg
            } else {
                0.0
            }
        }
        MetricKind::Ap => {
            if judgments.num_relevant == 0 {
                return 0.0;
            }
            let mut hits = 0usize;
            let mut sum = 0.0;
            for (i, l) in top.iter().enumerate() {
                if is_rel(l) {
                    hits += 1;
                    sum += hits as f64 / (i + 1) as f64;
                }
            }
            sum / num_rel
        }
        MetricKind::Rr => top
            .iter()
            .position(is_rel)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        MetricKind::Precision => top.iter().filter(|l| is_rel(l)).count() as f64 / k as f64,
        MetricKind::Recall => {
            if judgments.num_relevant == 0 {
                return 0.0;
            }
            top.iter().filter(|l| is_rel(l)).count() as f64 / num_rel
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MetricSpec {
        s.parse().unwrap()
    }

    #[test]
    fn names_round_trip_and_errors() {
        for name in [
            "ndcg@10",
            "ndcg_exp@5",
            "ndcg_linear@3",
            "ap@100",
            "rr",
            "p@1",
            "recall@20",
        ] {
            assert_eq!(m(name).to_string(), name);
        }
        assert_eq!(m("MAP@10").to_string(), "ap@10");
        assert!(
            MetricSpec::from_str("foo@10")
                .unwrap_err()
                .contains("valid metrics: ndcg@K")
        );
        assert!(MetricSpec::from_str("ndcg@0").is_err());
        assert!(MetricSpec::from_str("ndcg@x").is_err());
        assert!(
            MetricSpec::from_str("p")
                .unwrap_err()
                .contains("needs a cutoff")
        );
    }

    #[test]
    fn hand_computed_values() {
        // Ranked labels: unjudged(0), 2, 1, 0; judged: a=1, b=2, c=0.
        let ranked = [0, 2, 1, 0];
        let j = QueryJudgments::from_labels([1, 2, 0], 1, None);
        let c = |s: &str| compute(m(s), Gain::Linear, 1, &ranked, &j);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 2.0;
        let ideal = 2.0 + 1.0 / 3f64.log2();
        assert!((c("ndcg@10") - dcg / ideal).abs() < 1e-12);
        assert!(
            (c("ndcg_exp@10") - (3.0 / 3f64.log2() + 0.5) / (3.0 + 1.0 / 3f64.log2())).abs()
                < 1e-12
        );
        assert_eq!(c("ndcg@1"), 0.0);
        assert!((c("ap@10") - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((c("ap@2") - 0.5 / 2.0).abs() < 1e-12);
        assert_eq!(c("rr@10"), 0.5);
        assert_eq!(c("rr@1"), 0.0);
        assert_eq!(c("p@10"), 0.2);
        assert_eq!(c("p@2"), 0.5);
        assert_eq!(c("recall@2"), 0.5);
        assert_eq!(c("recall"), 1.0);
    }

    #[test]
    fn ideal_ranking_keeps_the_best_labels_up_to_the_depth() {
        let labels = [1, 4, 0, 2, 4, -1, 3, 1];
        assert_eq!(
            QueryJudgments::from_labels(labels, 1, None).ideal_labels,
            [4, 4, 3, 2, 1, 1]
        );
        assert_eq!(
            QueryJudgments::from_labels(labels, 1, Some(3)).ideal_labels,
            [4, 4, 3]
        );
        assert_eq!(
            QueryJudgments::from_labels(labels, 2, Some(3)).num_relevant,
            4
        );
    }

    #[test]
    fn no_relevant_documents_score_zero() {
        let j = QueryJudgments::from_labels([0, -1], 1, Some(10));
        for s in ["ndcg@10", "ap@10", "rr@10", "p@10", "recall@10"] {
            assert_eq!(compute(m(s), Gain::Exp, 1, &[0, -1], &j), 0.0, "{s}");
        }
    }

    #[test]
    fn threshold_changes_binary_metrics_only() {
        let j = QueryJudgments::from_labels([1, 2], 2, Some(2));
        assert_eq!(j.num_relevant, 1);
        assert_eq!(compute(m("p@2"), Gain::Linear, 2, &[1, 2], &j), 0.5);
        assert_eq!(compute(m("ndcg@2"), Gain::Linear, 2, &[2, 1], &j), 1.0);
    }
}
