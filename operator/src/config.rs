//! Command-line and environment configuration of the operator.

use std::net::SocketAddr;
use std::time::Duration;

use mlctl_crds::common::INSTANCE_ID_LABEL;

use crate::leader::{LeaseTiming, TimingError};
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
    /// Seconds after the start of its last successful renewal during which
    /// the leader may write; it stops writing then, before any standby can
    /// see the lease expire. Must be less than the lease duration and more
    /// than the retry period (default: two thirds of the lease duration).
    #[arg(long, env = "MLCTL_LEASE_RENEW_DEADLINE_SECONDS")]
    pub lease_renew_deadline_seconds: Option<u64>,
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
    /// API requests per second per class (status writes, child writes and
    /// reads; Events a quarter of it); watches are not limited.
    #[arg(long, env = "MLCTL_KUBE_API_QPS", default_value_t = 100.0)]
    pub kube_api_qps: f64,
    /// Requests a class may send at once before the rate applies.
    #[arg(long, env = "MLCTL_KUBE_API_BURST", default_value_t = 200)]
    pub kube_api_burst: u32,
    /// Manage only RankingModels and FeaturePipelines labelled
    /// `mlctl.io/instance-id=<ID>`, with a Lease of its own, so that several
    /// installations share a cluster. Without it, only objects without that
    /// label are managed.
    #[arg(long, env = "MLCTL_INSTANCE_ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,
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
    /// Where notification webhooks may be, in the syntax of
    /// `--analysis-allow` (default: the same list). Slack needs
    /// `hooks.slack.com` (docs/notifications.md).
    #[arg(long, env = "MLCTL_NOTIFICATION_ALLOW", value_delimiter = ',')]
    pub notification_allow: Option<Vec<crate::analysis::guard::AllowEntry>>,
    /// Attempts at one notification, the first included (connection errors,
    /// timeouts, 429 and 5xx are retried with exponential backoff).
    #[arg(long, env = "MLCTL_NOTIFICATION_ATTEMPTS", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub notification_attempts: u32,
    /// No retry of a notification starts later than this after its first
    /// attempt, e.g. `5m`.
    #[arg(
        long,
        env = "MLCTL_NOTIFICATION_RETRY_WINDOW",
        default_value = "5m",
        value_parser = parse_timeout
    )]
    pub notification_retry_window: std::time::Duration,
    /// Notification requests in flight at once (a slow webhook holds one;
    /// one waiting to retry holds none).
    #[arg(long, env = "MLCTL_NOTIFICATION_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub notification_concurrency: u16,
}

/// An instance id must be a valid label value.
fn parse_instance_id(value: &str) -> Result<String, String> {
    let valid_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let alnum_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !value.is_empty() && value.len() <= 63 && valid_chars && alnum_ends {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a valid label value (at most 63 characters: letters, digits, \
             '-', '_' and '.', starting and ending with a letter or digit)"
        ))
    }
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

    /// The election timing, checked: lease > renew deadline > retry period.
    pub fn lease_timing(&self) -> Result<LeaseTiming, TimingError> {
        let lease = Duration::from_secs(self.lease_duration_seconds);
        let renew = self
            .lease_renew_deadline_seconds
            .map_or(lease * 2 / 3, Duration::from_secs);
        LeaseTiming::new(lease, renew, Duration::from_secs(self.lease_retry_seconds))
    }

    /// The Lease name: with an instance id, that id is part of it, so that
    /// two installations never share a lease.
    pub fn effective_lease_name(&self) -> String {
        match &self.instance_id {
            Some(id) => format!("{}-{id}", self.lease_name),
            None => self.lease_name.clone(),
        }
    }

    /// Label selector of the RankingModels and FeaturePipelines this
    /// installation manages.
    pub fn instance_selector(&self) -> String {
        match &self.instance_id {
            Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
            None => format!("!{INSTANCE_ID_LABEL}"),
        }
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
    fn notification_flags_default_to_the_analysis_allow_list() {
        use crate::analysis::guard::AllowEntry;
        let c = Config::parse_from(["mlctl-operator", "--analysis-allow=127.0.0.1/32"]);
        assert_eq!(c.notification_allow, None);
        let settings = crate::notify::Settings::from(&c);
        assert_eq!(settings.retry.attempts, 6);
        assert_eq!(settings.retry.window, Duration::from_secs(300));
        assert_eq!(settings.concurrency, 8);
        assert_eq!(
            crate::notify::allow_entries(&c),
            vec!["127.0.0.1/32".parse::<AllowEntry>().expect("valid")]
        );
        let c = Config::parse_from([
            "mlctl-operator",
            "--notification-allow=hooks.slack.com,in-cluster",
            "--notification-attempts=3",
            "--notification-retry-window=30s",
        ]);
        assert_eq!(crate::notify::allow_entries(&c).len(), 2);
        let settings = crate::notify::Settings::from(&c);
        assert_eq!(settings.retry.attempts, 3);
        assert_eq!(settings.retry.window, Duration::from_secs(30));
        for bad in [
            "--notification-attempts=0",
            "--notification-concurrency=0",
            "--notification-allow=http://x",
        ] {
            assert!(
                Config::try_parse_from(["mlctl-operator", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn leader_election_can_be_switched_off() {
        let c = Config::parse_from(["mlctl-operator", "--leader-elect=false"]);
        assert!(!c.leader_elect);
    }

    #[test]
    fn the_renew_deadline_defaults_to_two_thirds_of_the_lease() {
        let defaults = Config::parse_from(["mlctl-operator"])
            .lease_timing()
            .expect("valid");
        assert_eq!(defaults.lease_duration(), Duration::from_secs(15));
        assert_eq!(defaults.renew_deadline(), Duration::from_secs(10));
        assert_eq!(defaults.retry_period(), Duration::from_secs(2));
        // The e2e suite's short leases stay valid without a renew deadline.
        let short = Config::parse_from([
            "mlctl-operator",
            "--lease-duration-seconds=4",
            "--lease-retry-seconds=1",
        ])
        .lease_timing()
        .expect("valid");
        assert!(short.renew_deadline() > Duration::from_secs(1));
        assert!(short.renew_deadline() < Duration::from_secs(4));
    }

    #[test]
    fn an_impossible_timing_is_refused_with_the_fix() {
        let c = Config::parse_from([
            "mlctl-operator",
            "--lease-duration-seconds=10",
            "--lease-renew-deadline-seconds=10",
        ]);
        let error = c
            .lease_timing()
            .expect_err("renew deadline = lease")
            .to_string();
        assert!(error.contains("--lease-renew-deadline-seconds"), "{error}");
    }

    #[test]
    fn the_instance_id_selects_objects_and_names_the_lease() {
        let none = Config::parse_from(["mlctl-operator"]);
        assert_eq!(none.instance_selector(), "!mlctl.io/instance-id");
        assert_eq!(none.effective_lease_name(), "mlctl-operator");
        let blue = Config::parse_from(["mlctl-operator", "--instance-id", "blue"]);
        assert_eq!(blue.instance_selector(), "mlctl.io/instance-id=blue");
        assert_eq!(blue.effective_lease_name(), "mlctl-operator-blue");
        for bad in ["", "-x", "a/b", &"x".repeat(64)] {
            assert!(
                Config::try_parse_from(["mlctl-operator", "--instance-id", bad]).is_err(),
                "{bad:?}"
            );
        }
    }
}
