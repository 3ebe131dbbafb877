#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The loaders against the libraries' own scores: every case in ranker/golden/
//! (written by ranker/golden/generate.py with LightGBM, XGBoost and onnxruntime)
//! is loaded, scored by the reference evaluator and by the engine (f64 and f32
//! rows, one and two threads), and compared with what the library returned for
//! the same rows; the engine must also give the reference's exact bits, the
//! logistic outputs included. Refusal cases must fail to
//! load with a message naming the unsupported construct; mutated artifacts must
//! never panic.

use std::path::{Path, PathBuf};

use mlctl_ranker::engine::Scorer;
use mlctl_ranker::model::{Ensemble, Format, LoadError, OutputTransform, Precision, load};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    model: String,
    format: String,
    precision: Option<String>,
    rows: Option<Vec<Vec<Option<f64>>>>,
    expected: Option<Vec<f64>>,
    expected_f32: Option<Vec<f64>>,
    refuse: Option<String>,
    trees: Option<usize>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn cases() -> Vec<(String, Case)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(case) = name.strip_suffix(".case.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((case.to_string(), serde_json::from_str(&text).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn format_of(name: &str) -> Format {
    match name {
        "lightgbm" => Format::Lightgbm,
        "xgboost" => Format::Xgboost,
        "onnx" => Format::Onnx,
        other => panic!("unknown format {other} in a golden case"),
    }
}

fn artifact(case: &Case) -> Vec<u8> {
    std::fs::read(golden_dir().join(&case.model)).unwrap()
}

/// Relative error with the floor of 1 the tolerance uses.
fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1.0)
}

/// Compares scores, returning the worst relative error and the rows that differ
/// beyond the tolerance (exact equality is required where no transcendental
/// function is involved).
struct Compare {
    worst: f64,
    inexact: usize,
    failures: Vec<String>,
}

fn compare(label: &str, got: &[f64], want: &[f64], exact: bool) -> Compare {
    assert_eq!(got.len(), want.len(), "{label}: row count");
    let mut c = Compare {
        worst: 0.0,
        inexact: 0,
        failures: vec![],
    };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = rel_err(*g, *w);
        c.worst = c.worst.max(e);
        if g != w {
            c.inexact += 1;
        }
        let ok = if exact { g == w } else { e <= 1e-6 };
        if !ok {
            c.failures
                .push(format!("{label} row {i}: got {g:?}, library gave {w:?}"));
        }
    }
    c
}

#[test]
fn every_golden_case_scores_like_its_library() {
    let mut failures = vec![];
    let mut scored = 0;
    for (name, case) in cases() {
        let (Some(rows), Some(expected)) = (&case.rows, &case.expected) else {
            continue;
        };
        scored += 1;
        let bytes = artifact(&case);
        let ensemble = load(&bytes, format_of(&case.format))
            .unwrap_or_else(|e| panic!("{name}: {} does not load: {e}", case.model));
        let auto =
            load(&bytes, Format::Auto).unwrap_or_else(|e| panic!("{name}: auto-detection: {e}"));
        assert_eq!(auto, ensemble, "{name}: Format::Auto reads the same model");
        let want_precision = match case.precision.as_deref() {
            Some("f64") => Precision::F64,
            _ => Precision::F32,
        };
        assert_eq!(ensemble.precision, want_precision, "{name}: precision");
        if let Some(trees) = case.trees {
            assert_eq!(
                ensemble.info.trees_in_artifact, trees,
                "{name}: trees in the artifact"
            );
            assert_eq!(ensemble.trees.len(), trees, "{name}: every tree is scored");
        }
        // The logistic goes through exp, whose last bit differs between libms;
        // everything else is additions and comparisons and must be bit-exact.
        let exact = ensemble.transform == OutputTransform::Identity;
        let rows: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect();
        let reference: Vec<f64> = rows.iter().map(|r| ensemble.score_reference(r)).collect();
        // What the reference gives for the rows cast to f32 (an f32 request's input).
        let reference_f32: Vec<f64> = rows
            .iter()
            .map(|r| {
                let w: Vec<f64> = r.iter().map(|v| f64::from(*v as f32)).collect();
                ensemble.score_reference(&w)
            })
            .collect();
        let scorer = Scorer::new(&ensemble);
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let f32_rows: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        let score_f64 = |threads: usize| {
            let mut out = vec![0.0; rows.len()];
            scorer.score_f64_parallel(&flat, &mut out, threads);
            out
        };
        let mut engine_f32 = vec![0.0; rows.len()];
        scorer.score_f32(&f32_rows, &mut engine_f32);
        // The engine must reproduce the reference bit for bit on every path, the
        // logistic ones included (same exp); the library comparison below allows
        // the logistic its last bit.
        let engine_f64 = score_f64(1);
        let engine_f64_parallel = score_f64(2);
        let f32_reference = match ensemble.precision {
            Precision::F64 => &reference_f32,
            // f32 models cast every input to f32 first: the same reference.
            Precision::F32 => &reference,
        };
        for (label, got, want) in [
            ("engine f64", &engine_f64, &reference),
            ("engine f64 parallel", &engine_f64_parallel, &reference),
            ("engine f32", &engine_f32, f32_reference),
        ] {
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                if g.to_bits() != w.to_bits() {
                    failures.push(format!("{name} {label} row {i}: {g} vs reference {w}"));
                }
            }
        }
        let mut report = vec![];
        let mut check = |label: &str, got: Vec<f64>, want: &[f64]| {
            let c = compare(&format!("{name} {label}"), &got, want, exact);
            report.push(format!(
                "{label}: worst rel err {:.3e}, {} of {} inexact",
                c.worst,
                c.inexact,
                got.len()
            ));
            failures.extend(c.failures);
        };
        match ensemble.precision {
            Precision::F64 => {
                check("reference f64", reference, expected);
                check("engine f64", engine_f64, expected);
                check("engine f64 parallel", engine_f64_parallel, expected);
                if let Some(expected_f32) = &case.expected_f32 {
                    check("reference f32-input", reference_f32, expected_f32);
                    check("engine f32", engine_f32, expected_f32);
                }
            }
            Precision::F32 => {
                check("reference", reference, expected);
                check("engine f32", engine_f32, expected);
                check("engine f64 rows into an f32 model", engine_f64, expected);
                check("engine f64 parallel", engine_f64_parallel, expected);
            }
        }
        eprintln!(
            "{name} ({} trees): {}",
            ensemble.trees.len(),
            report.join("; ")
        );
    }
    assert!(
        scored >= 25,
        "only {scored} golden cases found; run ranker/golden/generate.py"
    );
    assert!(
        failures.is_empty(),
        "{} scores differ from the library:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn refused_models_name_what_is_unsupported() {
    let mut refused = 0;
    for (name, case) in cases() {
        let Some(word) = &case.refuse else { continue };
        refused += 1;
        for format in [format_of(&case.format), Format::Auto] {
            match load(&artifact(&case), format) {
                Err(e @ LoadError::Unsupported { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(word.as_str()),
                        "{name}: {msg:?} should name {word:?}"
                    );
                    eprintln!("{name}: {msg}");
                }
                Err(other) => panic!("{name}: expected a refusal naming {word:?}, got {other}"),
                Ok(_) => panic!("{name}: loaded a model that must be refused ({word})"),
            }
        }
    }
    assert!(refused >= 7, "only {refused} refusal cases found");
}

#[test]
fn a_format_mismatch_is_malformed_not_a_wrong_model() {
    let lgb = std::fs::read(golden_dir().join("lgb_regression.txt")).unwrap();
    for format in [Format::Xgboost, Format::Onnx] {
        let err = load(&lgb, format).unwrap_err();
        assert!(
            matches!(err, LoadError::Malformed { .. }),
            "{format:?}: {err}"
        );
    }
    let err = load(b"\x00\x01garbage", Format::Auto).unwrap_err();
    assert!(matches!(err, LoadError::Unknown(_)), "{err}");
}

/// Every golden artifact, read once for all mutation cases.
fn artifacts() -> &'static [(Vec<u8>, Format)] {
    static ALL: std::sync::OnceLock<Vec<(Vec<u8>, Format)>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        cases()
            .into_iter()
            .map(|(_, c)| (artifact(&c), format_of(&c.format)))
            .collect()
    })
}

fn loads_without_panicking(bytes: &[u8], format: Format) {
    // Either outcome is fine; a panic (or an ensemble breaking the invariants the
    // evaluators rely on) is not.
    if let Ok(e) = load(bytes, format) {
        check_invariants(&e);
    }
    if let Ok(e) = load(bytes, Format::Auto) {
        check_invariants(&e);
    }
}

fn check_invariants(e: &Ensemble) {
    assert!(e.validate().is_ok());
    let row = vec![0.5; e.num_features];
    let _ = e.score_reference(&row);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::Auto, Format::Lightgbm, Format::Xgboost, Format::Onnx] {
            loads_without_panicking(&bytes, format);
        }
    }

    #[test]
    fn mutated_artifacts_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let all = artifacts();
        let (mut bytes, format) = all[pick.index(all.len())].clone();
        for (at, byte, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        loads_without_panicking(&bytes, format);
        // Truncation is the commonest corruption of a download.
        let len = cut.index(bytes.len() + 1);
        loads_without_panicking(&bytes[..len], format);
    }
}
