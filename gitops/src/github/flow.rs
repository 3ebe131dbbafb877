//! The pull-request flow. Every step first reads what is there and only writes what is
//! missing, so re-running never duplicates a branch, commit, PR, label, comment or status,
//! and a run that stopped halfway completes on the next run.

use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};

use super::api::{Api, ApiError};
use crate::change::{
    ChangeSpec, FlowError, Outcome, branch_name, commit_message, pr_body, pr_title,
};
use crate::record::{self, Record};

/// Percent-encodes a path or query component, keeping `/`.
fn encode(component: &str) -> String {
    let mut out = String::new();
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn str_field<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

struct RemoteFile {
    text: String,
    blob_sha: String,
}

async fn branch_head(api: &Api, branch: &str) -> Result<Option<String>, ApiError> {
    let path = api.repo_path(&format!("/git/ref/heads/{}", encode(branch)));
    let reply = api.get(&path, &format!("read branch {branch}")).await?;
    Ok(reply.and_then(|r| str_field(&r, "/object/sha").map(str::to_string)))
}

async fn read_file(api: &Api, path: &str, git_ref: &str) -> Result<Option<RemoteFile>, FlowError> {
    let url = api.repo_path(&format!(
        "/contents/{}?ref={}",
        encode(path),
        encode(git_ref)
    ));
    let Some(reply) = api.get(&url, &format!("read {path} at {git_ref}")).await? else {
        return Ok(None);
    };
    let blob_sha = str_field(&reply, "/sha").unwrap_or_default().to_string();
    let mut encoded = str_field(&reply, "/content")
        .unwrap_or_default()
        .to_string();
    // Files over 1 MB come back without content; the blob endpoint has it.
    if encoded.is_empty() && !blob_sha.is_empty() {
        let blob = api
            .get_required(
                &api.repo_path(&format!("/git/blobs/{blob_sha}")),
                "read the manifest blob",
            )
            .await?;
        encoded = str_field(&blob, "/content").unwrap_or_default().to_string();
    }
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| {
            FlowError::Refused(format!("{path}: GitHub returned undecodable content ({e})"))
        })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        FlowError::Refused(format!("{path} is not UTF-8 text; refusing to edit it"))
    })?;
    Ok(Some(RemoteFile { text, blob_sha }))
}

/// Pull requests whose head is our branch, newest first.
async fn pulls_for_branch(api: &Api, branch: &str, state: &str) -> Result<Vec<Value>, ApiError> {
    let mut all = Vec::new();
    for page in 1..=10 {
        let path = api.repo_path(&format!(
            "/pulls?head={}:{}&state={state}&sort=created&direction=desc&per_page=100&page={page}",
            encode(&api.owner),
            encode(branch)
        ));
        let reply = api
            .get_required(&path, &format!("list pull requests for {branch}"))
            .await?;
        let items = reply.as_array().cloned().unwrap_or_default();
        let last = items.len() < 100;
        all.extend(items);
        if last {
            break;
        }
    }
    Ok(all)
}

fn pr_record(pr: &Value) -> Option<Record> {
    record::from_pr_body(str_field(pr, "/body")?)
}

fn pr_number(pr: &Value) -> Option<u64> {
    pr.get("number").and_then(Value::as_u64)
}

fn is_merged(pr: &Value) -> bool {
    pr.get("merged_at").is_some_and(|v| !v.is_null())
}

/// Merged mlctl records for the branch, newest merge first (what rollback looks at).
pub async fn history(api: &Api, model: &str, env: &str) -> Result<Vec<Record>, ApiError> {
    let mut merged: Vec<(String, Record)> =
        pulls_for_branch(api, &branch_name(env, model), "closed")
            .await?
            .iter()
            .filter(|pr| is_merged(pr))
            .filter_map(|pr| {
                let at = str_field(pr, "/merged_at")?.to_string();
                pr_record(pr).map(|r| (at, r))
            })
            .filter(|(_, r)| r.model == model && r.env == env)
            .collect();
    merged.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(merged.into_iter().map(|(_, r)| r).collect())
}

/// Opens (or adopts, or completes) the pull request for `spec`.
pub async fn open_change(api: &Api, spec: &ChangeSpec<'_>) -> Result<Outcome, FlowError> {
    let base_sha = branch_head(api, spec.base).await?.ok_or_else(|| {
        FlowError::Refused(format!(
            "base branch {:?} not found in {}/{}; check --base and --repo",
            spec.base, api.owner, api.repo
        ))
    })?;
    let base_file = read_file(api, spec.path, &base_sha).await?.ok_or_else(|| {
        FlowError::Refused(format!(
            "{} not found on {}; check --path",
            spec.path, spec.base
        ))
    })?;
    let edit = crate::manifest::edit_model(&base_file.text, spec.model, &spec.desired)?;
    if edit.text == base_file.text {
        return Ok(Outcome::AlreadyDone(format!(
            "already promoted: {} on {} has {} {}",
            spec.path, spec.base, spec.model, spec.desired.version
        )));
    }
    let record = spec.record(&edit.before.version);
    if api.dry_run {
        crate::change::print_diff(spec.path, &base_file.text, &edit.text);
    }
    let branch = branch_name(spec.env, spec.model);
    let pulls = pulls_for_branch(api, &branch, "all").await?;
    let same_target = |pr: &&Value| {
        pr_record(pr).is_some_and(|r| r.version == record.version && r.uri == record.uri)
    };
    let open = pulls
        .iter()
        .find(|pr| str_field(pr, "/state") == Some("open"));
    let mut reopen = None;
    if open.is_none() {
        if let Some(done) = pulls.iter().filter(same_target).find(|pr| is_merged(pr)) {
            if !spec.force && spec.action == record::Action::Promote {
                return Ok(Outcome::AlreadyDone(format!(
                    "already promoted by pull request #{} (merged); {} has since been changed to {} \
                     (a rollback?) and mlctl does not re-apply it. Use --force to promote again",
                    pr_number(done).unwrap_or_default(),
                    spec.base,
                    edit.before.version
                )));
            }
        } else if let Some(closed) = pulls.iter().find(same_target) {
            let number = pr_number(closed).unwrap_or_default();
            if !spec.reopen {
                return Err(FlowError::Refused(format!(
                    "pull request #{number} for {} {} was closed without merging; pass --reopen to \
                     reopen it, or promote another version",
                    spec.model, record.version
                )));
            }
            reopen = Some(number);
        }
    }

    // Branch and commit.
    let head = match branch_head(api, &branch).await? {
        Some(sha) => sha,
        None => {
            let body = json!({"ref": format!("refs/heads/{branch}"), "sha": base_sha});
            let created = api
                .write(
                    Method::POST,
                    &api.repo_path("/git/refs"),
                    &body,
                    &format!("create branch {branch}"),
                )
                .await;
            match created {
                Ok(_) => base_sha.clone(),
                // A parallel run created it first ("Reference already exists"): use theirs.
                Err(error) if error.is_unprocessable() => branch_head(api, &branch)
                    .await?
                    .ok_or(FlowError::Api(error))?,
                Err(error) => return Err(error.into()),
            }
        }
    };
    let on_branch = if api.dry_run && head == base_sha {
        Some(RemoteFile {
            text: base_file.text.clone(),
            blob_sha: base_file.blob_sha.clone(),
        })
    } else {
        read_file(api, spec.path, &head).await?
    };
    let head = if on_branch.as_ref().map(|f| f.text.as_str()) == Some(edit.text.as_str()) {
        head
    } else {
        let mut body = json!({
            "message": commit_message(spec, &record),
            "content": base64::engine::general_purpose::STANDARD.encode(edit.text.as_bytes()),
            "branch": branch,
        });
        if let Some(file) = &on_branch {
            body["sha"] = json!(file.blob_sha);
        }
        let path = api.repo_path(&format!("/contents/{}", encode(spec.path)));
        let reply = api
            .write(
                Method::PUT,
                &path,
                &body,
                &format!("commit {} to {branch}", spec.path),
            )
            .await?;
        reply
            .as_ref()
            .and_then(|r| str_field(r, "/commit/sha"))
            .map_or(head, str::to_string)
    };

    // Pull request: adopt, reopen or create.
    let title = pr_title(spec, &record);
    let body = pr_body(spec, &record);
    let pr = match (open, reopen) {
        (Some(pr), _) => {
            let number = pr_number(pr).unwrap_or_default();
            if str_field(pr, "/title") != Some(title.as_str())
                || str_field(pr, "/body") != Some(body.as_str())
            {
                let path = api.repo_path(&format!("/pulls/{number}"));
                let update = json!({"title": title, "body": body});
                api.write(
                    Method::PATCH,
                    &path,
                    &update,
                    &format!("update pull request #{number}"),
                )
                .await?
                .unwrap_or_else(|| pr.clone())
            } else {
                eprintln!("pull request #{number} is up to date");
                pr.clone()
            }
        }
        (None, Some(number)) => {
            let path = api.repo_path(&format!("/pulls/{number}"));
            let update = json!({"state": "open", "title": title, "body": body});
            match api
                .write(
                    Method::PATCH,
                    &path,
                    &update,
                    &format!("reopen pull request #{number}"),
                )
                .await?
            {
                Some(pr) => pr,
                None => return Ok(Outcome::DryRun),
            }
        }
        (None, None) => {
            let create = json!({"title": title, "head": branch, "base": spec.base, "body": body});
            match api
                .write(
                    Method::POST,
                    &api.repo_path("/pulls"),
                    &create,
                    "open the pull request",
                )
                .await
            {
                Ok(Some(pr)) => pr,
                Ok(None) => {
                    print_planned_reports(spec);
                    return Ok(Outcome::DryRun);
                }
                // Someone (a parallel run) opened it meanwhile: adopt it.
                Err(error) if error.is_unprocessable() => pulls_for_branch(api, &branch, "open")
                    .await?
                    .into_iter()
                    .next()
                    .ok_or(FlowError::Api(error))?,
                Err(error) => return Err(error.into()),
            }
        }
    };
    let number = pr_number(&pr).unwrap_or_default();
    let has_label = pr
        .get("labels")
        .and_then(Value::as_array)
        .is_some_and(|labels| {
            labels
                .iter()
                .any(|l| str_field(l, "/name") == Some(spec.label))
        });
    if !has_label {
        let path = api.repo_path(&format!("/issues/{number}/labels"));
        api.write(
            Method::POST,
            &path,
            &json!({"labels": [spec.label]}),
            &format!("label #{number} {}", spec.label),
        )
        .await?;
    }
    if let Some(report) = spec.report {
        let marker = crate::change::comment_marker(spec.env, spec.model);
        upsert_comment(
            api,
            number,
            &marker,
            &crate::change::comment_body(&marker, &report.markdown),
        )
        .await?;
        // Our own view of the branch head: an adopted PR's listing predates our commit.
        let head_sha = head.clone();
        let target_url = str_field(&pr, "/html_url").unwrap_or_default().to_string();
        set_status(
            api,
            &api.repo_path(""),
            &head_sha,
            spec,
            report,
            &target_url,
        )
        .await?;
        if api.as_app {
            upsert_check_run(api, &head_sha, spec, report).await?;
        }
        if let Some(source) = &spec.source {
            set_status(
                api,
                &format!("/repos/{}", source.repo),
                &source.sha,
                spec,
                report,
                &target_url,
            )
            .await?;
        }
    }
    let url = str_field(&pr, "/html_url").unwrap_or_default().to_string();
    if api.dry_run {
        return Ok(Outcome::DryRun);
    }
    Ok(Outcome::PullRequest { number, url })
}

fn print_planned_reports(spec: &ChangeSpec<'_>) {
    println!("would label the pull request {}", spec.label);
    if spec.report.is_some() {
        println!("would post the gate report as a pull-request comment");
        println!(
            "would set commit status {} on the PR head{}",
            spec.status_context(),
            if spec.source.is_some() {
                " and the source commit"
            } else {
                ""
            }
        );
    }
}

async fn upsert_comment(api: &Api, number: u64, marker: &str, body: &str) -> Result<(), ApiError> {
    let mut existing = None;
    for page in 1..=20 {
        let path = api.repo_path(&format!(
            "/issues/{number}/comments?per_page=100&page={page}"
        ));
        let comments = api
            .get_required(&path, "list pull-request comments")
            .await?;
        let items = comments.as_array().cloned().unwrap_or_default();
        if let Some(found) = items
            .iter()
            .find(|c| str_field(c, "/body").is_some_and(|b| b.contains(marker)))
        {
            existing = Some(found.clone());
            break;
        }
        if items.len() < 100 {
            break;
        }
    }
    match existing {
        Some(comment) if str_field(&comment, "/body") == Some(body) => {
            eprintln!("gate report comment is up to date");
        }
        Some(comment) => {
            let id = comment
                .get("id")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            let path = api.repo_path(&format!("/issues/comments/{id}"));
            api.write(
                Method::PATCH,
                &path,
                &json!({"body": body}),
                "update the gate report comment",
            )
            .await?;
        }
        None => {
            let path = api.repo_path(&format!("/issues/{number}/comments"));
            api.write(
                Method::POST,
                &path,
                &json!({"body": body}),
                "post the gate report comment",
            )
            .await?;
        }
    }
    Ok(())
}

/// The commit-status state and check-run conclusion for the gate verdict.
fn gate_state(report: &crate::report::LoadedReport) -> &'static str {
    if report.report.pass {
        "success"
    } else {
        "failure"
    }
}

/// GitHub caps a check run's summary at 65535 characters.
const CHECK_SUMMARY_LIMIT: usize = 65_000;

/// A completed check run carrying the report (GitHub Apps only: tokens cannot create them).
async fn upsert_check_run(
    api: &Api,
    sha: &str,
    spec: &ChangeSpec<'_>,
    report: &crate::report::LoadedReport,
) -> Result<(), ApiError> {
    let name = spec.status_context();
    let conclusion = gate_state(report);
    let title = crate::report::status_description(&report.report);
    let summary: String = report.markdown.chars().take(CHECK_SUMMARY_LIMIT).collect();
    let path = api.repo_path(&format!(
        "/commits/{sha}/check-runs?check_name={}",
        encode(&name)
    ));
    let existing = api.get(&path, "list check runs").await?.and_then(|r| {
        r.get("check_runs")
            .and_then(Value::as_array)
            .and_then(|runs| runs.first().cloned())
    });
    let output = json!({"title": title, "summary": summary});
    match existing {
        Some(run)
            if str_field(&run, "/conclusion") == Some(conclusion)
                && str_field(&run, "/output/summary") == Some(summary.as_str()) =>
        {
            eprintln!("check run {name} is up to date");
        }
        Some(run) => {
            let id = run.get("id").and_then(Value::as_u64).unwrap_or_default();
            let body = json!({"status": "completed", "conclusion": conclusion, "output": output});
            api.write(
                Method::PATCH,
                &api.repo_path(&format!("/check-runs/{id}")),
                &body,
                "update the gate check run",
            )
            .await?;
        }
        None => {
            let body = json!({"name": name, "head_sha": sha, "status": "completed",
                "conclusion": conclusion, "output": output});
            api.write(
                Method::POST,
                &api.repo_path("/check-runs"),
                &body,
                "create the gate check run",
            )
            .await?;
        }
    }
    Ok(())
}

async fn set_status(
    api: &Api,
    repo_prefix: &str,
    sha: &str,
    spec: &ChangeSpec<'_>,
    report: &crate::report::LoadedReport,
    target_url: &str,
) -> Result<(), ApiError> {
    let context = spec.status_context();
    let state = gate_state(report);
    let description = crate::report::status_description(&report.report);
    let current = api
        .get(
            &format!("{repo_prefix}/commits/{sha}/status"),
            "read commit statuses",
        )
        .await?;
    let up_to_date = current
        .as_ref()
        .and_then(|c| c.get("statuses"))
        .and_then(Value::as_array)
        .and_then(|statuses| {
            statuses
                .iter()
                .find(|s| str_field(s, "/context") == Some(context.as_str()))
        })
        .is_some_and(|s| {
            str_field(s, "/state") == Some(state)
                && str_field(s, "/description") == Some(description.as_str())
        });
    if up_to_date {
        return Ok(());
    }
    let mut body = json!({"state": state, "context": context, "description": description});
    if !target_url.is_empty() {
        body["target_url"] = json!(target_url);
    }
    api.write(
        Method::POST,
        &format!("{repo_prefix}/statuses/{sha}"),
        &body,
        &format!("set status {context} on {sha}"),
    )
    .await?;
    Ok(())
}

/// The manifest as it is on the base branch.
pub async fn read_base(api: &Api, path: &str, base: &str) -> Result<String, FlowError> {
    let sha = branch_head(api, base).await?.ok_or_else(|| {
        FlowError::Refused(format!("base branch {base:?} not found; check --base"))
    })?;
    Ok(read_file(api, path, &sha)
        .await?
        .ok_or_else(|| FlowError::Refused(format!("{path} not found on {base}; check --path")))?
        .text)
}
