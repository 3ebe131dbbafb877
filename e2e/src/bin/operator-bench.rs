//! Operator benchmark against the local control plane (not a test):
//!
//! 1. Latency from creating a RankingModel to its Deployment existing, p50 and
//!    p99 over `--models` (default 100) models created at once, measured on
//!    the client by a watch; the named peer measured in the same run is
//!    kube-controller-manager's deployment controller (Deployment created →
//!    its ReplicaSet created).
//! 2. The operator's resident memory once `--memory-models` (default 500)
//!    models are served, against its memory before any model existed.
//!
//! Usage: `eval "$(e2e/cluster env)"; cargo run --release -p mlctl-e2e --bin operator-bench`
//! (the operator binary is taken from MLCTL_OPERATOR_BIN or target/release).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use mlctl_crds::RankingModel;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn model(name: &str) -> RankingModel {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"version": "v1", "uri": "s3://models/bench/model.txt", "format": "lightgbm"},
            "runtime": {"image": "runtime:1"},
            "replicas": 1
        }
    }))
    .unwrap()
}

/// The `mlctl.io/model` label of every object the watch sees appear or change.
fn model_label_events<K>(api: Api<K>) -> futures::stream::BoxStream<'static, String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, watcher::Config::default())
        .try_filter_map(|e| async move {
            Ok(match e {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    o.labels().get("mlctl.io/model").cloned()
                }
                _ => None,
            })
        })
        .filter_map(|r| async move { r.ok() })
        .boxed()
}

async fn create_models(
    client: &Client,
    ns: &str,
    prefix: &str,
    count: usize,
) -> (
    HashMap<String, Instant>,
    HashMap<String, Instant>,
    HashMap<String, Instant>,
) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String, Instant)>();
    let watch = |kind_is_rs: bool, stream: futures::stream::BoxStream<'static, String>| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(name) = stream.next().await {
                let _ = tx.send((kind_is_rs, name, Instant::now()));
            }
        })
    };
    let d_stream = model_label_events(deployments);
    let rs_stream = model_label_events(replicasets);
    let h1 = watch(false, d_stream);
    let h2 = watch(true, rs_stream);

    let models: Api<RankingModel> = Api::namespaced(client.clone(), ns);
    let mut created = HashMap::new();
    for i in 0..count {
        let name = format!("{prefix}{i}");
        created.insert(name.clone(), Instant::now());
        models
            .create(&PostParams::default(), &model(&name))
            .await
            .expect("create model");
    }
    let mut deployed = HashMap::new();
    let mut replicaset = HashMap::new();
    let deadline = tokio::time::sleep(Duration::from_secs(300));
    tokio::pin!(deadline);
    while deployed.len() < count || replicaset.len() < count {
        tokio::select! {
            _ = &mut deadline => panic!("timed out: {} deployments, {} replicasets of {count}", deployed.len(), replicaset.len()),
            Some((is_rs, name, at)) = rx.recv() => {
                if !created.contains_key(&name) { continue; }
                if is_rs { replicaset.entry(name).or_insert(at); } else { deployed.entry(name).or_insert(at); }
            }
        }
    }
    h1.abort();
    h2.abort();
    (created, deployed, replicaset)
}

#[tokio::main]
async fn main() {
    let models = arg("--models", 100);
    let memory_models = arg("--memory-models", 500);
    let client = Client::try_default()
        .await
        .expect("a cluster (eval \"$(e2e/cluster env)\")");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "rankingmodels.mlctl.io",
        &PatchParams::apply("mlctl-bench").force(),
        &Patch::Apply(RankingModel::crd()),
    )
    .await
    .expect("install CRD");
    let ns = format!("bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");

    let bin = std::env::var("MLCTL_OPERATOR_BIN").unwrap_or_else(|_| {
        mlctl_e2e::workspace_root()
            .join("target/release/mlctl-operator")
            .display()
            .to_string()
    });
    let mut operator = std::process::Command::new(&bin)
        .args([
            "--namespaces",
            &ns,
            "--leader-elect=false",
            "--metrics-addr=127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    // Let it list and settle before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_kib = rss_kib(operator.id());

    let started = Instant::now();
    let (created, deployed, replicaset) = create_models(&client, &ns, "lat-", models).await;
    let mut ours: Vec<Duration> = created
        .iter()
        .map(|(n, t)| deployed[n].duration_since(*t))
        .collect();
    let mut peer: Vec<Duration> = deployed
        .iter()
        .map(|(n, t)| replicaset[n].saturating_duration_since(*t))
        .collect();
    ours.sort();
    peer.sort();
    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    let (q50, q99) = (percentile(&peer, 0.5), percentile(&peer, 0.99));
    println!(
        "models created at once: {models} (all deployed in {:?})",
        started.elapsed()
    );
    println!("mlctl-operator   create RankingModel -> Deployment: p50 {p50:?}  p99 {p99:?}");
    println!("kube-controller-manager create Deployment -> ReplicaSet: p50 {q50:?}  p99 {q99:?}");
    println!(
        "ratio (mlctl / kube deployment controller): p50 {:.2}x  p99 {:.2}x",
        p50.as_secs_f64() / q50.as_secs_f64().max(1e-9),
        p99.as_secs_f64() / q99.as_secs_f64().max(1e-9)
    );

    let rest = memory_models.saturating_sub(models);
    let t = Instant::now();
    create_models(&client, &ns, "mem-", rest).await;
    // Let the status writes of the last models land.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let loaded_kib = rss_kib(operator.id());
    println!(
        "{memory_models} models deployed in {:?} after the first {models}",
        t.elapsed()
    );
    println!(
        "operator RSS: {:.1} MiB idle, {:.1} MiB with {memory_models} RankingModels ({:.1} KiB per model)",
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0,
        (loaded_kib.saturating_sub(idle_kib)) as f64 / memory_models as f64
    );
    let _ = operator.kill();
    let _ = operator.wait();
    let _ = namespaces.delete(&ns, &Default::default()).await;
}
