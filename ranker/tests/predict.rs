//! `mlctl-ranker predict` end to end: the built binary scores the golden models'
//! rows (written as CSV and as float32 `.npy`) and prints exactly the libraries'
//! scores; bad inputs exit 1 with a message, bad usage exits 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name)
}

struct Case {
    model: PathBuf,
    rows: Vec<Vec<Option<f64>>>,
    expected: Vec<f64>,
    /// Scores of the rows cast to f32 first (LightGBM cases only).
    expected_f32: Option<Vec<f64>>,
}

fn case(name: &str) -> Case {
    let text = std::fs::read_to_string(golden(&format!("{name}.case.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |key: &str| -> Option<Vec<f64>> {
        v.get(key).map(|a| {
            a.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
    };
    Case {
        model: golden(v["model"].as_str().unwrap()),
        rows: v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64()).collect())
            .collect(),
        expected: floats("expected").unwrap(),
        expected_f32: floats("expected_f32"),
    }
}

fn predict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlctl-ranker"))
        .arg("predict")
        .args(args)
        .output()
        .unwrap()
}

fn scores(out: &Output) -> Vec<f64> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn assert_bits(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "row {i}: {g} vs {w}");
    }
}

fn write_csv(dir: &Path, rows: &[Vec<Option<f64>>]) -> PathBuf {
    let text: String = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .map(|x| x.map(|v| format!("{v:?}")).unwrap_or_default())
                .collect();
            cells.join(",") + "\n"
        })
        .collect();
    let path = dir.join("rows.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// numpy's layout: magic, version 1.0, little-endian header length, dict, data.
fn write_npy_f32(dir: &Path, rows: &[Vec<Option<f64>>]) -> PathBuf {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        rows[0].len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for x in rows.iter().flatten() {
        bytes.extend((x.unwrap_or(f64::NAN) as f32).to_le_bytes());
    }
    let path = dir.join("rows.npy");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn lightgbm_scores_from_csv_and_f32_npy_are_the_librarys() {
    let c = case("lgb_lambdarank");
    let dir = tempfile::tempdir().unwrap();
    let model = c.model.to_str().unwrap();
    let csv = write_csv(dir.path(), &c.rows);
    let out = predict(&["--model", model, "--input", csv.to_str().unwrap()]);
    assert_bits(&scores(&out), &c.expected);

    let npy = write_npy_f32(dir.path(), &c.rows);
    let out = predict(&[
        "--model",
        model,
        "--format",
        "lightgbm",
        "--input",
        npy.to_str().unwrap(),
        "--threads",
        "3",
        "--timing",
    ]);
    assert_bits(&scores(&out), c.expected_f32.as_ref().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("scored {} rows in ", c.rows.len())),
        "{stderr}"
    );
}

#[test]
fn xgboost_scores_are_the_librarys() {
    let c = case("xgb_rank_ndcg");
    let dir = tempfile::tempdir().unwrap();
    let npy = write_npy_f32(dir.path(), &c.rows);
    let out = predict(&[
        "--model",
        c.model.to_str().unwrap(),
        "--input",
        npy.to_str().unwrap(),
    ]);
    assert_bits(&scores(&out), &c.expected);
}

#[test]
fn bad_inputs_exit_1_with_the_reason_and_bad_usage_exits_2() {
    let c = case("lgb_lambdarank");
    let model = c.model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = c.rows[0].len();

    let narrow = dir.path().join("narrow.csv");
    std::fs::write(&narrow, "1,2\n").unwrap();
    let out = predict(&["--model", model, "--input", narrow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("rows have 2 columns but the model expects {want}")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let text = dir.path().join("text.csv");
    std::fs::write(&text, "1,abc\n").unwrap();
    let out = predict(&["--model", model, "--input", text.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1, column 2: \"abc\""));

    let out = predict(&["--model", model, "--input", "/nonexistent/rows.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rows.csv"));

    let out = predict(&["--model", model]);
    assert_eq!(out.status.code(), Some(2));
    let out = predict(&["--model", model, "--input", "x.csv", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
