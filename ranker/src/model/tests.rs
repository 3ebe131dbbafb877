//! The reference semantics, pinned on hand-built trees.

use super::*;

fn numeric(threshold: f64, comparison: Comparison, nan_left: bool, zero: Option<bool>) -> Test {
    Test::Numeric {
        threshold,
        comparison,
        nan_left,
        zero_missing_left: zero,
    }
}

fn stump(precision: Precision, test: Test) -> Ensemble {
    Ensemble {
        precision,
        num_features: 1,
        feature_names: vec![],
        base_score: 0.0,
        trees: vec![Tree {
            nodes: vec![
                Node::Split {
                    feature: 0,
                    test,
                    left: 1,
                    right: 2,
                },
                Node::Leaf { value: -1.0 },
                Node::Leaf { value: 1.0 },
            ],
        }],
        transform: OutputTransform::Identity,
        info: ModelInfo {
            format: SourceFormat::LightGbm,
            objective: "regression".into(),
            trees_in_artifact: 1,
        },
    }
}

#[test]
fn numeric_comparisons_and_missing_values() {
    let le = stump(
        Precision::F64,
        numeric(0.5, Comparison::LessOrEqual, true, None),
    );
    assert_eq!(le.score_reference(&[0.5]), -1.0);
    assert_eq!(le.score_reference(&[0.6]), 1.0);
    assert_eq!(le.score_reference(&[f64::NAN]), -1.0);
    let lt = stump(Precision::F64, numeric(0.5, Comparison::Less, false, None));
    assert_eq!(lt.score_reference(&[0.5]), 1.0);
    assert_eq!(lt.score_reference(&[f64::NAN]), 1.0);
    // Zero as missing: tiny values and NaN take the default direction.
    let zero = stump(
        Precision::F64,
        numeric(-1.0, Comparison::LessOrEqual, false, Some(true)),
    );
    assert_eq!(zero.score_reference(&[0.0]), -1.0);
    assert_eq!(zero.score_reference(&[1e-36]), -1.0);
    assert_eq!(zero.score_reference(&[f64::NAN]), -1.0);
    assert_eq!(zero.score_reference(&[1e-3]), 1.0);
}

#[test]
fn f32_precision_casts_the_feature_before_comparing() {
    // 0.1f32 widened is 0.10000000149…; the f64 0.1 is below it, but cast to f32
    // it equals the threshold, so `<` is false.
    let t = f64::from(0.1f32);
    let e = stump(Precision::F32, numeric(t, Comparison::Less, false, None));
    assert_eq!(e.score_reference(&[0.1]), 1.0);
    let d = stump(Precision::F64, numeric(t, Comparison::Less, false, None));
    assert_eq!(d.score_reference(&[0.1]), -1.0);
}

#[test]
fn categorical_sets_and_negative_values() {
    let lgb = stump(
        Precision::F64,
        Test::Categorical {
            bits: vec![0b101],
            set_left: true,
            nan_left: false,
            negative_before_trunc: false,
        },
    );
    assert_eq!(lgb.score_reference(&[0.0]), -1.0);
    assert_eq!(lgb.score_reference(&[2.9]), -1.0);
    assert_eq!(lgb.score_reference(&[1.0]), 1.0);
    assert_eq!(
        lgb.score_reference(&[-0.5]),
        -1.0,
        "LightGBM truncates -0.5 to category 0"
    );
    assert_eq!(lgb.score_reference(&[-1.0]), 1.0);
    assert_eq!(lgb.score_reference(&[40.0]), 1.0);
    assert_eq!(lgb.score_reference(&[f64::NAN]), 1.0);
    let xgb = stump(
        Precision::F32,
        Test::Categorical {
            bits: vec![0b101],
            set_left: false,
            nan_left: true,
            negative_before_trunc: true,
        },
    );
    assert_eq!(xgb.score_reference(&[0.0]), 1.0);
    assert_eq!(xgb.score_reference(&[1.0]), -1.0);
    assert_eq!(
        xgb.score_reference(&[-0.5]),
        -1.0,
        "XGBoost: negative is never in the set"
    );
    assert_eq!(xgb.score_reference(&[f64::NAN]), -1.0);
}

#[test]
fn validate_rejects_backward_children_and_unknown_features() {
    let mut e = stump(
        Precision::F64,
        numeric(0.5, Comparison::LessOrEqual, true, None),
    );
    assert!(e.validate().is_ok());
    if let Node::Split { left, .. } = &mut e.trees[0].nodes[0] {
        *left = 0;
    }
    assert!(e.validate().is_err());
    let mut e = stump(
        Precision::F64,
        numeric(0.5, Comparison::LessOrEqual, true, None),
    );
    e.num_features = 0;
    assert!(e.validate().unwrap_err().0.contains("beyond"));
    let e = stump(Precision::F32, numeric(0.1, Comparison::Less, true, None));
    assert!(e.validate().unwrap_err().0.contains("not an f32"));
}

#[test]
fn f32_sums_round_like_float() {
    let mut e = stump(Precision::F32, numeric(0.5, Comparison::Less, true, None));
    e.base_score = f64::from(16_777_216f32);
    // 2^24 + 1 is not an f32: the f32 sum stays at 2^24.
    e.trees[0].nodes[2] = Node::Leaf { value: 1.0 };
    assert_eq!(e.score_reference(&[1.0]), 16_777_216.0);
}

#[test]
fn zero_threshold_is_lightgbms_float_constant() {
    // 1.0000000180025095e-35 is 1e-35f widened: LightGBM treats it as zero, while a
    // double 1e-35 cut-off would not.
    assert_eq!(ZERO_THRESHOLD, 1.000_000_018_002_509_5e-35);
    let zero = stump(
        Precision::F64,
        numeric(-1.0, Comparison::LessOrEqual, false, Some(true)),
    );
    assert_eq!(zero.score_reference(&[ZERO_THRESHOLD]), -1.0);
    assert_eq!(zero.score_reference(&[-ZERO_THRESHOLD]), -1.0);
    assert_eq!(zero.score_reference(&[1.000_000_02e-35]), 1.0);
}
