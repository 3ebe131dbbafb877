//! Test support for the end-to-end suite: tests run against the real local control
//! plane that `e2e/cluster up` starts (see docs/e2e.md), each in a fresh namespace,
//! waiting on watches with deadlines and dumping what they saw when they fail.
//!
//! ```ignore
//! #[tokio::test]
//! async fn deployment_becomes_available() {
//!     mlctl_e2e::require_e2e!();
//!     let client = mlctl_e2e::client().await;
//!     let ns = mlctl_e2e::TestNamespace::new(&client, "deploy").await;
//!     // ... ns.api::<Deployment>(), wait_for(...) ...
//!     ns.finish().await;
//! }
//! ```

// This is test-support code: a panic is how a test reports a failure, so the
// workspace's deny of unwrap/expect/panic does not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audit;
mod dump;
pub mod metrics;
mod namespace;
pub mod node;
pub mod operator;
pub mod scene;
pub mod traffic;
mod wait;
pub mod web;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use kube::{
    Api, Client, Config,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    config::{AuthInfo, KubeConfigOptions, Kubeconfig},
    core::GroupVersionKind,
    discovery::{self, Scope},
};

pub use dump::{dump_on_failure, print_component_logs, print_file_tail};
pub use namespace::TestNamespace;
pub use wait::{phase_is, wait_for, wait_for_deletion, wait_for_list};

/// The field manager of every server-side apply the tests do.
pub const FIELD_MANAGER: &str = "mlctl-e2e";

/// A deadline long enough for any single step on a loaded 2-core CI machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the end-to-end tests should run: `e2e/run` sets `MLCTL_E2E=1`.
/// Without it (a plain `cargo test --workspace`) they skip.
pub fn enabled() -> bool {
    std::env::var("MLCTL_E2E").is_ok_and(|v| v == "1")
}

/// Returns early from a test, loudly, unless `MLCTL_E2E=1`. In CI
/// (`CI=true`) a missing cluster fails the test instead: a whole suite that
/// skipped must never pass there (`make test` runs it through e2e/run).
#[macro_export]
macro_rules! require_e2e {
    () => {
        if !$crate::enabled() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{}: end-to-end tests are required in CI; run them through e2e/run (MLCTL_E2E=1 and a cluster)",
                    module_path!()
                );
            }
            eprintln!(
                "SKIPPED {}: end-to-end test; set MLCTL_E2E=1 and start a cluster (e2e/run does both)",
                module_path!()
            );
            return;
        }
    };
}

const NO_CLUSTER_HINT: &str =
    "run e2e/run or `e2e/cluster up` first (and `eval \"$(e2e/cluster env)\"`)";

/// The admin client configuration, from `KUBECONFIG` (which `e2e/run` and
/// `e2e/cluster env` export), falling back to the cluster's run directory.
pub async fn admin_config() -> Config {
    let path = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("admin.kubeconfig"));
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the e2e kubeconfig {}: {e}; {NO_CLUSTER_HINT}",
            path.display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "invalid kubeconfig {}: {e}; {NO_CLUSTER_HINT}",
                path.display()
            )
        })
}

/// A client with cluster-admin rights, checked to reach the API server; panics
/// with a hint when no cluster is running.
pub async fn client() -> Client {
    let config = admin_config().await;
    let url = config.cluster_url.clone();
    let client =
        Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a kube client: {e}"));
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!("no Kubernetes API server reachable at {url}: {e}; {NO_CLUSTER_HINT}"),
        Err(_) => panic!(
            "the Kubernetes API server at {url} did not answer within 10s; {NO_CLUSTER_HINT}"
        ),
    }
}

/// A client that authenticates with a bearer token only (no client certificate),
/// e.g. one from [`service_account_token`]: what a pod's service account can do.
pub async fn client_with_token(token: &str) -> Client {
    let mut config = admin_config().await;
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))
        .expect("AuthInfo from a token");
    Client::try_from(config).expect("a kube client from a token")
}

/// A short-lived token for a service account, from the TokenRequest API (as the
/// kubelet projects one into a pod).
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    service_account: &str,
) -> String {
    use k8s_openapi::api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
    };
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    api.create_token_request(service_account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{service_account}: {e}"))
        .status
        .expect("a TokenRequest answer carries a status")
        .token
}

/// Server-side applies every document of a (multi-document) YAML string, with
/// the namespace `namespace` for namespaced objects that name none. Kinds are
/// resolved through discovery, so CRDs applied earlier work too.
pub async fn apply_yaml(client: &Client, namespace: &str, yaml: &str) -> Vec<DynamicObject> {
    let mut applied = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(document)
            .unwrap_or_else(|e| panic!("invalid YAML document: {e}\n{yaml}"));
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("not a Kubernetes object: {e}\n{yaml}"));
        let api = dynamic_api(client, &object, namespace).await;
        let name = object
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| panic!("an applied object needs metadata.name:\n{yaml}"));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = api
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {name} failed: {e}"));
        applied.push(result);
    }
    applied
}

/// The `Api` for an arbitrary object, found through discovery.
pub async fn dynamic_api(
    client: &Client,
    object: &DynamicObject,
    namespace: &str,
) -> Api<DynamicObject> {
    let types = object
        .types
        .as_ref()
        .unwrap_or_else(|| panic!("object {:?} has no apiVersion/kind", object.metadata.name));
    let gvk = GroupVersionKind::try_from(types)
        .unwrap_or_else(|e| panic!("bad apiVersion {:?}: {e}", types.api_version));
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the API server does not know {gvk:?}: {e}"));
    match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let ns = object.metadata.namespace.as_deref().unwrap_or(namespace);
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    }
}

/// The Events in the Api's namespace with this `reason`.
pub async fn events_with_reason(
    events: &Api<k8s_openapi::api::core::v1::Event>,
    reason: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    events
        .list(&kube::api::ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list events: {e}"))
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Waits until the Events in the Api's namespace with this `reason` satisfy
/// `predicate`, and returns them. The operator publishes Events from a queue
/// off the reconcile path, so an Event lands shortly after the status write
/// it follows: a test that has just seen the status waits for the Event.
pub async fn wait_for_events(
    events: &Api<k8s_openapi::api::core::v1::Event>,
    reason: &str,
    predicate: impl Fn(&[k8s_openapi::api::core::v1::Event]) -> bool,
    timeout: std::time::Duration,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    let config = kube::runtime::watcher::Config::default().fields(&format!("reason={reason}"));
    wait_for_list(events, config, predicate, timeout).await
}

/// The run directory of the local cluster (`MLCTL_E2E_CLUSTER_DIR`, exported by
/// `e2e/cluster env`): kubeconfigs under it, component logs in `logs/`.
pub fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MLCTL_E2E_CLUSTER_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("MLCTL_E2E_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mlctl-e2e")
        });
    home.join("cluster")
}

/// The root of the workspace (for test data such as `crds/yaml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives in the workspace")
        .to_path_buf()
}

/// The built `kubectl` (on `PATH` through `e2e/cluster env`).
pub fn kubectl() -> PathBuf {
    find_tool("kubectl")
}

/// The built `helm` (on `PATH` through `e2e/cluster env`).
pub fn helm() -> PathBuf {
    find_tool("helm")
}

fn find_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH; {NO_CLUSTER_HINT}"))
}

/// A name unique to this process and call, usable as a Kubernetes name suffix.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:04x}{n}", std::process::id() & 0xfff, nanos >> 16)
}

fn crd_files() -> Vec<PathBuf> {
    let dir = workspace_root().join("crds/yaml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (the generated CRDs)", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no CRDs in {}", dir.display());
    files
}

/// Installs every generated CRD (server-side apply: idempotent, so tests may
/// race on it) and waits until each is Established.
pub async fn install_crds(client: &Client) -> Vec<String> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let mut names = Vec::new();
    for file in crd_files() {
        let yaml = std::fs::read_to_string(&file).expect("read CRD file");
        for object in apply_yaml(client, "default", &yaml).await {
            let kind = object
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default();
            assert_eq!(
                kind,
                "CustomResourceDefinition",
                "{} holds a {kind}",
                file.display()
            );
            names.push(kube::ResourceExt::name_any(&object));
        }
    }
    for name in &names {
        wait_for(
            &crds,
            name,
            kube::runtime::wait::conditions::is_crd_established(),
            DEFAULT_TIMEOUT,
        )
        .await;
    }
    names
}

/// The text of `examples/<name>`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("examples").join(name))
        .unwrap_or_else(|e| panic!("read examples/{name}: {e}"))
}

/// The name of the Deployment of a model's stable revision.
pub fn stable_deployment(model: &mlctl_crds::RankingModel) -> String {
    use kube::ResourceExt;
    let revision = &model
        .status
        .as_ref()
        .and_then(|s| s.stable.as_ref())
        .unwrap_or_else(|| panic!("{} has no stable revision", model.name_any()))
        .revision;
    format!("{}-{revision}", model.name_any())
}

/// Sets `spec.model.version` (and the URI `s3://models/<name>/<version>/model.txt`
/// that goes with it) of the model `name`: a version change, as a user's edit.
pub async fn set_version(models: &kube::Api<mlctl_crds::RankingModel>, name: &str, version: &str) {
    let patch = serde_json::json!({"spec": {"model": {
        "version": version, "uri": format!("s3://models/{name}/{version}/model.txt")}}});
    models
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_or_else(|e| panic!("set the version of {name}: {e}"));
}

/// Sends `signal` (e.g. `STOP`, `CONT`, `KILL`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("run kill: {e}"));
    assert!(status.success(), "kill -{signal} {pid}");
}
