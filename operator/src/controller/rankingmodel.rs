//! The RankingModel reconciler: the thin I/O shell around [`crate::rollout`]
//! and [`crate::render`]. Read what exists, decide, apply only what changed,
//! write status only when it changed, publish the transitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use mlctl_crds::rankingmodel::{InterleaveCounts, RankingModelStatus};
use mlctl_crds::{FeaturePipeline, RankingModel, RankingModelSpec};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::children::{Checked, ChildLog, apply_child, delete_child};
use super::index::{Index, Scopes, Seen};
use super::owned::ModelChildren;
use super::stored::StoredModel;
use super::{Recorder, invalid_object, now_seconds, owned_by, publish};
use crate::analysis;
use crate::diagnose;
use crate::error::{Error, Result};
use crate::render::{
    self, FIELD_MANAGER, INITIAL_REPLICAS_MANAGER, ModelRef, Track, revision_selector,
    selector_string,
};
use crate::rollout::{self, ObservedDeployment, Requests, Transition, compare, set_condition};
use crate::routing;
use crate::telemetry::Metrics;

/// Shared state of the RankingModel controller.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Rendering settings.
    pub render: render::RenderConfig,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Takes the analysis measurements, off the reconcile path.
    pub analysis: analysis::Worker,
    /// Children checked for hand edits since their last change.
    pub checked: Arc<Checked>,
    /// Each scope's children, by model, and its FeaturePipelines: what a
    /// reconcile reads instead of listing.
    pub children: Scopes<ModelChildren>,
    /// Consecutive failures per model (requeue backoff).
    pub backoff: super::Backoff<StoredModel>,
    /// The models' resourceVersions as their watch delivered them.
    pub seen: Arc<Seen>,
}

impl Context {
    /// The controller's shared state.
    pub fn new(
        client: kube::Client,
        render: render::RenderConfig,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        analysis: &analysis::Settings,
        checked: Arc<Checked>,
        children: Scopes<ModelChildren>,
    ) -> Self {
        let secrets = Arc::new(analysis::secrets::KubeSource::new(client.clone()));
        Context {
            analysis: analysis::Worker::new(analysis.prober(secrets), analysis)
                .with_jobs(analysis::job::Runner::new(client.clone())),
            client,
            render,
            recorder,
            metrics,
            checked,
            children,
            backoff: super::Backoff::default(),
            seen: Arc::default(),
        }
    }
}

impl Context {
    /// Drops the per-object state of a deleted model (its failure count,
    /// its analysis jobs): nothing the operator keeps grows with models
    /// that no longer exist.
    pub fn forget(&self, model: &DeserializeGuard<RankingModel>) {
        self.backoff.succeeded(&StoredModel::reference(model));
        if let Some(ns) = model.namespace() {
            self.analysis.forget(&ns, &model.name_any());
        }
    }
}

const KIND: &str = "rankingmodel";

/// Reconciles one RankingModel. An object that does not deserialize (schema
/// drift, a hand-edited status) gets a Warning event and is left alone; the
/// watch and every other object carry on.
pub async fn reconcile(stored: Arc<StoredModel>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles(KIND);
    let guard = stored.unpack();
    let model = match &guard.0 {
        Ok(model) => model,
        Err(invalid) => {
            ctx.metrics.reconcile_error(KIND, "invalid_object");
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "cannot read RankingModel");
            let (reference, transition) = invalid_object::<RankingModel>(invalid);
            publish(&ctx.recorder, &reference, &transition).await;
            return Ok(Action::await_change());
        }
    };
    let result = reconcile_inner(model, &ctx).await;
    ctx.metrics.reconcile_duration(KIND, started.elapsed());
    match result {
        Err(e) if e.is_conflict() => {
            // Decided from a stale copy; the newer one is on its way.
            debug!("status changed since this reconcile read it; deciding again");
            // Jittered: models that conflicted together (a relist, a storm
            // of edits) do not come back together.
            Ok(Action::requeue(super::jittered(Duration::from_secs(1))))
        }
        Err(e) if e.is_invalid_request() => {
            // The API server refused a child rendered from this spec (e.g. an
            // autoscaler metric it cannot accept): say so where the user
            // looks, and wait for the spec to change.
            ctx.metrics.reconcile_error(KIND, &e.metric_label());
            report_invalid(model, &ctx, &e.to_string()).await?;
            Ok(Action::await_change())
        }
        other => other,
    }
}

/// The requeue policy on errors: back off, never hot-loop.
pub fn error_policy(model: Arc<StoredModel>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(KIND, &error.metric_label());
    // Per object: one failing object backs off to minutes, the others keep
    // their pace; the count is cleared when the object reconciles.
    let delay = ctx
        .backoff
        .failed(&kube::runtime::reflector::ObjectRef::from_obj(&*model));
    warn!(%error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The children of model `name` (UID `uid`) in the index: no API call.
fn owned<K: Resource>(index: &Index<K>, ns: &str, name: &str, uid: &str) -> Vec<Arc<K>> {
    index
        .group(ns, name)
        .into_iter()
        .filter(|o| owned_by(o.meta(), uid))
        .collect()
}

/// The object `name` as it exists: from the index when the operator owns
/// one by that name, otherwise one GET (a child not created yet, or an
/// object of that name the operator does not own and must not take over).
async fn existing<K>(index: &Index<K>, api: &Api<K>, ns: &str, name: &str) -> Result<Option<Arc<K>>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match index.get(ns, name) {
        Some(o) => Ok(Some(o)),
        None => Ok(api.get_opt(name).await?.map(Arc::new)),
    }
}

fn observe(d: &Deployment) -> Option<ObservedDeployment> {
    let labels = d.metadata.labels.as_ref()?;
    let revision = labels.get(render::REVISION_LABEL)?.clone();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation >= d.metadata.generation;
    let available = current
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) == desired;
    Some(ObservedDeployment {
        name: d.metadata.name.clone()?,
        revision,
        track: labels.get(render::TRACK_LABEL).cloned(),
        desired,
        replicas: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available,
        version: labels.get(render::VERSION_LABEL).cloned(),
        uri: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(render::MODEL_URI_ANNOTATION))
            .cloned(),
    })
}

async fn reconcile_inner(model: &RankingModel, ctx: &Context) -> Result<Action> {
    let mref = ModelRef::from_model(model).ok_or(Error::MissingMetadata("uid"))?;
    if model.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = mref.namespace.as_str();
    let uid = mref.owner.uid.clone();
    let client = ctx.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let Some(kids) = ctx.children.for_namespace(ns) else {
        // Not in a watched namespace (cannot happen: the controller's own
        // watch has the same scopes).
        return Ok(Action::await_change());
    };
    kids.ready().await;

    let observed_deployments = owned(&kids.deployments, ns, &mref.name, &uid);
    let observed: Vec<ObservedDeployment> = observed_deployments
        .iter()
        .filter_map(|d| observe(d))
        .collect();
    let current = model.status().cloned().unwrap_or_default();
    let now = now_seconds();
    // The referenced AnalysisTemplates folded into the spec the rollout
    // decides from; an unresolvable reference holds everything until fixed.
    let resolved;
    let model = match analysis::templates::effective(&model.spec, |name| {
        analysis::templates::found(kids.templates.get(ns, name).as_deref())
    }) {
        Ok(std::borrow::Cow::Borrowed(_)) => model,
        Ok(std::borrow::Cow::Owned(spec)) => {
            resolved = RankingModel {
                spec,
                ..model.clone()
            };
            &resolved
        }
        Err(problems) => return hold_for_templates(model, &mref, ctx, &problems).await,
    };

    // Analysis first: its measurements are evidence the decision reads.
    let mut evidence = current.clone();
    let analysis_wake = measure(model, &mref, &mut evidence, ctx, now);
    let features = feature_gate(model, ns, &kids.pipelines, now);
    let mut decision = rollout::decide(
        &model.spec,
        &evidence,
        &rollout::Context {
            name: &mref.name,
            generation: model.metadata.generation,
            now,
            observed: &observed,
            requests: Requests::pending(
                model.metadata.annotations.as_ref(),
                &current.handled_requests,
            ),
            features: features.as_ref().map(|f| f.gate.clone()),
        },
    );
    for wake in analysis_wake
        .into_iter()
        .chain(features.and_then(|f| f.wake_at))
    {
        let secs = (wake.as_second() - now.as_second()).max(0) as u64 + 1;
        let d = Duration::from_secs(secs);
        decision.requeue_after = Some(decision.requeue_after.map_or(d, |r| r.min(d)));
    }
    explain_unavailable(&mref, &current, &observed, &mut decision, ctx, now).await;

    // Children: the operator writes only objects it owns (a conflict leaves
    // the object alone and says so) and writes back hand edits of the fields
    // it sets.
    let owner = format!("RankingModel {ns}/{}", mref.name);
    let mut children = ChildLog::default();

    // Deployments of the desired revisions.
    for plan in &decision.apply {
        let desired = render::deployment(&mref, &model.spec, &ctx.render, plan);
        let name = desired.name_any();
        let existing = match observed_deployments.iter().find(|d| d.name_any() == name) {
            Some(d) => Some(d.clone()),
            None => existing(&kids.deployments, &deployments, ns, &name).await?,
        };
        let wrote = children.note(
            apply_child(
                &deployments,
                &desired,
                existing.as_deref(),
                &uid,
                &owner,
                &ctx.checked,
            )
            .await?,
        );
        let ours = existing
            .as_ref()
            .map_or(wrote, |d| owned_by(d.meta(), &uid));
        if model.spec.autoscaling.is_some() && ours {
            // The autoscaler will own `replicas`; the main field manager must
            // never mention it, so the size is set by a second one: for a
            // Deployment nobody has sized yet (a new one, or one whose
            // creating reconcile crashed before sizing it: it still has the
            // API server's default of 1), and at every step for a canary (the
            // autoscaler targets only the stable one).
            let want = plan.initial_replicas.unwrap_or(1);
            let replicas = existing
                .as_ref()
                .and_then(|d| d.spec.as_ref())
                .and_then(|s| s.replicas);
            let resize = plan.track == Track::Canary && replicas != Some(want);
            let never_sized = existing.as_ref().is_none_or(|d| !replicas_owned(d));
            if never_sized || resize {
                set_initial_replicas(&deployments, &name, want).await?;
            }
        }
    }
    for (name, track) in &decision.relabel {
        relabel(&deployments, name, *track).await?;
    }
    for name in &decision.delete {
        if let Some(d) = observed_deployments.iter().find(|d| d.name_any() == *name) {
            info!(deployment = %name, "deleting");
            delete_child(&deployments, d, &ctx.checked).await?;
        }
    }

    // Services.
    let observed_services = owned(&kids.services, ns, &mref.name, &uid);
    let desired_services = render::services(&mref, &decision.services);
    // `<model>-preview` exists only while the model is blue-green.
    let preview = render::preview_service_name(&mref.name);
    if !desired_services.iter().any(|s| s.name_any() == preview)
        && let Some(stale) = observed_services.iter().find(|s| s.name_any() == preview)
    {
        info!(service = %preview, "deleting: the model is no longer blue-green");
        delete_child(&services, stale, &ctx.checked).await?;
    }
    for svc in desired_services {
        let name = svc.name_any();
        let existing = match observed_services.iter().find(|s| s.name_any() == name) {
            Some(s) => Some(s.clone()),
            None => existing(&kids.services, &services, ns, &name).await?,
        };
        children.note(
            apply_child(
                &services,
                &svc,
                existing.as_deref(),
                &uid,
                &owner,
                &ctx.checked,
            )
            .await?,
        );
    }

    // What the stable pods compare with the canary (shadow, interleave).
    apply_peer_config(
        &mref,
        &decision,
        &observed_services,
        kids,
        ctx,
        &model.spec,
        &mut children,
    )
    .await?;

    // Autoscaler.
    let observed_hpa = owned(&kids.autoscalers, ns, &mref.name, &uid);
    match (&model.spec.autoscaling, &decision.autoscaler_target) {
        (Some(a), Some(target)) => {
            let hpa = render::autoscaler(&mref, a, target);
            let existing = match observed_hpa.iter().find(|h| h.name_any() == hpa.name_any()) {
                Some(h) => Some(h.clone()),
                None => existing(&kids.autoscalers, &hpas, ns, &hpa.name_any()).await?,
            };
            children.note(
                apply_child(&hpas, &hpa, existing.as_deref(), &uid, &owner, &ctx.checked).await?,
            );
        }
        _ => {
            for h in &observed_hpa {
                delete_child(&hpas, h, &ctx.checked).await?;
            }
        }
    }

    // Disruption budget.
    let observed_pdb = owned(&kids.budgets, ns, &mref.name, &uid);
    match &decision.disruption_budget {
        Some(revision) => {
            let pdb = render::disruption_budget(&mref, revision);
            let existing = match observed_pdb.iter().find(|p| p.name_any() == pdb.name_any()) {
                Some(p) => Some(p.clone()),
                None => existing(&kids.budgets, &pdbs, ns, &pdb.name_any()).await?,
            };
            children.note(
                apply_child(&pdbs, &pdb, existing.as_deref(), &uid, &owner, &ctx.checked).await?,
            );
        }
        None => {
            for p in &observed_pdb {
                delete_child(&pdbs, p, &ctx.checked).await?;
            }
        }
    }
    children.report(&mut decision, model.metadata.generation, now);

    // Traffic weights on the router (Gateway API, Istio), once the pods
    // behind them exist: raised only after the canary is Ready, dropped to
    // zero at once on an abort.
    let routed = match routing::router_for(
        model
            .spec
            .rollout
            .as_ref()
            .and_then(|r| r.traffic_routing.as_ref()),
    ) {
        Some(router) if decision.status.stable.is_some() => routing::apply(
            &ctx.client,
            ns,
            router.as_ref(),
            &mref.name,
            decision.canary_weight,
            decision.header_route.as_deref(),
        )
        .await
        .map(|wrote| {
            if wrote {
                info!(weight = decision.canary_weight, "traffic weights set");
            }
        }),
        _ => Ok(()),
    };

    if decision.status != current {
        let api: Api<RankingModel> = Api::namespaced(ctx.client.clone(), ns);
        let written = super::write_status_version(
            &api,
            &mref.name,
            "RankingModel",
            model.metadata.resource_version.as_deref(),
            &decision.status,
        )
        .await?;
        // The next reconcile (already triggered by this one's child writes)
        // must decide from this status, not the one before it: wait until
        // the model's watch has delivered it (milliseconds; bounded).
        if let Some(rv) = written {
            ctx.seen
                .wait_for(ns, &mref.name, &rv, Duration::from_secs(2))
                .await;
        }
    }
    for o in &decision.outcomes {
        ctx.metrics.rollout_outcome(o.outcome);
        if let Some(secs) = o.seconds {
            ctx.metrics.rollout_duration(o.outcome, secs);
        }
    }
    for (step, secs) in &decision.steps_completed {
        ctx.metrics.step_duration(step, *secs);
    }
    let notify = crate::notify::Subject::model(model, &decision.status);
    for t in &decision.events {
        publish(&ctx.recorder, &model.object_ref(&()), t).await;
        ctx.recorder
            .notify(notify.as_ref(), &model.object_ref(&()), t);
    }
    if let Err(e) = routed {
        let transition = Transition {
            warning: true,
            reason: "TrafficRoutingFailed",
            message: e.to_string(),
        };
        publish(&ctx.recorder, &model.object_ref(&()), &transition).await;
        ctx.recorder
            .notify(notify.as_ref(), &model.object_ref(&()), &transition);
        return Err(Error::Routing(e.to_string()));
    }
    Ok(Action::requeue(
        decision
            .requeue_after
            .unwrap_or_else(|| super::resync_after(&uid)),
    ))
}

/// Writes `<model>-peer`: the decision's comparison plan, or `off`.
async fn apply_peer_config(
    mref: &ModelRef,
    decision: &rollout::Decision,
    observed_services: &[Arc<Service>],
    kids: &ModelChildren,
    ctx: &Context,
    spec: &RankingModelSpec,
    children: &mut ChildLog,
) -> Result<()> {
    // Models that never compare have no `<model>-peer` (the volume is
    // optional): no object and no read per model for the common case.
    let compares = spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.steps.iter().any(|s| compare::sample(s).is_some()))
        || decision
            .status
            .canary
            .as_ref()
            .is_some_and(|c| !c.comparisons.is_empty());
    if !compares {
        return Ok(());
    }
    let target = match (
        &decision.peer,
        decision.status.stable.as_ref(),
        decision.status.canary.as_ref(),
    ) {
        (Some(_), Some(stable), Some(canary)) => {
            let name = format!("{}-canary", mref.name);
            let cluster_ip = |s: &Service| {
                s.spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.clone())
                    .filter(|ip| !ip.is_empty() && ip != "None")
            };
            // The canary Service is applied earlier in the same reconcile:
            // a new one is in the index at the next reconcile (its creation
            // re-enqueues the model).
            let ip = observed_services
                .iter()
                .find(|s| s.name_any() == name)
                .and_then(|s| cluster_ip(s))
                .or_else(|| {
                    kids.services
                        .get(&mref.namespace, &name)
                        .and_then(|s| cluster_ip(&s))
                });
            ip.map(|ip| render::PeerTarget {
                from: stable.revision.clone(),
                stable_version: stable.version.clone(),
                canary_version: canary.version.clone(),
                url: render::canary_url(&ip, &mref.name),
            })
        }
        _ => None,
    };
    let json = render::peer_json(decision.peer.as_ref().zip(target.as_ref()));
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &mref.namespace);
    let name = render::peer_config_map_name(&mref.name);
    let existing = existing(&kids.config_maps, &config_maps, &mref.namespace, &name).await?;
    let owner = format!("RankingModel {}/{}", mref.namespace, mref.name);
    let wrote = children.note(
        apply_child(
            &config_maps,
            &render::peer_config_map(mref, json),
            existing.as_deref(),
            &mref.owner.uid,
            &owner,
            &ctx.checked,
        )
        .await?,
    );
    if wrote {
        info!(
            mode = decision.peer.as_ref().map_or("off", |p| p.mode),
            "peer config written"
        );
    }
    Ok(())
}

/// Says why a revision is not available: lists the pods of the revisions
/// that have been unavailable past the grace (only those, by label), and
/// folds what they show into the decided status and events. Best effort: a
/// refused list leaves the decision as it was. While a revision stays
/// unavailable the model is requeued (the operator does not watch Pods).
async fn explain_unavailable(
    mref: &ModelRef,
    current: &RankingModelStatus,
    observed: &[ObservedDeployment],
    decision: &mut rollout::Decision,
    ctx: &Context,
    now: Timestamp,
) {
    let (suspects, recheck) = diagnose::suspects(current, &decision.status, observed, now);
    if let Some(d) = recheck {
        decision.requeue_after = Some(decision.requeue_after.map_or(d, |r| r.min(d)));
    }
    if suspects.is_empty() {
        return;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &mref.namespace);
    let mut findings = Vec::new();
    for suspect in suspects {
        let selector = selector_string(&revision_selector(&mref.name, &suspect.revision));
        match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                let problems = diagnose::diagnose(&list.items, now);
                findings.extend(diagnose::Finding::new(suspect, problems));
            }
            Err(e) => {
                warn!(error = %e, revision = %suspect.revision, "cannot list the pods of an unavailable revision");
            }
        }
    }
    for f in &findings {
        debug!(summary = %f.summary(), "diagnosed");
    }
    diagnose::annotate(decision, current, &findings);
}

/// Folds the measurements the analysis worker finished into `status` and
/// hands it those now due. Never waits on the network: a slow endpoint holds
/// up only its own measurements, and its result re-enqueues the model.
/// Returns when to look again.
fn measure(
    model: &RankingModel,
    mref: &ModelRef,
    status: &mut RankingModelStatus,
    ctx: &Context,
    now: Timestamp,
) -> Option<Timestamp> {
    let (Some(vars), Some(canary)) = (canary_vars(mref, status), status.canary.as_ref()) else {
        ctx.analysis.forget(&mref.namespace, &mref.name);
        return None;
    };
    let key = analysis::worker::ModelKey {
        namespace: mref.namespace.clone(),
        name: mref.name.clone(),
        uid: mref.owner.uid.clone(),
        revision: canary.revision.clone(),
        started_at: canary.started_at.as_ref().map(|t| t.0),
    };
    let active = rollout::active_analysis(&model.spec, status);
    let mut statuses = status
        .analysis
        .as_ref()
        .map(|a| a.metrics.clone())
        .unwrap_or_default();
    let mut jobs = Vec::new();
    for a in &active {
        for (metric, due_at) in analysis::due(&a.metrics, a.step, &mut statuses, now) {
            jobs.push(analysis::worker::Job {
                subject: analysis::worker::Subject::Metric {
                    name: metric.name.clone(),
                    step: a.step,
                    due_at,
                },
                task: analysis::worker::Task::for_metric(
                    metric,
                    a.step,
                    &statuses,
                    &model.spec.runtime.placement,
                ),
            });
        }
    }
    let interleave = read_interleaving(model, status, now);
    jobs.extend(interleave.as_ref().and_then(|(_, job)| job.clone()));
    let polled = ctx.analysis.poll(&key, &vars, jobs);

    for done in polled.finished {
        match (done.subject, done.reading) {
            (
                analysis::worker::Subject::Metric { name, step, .. },
                analysis::worker::Reading::Value(result),
            ) => {
                let metric = active
                    .iter()
                    .filter(|a| a.step == step)
                    .flat_map(|a| a.metrics.iter())
                    .find(|m| m.name == name);
                if let Some(outcome) = metric
                    .and_then(|m| analysis::record_in(m, step, &mut statuses, result, done.at))
                {
                    debug!(metric = %name, ?step, outcome = outcome.as_str(), "measured");
                    ctx.metrics.analysis_measurement(outcome.as_str());
                }
            }
            (
                analysis::worker::Subject::Interleave { step, .. },
                analysis::worker::Reading::ByLabel(reading),
            ) => {
                let reading = reading.map(|by| InterleaveCounts {
                    canary: by.get("canary").copied().unwrap_or(0.0).round() as i64,
                    stable: by.get("stable").copied().unwrap_or(0.0).round() as i64,
                    ties: by.get("tie").copied().unwrap_or(0.0).round() as i64,
                });
                if let Err(e) = &reading {
                    warn!(error = %e, "cannot read the interleaving outcome counters");
                }
                compare::record_reading(status, step, reading, done.at);
            }
            _ => {}
        }
    }
    if !active.is_empty() {
        status.analysis.get_or_insert_with(Default::default).metrics = statuses;
    }

    let in_flight = |s: &analysis::worker::Subject| polled.in_flight.contains(s);
    let mut wake = active
        .iter()
        .filter_map(|a| {
            let statuses = status.analysis.as_ref().map_or(&[][..], |x| &x.metrics);
            analysis::next_wake(&a.metrics, a.step, statuses, |name, due_at| {
                in_flight(&analysis::worker::Subject::Metric {
                    name: name.into(),
                    step: a.step,
                    due_at,
                })
            })
        })
        .min();
    if let Some((step, _)) = interleave {
        // The next reading, READ_INTERVAL after the last one (recorded above).
        let last = analysis::worker::interleave_read_at(status, step);
        let next = last.map_or(now, |t| {
            t + SignedDuration::from_secs(compare::READ_INTERVAL)
        });
        let reading = analysis::worker::Subject::Interleave { step, after: last };
        if !in_flight(&reading) {
            wake = Some(wake.map_or(next, |w| w.min(next)));
        }
    }
    if !polled.in_flight.is_empty() {
        // The worker re-enqueues the model when a result lands; this only
        // bounds the wait should that notification be missed.
        let recheck = now + ctx.analysis.recheck_after();
        wake = Some(wake.map_or(recheck, |w| w.min(recheck)));
    }
    wake
}

/// The placeholders of the current canary's queries (None without one).
fn canary_vars(mref: &ModelRef, status: &RankingModelStatus) -> Option<analysis::Vars> {
    let canary = status.canary.as_ref()?.version.clone();
    Some(analysis::Vars {
        model: mref.name.clone(),
        namespace: mref.namespace.clone(),
        version: canary.clone(),
        track: "canary".into(),
        stable_version: status
            .stable
            .as_ref()
            .map(|s| s.version.clone())
            .unwrap_or_default(),
        canary_version: canary,
    })
}

/// The interleave step whose outcome counters are read now (its baseline
/// first, then the counts since), with the reading to take when one is due
/// (every READ_INTERVAL); the worker takes it.
fn read_interleaving(
    model: &RankingModel,
    status: &RankingModelStatus,
    now: Timestamp,
) -> Option<(i32, Option<analysis::worker::Job>)> {
    let (step, il) = compare::due_interleave(&model.spec, status)?;
    let last = analysis::worker::interleave_read_at(status, step);
    let due = last.is_none_or(|t| t + SignedDuration::from_secs(compare::READ_INTERVAL) <= now);
    let query = il
        .prometheus
        .query
        .as_deref()
        .unwrap_or(DEFAULT_OUTCOMES_QUERY);
    let job = due.then(|| analysis::worker::Job {
        subject: analysis::worker::Subject::Interleave { step, after: last },
        task: analysis::worker::Task::Interleave {
            prometheus: il.prometheus.clone(),
            query: query.to_string(),
        },
    });
    Some((step, job))
}

/// The outcome counts of an interleave step when the step names no query.
pub const DEFAULT_OUTCOMES_QUERY: &str = "sum by (winner) (ranker_interleave_outcomes_total{namespace=\"{{namespace}}\",model=\"{{model}}\",version=\"{{stable_version}}\",canary_version=\"{{canary_version}}\"})";

/// The verdict on the model's feature dependencies (None without any).
fn feature_gate(
    model: &RankingModel,
    ns: &str,
    pipelines: &Index<DeserializeGuard<FeaturePipeline>>,
    now: Timestamp,
) -> Option<FeatureVerdict> {
    if model.spec.features.is_empty() {
        return None;
    }
    // From the watch's store (a pipeline that does not deserialize counts
    // as missing, as a failed GET did).
    let pipelines: Vec<FeaturePipeline> = model
        .spec
        .features
        .iter()
        .filter_map(|dep| pipelines.get(ns, &dep.pipeline))
        .filter_map(|p| p.0.as_ref().ok().cloned())
        .collect();
    crate::features::evaluate(&model.spec.features, &pipelines, now).map(|v| FeatureVerdict {
        wake_at: v.wake_at,
        gate: rollout::FeatureGate {
            ready: v.ready,
            strict: v.strict,
            reason: v.reason,
            message: v.message,
        },
    })
}

struct FeatureVerdict {
    gate: rollout::FeatureGate,
    wake_at: Option<Timestamp>,
}

/// Whether some field manager set the Deployment's `replicas` (the
/// operator's sizing manager, or the autoscaler through the scale
/// subresource); a created Deployment that nobody sized has only the API
/// server's default, which no manager owns.
fn replicas_owned(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|m| {
        m.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .is_some_and(|spec| spec.get("f:replicas").is_some())
    })
}

async fn set_initial_replicas(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        name,
        &PatchParams::apply(INITIAL_REPLICAS_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn relabel(api: &Api<Deployment>, name: &str, track: Track) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {render::TRACK_LABEL: track.as_str()}},
    });
    match api
        .patch(
            name,
            &PatchParams::apply(&format!("{FIELD_MANAGER}-track")).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    client: &kube::Client,
    mref: &ModelRef,
    resource_version: Option<&str>,
    status: &RankingModelStatus,
) -> Result<()> {
    let api: Api<RankingModel> = Api::namespaced(client.clone(), &mref.namespace);
    super::write_status(&api, &mref.name, "RankingModel", resource_version, status).await
}

/// Holds a model whose AnalysisTemplates cannot be resolved: nothing is
/// applied, `AnalysisHealthy` is False naming the template or metric and
/// the fix, with a Warning Event when that changes. A template's watch
/// reconciles the model again when it is created or fixed.
async fn hold_for_templates(
    model: &RankingModel,
    mref: &ModelRef,
    ctx: &Context,
    problems: &[analysis::templates::Problem],
) -> Result<Action> {
    let (reason, message) = analysis::templates::summary(problems);
    if hold(
        model,
        ctx,
        "AnalysisHealthy",
        reason,
        message.clone(),
        |_| {},
    )
    .await?
    {
        warn!(%reason, %message, "rollout held: analysis templates");
    }
    Ok(Action::requeue(super::resync_after(&mref.owner.uid)))
}

/// Marks the model as not Ready because of its spec, once (no churn).
async fn report_invalid(model: &RankingModel, ctx: &Context, message: &str) -> Result<()> {
    hold(
        model,
        ctx,
        "Ready",
        "InvalidSpec",
        message.to_string(),
        |status| {
            status.observed_generation = model.metadata.generation;
            status.phase = Some(mlctl_crds::rankingmodel::Phase::Degraded);
        },
    )
    .await
    .map(|_| ())
}

/// A model the operator does not act on: condition `type_` False with
/// `reason` and `message` (and whatever `also` sets), written with a
/// Warning Event only when the status changes. Returns whether it wrote.
async fn hold(
    model: &RankingModel,
    ctx: &Context,
    type_: &str,
    reason: &'static str,
    message: String,
    also: impl FnOnce(&mut RankingModelStatus),
) -> Result<bool> {
    let Some(mref) = ModelRef::from_model(model) else {
        return Ok(false);
    };
    let mut status = model.status().cloned().unwrap_or_default();
    let before = status.clone();
    set_condition(
        &mut status.conditions,
        type_,
        "False",
        reason,
        &message,
        model.metadata.generation,
        now_seconds(),
    );
    also(&mut status);
    if status == before {
        return Ok(false);
    }
    write_status(
        &ctx.client,
        &mref,
        model.metadata.resource_version.as_deref(),
        &status,
    )
    .await?;
    publish(
        &ctx.recorder,
        &model.object_ref(&()),
        &Transition {
            warning: true,
            reason,
            message,
        },
    )
    .await;
    Ok(true)
}
