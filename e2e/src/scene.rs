//! What the real-traffic tests share (canary_traffic, compare): a namespace
//! with the operator installed from its image on the real node, a file server
//! for the model artifacts, RankingModel manifests, the figures file, and the
//! demo's models and queries.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use serde_json::{Value, json};

use crate::node::{self, NODE_IP, NodeProcess};
use crate::operator::target_dir;
use crate::traffic::TrafficRun;
use crate::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, client, install_crds, wait_for_deletion,
    wait_for_events, workspace_root,
};

/// How long a scene waits for the Service to answer, pods to go.
const LONG: Duration = Duration::from_secs(240);

/// Prints a line of measured figures and appends it to target/e2e-figures.txt,
/// which e2e/run prints after the suite (cargo test hides a passing test's
/// output).
#[macro_export]
macro_rules! figures {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        eprintln!("{line}");
        $crate::scene::record_figures(&line);
    }};
}

pub fn record_figures(line: &str) {
    use std::io::Write;
    let path = target_dir().join("e2e-figures.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    writeln!(file, "{line}").unwrap();
}

/// The demo's models (examples/demo/models, made by its train.py).
pub fn models_dir() -> PathBuf {
    workspace_root().join("examples/demo/models")
}

pub fn rows_file() -> PathBuf {
    workspace_root().join("examples/demo/queries.json")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The Prometheus the operator's pod reaches (netns-bridge forwards the
/// node's port to the host's Prometheus).
pub fn prometheus_in_cluster() -> String {
    std::env::var("MLCTL_E2E_NODE_PROMETHEUS_URL")
        .expect("MLCTL_E2E_NODE_PROMETHEUS_URL (e2e/cluster env, with the node and Prometheus)")
}

/// One version of the model: the file under examples/demo/models, served by
/// the test's file server, and extra environment of the ranker container.
pub struct Version<'a> {
    /// `spec.model.version`.
    pub version: &'a str,
    /// The artifact's file name in the scene's model directory.
    pub file: &'a str,
    /// Extra environment of the ranker container.
    pub env: &'a [(&'a str, &'a str)],
}

/// The demo's first model.
pub const V1: Version<'static> = Version {
    version: "2026-11-25.1",
    file: "search-ranker-v1.txt",
    env: &[],
};

/// The demo's better model.
pub const V2: Version<'static> = Version {
    version: "2026-11-26.1",
    file: "search-ranker-v2.txt",
    env: &[],
};

impl Version<'_> {
    /// `spec.model` and `spec.runtime.env` for this version.
    pub fn model(&self, dir: &Path, port: u16) -> (Value, Value) {
        let model = json!({
            "version": self.version,
            "uri": format!("http://{NODE_IP}:{port}/{}", self.file),
            "format": "lightgbm",
            "sha256": node::sha256_hex(&dir.join(self.file)),
        });
        let env: Vec<Value> = self
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        (model, env.into())
    }
}

/// The RankingModel (as JSON, which is YAML) on the real node.
pub fn model_manifest(
    name: &str,
    dir: &Path,
    port: u16,
    v: &Version,
    replicas: u32,
    rollout: Value,
) -> String {
    let (model, env) = v.model(dir, port);
    let placement: Value = serde_yaml_ng::from_str(&node::placement_yaml(0)).unwrap();
    json!({
        "apiVersion": "mlctl.io/v1alpha1",
        "kind": "RankingModel",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "runtime": {
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"],
                "env": env,
                "resources": {
                    "requests": {"cpu": "10m", "memory": "32Mi"},
                    "limits": {"memory": "256Mi"},
                },
            },
            "replicas": replicas,
            "rollout": rollout,
        },
    })
    .to_string()
}

/// A namespace with the operator installed from its image, and a file server
/// for the models inside the node's network.
pub struct Scene {
    /// The API client.
    pub client: Client,
    /// The test's namespace (deleted on drop).
    pub ns: TestNamespace,
    /// RankingModels in it.
    pub models: Api<RankingModel>,
    /// The file server's port on the node's address.
    pub port: u16,
    /// The directory it serves.
    pub dir: PathBuf,
    _files: NodeProcess,
}

/// A scene serving the demo's models (examples/demo/models).
pub async fn scene(prefix: &str, port: u16) -> Scene {
    scene_serving(prefix, port, &models_dir()).await
}

/// A scene serving the model files in `dir`.
pub async fn scene_serving(prefix: &str, port: u16, dir: &Path) -> Scene {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::with_pod_security(&client, prefix, "restricted").await;
    node::helm_install_operator(&ns, &[]);
    let files = node::file_server(dir, port);
    let models = ns.api();
    Scene {
        client,
        ns,
        models,
        port,
        dir: dir.to_path_buf(),
        _files: files,
    }
}

impl Scene {
    pub async fn apply(&self, name: &str, v: &Version<'_>, replicas: u32, rollout: Value) {
        apply_yaml(
            &self.client,
            self.ns.name(),
            &model_manifest(name, &self.dir, self.port, v, replicas, rollout),
        )
        .await;
    }

    /// The `<model>` Service's ClusterIP URL of the ranking API.
    pub async fn rank_url(&self, name: &str) -> String {
        let services: Api<Service> = self.ns.api();
        let ip = services
            .get(name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .expect("a ClusterIP");
        format!("http://{ip}:80/v1/models/{name}:rank")
    }

    /// Starts the load generator and waits until the Service answers it.
    pub async fn start_traffic(&self, name: &str, rate: u32) -> TrafficRun {
        let url = self.rank_url(name).await;
        // The Service answers once kube-proxy has rules for its endpoints.
        node::wait_for_answer(
            |c| {
                c.post(&url)
                    .json(&json!({"documents": [{"id": 1, "features": [1, 0, 0, 0, 0, 0, 0, 1]}]}))
            },
            LONG,
        )
        .await;
        TrafficRun::start(name, &url, rate, &rows_file())
    }

    /// Pods of `version`; waits until none is left (deleted, terminated).
    pub async fn wait_until_no_pods_of(&self, name: &str, version: &str) {
        let pods: Api<Pod> = self.ns.api();
        let selector = format!("mlctl.io/model={name},mlctl.io/version={version}");
        for pod in pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
        {
            let pod_name = pod.metadata.name.unwrap();
            wait_for_deletion(&pods, &pod_name, LONG).await;
        }
    }

    pub async fn set_version(&self, name: &str, v: &Version<'_>) {
        let (model, env) = v.model(&self.dir, self.port);
        self.models
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"model": model, "runtime": {"env": env}}})),
            )
            .await
            .unwrap();
    }

    pub async fn abort_reason(&self, name: &str) -> String {
        let rm = self.models.get(name).await.unwrap();
        let canary = rm.status.and_then(|st| st.canary);
        canary
            .and_then(|c| c.abort_reason)
            .expect("status.canary.abortReason")
    }

    /// The messages of the Events with `reason`, once there is one (Events
    /// are queued after the status write they follow).
    pub async fn warning_events(&self, reason: &str) -> Vec<String> {
        wait_for_events(&self.ns.api(), reason, |l| !l.is_empty(), DEFAULT_TIMEOUT)
            .await
            .into_iter()
            .filter_map(|e| e.message)
            .collect()
    }
}

/// Healthy with `version` as the stable one.
pub fn serving(version: &str) -> impl Fn(Option<&RankingModel>) -> bool + '_ {
    move |rm| {
        rm.and_then(|rm| rm.status.as_ref()).is_some_and(|st| {
            st.phase == Some(Phase::Healthy)
                && st.stable.as_ref().is_some_and(|s| s.version == version)
        })
    }
}
