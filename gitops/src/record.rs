//! The machine-readable promotion record: a hidden HTML comment in the PR body and a
//! `Mlctl-Record:` trailer in the commit message. Rollback reads these back to find the
//! previous passing version.

use serde::{Deserialize, Serialize};

const PR_MARKER: &str = "<!-- mlctl:promotion ";
const PR_END: &str = " -->";
const TRAILER: &str = "Mlctl-Record: ";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Promote,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub action: Action,
    pub model: String,
    pub env: String,
    pub version: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The version in the base when the change was made.
    pub previous_version: String,
    /// The evaluated source commit, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_digest: Option<String>,
    /// `Some(true)` when a gate report said pass; `None` when no report was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_pass: Option<bool>,
}

/// JSON safe to embed in an HTML comment (no `>` so no `-->`).
fn compact_json(record: &Record) -> String {
    serde_json::to_string(record)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
}

pub fn to_pr_block(record: &Record) -> String {
    format!("{PR_MARKER}{}{PR_END}", compact_json(record))
}

pub fn to_trailer(record: &Record) -> String {
    format!("{TRAILER}{}", compact_json(record))
}

pub fn from_pr_body(body: &str) -> Option<Record> {
    let start = body.find(PR_MARKER)? + PR_MARKER.len();
    let end = start + body[start..].find(PR_END)?;
    serde_json::from_str(&body[start..end]).ok()
}

/// All records in a commit log (one per `Mlctl-Record:` line).
pub fn from_commit_messages(log: &str) -> Vec<Record> {
    log.lines()
        .filter_map(|line| line.trim().strip_prefix(TRAILER))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// The version to roll back to, given the merged records newest first and the version
/// now in the base: the newest passing version that is not the current one and was never
/// rolled back from.
pub fn previous_passing<'a>(newest_first: &'a [Record], current: &str) -> Option<&'a Record> {
    let rolled_back_from: Vec<&str> = newest_first
        .iter()
        .filter(|r| r.action == Action::Rollback)
        .map(|r| r.previous_version.as_str())
        .collect();
    newest_first.iter().find(|r| {
        r.version != current
            && r.gate_pass != Some(false)
            && !rolled_back_from.contains(&r.version.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, version: &str, previous: &str, pass: Option<bool>) -> Record {
        Record {
            action,
            model: "m".into(),
            env: "prod".into(),
            version: version.into(),
            uri: format!("s3://b/{version}"),
            sha256: None,
            previous_version: previous.into(),
            source_commit: Some("abc".into()),
            report_digest: None,
            gate_pass: pass,
        }
    }

    #[test]
    fn block_round_trips_and_survives_hostile_values() {
        let mut r = record(Action::Promote, "v2", "v1", Some(true));
        r.uri = "s3://b/--> <!-- x".into();
        let body = format!("Promotes m.\n\n{}\n", to_pr_block(&r));
        assert!(!body.contains("x -->"));
        assert_eq!(from_pr_body(&body), Some(r.clone()));
        assert_eq!(
            from_commit_messages(&format!("subject\n\n{}\n", to_trailer(&r))),
            vec![r]
        );
    }

    #[test]
    fn previous_passing_skips_current_failed_and_rolled_back_versions() {
        let history = vec![
            record(Action::Rollback, "v2", "v3", None),
            record(Action::Promote, "v3", "v2", Some(true)),
            record(Action::Promote, "v2", "v1", Some(true)),
            record(Action::Promote, "v1b", "v1", Some(false)),
            record(Action::Promote, "v1", "v0", Some(true)),
        ];
        assert_eq!(
            previous_passing(&history, "v2").map(|r| r.version.as_str()),
            Some("v1")
        );
        assert_eq!(
            previous_passing(&history[1..], "v3").map(|r| r.version.as_str()),
            Some("v2")
        );
        assert_eq!(previous_passing(&history[4..], "v1"), None);
    }
}
