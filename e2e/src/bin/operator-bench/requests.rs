//! The API requests one controller made, counted from the API server's audit
//! log by User-Agent between two byte offsets of the log. Reads (get, list,
//! watch) appear only when the cluster's audit policy records them; the
//! report says so instead of printing a zero it did not measure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;

/// The verbs the report shows, in its order.
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Mutating verbs.
pub const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    name: String,
}

/// One request of the controller, reduced to what the report needs.
#[derive(Debug, Clone)]
pub struct Request {
    /// Lower-case verb.
    pub verb: String,
    /// Plural resource.
    pub resource: String,
    /// Object name (empty for collections).
    pub name: String,
}

impl Request {
    /// Whether it changes something.
    pub fn is_write(&self) -> bool {
        WRITES.contains(&self.verb.as_str())
    }
}

/// The audit log of the bench cluster.
pub struct AuditLog {
    path: PathBuf,
}

/// Requests of one window, and whether the log records reads at all.
#[derive(Debug, Default)]
pub struct Window {
    /// The controller's requests.
    pub requests: Vec<Request>,
    /// Any read (by anyone) in the window: without one, read counts are unknown.
    pub reads_logged: bool,
}

impl Window {
    /// Requests by verb; reads are absent when the log does not record them.
    pub fn by_verb(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for verb in VERBS {
            if !self.reads_logged && !WRITES.contains(&verb) {
                continue;
            }
            let n = self.requests.iter().filter(|r| r.verb == verb).count();
            counts.insert(verb.to_string(), n as u64);
        }
        counts
    }

    /// GETs plus LISTs, when recorded.
    pub fn reads(&self) -> Option<u64> {
        self.reads_logged.then(|| {
            self.requests
                .iter()
                .filter(|r| r.verb == "get" || r.verb == "list")
                .count() as u64
        })
    }

    /// Mutating requests.
    pub fn writes(&self) -> Vec<&Request> {
        self.requests.iter().filter(|r| r.is_write()).collect()
    }
}

impl AuditLog {
    /// The log `e2e/cluster env` names (MLCTL_E2E_AUDIT_LOG).
    pub fn open() -> Self {
        let path = std::env::var_os("MLCTL_E2E_AUDIT_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| mlctl_e2e::cluster_dir().join("audit.log"));
        assert!(
            path.is_file(),
            "no audit log at {} (a cluster started by e2e/cluster up has one)",
            path.display()
        );
        AuditLog { path }
    }

    /// The end of the log now.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The requests between two marks whose User-Agent starts with `agent`.
    /// A watch is counted once, when it starts (its completion is a second event).
    pub fn window(&self, from: u64, to: u64, agent: &str) -> Window {
        let mut file = std::fs::File::open(&self.path).expect("open the audit log");
        // A rotation in between leaves a shorter file: read what there is.
        let from = if file.metadata().map_or(0, |m| m.len()) < from {
            0
        } else {
            from
        };
        file.seek(SeekFrom::Start(from))
            .expect("seek the audit log");
        let mut window = Window::default();
        for line in BufReader::new(file.take(to.saturating_sub(from))).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            let counted_stage = if event.verb == "watch" {
                event.stage == "ResponseStarted"
            } else {
                event.stage == "ResponseComplete"
            };
            if !counted_stage || event.request_uri.contains("dryRun=") {
                continue;
            }
            if matches!(event.verb.as_str(), "get" | "list" | "watch") {
                window.reads_logged = true;
            }
            if !event.user_agent.starts_with(agent) {
                continue;
            }
            let object = event.object_ref.unwrap_or_default();
            window.requests.push(Request {
                verb: event.verb,
                resource: object.resource,
                name: object.name,
            });
        }
        window
    }
}
