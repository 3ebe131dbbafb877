//! Every metric against values produced by pytrec_eval (trec_eval) on the fixtures in
//! eval/golden/. Regenerate with `python3 eval/golden/generate.py` and review the diff.

// Helpers outside #[test] functions are still test code.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use mlctl_eval::evaluate::Settings;
use mlctl_eval::input::{DEFAULT_MAX_DECOMPRESSED, load_and_evaluate};
use mlctl_eval::metric::MetricSpec;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Evaluates `names` together on one golden case and compares every per-query value;
/// returns how many values were checked.
fn check(case: &Value, names: &[&String]) -> usize {
    let name = case["name"].as_str().unwrap();
    let fixtures = golden_dir().join("fixtures");
    let qrels = fixtures.join(case["qrels"].as_str().unwrap());
    let run = fixtures.join(case["run"].as_str().unwrap());
    let metrics: Vec<MetricSpec> = names.iter().map(|n| n.parse().unwrap()).collect();
    let settings = Settings {
        relevance_threshold: case["relevance_threshold"].as_i64().unwrap() as i32,
        ..Settings::default()
    };
    let eval = load_and_evaluate(
        &qrels,
        &[run],
        &metrics,
        &settings,
        DEFAULT_MAX_DECOMPRESSED,
    )
    .unwrap()
    .remove(0);
    let mut checked = 0;
    for (m, metric) in names.iter().enumerate() {
        let per_query = case["metrics"][metric.as_str()].as_object().unwrap();
        let mut expected_qids: Vec<&String> = per_query.keys().collect();
        expected_qids.sort();
        let mut got_qids: Vec<&String> = eval.qids.iter().collect();
        got_qids.sort();
        assert_eq!(got_qids, expected_qids, "{name}: query set of {metric}");
        for (q, qid) in eval.qids.iter().enumerate() {
            let want = per_query[qid].as_f64().unwrap();
            let got = eval.scores[m][q];
            assert!(
                (got - want).abs() < 1e-12,
                "{name}: {metric} on query {qid}: mlctl {got}, pytrec_eval {want}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn metrics_match_pytrec_eval() {
    let text = std::fs::read_to_string(golden_dir().join("golden.json")).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let mut checked = 0;
    for case in cases {
        let names: Vec<&String> = case["metrics"].as_object().unwrap().keys().collect();
        // All together (uncut metrics force a full sort of each ranking)...
        checked += check(case, &names);
        // ...and each alone, which exercises the top-k selection for cut metrics.
        for name in &names {
            checked += check(case, &[name]);
        }
    }
    assert!(checked > 18_000, "only {checked} values checked");
}

#[test]
fn gain_flag_selects_exponential_ndcg() {
    let text = std::fs::read_to_string(golden_dir().join("golden.json")).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let case = &golden["cases"][2];
    assert_eq!(case["name"], "random");
    let fixtures = golden_dir().join("fixtures");
    let settings = Settings {
        gain: mlctl_eval::metric::Gain::Exp,
        ..Settings::default()
    };
    let eval = load_and_evaluate(
        &fixtures.join("random.qrels"),
        &[fixtures.join("random.run")],
        &["ndcg@10".parse().unwrap()],
        &settings,
        DEFAULT_MAX_DECOMPRESSED,
    )
    .unwrap()
    .remove(0);
    for (q, qid) in eval.qids.iter().enumerate() {
        let want = case["metrics"]["ndcg_exp@10"][qid].as_f64().unwrap();
        assert!((eval.scores[0][q] - want).abs() < 1e-12, "query {qid}");
    }
}
