//! The errors of `mlctl eval` and the exit code each one maps to.

use std::path::PathBuf;

use crate::gate::GateFileError;

/// Exit codes of `mlctl eval` (a documented contract, see docs/eval.md).
pub mod exit {
    pub const PASS: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const GATE_FAILED: i32 = 10;
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: decompresses to more than {limit} bytes; refusing to read further (a gzip bomb? \
         raise --max-decompressed-size if the file is genuine)",
        path.display()
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}:{line}: document `{docid}` is {what} twice for query `{qid}`{}", path.display(),
        first_line.map(|l| format!(" (first at line {l})")).unwrap_or_default())]
    DuplicateDocument {
        path: PathBuf,
        line: usize,
        first_line: Option<usize>,
        /// "judged" (qrels) or "retrieved" (run).
        what: &'static str,
        qid: String,
        docid: String,
    },
    #[error("{}: {source}", path.display())]
    GateFile {
        path: PathBuf,
        #[source]
        source: GateFileError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("no queries left to evaluate: {0}")]
    NoQueries(String),
    #[error("writing {what}: {source}")]
    Write {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl EvalError {
    pub fn exit_code(&self) -> i32 {
        match self {
            // The gate file is part of the invocation: a wrong metric name or alpha there
            // is a usage error, like a wrong `--metric`.
            EvalError::GateFile { .. } | EvalError::Usage(_) => exit::USAGE,
            _ => exit::ERROR,
        }
    }
}
