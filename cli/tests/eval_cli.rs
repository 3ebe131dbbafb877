//! `mlctl eval` end to end: the built binary on the golden fixtures, checking output
//! shapes and the exit-code contract (0 pass, 10 gate failed, 1 error, 2 usage).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/golden/fixtures")
}

/// A fresh directory for one test's files, removed when the test ends, also
/// when it fails (they used to be left in the temp directory by every run).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("mlctl-eval-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn mlctl_eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlctl"))
        .arg("eval")
        .args(args)
        .output()
        .unwrap()
}

/// `mlctl eval` with a baseline, a candidate and a gate file, plus `extra` flags.
fn gated(qrels: &Path, baseline: &Path, run: &Path, gate: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--qrels",
        path(qrels),
        "--baseline",
        path(baseline),
        "--run",
        path(run),
        "--gate",
        path(gate),
    ];
    args.extend_from_slice(extra);
    mlctl_eval(&args)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A run of every judged document of random.qrels scored by `sign * label`: with +1 the
/// ideal ranking, with -1 the worst one.
fn run_from_labels(dir: &Path, name: &str, sign: f64) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("random.qrels")).unwrap();
    let run: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} Q0 {} 0 {} {name}\n",
                f[0],
                f[2],
                sign * f[3].parse::<f64>().unwrap()
            )
        })
        .collect();
    let out = dir.join(name);
    std::fs::write(&out, run).unwrap();
    out
}

const GATE: &str = "gate:
  - metric: ndcg@10
    min_delta: 0.0
    alpha: 0.05
  - metric: rr@10
    min_delta: -0.01
    alpha: 0.05
    require_improvement: false
";

#[test]
fn plain_evaluation_prints_a_table_of_means() {
    let qrels = fixtures().join("random.qrels");
    let run = fixtures().join("random.run");
    let o = mlctl_eval(&["--qrels", path(&qrels), "--run", path(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("METRIC"), "{out}");
    for m in ["ndcg@10", "ap@10", "rr@10", "p@10", "recall@10"] {
        assert!(out.contains(m), "{m} missing from\n{out}");
    }
    assert!(out.ends_with("queries: 80\n"), "{out}");
}

#[test]
fn json_has_exactly_the_documented_shape() {
    let qrels = fixtures().join("edge.qrels");
    let run = fixtures().join("edge.run");
    let o = mlctl_eval(&[
        "--qrels",
        path(&qrels),
        "--run",
        path(&run),
        "--metric",
        "ndcg@10,p@5",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let top: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(top, ["metrics", "queries"]);
    assert_eq!(v["queries"], 8);
    let metrics: Vec<&String> = v["metrics"].as_object().unwrap().keys().collect();
    assert_eq!(metrics, ["ndcg@10", "p@5"]);
    let ndcg = &v["metrics"]["ndcg@10"];
    assert_eq!(ndcg.as_object().unwrap().len(), 2);
    assert_eq!(ndcg["per_query"].as_object().unwrap().len(), 8);
    // Judged but missing from the run: 0 by default.
    assert_eq!(ndcg["per_query"]["q3"], 0.0);
}

#[test]
fn gzip_input_gives_the_same_numbers() {
    let qrels = fixtures().join("random.qrels");
    let plain = mlctl_eval(&[
        "--qrels",
        path(&qrels),
        "--run",
        path(&fixtures().join("random.run")),
        "-o",
        "json",
    ]);
    let gz = mlctl_eval(&[
        "--qrels",
        path(&qrels),
        "--run",
        path(&fixtures().join("random.run.gz")),
        "-o",
        "json",
    ]);
    assert_eq!(gz.status.code(), Some(0), "{}", stderr(&gz));
    assert_eq!(stdout(&plain), stdout(&gz));
}

#[test]
fn a_run_against_itself_passes_the_gate() {
    let dir = scratch("self");
    let gate = dir.join("gate.yaml");
    std::fs::write(&gate, GATE).unwrap();
    let report = dir.join("report.md");
    let run = fixtures().join("random.run");
    let qrels = fixtures().join("random.qrels");
    let o = gated(
        &qrels,
        &run,
        &run,
        &gate,
        &["-o", "json", "--report", path(&report)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["pass"], true);
    let c = &v["comparison"]["ndcg@10"];
    assert_eq!(c["delta"], 0.0);
    assert_eq!(c["p_randomization"], 1.0);
    assert_eq!(c["ties"], 80);
    assert_eq!(c["ci95"], serde_json::json!([0.0, 0.0]));
    assert!(v["comparison"]["rr@10"]["pass"].as_bool().unwrap());
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.starts_with("## mlctl eval gate: **PASS**"), "{md}");
}

#[test]
fn the_gate_report_names_the_model_the_version_and_the_input_digests() {
    let dir = scratch("provenance");
    let gate = dir.join("gate.yaml");
    std::fs::write(&gate, GATE).unwrap();
    let run = fixtures().join("random.run");
    let qrels = fixtures().join("random.qrels");
    let o = gated(
        &qrels,
        &run,
        &run,
        &gate,
        &[
            "-o",
            "json",
            "--model",
            "search-ranker",
            "--model-namespace",
            "ranking",
            "--candidate-version",
            "v41",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["subject"],
        serde_json::json!({"model": "search-ranker", "namespace": "ranking", "version": "v41"})
    );
    let sha256 = |p: &Path| {
        mlctl_gitops::report::digest(&std::fs::read(p).unwrap())
            .trim_start_matches("sha256:")
            .to_string()
    };
    let inputs = v["inputs"].as_object().unwrap();
    let roles: Vec<&String> = inputs.keys().collect();
    assert_eq!(roles, ["baseline", "gate", "qrels", "run"]);
    for (role, file) in [("qrels", &qrels), ("run", &run), ("gate", &gate)] {
        assert_eq!(inputs[role]["path"], path(file), "{role}");
        assert_eq!(inputs[role]["sha256"], sha256(file), "{role}");
    }
    // The subject needs both flags and a gate.
    let o = gated(&qrels, &run, &run, &gate, &["--model", "search-ranker"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_worse_candidate_fails_with_exit_10() {
    let dir = scratch("worse");
    let gate = dir.join("gate.yaml");
    std::fs::write(&gate, GATE).unwrap();
    let report = dir.join("report.md");
    let o = gated(
        &fixtures().join("random.qrels"),
        &run_from_labels(&dir, "ideal.run", 1.0),
        &run_from_labels(&dir, "worst.run", -1.0),
        &gate,
        &["--report", path(&report)],
    );
    assert_eq!(o.status.code(), Some(10), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL") && out.contains("gate: FAIL"), "{out}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.starts_with("## mlctl eval gate: **FAIL**"), "{md}");
    assert!(md.contains("### `ndcg@10`: FAIL"), "{md}");
}

#[test]
fn unknown_metric_is_a_usage_error_listing_valid_ones() {
    let o = mlctl_eval(&[
        "--qrels",
        path(&fixtures().join("edge.qrels")),
        "--run",
        path(&fixtures().join("edge.run")),
        "--metric",
        "bleu@4",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("unknown metric `bleu@4`") && err.contains("ndcg_exp@K"),
        "{err}"
    );
}

#[test]
fn bad_gate_file_is_a_usage_error() {
    let dir = scratch("badgate");
    let gate = dir.join("gate.yaml");
    std::fs::write(&gate, "gate:\n  - metric: ndcg@10\n    alpha: 2\n").unwrap();
    let run = fixtures().join("edge.run");
    let o = gated(&fixtures().join("edge.qrels"), &run, &run, &gate, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("alpha must be in (0, 1)"),
        "{}",
        stderr(&o)
    );
    // A valid gate with no randomization rounds could never fail: refused.
    std::fs::write(&gate, GATE).unwrap();
    let zero_rounds = ["--permutations", "0"];
    let o = gated(
        &fixtures().join("edge.qrels"),
        &run,
        &run,
        &gate,
        &zero_rounds,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--permutations must be at least 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn baseline_without_gate_is_a_usage_error() {
    let run = fixtures().join("edge.run");
    let o = mlctl_eval(&[
        "--qrels",
        path(&fixtures().join("edge.qrels")),
        "--baseline",
        path(&run),
        "--run",
        path(&run),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let o = mlctl_eval(&[
        "--qrels",
        "/nonexistent/q.qrels",
        "--run",
        path(&fixtures().join("edge.run")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/q.qrels"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn malformed_and_duplicate_lines_are_rejected_with_file_and_line() {
    let dir = scratch("malformed");
    let bad = dir.join("bad.run");
    std::fs::write(&bad, "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 high t\n").unwrap();
    let qrels = fixtures().join("edge.qrels");
    let o = mlctl_eval(&["--qrels", path(&qrels), "--run", path(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    let expected = format!("{}:2: score `high` is not a finite number", path(&bad));
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));

    let dup = dir.join("dup.run");
    std::fs::write(
        &dup,
        "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5 t\nq1 Q0 d1 3 0.2 t\n",
    )
    .unwrap();
    let o = mlctl_eval(&["--qrels", path(&qrels), "--run", path(&dup)]);
    assert_eq!(o.status.code(), Some(1));
    let expected = format!(
        "{}:3: document `d1` is retrieved twice for query `q1` (first at line 1)",
        path(&dup)
    );
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
}
