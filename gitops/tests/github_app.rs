//! GitHub App authentication (JWT → installation token, minted by octocrab) and the check
//! run carrying the gate report, against the in-memory GitHub stub. The App key is
//! generated for the test with openssl.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;

use mlctl_gitops::cli::{Credentials, PromoteArgs, TargetArgs, run_promote_with};
use serde_json::json;
use support::{INSTALLATION_TOKEN, OWNER, REPO, StubGitHub};

const PATH: &str = "m.yaml";

fn rsa_key(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let key = dir.join("app.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        return Some(key);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("openssl is needed to generate the test App key (apt-get install openssl)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED: GitHub App test needs the openssl CLI\n"
    );
    None
}

#[test]
fn app_installation_token_is_used_and_the_check_run_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(key) = rsa_key(dir.path()) else {
        return;
    };
    let stub = StubGitHub::start();
    stub.with(|s| {
        let manifest = "kind: RankingModel\nmetadata:\n  name: m\nspec:\n  model:\n    version: v1\n    uri: s3://b/v1\n";
        s.commit("main", BTreeMap::from([(PATH.to_string(), manifest.to_string())]), "initial");
    });
    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        json!({"subject": {"model": "m", "version": "v2"}, "queries": 10, "comparison": {}, "pass": true}).to_string(),
    )
    .unwrap();
    let args = PromoteArgs {
        target: TargetArgs {
            repo: Some(format!("{OWNER}/{REPO}")),
            path: Some(PATH.into()),
            model: Some("m".into()),
            api_url: Some(stub.url.clone()),
            app_id: Some(1),
            app_key: Some(key),
            ..TargetArgs::default()
        },
        model_version: Some("v2".into()),
        uri: Some("s3://b/v2".into()),
        gate_report: Some(report),
        ..PromoteArgs::default()
    };
    assert_eq!(run_promote_with(&args, &Credentials::default()), 0);
    stub.with(|s| {
        // JWT to find the installation, JWT to mint the token, then the token only.
        let jwt = |h: &str| {
            h.strip_prefix("Bearer ")
                .is_some_and(|t| t.split('.').count() == 3)
        };
        assert!(jwt(&s.auth_headers[0]), "{:?}", s.auth_headers[0]);
        assert_eq!(s.log[0].1, format!("/repos/{OWNER}/{REPO}/installation"));
        assert!(
            s.log[1].1.ends_with("/app/installations/42/access_tokens"),
            "{:?}",
            s.log[1]
        );
        assert!(
            s.auth_headers[2..]
                .iter()
                .all(|h| *h == format!("Bearer {INSTALLATION_TOKEN}"))
        );
        assert_eq!(s.check_runs.len(), 1);
        let run = &s.check_runs[0];
        assert_eq!(
            (run.name.as_str(), run.conclusion.as_str()),
            ("mlctl/gate/prod", "success")
        );
        assert_eq!(run.head_sha, s.refs["mlctl/prod/m"]);
        assert!(run.summary.contains("Gate passed"));
    });
    let writes = stub.with(|s| {
        s.writes()
            .into_iter()
            .filter(|(_, p)| !p.contains("access_tokens"))
            .count()
    });
    assert_eq!(run_promote_with(&args, &Credentials::default()), 0);
    let again = stub.with(|s| {
        s.writes()
            .into_iter()
            .filter(|(_, p)| !p.contains("access_tokens"))
            .count()
    });
    assert_eq!(again, writes, "the re-run wrote something");
}
