//! The `ai.onnx.ml` opset-5 `TreeEnsemble` operator: interior nodes and leaves are
//! separate lists, modes/thresholds/weights are tensors, and there is no
//! base_values. Scored like onnxruntime with f32 inputs, as the older operators.

use std::collections::HashMap;

use super::load::{LoadError, RawNode, assemble};
use super::onnx::{Attributes, malformed, unsupported};
use super::onnx_proto::{FLOAT, TensorProto};
use super::{Comparison, OutputTransform, Test, Tree};

/// `post_transform` values of opset 5.
const POST_NONE: i64 = 0;
const POST_LOGISTIC: i64 = 2;
/// `aggregate_function` SUM.
const AGGREGATE_SUM: i64 = 1;

fn tensor<'a>(attrs: &'a Attributes<'_>, name: &str) -> Result<&'a TensorProto, LoadError> {
    attrs
        .get(name)
        .and_then(|a| a.t.as_ref())
        .ok_or_else(|| malformed(format!("TreeEnsemble has no tensor attribute {name}")))
}

/// Small non-negative integers of a tensor (`nodes_modes` is uint8: raw bytes or
/// `int32_data`).
fn small_ints(t: &TensorProto) -> Vec<i64> {
    if t.raw_data.is_empty() {
        t.int32_data.iter().map(|v| i64::from(*v)).collect()
    } else {
        t.raw_data.iter().map(|v| i64::from(*v)).collect()
    }
}

/// The trees and output transform of a `TreeEnsemble` node.
pub(super) fn trees(
    attrs: &Attributes<'_>,
    num_features: usize,
) -> Result<(Vec<Tree>, OutputTransform), LoadError> {
    let int = |name: &str, default: i64| attrs.get(name).map_or(default, |a| a.i);
    let transform = match int("post_transform", POST_NONE) {
        POST_NONE => OutputTransform::Identity,
        POST_LOGISTIC => OutputTransform::Logistic,
        other => {
            return Err(unsupported(format!(
                "TreeEnsemble post_transform {other}; mlctl-ranker applies NONE (0) or LOGISTIC (2)"
            )));
        }
    };
    let aggregate = int("aggregate_function", AGGREGATE_SUM);
    if aggregate != AGGREGATE_SUM {
        return Err(unsupported(format!(
            "TreeEnsemble aggregate_function {aggregate}; mlctl-ranker sums the trees (SUM = 1)"
        )));
    }
    let n_targets = int("n_targets", 1);
    if n_targets != 1 {
        return Err(unsupported(format!(
            "n_targets={n_targets}; mlctl-ranker serves single-score models"
        )));
    }
    if attrs.get("membership_values").is_some() {
        return Err(unsupported(
            "TreeEnsemble with BRANCH_MEMBER sets (membership_values); mlctl-ranker serves \
             BRANCH_LEQ/LT/GTE/GT",
        ));
    }
    let splits_tensor = tensor(attrs, "nodes_splits")?;
    if splits_tensor.data_type != FLOAT {
        return Err(unsupported(format!(
            "nodes_splits of element type {} (onnxruntime then compares in that type); \
             mlctl-ranker serves float (1) thresholds",
            splits_tensor.data_type
        )));
    }
    let splits = splits_tensor.as_f64s().unwrap_or_default();
    let modes = small_ints(tensor(attrs, "nodes_modes")?);
    let weights = tensor(attrs, "leaf_weights")?
        .as_f64s()
        .ok_or_else(|| unsupported("leaf_weights is neither float nor double"))?;
    if weights.iter().any(|w| !super::f32_exact(*w)) {
        return Err(unsupported(
            "double leaf_weights that are not f32 values; mlctl-ranker sums in f32",
        ));
    }
    let targets = attrs.ints("leaf_targetids");
    if targets.len() != weights.len() || targets.iter().any(|t| *t != 0) {
        return Err(malformed(format!(
            "leaf_targetids has {} entries (all must be 0) for {} leaf_weights",
            targets.len(),
            weights.len()
        )));
    }
    let features = attrs.ints("nodes_featureids");
    let true_ids = attrs.ints("nodes_truenodeids");
    let true_leaf = attrs.ints("nodes_trueleafs");
    let false_ids = attrs.ints("nodes_falsenodeids");
    let false_leaf = attrs.ints("nodes_falseleafs");
    let tracks = attrs.ints("nodes_missing_value_tracks_true");
    let n = features.len();
    for (name, len) in [
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_trueleafs", true_leaf.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_falseleafs", false_leaf.len()),
    ] {
        if len != n {
            return Err(malformed(format!(
                "attribute {name} has {len} entries, nodes_featureids has {n}"
            )));
        }
    }
    let mut out = vec![];
    for (t, &root) in attrs.ints("tree_roots").iter().enumerate() {
        let root = usize::try_from(root)
            .ok()
            .filter(|r| *r < n)
            .ok_or_else(|| malformed(format!("tree_roots[{t}] = {root} is not a node")))?;
        // Interior nodes get a raw index when first reached; every leaf reference
        // gets its own (a one-leaf tree points both branches at the same leaf).
        let mut raw: Vec<Option<RawNode>> = vec![None];
        let mut index_of: HashMap<usize, usize> = HashMap::from([(root, 0)]);
        let mut work = vec![root];
        while let Some(i) = work.pop() {
            let mut child = |is_leaf: i64, id: i64| -> Result<usize, LoadError> {
                let id = usize::try_from(id)
                    .map_err(|_| malformed(format!("node {i} has child {id}")))?;
                if is_leaf != 0 {
                    let w = *weights.get(id).ok_or_else(|| {
                        malformed(format!("node {i} points to leaf {id}, beyond leaf_weights"))
                    })?;
                    raw.push(Some(RawNode::Leaf(w)));
                    return Ok(raw.len() - 1);
                }
                if id >= n {
                    return Err(malformed(format!("node {i} points to missing node {id}")));
                }
                if let Some(at) = index_of.get(&id) {
                    return Ok(*at); // reached twice: assemble names it
                }
                raw.push(None);
                index_of.insert(id, raw.len() - 1);
                work.push(id);
                Ok(raw.len() - 1)
            };
            let on_true = child(true_leaf[i], true_ids[i])?;
            let on_false = child(false_leaf[i], false_ids[i])?;
            let tracks_true = tracks.get(i).is_some_and(|v| *v != 0);
            let (comparison, left, right, nan_left) = match modes[i] {
                0 => (Comparison::LessOrEqual, on_true, on_false, tracks_true),
                1 => (Comparison::Less, on_true, on_false, tracks_true),
                2 => (Comparison::Less, on_false, on_true, !tracks_true),
                3 => (Comparison::LessOrEqual, on_false, on_true, !tracks_true),
                other => {
                    return Err(unsupported(format!(
                        "node {i} has mode {other} (4 EQ, 5 NEQ, 6 MEMBER); mlctl-ranker \
                         serves BRANCH_LEQ/LT/GTE/GT (0-3)"
                    )));
                }
            };
            let feature = u32::try_from(features[i])
                .ok()
                .filter(|f| (*f as usize) < num_features)
                .ok_or_else(|| {
                    malformed(format!(
                        "node {i} reads feature {}, beyond the input's {num_features} columns",
                        features[i]
                    ))
                })?;
            let at = index_of
                .get(&i)
                .copied()
                .ok_or_else(|| malformed(format!("node {i} was reached without an index")))?;
            raw[at] = Some(RawNode::Split {
                feature,
                test: Test::Numeric {
                    threshold: splits[i],
                    comparison,
                    nan_left,
                    zero_missing_left: None,
                },
                left,
                right,
            });
        }
        let raw = raw
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(format!("tree {t} has a node that was never filled")))?;
        out.push(assemble(&raw, 0).map_err(|e| malformed(format!("tree {t}: {e}")))?);
    }
    Ok((out, transform))
}
