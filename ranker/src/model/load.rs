//! Loading an artifact: format detection and dispatch to the format's parser
//! (owned by the loaders work). The signatures here are the contract the server,
//! `predict` and the benchmarks are built against.

use super::Ensemble;

/// The format named by `MODEL_FORMAT` / `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Detect from the content (also what `MODEL_FORMAT=custom` means).
    Auto,
    /// LightGBM text model.
    Lightgbm,
    /// XGBoost JSON or UBJSON model (told apart by content).
    Xgboost,
    /// ONNX tree ensemble.
    Onnx,
}

/// Why an artifact cannot be served. The message names the construct (objective,
/// field, operator, attribute) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a model of the expected format.
    #[error("not a {format} model: {reason}")]
    Malformed {
        /// The format that was tried.
        format: &'static str,
        /// What is wrong, with the line, field or offset.
        reason: String,
    },
    /// A well-formed model that uses something mlctl-ranker does not score; refused
    /// rather than scored wrongly.
    #[error("unsupported {format} model: {reason}")]
    Unsupported {
        /// The format.
        format: &'static str,
        /// What is unsupported.
        reason: String,
    },
    /// The content matches no known format (with `--format auto`).
    #[error("cannot detect the model format: {0}")]
    Unknown(String),
}

/// Parses an artifact into an ensemble, validated ([`Ensemble::validate`]).
pub fn load(_bytes: &[u8], _format: Format) -> Result<Ensemble, LoadError> {
    Err(LoadError::Unknown("loaders are not built yet".into()))
}
