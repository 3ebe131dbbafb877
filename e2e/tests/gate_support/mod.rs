//! The harness shared by the gate and pipeline CLI tests: CRDs, a fresh
//! namespace, the Helm chart's ServiceAccount and RBAC, and one
//! `mlctl-operator` process authenticated as that ServiceAccount (so a
//! missing permission fails the test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::Duration;

use kube::Client;
use mlctl_e2e::TestNamespace;

pub const LONG: Duration = Duration::from_secs(120);

#[allow(unused_imports)] // each test file that includes this module uses a subset
pub use mlctl_e2e::operator::{Operator, target_dir};

/// CRDs, a namespace, the chart's RBAC and one operator bound by it.
pub async fn setup(prefix: &str) -> (Client, TestNamespace, Operator) {
    let (client, ns, operator, _) = mlctl_e2e::operator::setup(prefix).await;
    (client, ns, operator)
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
