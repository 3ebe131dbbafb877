//! Command-line and environment configuration of the operator.

use std::net::SocketAddr;

use crate::telemetry::LogFormat;

/// The mlctl operator: reconciles RankingModels into serving Deployments,
/// Services, autoscalers and rollouts.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mlctl-operator", version, about)]
pub struct Config {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(
        long,
        env = "MLCTL_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "MLCTL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "MLCTL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Elect a leader through a Lease before writing anything (needed with
    /// more than one replica).
    #[arg(long, env = "MLCTL_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "MLCTL_LEASE_NAME", default_value = "mlctl-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the pod's namespace, or the
    /// kubeconfig's default namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, env = "MLCTL_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals (and between attempts of a standby).
    #[arg(long, env = "MLCTL_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
    /// Identity in the Lease (default: the pod name, or host and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Image of the init container that downloads and verifies model artifacts
    /// (run with the argument `fetch`; default: this release's mlctl-ranker image).
    #[arg(
        long,
        env = "MLCTL_STORAGE_INITIALIZER_IMAGE",
        default_value = mlctl_crds::images::DEFAULT_RANKER_IMAGE
    )]
    pub storage_initializer_image: String,
    /// Reconciles running at once.
    #[arg(long, env = "MLCTL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

impl Config {
    /// The namespaces to watch, without empty entries; empty means all.
    pub fn watch_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// This process's identity in the Lease.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "mlctl-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn namespaces_are_split_and_trimmed() {
        let c = Config::parse_from(["mlctl-operator", "--namespaces", "a, b,,c"]);
        assert_eq!(c.watch_namespaces(), vec!["a", "b", "c"]);
        let all = Config::parse_from(["mlctl-operator"]);
        assert!(all.watch_namespaces().is_empty());
    }

    #[test]
    fn leader_election_can_be_switched_off() {
        let c = Config::parse_from(["mlctl-operator", "--leader-elect=false"]);
        assert!(!c.leader_elect);
    }
}
