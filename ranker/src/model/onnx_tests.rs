//! ONNX loader tests on hand-built graphs: the branch modes onnxmltools never
//! emits (GTE/GT), missing-value tracking, and the graphs that must be refused.

use prost::Message;

use super::*;
use crate::model::onnx_proto::{
    Dimension, FLOAT, ModelProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        floats: v.to_vec(),
        ..Default::default()
    }
}

fn strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, elem_type: i32, width: i64) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: 0,
                            dim_param: "N".into(),
                        },
                        Dimension {
                            dim_value: width,
                            dim_param: String::new(),
                        },
                    ],
                }),
            }),
        }),
    }
}

fn node(op: &str, domain: &str, input: &str, output: &str) -> NodeProto {
    NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        op_type: op.into(),
        domain: domain.into(),
        ..Default::default()
    }
}

/// A one-split regressor on feature 1 (of 2): true branch → -1, false → +1, plus
/// base_values 0.25.
fn stump(mode: &str, tracks_true: i64) -> NodeProto {
    let mut n = node(REGRESSOR, ML_DOMAIN, "input", "score");
    n.attribute = vec![
        ints("nodes_treeids", &[0, 0, 0]),
        ints("nodes_nodeids", &[0, 1, 2]),
        ints("nodes_featureids", &[1, 0, 0]),
        floats("nodes_values", &[0.5, 0.0, 0.0]),
        strings("nodes_modes", &[mode, "LEAF", "LEAF"]),
        ints("nodes_truenodeids", &[1, 0, 0]),
        ints("nodes_falsenodeids", &[2, 0, 0]),
        ints("nodes_missing_value_tracks_true", &[tracks_true, 0, 0]),
        ints("target_treeids", &[0, 0]),
        ints("target_nodeids", &[1, 2]),
        ints("target_ids", &[0, 0]),
        floats("target_weights", &[-1.0, 1.0]),
        floats("base_values", &[0.25]),
    ];
    n
}

fn model(nodes: Vec<NodeProto>, output: &str, input_type: i32) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        graph: Some(GraphProto {
            node: nodes,
            initializer: vec![],
            input: vec![value("input", input_type, 2)],
            output: vec![value(output, FLOAT, 1)],
        }),
        opset_import: vec![],
    }
    .encode_to_vec()
}

#[test]
fn every_branch_mode_and_missing_direction() {
    // (mode, tracks_true) → does the true branch (-1) win for 0.4, 0.5, 0.6, NaN?
    let cases: [(&str, i64, [bool; 4]); 6] = [
        ("BRANCH_LEQ", 0, [true, true, false, false]),
        ("BRANCH_LT", 0, [true, false, false, false]),
        ("BRANCH_GTE", 0, [false, true, true, false]),
        ("BRANCH_GT", 0, [false, false, true, false]),
        ("BRANCH_GTE", 1, [false, true, true, true]),
        ("BRANCH_LEQ", 1, [true, true, false, true]),
    ];
    for (mode, tracks, want) in cases {
        let e = parse(&model(vec![stump(mode, tracks)], "score", 1)).unwrap();
        assert_eq!(e.num_features, 2);
        for (x, true_branch) in [0.4, 0.5, 0.6, f64::NAN].into_iter().zip(want) {
            let expected = if true_branch { -0.75 } else { 1.25 };
            assert_eq!(
                e.score_reference(&[9.0, x]),
                expected,
                "{mode} tracks={tracks} x={x}"
            );
        }
    }
}

#[test]
fn pass_through_outputs_are_accepted() {
    let nodes = vec![stump("BRANCH_LEQ", 0), node("Identity", "", "score", "out")];
    let e = parse(&model(nodes, "out", 1)).unwrap();
    assert_eq!(e.score_reference(&[0.0, 0.0]), -0.75);
}

#[test]
fn graphs_that_change_the_score_are_refused_naming_the_operator() {
    let after = vec![stump("BRANCH_LEQ", 0), node("Relu", "", "score", "out")];
    let err = parse(&model(after, "out", 1)).unwrap_err().to_string();
    assert!(err.contains("Relu"), "{err}");

    let mut before = stump("BRANCH_LEQ", 0);
    before.input = vec!["scaled".into()];
    let nodes = vec![node("Abs", "", "input", "scaled"), before];
    let err = parse(&model(nodes, "score", 1)).unwrap_err().to_string();
    assert!(err.contains("operators Abs around"), "{err}");

    let mlp = vec![
        node("MatMul", "", "input", "h"),
        node("Relu", "", "h", "score"),
    ];
    let err = parse(&model(mlp, "score", 1)).unwrap_err().to_string();
    assert!(err.contains("operators MatMul, Relu"), "{err}");

    let v5 = vec![node("TreeEnsemble", ML_DOMAIN, "input", "score")];
    let err = parse(&model(v5, "score", 1)).unwrap_err().to_string();
    assert!(err.contains("nodes_splits"), "{err}");
}

#[test]
fn unsupported_attributes_are_named() {
    let err = parse(&model(vec![stump("BRANCH_EQ", 0)], "score", 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("BRANCH_EQ"), "{err}");

    let err = parse(&model(vec![stump("BRANCH_LEQ", 0)], "score", 11))
        .unwrap_err()
        .to_string();
    assert!(err.contains("element type 11"), "{err}");

    let mut two = stump("BRANCH_LEQ", 0);
    two.attribute.push(AttributeProto {
        name: "n_targets".into(),
        i: 2,
        ..Default::default()
    });
    let err = parse(&model(vec![two], "score", 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("n_targets=2"), "{err}");

    let mut avg = stump("BRANCH_LEQ", 0);
    avg.attribute.push(AttributeProto {
        name: "aggregate_function".into(),
        s: b"AVERAGE".to_vec(),
        ..Default::default()
    });
    let err = parse(&model(vec![avg], "score", 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AVERAGE"), "{err}");
}

#[test]
fn broken_node_references_are_malformed() {
    let mut bad = stump("BRANCH_LEQ", 0);
    for a in &mut bad.attribute {
        if a.name == "nodes_truenodeids" {
            a.ints = vec![7, 0, 0];
        }
    }
    let err = parse(&model(vec![bad], "score", 1)).unwrap_err();
    assert!(matches!(err, LoadError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("missing node 7"), "{err}");
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let err = parse(b"\x0a\xff\xff\xff\xff\x0f").unwrap_err();
    assert!(matches!(err, LoadError::Malformed { .. }), "{err}");
    let err = parse(b"").unwrap_err().to_string();
    assert!(err.contains("no graph"), "{err}");
}

fn tensor_attr(
    name: &str,
    data_type: i32,
    float_data: Vec<f32>,
    int32_data: Vec<i32>,
) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        t: Some(TensorProto {
            data_type,
            float_data,
            int32_data,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn opset5_tree_ensemble_with_gte_and_a_one_leaf_tree() {
    // Tree 0: node 0 is `x1 >= 0.5` (mode 2), true → leaf 0 (-1), false → leaf 1 (+1).
    // Tree 1 is a single leaf: node 1 sends both branches to leaf 2 (0.25).
    let mut n = node("TreeEnsemble", ML_DOMAIN, "input", "score");
    n.attribute = vec![
        ints("tree_roots", &[0, 1]),
        ints("nodes_featureids", &[1, 0]),
        tensor_attr("nodes_splits", FLOAT, vec![0.5, 0.0], vec![]),
        tensor_attr("nodes_modes", 2, vec![], vec![2, 0]),
        ints("nodes_truenodeids", &[0, 2]),
        ints("nodes_trueleafs", &[1, 1]),
        ints("nodes_falsenodeids", &[1, 2]),
        ints("nodes_falseleafs", &[1, 1]),
        ints("nodes_missing_value_tracks_true", &[1, 0]),
        ints("leaf_targetids", &[0, 0, 0]),
        tensor_attr("leaf_weights", FLOAT, vec![-1.0, 1.0, 0.25], vec![]),
    ];
    let e = parse(&model(vec![n.clone()], "score", 1)).unwrap();
    assert_eq!(e.trees.len(), 2);
    assert_eq!(e.score_reference(&[0.0, 0.5]), -0.75);
    assert_eq!(e.score_reference(&[0.0, 0.4]), 1.25);
    assert_eq!(
        e.score_reference(&[0.0, f64::NAN]),
        -0.75,
        "NaN tracks true"
    );

    for a in &mut n.attribute {
        if a.name == "nodes_modes" {
            a.t.as_mut().unwrap().int32_data = vec![4, 0];
        }
    }
    let err = parse(&model(vec![n], "score", 1)).unwrap_err().to_string();
    assert!(err.contains("mode 4"), "{err}");
}
