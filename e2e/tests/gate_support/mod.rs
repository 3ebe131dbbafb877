//! The harness shared by the gate and pipeline CLI tests: CRDs, a fresh
//! namespace, the Helm chart's ServiceAccount and RBAC, and one
//! `mlctl-operator` process authenticated as that ServiceAccount (so a
//! missing permission fails the test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use kube::config::Kubeconfig;
use mlctl_e2e::{
    TestNamespace, apply_yaml, client, helm, install_crds, service_account_token, workspace_root,
};

pub const LONG: Duration = Duration::from_secs(120);

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The operator process, killed when dropped.
pub struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CRDs, a namespace, the chart's RBAC and one operator bound by it.
pub async fn setup(prefix: &str) -> (Client, TestNamespace, Operator) {
    let client = client().await;
    install_crds(&client).await;
    let mut ns = TestNamespace::new(&client, prefix).await;
    let out = Command::new(helm())
        .args(["template", "mlctl-operator"])
        .arg(workspace_root().join("charts/mlctl-operator"))
        .args(["--namespace", ns.name()])
        .args(["--set", &format!("watchNamespaces={{{}}}", ns.name())])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"])
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply_yaml(&client, ns.name(), &String::from_utf8_lossy(&out.stdout)).await;
    let token = service_account_token(&client, ns.name(), "mlctl-operator").await;
    let admin = std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set by e2e/run");
    let mut config = Kubeconfig::read_from(PathBuf::from(admin)).expect("read kubeconfig");
    for user in &mut config.auth_infos {
        user.auth_info =
            Some(serde_json::from_value(serde_json::json!({ "token": token })).unwrap());
    }
    let dir = target_dir().join("e2e-gate");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join(format!("{}.kubeconfig", ns.name()));
    std::fs::write(&kubeconfig, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let log = dir.join(format!("{}.log", ns.name()));
    let file = std::fs::File::create(&log).unwrap();
    let binary = std::env::var_os("MLCTL_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/mlctl-operator"));
    assert!(
        binary.is_file(),
        "{} missing: cargo build -p mlctl-operator",
        binary.display()
    );
    let child = Command::new(binary)
        .args(["--namespaces", ns.name(), "--lease-namespace", ns.name()])
        .args(["--identity", "gate", "--log-format", "text"])
        .arg("--metrics-addr=127.0.0.1:0")
        .arg("--storage-initializer-image=ghcr.io/mlctl/storage-initializer:0.1.0")
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info,mlctl_operator=debug")
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start mlctl-operator");
    ns.dump_log_on_failure(log);
    (client, ns, Operator(child))
}

/// A scheduled pipeline (due once a year, on 1 January, so never during a
/// test) with schema version 1, the feature `ctr`, a freshness objective of
/// 1h and no retries. With `fail`, its run pods carry the label that makes
/// the kwok stages fail them (exit code 1, see e2e/stages/README.md); other
/// run pods succeed after 1s.
pub fn pipeline_yaml(name: &str, fail: bool) -> String {
    let (command, pod_metadata) = if fail {
        (
            "false",
            r#", podMetadata: {labels: {"mlctl.io/e2e-fail": "true"}}"#,
        )
    } else {
        ("true", "")
    };
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: {name}
spec:
  trigger:
    schedule: {{cron: "0 0 1 1 *"}}
  engine:
    container: {{image: busybox:1.36, command: ["{command}"]{pod_metadata}}}
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{{name: ctr, dtype: float32}}]
  freshness: {{maxStaleness: 1h}}
  retries: {{backoffLimit: 0}}
"#
    )
}
