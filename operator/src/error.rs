//! Typed errors of the operator, each with a label for the failure counter.

/// An error of one reconcile or of the operator's runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The object lacks metadata the API server always sets (name, namespace, uid).
    #[error("object lacks metadata.{0}")]
    MissingMetadata(&'static str),
    /// The API server refused a child rendered from the spec as invalid
    /// (HTTP 400/422): retrying cannot help, the spec has to change.
    #[error("the API server refused {kind} {name}: {source}")]
    ChildRejected {
        /// Kind of the child.
        kind: String,
        /// Its name.
        name: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
    /// A traffic router's object could not be updated.
    #[error("traffic routing: {0}")]
    Routing(String),
    /// Serialising an object failed.
    #[error("serialising {what}: {source}")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    /// The `reason` label of `mlctl_reconcile_errors_total`.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => {
                format!("api_{}", status.reason.to_lowercase())
            }
            Error::Kube(_) => "kube_client".into(),
            Error::ChildRejected { .. } => "child_rejected".into(),
            Error::MissingMetadata(_) => "missing_metadata".into(),
            Error::Serialize { .. } => "serialize".into(),
            Error::Routing(_) => "traffic_routing".into(),
        }
    }

    /// Whether a write lost an optimistic-concurrency race (HTTP 409): the
    /// object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }

    /// Whether the API server refused a child rendered from the spec as
    /// invalid: retrying the same request cannot help, the spec has to
    /// change. (A refused status write is the operator's bug, not the
    /// user's: it is retried and counted, never reported as InvalidSpec.)
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Error::ChildRejected { .. })
    }

    /// Classifies a failed child write: 400/422 become [`Error::ChildRejected`].
    pub fn child_write(kind: &str, name: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => Error::ChildRejected {
                kind: kind.to_string(),
                name: name.to_string(),
                source: kube::Error::Api(s),
            },
            e => Error::Kube(e),
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
