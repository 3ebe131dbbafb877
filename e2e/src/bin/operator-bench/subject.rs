//! The three subjects measured side by side, and how each controller process
//! is started: out of the cluster, against the admin kubeconfig, watching one
//! namespace, without leader election, its metrics on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject};

use crate::converge;
use crate::objects::{self, Template};
use crate::process::Proc;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// The children created directly: the control plane's own speed.
    Floor,
    /// mlctl-operator reconciling RankingModels.
    Mlctl,
    /// The Argo Rollouts controller reconciling Rollouts.
    Argo,
}

impl Subject {
    /// The name used in flags, tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Floor => "floor",
            Subject::Mlctl => "mlctl",
            Subject::Argo => "argo-rollouts",
        }
    }

    /// The subject a `--subjects` entry names.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "floor" => Ok(Subject::Floor),
            "mlctl" => Ok(Subject::Mlctl),
            "argo-rollouts" | "argo" => Ok(Subject::Argo),
            _ => Err(format!("unknown subject {s} (floor, mlctl, argo-rollouts)")),
        }
    }

    /// The User-Agent prefix of the process's requests in the audit log.
    /// client-go names a program after its binary (`argo-rollouts`, the name
    /// e2e/cluster builds it under): `argo-rollouts/v0.0.0 (linux/amd64) kubernetes/$Format`.
    pub fn agent(self) -> &'static str {
        match self {
            Subject::Floor => "",
            Subject::Mlctl => "mlctl-operator/",
            Subject::Argo => "argo-rollouts/",
        }
    }

    /// The objects for `n` models.
    pub fn objects(self, n: usize, template: &Template) -> Vec<(ApiResource, serde_json::Value)> {
        (0..n)
            .flat_map(|i| match self {
                Subject::Floor => template.floor(i),
                Subject::Mlctl => vec![(
                    objects::model_resource(),
                    objects::model(i, &objects::name(i)),
                )],
                Subject::Argo => template.rollout(i),
            })
            .collect()
    }

    /// The kind whose readiness is convergence, and what ready means.
    pub fn converged(self) -> (ApiResource, fn(&DynamicObject) -> bool) {
        match self {
            Subject::Floor => (
                ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
                converge::deployment_available,
            ),
            Subject::Mlctl => (objects::model_resource(), converge::healthy),
            Subject::Argo => (objects::rollout_resource(), converge::healthy),
        }
    }
}

/// Paths and ports of one controller process.
pub struct Controller {
    /// Which one.
    pub subject: Subject,
    /// Its /metrics port on 127.0.0.1.
    pub metrics_port: u16,
    command: fn(&Controller) -> Command,
    binary: PathBuf,
    namespace: String,
    log: PathBuf,
}

impl Controller {
    /// The controller of `subject` for `namespace` (none for the floor).
    pub fn new(subject: Subject, namespace: &str, log_dir: &Path) -> Option<Self> {
        let (binary, command): (PathBuf, fn(&Controller) -> Command) = match subject {
            Subject::Floor => return None,
            Subject::Mlctl => (mlctl_e2e::operator::operator_binary(), mlctl_command),
            Subject::Argo => (argo_binary(), argo_command),
        };
        Some(Controller {
            subject,
            metrics_port: mlctl_e2e::operator::free_port(),
            command,
            binary,
            namespace: namespace.to_string(),
            log: log_dir.join(format!("{namespace}.log")),
        })
    }

    /// Starts it and waits until its /metrics endpoint answers (its caches
    /// are syncing or synced; the caller settles before measuring).
    pub async fn start(&self) -> Proc {
        let mut proc = Proc::start((self.command)(self), &self.log);
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&url).await.is_err() {
            proc.check_alive(&format!("starting {}", self.subject.name()));
            assert!(
                Instant::now() < deadline,
                "{} did not serve {url} within 60s (log: {})",
                self.subject.name(),
                self.log.display()
            );
            // Nothing to watch before the process listens.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        proc
    }

    /// Reconciles so far (mlctl_reconciles_total; Argo's rollout_reconcile histogram count).
    pub async fn reconciles(&self) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let metric = match self.subject {
            Subject::Mlctl => "mlctl_reconciles_total",
            Subject::Argo => "rollout_reconcile_count",
            Subject::Floor => return None,
        };
        Some(sum_metric(&text, metric))
    }
}

fn mlctl_command(c: &Controller) -> Command {
    let mut cmd = Command::new(&c.binary);
    cmd.args(["--namespaces", &c.namespace, "--leader-elect=false"])
        .args(["--identity", &format!("bench-{}", c.namespace)])
        .arg(format!("--metrics-addr=127.0.0.1:{}", c.metrics_port))
        .env("RUST_LOG", "warn");
    cmd
}

/// Argo out of the cluster: `--namespaced` limits it to the `--namespace`
/// override (its notification informers read POD_NAMESPACE); metrics and
/// healthz on free ports so nothing clashes.
fn argo_command(c: &Controller) -> Command {
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        mlctl_e2e::cluster_dir()
            .join("admin.kubeconfig")
            .display()
            .to_string()
    });
    let mut cmd = Command::new(&c.binary);
    cmd.args([
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        &c.namespace,
        "--namespaced",
    ])
    .args(["--leader-elect=false", "--loglevel", "warn"])
    .arg(format!("--metricsPort={}", c.metrics_port))
    .arg(format!(
        "--healthzPort={}",
        mlctl_e2e::operator::free_port()
    ))
    .env("POD_NAMESPACE", &c.namespace);
    cmd
}

/// The Argo Rollouts controller e2e/cluster built (`MLCTL_ARGO_ROLLOUTS_BIN`,
/// which scripts/bench-operator sets from `e2e/cluster bin argo-rollouts`).
fn argo_binary() -> PathBuf {
    let path = std::env::var_os("MLCTL_ARGO_ROLLOUTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "MLCTL_ARGO_ROLLOUTS_BIN ({}) is not a file: run the bench through `make bench` \
         (or e2e/cluster build --with-argo-rollouts; export MLCTL_ARGO_ROLLOUTS_BIN=$(e2e/cluster bin argo-rollouts))",
        path.display()
    );
    path
}

/// The sum of every sample of `name` in a Prometheus text exposition.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
