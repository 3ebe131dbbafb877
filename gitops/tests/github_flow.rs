//! The GitHub pull-request flow against the in-memory GitHub stub: PR creation and
//! adoption, idempotent re-runs, failure halfway then completion, rate-limit retries,
//! the report comment updated in place, statuses, merged/closed PR rules, rollback.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mlctl_gitops::cli::{
    Credentials, PromoteArgs, RollbackArgs, TargetArgs, run_promote_with, run_rollback_with,
};
use serde_json::json;
use support::{Fault, OWNER, REPO, StubGitHub};

const PATH: &str = "apps/ranking/search-ranker.yaml";
const BRANCH: &str = "mlctl/prod/search-ranker";
const SOURCE_SHA: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6";

fn manifest(version: &str) -> String {
    format!(
        "# ranking models\napiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata:\n  name: search-ranker\nspec:\n  model:\n    version: \"{version}\"  # CI\n    uri: s3://models/search-ranker/{version}/model.txt\n    format: lightgbm\n  replicas: 3\n"
    )
}

fn seeded(version: &str) -> StubGitHub {
    let stub = StubGitHub::start();
    stub.with(|s| {
        s.commit(
            "main",
            BTreeMap::from([(PATH.to_string(), manifest(version))]),
            "initial",
        );
    });
    stub
}

fn credentials() -> Credentials {
    Credentials::with_token("ghp_test_token_never_printed")
}

fn target(stub: &StubGitHub) -> TargetArgs {
    TargetArgs {
        repo: Some(format!("{OWNER}/{REPO}")),
        path: Some(PATH.into()),
        model: Some("search-ranker".into()),
        api_url: Some(stub.url.clone()),
        ..TargetArgs::default()
    }
}

struct Report {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// A gate report for search-ranker `version`, as `mlctl eval --model
/// --candidate-version` writes it.
fn report(version: &str, pass: bool, delta: f64) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let body = json!({
        "subject": {"model": "search-ranker", "version": version},
        "queries": 500,
        "metrics": {},
        "comparison": {"ndcg@10": {"baseline": 0.41, "candidate": 0.41 + delta, "delta": delta,
            "ci95": [delta - 0.01, delta + 0.01], "p_randomization": 0.01, "p_ttest": 0.02,
            "wins": 120, "losses": 80, "ties": 300, "pass": pass}},
        "pass": pass
    });
    std::fs::write(&path, body.to_string()).unwrap();
    Report { _dir: dir, path }
}

fn promote_args(stub: &StubGitHub, version: &str, report: Option<&Report>) -> PromoteArgs {
    PromoteArgs {
        target: target(stub),
        model_version: Some(version.into()),
        uri: Some(format!("s3://models/search-ranker/{version}/model.txt")),
        gate_report: report.map(|r| r.path.clone()),
        source_sha: Some(SOURCE_SHA.into()),
        source_repo: Some("acme/ranker-training".into()),
        ..PromoteArgs::default()
    }
}

fn writes(stub: &StubGitHub) -> Vec<(String, String)> {
    stub.with(|s| s.writes())
}

#[test]
fn promotion_opens_one_pr_with_report_and_a_rerun_writes_nothing() {
    let stub = seeded("v40");
    let gate = report("v41", true, 0.01);
    let args = promote_args(&stub, "v41", Some(&gate));
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| {
        let branch_file = s.file(BRANCH, PATH).unwrap();
        assert_eq!(
            branch_file,
            manifest("v40").replace("v40", "v41"),
            "only the values changed"
        );
        assert_eq!(
            s.file("main", PATH).unwrap(),
            manifest("v40"),
            "base untouched"
        );
        assert_eq!(s.pulls.len(), 1);
        let pr = &s.pulls[0];
        assert_eq!(
            (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
            (BRANCH, "main", "open")
        );
        assert_eq!(pr.labels, vec!["mlctl-promotion".to_string()]);
        assert!(pr.body.contains("<!-- mlctl:promotion {"), "{}", pr.body);
        assert!(pr.body.contains("\"version\":\"v41\""));
        assert!(pr.body.contains("acme/ranker-training@5f1e2d3c"));
        assert_eq!(s.comments.len(), 1);
        assert!(s.comments[0].body.starts_with(
            "<!-- mlctl:gate-report env=prod model=search-ranker -->\n### ✅ Gate passed"
        ));
        let head = s.refs[BRANCH].clone();
        let contexts: Vec<(&str, &str, &str)> = s
            .statuses
            .iter()
            .map(|st| (st.repo.as_str(), st.sha.as_str(), st.state.as_str()))
            .collect();
        assert!(
            contexts.contains(&("acme/gitops", head.as_str(), "success")),
            "{contexts:?}"
        );
        assert!(
            contexts.contains(&("acme/ranker-training", SOURCE_SHA, "success")),
            "{contexts:?}"
        );
        assert!(s.statuses.iter().all(|st| st.context == "mlctl/gate/prod"));
        let (_, _, message) = &s.commits[&head];
        assert!(
            message.starts_with("search-ranker: promote v40 → v41 (prod)"),
            "{message}"
        );
        assert!(message.contains("gate passed"));
        // The token went in the Authorization header and nowhere else.
        assert!(
            s.auth_headers
                .iter()
                .all(|h| h == "Bearer ghp_test_token_never_printed")
        );
    });
    let before = writes(&stub);
    let kinds: Vec<String> = before
        .iter()
        .map(|(m, p)| format!("{m} {}", p.split('/').nth(4).unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        [
            "POST git",
            "PUT contents",
            "POST pulls",
            "POST issues",
            "POST issues",
            "POST statuses",
            "POST statuses"
        ],
        "one write per missing thing"
    );
    let requests = stub.with(|s| s.log.len());
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    assert_eq!(writes(&stub), before, "the re-run wrote something");
    let rerun_requests = stub.with(|s| s.log.len()) - requests;
    eprintln!("requests: first run {requests}, re-run {rerun_requests} (reads only)");
}

#[test]
fn base_already_at_target_is_already_promoted() {
    let stub = seeded("v41");
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    assert!(writes(&stub).is_empty());
}

#[test]
fn failure_after_the_commit_completes_on_the_next_run() {
    let stub = seeded("v40");
    stub.with(|s| {
        s.faults.push_back(Fault::new(
            "POST",
            &format!("/repos/{OWNER}/{REPO}/pulls"),
            403,
            "Resource not accessible by integration",
        ))
    });
    let gate = report("v41", true, 0.01);
    let args = promote_args(&stub, "v41", Some(&gate));
    assert_eq!(run_promote_with(&args, &credentials()), 1);
    let head_after_failure = stub.with(|s| {
        assert!(s.pulls.is_empty());
        s.refs[BRANCH].clone()
    });
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| {
        assert_eq!(s.refs[BRANCH], head_after_failure, "no second commit");
        assert_eq!(s.pulls.len(), 1);
        assert_eq!(s.comments.len(), 1);
    });
}

#[test]
fn an_open_pr_for_the_branch_is_adopted_and_updated() {
    let stub = seeded("v40");
    stub.with(|s| {
        let base = s.refs["main"].clone();
        s.refs.insert(BRANCH.into(), base);
        s.pulls.push(support::Pull {
            number: 7,
            state: "open".into(),
            merged_at: None,
            head: BRANCH.into(),
            base: "main".into(),
            title: "WIP by hand".into(),
            body: "older text".into(),
            labels: vec!["needs-review".into()],
        });
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    stub.with(|s| {
        assert_eq!(s.pulls.len(), 1, "no second PR");
        let pr = &s.pulls[0];
        assert_eq!(pr.title, "Promote search-ranker to v41 (prod)");
        assert!(pr.body.contains("mlctl:promotion"));
        assert_eq!(
            pr.labels,
            vec!["needs-review".to_string(), "mlctl-promotion".to_string()]
        );
        assert!(s.file(BRANCH, PATH).unwrap().contains("version: \"v41\""));
    });
}

#[test]
fn a_merged_pr_is_done_even_after_a_manual_rollback() {
    let stub = seeded("v40");
    let args = promote_args(&stub, "v41", None);
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| {
        s.merge(1);
        assert!(s.file("main", PATH).unwrap().contains("\"v41\""));
        // Someone rolls back by hand.
        s.commit(
            "main",
            BTreeMap::from([(PATH.to_string(), manifest("v40"))]),
            "manual rollback",
        );
    });
    let before = writes(&stub);
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    assert_eq!(
        writes(&stub),
        before,
        "the rolled-back version was re-applied"
    );
    assert!(stub.with(|s| s.file("main", PATH).unwrap().contains("\"v40\"")));
    let forced = PromoteArgs {
        force: true,
        ..args
    };
    assert_eq!(run_promote_with(&forced, &credentials()), 0);
    stub.with(|s| assert_eq!(s.pulls.iter().filter(|p| p.state == "open").count(), 1));
}

#[test]
fn a_pr_closed_without_merging_needs_reopen() {
    let stub = seeded("v40");
    let args = promote_args(&stub, "v41", None);
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| s.pulls[0].state = "closed".into());
    assert_eq!(run_promote_with(&args, &credentials()), 1);
    let mut reopen = args.clone();
    reopen.target.reopen = true;
    assert_eq!(run_promote_with(&reopen, &credentials()), 0);
    stub.with(|s| {
        assert_eq!(s.pulls.len(), 1);
        assert_eq!(s.pulls[0].state, "open");
    });
}

#[test]
fn rate_limits_and_secondary_limits_are_retried() {
    let stub = seeded("v40");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    stub.with(|s| {
        s.faults.push_back(Fault::new("GET", &format!("/repos/{OWNER}/{REPO}/git/ref/heads/main"), 429, "Too Many Requests").header("retry-after", "0"));
        s.faults.push_back(Fault::new("POST", &format!("/repos/{OWNER}/{REPO}/pulls"), 403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.").header("retry-after", "0"));
        s.faults.push_back(Fault::new("PUT", &format!("/repos/{OWNER}/{REPO}/contents/"), 403, "API rate limit exceeded for installation ID 1.").header("x-ratelimit-remaining", "0").header("x-ratelimit-reset", now.saturating_sub(1)));
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    stub.with(|s| {
        assert!(s.faults.is_empty(), "every scripted limit was hit");
        assert_eq!(s.pulls.len(), 1);
        let puts = s.log.iter().filter(|(m, _)| m == "PUT").count();
        assert_eq!(puts, 2, "the commit was retried once");
        assert_eq!(s.commits.len(), 2, "and made once");
    });
}

#[test]
fn a_rate_limit_far_in_the_future_fails_with_exit_1() {
    let stub = seeded("v40");
    stub.with(|s| {
        s.faults.push_back(
            Fault::new("GET", "/repos/", 429, "Too Many Requests").header("retry-after", "3600"),
        )
    });
    let mut args = promote_args(&stub, "v41", None);
    args.target.max_retry_wait = Some(60);
    assert_eq!(run_promote_with(&args, &credentials()), 1);
}

#[test]
fn the_report_comment_is_updated_in_place() {
    let stub = seeded("v40");
    let first = report("v41", true, 0.01);
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", Some(&first)), &credentials()),
        0
    );
    stub.with(|s| {
        s.comments.push(support::Comment {
            id: 1,
            issue: 1,
            body: "LGTM".into(),
        });
    });
    let second = report("v41", true, 0.02);
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", Some(&second)), &credentials()),
        0
    );
    stub.with(|s| {
        assert_eq!(s.comments.len(), 2, "no second report comment");
        let ours: Vec<_> = s
            .comments
            .iter()
            .filter(|c| c.body.contains("mlctl:gate-report"))
            .collect();
        assert_eq!(ours.len(), 1);
        assert!(ours[0].body.contains("+0.0200"), "{}", ours[0].body);
        assert!(s.comments.iter().any(|c| c.body == "LGTM"));
        // The new status description replaced the old one for the context.
        let latest = s
            .statuses
            .iter()
            .rev()
            .find(|st| st.repo == "acme/gitops")
            .unwrap();
        assert!(
            latest.description.contains("+0.0200"),
            "{}",
            latest.description
        );
    });
}

#[test]
fn a_failed_gate_exits_10_unless_forced() {
    let stub = seeded("v40");
    let gate = report("v41", false, -0.02);
    let args = promote_args(&stub, "v41", Some(&gate));
    assert_eq!(run_promote_with(&args, &credentials()), 10);
    assert!(
        stub.with(|s| s.log.is_empty()),
        "nothing may be asked of GitHub"
    );
    let forced = PromoteArgs {
        force: true,
        ..args
    };
    assert_eq!(run_promote_with(&forced, &credentials()), 0);
    stub.with(|s| {
        assert!(s.statuses.iter().all(|st| st.state == "failure"));
        assert!(s.pulls[0].body.contains("gate FAILED (forced)"));
    });
}

#[test]
fn dry_run_reads_but_never_writes() {
    let stub = seeded("v40");
    let gate = report("v41", true, 0.01);
    let mut args = promote_args(&stub, "v41", Some(&gate));
    args.target.dry_run = true;
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    assert!(writes(&stub).is_empty(), "{:?}", writes(&stub));
    assert!(stub.with(|s| !s.log.is_empty()));
}

#[test]
fn missing_flags_and_credentials_are_usage_errors() {
    let stub = seeded("v40");
    let mut args = promote_args(&stub, "v41", None);
    args.target.model = None;
    assert_eq!(run_promote_with(&args, &credentials()), 2);
    let args = promote_args(&stub, "v41", None);
    assert_eq!(run_promote_with(&args, &Credentials::default()), 2);
    let mut args = promote_args(&stub, "v41", None);
    args.target.sha256 = Some("abc".into());
    assert_eq!(run_promote_with(&args, &credentials()), 2);
    assert!(stub.with(|s| s.log.is_empty()));
}

#[test]
fn bad_credentials_and_missing_files_fail_with_exit_1() {
    let stub = seeded("v40");
    stub.with(|s| {
        s.faults
            .push_back(Fault::new("GET", "/repos/", 401, "Bad credentials"))
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        1
    );
    let mut args = promote_args(&stub, "v41", None);
    args.target.path = Some("does/not/exist.yaml".into());
    assert_eq!(run_promote_with(&args, &credentials()), 1);
}

fn rollback_args(stub: &StubGitHub) -> RollbackArgs {
    RollbackArgs {
        target: target(stub),
        ..RollbackArgs::default()
    }
}

#[test]
fn rollback_opens_a_forward_pr_to_the_previous_passing_version() {
    let stub = seeded("v40");
    for (n, version) in [(1, "v41"), (2, "v42")] {
        let gate = report(version, true, 0.01);
        assert_eq!(
            run_promote_with(&promote_args(&stub, version, Some(&gate)), &credentials()),
            0
        );
        stub.with(|s| s.merge(n));
    }
    assert_eq!(
        run_rollback_with(&rollback_args(&stub), None, &credentials()),
        0
    );
    stub.with(|s| {
        let pr = s.pulls.last().unwrap();
        assert_eq!(pr.title, "Roll back search-ranker to v41 (prod)");
        assert_eq!(pr.state, "open");
        let file = s.file(BRANCH, PATH).unwrap();
        assert_eq!(file, manifest("v40").replace("v40", "v41"));
        s.merge(pr.number);
    });
    // Rolling back again skips v42 (rolled back from) and v41 (current).
    assert_eq!(
        run_rollback_with(&rollback_args(&stub), None, &credentials()),
        1,
        "v40 was never promoted by mlctl"
    );
    let mut to_v40 = rollback_args(&stub);
    to_v40.uri = Some("s3://models/search-ranker/v40/model.txt".into());
    assert_eq!(run_rollback_with(&to_v40, Some("v40"), &credentials()), 0);
    assert!(stub.with(|s| s.file(BRANCH, PATH).unwrap() == manifest("v40")));
    assert_eq!(
        run_rollback_with(&rollback_args(&stub), Some("v39"), &credentials()),
        1
    );
}

#[test]
fn a_branch_created_by_a_parallel_run_is_used() {
    let stub = seeded("v40");
    stub.with(|s| {
        // The branch appears between our read and our create: GitHub answers 422.
        s.faults.push_back(Fault::new(
            "POST",
            &format!("/repos/{OWNER}/{REPO}/git/refs"),
            422,
            "Reference already exists",
        ));
        s.faults.push_back(Fault::new(
            "GET",
            &format!("/repos/{OWNER}/{REPO}/git/ref/heads/{BRANCH}"),
            404,
            "Not Found",
        ));
        let base = s.refs["main"].clone();
        s.refs.insert(BRANCH.into(), base);
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    stub.with(|s| {
        assert_eq!(s.pulls.len(), 1);
        assert!(s.file(BRANCH, PATH).unwrap().contains("\"v41\""));
    });
}

#[test]
fn github_enterprise_api_url_keeps_its_path() {
    let stub = seeded("v40");
    let mut args = promote_args(&stub, "v41", None);
    args.target.api_url = Some(format!("{}/api/v3/", stub.url));
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| {
        assert!(
            s.log
                .iter()
                .all(|(_, path)| path.starts_with("/api/v3/repos/")),
            "{:?}",
            s.log
        );
        assert_eq!(s.pulls.len(), 1);
    });
}

#[test]
fn a_dropped_connection_on_a_read_is_retried() {
    let stub = seeded("v40");
    stub.with(|s| {
        s.faults.push_back(Fault::new(
            "GET",
            &format!("/repos/{OWNER}/{REPO}/contents/"),
            0,
            "",
        ));
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    stub.with(|s| {
        assert!(s.faults.is_empty());
        assert_eq!(s.pulls.len(), 1);
    });
}

#[test]
fn a_gate_report_for_another_version_is_refused_before_any_write() {
    let stub = seeded("v40");
    let gate = report("v41", true, 0.01);
    let args = promote_args(&stub, "v42", Some(&gate));
    assert_eq!(run_promote_with(&args, &credentials()), 1);
    assert!(writes(&stub).is_empty());
}

/// Status 1: the stub acts on the request and never answers.
fn unanswered(method: &'static str, path: &str) -> Fault {
    Fault::new(method, &format!("/repos/{OWNER}/{REPO}{path}"), 1, "")
}

fn count(stub: &StubGitHub, method: &str, path: &str) -> usize {
    let path = format!("/repos/{OWNER}/{REPO}{path}");
    stub.with(|s| {
        s.log
            .iter()
            .filter(|(m, p)| m == method && p.starts_with(&path))
            .count()
    })
}

#[test]
fn a_read_without_an_answer_times_out_and_is_sent_again() {
    let stub = seeded("v40");
    stub.with(|s| s.faults.push_back(unanswered("GET", "/contents/")));
    let mut args = promote_args(&stub, "v41", None);
    args.target.request_timeout = Some(1);
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    stub.with(|s| {
        assert!(s.faults.is_empty());
        assert_eq!(s.pulls.len(), 1);
    });
}

#[test]
fn a_pull_request_created_without_an_answer_is_not_created_twice() {
    let stub = seeded("v40");
    stub.with(|s| s.faults.push_back(unanswered("POST", "/pulls")));
    let mut args = promote_args(&stub, "v41", None);
    args.target.request_timeout = Some(1);
    assert_eq!(run_promote_with(&args, &credentials()), 1);
    assert_eq!(count(&stub, "POST", "/pulls"), 1, "sent once");
    stub.with(|s| assert_eq!(s.pulls.len(), 1));
    // The next run finds the pull request and adopts it.
    assert_eq!(run_promote_with(&args, &credentials()), 0);
    assert_eq!(count(&stub, "POST", "/pulls"), 1);
    stub.with(|s| assert_eq!(s.pulls.len(), 1));
}

#[test]
fn a_server_error_on_a_create_is_not_retried() {
    // A 502 may come from a gateway after GitHub created the branch.
    let stub = seeded("v40");
    stub.with(|s| {
        s.faults.push_back(Fault::new(
            "POST",
            &format!("/repos/{OWNER}/{REPO}/git/refs"),
            502,
            "Bad Gateway",
        ));
    });
    let args = promote_args(&stub, "v41", None);
    assert_eq!(run_promote_with(&args, &credentials()), 1);
    assert_eq!(count(&stub, "POST", "/git/refs"), 1, "sent once");
    assert_eq!(
        run_promote_with(&args, &credentials()),
        0,
        "a re-run completes"
    );
}

#[test]
fn manifests_over_one_megabyte_are_read_through_the_blob_api() {
    let stub = StubGitHub::start();
    // A large multi-document file: the model is the last document.
    let filler: String = (0..12_000)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata: {{k: \"{i:080}\"}}\n"))
        .collect();
    let big = format!("{filler}---\n{}", manifest("v40"));
    assert!(big.len() > support::LARGE_FILE);
    stub.with(|s| {
        s.commit(
            "main",
            BTreeMap::from([(PATH.to_string(), big.clone())]),
            "initial",
        );
    });
    assert_eq!(
        run_promote_with(&promote_args(&stub, "v41", None), &credentials()),
        0
    );
    stub.with(|s| {
        assert!(s.log.iter().any(|(_, p)| p.contains("/git/blobs/")));
        assert_eq!(
            s.file(BRANCH, PATH).unwrap(),
            big.replace("\"v40\"", "\"v41\"").replace("v40/", "v41/")
        );
    });
}
