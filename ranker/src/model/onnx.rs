//! ONNX graphs holding one `ai.onnx.ml` TreeEnsembleRegressor/Classifier (as
//! onnxmltools exports LightGBM and XGBoost models), scored like onnxruntime with
//! f32 inputs (the opset-5 TreeEnsemble is in onnx_v5.rs). Any other graph is
//! refused, naming its operators.

use std::collections::{HashMap, HashSet};

use super::load::{LoadError, RawNode, assemble};
use super::onnx_proto::{AttributeProto, GraphProto, NodeProto, decode};
use super::{
    Comparison, Ensemble, ModelInfo, OutputTransform, Precision, SourceFormat, Test, Tree,
};

const FORMAT: &str = "onnx";
const ML_DOMAIN: &str = "ai.onnx.ml";
const REGRESSOR: &str = "TreeEnsembleRegressor";
const CLASSIFIER: &str = "TreeEnsembleClassifier";
/// The ai.onnx.ml opset-5 operator that replaces both.
const TREE_ENSEMBLE: &str = "TreeEnsemble";

pub(super) fn malformed(reason: impl Into<String>) -> LoadError {
    LoadError::Malformed {
        format: FORMAT,
        reason: reason.into(),
    }
}

pub(super) fn unsupported(reason: impl Into<String>) -> LoadError {
    LoadError::Unsupported {
        format: FORMAT,
        reason: reason.into(),
    }
}

/// Parses an ONNX model whose graph is a tree ensemble.
pub(super) fn parse(bytes: &[u8]) -> Result<Ensemble, LoadError> {
    let model = decode(bytes).map_err(|e| malformed(format!("protobuf ModelProto: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| malformed("ModelProto has no graph (field 7)"))?;
    let ensemble_node = find_ensemble(graph)?;
    check_pass_through(graph, ensemble_node)?;
    let num_features = input_width(graph, ensemble_node)?;
    let attrs = Attributes(&ensemble_node.attribute);
    if ensemble_node.op_type == TREE_ENSEMBLE {
        let (trees, transform) = super::onnx_v5::trees(&attrs, num_features)?;
        return Ok(Ensemble {
            precision: Precision::F32,
            num_features,
            feature_names: vec![],
            base_score: 0.0,
            info: ModelInfo {
                format: SourceFormat::Onnx,
                objective: TREE_ENSEMBLE.into(),
                trees_in_artifact: trees.len(),
            },
            trees,
            transform,
        });
    }
    let classifier = ensemble_node.op_type == CLASSIFIER;
    let transform = match attrs.string("post_transform")?.as_deref().unwrap_or("NONE") {
        "NONE" => OutputTransform::Identity,
        "LOGISTIC" => OutputTransform::Logistic,
        other => {
            return Err(unsupported(format!(
                "post_transform {other}; mlctl-ranker applies NONE or LOGISTIC"
            )));
        }
    };
    if let Some(agg) = attrs.string("aggregate_function")?
        && agg != "SUM"
    {
        return Err(unsupported(format!(
            "aggregate_function {agg}; mlctl-ranker sums the trees (SUM)"
        )));
    }
    if attrs.get("nodes_values_as_tensor").is_some()
        || attrs.get("target_weights_as_tensor").is_some()
    {
        return Err(unsupported(
            "double-precision thresholds or weights (*_as_tensor attributes); export with float attributes",
        ));
    }
    let (prefix, base_values) = if classifier {
        let labels =
            attrs.ints("classlabels_int64s").len() + attrs.strings("classlabels_strings").len();
        if labels != 2 {
            return Err(unsupported(format!(
                "TreeEnsembleClassifier with {labels} class labels; mlctl-ranker serves binary classifiers \
                 (the positive-class probability)"
            )));
        }
        let base = attrs.floats("base_values");
        // onnxruntime's binary-classifier path treats base_values in ways no golden
        // case pins down; refuse rather than guess.
        if base.iter().any(|b| *b != 0.0) {
            return Err(unsupported(
                "TreeEnsembleClassifier with non-zero base_values; export the model as a \
                 TreeEnsembleRegressor (raw margin) or without base_values",
            ));
        }
        ("class", vec![])
    } else {
        let n_targets = attrs.get("n_targets").map_or(1, |a| a.i);
        if n_targets != 1 {
            return Err(unsupported(format!(
                "n_targets={n_targets}; mlctl-ranker serves single-score models"
            )));
        }
        ("target", attrs.floats("base_values"))
    };
    let base_score = match base_values.as_slice() {
        [] => 0.0,
        [b] => f64::from(*b),
        more => {
            return Err(unsupported(format!(
                "base_values with {} entries; mlctl-ranker serves one score per row",
                more.len()
            )));
        }
    };
    let mut trees = build_trees(&attrs, prefix, num_features)?;
    let trees_in_artifact = trees.len();
    // onnxruntime sums the trees from 0 and adds base_values last, in f32; a final
    // one-leaf tree reproduces that order exactly (0 + first tree is exact).
    if base_score != 0.0 {
        trees.push(Tree {
            nodes: vec![super::Node::Leaf { value: base_score }],
        });
    }
    Ok(Ensemble {
        precision: Precision::F32,
        num_features,
        feature_names: vec![],
        base_score: 0.0,
        info: ModelInfo {
            format: SourceFormat::Onnx,
            objective: ensemble_node.op_type.clone(),
            trees_in_artifact,
        },
        trees,
        transform,
    })
}

/// The single tree-ensemble node, or a refusal naming the operators found.
fn find_ensemble(graph: &GraphProto) -> Result<&NodeProto, LoadError> {
    let ensembles: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| {
            [REGRESSOR, CLASSIFIER, TREE_ENSEMBLE].contains(&n.op_type.as_str())
                && n.domain == ML_DOMAIN
        })
        .collect();
    match ensembles.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut ops: Vec<&str> = vec![];
            for n in &graph.node {
                if !ops.contains(&n.op_type.as_str()) {
                    ops.push(&n.op_type);
                }
            }
            Err(unsupported(format!(
                "ONNX graph with operators {} is not a tree ensemble; mlctl-ranker serves ai.onnx.ml \
                 TreeEnsembleRegressor/Classifier (or opset-5 TreeEnsemble) graphs",
                if ops.is_empty() {
                    "(none)".to_string()
                } else {
                    ops.join(", ")
                }
            )))
        }
        many => Err(unsupported(format!(
            "the graph has {} tree-ensemble nodes; mlctl-ranker serves a graph with one",
            many.len()
        ))),
    }
}

/// Whether `node` leaves its first input unchanged: Identity, Cast to float, or a
/// Mul by the constant 1 (onnxmltools adds one after LightGBM classifiers).
fn is_pass_through(graph: &GraphProto, node: &NodeProto) -> bool {
    match node.op_type.as_str() {
        "Identity" => true,
        "Cast" => Attributes(&node.attribute)
            .get("to")
            .is_some_and(|a| a.i == i64::from(super::onnx_proto::FLOAT)),
        "Mul" => node.input.get(1).is_some_and(|name| {
            graph
                .initializer
                .iter()
                .find(|t| &t.name == name)
                .and_then(|t| t.as_f64s())
                .is_some_and(|v| v.iter().all(|x| *x == 1.0))
        }),
        _ => false,
    }
}

/// The ensemble must read a graph input, and its score must reach a graph output
/// through pass-through nodes only; any other node (outside the label branch of a
/// classifier, which only Identity/Cast/ZipMap may touch) changes the score.
fn check_pass_through(graph: &GraphProto, ensemble: &NodeProto) -> Result<(), LoadError> {
    let score_index = usize::from(ensemble.op_type == CLASSIFIER);
    let mut current = ensemble
        .output
        .get(score_index)
        .ok_or_else(|| malformed(format!("{} has no output {score_index}", ensemble.op_type)))?
        .clone();
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut on_path: HashSet<*const NodeProto> = HashSet::from([std::ptr::from_ref(ensemble)]);
    while !outputs.contains(current.as_str()) {
        let next = graph
            .node
            .iter()
            .find(|n| n.input.first() == Some(&current) && is_pass_through(graph, n));
        match next.and_then(|n| n.output.first().map(|o| (n, o))) {
            Some((n, out)) if on_path.insert(std::ptr::from_ref(n)) => current = out.clone(),
            _ => {
                let consumers: Vec<&str> = graph
                    .node
                    .iter()
                    .filter(|n| n.input.contains(&current))
                    .map(|n| n.op_type.as_str())
                    .collect();
                return Err(unsupported(format!(
                    "the {} score reaches no graph output unchanged (it feeds {}); mlctl-ranker \
                     serves graphs whose output is the ensemble's score",
                    ensemble.op_type,
                    if consumers.is_empty() {
                        "nothing".to_string()
                    } else {
                        consumers.join(", ")
                    }
                )));
            }
        }
    }
    let others: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| !on_path.contains(&std::ptr::from_ref(*n)))
        .filter(|n| !matches!(n.op_type.as_str(), "Identity" | "Cast" | "ZipMap"))
        .map(|n| n.op_type.as_str())
        .collect();
    if !others.is_empty() {
        return Err(unsupported(format!(
            "ONNX graph with operators {} around the tree ensemble; mlctl-ranker serves a lone \
             ai.onnx.ml TreeEnsembleRegressor/Classifier",
            others.join(", ")
        )));
    }
    Ok(())
}

/// Columns of the ensemble's input, from the graph input's declared shape
/// `[batch, features]` (or the largest feature id when the width is symbolic).
fn input_width(graph: &GraphProto, ensemble: &NodeProto) -> Result<usize, LoadError> {
    let name = ensemble
        .input
        .first()
        .ok_or_else(|| malformed(format!("{} has no input", ensemble.op_type)))?;
    let input = graph.input.iter().find(|i| &i.name == name).ok_or_else(|| {
        unsupported(format!(
            "the tree ensemble reads {name:?}, which is computed in the graph, not a graph input"
        ))
    })?;
    let tensor = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    if let Some(t) = tensor
        && t.elem_type != super::onnx_proto::FLOAT
    {
        return Err(unsupported(format!(
            "graph input {name:?} has element type {} (onnxruntime then compares in that type); \
             mlctl-ranker serves float (1) inputs",
            t.elem_type
        )));
    }
    let declared = tensor
        .and_then(|t| t.shape.as_ref())
        .and_then(|s| s.dim.get(1))
        .filter(|d| d.dim_value > 0)
        .map(|d| d.dim_value);
    let used = Attributes(&ensemble.attribute)
        .ints("nodes_featureids")
        .iter()
        .max()
        .map_or(1, |m| m + 1);
    let width = declared.unwrap_or(used);
    usize::try_from(width).map_err(|_| malformed(format!("input width {width}")))
}

/// Attribute lookup by name.
pub(super) struct Attributes<'a>(pub(super) &'a [AttributeProto]);

impl Attributes<'_> {
    pub(super) fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }
    pub(super) fn ints(&self, name: &str) -> Vec<i64> {
        self.get(name).map(|a| a.ints.clone()).unwrap_or_default()
    }
    fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).map(|a| a.floats.clone()).unwrap_or_default()
    }
    fn strings(&self, name: &str) -> Vec<Vec<u8>> {
        self.get(name)
            .map(|a| a.strings.clone())
            .unwrap_or_default()
    }
    fn string(&self, name: &str) -> Result<Option<String>, LoadError> {
        self.get(name)
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| malformed(format!("attribute {name} is not UTF-8")))
            })
            .transpose()
    }
}

/// Builds the trees from the parallel `nodes_*` arrays and the leaf weights
/// (`target_*` or `class_*`), in the order the trees first appear (onnxruntime's
/// summation order).
fn build_trees(
    attrs: &Attributes<'_>,
    prefix: &str,
    num_features: usize,
) -> Result<Vec<Tree>, LoadError> {
    let tree_ids = attrs.ints("nodes_treeids");
    let node_ids = attrs.ints("nodes_nodeids");
    let features = attrs.ints("nodes_featureids");
    let values = attrs.floats("nodes_values");
    let modes = attrs.strings("nodes_modes");
    let true_ids = attrs.ints("nodes_truenodeids");
    let false_ids = attrs.ints("nodes_falsenodeids");
    let tracks = attrs.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_values", values.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
    ] {
        if len != n {
            return Err(malformed(format!(
                "attribute {name} has {len} entries, nodes_treeids has {n}"
            )));
        }
    }
    if !tracks.is_empty() && tracks.len() != n {
        return Err(malformed(format!(
            "nodes_missing_value_tracks_true has {} entries, nodes_treeids has {n}",
            tracks.len()
        )));
    }
    // Tree order and each node's position within its tree.
    let mut order: Vec<i64> = vec![];
    let mut position: HashMap<(i64, i64), usize> = HashMap::new();
    let mut members: HashMap<i64, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let list = members.entry(tree_ids[i]).or_insert_with(|| {
            order.push(tree_ids[i]);
            vec![]
        });
        if position
            .insert((tree_ids[i], node_ids[i]), list.len())
            .is_some()
        {
            return Err(malformed(format!(
                "tree {} lists node {} twice",
                tree_ids[i], node_ids[i]
            )));
        }
        list.push(i);
    }
    let leaf_weights = leaf_weights(attrs, prefix)?;
    let mut trees = Vec::with_capacity(order.len());
    for tree in order {
        let nodes = &members[&tree];
        let mut raw = Vec::with_capacity(nodes.len());
        let mut children = HashSet::new();
        for &i in nodes {
            let mode = String::from_utf8_lossy(&modes[i]);
            let locate = |id: i64| {
                position.get(&(tree, id)).copied().ok_or_else(|| {
                    malformed(format!(
                        "tree {tree} node {} points to missing node {id}",
                        node_ids[i]
                    ))
                })
            };
            if mode == "LEAF" {
                raw.push(RawNode::Leaf(
                    leaf_weights
                        .get(&(tree, node_ids[i]))
                        .copied()
                        .unwrap_or(0.0),
                ));
                continue;
            }
            let (t, f) = (locate(true_ids[i])?, locate(false_ids[i])?);
            children.extend([t, f]);
            let tracks_true = tracks.get(i).is_some_and(|v| *v != 0);
            // Left is where `x < t` / `x <= t` holds; GTE and GT are their negations.
            let (comparison, left, right, nan_left) = match mode.as_ref() {
                "BRANCH_LEQ" => (Comparison::LessOrEqual, t, f, tracks_true),
                "BRANCH_LT" => (Comparison::Less, t, f, tracks_true),
                "BRANCH_GTE" => (Comparison::Less, f, t, !tracks_true),
                "BRANCH_GT" => (Comparison::LessOrEqual, f, t, !tracks_true),
                other => {
                    // onnxmltools writes LightGBM categorical splits as BRANCH_EQ.
                    let hint = if other.ends_with("EQ") {
                        " (equality splits encode categorical features; serve the LightGBM or \
                         XGBoost model file instead, which keeps them as category sets)"
                    } else {
                        ""
                    };
                    return Err(unsupported(format!(
                        "tree {tree} node {} has mode {other}; mlctl-ranker serves \
                         BRANCH_LEQ/LT/GTE/GT{hint}",
                        node_ids[i]
                    )));
                }
            };
            let feature = u32::try_from(features[i])
                .ok()
                .filter(|f| (*f as usize) < num_features)
                .ok_or_else(|| {
                    malformed(format!(
                        "tree {tree} node {} reads feature {}, beyond the input's {num_features} columns",
                        node_ids[i], features[i]
                    ))
                })?;
            raw.push(RawNode::Split {
                feature,
                test: Test::Numeric {
                    threshold: f64::from(values[i]),
                    comparison,
                    nan_left,
                    zero_missing_left: None,
                },
                left,
                right,
            });
        }
        let roots: Vec<usize> = (0..raw.len()).filter(|p| !children.contains(p)).collect();
        let [root] = roots.as_slice() else {
            return Err(malformed(format!("tree {tree} has {} roots", roots.len())));
        };
        trees.push(assemble(&raw, *root).map_err(|e| malformed(format!("tree {tree}: {e}")))?);
    }
    Ok(trees)
}

/// The weight of each leaf `(tree, node)` for output 0 (regressor target 0, or
/// the positive class of a binary classifier, whose weights onnxmltools puts on
/// class id 0 and onnxruntime reports as the second column).
fn leaf_weights(
    attrs: &Attributes<'_>,
    prefix: &str,
) -> Result<HashMap<(i64, i64), f64>, LoadError> {
    let trees = attrs.ints(&format!("{prefix}_treeids"));
    let nodes = attrs.ints(&format!("{prefix}_nodeids"));
    let ids = attrs.ints(&format!("{prefix}_ids"));
    let weights = attrs.floats(&format!("{prefix}_weights"));
    if nodes.len() != trees.len() || ids.len() != trees.len() || weights.len() != trees.len() {
        return Err(malformed(format!(
            "{prefix}_treeids, {prefix}_nodeids, {prefix}_ids and {prefix}_weights differ in length"
        )));
    }
    let mut out = HashMap::new();
    for i in 0..trees.len() {
        if ids[i] != 0 {
            return Err(unsupported(format!(
                "{prefix}_ids holds {}: leaves with weights for several outputs; mlctl-ranker serves \
                 single-score ensembles",
                ids[i]
            )));
        }
        // Several weights on one leaf would be added one by one in f32 by
        // onnxruntime, which a single leaf value cannot reproduce exactly.
        if out
            .insert((trees[i], nodes[i]), f64::from(weights[i]))
            .is_some()
        {
            return Err(unsupported(format!(
                "tree {} leaf {} carries several weights",
                trees[i], nodes[i]
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
