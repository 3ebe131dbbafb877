//! What a promotion or rollback changes and how it is described (branch, commit message,
//! PR title and body, comment marker) — shared by the GitHub and `--git` modes.

use crate::manifest::{Desired, DigestChange, EditError};
use crate::record::{Action, Record};
use crate::report::LoadedReport;

/// The evaluated commit that gets the gate status (`--source-repo`/`--source-sha`).
#[derive(Debug, Clone)]
pub struct SourceCommit {
    pub repo: String,
    pub sha: String,
}

pub struct ChangeSpec<'a> {
    pub action: Action,
    pub model: &'a str,
    pub env: &'a str,
    pub path: &'a str,
    pub base: &'a str,
    pub label: &'a str,
    pub reopen: bool,
    pub force: bool,
    pub desired: Desired,
    pub report: Option<&'a LoadedReport>,
    pub source: Option<SourceCommit>,
}

impl ChangeSpec<'_> {
    pub fn record(&self, previous_version: &str) -> Record {
        Record {
            action: self.action.clone(),
            model: self.model.to_string(),
            env: self.env.to_string(),
            version: self.desired.version.clone(),
            uri: self.desired.uri.clone(),
            sha256: match &self.desired.sha256 {
                DigestChange::Set(digest) => Some(digest.clone()),
                DigestChange::Remove | DigestChange::Unspecified => None,
            },
            previous_version: previous_version.to_string(),
            source_commit: self
                .source
                .as_ref()
                .map(|s| format!("{}@{}", s.repo, s.sha)),
            report_digest: self.report.map(|r| r.digest.clone()),
            gate_pass: self.report.map(|r| r.report.pass),
        }
    }

    pub fn status_context(&self) -> String {
        format!("mlctl/gate/{}", self.env)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Api(#[from] crate::github::api::ApiError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// How a run ended (all exit 0).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyDone(String),
    PullRequest { number: u64, url: String },
    Pushed { branch: String },
    DryRun,
}

pub fn branch_name(env: &str, model: &str) -> String {
    format!("mlctl/{env}/{model}")
}

fn verdict(record: &Record) -> &'static str {
    match record.gate_pass {
        Some(true) => "gate passed",
        Some(false) => "gate FAILED (forced)",
        None => "no gate report",
    }
}

pub fn pr_title(spec: &ChangeSpec, record: &Record) -> String {
    match spec.action {
        Action::Promote => format!(
            "Promote {} to {} ({})",
            spec.model, record.version, spec.env
        ),
        Action::Rollback => format!(
            "Roll back {} to {} ({})",
            spec.model, record.version, spec.env
        ),
    }
}

pub fn commit_message(spec: &ChangeSpec, record: &Record) -> String {
    let verb = match spec.action {
        Action::Promote => "promote",
        Action::Rollback => "roll back",
    };
    format!(
        "{}: {verb} {} → {} ({})\n\n{}; {}.\n\n{}\n",
        spec.model,
        record.previous_version,
        record.version,
        spec.env,
        verdict(record),
        record
            .report_digest
            .as_deref()
            .map_or_else(|| "no report digest".to_string(), |d| format!("report {d}")),
        crate::record::to_trailer(record)
    )
}

pub fn pr_body(spec: &ChangeSpec, record: &Record) -> String {
    let digest = match &record.sha256 {
        Some(d) => format!("`{d}`"),
        None => "none".to_string(),
    };
    format!(
        "`{}` in `{}`: **{}** → **{}** ({}, {}).\n\n- uri: `{}`\n- sha256: {digest}\n- source commit: {}\n\n\
         Opened by `mlctl {}` — re-running the same command updates this pull request instead of \
         opening another one.\n\n{}\n",
        spec.model,
        spec.path,
        record.previous_version,
        record.version,
        spec.env,
        verdict(record),
        record.uri,
        record.source_commit.as_deref().unwrap_or("unknown"),
        match spec.action {
            Action::Promote => "promote --gitops",
            Action::Rollback => "rollback --gitops",
        },
        crate::record::to_pr_block(record)
    )
}

/// The hidden marker that finds our comment again (never the author: tokens change).
pub fn comment_marker(env: &str, model: &str) -> String {
    format!("<!-- mlctl:gate-report env={env} model={model} -->")
}

pub fn comment_body(marker: &str, markdown: &str) -> String {
    format!("{marker}\n{markdown}")
}

/// Prints the unified diff of the manifest (dry-run).
pub fn print_diff(path: &str, before: &str, after: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    // The manifest comes from the repository: remote text.
    print!("{}", crate::terminal::escape_controls(&text));
}
