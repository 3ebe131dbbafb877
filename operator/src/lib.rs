//! The mlctl operator: controllers, rollout logic, rendering and the runtime
//! around them (leader election, health, metrics, shutdown).

pub mod analysis;
pub mod config;
pub mod controller;
pub mod diagnose;
pub mod error;
pub mod features;
pub mod leader;
pub mod notify;
pub mod pipeline;
pub mod render;
pub mod rollout;
pub mod routing;
pub mod telemetry;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use crate::controller::Recorder;
use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, controller as runtime_controller};
use kube::{Api, Client};
use mlctl_crds::{FeaturePipeline, RankingModel};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::controller::rankingmodel;
use crate::telemetry::{Health, Metrics};

const CRDS_MISSING: &str = "the mlctl CRDs are not installed (rankingmodels.mlctl.io or \
     featurepipelines.mlctl.io is unknown to the API server); install them with \
     `kubectl apply -f crds/yaml/` or the Helm chart charts/mlctl-operator";

/// How long a stopping operator waits for queued notifications.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// How often a process started before its CRDs looks for them again.
const CRD_POLL: Duration = Duration::from_secs(5);

/// Lists both kinds once; 404 when a CRD is not (yet) established.
async fn probe_crds(client: &Client, namespace: Option<&str>) -> Result<(), kube::Error> {
    async fn list<K>(api: Api<K>) -> Result<(), kube::Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        api.list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
    }
    match namespace {
        Some(ns) => {
            list(Api::<RankingModel>::namespaced(client.clone(), ns)).await?;
            list(Api::<FeaturePipeline>::namespaced(client.clone(), ns)).await
        }
        None => {
            list(Api::<RankingModel>::all(client.clone())).await?;
            list(Api::<FeaturePipeline>::all(client.clone())).await
        }
    }
}

/// Waits until `probe` stops answering 404 — an operator installed together
/// with its CRDs (or a moment before them) waits instead of crash-looping,
/// saying every `interval` what is missing. Other errors (kubeconfig, RBAC)
/// end the wait with an error.
async fn wait_for_crds<F, Fut>(mut probe: F, interval: Duration) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    loop {
        match probe().await {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                warn!(retry_in = ?interval, "{CRDS_MISSING}; waiting for them (not ready until then)");
                tokio::time::sleep(interval).await;
            }
            Err(e) => {
                return Err(e).context(
                    "cannot list RankingModels and FeaturePipelines (check the kubeconfig and RBAC)",
                );
            }
        }
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
    let timing = config.lease_timing()?;
    let mut kubeconfig = kube::Config::infer()
        .await
        .context("cannot load a Kubernetes configuration (in-cluster config or KUBECONFIG)")?;
    // Each process names itself to the API server (audit logs, apiserver
    // metrics by user agent): two replicas of one ServiceAccount stay apart.
    let agent = format!(
        "mlctl-operator/{} ({})",
        env!("CARGO_PKG_VERSION"),
        config.identity()
    );
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        kubeconfig.headers.push((http::header::USER_AGENT, value));
    }
    // Every write of the controllers (applies, status, deletes, Events) goes
    // through the fence; the elector's own client does not.
    let fence = leader::Fence::new();
    // Budgets by class (throttle.rs): a storm of applies never delays a
    // status write.
    let limits = throttle::Limits::new(config.kube_api_qps, config.kube_api_burst);
    let builder = kube::client::ClientBuilder::try_from(kubeconfig.clone())
        .context("cannot build a Kubernetes client")?
        .with_layer(&throttle::ThrottleLayer::new(limits.clone()));
    let client = if config.leader_elect {
        builder
            .with_layer(&leader::FenceLayer::new(fence.clone()))
            .build()
    } else {
        builder.build()
    };
    let namespaces = config.watch_namespaces();

    let mut metrics = Metrics::new();
    metrics.register_fenced_writes(fence.refused_writes());
    metrics.register_throttling(limits.waited());
    let metrics = Arc::new(metrics);
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} (--metrics-addr)", config.metrics_addr))?;
    info!(addr = %config.metrics_addr, "serving /healthz, /readyz and /metrics");
    tokio::spawn(telemetry::serve(listener, metrics.clone(), health.clone()));
    let shutdown = shutdown_signal();

    tokio::select! {
        crds = wait_for_crds(|| probe_crds(&client, namespaces.first().map(String::as_str)), CRD_POLL) => crds?,
        () = wait_true(shutdown.clone()) => return Ok(()),
    }

    let mut elector = if config.leader_elect {
        let lease_ns = config
            .lease_namespace
            .clone()
            .unwrap_or_else(|| kubeconfig.default_namespace.clone());
        let elector_client =
            Client::try_from(kubeconfig).context("cannot build a Kubernetes client")?;
        let lease_api: Api<Lease> = Api::namespaced(elector_client, &lease_ns);
        Some(leader::Elector::new(
            lease_api,
            leader::LeaseConfig {
                name: config.effective_lease_name(),
                identity: config.identity(),
                timing,
            },
            fence.clone(),
        ))
    } else {
        None
    };
    // A standby is ready: it is healthy and can take over.
    health.set_ready();

    if let Some(elector) = elector.as_mut() {
        info!(
            identity = %config.identity(),
            lease = %config.effective_lease_name(),
            lease_duration = ?timing.lease_duration(),
            renew_deadline = ?timing.renew_deadline(),
            retry_period = ?timing.retry_period(),
            "waiting for the leader lease"
        );
        tokio::select! {
            () = elector.acquire() => {}
            () = wait_true(shutdown.clone()) => return Ok(()),
        }
        info!(identity = %config.identity(), "leading");
    }
    metrics.set_leader(true);

    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    // The children each scope's models own, indexed from the watches that
    // also trigger the controller: reconciles read them there, never LIST.
    let children_selector =
        controller::index::list_config().labels("app.kubernetes.io/managed-by=mlctl-operator");
    let checked = Arc::new(controller::children::Checked::default());
    let mut indexes = controller::index::Scopes::default();
    let mut child_watches = Vec::new();
    for scope in &scopes {
        let (kids, watches) = controller::owned::model_children(
            &client,
            scope.as_deref(),
            &children_selector,
            &checked,
        );
        indexes.push(scope.clone(), kids);
        child_watches.push(watches);
    }

    let reporter = Reporter {
        controller: "mlctl-operator".into(),
        instance: Some(config.identity()),
    };
    // One notifier for every controller: one queue, one limit on requests
    // in flight (notify/).
    let notifier = notify::from_config(
        &config,
        client.clone(),
        metrics.clone(),
        Recorder::new(client.clone(), reporter.clone()),
    );
    let ctx = Arc::new(rankingmodel::Context::new(
        client.clone(),
        render::RenderConfig {
            storage_initializer_image: config.storage_initializer_image.clone(),
        },
        Recorder::new(client.clone(), reporter.clone()).with_notifier(notifier.clone()),
        metrics.clone(),
        &analysis::Settings::from(&config),
        checked,
        indexes,
    ));

    let mut controllers = Vec::new();
    for (scope, watches) in scopes.into_iter().zip(child_watches) {
        fn scoped<K>(client: &Client, scope: &Option<String>) -> Api<K>
        where
            K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        {
            match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        let models = scoped::<DeserializeGuard<RankingModel>>(&client, &scope);
        let watched = controller::index::list_config().labels(&config.instance_selector());
        // The models' own watch; a deleted model's per-object state
        // (backoff, analysis jobs) goes with it. The store holds them packed
        // (controller/stored.rs).
        let forget = ctx.clone();
        let (store, trigger) = controller::index::parents(
            models,
            watched,
            ctx.seen.clone(),
            move |m| forget.forget(m),
            controller::stored::StoredModel::new,
        );
        // Every child kind is watched: a deleted or edited autoscaler,
        // disruption budget or peer ConfigMap is repaired at once, not at
        // the next resync; a changed FeaturePipeline re-enqueues the models
        // that read from it.
        let controller = watches
            .attach(Controller::for_stream(trigger, store.clone()))
            .reconcile_on(ctx.analysis.landed())
            .trigger_backoff(controller::index::PerWatchBackoff)
            .with_config(runtime_controller::Config::default().concurrency(config.concurrency));
        let gauge = metrics.clone();
        tokio::spawn(async move {
            // Reads the in-memory cache only; no API calls.
            loop {
                gauge.set_managed("rankingmodel", store.state().len() as i64);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let ctx = ctx.clone();
        let backoff = ctx.clone();
        let stop = wait_true(shutdown.clone());
        let place = scope
            .as_deref()
            .map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
        let task = tokio::spawn(
            controller
                .graceful_shutdown_on(stop)
                .run(rankingmodel::reconcile, rankingmodel::error_policy, ctx)
                .for_each(move |result| {
                    if let Ok((model, _)) = result {
                        backoff.backoff.succeeded(&model);
                    }
                    futures::future::ready(())
                }),
        );
        controllers.push(health.clone().supervise(
            format!("rankingmodel ({place})"),
            task,
            shutdown.clone(),
        ));
        // FeaturePipelines: same scope, leader election and shutdown.
        let task = tokio::spawn(controller::featurepipeline::run(
            Arc::new(controller::featurepipeline::Context::new(
                client.clone(),
                Recorder::new(client.clone(), reporter.clone()).with_notifier(notifier.clone()),
                metrics.clone(),
            )),
            scope.clone(),
            config.instance_selector(),
            config.concurrency,
            wait_true(shutdown.clone()),
        ));
        controllers.push(health.clone().supervise(
            format!("featurepipeline ({place})"),
            task,
            shutdown.clone(),
        ));
    }

    let all = futures::future::join_all(controllers);
    match elector.as_mut() {
        Some(elector) => {
            tokio::select! {
                _ = all => {}
                stepped_down = elector.hold() => {
                    // The fence already refuses every write; exit so that a
                    // restart starts clean as a standby.
                    metrics.set_leader(false);
                    anyhow::bail!(
                        "{}; exiting so that a restart starts clean",
                        match stepped_down {
                            leader::SteppedDown::Lost { holder } => format!("lost the leader lease to {holder}"),
                            leader::SteppedDown::Lapsed => "could not renew the leader lease in time".to_string(),
                        }
                    );
                }
            }
            notifier.drain(NOTIFY_DRAIN).await;
            metrics.set_leader(false);
            elector.release().await;
        }
        None => {
            all.await;
            notifier.drain(NOTIFY_DRAIN).await;
        }
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use kube::core::Status;

    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure(reason, reason).with_code(code).boxed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_started_before_its_crds_waits_for_them() {
        let probes = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let waited = wait_for_crds(
            || {
                let n = probes.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(api_error(404, "NotFound"))
                    } else {
                        Ok(())
                    }
                }
            },
            CRD_POLL,
        )
        .await;
        assert!(waited.is_ok(), "{waited:?}");
        assert_eq!(probes.load(Ordering::SeqCst), 4);
        assert_eq!(start.elapsed(), CRD_POLL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_end_the_wait_with_the_fix() {
        let error = wait_for_crds(|| async { Err(api_error(403, "Forbidden")) }, CRD_POLL)
            .await
            .expect_err("RBAC errors are not waited out");
        assert!(
            format!("{error:#}").contains("check the kubeconfig and RBAC"),
            "{error:#}"
        );
    }
}
