//! General rules checked on random inputs: metrics stay in [0, 1], the order of input
//! lines does not matter, and a run compared with itself is a tie that passes every
//! non-inferiority rule with a margin <= 0.

// Helpers outside #[test] functions are still test code.
#![allow(clippy::unwrap_used)]

use mlctl_eval::evaluate::{Evaluation, QueryPolicy, Settings, evaluate};
use mlctl_eval::gate::{GateRule, Resampling, compare};
use mlctl_eval::metric::{Gain, MetricSpec};
use mlctl_eval::parse::{parse_qrels, parse_run};
use proptest::prelude::*;

/// One query: (label per judged doc, score per retrieved doc). Doc `i` is `d{i}`; docs
/// 0..judged are judged, retrieved ones may be judged or not. Scores come from a small
/// set so that ties are frequent.
type Query = (Vec<i32>, Vec<(usize, i8)>);

fn query() -> impl Strategy<Value = Query> {
    (
        prop::collection::vec(-1i32..=4, 0..12),
        prop::collection::btree_map(0usize..20, -3i8..=3, 0..16)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
    )
}

fn files(queries: &[Query]) -> (Vec<String>, Vec<String>) {
    let mut qrels = Vec::new();
    let mut run = Vec::new();
    for (q, (labels, retrieved)) in queries.iter().enumerate() {
        for (d, label) in labels.iter().enumerate() {
            qrels.push(format!("{q} 0 d{d} {label}"));
        }
        if labels.is_empty() {
            qrels.push(format!("{q} 0 unretrieved 0"));
        }
        for (rank, (d, score)) in retrieved.iter().enumerate() {
            run.push(format!("{q} Q0 d{d} {rank} {}.5 tag", score));
        }
    }
    (qrels, run)
}

const METRICS: [&str; 12] = [
    "ndcg@1",
    "ndcg@5",
    "ndcg_exp@10",
    "ndcg",
    "ap@3",
    "ap",
    "rr@2",
    "rr",
    "p@1",
    "p@20",
    "recall@4",
    "recall",
];

fn run_eval(qrels: &[String], run: &[String], settings: &Settings) -> Evaluation {
    let qrels_text = qrels.join("\n");
    let run_text = run.join("\n");
    let parsed_qrels = parse_qrels(qrels_text.as_bytes()).unwrap();
    let runs = vec![parse_run(run_text.as_bytes()).unwrap()];
    let metrics: Vec<MetricSpec> = METRICS.iter().map(|m| m.parse().unwrap()).collect();
    evaluate(&parsed_qrels, &runs, &metrics, settings)
        .unwrap()
        .remove(0)
}

fn settings() -> impl Strategy<Value = Settings> {
    (any::<bool>(), 1i32..=3, any::<bool>(), any::<bool>()).prop_map(|(exp, t, miss, norel)| {
        let policy = |skip| {
            if skip {
                QueryPolicy::Skip
            } else {
                QueryPolicy::Zero
            }
        };
        Settings {
            gain: if exp { Gain::Exp } else { Gain::Linear },
            relevance_threshold: t,
            missing_queries: policy(miss),
            no_relevant: policy(norel),
        }
    })
}

proptest! {
    #[test]
    fn every_metric_is_in_unit_interval(
        queries in prop::collection::vec(query(), 1..8),
        settings in settings(),
    ) {
        let (qrels, run) = files(&queries);
        let eval = run_eval(&qrels, &run, &settings);
        for (m, scores) in eval.scores.iter().enumerate() {
            for &s in scores {
                prop_assert!((0.0..=1.0 + 1e-12).contains(&s), "{} = {}", METRICS[m], s);
            }
        }
    }

    #[test]
    fn input_line_order_does_not_matter(
        (qrels, run, shuffled_qrels, shuffled_run) in prop::collection::vec(query(), 1..8)
            .prop_flat_map(|queries| {
                let (qrels, run) = files(&queries);
                (Just(qrels.clone()), Just(run.clone()),
                 Just(qrels).prop_shuffle(), Just(run).prop_shuffle())
            }),
        settings in settings(),
    ) {
        let a = run_eval(&qrels, &run, &settings);
        let b = run_eval(&shuffled_qrels, &shuffled_run, &settings);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn a_run_compared_with_itself_is_a_tie_that_passes(
        queries in prop::collection::vec(query(), 1..8),
        margins in prop::collection::vec(-0.2f64..=0.0, METRICS.len()),
        alpha in 0.001f64..0.5,
    ) {
        let (qrels, run) = files(&queries);
        let eval = run_eval(&qrels, &run, &Settings::default());
        let rules: Vec<GateRule> = METRICS
            .iter()
            .zip(&margins)
            .map(|(m, &min_delta)| GateRule {
                metric: m.parse().unwrap(),
                min_delta,
                alpha,
                require_improvement: false,
            })
            .collect();
        let resampling = Resampling { permutations: 500, bootstrap: 200, seed: 7 };
        for c in compare(&eval, &eval, &rules, &resampling).unwrap() {
            prop_assert_eq!(c.delta, 0.0);
            prop_assert_eq!(c.ci95, (0.0, 0.0));
            prop_assert_eq!(c.losses + c.wins, 0);
            prop_assert!(c.pass);
        }
    }
}
