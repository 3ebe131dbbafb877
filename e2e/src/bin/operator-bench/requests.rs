//! The API requests one controller made, from the API server's audit log
//! (mlctl_e2e::audit: one line per request, reads included; a watch is
//! recorded when it ends), selected by User-Agent. Reads appear only when the
//! cluster's audit policy records them; the report then says so instead of
//! printing a zero it did not measure.

use std::collections::BTreeMap;

use mlctl_e2e::audit::{Audit, Mark, Write};

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

const READS: [&str; 3] = ["get", "list", "watch"];

/// Requests of one window, and whether the log records reads at all.
#[derive(Debug, Default)]
pub struct Window {
    /// The controller's requests (dry runs excluded).
    pub requests: Vec<Write>,
    /// Any read (by anyone) in the window: without one, read counts are unknown.
    pub reads_logged: bool,
}

impl Window {
    /// The requests from `mark` until now whose User-Agent starts with `agent`.
    pub fn since(audit: &Audit, mark: Mark, agent: &str) -> Self {
        let all = audit.requests_since(mark);
        let reads_logged = all.iter().any(|r| READS.contains(&r.verb.as_str()));
        let requests = all
            .into_iter()
            .filter(|r| r.user_agent.starts_with(agent) && !r.request_uri.contains("dryRun="))
            .collect();
        Window {
            requests,
            reads_logged,
        }
    }

    /// Requests by verb; reads are absent when the log does not record them.
    pub fn by_verb(&self) -> BTreeMap<String, u64> {
        VERBS
            .iter()
            .filter(|verb| self.reads_logged || !READS.contains(verb))
            .map(|verb| {
                let n = self.requests.iter().filter(|r| r.verb == *verb).count();
                (verb.to_string(), n as u64)
            })
            .collect()
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
    pub fn writes(&self) -> Vec<&Write> {
        self.requests.iter().filter(|r| r.is_write()).collect()
    }
}
