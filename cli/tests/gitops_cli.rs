//! `mlctl promote --gitops` / `mlctl rollback --gitops` through the built binary: the
//! flags as wired into the CLI, the exit-code contract (0 done, 1 error, 2 usage,
//! 10 gate failed), --git mode against a real local bare repository, and that a
//! token from the environment never reaches the output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory for one test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mlctl-gitops-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mlctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlctl"));
    command
        .args(args)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// `mlctl promote --gitops` of model `m` to v2 in acme/gitops, plus `extra` flags.
fn promote_to_github(extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "promote",
        "--gitops",
        "--repo",
        "acme/gitops",
        "--path",
        "m.yaml",
        "--model",
        "m",
        "--version",
        "v2",
        "--uri",
        "s3://x",
    ];
    args.extend_from_slice(extra);
    mlctl(&args, env)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const MANIFEST: &str = "apiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata:\n  name: search-ranker  # prod\nspec:\n  model:\n    version: \"v40\"\n    uri: s3://models/v40/model.txt\n    format: lightgbm\n";

#[test]
fn help_lists_the_gitops_flags() {
    let o = mlctl(&["promote", "--help"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    for flag in [
        "--gitops",
        "--repo",
        "--git",
        "--path",
        "--model",
        "--version",
        "--uri",
        "--sha256",
        "--gate-report",
        "--dry-run",
    ] {
        assert!(text(&o).contains(flag), "missing {flag} in\n{}", text(&o));
    }
    let o = mlctl(&["rollback", "--help"], &[]);
    assert!(
        o.status.success() && text(&o).contains("--to"),
        "{}",
        text(&o)
    );
}

#[test]
fn missing_flags_exit_2_naming_the_flag() {
    let o = mlctl(
        &[
            "promote",
            "--gitops",
            "--repo",
            "acme/gitops",
            "--path",
            "m.yaml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--model"), "{}", text(&o));
    let o = mlctl(
        &[
            "promote",
            "--gitops",
            "--model",
            "m",
            "--path",
            "m.yaml",
            "--version",
            "v1",
            "--uri",
            "s3://x",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--repo"), "{}", text(&o));
}

#[test]
fn a_failed_gate_exits_10() {
    let dir = Scratch::new("gate");
    let report = dir.0.join("report.json");
    std::fs::write(
        &report,
        r#"{"subject": {"model": "m", "version": "v2"}, "queries": 3, "metrics": {}, "comparison": {}, "pass": false}"#,
    )
    .unwrap();
    let o = promote_to_github(
        &["--gate-report", report.to_str().unwrap()],
        &[("GITHUB_TOKEN", "ghp_unused")],
    );
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
}

#[test]
fn the_token_never_reaches_the_output() {
    let o = promote_to_github(
        &["--api-url", "http://127.0.0.1:1"],
        &[("GITHUB_TOKEN", "ghp_SECRET_must_not_leak")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!text(&o).contains("SECRET_must_not_leak"), "{}", text(&o));
}

#[test]
fn a_token_in_the_git_url_never_reaches_the_output() {
    // Nothing listens on port 1: the clone fails at once, and its error
    // quotes the git command line with the URL.
    for verb in [
        &["promote", "--gitops", "--version", "v2", "--uri", "s3://x"][..],
        &["rollback", "--gitops", "--to", "v1"],
    ] {
        let mut args = verb.to_vec();
        args.extend([
            "--git",
            "https://x-access-token:ghs_SECRET_must_not_leak@127.0.0.1:1/gitops.git",
            "--path",
            "m.yaml",
            "--model",
            "m",
        ]);
        let o = mlctl(&args, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(!text(&o).contains("SECRET_must_not_leak"), "{}", text(&o));
        assert!(
            text(&o).contains("https://***@127.0.0.1:1/gitops.git"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn git_mode_pushes_the_branch_and_reruns_cleanly() {
    let dir = Scratch::new("git");
    let bare = dir.0.join("gitops.git");
    let work = dir.0.join("work");
    git(
        &dir.0,
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
        &dir.0,
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("m.yaml"), MANIFEST).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "initial"]);
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    let args = [
        "promote",
        "--gitops",
        "--git",
        bare.to_str().unwrap(),
        "--path",
        "m.yaml",
        "--model",
        "search-ranker",
        "--version",
        "2026-12-01.1",
        "--uri",
        "s3://models/2026-12-01.1/model.txt",
    ];
    let o = mlctl(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pushed branch mlctl/prod/search-ranker"));
    let pushed = git(&bare, &["show", "mlctl/prod/search-ranker:m.yaml"]);
    assert_eq!(
        pushed,
        MANIFEST
            .replace("\"v40\"", "\"2026-12-01.1\"")
            .replace("v40/", "2026-12-01.1/")
    );
    let o = mlctl(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("already carries this change"),
        "{}",
        text(&o)
    );
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let o = mlctl(&dry, &[]);
    assert_eq!(o.status.code(), Some(0));
    let o = mlctl(
        &[
            "rollback",
            "--gitops",
            "--git",
            bare.to_str().unwrap(),
            "--path",
            "m.yaml",
            "--model",
            "search-ranker",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "nothing merged yet to roll back to: {}",
        text(&o)
    );
}
