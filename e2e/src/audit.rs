//! The API server's audit log (e2e/cluster enables it: every mutating
//! request, and the reads of everyone but the control plane's components,
//! with user and user agent). Tests count a process's writes here — the only
//! honest count: a no-op server-side apply changes no resourceVersion, yet it
//! is a request the API server had to serve — and its reads (a reconcile that
//! lists shows up as a `list` without `watch=true`).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;

/// The audit log of the running cluster.
pub struct Audit {
    path: PathBuf,
}

/// A position in the log: writes after it are the ones a test caused.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

/// The verbs that change something.
const MUTATING: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// One request as the API server recorded it (named for what tests mostly
/// count: writes).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Write {
    /// create, update, patch, delete, deletecollection; get, list, watch.
    pub verb: String,
    /// Who.
    pub user: User,
    /// The client's User-Agent header.
    #[serde(default)]
    pub user_agent: String,
    /// The object.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// The answer (absent when the request did not complete).
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    /// The request URI (with dryRun and other query parameters).
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    /// When the request arrived (RFC 3339, microseconds).
    #[serde(default)]
    pub request_received_timestamp: String,
}

/// The authenticated user of a request.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// e.g. `system:serviceaccount:<namespace>:<name>`.
    #[serde(default)]
    pub username: String,
}

/// What a request was about.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ObjectRef {
    /// Plural resource, e.g. `deployments`.
    #[serde(default)]
    pub resource: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name (absent for a create that generates it).
    #[serde(default)]
    pub name: String,
    /// `status`, `scale`, or empty.
    #[serde(default)]
    pub subresource: String,
}

/// The response code.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseStatus {
    /// HTTP status code.
    #[serde(default)]
    pub code: u16,
}

impl Write {
    /// `verb resource[/subresource] namespace/name (code) by user-agent`, for
    /// assertion messages.
    pub fn describe(&self) -> String {
        let o = self.object_ref.clone().unwrap_or_default();
        let sub = if o.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", o.subresource)
        };
        format!(
            "{} {}{sub} {}/{} ({}) by {} [{}] at {}",
            self.verb,
            o.resource,
            o.namespace,
            o.name,
            self.response_status.as_ref().map_or(0, |s| s.code),
            self.user.username,
            self.user_agent,
            self.request_received_timestamp
        )
    }

    /// The resource (plural) written.
    pub fn resource(&self) -> &str {
        self.object_ref.as_ref().map_or("", |o| o.resource.as_str())
    }

    /// Whether the request changes something (create, update, patch, delete).
    pub fn is_write(&self) -> bool {
        MUTATING.contains(&self.verb.as_str())
    }
}

impl Audit {
    /// The log of the cluster e2e/cluster started (`MLCTL_E2E_AUDIT_LOG`).
    pub fn open() -> Self {
        let path = std::env::var_os("MLCTL_E2E_AUDIT_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::cluster_dir().join("audit.log"));
        assert!(
            path.is_file(),
            "{} does not exist: the cluster runs without its audit log (restart it: e2e/cluster down; e2e/cluster up)",
            path.display()
        );
        Audit { path }
    }

    /// The end of the log now.
    pub fn mark(&self) -> Mark {
        Mark(std::fs::metadata(&self.path).map_or(0, |m| m.len()))
    }

    /// Every write recorded after `mark`.
    pub fn since(&self, mark: Mark) -> Vec<Write> {
        self.requests_since(mark)
            .into_iter()
            .filter(Write::is_write)
            .collect()
    }

    /// Every request recorded after `mark`, reads included.
    pub fn requests_since(&self, mark: Mark) -> Vec<Write> {
        let mut file = std::fs::File::open(&self.path).expect("open the audit log");
        // A rotation in between would leave a shorter file: read it all.
        let len = file.metadata().map_or(0, |m| m.len());
        let from = if len < mark.0 { 0 } else { mark.0 };
        file.seek(SeekFrom::Start(from)).expect("seek");
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Write>(&line).ok())
            .collect()
    }

    /// The writes after `mark` made as `user` whose user agent contains
    /// `agent` (empty: any), dry runs excluded.
    pub fn writes_by(&self, mark: Mark, user: &str, agent: &str) -> Vec<Write> {
        self.since(mark)
            .into_iter()
            .filter(|w| w.user.username == user && w.user_agent.contains(agent))
            .filter(|w| !w.request_uri.contains("dryRun="))
            .collect()
    }

    /// Every request (reads included) after `mark` made as `user` whose user
    /// agent contains `agent` (empty: any).
    pub fn requests_by(&self, mark: Mark, user: &str, agent: &str) -> Vec<Write> {
        self.requests_since(mark)
            .into_iter()
            .filter(|w| w.user.username == user && w.user_agent.contains(agent))
            .collect()
    }
}

impl Audit {
    /// The writes after `mark` of the test operator(s) of `namespace` to
    /// anything but their leader Lease (renewals are the election's own
    /// traffic), whose user agent contains `agent` (empty: any).
    pub fn operator_writes(&self, mark: Mark, namespace: &str, agent: &str) -> Vec<Write> {
        self.writes_by(mark, &operator_user(namespace), agent)
            .into_iter()
            .filter(|w| w.resource() != "leases")
            .collect()
    }
}

/// One line per write, for an assertion message.
pub fn describe(writes: &[Write]) -> String {
    writes
        .iter()
        .map(Write::describe)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The user a test operator authenticates as: the chart's ServiceAccount in
/// the test namespace.
pub fn operator_user(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:mlctl-operator")
}
