//! One namespace per subject and size, deleted (and waited for) before the
//! next subject starts, so that no subject's objects load another's run.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// Deleting 10,000 models' worth of objects goes through the garbage
/// collector and kwok's pod deletions: minutes, not seconds.
const DELETE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Creates `name`, deleting a leftover of an interrupted run first.
pub async fn fresh(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.expect("get namespace").is_some() {
        delete(client, name).await;
    }
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Deletes `name` and waits until it is gone; returns how long it took.
pub async fn delete(client: &Client, name: &str) -> Duration {
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Duration::ZERO,
        Err(e) => panic!("delete namespace {name}: {e}"),
    }
    mlctl_e2e::wait_for_deletion(&api, name, DELETE_TIMEOUT).await;
    started.elapsed()
}
