//! The FeaturePipeline reconciler: the thin I/O shell around
//! [`crate::pipeline`]. Read the runs and workload that exist, decide, apply
//! only what changed, write status only when it changed, publish events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Recorder;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::DeserializeGuard;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Api, Resource};
use mlctl_crds::FeaturePipeline;
use mlctl_crds::featurepipeline::SchemaStatus;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::children::{Checked, ChildLog, apply_child, delete_child, delete_observed};
use super::{apply_if_changed, invalid_object, now_seconds, owned_by, publish};
use crate::error::{Error, Result};
use crate::pipeline::naming::{
    INTERVAL_START_LABEL, JOB_NAME_LABELS, PIPELINE_LABEL, RUN_LABEL, SCHEMA_HASH_ANNOTATION,
    SCHEMA_VERSION_ANNOTATION, SPARK_APP_LABEL, TRIGGER_LABEL, config_map_name,
};
use crate::pipeline::{
    self, Decision, Observed, ObservedRun, PipelineRef, RunPhase, RunTrigger, Workload, render,
};
use crate::render::FIELD_MANAGER;
use crate::rollout::Transition;
use crate::telemetry::Metrics;

const KIND: &str = "featurepipeline";

/// Shared state of the FeaturePipeline controller.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Children checked for hand edits since their last change.
    pub checked: Checked,
    /// Runs whose outcome was counted (namespace/name), so that each counts
    /// once per process; runs that finished before the process started are
    /// not counted.
    counted: Mutex<HashSet<String>>,
    started: Timestamp,
    /// Consecutive failures per pipeline (requeue backoff).
    pub backoff: super::Backoff<DeserializeGuard<FeaturePipeline>>,
}

impl Context {
    /// The controller's shared state.
    pub fn new(client: kube::Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            recorder,
            metrics,
            checked: Checked::default(),
            counted: Mutex::new(HashSet::new()),
            started: Timestamp::now(),
            backoff: super::Backoff::default(),
        }
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

/// The SparkApplication resource when its CRD is served (checked on every
/// reconcile of a Spark pipeline, so a CRD installed later is picked up).
async fn spark_resource(client: &kube::Client) -> Option<ApiResource> {
    let gvk = GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication");
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Some(resource),
        Err(e) => {
            debug!(error = %e, "SparkApplication is not served");
            None
        }
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn schema_of(meta: &ObjectMeta) -> Option<SchemaStatus> {
    Some(SchemaStatus {
        version: annotation(meta, SCHEMA_VERSION_ANNOTATION)?.parse().ok()?,
        hash: annotation(meta, SCHEMA_HASH_ANNOTATION)?.to_string(),
    })
}

/// The report in the termination message of the run's pods (the newest
/// terminated container that reported one).
fn report_of(run: &str, pods: &[Pod]) -> Option<pipeline::RunReport> {
    let mut best: Option<(Option<Timestamp>, pipeline::RunReport)> = None;
    for pod in pods {
        let belongs = JOB_NAME_LABELS
            .iter()
            .chain([SPARK_APP_LABEL, RUN_LABEL].iter())
            .any(|k| label(&pod.metadata, k) == Some(run));
        if !belongs {
            continue;
        }
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for cs in statuses.into_iter().flatten() {
            let Some(term) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            let Some(report) = term.message.as_deref().and_then(pipeline::parse_report) else {
                continue;
            };
            let at = term.finished_at.as_ref().map(|t| t.0);
            if best.as_ref().is_none_or(|(b, _)| at >= *b) {
                best = Some((at, report));
            }
        }
    }
    best.map(|(_, r)| r)
}

fn observe_job(job: &Job, pods: &[Pod]) -> Option<ObservedRun> {
    let meta = &job.metadata;
    let trigger = RunTrigger::parse(label(meta, TRIGGER_LABEL)?)?;
    let name = meta.name.clone()?;
    let status = job.status.clone().unwrap_or_default();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
            .cloned()
    };
    let (phase, finished) = if let Some(c) = condition("Complete") {
        (
            RunPhase::Succeeded,
            status
                .completion_time
                .clone()
                .or(c.last_transition_time)
                .map(|t| t.0),
        )
    } else if let Some(c) = condition("Failed") {
        (RunPhase::Failed, c.last_transition_time.map(|t| t.0))
    } else if status.start_time.is_some() {
        (RunPhase::Running, None)
    } else {
        (RunPhase::Pending, None)
    };
    let report = if phase == RunPhase::Pending {
        None
    } else {
        report_of(&name, pods)
    };
    Some(ObservedRun {
        interval_start: label(meta, INTERVAL_START_LABEL).and_then(|v| v.parse().ok()),
        trigger,
        phase,
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        started_at: status.start_time.map(|t| t.0),
        finished_at: finished,
        report,
        schema: schema_of(meta),
        name,
    })
}

fn spark_time(app: &DynamicObject, field: &str) -> Option<Timestamp> {
    app.data.get("status")?.get(field)?.as_str()?.parse().ok()
}

fn spark_state(app: &DynamicObject) -> Option<&str> {
    app.data
        .get("status")?
        .get("applicationState")?
        .get("state")?
        .as_str()
}

fn observe_spark(app: &DynamicObject, pods: &[Pod]) -> Option<ObservedRun> {
    let meta = &app.metadata;
    let trigger = RunTrigger::parse(label(meta, TRIGGER_LABEL)?)?;
    let name = meta.name.clone()?;
    let phase = RunPhase::from_spark_state(spark_state(app));
    let finished = if phase.is_active() {
        None
    } else {
        spark_time(app, "terminationTime").or_else(|| spark_time(app, "lastSubmissionAttemptTime"))
    };
    Some(ObservedRun {
        interval_start: label(meta, INTERVAL_START_LABEL).and_then(|v| v.parse().ok()),
        trigger,
        phase,
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        started_at: spark_time(app, "submissionTime")
            .or_else(|| spark_time(app, "lastSubmissionAttemptTime")),
        finished_at: finished.or_else(|| (!phase.is_active()).then(now_seconds)),
        report: report_of(&name, pods),
        schema: schema_of(meta),
        name,
    })
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}

fn dynamic(value: serde_json::Value) -> Result<DynamicObject> {
    serde_json::from_value(value).map_err(|source| Error::Serialize {
        what: "SparkApplication",
        source,
    })
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
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);

    let selector = format!("{PIPELINE_LABEL}={}", pref.name);
    let lp = ListParams::default().labels(&selector);
    let spark = if spec.engine.spark.is_some() {
        spark_resource(&client).await
    } else {
        None
    };
    let spark_api: Option<Api<DynamicObject>> = spark
        .as_ref()
        .map(|r| Api::namespaced_with(client.clone(), ns, r));

    let job_list = jobs.list(&lp).await?.items;
    let pod_list = pods.list(&lp).await?.items;
    let mut runs: Vec<ObservedRun> = job_list
        .iter()
        .filter_map(|j| observe_job(j, &pod_list))
        .collect();
    let mut streaming_app = None;
    if let Some(api) = &spark_api {
        for app in api.list(&lp).await?.items {
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

    let cron_job = get_opt(&cron_jobs, &pref.name).await?;
    let deployment = get_opt(&deployments, &pref.name).await?;
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
    apply_workload(
        ctx,
        &pref,
        p,
        &decision,
        Standing {
            cron_job: cron_job.as_ref(),
            deployment: deployment.as_ref(),
            streaming_app: streaming_app.as_ref(),
        },
        spark_api.as_ref(),
        &config_maps,
        &mut children,
    )
    .await?;

    // Runs.
    for name in &decision.delete {
        info!(run = %name, "deleting run");
        match &spark_api {
            Some(api) => {
                if let Some(app) = api.get_opt(name).await?
                    && owned_by(&app.metadata, &pref.owner.uid)
                {
                    delete_observed(api, &app).await?;
                }
            }
            None => {
                if let Some(job) = job_list
                    .iter()
                    .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
                {
                    delete_child(&jobs, job, &ctx.checked).await?;
                }
            }
        }
    }
    let owner = format!("FeaturePipeline {ns}/{}", pref.name);
    for plan in &decision.create {
        info!(run = %plan.name, trigger = plan.trigger.as_str(), "starting run");
        match &spark_api {
            Some(api) if spec.engine.spark.is_some() => {
                let app = dynamic(render::spark_application(&pref, spec, Some(plan)))?;
                apply_dynamic(api, &app, &pref.owner.uid, &owner, &mut children).await?;
            }
            _ => {
                let job = render::run_job(&pref, spec, plan);
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
    for t in &decision.events {
        publish(&ctx.recorder, &reference, t).await;
    }
    count_outcomes(ctx, &pref, &runs, &reference).await;
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

/// The pipeline's standing workload objects as observed (owned or not).
struct Standing<'a> {
    cron_job: Option<&'a CronJob>,
    deployment: Option<&'a Deployment>,
    streaming_app: Option<&'a DynamicObject>,
}

/// Applies a Spark object unless an object of that name exists that the
/// pipeline does not own (then records the conflict and writes nothing).
async fn apply_dynamic(
    api: &Api<DynamicObject>,
    app: &DynamicObject,
    uid: &str,
    owner: &str,
    children: &mut ChildLog,
) -> Result<()> {
    let name = app.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await?;
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

#[allow(clippy::too_many_arguments)]
async fn apply_workload(
    ctx: &Context,
    pref: &PipelineRef,
    p: &FeaturePipeline,
    decision: &Decision,
    observed: Standing<'_>,
    spark_api: Option<&Api<DynamicObject>>,
    config_maps: &Api<ConfigMap>,
    children: &mut ChildLog,
) -> Result<()> {
    if !decision.apply {
        return Ok(());
    }
    let Standing {
        cron_job,
        deployment,
        streaming_app,
    } = observed;
    let client = ctx.client.clone();
    let ns = pref.namespace.as_str();
    let uid = pref.owner.uid.as_str();
    let owner = format!("FeaturePipeline {ns}/{}", pref.name);
    let spec = &p.spec;
    let cm = render::config_map(pref, spec);
    let observed_cm = get_opt(config_maps, &config_map_name(&pref.name)).await?;
    children.note(
        apply_child(
            config_maps,
            &cm,
            observed_cm.as_ref(),
            uid,
            &owner,
            &ctx.checked,
        )
        .await?,
    );
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match decision.workload {
        Workload::CronJob => {
            let desired = render::cron_job(pref, spec);
            children.note(
                apply_child(&cron_jobs, &desired, cron_job, uid, &owner, &ctx.checked).await?,
            );
        }
        Workload::StreamingDeployment => {
            let desired = render::streaming_deployment(pref, spec);
            children.note(
                apply_child(
                    &deployments,
                    &desired,
                    deployment,
                    uid,
                    &owner,
                    &ctx.checked,
                )
                .await?,
            );
        }
        Workload::StreamingSpark => {
            if let Some(api) = spark_api {
                let app = dynamic(render::spark_application(pref, spec, None))?;
                apply_dynamic(api, &app, uid, &owner, children).await?;
            }
        }
        Workload::None => {}
    }
    // A trigger or engine change leaves the old workload behind: remove it.
    if decision.workload != Workload::CronJob
        && let Some(c) = cron_job.filter(|c| owned_by(&c.metadata, uid))
    {
        delete_child(&cron_jobs, c, &ctx.checked).await?;
    }
    if decision.workload != Workload::StreamingDeployment
        && let Some(d) = deployment.filter(|d| owned_by(&d.metadata, uid))
    {
        delete_child(&deployments, d, &ctx.checked).await?;
    }
    if let (Some(api), Some(app)) = (spark_api, streaming_app)
        && decision.workload != Workload::StreamingSpark
    {
        delete_observed(api, app).await?;
    }
    Ok(())
}

async fn count_outcomes(
    ctx: &Context,
    pref: &PipelineRef,
    runs: &[ObservedRun],
    reference: &ObjectReference,
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
    }
}

/// Runs the FeaturePipeline controller for one scope (a namespace, or all
/// when `None`) until `stop` resolves, for the pipelines matching
/// `instance_selector` (see `Config::instance_selector`). It watches the pipelines, their
/// CronJobs, Deployments and ConfigMaps, and every run Job (by the
/// `mlctl.io/pipeline` label: scheduled Jobs belong to the CronJob), and
/// drops the metric series of deleted pipelines.
/// SparkApplications are not watched (their CRD may be missing): the
/// reconciler requeues while one runs.
pub async fn run(
    ctx: Arc<Context>,
    scope: Option<String>,
    instance_selector: String,
    concurrency: u16,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{Controller, controller as runtime_controller, watcher};

    fn api<K>(client: &kube::Client, scope: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = ctx.client.clone();
    let scope = scope.as_deref();
    let children = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={FIELD_MANAGER},{PIPELINE_LABEL}"
    ));
    let pipelines: Api<DeserializeGuard<FeaturePipeline>> = api(&client, scope);
    let watched = watcher::Config::default()
        .any_semantic()
        .labels(&instance_selector);
    let controller = Controller::new(pipelines, watched)
        .owns(api::<CronJob>(&client, scope), children.clone())
        .owns(api::<Deployment>(&client, scope), children.clone())
        .owns(api::<ConfigMap>(&client, scope), children.clone())
        .watches(api::<Job>(&client, scope), children, |job: Job| {
            let name = label(&job.metadata, PIPELINE_LABEL)?.to_string();
            let ns = job.metadata.namespace.clone()?;
            Some(ObjectRef::<DeserializeGuard<FeaturePipeline>>::new(&name).within(&ns))
        })
        .with_config(runtime_controller::Config::default().concurrency(concurrency));
    let store = controller.store();
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
        scope.map(str::to_string),
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
