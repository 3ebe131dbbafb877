//! What a scoring request is once parsed, shared by the serde parsers and the
//! byte-level fast path: the row type, the model's schema, ids and refusals.

use std::collections::HashMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A feature value type rows can be held in: f64 for models that compare in f64
/// (LightGBM), f32 for those that cast to f32 first (XGBoost, ONNX), so that the
/// row holds exactly what the training library would have compared.
pub trait Feature: Copy + Send + Sync + 'static {
    /// The missing value (NaN).
    const MISSING: Self;
    /// The value as the library would store a parsed decimal.
    fn from_f64(v: f64) -> Self;
    /// Rounds through f32 (an FP32 tensor's values are f32 values).
    fn round_to_f32(self) -> Self;
}

impl Feature for f32 {
    const MISSING: f32 = f32::NAN;
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn round_to_f32(self) -> f32 {
        self
    }
}

impl Feature for f64 {
    const MISSING: f64 = f64::NAN;
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn round_to_f32(self) -> f64 {
        f64::from(self as f32)
    }
}

/// What the parser needs to know about the model and the limits.
#[derive(Debug)]
pub struct Schema {
    /// Columns per row.
    pub num_features: usize,
    /// Feature names in column order (empty when the model names none).
    pub names: Vec<String>,
    /// Name → column.
    pub index: HashMap<String, usize>,
    /// Most documents (rank) or rows (infer) one request may carry.
    pub max_documents: usize,
}

impl Schema {
    /// A schema for a model with these columns.
    pub fn new(num_features: usize, names: Vec<String>, max_documents: usize) -> Schema {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Schema {
            num_features,
            names,
            index,
            max_documents,
        }
    }
}

/// Why a body was refused: the HTTP status follows from the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// 400: malformed or inconsistent with the model.
    #[error("{0}")]
    BadRequest(String),
    /// 413: over a configured limit.
    #[error("{0}")]
    TooLarge(String),
}

/// A document id, echoed back as the same JSON value (string or integer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocId {
    /// A JSON string.
    Str(String),
    /// A non-negative JSON integer.
    UInt(u64),
    /// A negative JSON integer.
    Int(i64),
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::Str(s) => f.write_str(s),
            DocId::UInt(v) => write!(f, "{v}"),
            DocId::Int(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for DocId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DocId::Str(v) => s.serialize_str(v),
            DocId::UInt(v) => s.serialize_u64(*v),
            DocId::Int(v) => s.serialize_i64(*v),
        }
    }
}

/// A parsed `:rank` request: `ids[i]` owns row `i` of `rows`.
#[derive(Debug)]
pub struct RankRequest<T> {
    /// The optional query id (for logs).
    pub query: Option<String>,
    /// One id per document, in input order.
    pub ids: Vec<DocId>,
    /// `ids.len() * num_features` values, row-major; NaN is missing.
    pub rows: Vec<T>,
}
