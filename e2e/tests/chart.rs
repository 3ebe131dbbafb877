//! The Helm chart: `helm lint` and `helm template` with the built helm, and
//! what the rendered manifests must contain. (Its CRDs are checked against the
//! Rust types by crds/tests/generated.rs; its RBAC is what the operator e2e
//! tests run under.)

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use mlctl_e2e::{helm, require_e2e, workspace_root};
use serde::Deserialize;

fn chart() -> String {
    workspace_root()
        .join("charts/mlctl-operator")
        .display()
        .to_string()
}

fn template(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(helm())
        .args(["template", "mlctl", &chart(), "--namespace", "mlctl-system"])
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objects: &[serde_json::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn helm_lint_passes() {
    require_e2e!();
    let out = Command::new(helm())
        .args(["lint", "--strict", &chart()])
        .output()
        .expect("run helm lint");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn default_values_render_cluster_wide_least_privilege_rbac() {
    require_e2e!();
    let objects = template(&["--include-crds"]);
    let kinds = kinds(&objects);
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    let crds: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        crds,
        ["featurepipelines.mlctl.io", "rankingmodels.mlctl.io"],
        "{crds:?}"
    );
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    let rules = role["rules"].as_array().unwrap();
    for rule in rules {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!verbs.contains(&"*"), "no wildcard verbs: {rule}");
        let resources = rule["resources"].as_array().unwrap();
        assert!(
            !resources.iter().any(|r| r == "*" || r == "secrets"),
            "no wildcard resources or secrets: {rule}"
        );
    }
    // The models themselves are read-only for the operator; only status is written.
    let model_rule = rules
        .iter()
        .find(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "rankingmodels")
        })
        .unwrap();
    assert_eq!(
        model_rule["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );

    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["limits"]["memory"].is_string());
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect=true"), "{args:?}");
    assert!(
        args.contains(&"--storage-initializer-image=ghcr.io/mlctl/mlctl-ranker:0.1.0"),
        "the storage initializer defaults to the mlctl-ranker image at the appVersion: {args:?}"
    );
}

#[test]
fn watch_namespaces_render_namespaced_rbac_only() {
    require_e2e!();
    let objects = template(&[
        "--set",
        "watchNamespaces={search,ads}",
        "--set",
        "replicas=2",
        "--set",
        "logFormat=text",
    ]);
    let kinds = kinds(&objects);
    assert!(
        !kinds
            .iter()
            .any(|k| k == "ClusterRole" || k == "ClusterRoleBinding"),
        "{kinds:?}"
    );
    let role_namespaces: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "Role")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert!(role_namespaces.contains(&"search") && role_namespaces.contains(&"ads"));
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--namespaces=search,ads"), "{args}");
    assert!(args.contains("--log-format=text"), "{args}");
}
