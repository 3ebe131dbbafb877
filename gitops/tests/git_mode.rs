//! `--git` mode against real local bare repositories (git CLI), in temporary directories.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mlctl_gitops::cli::{
    Credentials, PromoteArgs, RollbackArgs, TargetArgs, run_promote_with, run_rollback_with,
};

const PATH: &str = "deploy/prod/search-ranker.yaml";
const BRANCH: &str = "mlctl/prod/search-ranker";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@localhost",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        panic!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).unwrap()
}

/// CRLF on purpose: the pushed file must keep it byte for byte.
fn manifest(version: &str) -> String {
    format!(
        "apiVersion: mlctl.io/v1alpha1\r\nkind: RankingModel\r\nmetadata:\r\n  name: search-ranker # prod\r\nspec:\r\n  model:\r\n    version: '{version}'\r\n    uri: s3://models/search-ranker/{version}/model.txt\r\n"
    )
}

struct Remote {
    _tmp: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Remote {
    fn new(version: &str) -> Remote {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("gitops.git");
        let work = tmp.path().join("work");
        git(
            tmp.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "-b",
                "main",
                bare.to_str().unwrap(),
            ],
        );
        git(
            tmp.path(),
            &[
                "clone",
                "--quiet",
                bare.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        std::fs::create_dir_all(work.join("deploy/prod")).unwrap();
        std::fs::write(work.join(PATH), manifest(version)).unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "initial"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
        Remote {
            _tmp: tmp,
            bare,
            work,
        }
    }

    fn show(&self, rev: &str) -> String {
        git(&self.bare, &["show", &format!("{rev}:{PATH}")])
    }

    fn head(&self, rev: &str) -> String {
        git(&self.bare, &["rev-parse", rev]).trim().to_string()
    }

    /// Merges the mlctl branch into main, as a merge request would.
    fn merge_branch(&self) {
        git(&self.work, &["fetch", "--quiet", "origin"]);
        git(&self.work, &["checkout", "--quiet", "main"]);
        git(&self.work, &["reset", "--quiet", "--hard", "origin/main"]);
        git(
            &self.work,
            &[
                "merge",
                "--quiet",
                "--no-ff",
                "-m",
                "merge",
                &format!("origin/{BRANCH}"),
            ],
        );
        git(&self.work, &["push", "--quiet", "origin", "main"]);
    }

    fn target(&self) -> TargetArgs {
        TargetArgs {
            git: Some(self.bare.to_string_lossy().into_owned()),
            path: Some(PATH.into()),
            model: Some("search-ranker".into()),
            ..TargetArgs::default()
        }
    }

    fn promote(&self, version: &str) -> i32 {
        let args = PromoteArgs {
            target: self.target(),
            model_version: Some(version.into()),
            uri: Some(format!("s3://models/search-ranker/{version}/model.txt")),
            ..PromoteArgs::default()
        };
        run_promote_with(&args, &Credentials::default())
    }
}

#[test]
fn promotion_pushes_a_branch_with_only_the_values_changed() {
    let remote = Remote::new("v40");
    assert_eq!(remote.promote("v41"), 0);
    assert_eq!(remote.show(BRANCH), manifest("v41"));
    assert_eq!(remote.show("main"), manifest("v40"));
    let message = git(&remote.bare, &["log", "-1", "--format=%B", BRANCH]);
    assert!(
        message.starts_with("search-ranker: promote v40 → v41 (prod)"),
        "{message}"
    );
    assert!(message.contains("Mlctl-Record: {"), "{message}");
    // Re-running pushes nothing new.
    let head = remote.head(BRANCH);
    assert_eq!(remote.promote("v41"), 0);
    assert_eq!(remote.head(BRANCH), head);
    // A newer version goes on top of the same branch (no force push).
    assert_eq!(remote.promote("v42"), 0);
    assert_eq!(remote.show(BRANCH), manifest("v42"));
    assert_eq!(
        git(&remote.bare, &["rev-parse", &format!("{BRANCH}~1")]).trim(),
        head
    );
}

#[test]
fn merged_then_rolled_back_by_hand_is_not_reapplied() {
    let remote = Remote::new("v40");
    assert_eq!(remote.promote("v41"), 0);
    remote.merge_branch();
    assert_eq!(remote.show("main"), manifest("v41"));
    assert_eq!(remote.promote("v41"), 0, "already promoted");
    std::fs::write(remote.work.join(PATH), manifest("v40")).unwrap();
    git(
        &remote.work,
        &["commit", "--quiet", "-am", "manual rollback"],
    );
    git(&remote.work, &["push", "--quiet", "origin", "main"]);
    let head = remote.head(BRANCH);
    assert_eq!(remote.promote("v41"), 0);
    assert_eq!(
        remote.head(BRANCH),
        head,
        "the rolled-back version was pushed again"
    );
}

#[test]
fn rollback_pushes_the_previous_passing_version() {
    let remote = Remote::new("v40");
    for version in ["v41", "v42"] {
        assert_eq!(remote.promote(version), 0);
        remote.merge_branch();
    }
    let args = RollbackArgs {
        target: remote.target(),
        ..RollbackArgs::default()
    };
    assert_eq!(run_rollback_with(&args, None, &Credentials::default()), 0);
    assert_eq!(remote.show(BRANCH), manifest("v41"));
    let message = git(&remote.bare, &["log", "-1", "--format=%B", BRANCH]);
    assert!(
        message.starts_with("search-ranker: roll back v42 → v41 (prod)"),
        "{message}"
    );
    assert_eq!(
        run_rollback_with(&args, Some("v99"), &Credentials::default()),
        1
    );
}

#[test]
fn dry_run_and_errors() {
    let remote = Remote::new("v40");
    let mut args = PromoteArgs {
        target: remote.target(),
        model_version: Some("v41".into()),
        uri: Some("s3://x".into()),
        ..PromoteArgs::default()
    };
    args.target.dry_run = true;
    assert_eq!(run_promote_with(&args, &Credentials::default()), 0);
    assert!(
        git(&remote.bare, &["branch", "--list", BRANCH])
            .trim()
            .is_empty()
    );
    args.target.dry_run = false;
    args.target.git = Some("/nonexistent/repo.git".into());
    assert_eq!(run_promote_with(&args, &Credentials::default()), 1);
}
