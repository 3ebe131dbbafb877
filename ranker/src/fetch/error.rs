//! What can go wrong, as one-line messages that say what to fix, and the exit
//! codes the pod status shows for them.

use std::io;
use std::path::{Path, PathBuf};

use super::uri::UriError;

/// Exit codes of `mlctl-ranker fetch` (a contract: the pod status shows them).
pub mod exit_code {
    /// The artifact could not be downloaded (not found, forbidden, retries
    /// exhausted, local I/O, interrupted).
    pub const FAILED: u8 = 1;
    /// The configuration is invalid (URI, sha256, flags); nothing was downloaded.
    pub const INVALID: u8 = 2;
    /// The download completed but its sha256 is not `MODEL_SHA256`.
    pub const MISMATCH: u8 = 3;
    /// `--timeout` elapsed.
    pub const TIMEOUT: u8 = 4;
}

/// Why a fetch failed; the text is the one-line message users see.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("MODEL_URI is not set: the operator sets it from spec.model.uri (or pass --uri)")]
    NoUri,
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error(
        "MODEL_SHA256 {value:?} is not a sha256: write the 64 hex characters `sha256sum <file>` prints (spec.model.sha256)"
    )]
    BadSha256 { value: String },
    #[error(
        "MODEL_SHA256 is set but MODEL_URI {uri} is a prefix: a sha256 verifies one file, so point the URI at the file or unset spec.model.sha256"
    )]
    Sha256ForPrefix { uri: String },
    #[error("cannot build the client for {uri}: {reason}")]
    Client { uri: String, reason: String },
    #[error("{status} from {uri}: the object does not exist, check spec.model.uri{}", detail_suffix(.detail))]
    NotFound {
        uri: String,
        status: String,
        detail: String,
    },
    #[error(
        "{status} from {uri}: the pod's credentials cannot read the object — check spec.runtime.serviceAccountName / the credentials Secret{}",
        detail_suffix(.detail)
    )]
    Forbidden {
        uri: String,
        status: String,
        detail: String,
    },
    #[error("{status} from {uri}: refused, and retrying cannot help{}", detail_suffix(.detail))]
    Rejected {
        uri: String,
        status: String,
        detail: String,
    },
    #[error("giving up on {uri} after {attempts} attempts (--max-attempts): {last}")]
    GaveUp {
        uri: String,
        attempts: u32,
        last: String,
    },
    #[error("sha256 mismatch for {uri}: expected {expected}, got {actual}")]
    Mismatch {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error(
        "no objects under {uri}: check spec.model.uri (a URI ending in '/' downloads every object under that prefix)"
    )]
    EmptyPrefix { uri: String },
    #[error(
        "timed out after {after} fetching {uri} (--timeout): the store is unreachable or too slow"
    )]
    Timeout { uri: String, after: String },
    #[error("interrupted by {signal} while fetching {uri}; nothing was left in MODEL_DIR")]
    Interrupted { uri: String, signal: &'static str },
    #[error("cannot write {}: {source} (MODEL_DIR must be a writable directory)", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// The process exit code for this error (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::NoUri
            | FetchError::Uri(_)
            | FetchError::BadSha256 { .. }
            | FetchError::Sha256ForPrefix { .. }
            | FetchError::Client { .. } => exit_code::INVALID,
            FetchError::Mismatch { .. } => exit_code::MISMATCH,
            FetchError::Timeout { .. } => exit_code::TIMEOUT,
            _ => exit_code::FAILED,
        }
    }

    pub(super) fn io(path: &Path, source: io::Error) -> FetchError {
        FetchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        return String::new();
    }
    // Store error bodies can be long XML; the first few hundred characters hold
    // the code and message.
    let short: String = detail.chars().take(300).collect();
    let ellipsis = if short.len() < detail.len() {
        "…"
    } else {
        ""
    };
    format!(" (the store said: {short}{ellipsis})")
}
