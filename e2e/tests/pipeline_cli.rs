//! `mlctl pipeline run|backfill|status` against the real local control plane
//! and the operator's FeaturePipeline controller: the built `mlctl` binary is
//! run as a CI job would run it, and its exit codes and the runs it causes
//! are checked.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gate_support;

use std::path::PathBuf;
use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mlctl_e2e::{TestNamespace, apply_yaml, require_e2e};

use gate_support::{pipeline_yaml, setup, target_dir};

fn mlctl_binary() -> PathBuf {
    let path = std::env::var_os("MLCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/mlctl"));
    assert!(
        path.is_file(),
        "{} does not exist: build it first (`cargo build -p mlctl`; make test does)",
        path.display()
    );
    path
}

/// Runs `mlctl pipeline ARGS -n NS` with the admin kubeconfig.
fn mlctl(ns: &TestNamespace, args: &[&str]) -> Output {
    let out = Command::new(mlctl_binary())
        .arg("pipeline")
        .args(args)
        .args(["-n", ns.name()])
        .output()
        .expect("run mlctl");
    eprintln!(
        "mlctl pipeline {}: exit {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn jobs(ns: &TestNamespace, selector: &str) -> Vec<Job> {
    let api: Api<Job> = ns.api();
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn run_wait_exits_0_on_success_and_10_on_failure_and_status_shows_fresh() {
    require_e2e!();
    let (client, ns, _operator) = setup("pipe-run").await;
    apply_yaml(&client, ns.name(), &pipeline_yaml("good", false)).await;
    apply_yaml(&client, ns.name(), &pipeline_yaml("bad", true)).await;

    let out = mlctl(&ns, &["run", "good", "--wait", "--timeout", "3m"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let manual = jobs(&ns, "mlctl.io/pipeline=good,mlctl.io/trigger=manual").await;
    assert_eq!(manual.len(), 1, "one manual Job");
    let job = manual[0].name_any();
    assert!(stdout.contains(&format!("{job} Succeeded")), "{stdout}");
    assert!(manual[0].annotations().contains_key("mlctl.io/request"));

    let out = mlctl(&ns, &["run", "bad", "--wait", "--timeout", "3m"]);
    assert_eq!(out.status.code(), Some(10), "a failed run exits 10");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Failed"));

    let out = mlctl(&ns, &["status", "good"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let fresh = text
        .lines()
        .find(|l| l.trim_start().starts_with("Fresh:"))
        .unwrap_or_default();
    assert!(fresh.contains("True"), "{text}");
    assert!(text.contains(&job), "the last run is shown: {text}");

    let out = mlctl(&ns, &["status", "good", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(object["metadata"]["name"], "good");

    let out = mlctl(&ns, &["status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    ns.finish().await;
}

#[tokio::test]
async fn backfill_runs_each_interval_once() {
    require_e2e!();
    let (client, ns, _operator) = setup("pipe-backfill").await;
    apply_yaml(&client, ns.name(), &pipeline_yaml("hist", false)).await;
    let args = [
        "backfill",
        "hist",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-01T03:00:00Z",
        "--step",
        "1h",
        "--max-parallel",
        "2",
        "--wait",
        "--timeout",
        "4m",
    ];
    let out = mlctl(&ns, &args);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("done,"),
        "progress on stderr"
    );
    let selector = "mlctl.io/pipeline=hist,mlctl.io/trigger=backfill";
    let mut starts: Vec<String> = jobs(&ns, selector)
        .await
        .iter()
        .filter_map(|j| j.labels().get("mlctl.io/interval-start").cloned())
        .collect();
    starts.sort();
    // 2026-11-01T00:00Z, 01:00Z and 02:00Z in Unix seconds.
    assert_eq!(starts, vec!["1793491200", "1793494800", "1793498400"]);

    let out = mlctl(&ns, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second identical backfill succeeds"
    );
    assert_eq!(jobs(&ns, selector).await.len(), 3, "and starts no new run");

    // Usage errors exit 2 before touching the cluster.
    let out = mlctl(
        &ns,
        &[
            "backfill",
            "hist",
            "--from",
            "2026-11-02T00:00:00Z",
            "--to",
            "2026-11-01T00:00:00Z",
            "--step",
            "1h",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
    ns.finish().await;
}
