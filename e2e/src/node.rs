//! The real node (`e2e/cluster up --with-node`, docs/e2e.md): a kubelet with
//! containerd in network and mount namespaces of its own. Pods that tolerate its
//! taint and select its label run for real there; everything else stays on the
//! kwok nodes.
//!
//! The test process lives in the host's network namespace, which has no route
//! to pod or Service IPs. It reaches them the way the API server does: through
//! the bridge's HTTP proxy, which opens every connection inside the node's
//! namespace ([`http_client`]), so a Service IP goes through kube-proxy's rules
//! exactly as from a pod. Servers a pod must reach (an artifact store) run
//! inside the namespace too ([`NodeProcess`]), bound to [`NODE_IP`].

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{TestNamespace, helm, workspace_root};

/// The node's address inside its namespace (e2e/node.bash, `NODE_IP`).
pub const NODE_IP: &str = "10.250.0.2";
/// The taint key (effect NoSchedule) and label key (value "true") of the node.
pub const NODE_TAINT: &str = "mlctl.io/real-node";

/// Whether the cluster has its real node (`MLCTL_E2E_NODE_NAME`, exported by
/// `e2e/cluster env` when the node runs).
pub fn enabled() -> bool {
    std::env::var("MLCTL_E2E_NODE_NAME").is_ok_and(|v| !v.is_empty())
}

/// The node's name.
pub fn name() -> String {
    std::env::var("MLCTL_E2E_NODE_NAME").unwrap_or_else(|_| "mlctl-node".into())
}

/// Returns early unless the end-to-end tests run with the real node. In CI
/// (`CI=true`) a missing node fails the test instead: `make test` brings it up.
#[macro_export]
macro_rules! require_node {
    () => {
        $crate::require_e2e!();
        if !$crate::node::enabled() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{}: the real node is required in CI (make test runs e2e/run with MLCTL_E2E_NODE=1)",
                    module_path!()
                );
            }
            eprintln!(
                "SKIPPED {}: needs the real node (MLCTL_E2E_NODE=1 e2e/run, or e2e/cluster up --with-node)",
                module_path!()
            );
            return;
        }
    };
}

/// The version tag of the images `make images` built and the node imported.
pub fn image_tag() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `ghcr.io/mlctl/<name>:<version>`.
pub fn image(name: &str) -> String {
    format!("ghcr.io/mlctl/{name}:{}", image_tag())
}

/// The test image with a shell (Debian's busybox-static), built by
/// `scripts/images --e2e`, named in target/images/e2e/digests.
pub fn busybox_image() -> String {
    let digests = workspace_root().join("target/images/e2e/digests");
    std::fs::read_to_string(&digests)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| name.starts_with("localhost/mlctl-e2e/busybox:"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "no busybox image in {} (scripts/images --e2e)",
                digests.display()
            )
        })
}

/// Pod-spec YAML (at `indent` spaces) that puts a pod on the real node.
pub fn placement_yaml(indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}nodeSelector:\n{pad}  {NODE_TAINT}: \"true\"\n{pad}tolerations:\n{pad}- key: {NODE_TAINT}\n{pad}  operator: Equal\n{pad}  value: \"true\"\n{pad}  effect: NoSchedule\n"
    )
}

/// An HTTP client whose every connection is opened inside the node's network
/// namespace (the bridge's proxy, `MLCTL_E2E_NODE_PROXY`): pod IPs and Service
/// ClusterIPs answer as they would to a pod.
pub fn http_client() -> reqwest::Client {
    let proxy = std::env::var("MLCTL_E2E_NODE_PROXY")
        .expect("MLCTL_E2E_NODE_PROXY (exported by e2e/cluster env with the real node)");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&proxy).expect("proxy URL"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A process started inside the node's network namespace (nsenter), killed on
/// drop. The namespace has no other servers, so fixed ports do not collide
/// with anything of the host's.
pub struct NodeProcess {
    child: Child,
    pub log: PathBuf,
}

impl NodeProcess {
    /// Starts `program args…` in the node's network namespace, its output in a
    /// log file under target/e2e-node/, and waits until `ready` (a line of that
    /// output) appears.
    pub fn start(
        label: &str,
        program: &str,
        args: &[&str],
        ready: &str,
        timeout: Duration,
    ) -> Self {
        let netns = std::env::var("MLCTL_E2E_NODE_NETNS")
            .expect("MLCTL_E2E_NODE_NETNS (exported by e2e/cluster env with the real node)");
        let dir = crate::operator::target_dir().join("e2e-node");
        std::fs::create_dir_all(&dir).expect("create log dir");
        let log = dir.join(format!("{label}-{}.log", crate::unique_suffix()));
        let mut child = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in the node's namespace: {e}"));
        // Both streams go to the log; the readiness line may come on either.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("open log");
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(file, "{line}");
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ready) => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("{label} did not print {ready:?} within {timeout:?}:\n{text}");
                }
            }
        }
        Self { child, log }
    }
}

impl NodeProcess {
    /// Sends SIGTERM (nsenter execs the program, so the program gets it) and
    /// waits up to `timeout` for the exit; SIGKILL after that. Returns the exit
    /// status when the program exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sha256 of a file, in hex (what `spec.model.sha256` takes).
pub fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum {} printed no hash", path.display()))
        .to_string()
}

/// A fresh directory under target/e2e-node/ for a test's files.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = crate::operator::target_dir()
        .join("e2e-node")
        .join(format!("{label}-{}", crate::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// `dir` served over plain HTTP at `NODE_IP:port`, from inside the node's
/// network namespace (Python's http.server), so pods can fetch from it.
pub fn file_server(dir: &Path, port: u16) -> NodeProcess {
    NodeProcess::start(
        "http",
        "python3",
        &[
            "-u",
            "-m",
            "http.server",
            "--bind",
            NODE_IP,
            "--directory",
            dir.to_str().expect("a UTF-8 path"),
            &port.to_string(),
        ],
        "Serving HTTP",
        Duration::from_secs(20),
    )
}

/// The operator, installed in the cluster from its image with the chart
/// (`helm install`), watching only `ns` and running on the real node.
pub struct InstalledOperator {
    pub release: String,
    pub namespace: String,
}

/// `--set analysis.prometheus=<url>` for the cluster's Prometheus as pods
/// reach it, when it runs (the chart adds its host to the allow-list).
fn prometheus_allow() -> Vec<String> {
    std::env::var("MLCTL_E2E_NODE_PROMETHEUS_URL")
        .map(|url| vec!["--set".to_string(), format!("analysis.prometheus={url}")])
        .unwrap_or_default()
}

/// `helm install` of charts/mlctl-operator into `ns`, watching only `ns`,
/// scheduled onto the real node, and waits (`--wait`) until it is Ready.
pub fn helm_install_operator(ns: &TestNamespace, extra: &[&str]) -> InstalledOperator {
    let release = format!("op-{}", crate::unique_suffix());
    let chart = workspace_root().join("charts/mlctl-operator");
    let placement = format!(
        "nodeSelector.{key}=true,tolerations[0].key={NODE_TAINT},tolerations[0].operator=Equal,tolerations[0].value=true,tolerations[0].effect=NoSchedule",
        key = NODE_TAINT.replace('.', "\\.")
    );
    let out = Command::new(helm())
        .args(["install", &release])
        .arg(&chart)
        .args(["--namespace", ns.name()])
        .args([
            "--set-json",
            &format!("watchNamespaces=[\"{}\"]", ns.name()),
        ])
        .args(["--set-string", &placement])
        .args([
            "--set",
            "logFormat=text",
            "--set",
            "logLevel=info\\,mlctl_operator=debug",
        ])
        // Pods reach the cluster's Prometheus at the node's address.
        .args(prometheus_allow().iter().map(String::as_str))
        .args(["--wait", "--timeout", "120s"])
        .args(extra)
        .output()
        .expect("run helm install");
    assert!(
        out.status.success(),
        "helm install {release}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    InstalledOperator {
        release,
        namespace: ns.name().to_string(),
    }
}

/// Waits until `request` (built afresh for each attempt) gets a 2xx answer
/// through the node proxy, and returns the body. A Service answers only once
/// kube-proxy has written its rules for the ready endpoints, a moment after
/// the pods are Ready: this is that wait, with a deadline.
pub async fn wait_for_answer(
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    timeout: Duration,
) -> String {
    let client = http_client();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match request(&client).send().await {
            Ok(r) if r.status().is_success() => return r.text().await.expect("a body"),
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "no 2xx answer within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
