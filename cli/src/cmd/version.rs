//! `mlctl version`: the client's version, and the operator's when a cluster
//! is reachable (the `app.kubernetes.io/version` label the chart puts on the
//! operator's Deployment).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;

use crate::exit;
use crate::kube::{CliError, DEPLOYMENT, KubeArgs, Target};

/// The label selector of the chart's operator Deployment.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=mlctl-operator";

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print only the client version; do not contact the cluster.
    #[arg(long)]
    client: bool,
    /// Searches all namespaces for the operator unless -n is given.
    #[command(flatten)]
    kube: KubeArgs,
}

pub async fn run(args: &VersionArgs) -> u8 {
    println!("client: mlctl {}", env!("CARGO_PKG_VERSION"));
    if args.client {
        return exit::SUCCESS;
    }
    let line = match tokio::time::timeout(Duration::from_secs(10), operator(&args.kube)).await {
        Ok(Ok(line)) => line,
        Ok(Err(err)) => format!("operator: unknown: {err}"),
        Err(_) => "operator: unknown: the cluster did not answer within 10s".to_string(),
    };
    println!("{}", mlctl_gitops::terminal::escape_controls(&line));
    // The client part is what this command promises; the operator line is
    // information, so a missing operator or cluster is not an error.
    exit::SUCCESS
}

async fn operator(kube: &KubeArgs) -> Result<String, CliError> {
    let (client, ns) = kube.client().await?;
    let scope = kube.namespace.as_ref().map(|_| ns.as_str());
    let api: Api<Deployment> = match scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let target = Target {
        verb: "list",
        resource: DEPLOYMENT,
        name: None,
        namespace: scope,
    };
    let list = api
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .map_err(|e| CliError::from_kube(e, &target))?;
    Ok(operator_line(&list.items))
}

/// One line about the operator Deployments found.
pub fn operator_line(deployments: &[Deployment]) -> String {
    if deployments.is_empty() {
        return format!(
            "operator: not found (no Deployment labelled {OPERATOR_SELECTOR}); install it with helm install mlctl-operator charts/mlctl-operator"
        );
    }
    deployments
        .iter()
        .map(|d| {
            let version = d
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/version"))
                .map(String::as_str)
                .unwrap_or("unknown (no app.kubernetes.io/version label)");
            format!(
                "operator: {version} (deployment {}/{})",
                d.metadata.namespace.as_deref().unwrap_or(""),
                d.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_line_reads_the_chart_label_or_says_it_is_missing() {
        assert!(operator_line(&[]).starts_with("operator: not found"));
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mlctl-operator", "namespace": "mlctl-system",
                "labels": {"app.kubernetes.io/version": "0.1.0"}}
        }))
        .unwrap();
        assert_eq!(
            operator_line(&[d]),
            "operator: 0.1.0 (deployment mlctl-system/mlctl-operator)"
        );
    }
}
