//! `--git DIR|URL` mode for hosts other than GitHub: clone, the same lossless edit, a commit
//! on `mlctl/<env>/<model>`, and a (never forced) push; no pull request. The new blob is
//! written with `git hash-object --no-filters` so that no eol/attribute filter can change a
//! byte, and the committed blob is compared with the edit before pushing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::change::{ChangeSpec, FlowError, Outcome, branch_name, commit_message};
use crate::record::{self, Action, Record};
use crate::redact;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git (is it installed and on PATH?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Command { args: String, stderr: String },
    #[error("cannot create a temporary directory for the clone: {0}")]
    TempDir(#[source] std::io::Error),
}

fn git_with_input(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
    let mut command = Command::new("git");
    command
        .args(["-c", "core.autocrlf=false", "-c", "core.safecrlf=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(GitError::Spawn)?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(bytes).map_err(GitError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(GitError::Spawn)?;
    if !output.status.success() {
        // A remote URL in the arguments or in git's answer may carry a token.
        return Err(GitError::Command {
            args: redact::url_credentials(&args.join(" ")),
            stderr: redact::url_credentials(String::from_utf8_lossy(&output.stderr).trim()),
        });
    }
    Ok(output.stdout)
}

fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    git_with_input(dir, args, None).map(|out| String::from_utf8_lossy(&out).into_owned())
}

fn read_blob(dir: &Path, rev: &str, path: &str) -> Result<Option<String>, FlowError> {
    match git_with_input(dir, &["cat-file", "blob", &format!("{rev}:{path}")], None) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            FlowError::Refused(format!("{path} is not UTF-8 text; refusing to edit it"))
        }),
        Err(GitError::Command { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A fresh clone of `remote`'s `base` branch in a temporary directory.
pub struct Clone {
    _tmp: tempfile::TempDir,
    pub dir: std::path::PathBuf,
}

pub fn clone(remote: &str, base: &str) -> Result<Clone, GitError> {
    let tmp = tempfile::tempdir().map_err(GitError::TempDir)?;
    let dir = tmp.path().join("repo");
    let target = dir.to_string_lossy().into_owned();
    let secrets = redact::secrets_of(remote);
    let hide = |error: GitError| match error {
        GitError::Command { args, stderr } => GitError::Command {
            args: redact::with_secrets(&args, &secrets),
            stderr: redact::with_secrets(&stderr, &secrets),
        },
        other => other,
    };
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--no-tags",
            "--single-branch",
            "--branch",
            base,
            "--",
            remote,
            &target,
        ],
    )
    .map_err(hide)?;
    Ok(Clone { _tmp: tmp, dir })
}

/// Records in commit messages reachable from the base that touched `path`, newest first.
pub fn history(clone: &Clone, path: &str, model: &str, env: &str) -> Result<Vec<Record>, GitError> {
    let log = git(&clone.dir, &["log", "--format=%B", "HEAD", "--", path])?;
    Ok(record::from_commit_messages(&log)
        .into_iter()
        .filter(|r| r.model == model && r.env == env)
        .collect())
}

pub fn open_change(
    clone: &Clone,
    spec: &ChangeSpec<'_>,
    dry_run: bool,
) -> Result<Outcome, FlowError> {
    let dir = clone.dir.as_path();
    let base_text = read_blob(dir, "HEAD", spec.path)?.ok_or_else(|| {
        FlowError::Refused(format!(
            "{} not found on {}; check --path",
            spec.path, spec.base
        ))
    })?;
    let edit = crate::manifest::edit_model(&base_text, spec.model, &spec.desired)?;
    if edit.text == base_text {
        return Ok(Outcome::AlreadyDone(format!(
            "already promoted: {} on {} has {} {}",
            spec.path, spec.base, spec.model, spec.desired.version
        )));
    }
    let record = spec.record(&edit.before.version);
    if spec.action == Action::Promote && !spec.force {
        let merged = history(clone, spec.path, spec.model, spec.env)?;
        if merged
            .iter()
            .any(|r| r.version == record.version && r.uri == record.uri)
        {
            return Ok(Outcome::AlreadyDone(format!(
                "{} {} was already merged into {}, which has since been changed to {} (a rollback?); \
                 mlctl does not re-apply it. Use --force to promote again",
                spec.model, record.version, spec.base, edit.before.version
            )));
        }
    }
    let branch = branch_name(spec.env, spec.model);
    if dry_run {
        crate::change::print_diff(spec.path, &base_text, &edit.text);
        println!(
            "would commit {} on {branch} and push it to origin (no pull request in --git mode)",
            spec.path
        );
        return Ok(Outcome::DryRun);
    }
    let remote_ref = format!("refs/heads/{branch}");
    let tracking = format!("refs/remotes/origin/{branch}");
    let exists = !git(dir, &["ls-remote", "--heads", "origin", &remote_ref])?
        .trim()
        .is_empty();
    if exists {
        git(
            dir,
            &[
                "fetch",
                "--quiet",
                "origin",
                &format!("+{remote_ref}:{tracking}"),
            ],
        )?;
        if read_blob(dir, &tracking, spec.path)?.as_deref() == Some(edit.text.as_str()) {
            return Ok(Outcome::AlreadyDone(format!(
                "branch {branch} already carries this change; nothing to push"
            )));
        }
        git(dir, &["checkout", "--quiet", "-B", &branch, &tracking])?;
    } else {
        git(dir, &["checkout", "--quiet", "-b", &branch])?;
    }
    let blob = git_with_input(
        dir,
        &["hash-object", "-w", "--no-filters", "--stdin"],
        Some(edit.text.as_bytes()),
    )?;
    let blob = String::from_utf8_lossy(&blob).trim().to_string();
    let staged = git(dir, &["ls-files", "-s", "--", spec.path])?;
    let mode = staged
        .split_whitespace()
        .next()
        .unwrap_or("100644")
        .to_string();
    git(
        dir,
        &[
            "update-index",
            "--cacheinfo",
            &format!("{mode},{blob},{}", spec.path),
        ],
    )?;
    let mut commit: Vec<String> = Vec::new();
    if git(dir, &["config", "--get", "user.email"]).is_err() {
        commit.extend(
            ["-c", "user.name=mlctl", "-c", "user.email=mlctl@localhost"].map(String::from),
        );
    }
    commit.extend(["commit", "--quiet", "--no-verify", "-m"].map(String::from));
    commit.push(commit_message(spec, &record));
    git(dir, &commit.iter().map(String::as_str).collect::<Vec<_>>())?;
    if read_blob(dir, "HEAD", spec.path)?.as_deref() != Some(edit.text.as_str()) {
        return Err(FlowError::Refused(
            "the committed file differs from the edit (a git filter?); nothing was pushed"
                .to_string(),
        ));
    }
    git(
        dir,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("{branch}:{remote_ref}"),
        ],
    )?;
    Ok(Outcome::Pushed { branch })
}

/// The manifest as it is on the cloned base branch.
pub fn read_base(clone: &Clone, path: &str) -> Result<String, FlowError> {
    read_blob(&clone.dir, "HEAD", path)?.ok_or_else(|| {
        FlowError::Refused(format!("{path} not found on the base branch; check --path"))
    })
}
