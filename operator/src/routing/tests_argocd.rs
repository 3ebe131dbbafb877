//! The Argo CD example (examples/argocd/application.yaml) ignores exactly what
//! the operator changes on the example routes (examples/argocd/routes/):
//! Argo CD turns each `jqPathExpressions` entry into `del(<expr>)` and runs
//! it on the Git and the live object (argo-cd
//! `util/argo/normalizers/diff_normalizer.go`); the two must then be equal
//! after the operator's patch, and differ after any other edit.
//!
//! Runs the expressions with `jq` (Argo CD embeds gojq; these expressions
//! mean the same in both). Without `jq` the test is skipped loudly, unless
//! `CI` is set, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use mlctl_crds::rankingmodel::HeaderMatch;

use super::tests::apply_ops;
use super::{GatewayApi, Istio, TrafficRouter, header_patch, weight_patch};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/argocd")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Whether `jq` runs; `false` (after saying so) only outside CI.
fn jq_available() -> bool {
    if Command::new("jq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !in_ci,
        "jq is not installed but CI is set: apt-get install jq"
    );
    // The real stderr: libtest captures eprintln! of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED: the Argo CD ignoreDifferences test needs jq (apt-get install jq)\n"
    );
    false
}

/// `del(<expr>)` on `object`, as Argo CD's diff normalizer does.
fn normalize(object: &Value, expr: &str) -> Value {
    let mut child = Command::new("jq")
        .args(["-c", &format!("del({expr})")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jq del({expr}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The jqPathExpressions of the Application's ignoreDifferences for `kind`.
fn ignored(kind: &str) -> Vec<String> {
    let app = yaml(&examples().join("application.yaml"));
    let entries = app["spec"]["ignoreDifferences"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no ignoreDifferences entry for {kind}"));
    entry["jqPathExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn same_after_ignoring(git: &Value, live: &Value, exprs: &[String]) -> bool {
    let (mut g, mut l) = (git.clone(), live.clone());
    for e in exprs {
        g = normalize(&g, e);
        l = normalize(&l, e);
    }
    g == l
}

/// Walks the canary through its weights on the Git object with the
/// operator's own patches; at every step the Application sees no drift, and
/// an edit the operator would never make is still drift.
fn check(router: &dyn TrafficRouter, file: &str, edit: impl Fn(&mut Value)) {
    let git = yaml(&examples().join("routes").join(file));
    let exprs = ignored(router.kind());
    let mut live = git.clone();
    for weight in [10, 50, 100, 0] {
        let ops = weight_patch(
            router,
            &live,
            "product-ranker-stable",
            "product-ranker-canary",
            weight,
        )
        .unwrap();
        assert!(!ops.is_empty(), "weight {weight} changes the route");
        live = apply_ops(&live, &ops).unwrap();
        if weight != 0 {
            assert_ne!(live, git);
        }
        assert!(
            same_after_ignoring(&git, &live, &exprs),
            "{file}: at weight {weight} Argo CD would see drift:\ngit:  {git}\nlive: {live}"
        );
    }
    let mut edited = live.clone();
    edit(&mut edited);
    assert!(
        !same_after_ignoring(&git, &edited, &exprs),
        "{file}: the expressions hide more than the model's weights"
    );
}

/// A canary at 10% with header routes that come, change and go (the
/// operator's own patches, on the Git object): the Application sees no
/// drift at any point, and an edit of the user's rule during the header
/// route is still drift.
fn check_header_route(router: &dyn TrafficRouter, file: &str, edit: impl Fn(&mut Value)) {
    let git = yaml(&examples().join("routes").join(file));
    let exprs = ignored(router.kind());
    let header = |exact: Option<&str>, regex: Option<&str>| HeaderMatch {
        name: "x-ranker".into(),
        exact: exact.map(str::to_string),
        regex: regex.map(str::to_string),
    };
    let ops = weight_patch(
        router,
        &git,
        "product-ranker-stable",
        "product-ranker-canary",
        10,
    )
    .unwrap();
    let mut live = apply_ops(&git, &ops).unwrap();
    for step in [
        Some(vec![header(Some("canary"), None)]),
        Some(vec![header(None, Some("canary|beta"))]),
        None,
    ] {
        let p = header_patch(router, &live, "product-ranker", step.as_deref()).unwrap();
        assert!(!p.ops.is_empty(), "{file}: {step:?} changes the route");
        live = apply_ops(&live, &p.ops).unwrap();
        assert!(
            same_after_ignoring(&git, &live, &exprs),
            "{file}: with header route {step:?} Argo CD would see drift:\ngit:  {git}\nlive: {live}"
        );
        if step.is_some() {
            let mut edited = live.clone();
            edit(&mut edited);
            assert!(
                !same_after_ignoring(&git, &edited, &exprs),
                "{file}: the expressions hide more than the operator's header rule"
            );
        }
    }
}

#[test]
fn argocd_ignores_the_header_rule_the_operator_adds() {
    if !jq_available() {
        return;
    }
    // The header rule sits last on the HTTPRoute and first on the
    // VirtualService: the user's rules are found at their index + 1 there.
    check_header_route(
        &GatewayApi {
            route: "product-ranker".into(),
        },
        "httproute.yaml",
        |r| {
            r["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("/rank2");
        },
    );
    check_header_route(
        &Istio {
            name: "product-ranker".into(),
            routes: vec!["primary".into()],
        },
        "virtualservice.yaml",
        |vs| {
            vs["spec"]["http"][1]["retries"]["attempts"] = json!(5);
        },
    );
}

#[test]
fn argocd_ignores_only_the_weights_the_operator_sets() {
    if !jq_available() {
        return;
    }
    check(
        &GatewayApi {
            route: "product-ranker".into(),
        },
        "httproute.yaml",
        |r| {
            // The filter of the model's rule, and its stable backend's port.
            r["spec"]["rules"][0]["filters"][0]["requestHeaderModifier"]["set"][0]["value"] =
                json!("ads");
            r["spec"]["rules"][0]["backendRefs"][0]["port"] = json!(8080);
        },
    );
    check(
        &Istio {
            name: "product-ranker".into(),
            routes: vec!["primary".into()],
        },
        "virtualservice.yaml",
        |vs| {
            vs["spec"]["http"][0]["retries"]["attempts"] = json!(5);
        },
    );
}
