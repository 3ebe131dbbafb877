//! The operator as a test runs it: its own `mlctl-operator` process,
//! authenticated with a token of the Helm chart's ServiceAccount and bound only
//! by the chart's own RBAC (rendered with `helm template`), so a missing
//! permission fails the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use kube::Client;
use kube::config::Kubeconfig;

use crate::{
    TestNamespace, apply_yaml, client, helm, install_crds, service_account_token, workspace_root,
};

/// The cargo target directory of the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The built operator binary (`MLCTL_OPERATOR_BIN` overrides).
pub fn operator_binary() -> PathBuf {
    let path = std::env::var_os("MLCTL_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/mlctl-operator"));
    assert!(
        path.is_file(),
        "{} does not exist: build it first (`cargo build -p mlctl-operator`; make test does)",
        path.display()
    );
    path
}

/// A running operator process, killed when dropped.
pub struct Operator {
    child: Child,
    /// `--identity` of the process.
    pub identity: String,
    /// Its log file.
    pub log: PathBuf,
    /// Port of its /metrics endpoint.
    pub metrics_port: u16,
}

impl Operator {
    /// Sends `signal` (e.g. `STOP`, `CONT`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        crate::signal(self.child.id(), signal);
    }

    /// Its exit status once it has exited, waiting at most `timeout`
    /// (polled every 100 ms: a child process has no watch).
    pub async fn wait_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The part of its User-Agent that names it (`(identity)`).
    pub fn agent(&self) -> String {
        format!("({})", self.identity)
    }

    /// Kills the process (SIGKILL: no graceful shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its /metrics body once `condition` holds on it, or the last body
    /// after `timeout` (the metrics endpoint has no watch: asked every 200 ms).
    pub async fn wait_for_metrics(
        &self,
        condition: impl Fn(&str) -> bool,
        timeout: std::time::Duration,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let body = self.metrics().await;
            if condition(&body) || tokio::time::Instant::now() >= deadline {
                return body;
            }
            // Polling interval; the loop ends on the condition or the deadline.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The body of its /metrics endpoint (empty when unreachable).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await
        else {
            return String::new();
        };
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The chart's ServiceAccount and RBAC for a release watching `ns` only.
pub async fn install_chart_rbac(client: &Client, ns: &str) -> String {
    let release = "mlctl-operator";
    let out = Command::new(helm())
        .args(["template", release])
        .arg(workspace_root().join("charts/mlctl-operator"))
        .args([
            "--namespace",
            ns,
            "--set",
            &format!("watchNamespaces={{{ns}}}"),
        ])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"])
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(yaml.contains("kind: Role"), "{yaml}");
    apply_yaml(client, ns, &yaml).await;
    release.to_string()
}

/// A kubeconfig that authenticates as the chart's ServiceAccount.
pub async fn service_account_kubeconfig(client: &Client, ns: &str, sa: &str) -> PathBuf {
    let token = service_account_token(client, ns, sa).await;
    let admin = std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set by e2e/run");
    let mut config = Kubeconfig::read_from(PathBuf::from(admin)).expect("read kubeconfig");
    for user in &mut config.auth_infos {
        user.auth_info = Some(
            serde_json::from_value(serde_json::json!({ "token": token })).expect("token auth"),
        );
    }
    let dir = target_dir().join("e2e-operator");
    std::fs::create_dir_all(&dir).expect("create dir");
    let path = dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&path, serde_yaml_ng::to_string(&config).expect("serialize")).expect("write");
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `mlctl-operator` watching `ns` with the given kubeconfig.
pub fn start_operator(ns: &TestNamespace, kubeconfig: &PathBuf, identity: &str) -> Operator {
    let dir = target_dir().join("e2e-operator");
    std::fs::create_dir_all(&dir).expect("create dir");
    let log = dir.join(format!("{}-{identity}.log", ns.name()));
    let file = std::fs::File::create(&log).expect("create log");
    let metrics_port = free_port();
    let child = Command::new(operator_binary())
        .args(["--namespaces", ns.name(), "--lease-namespace", ns.name()])
        .args(["--identity", identity, "--log-format", "text"])
        .args([
            "--lease-duration-seconds",
            "4",
            "--lease-retry-seconds",
            "1",
        ])
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
        // Test endpoints (Prometheus, web metrics) listen on loopback, which
        // the analysis allow-list refuses unless named.
        .arg("--analysis-allow=in-cluster,127.0.0.1/32")
        .arg("--storage-initializer-image=ghcr.io/mlctl/mlctl-ranker:0.1.0")
        .env("KUBECONFIG", kubeconfig)
        // MLCTL_E2E_OPERATOR_LOG: another filter when a test needs the
        // client's requests too (e.g. `debug,hyper=info`).
        .env(
            "RUST_LOG",
            std::env::var("MLCTL_E2E_OPERATOR_LOG")
                .unwrap_or_else(|_| "info,mlctl_operator=debug".to_string()),
        )
        .stdout(Stdio::from(file.try_clone().expect("clone log")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start mlctl-operator");
    Operator {
        child,
        identity: identity.to_string(),
        log,
        metrics_port,
    }
}

/// A namespace with the CRDs, the chart's RBAC and one operator running.
pub async fn setup(prefix: &str) -> (Client, TestNamespace, Operator, PathBuf) {
    let client = client().await;
    install_crds(&client).await;
    let mut ns = TestNamespace::new(&client, prefix).await;
    let sa = install_chart_rbac(&client, ns.name()).await;
    let kubeconfig = service_account_kubeconfig(&client, ns.name(), &sa).await;
    let operator = start_operator(&ns, &kubeconfig, "a");
    ns.dump_log_on_failure(operator.log.clone());
    (client, ns, operator, kubeconfig)
}
