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
    /// Where analysis requests (Prometheus, web metrics, interleave counters)
    /// may go, comma-separated: host names, `*.domain` wildcards, IP
    /// addresses or CIDRs, and `in-cluster` (Kubernetes Services). Loopback
    /// needs an explicit entry (`127.0.0.1/32`); link-local and cloud
    /// metadata addresses are refused whatever this says (docs/analysis.md).
    #[arg(
        long,
        env = "MLCTL_ANALYSIS_ALLOW",
        value_delimiter = ',',
        default_value = "in-cluster"
    )]
    pub analysis_allow: Vec<crate::analysis::guard::AllowEntry>,
    /// DNS domain of the cluster's Services (`in-cluster` entries resolve
    /// `<svc>.<ns>.svc.<domain>`).
    #[arg(
        long,
        env = "MLCTL_ANALYSIS_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub analysis_cluster_domain: String,
    /// Upper bound of every analysis request's timeout (a provider's own
    /// `timeout` is clamped to it), e.g. `10s`.
    #[arg(
        long,
        env = "MLCTL_ANALYSIS_TIMEOUT_MAX",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub analysis_timeout_max: std::time::Duration,
    /// Analysis requests to one host at once.
    #[arg(long, env = "MLCTL_ANALYSIS_PER_HOST_CONCURRENCY", default_value_t = 4)]
    pub analysis_per_host_concurrency: u16,
    /// Analysis requests at once, all hosts together.
    #[arg(long, env = "MLCTL_ANALYSIS_CONCURRENCY", default_value_t = 64)]
    pub analysis_concurrency: u16,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = mlctl_crds::common::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
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
    fn analysis_flags_parse_and_default_to_in_cluster() {
        use crate::analysis::guard::AllowEntry;
        let c = Config::parse_from(["mlctl-operator"]);
        assert_eq!(c.analysis_allow, vec![AllowEntry::InCluster]);
        assert_eq!(c.analysis_timeout_max, std::time::Duration::from_secs(10));
        assert_eq!(c.analysis_per_host_concurrency, 4);
        let c = Config::parse_from([
            "mlctl-operator",
            "--analysis-allow=in-cluster,127.0.0.1/32,*.example.com",
            "--analysis-timeout-max=2s",
        ]);
        assert_eq!(c.analysis_allow.len(), 3);
        assert_eq!(c.analysis_timeout_max, std::time::Duration::from_secs(2));
        assert!(
            Config::try_parse_from(["mlctl-operator", "--analysis-allow=10.0.0.0/99"]).is_err()
        );
    }

    #[test]
    fn leader_election_can_be_switched_off() {
        let c = Config::parse_from(["mlctl-operator", "--leader-elect=false"]);
        assert!(!c.leader_elect);
    }
}
