//! LightGBM text models as `Booster.save_model` writes them: a `key=value` header,
//! one `Tree=N` block per tree, then `end of trees`. The decision rules follow
//! LightGBM's `Tree::NumericalDecision`/`CategoricalDecision` (see `goes_left`).

use super::load::{LoadError, RawNode, assemble};
use super::{
    Comparison, Ensemble, ModelInfo, OutputTransform, Precision, SourceFormat, Test, Tree,
    ZERO_THRESHOLD,
};

const FORMAT: &str = "lightgbm";

// `decision_type` bits (LightGBM tree.h): categorical, default_left, missing type.
const CATEGORICAL_MASK: u8 = 1;
const DEFAULT_LEFT_MASK: u8 = 2;
const MISSING_NONE: u8 = 0;
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;

fn malformed(line: usize, reason: impl std::fmt::Display) -> LoadError {
    LoadError::Malformed {
        format: FORMAT,
        reason: format!("line {line}: {reason}"),
    }
}

fn unsupported(reason: String) -> LoadError {
    LoadError::Unsupported {
        format: FORMAT,
        reason,
    }
}

/// `key=value` lines of one section, with the line each came from.
struct Section<'a> {
    /// Line number of the section's first line (for errors about missing keys).
    start: usize,
    entries: Vec<(usize, &'a str, &'a str)>,
    /// Bare words (e.g. `average_output`) that appear without `=`.
    flags: Vec<&'a str>,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Option<(usize, &'a str)> {
        self.entries
            .iter()
            .find(|(_, k, _)| *k == key)
            .map(|(l, _, v)| (*l, *v))
    }

    fn require(&self, key: &str, what: &str) -> Result<(usize, &'a str), LoadError> {
        self.get(key)
            .ok_or_else(|| malformed(self.start, format!("{what} has no `{key}=` line")))
    }

    fn number<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<T, LoadError> {
        let (line, v) = self.require(key, what)?;
        v.trim()
            .parse()
            .map_err(|_| malformed(line, format!("`{key}={v}` is not a number")))
    }

    fn list<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
        len: usize,
    ) -> Result<Vec<T>, LoadError> {
        let (line, v) = self.require(key, what)?;
        let items = v
            .split_whitespace()
            .map(|s| {
                s.parse::<T>()
                    .map_err(|_| malformed(line, format!("`{key}` has {s:?}, not a number")))
            })
            .collect::<Result<Vec<T>, _>>()?;
        if items.len() != len {
            return Err(malformed(
                line,
                format!(
                    "`{key}` of {what} has {} values, expected {len}",
                    items.len()
                ),
            ));
        }
        Ok(items)
    }
}

/// Splits the text into the header and the tree blocks, stopping at `end of trees`.
fn sections(text: &str) -> Result<(Section<'_>, Vec<Section<'_>>), LoadError> {
    let mut header = Section {
        start: 1,
        entries: vec![],
        flags: vec![],
    };
    let mut trees: Vec<Section<'_>> = vec![];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end_matches('\r');
        if l == "end of trees" {
            return Ok((header, trees));
        }
        if l.is_empty() {
            continue;
        }
        if l.starts_with("Tree=") {
            trees.push(Section {
                start: line,
                entries: vec![],
                flags: vec![],
            });
        }
        let current = trees.last_mut().unwrap_or(&mut header);
        match l.split_once('=') {
            Some((k, v)) => current.entries.push((line, k, v)),
            None => current.flags.push(l),
        }
    }
    if trees.is_empty() {
        return Err(malformed(
            1,
            "no `Tree=` block and no `end of trees` line (truncated file?)",
        ));
    }
    Err(malformed(
        text.lines().count(),
        "the file ends before `end of trees` (truncated file?)",
    ))
}

/// Parses a LightGBM text model.
pub(super) fn parse(bytes: &[u8]) -> Result<Ensemble, LoadError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        malformed(line, "not UTF-8 text")
    })?;
    if !text.trim_start().starts_with("tree") {
        return Err(malformed(1, "the first line is not `tree`"));
    }
    let (header, blocks) = sections(text)?;
    let (line, version) = header.require("version", "the header")?;
    if !matches!(version.trim(), "v2" | "v3" | "v4") {
        return Err(malformed(
            line,
            format!("`version={version}` is not v2, v3 or v4"),
        ));
    }
    let num_class: u32 = header.number("num_class", "the header")?;
    let per_iteration: u32 = header.number("num_tree_per_iteration", "the header")?;
    if num_class != 1 || per_iteration != 1 {
        return Err(unsupported(format!(
            "num_class={num_class}, num_tree_per_iteration={per_iteration}: multiclass models \
             give one score per class; mlctl-ranker serves single-score models"
        )));
    }
    if header.flags.contains(&"average_output") {
        return Err(unsupported(
            "average_output (random forest, boosting=rf) averages the trees; mlctl-ranker \
             sums them, so retrain with boosting=gbdt"
                .into(),
        ));
    }
    let max_feature_idx: i64 = header.number("max_feature_idx", "the header")?;
    let num_features = usize::try_from(max_feature_idx + 1)
        .map_err(|_| malformed(1, format!("max_feature_idx={max_feature_idx} is negative")))?;
    let feature_names: Vec<String> = match header.get("feature_names") {
        Some((line, names)) => {
            let names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
            if names.len() != num_features {
                return Err(malformed(
                    line,
                    format!(
                        "feature_names has {} names for {num_features} features",
                        names.len()
                    ),
                ));
            }
            names
        }
        None => vec![],
    };
    let objective = header
        .get("objective")
        .map(|(_, o)| o.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default();
    let trees = blocks
        .iter()
        .map(|b| parse_tree(b, num_features))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ensemble {
        precision: Precision::F64,
        num_features,
        feature_names,
        base_score: 0.0,
        info: ModelInfo {
            format: SourceFormat::LightGbm,
            objective,
            trees_in_artifact: trees.len(),
        },
        trees,
        transform: OutputTransform::Identity,
    })
}

fn parse_tree(b: &Section<'_>, num_features: usize) -> Result<Tree, LoadError> {
    let (_, id) = b.require("Tree", "a tree block")?;
    let what = format!("Tree={id}");
    if let Some((line, v)) = b.get("is_linear")
        && v.trim() != "0"
    {
        return Err(unsupported(format!(
            "{what} (line {line}) is a linear tree (is_linear={v}, trained with linear_tree=true); \
             its leaves are linear models, which mlctl-ranker does not score"
        )));
    }
    let num_leaves: usize = b.number("num_leaves", &what)?;
    if num_leaves == 0 {
        return Err(malformed(b.start, format!("{what} has num_leaves=0")));
    }
    let leaf_values: Vec<f64> = b.list("leaf_value", &what, num_leaves)?;
    if num_leaves == 1 {
        // A tree that never split: LightGBM returns its only leaf for every row.
        return Ok(Tree {
            nodes: vec![super::Node::Leaf {
                value: leaf_values[0],
            }],
        });
    }
    let internal = num_leaves - 1;
    let features: Vec<u32> = b.list("split_feature", &what, internal)?;
    let thresholds: Vec<f64> = b.list("threshold", &what, internal)?;
    let decision_types: Vec<u8> = b.list("decision_type", &what, internal)?;
    let left: Vec<i64> = b.list("left_child", &what, internal)?;
    let right: Vec<i64> = b.list("right_child", &what, internal)?;
    let num_cat: usize = b
        .get("num_cat")
        .map_or(Ok(0), |_| b.number("num_cat", &what))?;
    let (boundaries, cat_words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let boundaries: Vec<usize> = b.list("cat_boundaries", &what, num_cat + 1)?;
        let (line, words) = b.require("cat_threshold", &what)?;
        let words = words
            .split_whitespace()
            .map(|w| {
                w.parse::<u32>()
                    .map_err(|_| malformed(line, format!("cat_threshold has {w:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        (boundaries, words)
    } else {
        (vec![], vec![])
    };
    let node_line = |key: &str| b.get(key).map_or(b.start, |(l, _)| l);
    // Internal nodes keep their index; leaf j (written as child ~j) follows them.
    let child = |c: i64| -> Result<usize, LoadError> {
        let idx = if c >= 0 {
            c as usize
        } else {
            internal + (!c) as usize
        };
        if idx >= internal + num_leaves {
            return Err(malformed(
                node_line("left_child"),
                format!("{what} has child {c}, out of range"),
            ));
        }
        Ok(idx)
    };
    let mut raw = Vec::with_capacity(internal + num_leaves);
    for i in 0..internal {
        let feature = features[i];
        if feature as usize >= num_features {
            return Err(malformed(
                node_line("split_feature"),
                format!("{what} node {i} splits on feature {feature}, beyond max_feature_idx"),
            ));
        }
        let dt = decision_types[i];
        let default_left = dt & DEFAULT_LEFT_MASK != 0;
        let missing = (dt >> 2) & 3;
        let test = if dt & CATEGORICAL_MASK != 0 {
            let t = thresholds[i];
            let ok = t >= 0.0 && t.fract() == 0.0 && (t as usize) < num_cat;
            if !ok {
                return Err(malformed(
                    node_line("threshold"),
                    format!(
                        "{what} node {i}: categorical threshold {t} is not a cat_boundaries index"
                    ),
                ));
            }
            let k = t as usize;
            let (lo, hi) = (boundaries[k], boundaries[k + 1]);
            if lo > hi || hi > cat_words.len() {
                return Err(malformed(
                    node_line("cat_boundaries"),
                    format!(
                        "{what}: cat_boundaries {lo}..{hi} beyond cat_threshold's {} words",
                        cat_words.len()
                    ),
                ));
            }
            // LightGBM sends NaN right whatever the missing type, and casts to int
            // before testing the sign (so -0.5 is category 0).
            Test::Categorical {
                bits: cat_words[lo..hi].to_vec(),
                set_left: true,
                nan_left: false,
                negative_before_trunc: false,
            }
        } else {
            let threshold = thresholds[i];
            let (nan_left, zero_missing_left) = match missing {
                // No missing handling: NaN is replaced by 0 before comparing.
                MISSING_NONE => (0.0 <= threshold, None),
                MISSING_ZERO => (default_left, Some(default_left)),
                MISSING_NAN => (default_left, None),
                _ => {
                    return Err(malformed(
                        node_line("decision_type"),
                        format!(
                            "{what} node {i}: decision_type {dt} has missing type 3, which LightGBM does not define"
                        ),
                    ));
                }
            };
            Test::Numeric {
                threshold: outside_zero_band(threshold),
                comparison: Comparison::LessOrEqual,
                nan_left,
                zero_missing_left,
            }
        };
        raw.push(RawNode::Split {
            feature,
            test,
            left: child(left[i])?,
            right: child(right[i])?,
        });
    }
    raw.extend(leaf_values.into_iter().map(RawNode::Leaf));
    assemble(&raw, 0).map_err(|e| malformed(b.start, format!("{what}: {e}")))
}

/// LightGBM's predictor reads every `|x| <= kZeroThreshold` as 0 before any test
/// (it drops them from the row like zeros). Only a threshold inside that band can
/// tell such a value from 0; moving it to the band's edge on the same side as 0
/// gives every input the decision LightGBM makes, with a plain `x <= t`.
fn outside_zero_band(threshold: f64) -> f64 {
    if threshold.abs() > ZERO_THRESHOLD {
        threshold
    } else if threshold >= 0.0 {
        // 0 goes left, so must every value in the band: x <= kZeroThreshold.
        ZERO_THRESHOLD
    } else {
        // 0 goes right, so must the whole band: only x < -kZeroThreshold goes left.
        (-ZERO_THRESHOLD).next_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUMP: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
        max_feature_idx=1\nobjective=regression\nfeature_names=a b\n\nTree=0\nnum_leaves=2\nnum_cat=0\n\
        split_feature=1\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\n\
        leaf_value=0.10000000000000001 -3\nis_linear=0\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn stump_parses_with_exact_leaf_values() {
        let e = parse(STUMP.as_bytes()).unwrap();
        assert_eq!(e.num_features, 2);
        assert_eq!(e.feature_names, ["a", "b"]);
        assert_eq!(e.score_reference(&[0.0, 0.5]), 0.1);
        assert_eq!(e.score_reference(&[0.0, 0.6]), -3.0);
        // decision_type=2: default_left with missing type None, so NaN is 0 → left.
        assert_eq!(e.score_reference(&[0.0, f64::NAN]), 0.1);
    }

    #[test]
    fn single_leaf_tree() {
        let text = STUMP.replace(
            "num_leaves=2\nnum_cat=0\nsplit_feature=1\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=0.10000000000000001 -3",
            "num_leaves=1\nnum_cat=0\nsplit_feature=\nthreshold=\ndecision_type=\nleft_child=\nright_child=\nleaf_value=0.25",
        );
        let e = parse(text.as_bytes()).unwrap();
        assert_eq!(e.score_reference(&[1.0, 2.0]), 0.25);
    }

    #[test]
    fn malformed_input_names_the_line() {
        let bad = STUMP.replace("threshold=0.5", "threshold=abc");
        let err = parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 14") && err.contains("threshold"),
            "{err}"
        );
        let short = STUMP.replace("leaf_value=0.10000000000000001 -3", "leaf_value=1");
        assert!(
            parse(short.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("leaf_value")
        );
        let truncated = &STUMP[..STUMP.len() - 14];
        assert!(
            parse(truncated.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("end of trees")
        );
        let cycle = STUMP.replace("left_child=-1", "left_child=0");
        assert!(parse(cycle.as_bytes()).is_err());
        let missing3 = STUMP.replace("decision_type=2", "decision_type=12");
        assert!(
            parse(missing3.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("missing type 3")
        );
    }

    #[test]
    fn thresholds_inside_the_zero_band_move_to_its_edge() {
        // LightGBM reads x = -kZeroThreshold as 0, which is above t = -kZeroThreshold.
        let t = outside_zero_band(-ZERO_THRESHOLD);
        assert!(
            -ZERO_THRESHOLD > t
                && (-ZERO_THRESHOLD).next_up() > t
                && (-ZERO_THRESHOLD).next_down() <= t
        );
        assert_eq!(outside_zero_band(0.0), ZERO_THRESHOLD);
        assert_eq!(outside_zero_band(1e-36), ZERO_THRESHOLD);
        assert_eq!(outside_zero_band(0.5), 0.5);
        assert_eq!(outside_zero_band(-2e-35), -2e-35);
    }

    #[test]
    fn refusals_name_the_construct() {
        let linear = STUMP.replace("is_linear=0", "is_linear=1");
        let err = parse(linear.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("linear"), "{err}");
        let multi = STUMP.replace("num_class=1", "num_class=3");
        assert!(
            parse(multi.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("num_class=3")
        );
        let rf = STUMP.replace(
            "objective=regression\n",
            "objective=regression\naverage_output\n",
        );
        assert!(
            parse(rf.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("average_output")
        );
    }
}
