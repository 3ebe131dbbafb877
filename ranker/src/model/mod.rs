//! One representation of a tree ensemble, whatever library trained it.
//!
//! Loaders (LightGBM text, XGBoost JSON/UBJSON, ONNX tree ensembles) turn bytes
//! into an [`Ensemble`]; the engine compiles an `Ensemble` into its fast layout.
//! The meaning of every field is fixed by [`Ensemble::score_reference`], a plain
//! evaluator that is the definition of a correct score: loaders are checked
//! against the libraries' own scores through it, and every faster evaluator is
//! checked against it.
//!
//! Each library's arithmetic is kept, because "the same score as the library"
//! depends on it: LightGBM compares and sums in f64 ([`Precision::F64`]); XGBoost
//! and onnxruntime (f32 inputs) cast the feature to f32, compare with f32
//! thresholds and sum in f32 ([`Precision::F32`]).

use std::fmt;

mod lightgbm;
mod load;
mod onnx;
mod onnx_proto;
mod onnx_v5;
mod ubjson;
mod xgboost;
pub use load::{Format, LoadError, load};

/// Which library's arithmetic the ensemble is evaluated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Features are compared as f64 with f64 thresholds; tree outputs are summed in
    /// f64 starting from `base_score` (LightGBM).
    F64,
    /// Features are cast to f32 before comparing (thresholds are f32-exact values
    /// stored as f64); tree outputs are summed in f32 starting from `base_score`
    /// cast to f32 (XGBoost, onnxruntime with f32 inputs).
    F32,
}

/// The format an artifact was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// LightGBM text model (`Booster.save_model`).
    LightGbm,
    /// XGBoost JSON model.
    XgboostJson,
    /// XGBoost UBJSON model.
    XgboostUbjson,
    /// ONNX `ai.onnx.ml` tree ensemble.
    Onnx,
}

impl SourceFormat {
    /// The name used in `MODEL_FORMAT`, metrics (`ranker_model_info{format}`) and logs.
    pub fn family(self) -> &'static str {
        match self {
            SourceFormat::LightGbm => "lightgbm",
            SourceFormat::XgboostJson | SourceFormat::XgboostUbjson => "xgboost",
            SourceFormat::Onnx => "onnx",
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceFormat::LightGbm => "lightgbm",
            SourceFormat::XgboostJson => "xgboost (json)",
            SourceFormat::XgboostUbjson => "xgboost (ubjson)",
            SourceFormat::Onnx => "onnx",
        })
    }
}

/// How the summed tree outputs become the returned score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputTransform {
    /// The raw margin (LightGBM `raw_score=True`, XGBoost `output_margin=True`).
    Identity,
    /// `1 / (1 + exp(-x))`, computed in the ensemble's precision (an ONNX graph
    /// whose `post_transform` is LOGISTIC: onnxruntime returns probabilities).
    Logistic,
}

/// Comparison of a numerical split: the left child is taken when it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `x <= threshold` (LightGBM, ONNX `BRANCH_LEQ`).
    LessOrEqual,
    /// `x < threshold` (XGBoost, ONNX `BRANCH_LT`).
    Less,
}

/// The test at an internal node.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// Numerical split on one feature.
    Numeric {
        /// Split threshold. With [`Precision::F32`] it is an f32 value widened to f64.
        threshold: f64,
        /// `x <= t` or `x < t` → left.
        comparison: Comparison,
        /// Where a missing value (NaN) goes.
        nan_left: bool,
        /// LightGBM `missing_type=Zero`: a value with `|x| <= 1e-35` is missing and
        /// goes left when this is `Some(true)`, right when `Some(false)`. `None`:
        /// zeros are ordinary values.
        zero_missing_left: Option<bool>,
    },
    /// Categorical split: the category is `trunc(x)`; the left child is taken when
    /// the category is in the set and `set_left`, or not in the set and `!set_left`.
    Categorical {
        /// Bitset of categories, bit `c % 32` of word `c / 32`. A category beyond the
        /// last word is not in the set.
        bits: Vec<u32>,
        /// Whether categories in the set go left (LightGBM) or right (XGBoost).
        set_left: bool,
        /// Where NaN goes.
        nan_left: bool,
        /// Whether every negative `x` counts as not in the set (XGBoost: `x < 0`).
        /// When false only `trunc(x) < 0` does (LightGBM casts first, so -0.5 is
        /// category 0).
        negative_before_trunc: bool,
    },
}

/// One node of a tree. Node 0 is the root; children have larger indices.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A leaf and its output. With [`Precision::F32`] it is an f32 value widened.
    Leaf {
        /// The leaf's output value.
        value: f64,
    },
    /// An internal node.
    Split {
        /// Index of the feature tested (0-based column of the input row).
        feature: u32,
        /// The test.
        test: Test,
        /// Index of the left child in the tree's `nodes`.
        left: u32,
        /// Index of the right child in the tree's `nodes`.
        right: u32,
    },
}

/// A decision tree: nodes with the root at index 0.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tree {
    /// The nodes; every child index is larger than its parent's and in range.
    pub nodes: Vec<Node>,
}

/// What the artifact said about itself (reported by `/v2/models/{name}`,
/// `ranker_model_info` and the load log line).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The format it was read from.
    pub format: SourceFormat,
    /// The training objective as the library names it (`lambdarank`, `rank:ndcg`…),
    /// or the ONNX operator for ONNX graphs.
    pub objective: String,
    /// Trees in the artifact, before any `best_iteration`/`num_iteration` cut.
    pub trees_in_artifact: usize,
}

/// A tree ensemble whose score for a row is `transform(base_score + Σ tree(row))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensemble {
    /// Arithmetic of the source library.
    pub precision: Precision,
    /// Number of input columns a row must have.
    pub num_features: usize,
    /// Feature names in column order, when the artifact names them (empty otherwise).
    pub feature_names: Vec<String>,
    /// Added before the trees (XGBoost's margin `base_score`, ONNX `base_values`; 0
    /// for LightGBM, whose first tree carries the initial score).
    pub base_score: f64,
    /// The trees that are scored, in the library's summation order (already cut to
    /// `best_iteration`/`num_iteration`).
    pub trees: Vec<Tree>,
    /// Applied to the sum.
    pub transform: OutputTransform,
    /// Provenance.
    pub info: ModelInfo,
}

/// A model that cannot be served; the message names the field or feature and the fix.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("{0}")]
pub struct InvalidEnsemble(pub String);

/// LightGBM's `kZeroThreshold`: values this close to 0 are zero for `missing_type=Zero`.
/// LightGBM defines it as the float literal `1e-35f`, so its value is the f32
/// nearest 1e-35 widened (1.0000000180025095e-35), not the double 1e-35.
pub const ZERO_THRESHOLD: f64 = 1e-35f32 as f64;

impl Ensemble {
    /// Checks the structural invariants every evaluator relies on: child indices are
    /// in range and larger than the parent (so there is no cycle and evaluation
    /// ends), features are below `num_features`, every tree has a node, and F32
    /// values are f32-exact. Loaders call it last; the engine may assume it held.
    pub fn validate(&self) -> Result<(), InvalidEnsemble> {
        if self.feature_names.len() != self.num_features && !self.feature_names.is_empty() {
            return Err(InvalidEnsemble(format!(
                "the model names {} features but has {} columns",
                self.feature_names.len(),
                self.num_features
            )));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(InvalidEnsemble(format!("tree {t} has no nodes")));
            }
            for (i, node) in tree.nodes.iter().enumerate() {
                match node {
                    Node::Leaf { value } => {
                        if self.precision == Precision::F32 && !f32_exact(*value) {
                            return Err(InvalidEnsemble(format!(
                                "tree {t} node {i}: leaf value {value} is not an f32 value"
                            )));
                        }
                    }
                    Node::Split {
                        feature,
                        test,
                        left,
                        right,
                    } => {
                        if *feature as usize >= self.num_features {
                            return Err(InvalidEnsemble(format!(
                                "tree {t} node {i}: feature {feature} is beyond the model's {} features",
                                self.num_features
                            )));
                        }
                        for child in [*left, *right] {
                            let c = child as usize;
                            if c <= i || c >= tree.nodes.len() {
                                return Err(InvalidEnsemble(format!(
                                    "tree {t} node {i}: child {child} is not a later node of the tree"
                                )));
                            }
                        }
                        if let Test::Numeric { threshold, .. } = test {
                            if threshold.is_nan() {
                                return Err(InvalidEnsemble(format!(
                                    "tree {t} node {i}: threshold is NaN"
                                )));
                            }
                            if self.precision == Precision::F32 && !f32_exact(*threshold) {
                                return Err(InvalidEnsemble(format!(
                                    "tree {t} node {i}: threshold {threshold} is not an f32 value"
                                )));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The score of one row, by the plainest possible evaluation: the definition of
    /// a correct score. `row.len()` must be `num_features` (missing values are NaN).
    /// An f32 input row is passed widened to f64 (exact).
    pub fn score_reference(&self, row: &[f64]) -> f64 {
        match self.precision {
            Precision::F64 => {
                let mut sum = self.base_score;
                for tree in &self.trees {
                    sum += leaf_value(tree, row, Precision::F64);
                }
                match self.transform {
                    OutputTransform::Identity => sum,
                    OutputTransform::Logistic => 1.0 / (1.0 + (-sum).exp()),
                }
            }
            Precision::F32 => {
                let mut sum = self.base_score as f32;
                for tree in &self.trees {
                    sum += leaf_value(tree, row, Precision::F32) as f32;
                }
                let out = match self.transform {
                    OutputTransform::Identity => sum,
                    OutputTransform::Logistic => 1.0 / (1.0 + (-sum).exp()),
                };
                f64::from(out)
            }
        }
    }
}

/// Whether `v` is exactly representable as f32 (NaN and infinities count as exact).
pub fn f32_exact(v: f64) -> bool {
    !v.is_finite() || f64::from(v as f32) == v
}

/// The leaf a row reaches in one tree, by walking from the root.
fn leaf_value(tree: &Tree, row: &[f64], precision: Precision) -> f64 {
    let mut i = 0usize;
    loop {
        match &tree.nodes[i] {
            Node::Leaf { value } => return *value,
            Node::Split {
                feature,
                test,
                left,
                right,
            } => {
                let raw = row[*feature as usize];
                let x = match precision {
                    Precision::F64 => raw,
                    Precision::F32 => f64::from(raw as f32),
                };
                i = if goes_left(test, x) { *left } else { *right } as usize;
            }
        }
    }
}

/// The decision of one test for a value already in the ensemble's precision.
pub fn goes_left(test: &Test, x: f64) -> bool {
    match test {
        Test::Numeric {
            threshold,
            comparison,
            nan_left,
            zero_missing_left,
        } => {
            if x.is_nan() {
                // LightGBM Zero treats NaN as 0, which is missing: same direction.
                return zero_missing_left.unwrap_or(*nan_left);
            }
            if let Some(left) = zero_missing_left
                && x.abs() <= ZERO_THRESHOLD
            {
                return *left;
            }
            match comparison {
                Comparison::LessOrEqual => x <= *threshold,
                Comparison::Less => x < *threshold,
            }
        }
        Test::Categorical {
            bits,
            set_left,
            nan_left,
            negative_before_trunc,
        } => {
            if x.is_nan() {
                return *nan_left;
            }
            let in_set = if *negative_before_trunc && x < 0.0 {
                false
            } else {
                let c = x.trunc();
                if c < 0.0 || c >= (bits.len() as f64) * 32.0 {
                    false
                } else {
                    let c = c as usize;
                    bits[c / 32] >> (c % 32) & 1 == 1
                }
            };
            in_set == *set_left
        }
    }
}

#[cfg(test)]
mod tests;
