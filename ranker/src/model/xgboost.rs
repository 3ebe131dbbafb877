//! XGBoost models as `Booster.save_model` writes them (JSON, or UBJSON read into
//! the same JSON tree). Scores equal `inplace_predict(predict_type="margin")` with
//! default arguments: every tree is summed, whatever `best_iteration` says.

use serde_json::Value;

use super::load::{LoadError, RawNode, assemble};
use super::{
    Comparison, Ensemble, ModelInfo, OutputTransform, Precision, SourceFormat, Test, Tree,
};

const FORMAT: &str = "xgboost";

/// XGBoost's largest category (`kMaxCat`-like bound: categories are f32-exact ints).
const MAX_CATEGORY: i64 = 1 << 24;

/// Bitset words all categorical splits of a model may take together (64 MiB): a
/// few bytes of JSON naming category 2^24 - 1 cost 2 MiB of bitset, so a small
/// corrupt or hostile file could otherwise exhaust memory.
const MAX_CATEGORY_WORDS: usize = 16 << 20;

fn malformed(reason: impl Into<String>) -> LoadError {
    LoadError::Malformed {
        format: FORMAT,
        reason: reason.into(),
    }
}

fn unsupported(reason: impl Into<String>) -> LoadError {
    LoadError::Unsupported {
        format: FORMAT,
        reason: reason.into(),
    }
}

/// Parses an XGBoost JSON model.
pub(super) fn parse_json(bytes: &[u8]) -> Result<Ensemble, LoadError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("JSON line {} column {}: {e}", e.line(), e.column())))?;
    from_value(&v, SourceFormat::XgboostJson)
}

/// Parses an XGBoost UBJSON model.
pub(super) fn parse_ubjson(bytes: &[u8]) -> Result<Ensemble, LoadError> {
    let v = super::ubjson::parse(bytes).map_err(|e| malformed(format!("UBJSON {e}")))?;
    from_value(&v, SourceFormat::XgboostUbjson)
}

/// The value at a `.`-separated path, or an error naming the path.
fn at<'a>(v: &'a Value, path: &str) -> Result<&'a Value, LoadError> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .ok_or_else(|| malformed(format!("no field `{path}`")))
}

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, LoadError> {
    at(v, path)?
        .as_str()
        .ok_or_else(|| malformed(format!("`{path}` is not a string")))
}

/// XGBoost writes most parameters as strings ("6", "[5E-1]"); accept numbers too.
fn param_f64(v: &Value, path: &str) -> Result<f64, LoadError> {
    let field = at(v, path)?;
    let parsed = match field {
        Value::String(s) => s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<f64>()
            .ok(),
        other => other.as_f64(),
    };
    parsed.ok_or_else(|| malformed(format!("`{path}` = {field} is not a number")))
}

fn param_int(v: &Value, path: &str) -> Result<i64, LoadError> {
    let x = param_f64(v, path)?;
    if x.fract() != 0.0 || x.abs() > 1e15 {
        return Err(malformed(format!("`{path}` = {x} is not an integer")));
    }
    Ok(x as i64)
}

fn numbers(v: &Value, path: &str) -> Result<Vec<f64>, LoadError> {
    let arr = at(v, path)?
        .as_array()
        .ok_or_else(|| malformed(format!("`{path}` is not an array")))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            other => other
                .as_f64()
                .ok_or_else(|| malformed(format!("`{path}[{i}]` = {other} is not a number"))),
        })
        .collect()
}

fn ints(v: &Value, path: &str) -> Result<Vec<i64>, LoadError> {
    numbers(v, path)?
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            if x.fract() == 0.0 && x.abs() <= 1e15 {
                Ok(x as i64)
            } else {
                Err(malformed(format!("`{path}[{i}]` = {x} is not an integer")))
            }
        })
        .collect()
}

/// How the stored `base_score` (in the objective's output space) becomes a margin.
fn margin_of_base_score(objective: &str, base: f32) -> Result<f32, LoadError> {
    match objective {
        "reg:squarederror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror"
        | "binary:logitraw"
        | "rank:ndcg"
        | "rank:pairwise"
        | "rank:map" => Ok(base),
        "binary:logistic" | "reg:logistic" => {
            if !(base > 0.0 && base < 1.0) {
                return Err(malformed(format!(
                    "learner_model_param.base_score = {base} is not a probability in (0, 1), \
                     which {objective} requires"
                )));
            }
            // XGBoost's ProbToMargin, in f32 as XGBoost computes it.
            Ok(-(1.0f32 / base - 1.0f32).ln())
        }
        other => Err(unsupported(format!(
            "objective {other}: mlctl-ranker scores the margins of reg:squarederror, \
             reg:pseudohubererror, reg:absoluteerror, reg:quantileerror, binary:logistic, \
             binary:logitraw, reg:logistic and rank:ndcg/pairwise/map models"
        ))),
    }
}

fn from_value(v: &Value, format: SourceFormat) -> Result<Ensemble, LoadError> {
    let learner = at(v, "learner")?;
    let booster = at(learner, "gradient_booster")?;
    let booster_name = text(booster, "name")?;
    match booster_name {
        "gbtree" => {}
        "dart" => {
            return Err(unsupported(
                "booster dart scales each tree by its drop weight at prediction; mlctl-ranker \
                 serves gbtree models (retrain with booster=gbtree)",
            ));
        }
        "gblinear" => {
            return Err(unsupported(
                "booster gblinear is a linear model, not trees; mlctl-ranker serves booster=gbtree",
            ));
        }
        other => {
            return Err(unsupported(format!(
                "booster {other}; mlctl-ranker serves booster=gbtree"
            )));
        }
    }
    let objective = text(learner, "objective.name")?.to_string();
    let num_class = param_int(learner, "learner_model_param.num_class")?;
    let num_target = if at(learner, "learner_model_param.num_target").is_ok() {
        param_int(learner, "learner_model_param.num_target")?
    } else {
        1
    };
    if num_class > 1 || num_target > 1 {
        return Err(unsupported(format!(
            "num_class={num_class}, num_target={num_target}: multiclass and multi-target models \
             give several scores per row; mlctl-ranker serves single-score models"
        )));
    }
    let num_features = usize::try_from(param_int(learner, "learner_model_param.num_feature")?)
        .map_err(|_| malformed("learner_model_param.num_feature is negative"))?;
    let stored_base = param_f64(learner, "learner_model_param.base_score")? as f32;
    let base_score = f64::from(margin_of_base_score(&objective, stored_base)?);

    let feature_names: Vec<String> = match learner.get("feature_names").and_then(Value::as_array) {
        Some(names) => names
            .iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("`learner.feature_names` holds a non-string"))?,
        None => vec![],
    };
    let model = at(booster, "model")?;
    // XGBoost 3 re-codes string categories (pandas/arrow) through `cats.enc`; the
    // numbers a request would carry are then not the trained categories.
    if let Some(enc) = model
        .get("cats")
        .and_then(|c| c.get("enc"))
        .and_then(Value::as_array)
        && !enc.is_empty()
    {
        return Err(unsupported(
            "gradient_booster.model.cats holds a category encoding (trained on string \
             categories); send integer category codes by training on numeric codes",
        ));
    }
    let tree_info = ints(model, "tree_info")?;
    if tree_info.iter().any(|&g| g != 0) {
        return Err(unsupported(
            "tree_info assigns trees to several output groups (multiclass)",
        ));
    }
    let trees_json = at(model, "trees")?
        .as_array()
        .ok_or_else(|| malformed("`gradient_booster.model.trees` is not an array"))?;
    let mut category_words = 0usize;
    let trees = trees_json
        .iter()
        .enumerate()
        .map(|(i, t)| parse_tree(t, i, num_features, &mut category_words))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ensemble {
        precision: Precision::F32,
        num_features,
        feature_names,
        base_score,
        info: ModelInfo {
            format,
            objective,
            trees_in_artifact: trees.len(),
        },
        trees,
        transform: OutputTransform::Identity,
    })
}

/// Converts a stored number to the f32 XGBoost holds.
fn f32_value(x: f64) -> f64 {
    f64::from(x as f32)
}

fn parse_tree(
    t: &Value,
    index: usize,
    num_features: usize,
    category_words: &mut usize,
) -> Result<Tree, LoadError> {
    let ctx = |e: LoadError| match e {
        LoadError::Malformed { format, reason } => LoadError::Malformed {
            format,
            reason: format!("trees[{index}]: {reason}"),
        },
        other => other,
    };
    if let Ok(size) = param_int(t, "tree_param.size_leaf_vector")
        && size > 1
    {
        return Err(unsupported(format!(
            "trees[{index}] has vector leaves (size_leaf_vector={size}, multi_strategy=multi_output_tree)"
        )));
    }
    let left = ints(t, "left_children").map_err(ctx)?;
    let right = ints(t, "right_children").map_err(ctx)?;
    let feature = ints(t, "split_indices").map_err(ctx)?;
    let cond = numbers(t, "split_conditions").map_err(ctx)?;
    let default_left = ints(t, "default_left").map_err(ctx)?;
    let n = left.len();
    let split_type = if t.get("split_type").is_some() {
        ints(t, "split_type").map_err(ctx)?
    } else {
        vec![0; n]
    };
    for (name, len) in [
        ("right_children", right.len()),
        ("split_indices", feature.len()),
        ("split_conditions", cond.len()),
        ("default_left", default_left.len()),
        ("split_type", split_type.len()),
    ] {
        if len != n {
            return Err(malformed(format!(
                "trees[{index}].{name} has {len} entries, left_children has {n}"
            )));
        }
    }
    let categories = categorical_sets(t, index, category_words)?;
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        if left[i] == -1 {
            raw.push(RawNode::Leaf(f32_value(cond[i])));
            continue;
        }
        let child = |c: i64| {
            usize::try_from(c).ok().filter(|c| *c < n).ok_or_else(|| {
                malformed(format!(
                    "trees[{index}] node {i} has child {c}, out of range"
                ))
            })
        };
        let f = u32::try_from(feature[i])
            .ok()
            .filter(|f| (*f as usize) < num_features)
            .ok_or_else(|| {
                malformed(format!(
                    "trees[{index}] node {i} splits on feature {}, beyond num_feature={num_features}",
                    feature[i]
                ))
            })?;
        let nan_left = default_left[i] != 0;
        let test = match split_type[i] {
            0 => Test::Numeric {
                threshold: f32_value(cond[i]),
                comparison: Comparison::Less,
                nan_left,
                zero_missing_left: None,
            },
            1 => {
                let bits = categories
                    .iter()
                    .find(|(node, _)| *node == i)
                    .map(|(_, bits)| bits.clone())
                    .ok_or_else(|| {
                        malformed(format!("trees[{index}] node {i} is categorical but has no categories_nodes entry"))
                    })?;
                // XGBoost: categories in the set go right; negative values are never in it.
                Test::Categorical {
                    bits,
                    set_left: false,
                    nan_left,
                    negative_before_trunc: true,
                }
            }
            other => {
                return Err(malformed(format!(
                    "trees[{index}] node {i} has split_type {other}"
                )));
            }
        };
        raw.push(RawNode::Split {
            feature: f,
            test,
            left: child(left[i])?,
            right: child(right[i])?,
        });
    }
    assemble(&raw, 0).map_err(|e| malformed(format!("trees[{index}]: {e}")))
}

/// The category set of each categorical node, as a bitset.
/// `category_words` counts the bitset words of the whole model so far.
fn categorical_sets(
    t: &Value,
    index: usize,
    category_words: &mut usize,
) -> Result<Vec<(usize, Vec<u32>)>, LoadError> {
    if t.get("categories_nodes").is_none() {
        return Ok(vec![]);
    }
    let field = |name: &str| ints(t, name).map_err(|e| malformed(format!("trees[{index}]: {e}")));
    let nodes = field("categories_nodes")?;
    let segments = field("categories_segments")?;
    let sizes = field("categories_sizes")?;
    let cats = field("categories")?;
    if segments.len() != nodes.len() || sizes.len() != nodes.len() {
        return Err(malformed(format!(
            "trees[{index}]: categories_nodes, categories_segments and categories_sizes differ in length"
        )));
    }
    let mut out = Vec::with_capacity(nodes.len());
    for k in 0..nodes.len() {
        let range = usize::try_from(segments[k])
            .ok()
            .zip(usize::try_from(sizes[k]).ok())
            .and_then(|(s, n)| Some(s..s.checked_add(n)?))
            .filter(|r| r.end <= cats.len())
            .ok_or_else(|| {
                malformed(format!(
                    "trees[{index}]: categories segment {k} is out of range"
                ))
            })?;
        let set = &cats[range];
        let mut bits: Vec<u32> = vec![];
        for &c in set {
            if !(0..MAX_CATEGORY).contains(&c) {
                return Err(malformed(format!(
                    "trees[{index}]: category {c} is outside 0..2^24"
                )));
            }
            let c = c as usize;
            if bits.len() <= c / 32 {
                bits.resize(c / 32 + 1, 0);
            }
            bits[c / 32] |= 1 << (c % 32);
        }
        *category_words += bits.len();
        if *category_words > MAX_CATEGORY_WORDS {
            return Err(unsupported(format!(
                "trees[{index}]: the categorical splits need more than {} MiB of category sets; \
                 encode categories as consecutive codes from 0",
                (MAX_CATEGORY_WORDS * 4) >> 20
            )));
        }
        let node = usize::try_from(nodes[k])
            .map_err(|_| malformed(format!("trees[{index}]: categories_nodes[{k}] is negative")))?;
        out.push((node, bits));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(objective: &str, base: &str, booster: &str) -> Value {
        json!({"learner": {
            "feature_names": ["a", "b"],
            "learner_model_param": {"base_score": base, "num_class": "0", "num_feature": "2", "num_target": "1"},
            "objective": {"name": objective},
            "gradient_booster": {"name": booster, "model": {
                "tree_info": [0],
                "trees": [{
                    "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                    "split_indices": [1, 0, 0], "split_conditions": [0.1, -1.5, 2.0],
                    "default_left": [1, 0, 0], "split_type": [0, 0, 0],
                    "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
                    "tree_param": {"size_leaf_vector": "1"}
                }]
            }}
        }})
    }

    #[test]
    fn stump_with_f32_threshold_and_array_base_score() {
        let e = from_value(
            &model("reg:squarederror", "[5E-1]", "gbtree"),
            SourceFormat::XgboostJson,
        )
        .unwrap();
        assert_eq!(e.base_score, 0.5);
        // 0.1 as f64 is below 0.1f32, but XGBoost casts the feature to f32 first.
        assert_eq!(e.score_reference(&[0.0, 0.1]), 2.5);
        assert_eq!(e.score_reference(&[0.0, 0.09]), -1.0);
        assert_eq!(e.score_reference(&[0.0, f64::NAN]), -1.0);
    }

    #[test]
    fn logistic_base_score_is_a_probability() {
        let e = from_value(
            &model("binary:logistic", "5E-1", "gbtree"),
            SourceFormat::XgboostJson,
        )
        .unwrap();
        assert_eq!(e.base_score, 0.0);
        let bad = from_value(
            &model("binary:logistic", "1.5", "gbtree"),
            SourceFormat::XgboostJson,
        );
        assert!(bad.unwrap_err().to_string().contains("base_score"));
    }

    #[test]
    fn refusals_name_the_construct() {
        for (objective, booster, word) in [
            ("reg:squarederror", "dart", "dart"),
            ("reg:squarederror", "gblinear", "gblinear"),
            ("multi:softprob", "gbtree", "multi:softprob"),
        ] {
            let err =
                from_value(&model(objective, "0", booster), SourceFormat::XgboostJson).unwrap_err();
            assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains(word), "{err}");
        }
    }

    #[test]
    fn malformed_trees_name_the_field() {
        let mut m = model("reg:squarederror", "0", "gbtree");
        m["learner"]["gradient_booster"]["model"]["trees"][0]["right_children"] = json!([2, -1]);
        let err = from_value(&m, SourceFormat::XgboostJson)
            .unwrap_err()
            .to_string();
        assert!(err.contains("right_children"), "{err}");
        let err = parse_json(b"{\"learner\": [").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
