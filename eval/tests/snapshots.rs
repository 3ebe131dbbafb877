//! Golden files for what users see: the table, the JSON and the Markdown report of a
//! plain and a gated evaluation on the committed fixtures. After an intended change,
//! refresh with `UPDATE_SNAPSHOTS=1 cargo test -p mlctl-eval --test snapshots` and review
//! the diff.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use mlctl_eval::evaluate::{Evaluation, Settings, evaluate};
use mlctl_eval::gate::{Resampling, compare, parse_gate};
use mlctl_eval::metric::MetricSpec;
use mlctl_eval::output;
use mlctl_eval::parse::{parse_qrels, parse_run};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden/fixtures")
            .join(name),
    )
    .unwrap()
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        panic!(
            "{name} differs from {}; if the change is intended, run \
             `UPDATE_SNAPSHOTS=1 cargo test -p mlctl-eval --test snapshots`\n--- actual:\n{actual}",
            path.display()
        );
    }
}

/// The random run with the scores of odd-numbered queries negated: a candidate that
/// wins some queries and loses others.
fn candidate_run() -> Vec<u8> {
    let text = String::from_utf8(fixture("random.run")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let score: f64 = f[4].parse().unwrap();
        let odd = f[0].parse::<u32>().unwrap() % 2 == 1;
        let score = if odd { -score } else { score };
        out.push_str(&format!("{} Q0 {} {} {score} cand\n", f[0], f[2], f[3]));
    }
    out.into_bytes()
}

fn evaluations(metrics: &[MetricSpec], runs: &[&[u8]]) -> Vec<Evaluation> {
    let qrels_text = fixture("random.qrels");
    let qrels = parse_qrels(&qrels_text).unwrap();
    let runs: Vec<_> = runs.iter().map(|r| parse_run(r).unwrap()).collect();
    evaluate(&qrels, &runs, metrics, &Settings::default()).unwrap()
}

#[test]
fn plain_evaluation_outputs() {
    let metrics: Vec<MetricSpec> = [
        "ndcg@10",
        "ndcg_exp@10",
        "ap@10",
        "rr@10",
        "p@5",
        "recall@10",
    ]
    .iter()
    .map(|m| m.parse().unwrap())
    .collect();
    let names: Vec<String> = metrics.iter().map(ToString::to_string).collect();
    let run = fixture("random.run");
    let eval = evaluations(&metrics, &[&run]).remove(0);
    check("plain.table.txt", &output::means_table(&eval, &names));
    check("plain.json", &output::json(&eval, &names, None));
}

#[test]
fn gated_evaluation_outputs() {
    let rules = parse_gate(
        "gate:\n  - metric: ndcg@10\n  - metric: rr@10\n    min_delta: -0.05\n  \
         - metric: p@5\n    require_improvement: true\n",
    )
    .unwrap();
    let metrics: Vec<MetricSpec> = rules.iter().map(|r| r.metric).collect();
    let names: Vec<String> = metrics.iter().map(ToString::to_string).collect();
    let (base, cand) = (fixture("random.run"), candidate_run());
    let mut evals = evaluations(&metrics, &[&base, &cand]);
    let (candidate, baseline) = (evals.remove(1), evals.remove(0));
    let comparisons = compare(&baseline, &candidate, &rules, &Resampling::default()).unwrap();
    check(
        "gated.table.txt",
        &output::comparison_table(&candidate, &names, &comparisons),
    );
    check(
        "gated.json",
        &output::json(&candidate, &names, Some(&comparisons)),
    );
    let ctx = output::ReportContext {
        baseline: "baseline.run",
        candidate: "candidate.run",
        settings_line: "settings".into(),
    };
    check(
        "gated.report.md",
        &output::markdown(&candidate, &names, &comparisons, &ctx),
    );
}
