//! The mlctl operator: controllers, rollout logic, rendering and the runtime
//! around them (leader election, health, metrics, shutdown).

pub mod analysis;
pub mod config;
pub mod controller;
pub mod diagnose;
pub mod error;
pub mod features;
pub mod leader;
pub mod pipeline;
pub mod render;
pub mod rollout;
pub mod routing;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, controller as runtime_controller, watcher};
use kube::{Api, Client};
use mlctl_crds::RankingModel;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::controller::rankingmodel;
use crate::telemetry::{Health, Metrics};

/// Fails with instructions when the CRDs are not installed.
async fn check_crds(client: &Client, namespaces: &[String]) -> anyhow::Result<()> {
    let api: Api<RankingModel> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the mlctl CRDs are not installed (rankingmodels.mlctl.io is unknown to the API server); \
             install them with `kubectl apply -f crds/yaml/` or the Helm chart charts/mlctl-operator"
        ),
        Err(e) => Err(e).context("cannot list RankingModels (check the kubeconfig and RBAC)"),
    }
}

/// Resolves when SIGTERM or Ctrl-C arrives; a second signal exits at once.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                info!("shutting down (send the signal again to force)");
                let _ = tx.send(true);
            } else {
                warn!("forced shutdown");
                std::process::exit(130);
            }
        }
    });
    rx
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the operator until a shutdown signal (Ok) or a fatal error.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let namespaces = config.watch_namespaces();
    check_crds(&client, &namespaces).await?;

    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.metrics_addr))?;
    info!(addr = %config.metrics_addr, "serving /healthz, /readyz and /metrics");
    tokio::spawn(telemetry::serve(listener, metrics.clone(), health.clone()));
    let shutdown = shutdown_signal();

    let mut elector = if config.leader_elect {
        let lease_ns = config
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let lease_api: Api<Lease> = Api::namespaced(client.clone(), &lease_ns);
        Some(leader::Elector::new(
            lease_api,
            leader::LeaseConfig {
                name: config.lease_name.clone(),
                identity: config.identity(),
                lease_duration: Duration::from_secs(config.lease_duration_seconds),
                retry_period: Duration::from_secs(config.lease_retry_seconds),
            },
        ))
    } else {
        None
    };
    // A standby is ready: it is healthy and can take over.
    health.set_ready();

    if let Some(elector) = elector.as_mut() {
        info!(identity = %config.identity(), "waiting for the leader lease");
        tokio::select! {
            _ = elector.acquire() => {}
            _ = wait_true(shutdown.clone()) => return Ok(()),
        }
        info!("leading");
    }
    metrics.set_leader(true);

    let ctx = Arc::new(rankingmodel::Context::new(
        client.clone(),
        render::RenderConfig {
            storage_initializer_image: config.storage_initializer_image.clone(),
        },
        Recorder::new(
            client.clone(),
            Reporter {
                controller: "mlctl-operator".into(),
                instance: Some(config.identity()),
            },
        ),
        metrics.clone(),
        &analysis::Settings::from(&config),
    ));

    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for scope in scopes {
        let (models, deployments, services) = match &scope {
            Some(ns) => (
                Api::<DeserializeGuard<RankingModel>>::namespaced(client.clone(), ns),
                Api::<Deployment>::namespaced(client.clone(), ns),
                Api::<Service>::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
        let children =
            watcher::Config::default().labels("app.kubernetes.io/managed-by=mlctl-operator");
        let controller = Controller::new(models, watcher::Config::default().any_semantic())
            .owns(deployments, children.clone())
            .owns(services, children)
            .reconcile_on(ctx.analysis.landed())
            .with_config(runtime_controller::Config::default().concurrency(config.concurrency));
        // A changed FeaturePipeline re-enqueues the models that read from it.
        let controller = features::watch_pipelines(controller, &client, scope.as_deref());
        let store = controller.store();
        let gauge = metrics.clone();
        tokio::spawn(async move {
            // Reads the in-memory cache only; no API calls.
            loop {
                gauge.set_managed("rankingmodel", store.state().len() as i64);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let ctx = ctx.clone();
        let stop = wait_true(shutdown.clone());
        controllers.push(tokio::spawn(
            controller
                .graceful_shutdown_on(stop)
                .run(rankingmodel::reconcile, rankingmodel::error_policy, ctx)
                .for_each(|_| futures::future::ready(())),
        ));
        // FeaturePipelines: same scope, leader election and shutdown.
        controllers.push(tokio::spawn(controller::featurepipeline::run(
            Arc::new(controller::featurepipeline::Context::new(
                client.clone(),
                Recorder::new(
                    client.clone(),
                    Reporter {
                        controller: "mlctl-operator".into(),
                        instance: Some(config.identity()),
                    },
                ),
                metrics.clone(),
            )),
            scope.clone(),
            config.concurrency,
            wait_true(shutdown.clone()),
        )));
    }

    let all = futures::future::join_all(controllers);
    match elector.as_mut() {
        Some(elector) => {
            tokio::select! {
                _ = all => {}
                _ = elector.hold() => {
                    // Another process may already write: stop at once.
                    anyhow::bail!("lost the leader lease; exiting so that a restart starts clean");
                }
            }
            elector.release().await;
        }
        None => {
            all.await;
        }
    }
    info!("stopped");
    Ok(())
}
