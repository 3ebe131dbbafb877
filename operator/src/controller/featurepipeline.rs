//! The FeaturePipeline reconciler: the thin I/O shell around
//! [`crate::pipeline`]. Read the runs and workload that exist (from the
//! indexes the controller's watches keep: no LIST, no discovery per
//! reconcile), decide, apply only what changed, write status only when it
//! changed, publish events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Recorder;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::DynamicObject;
use kube::core::DeserializeGuard;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Api, Resource};
use mlctl_crds::FeaturePipeline;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::children::{Checked, ChildLog, apply_child, delete_child, delete_observed};
use super::index::Index;
use super::pipeline_owned::PipelineChildren;
use super::spark::{SparkApps, SparkDiscovery};
use super::{apply_if_changed, invalid_object, now_seconds, owned_by, publish};
use crate::error::{Error, Result};
use crate::pipeline::naming::{PIPELINE_LABEL, TRIGGER_LABEL};
use crate::pipeline::observe::{label, observe_job, observe_spark, spark_state};
use crate::pipeline::{
    self, Decision, Observed, ObservedRun, PipelineRef, RunPhase, Workload, render,
};
use crate::render::FIELD_MANAGER;
use crate::rollout::Transition;
use crate::telemetry::Metrics;

const KIND: &str = "featurepipeline";

/// Shared state of the FeaturePipeline controller of one scope (a namespace,
/// or all): its indexes are fed by that scope's watches only, so each scope
/// has a Context of its own.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Children checked for hand edits since their last change.
    pub checked: Arc<Checked>,
    /// Runs whose outcome was counted (namespace/name), so that each counts
    /// once per process; runs that finished before the process started are
    /// not counted. A deleted run's entry goes with it.
    counted: Arc<Mutex<HashSet<String>>>,
    started: Timestamp,
    /// Consecutive failures per pipeline (requeue backoff).
    pub backoff: super::Backoff<DeserializeGuard<FeaturePipeline>>,
    /// The scope's runs, run pods and standing children, by pipeline.
    pub children: PipelineChildren,
    /// Whether SparkApplication is served (asked at most once per
    /// interval), and the scope's managed applications.
    pub spark: SparkDiscovery,
}

impl Context {
    /// The controller's shared state.
    pub fn new(client: kube::Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        let checked = Arc::new(Checked::default());
        let counted = Arc::new(Mutex::new(HashSet::new()));
        fn uncount<K: Resource>(
            counted: &Arc<Mutex<HashSet<String>>>,
        ) -> Arc<dyn Fn(&K) + Send + Sync> {
            let counted = counted.clone();
            Arc::new(move |run: &K| {
                let meta = run.meta();
                if let (Some(ns), Some(name), Ok(mut c)) =
                    (&meta.namespace, &meta.name, counted.lock())
                {
                    c.remove(&format!("{ns}/{name}"));
                }
            })
        }
        Context {
            client,
            recorder,
            metrics,
            children: PipelineChildren::new(&checked, uncount::<Job>(&counted)),
            spark: SparkDiscovery::new(uncount::<DynamicObject>(&counted)),
            checked,
            counted,
            started: Timestamp::now(),
            backoff: super::Backoff::default(),
        }
    }

    /// Drops the per-object state of a deleted pipeline (its failure
    /// count); its children's state goes with their own deletions.
    pub fn forget(&self, pipeline: &DeserializeGuard<FeaturePipeline>) {
        self.backoff
            .succeeded(&kube::runtime::reflector::ObjectRef::from_obj(pipeline));
    }
}

/// Reconciles one FeaturePipeline. An object that does not deserialize gets
/// a Warning event and is left alone.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<FeaturePipeline>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles(KIND);
    let pipeline = match &guard.0 {
        Ok(p) => p,
        Err(invalid) => {
            ctx.metrics.reconcile_error(KIND, "invalid_object");
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "cannot read FeaturePipeline");
            let (reference, t) = invalid_object::<FeaturePipeline>(invalid);
            publish(&ctx.recorder, &reference, &t).await;
            return Ok(Action::await_change());
        }
    };
    let result = reconcile_inner(pipeline, &ctx).await;
    ctx.metrics.reconcile_duration(KIND, started.elapsed());
    match result {
        Err(e) if e.is_conflict() => {
            // Decided from a stale copy; the newer one is on its way.
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(e) if e.is_invalid_request() => {
            ctx.metrics.reconcile_error(KIND, &e.metric_label());
            let t = Transition {
                warning: true,
                reason: "InvalidSpec",
                message: format!("the API server refused an object rendered from this spec: {e}"),
            };
            publish(&ctx.recorder, &pipeline.object_ref(&()), &t).await;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        other => other,
    }
}

/// The requeue policy on errors: back off, never hot-loop.
pub fn error_policy(
    p: Arc<DeserializeGuard<FeaturePipeline>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_error(KIND, &error.metric_label());
    // Per object: one failing object backs off to minutes, the others keep
    // their pace; the count is cleared when the object reconciles.
    let delay = ctx
        .backoff
        .failed(&kube::runtime::reflector::ObjectRef::from_obj(&*p));
    warn!(%error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn dynamic(value: serde_json::Value) -> Result<DynamicObject> {
    serde_json::from_value(value).map_err(|source| Error::Serialize {
        what: "SparkApplication",
        source,
    })
}

/// How long a reconcile waits for the first list of a SparkApplication
/// watch that has just started (discovery found the kind) before trying
/// again later.
const SPARK_LIST_WAIT: Duration = Duration::from_secs(10);

/// The object `name` as it exists, owned or not: from the index when the
/// operator manages one by that name, otherwise one GET (not created yet,
/// or an object the operator must not take over). Only before a write.
async fn fetch_unless_indexed<K>(
    index: &Index<K>,
    api: &Api<K>,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<K>>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if let Some(o) = index.get(ns, name) {
        return Ok(Some(o));
    }
    Ok(api.get_opt(name).await?.map(Arc::new))
}

async fn reconcile_inner(p: &FeaturePipeline, ctx: &Context) -> Result<Action> {
    let pref = PipelineRef::from_pipeline(p).ok_or(Error::MissingMetadata("uid"))?;
    if p.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget_pipeline(&pref.namespace, &pref.name);
        return Ok(Action::await_change());
    }
    let ns = pref.namespace.as_str();
    let client = ctx.client.clone();
    let spec = &p.spec;
    let kids = &ctx.children;
    kids.ready().await;

    let spark = if spec.engine.spark.is_some() {
        ctx.spark.resolve(&client).await
    } else {
        None
    };
    if let Some(apps) = &spark
        && tokio::time::timeout(SPARK_LIST_WAIT, apps.index.ready())
            .await
            .is_err()
    {
        warn!("SparkApplications not listed yet; trying again");
        return Ok(Action::requeue(SPARK_LIST_WAIT));
    }
    let spark_api: Option<Api<DynamicObject>> = spark
        .as_ref()
        .map(|s| Api::namespaced_with(client.clone(), ns, &s.resource));

    let job_list = kids.jobs.group(ns, &pref.name);
    let pod_list = kids.pods.group(ns, &pref.name);
    let mut runs: Vec<ObservedRun> = job_list
        .iter()
        .filter_map(|j| observe_job(j, &pod_list))
        .collect();
    let mut streaming_app = None;
    if let Some(apps) = &spark {
        for app in apps.index.group(ns, &pref.name) {
            if !owned_by(&app.metadata, &pref.owner.uid) {
                continue;
            }
            if app.metadata.name.as_deref() == Some(pref.name.as_str())
                && label(&app.metadata, TRIGGER_LABEL).is_none()
            {
                streaming_app = Some(app);
            } else if let Some(run) = observe_spark(&app, &pod_list) {
                runs.push(run);
            }
        }
    }

    // The operator's own standing objects; one of that name it does not
    // own is looked up only before a write (`apply_workload`).
    let cron_job = kids.cron_jobs.get(ns, &pref.name);
    let deployment = kids.deployments.get(ns, &pref.name);
    let streaming_ready = match (&deployment, &streaming_app) {
        _ if spec.trigger.streaming.is_none() => false,
        (_, Some(app)) if spec.engine.spark.is_some() => spark_state(app) == Some("RUNNING"),
        (Some(d), _) if spec.engine.container.is_some() => {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        }
        _ => false,
    };
    let current = p.status().cloned().unwrap_or_default();
    let annotations = p.metadata.annotations.clone().unwrap_or_default();
    let now = now_seconds();
    let mut decision = pipeline::decide(
        spec,
        &current,
        &Observed {
            name: &pref.name,
            generation: p.metadata.generation,
            created_at: p.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            now,
            annotations: &annotations,
            runs: &runs,
            spark_available: spark.is_some(),
            cron_job_last_schedule: cron_job
                .as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(|t| t.0),
            streaming_ready,
        },
    );

    let mut children = ChildLog::default();
    let spark_apps = spark.as_ref().zip(spark_api.as_ref());
    apply_workload(
        ctx,
        &pref,
        p,
        &decision,
        Workloads {
            cron_job,
            deployment,
            streaming_app,
        },
        spark_apps,
        &mut children,
    )
    .await?;

    // Runs.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    for name in &decision.delete {
        info!(run = %name, "deleting run");
        match spark_apps {
            Some((apps, api)) => {
                if let Some(app) = apps.index.get(ns, name)
                    && owned_by(&app.metadata, &pref.owner.uid)
                {
                    delete_observed(api, &*app).await?;
                }
            }
            None => {
                if let Some(job) = job_list
                    .iter()
                    .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
                {
                    delete_child(&jobs, &**job, &ctx.checked).await?;
                }
            }
        }
    }
    let owner = format!("FeaturePipeline {ns}/{}", pref.name);
    for plan in &decision.create {
        info!(run = %plan.name, trigger = plan.trigger.as_str(), "starting run");
        match spark_apps {
            Some(apps) if spec.engine.spark.is_some() => {
                let app = dynamic(render::spark_application(&pref, spec, Some(plan)))?;
                apply_dynamic(apps, &app, &pref.owner.uid, &owner, &mut children).await?;
            }
            _ => {
                let job = render::run_job(&pref, spec, plan);
                // A run is created once: one GET first, as the index keeps
                // no Job spec to compare with (and lags a create anyway).
                let existing = jobs.get_opt(&plan.name).await?;
                children.note(
                    apply_child(
                        &jobs,
                        &job,
                        existing.as_ref(),
                        &pref.owner.uid,
                        &owner,
                        &ctx.checked,
                    )
                    .await?,
                );
            }
        }
    }
    children.report_into(
        &mut decision.status.conditions,
        &mut decision.events,
        None,
        p.metadata.generation,
        now,
    );

    if decision.status != current {
        super::write_status(
            &Api::<FeaturePipeline>::namespaced(client.clone(), &pref.namespace),
            &pref.name,
            "FeaturePipeline",
            p.metadata.resource_version.as_deref(),
            &decision.status,
        )
        .await?;
    }
    let reference = p.object_ref(&());
    let notify = crate::notify::Subject::pipeline(p);
    for t in &decision.events {
        publish(&ctx.recorder, &reference, t).await;
        ctx.recorder.notify(notify.as_ref(), &reference, t);
    }
    count_outcomes(ctx, &pref, &runs, &reference, notify.as_ref()).await;
    ctx.metrics.set_pipeline_freshness(
        &pref.namespace,
        &pref.name,
        crate::pipeline::freshness_reference(&decision.status),
    );
    Ok(Action::requeue(
        decision
            .requeue_after
            .unwrap_or_else(|| super::resync_after(&pref.owner.uid)),
    ))
}

/// The pipeline's standing workload objects the operator manages.
struct Workloads {
    cron_job: Option<Arc<CronJob>>,
    deployment: Option<Arc<Deployment>>,
    streaming_app: Option<Arc<DynamicObject>>,
}

/// Applies a Spark object unless an object of that name exists that the
/// pipeline does not own (then records the conflict and writes nothing).
async fn apply_dynamic(
    (apps, api): (&SparkApps, &Api<DynamicObject>),
    app: &DynamicObject,
    uid: &str,
    owner: &str,
    children: &mut ChildLog,
) -> Result<()> {
    let name = app.metadata.name.clone().unwrap_or_default();
    let ns = app.metadata.namespace.clone().unwrap_or_default();
    let existing = fetch_unless_indexed(&apps.index, api, &ns, &name).await?;
    if let Some(o) = &existing
        && !owned_by(&o.metadata, uid)
    {
        let kind = app
            .types
            .as_ref()
            .map_or("SparkApplication", |t| t.kind.as_str());
        children.conflict(format!(
            "{kind} {}/{name} already exists and is not owned by {owner}: the operator never takes over an object it did not create; delete or rename it",
            o.metadata.namespace.clone().unwrap_or_default()
        ));
        return Ok(());
    }
    apply_if_changed(api, app, existing.as_ref().map(|a| &a.metadata), |a| {
        &mut a.metadata
    })
    .await?;
    Ok(())
}

/// Writes one standing child (`<pipeline>`, its ConfigMap) against the
/// object of that name as it exists.
struct Standing<'a> {
    ctx: &'a Context,
    uid: &'a str,
    owner: &'a str,
}

impl Standing<'_> {
    async fn apply<K>(&self, index: &Index<K>, desired: &K, children: &mut ChildLog) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let ns = desired.meta().namespace.clone().unwrap_or_default();
        let name = desired.meta().name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &ns);
        let existing = fetch_unless_indexed(index, &api, &ns, &name).await?;
        let wrote = apply_child(
            &api,
            desired,
            existing.as_deref(),
            self.uid,
            self.owner,
            &self.ctx.checked,
        )
        .await?;
        children.note(wrote);
        Ok(())
    }
}

async fn apply_workload(
    ctx: &Context,
    pref: &PipelineRef,
    p: &FeaturePipeline,
    decision: &Decision,
    observed: Workloads,
    spark: Option<(&SparkApps, &Api<DynamicObject>)>,
    children: &mut ChildLog,
) -> Result<()> {
    if !decision.apply {
        return Ok(());
    }
    let Workloads {
        cron_job,
        deployment,
        streaming_app,
    } = observed;
    let client = ctx.client.clone();
    let kids = &ctx.children;
    let ns = pref.namespace.as_str();
    let uid = pref.owner.uid.as_str();
    let owner = format!("FeaturePipeline {ns}/{}", pref.name);
    let spec = &p.spec;
    let standing = Standing {
        ctx,
        uid,
        owner: &owner,
    };
    standing
        .apply(&kids.config_maps, &render::config_map(pref, spec), children)
        .await?;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match decision.workload {
        Workload::CronJob => {
            standing
                .apply(&kids.cron_jobs, &render::cron_job(pref, spec), children)
                .await?;
        }
        Workload::StreamingDeployment => {
            let desired = render::streaming_deployment(pref, spec);
            standing
                .apply(&kids.deployments, &desired, children)
                .await?;
        }
        Workload::StreamingSpark => {
            if let Some(spark) = spark {
                let app = dynamic(render::spark_application(pref, spec, None))?;
                apply_dynamic(spark, &app, uid, &owner, children).await?;
            }
        }
        Workload::None => {}
    }
    // A trigger or engine change leaves the old workload behind: remove it.
    if decision.workload != Workload::CronJob
        && let Some(c) = cron_job.filter(|c| owned_by(&c.metadata, uid))
    {
        delete_child(&cron_jobs, &*c, &ctx.checked).await?;
    }
    if decision.workload != Workload::StreamingDeployment
        && let Some(d) = deployment.filter(|d| owned_by(&d.metadata, uid))
    {
        delete_child(&deployments, &*d, &ctx.checked).await?;
    }
    if let (Some((_, api)), Some(app)) = (spark, streaming_app)
        && decision.workload != Workload::StreamingSpark
    {
        delete_observed(api, &*app).await?;
    }
    Ok(())
}

async fn count_outcomes(
    ctx: &Context,
    pref: &PipelineRef,
    runs: &[ObservedRun],
    reference: &ObjectReference,
    notify: Option<&crate::notify::Subject>,
) {
    let mut fresh = Vec::new();
    if let Ok(mut counted) = ctx.counted.lock() {
        for r in runs {
            if r.phase.is_active() {
                continue;
            }
            let key = format!("{}/{}", pref.namespace, r.name);
            if counted.insert(key) && r.finished_at.is_some_and(|f| f >= ctx.started) {
                fresh.push(r.clone());
            }
        }
        if counted.len() > 100_000 {
            counted.clear();
        }
    }
    for r in fresh {
        let outcome = if r.phase == RunPhase::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        ctx.metrics
            .pipeline_run(&pref.namespace, &pref.name, outcome);
        let t = Transition {
            warning: r.phase == RunPhase::Failed,
            reason: if r.phase == RunPhase::Succeeded {
                "RunSucceeded"
            } else {
                "RunFailed"
            },
            message: format!("run {} ({}) {outcome}", r.name, r.trigger.as_str()),
        };
        publish(&ctx.recorder, reference, &t).await;
        ctx.recorder.notify(notify, reference, &t);
    }
}

/// Runs the FeaturePipeline controller for one scope (a namespace, or all
/// when `None`) until `stop` resolves, for the pipelines matching
/// `instance_selector` (see `Config::instance_selector`). `ctx` is this
/// scope's alone: the watches started here feed its indexes. It watches the
/// pipelines, their CronJobs, Deployments and ConfigMaps, every run Job and
/// run pod (by the `mlctl.io/pipeline` label: scheduled Jobs belong to the
/// CronJob), and the SparkApplications once discovery finds the kind; it
/// forgets deleted pipelines' backoff and drops their metric series.
pub async fn run(
    ctx: Arc<Context>,
    scope: Option<String>,
    instance_selector: String,
    concurrency: u16,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use kube::runtime::{Controller, controller as runtime_controller};

    let client = ctx.client.clone();
    let pipelines: Api<DeserializeGuard<FeaturePipeline>> = match scope.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let watched = super::index::list_config().labels(&instance_selector);
    // The pipelines' own watch; a deleted pipeline's backoff goes with it.
    let forget = ctx.clone();
    // Kept whole: pipelines are few.
    let (store, trigger) = super::index::parents(
        pipelines,
        watched,
        Arc::default(),
        move |p| forget.forget(p),
        |p| p,
    );
    let spark = super::spark::triggers(
        client.clone(),
        scope.clone(),
        super::index::list_config().labels(&format!(
            "app.kubernetes.io/managed-by={FIELD_MANAGER},{PIPELINE_LABEL}"
        )),
        ctx.spark.clone(),
    );
    let controller = ctx
        .children
        .attach(
            Controller::for_stream(trigger, store.clone()),
            &client,
            scope.as_deref(),
        )
        .reconcile_on(spark)
        .trigger_backoff(super::index::PerWatchBackoff)
        .with_config(runtime_controller::Config::default().concurrency(concurrency));
    let gauge = ctx.metrics.clone();
    let counter = tokio::spawn(async move {
        // Reads the in-memory cache only; no API calls.
        loop {
            gauge.set_managed(KIND, store.state().len() as i64);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    // The series of a deleted pipeline go with it: a watch of deletions (a
    // reconcile never sees one without a finalizer, and none is needed).
    let pruner = tokio::spawn(crate::telemetry::prune::prune_deleted_pipelines(
        client.clone(),
        scope.clone(),
        ctx.metrics.clone(),
    ));
    let backoff = ctx.clone();
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Ok((pipeline, _)) = result {
                backoff.backoff.succeeded(&pipeline);
            }
            futures::future::ready(())
        })
        .await;
    counter.abort();
    pruner.abort();
}
