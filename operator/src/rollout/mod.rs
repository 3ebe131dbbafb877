//! The rollout state machine of a RankingModel, as a pure function:
//! (spec, status, observed Deployments, pending requests, feature verdict,
//! analysis verdicts in status, clock) → (next status, what to apply, what to
//! delete, traffic weights, events, when to look again). All state lives in
//! `status`, so a restarted operator resumes at the same step with the same
//! weight and repeats nothing it completed.
//!
//! - The first revision is deployed at full size and becomes stable once
//!   Available.
//! - A new revision next to a stable one is a canary ([`canary`]): it runs the
//!   `spec.rollout.steps` (setWeight, pause, analysis, shadow, interleave —
//!   the last two in [`compare`]) with background
//!   analysis, then scales to full size and becomes stable; without steps it
//!   replaces the stable one once Available. A failed analysis, a progress
//!   deadline or an abort request sends all traffic back to stable at once.
//! - With `spec.rollout.blueGreen` the new revision is a blue-green preview
//!   instead ([`bluegreen`]): full size behind `<model>-preview`, no user
//!   traffic until promoted, then all traffic at once; a failed
//!   post-promotion analysis switches back.
//! - A previous stable revision stays warm for `scaleDownDelaySeconds` (a
//!   rollback to it needs no new pods) and is then deleted.

pub mod bluegreen;
mod canary;
pub mod compare;
mod conditions;
mod control;
mod requests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bluegreen;
#[cfg(test)]
mod tests_canary;
#[cfg(test)]
mod tests_compare;
#[cfg(test)]
mod tests_header;

pub use canary::{ActiveAnalysis, active_analysis, canary_replicas};
pub use conditions::set_condition;
pub use requests::Requests;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    CanaryRevision, HeaderMatch, HistoryEntry, Phase, RankingModelStatus, RetiringRevision,
    StableRevision,
};

use crate::render::{
    RevisionPlan, ServiceTargets, Track, deployment_name, revision_of, revision_selector,
    selector_string,
};

/// Revisions kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;
/// Default `scaleDownDelaySeconds`.
pub const DEFAULT_SCALE_DOWN_DELAY: i64 = 30;
/// Default `abortScaleDownDelaySeconds`.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY: i64 = 30;
/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE: i64 = 600;

/// Pause reasons in `status.canary.pauseReason`.
pub mod pause {
    /// An indefinite pause step: waits for a promote request.
    pub const STEP: &str = "PauseStep";
    /// An analysis was inconclusive: waits for a person.
    pub const INCONCLUSIVE: &str = "Inconclusive";
    /// The model's features are not ready: resumes by itself.
    pub const FEATURES: &str = "FeaturesNotReady";
}

/// What the operator saw of one of the model's Deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedDeployment {
    /// Object name.
    pub name: String,
    /// Its `mlctl.io/revision` label.
    pub revision: String,
    /// Its `mlctl.io/track` label.
    pub track: Option<String>,
    /// `spec.replicas` (as defaulted by the API server).
    pub desired: i32,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// All desired pods are updated, ready and available, and the controller
    /// has seen the latest spec.
    pub available: bool,
    /// Its `mlctl.io/version` label.
    pub version: Option<String>,
    /// Its `mlctl.io/model-uri` annotation (absent on Deployments written
    /// before the operator recorded it).
    pub uri: Option<String>,
}

/// Events to publish, one per transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `Warning` instead of `Normal`.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// A rollout that ended, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `promoted`, `aborted`, `superseded` or `rolled_back`.
    pub outcome: &'static str,
    /// Seconds since the rollout started, when known.
    pub seconds: Option<f64>,
}

/// The feature dependencies' verdict, as the state machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGate {
    /// All dependencies are satisfied.
    pub ready: bool,
    /// Some dependency is `gate: Strict` (the first deployment waits too).
    pub strict: bool,
    /// Condition reason.
    pub reason: String,
    /// Condition message.
    pub message: String,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The next status (written only when it differs from the current one).
    pub status: RankingModelStatus,
    /// Deployments to render from the current spec and apply.
    pub apply: Vec<RevisionPlan>,
    /// Deployments whose `mlctl.io/track` label must change, with the new value.
    pub relabel: Vec<(String, Track)>,
    /// Deployments to delete.
    pub delete: Vec<String>,
    /// Which revisions the Services select.
    pub services: ServiceTargets,
    /// Percent of traffic a router (Gateway API, Istio) sends to the canary.
    pub canary_weight: i32,
    /// What the stable pods compare with the canary now (shadow, interleave);
    /// None: nothing (`<model>-peer` says `off`).
    pub peer: Option<compare::PeerPlan>,
    /// Requests carrying all these headers go to the canary (the last
    /// `setHeaderRoute` step reached by the live canary); None: no header
    /// route (the router removes the one it manages, if any).
    pub header_route: Option<Vec<HeaderMatch>>,
    /// Deployment the autoscaler targets (when autoscaling is set).
    pub autoscaler_target: Option<String>,
    /// Revision the disruption budget protects (when there is more than one replica).
    pub disruption_budget: Option<String>,
    /// Events to publish.
    pub events: Vec<Transition>,
    /// Rollouts that ended in this decision.
    pub outcomes: Vec<Outcome>,
    /// Steps completed in this decision: (kind, seconds the step took).
    pub steps_completed: Vec<(&'static str, f64)>,
    /// When to reconcile again even if nothing changes.
    pub requeue_after: Option<Duration>,
}

/// Inputs besides the spec and status.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Model name.
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The clock, truncated to seconds (status times have second precision).
    pub now: Timestamp,
    /// The model's Deployments.
    pub observed: &'a [ObservedDeployment],
    /// Requests not handled yet.
    pub requests: Requests,
    /// The feature dependencies' verdict (None without dependencies).
    pub features: Option<FeatureGate>,
}

fn time(ts: Timestamp) -> Time {
    Time(ts)
}

fn seconds_until(now: Timestamp, at: Timestamp) -> Duration {
    let secs = at.as_second().saturating_sub(now.as_second()).max(0);
    Duration::from_secs(secs as u64 + 1)
}

fn seconds_since(now: Timestamp, since: Option<&Time>) -> Option<f64> {
    since.map(|t| (now.as_second() - t.0.as_second()).max(0) as f64)
}

/// The replicas a model asks for (the autoscaler's minimum when autoscaled).
pub fn desired_replicas(spec: &RankingModelSpec) -> i32 {
    match &spec.autoscaling {
        Some(a) => a.min_replicas.unwrap_or(1),
        None => spec.replicas.unwrap_or(1),
    }
}

/// The decision under construction.
struct Builder<'a> {
    spec: &'a RankingModelSpec,
    ctx: &'a Context<'a>,
    now: Timestamp,
    target: String,
    status: RankingModelStatus,
    apply: Vec<RevisionPlan>,
    relabel: Vec<(String, Track)>,
    events: Vec<Transition>,
    outcomes: Vec<Outcome>,
    steps_completed: Vec<(&'static str, f64)>,
    requeue: Option<Duration>,
    /// `<model>` selects every serving pod (replica-ratio traffic split).
    split: bool,
    /// `<model>` selects only the new revision (a blue-green switch).
    switched: bool,
    canary_weight: i32,
    peer: Option<compare::PeerPlan>,
    /// Requests acted on or answered in this decision.
    handled: Vec<(&'static str, String)>,
}

impl Builder<'_> {
    fn wake_at(&mut self, at: Timestamp) {
        let d = seconds_until(self.now, at);
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn event(&mut self, warning: bool, reason: &'static str, message: String) {
        self.events.push(Transition {
            warning,
            reason,
            message,
        });
    }

    fn observed(&self, revision: &str) -> Option<&ObservedDeployment> {
        self.ctx.observed.iter().find(|d| d.revision == revision)
    }

    /// Records a revision's outcome. Every entry keeps its artifact's digest
    /// (`mlctl rollback` puts it back into `spec.model.sha256`): the revision
    /// hash covers the sha256, so a revision's digest is the target spec's when
    /// it is the target, else the one an earlier entry of it recorded.
    fn push_history(
        &mut self,
        version: &str,
        uri: &str,
        sha256: Option<String>,
        revision: &str,
        outcome: &str,
    ) {
        let sha256 = sha256.or_else(|| self.sha256_of(revision));
        push_history(
            &mut self.status,
            version,
            uri,
            sha256,
            revision,
            outcome,
            self.now,
        );
    }

    fn sha256_of(&self, revision: &str) -> Option<String> {
        if revision == self.target {
            return self.spec.model.sha256.clone();
        }
        self.status
            .history
            .iter()
            .filter(|h| h.revision == revision)
            .find_map(|h| h.sha256.clone())
    }
}

/// Decides the next step for a model.
pub fn decide(
    spec: &RankingModelSpec,
    current: &RankingModelStatus,
    ctx: &Context<'_>,
) -> Decision {
    let now = ctx.now;
    let mut b = Builder {
        spec,
        ctx,
        now,
        target: revision_of(spec),
        status: current.clone(),
        apply: Vec::new(),
        relabel: Vec::new(),
        events: Vec::new(),
        outcomes: Vec::new(),
        steps_completed: Vec::new(),
        requeue: None,
        split: false,
        switched: false,
        canary_weight: 0,
        peer: None,
        handled: Vec::new(),
    };
    b.status.observed_generation = ctx.generation;
    let rollout = spec.rollout.as_ref();
    let scale_down_delay = rollout
        .and_then(|r| r.scale_down_delay_seconds)
        .map_or(DEFAULT_SCALE_DOWN_DELAY, i64::from);
    let progress_deadline = rollout
        .and_then(|r| r.progress_deadline_seconds)
        .map_or(DEFAULT_PROGRESS_DEADLINE, i64::from);

    features_condition(&mut b);

    // A revision coming back (a rollback within the scale-down delay) is no
    // longer retiring: its warm pods make the switch immediate.
    let target = b.target.clone();
    b.status.retiring.retain(|r| r.revision != target);

    if b.status.stable.is_none() && b.status.canary.is_none() && b.status.history.is_empty() {
        recover_stable(&mut b);
    }
    let stable_revision = b.status.stable.as_ref().map(|s| s.revision.clone());
    match stable_revision.as_deref() {
        None => first_deployment(&mut b, progress_deadline),
        Some(stable) if stable == target => back_on_stable(&mut b),
        Some(_) if rollout.is_some_and(|r| r.blue_green.is_some()) => {
            bluegreen::run(&mut b, scale_down_delay, progress_deadline)
        }
        Some(_) => canary::run(&mut b, scale_down_delay, progress_deadline),
    }

    // Requests that found nothing to act on are answered, not kept pending.
    for (key, value) in ctx.requests.all() {
        if !b.handled.iter().any(|(k, _)| *k == key) {
            b.event(
                false,
                "RequestIgnored",
                format!("{key}={value} ignored: no canary it applies to"),
            );
            b.handled.push((key, value.to_string()));
        }
    }
    for (key, value) in std::mem::take(&mut b.handled) {
        b.status.handled_requests.insert(key.to_string(), value);
    }

    // Retiring revisions: deleted once their delay has passed.
    let mut delete = Vec::new();
    let mut scaled_down = Vec::new();
    b.status.retiring.retain(|r| {
        if now >= r.scale_down_at.0 {
            delete.push(deployment_name(ctx.name, &r.revision));
            scaled_down.push(format!(
                "previous revision {} ({}) scaled down after the scale-down delay",
                r.revision, r.version
            ));
            false
        } else {
            true
        }
    });
    for message in scaled_down {
        b.event(false, "ScaledDown", message);
    }
    let wakes: Vec<Timestamp> = b
        .status
        .retiring
        .iter()
        .map(|r| r.scale_down_at.0)
        .collect();
    for at in wakes {
        b.wake_at(at);
    }
    // Anything else the model owns is a leftover (e.g. a superseded revision,
    // an aborted canary past its scale-down time).
    let canary_kept = b.status.canary.as_ref().and_then(|c| {
        let gone = c.scale_down_at.as_ref().is_some_and(|t| now >= t.0);
        (!gone).then(|| c.revision.clone())
    });
    let keep: Vec<String> = b
        .status
        .stable
        .iter()
        .map(|s| s.revision.clone())
        .chain(canary_kept)
        .chain(b.status.retiring.iter().map(|r| r.revision.clone()))
        .chain(b.apply.iter().map(|p| p.revision.clone()))
        .collect();
    for d in ctx.observed {
        if !keep.contains(&d.revision) && !delete.contains(&d.name) {
            delete.push(d.name.clone());
        }
    }
    b.relabel.retain(|(name, track)| {
        ctx.observed
            .iter()
            .any(|d| &d.name == name && d.track.as_deref() != Some(track.as_str()))
    });

    let serving = b
        .status
        .stable
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_else(|| target.clone());
    let active_canary = b
        .status
        .canary
        .as_ref()
        .filter(|c| c.aborted_at.is_none() && b.status.stable.is_some())
        .map(|c| c.revision.clone());
    let services = ServiceTargets {
        stable: serving.clone(),
        canary: active_canary.clone().unwrap_or_else(|| serving.clone()),
        split: b.split && active_canary.is_some(),
        switched: b.switched && active_canary.is_some(),
        preview: bluegreen::has_preview(spec, b.status.canary.as_ref())
            .then(|| active_canary.clone().unwrap_or_else(|| serving.clone())),
    };

    summarize(spec, &mut b.status, ctx, &serving, progress_deadline);
    let replicas = desired_replicas(spec);
    Decision {
        // After a blue-green switch the autoscaler follows the traffic: the
        // previous revision keeps the size it had, to switch back to.
        autoscaler_target: spec.autoscaling.is_some().then(|| {
            let scaled = if services.switched {
                &services.canary
            } else {
                &serving
            };
            deployment_name(ctx.name, scaled)
        }),
        disruption_budget: (replicas > 1).then(|| serving.clone()),
        canary_weight: if active_canary.is_some() {
            b.canary_weight
        } else {
            0
        },
        peer: b.peer.filter(|_| active_canary.is_some()),
        header_route: active_canary
            .as_ref()
            .and_then(|_| header_route(spec, b.status.canary.as_ref())),
        status: b.status,
        apply: b.apply,
        relabel: b.relabel,
        delete,
        services,
        events: b.events,
        outcomes: b.outcomes,
        steps_completed: b.steps_completed,
        requeue_after: b.requeue,
    }
}

/// The header route in force for a live canary: the last completed
/// `setHeaderRoute` step (done once the canary has a Ready pod, as a
/// `setWeight` is done once its pods are Ready); an empty match list
/// removes it.
pub fn header_route(
    spec: &RankingModelSpec,
    canary: Option<&CanaryRevision>,
) -> Option<Vec<HeaderMatch>> {
    let canary = canary.filter(|c| c.aborted_at.is_none() && c.strategy.is_none())?;
    // The steps before the current one are done: a header step is done
    // once the canary has a Ready pod (canary.rs), like a setWeight.
    spec.rollout.as_ref()?.header_route_at(canary.step_index)
}

/// `FeaturesReady` follows the gate; without dependencies it is absent.
fn features_condition(b: &mut Builder<'_>) {
    let generation = b.ctx.generation;
    match &b.ctx.features {
        Some(gate) => set_condition(
            &mut b.status.conditions,
            "FeaturesReady",
            if gate.ready { "True" } else { "False" },
            &gate.reason,
            &gate.message,
            generation,
            b.now,
        ),
        None => b.status.conditions.0.retain(|c| c.type_ != "FeaturesReady"),
    }
}

fn features_block(b: &Builder<'_>, first: bool) -> Option<String> {
    let gate = b.ctx.features.as_ref()?;
    if gate.ready || (first && !gate.strict) {
        return None;
    }
    Some(gate.message.clone())
}

/// An empty status (no stable, no first revision under way, no history)
/// while a stable-track Deployment of the model runs means the status was lost (deleted, reset by a backup restore, never
/// written back after a crash) — not that nothing serves. Deciding from it
/// would deploy the target as the first revision, point the Services at its
/// unready pods and delete the revision that serves: an outage. Instead the
/// serving revision is read back from the Deployments (an Available one
/// first, else one with ready pods) and the rollout goes on from there: a
/// target that differs from it becomes a canary that starts at its first
/// step.
fn recover_stable(b: &mut Builder<'_>) {
    let stable_track = |d: &&ObservedDeployment| d.track.as_deref() == Some(Track::Stable.as_str());
    let serving = b
        .ctx
        .observed
        .iter()
        .filter(stable_track)
        .max_by_key(|d| (d.available, d.ready, d.revision == b.target));
    let Some(d) = serving.filter(|d| d.available || d.ready > 0) else {
        return;
    };
    let spec = b.spec;
    let version = d.version.clone().unwrap_or_default();
    let uri = d
        .uri
        .clone()
        .or_else(|| (d.revision == b.target).then(|| spec.model.uri.clone()))
        .unwrap_or_default();
    b.event(
        true,
        "StatusRecovered",
        format!(
            "status.stable was empty while Deployment {} (revision {}, version {version}) serves as stable: adopted it instead of redeploying",
            d.name, d.revision
        ),
    );
    b.status.stable = Some(StableRevision {
        version,
        uri,
        revision: d.revision.clone(),
        since: None,
    });
}

/// The first revision of a model: full size, stable once Available.
fn first_deployment(b: &mut Builder<'_>, progress_deadline: i64) {
    let spec = b.spec;
    let now = b.now;
    let target = b.target.clone();
    let replicas = desired_replicas(spec);
    let autoscaled = spec.autoscaling.is_some();
    let starting = start_pending(b);
    if let Some(why) = features_block(b, true) {
        let waiting = b
            .status
            .canary
            .as_ref()
            .is_some_and(|c| c.pause_reason.as_deref() == Some(pause::FEATURES));
        if !waiting {
            b.event(
                true,
                "FeaturesNotReady",
                format!(
                    "version {} is not deployed until its features are ready (gate: Strict): {why}",
                    spec.model.version
                ),
            );
        }
        if let Some(c) = b.status.canary.as_mut() {
            c.pause_reason = Some(pause::FEATURES.into());
            c.paused_at.get_or_insert(time(now));
        }
        return;
    }
    if let Some(c) = b.status.canary.as_mut()
        && c.pause_reason.is_some()
    {
        c.pause_reason = None;
        c.paused_at = None;
        c.started_at = Some(time(now));
    }
    if starting {
        b.event(
            false,
            "Deploying",
            format!(
                "deploying version {} (revision {target}) with {replicas} replica(s)",
                spec.model.version
            ),
        );
    }
    b.apply.push(RevisionPlan {
        revision: target.clone(),
        track: Track::Stable,
        replicas: (!autoscaled).then_some(replicas),
        initial_replicas: Some(replicas),
    });
    if b.observed(&target).is_some_and(|d| d.available) {
        let started = b.status.canary.as_ref().and_then(|c| c.started_at.clone());
        make_stable(b, None, started.as_ref());
        return;
    }
    if let Some(started) = b.status.canary.as_ref().and_then(|c| c.started_at.clone()) {
        let deadline = started.0 + SignedDuration::from_secs(progress_deadline);
        if now >= deadline {
            if b.status.phase != Some(Phase::Degraded) {
                b.event(
                    true,
                    "ProgressDeadlineExceeded",
                    format!(
                        "version {} did not become available within {progress_deadline}s",
                        spec.model.version
                    ),
                );
            }
        } else {
            b.wake_at(deadline);
        }
    }
}

/// When the spec's revision is not the one on its way in, supersedes that one
/// and starts the new one at step 0. Returns whether it started.
fn start_pending(b: &mut Builder<'_>) -> bool {
    let spec = b.spec;
    let now = b.now;
    let target = b.target.clone();
    let starting = b.status.canary.as_ref().map(|c| c.revision.as_str()) != Some(target.as_str());
    if starting {
        supersede_pending(
            b,
            &format!("replaced by {} before it became stable", spec.model.version),
        );
        b.status.analysis = None;
        b.status.canary = Some(CanaryRevision {
            version: spec.model.version.clone(),
            uri: spec.model.uri.clone(),
            revision: target,
            step_started_at: Some(time(now)),
            started_at: Some(time(now)),
            ..CanaryRevision::default()
        });
    }
    starting
}

/// The spec names the stable revision: whatever was on its way in is dropped.
fn back_on_stable(b: &mut Builder<'_>) {
    let spec = b.spec;
    let aborted = b
        .status
        .canary
        .as_ref()
        .is_some_and(|c| c.aborted_at.is_some());
    if aborted {
        // Already recorded as Aborted; the spec now agrees with the traffic.
        b.status.canary = None;
    } else {
        supersede_pending(
            b,
            &format!(
                "the spec is back on the stable version {}",
                spec.model.version
            ),
        );
    }
    let autoscaled = spec.autoscaling.is_some();
    let replicas = desired_replicas(spec);
    let stable_current = b.observed(&b.target).map(|d| d.desired);
    b.apply.push(RevisionPlan {
        revision: b.target.clone(),
        track: Track::Stable,
        replicas: (!autoscaled).then_some(replicas),
        initial_replicas: Some(stable_current.unwrap_or(replicas).max(replicas)),
    });
}

/// The target revision becomes stable: traffic and the stable pointer move
/// together; the previous stable one retires after `scaleDownDelaySeconds`.
fn make_stable(b: &mut Builder<'_>, scale_down_delay: Option<i64>, started: Option<&Time>) {
    let spec = b.spec;
    let now = b.now;
    let target = b.target.clone();
    if let Some(old) = b.status.stable.take() {
        let delay = scale_down_delay.unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
        b.status.retiring.push(RetiringRevision {
            version: old.version.clone(),
            revision: old.revision.clone(),
            scale_down_at: time(now + SignedDuration::from_secs(delay)),
        });
        let old_name = deployment_name(b.ctx.name, &old.revision);
        b.relabel.retain(|(name, _)| *name != old_name);
        b.relabel.push((old_name, Track::Retiring));
    }
    b.status.stable = Some(StableRevision {
        version: spec.model.version.clone(),
        uri: spec.model.uri.clone(),
        revision: target.clone(),
        since: Some(time(now)),
    });
    let comparisons = b
        .status
        .canary
        .take()
        .map(|c| c.comparisons)
        .unwrap_or_default();
    b.push_history(
        &spec.model.version.clone(),
        &spec.model.uri.clone(),
        spec.model.sha256.clone(),
        &target,
        "Promoted",
    );
    if let Some(h) = b.status.history.first_mut() {
        h.comparisons = comparisons;
    }
    for plan in b.apply.iter_mut().filter(|p| p.revision == target) {
        plan.track = Track::Stable;
    }
    b.outcomes.push(Outcome {
        outcome: "promoted",
        seconds: seconds_since(now, started),
    });
    b.event(
        false,
        "Promoted",
        format!(
            "version {} (revision {target}) is available and serves all traffic",
            spec.model.version
        ),
    );
}

/// Abandons the revision that was on its way in, if any (an aborted one was
/// already recorded): a history entry and an Event saying `why`.
fn supersede_pending(b: &mut Builder<'_>, why: &str) {
    let Some(old) = b.status.canary.take() else {
        return;
    };
    if old.aborted_at.is_some() {
        return;
    }
    b.push_history(&old.version, &old.uri, None, &old.revision, "Superseded");
    b.outcomes.push(Outcome {
        outcome: "superseded",
        seconds: seconds_since(b.now, old.started_at.as_ref()),
    });
    b.event(
        false,
        "Superseded",
        format!(
            "revision {} ({}) was superseded: {why}",
            old.revision, old.version
        ),
    );
}

fn push_history(
    status: &mut RankingModelStatus,
    version: &str,
    uri: &str,
    sha256: Option<String>,
    revision: &str,
    outcome: &str,
    now: Timestamp,
) {
    status.history.insert(
        0,
        HistoryEntry {
            version: version.to_string(),
            uri: uri.to_string(),
            sha256,
            revision: revision.to_string(),
            outcome: outcome.to_string(),
            at: time(now),
            comparisons: Vec::new(),
        },
    );
    status.history.truncate(HISTORY_LIMIT);
}

/// Phase, conditions, replica counts and the message, from the decided state.
fn summarize(
    spec: &RankingModelSpec,
    status: &mut RankingModelStatus,
    ctx: &Context<'_>,
    serving: &str,
    progress_deadline: i64,
) {
    let now = ctx.now;
    let find = |rev: &str| ctx.observed.iter().find(|d| d.revision == rev);
    let serving_deployment = find(serving);
    let serving_available =
        status.stable.is_some() && serving_deployment.is_some_and(|d| d.available);
    status.replicas = Some(serving_deployment.map_or(0, |d| d.replicas));
    let canary_ready = status
        .canary
        .as_ref()
        .filter(|c| c.aborted_at.is_none() && c.revision != serving)
        .and_then(|c| find(&c.revision))
        .map_or(0, |d| d.ready);
    status.ready_replicas = Some(serving_deployment.map_or(0, |d| d.ready) + canary_ready);
    status.selector = Some(selector_string(&revision_selector(ctx.name, serving)));

    let steps = spec.rollout.as_ref().map_or(0, |r| r.steps.len());
    let stable_version = status
        .stable
        .as_ref()
        .map_or("nothing", |s| s.version.as_str())
        .to_string();
    // (phase, Progressing (status, reason, message), summary)
    let (phase, progressing, message) = match (&status.canary, serving_available) {
        (Some(c), _) if c.aborted_at.is_some() => {
            let why = c.abort_reason.clone().unwrap_or_else(|| "aborted".into());
            (
                Phase::Degraded,
                (
                    "False",
                    "RolloutAborted",
                    format!(
                        "canary {} aborted: {why}; all traffic on {stable_version}",
                        c.version
                    ),
                ),
                format!("canary {} aborted: {why}", c.version),
            )
        }
        (Some(c), _) if status.stable.is_none() => {
            let deadline_passed = c.started_at.as_ref().is_some_and(|started| {
                now >= started.0 + SignedDuration::from_secs(progress_deadline)
            });
            let ready = find(&c.revision).map_or(0, |d| d.ready);
            let want = find(&c.revision).map_or(0, |d| d.desired);
            if c.pause_reason.as_deref() == Some(pause::FEATURES) {
                (
                    Phase::Pending,
                    (
                        "True",
                        "WaitingForFeatures",
                        format!(
                            "version {} waits for its features (gate: Strict)",
                            c.version
                        ),
                    ),
                    format!("waiting for features before deploying {}", c.version),
                )
            } else if deadline_passed {
                (
                    Phase::Degraded,
                    (
                        "False",
                        "ProgressDeadlineExceeded",
                        format!(
                            "version {} did not become available within {progress_deadline}s",
                            c.version
                        ),
                    ),
                    format!("rollout of {} stalled: pods not available", c.version),
                )
            } else {
                (
                    Phase::Progressing,
                    (
                        "True",
                        "RollingOut",
                        format!(
                            "deploying version {}: {ready}/{want} replicas ready",
                            c.version
                        ),
                    ),
                    format!("deploying {}: {ready}/{want} ready", c.version),
                )
            }
        }
        (Some(c), _) if bluegreen::is_blue_green(c) => {
            let preview =
                find(&c.revision).map_or((0, desired_replicas(spec)), |d| (d.ready, d.desired));
            let stable = status.stable.clone().unwrap_or_default();
            bluegreen::summary(spec, ctx.name, c, &stable, preview)
        }
        (Some(c), _) => {
            let step = if (c.step_index as usize) < steps {
                format!("step {}/{steps}", c.step_index + 1)
            } else if steps > 0 {
                "steps done, scaling to full size".to_string()
            } else {
                "replacing the stable revision".to_string()
            };
            let ready = find(&c.revision).map_or(0, |d| d.ready);
            let want = find(&c.revision).map_or(0, |d| d.desired);
            match c.pause_reason.as_deref() {
                Some(pause::FEATURES) => (
                    Phase::Progressing,
                    (
                        "True",
                        "WaitingForFeatures",
                        format!(
                            "canary {} waits for its features at {step}, weight {}%",
                            c.version, c.weight
                        ),
                    ),
                    format!(
                        "canary {} waits for features ({step}, weight {}%)",
                        c.version, c.weight
                    ),
                ),
                Some(reason) => (
                    Phase::Paused,
                    (
                        "Unknown",
                        "RolloutPaused",
                        format!(
                            "canary {} paused ({reason}) at {step}, weight {}%: promote, promote-full or abort",
                            c.version, c.weight
                        ),
                    ),
                    format!(
                        "canary {} paused ({reason}) at {step}, weight {}%",
                        c.version, c.weight
                    ),
                ),
                None => (
                    Phase::Progressing,
                    (
                        "True",
                        "RollingOut",
                        format!(
                            "canary {} at {step}, weight {}%, {ready}/{want} canary replicas ready",
                            c.version, c.weight
                        ),
                    ),
                    format!("canary {}: {step}, weight {}%", c.version, c.weight),
                ),
            }
        }
        (None, true) => (
            Phase::Healthy,
            (
                "True",
                "RolloutComplete",
                format!("version {} is serving", spec.model.version),
            ),
            format!("serving {}", spec.model.version),
        ),
        (None, false) => (
            if status.stable.is_some() {
                Phase::Degraded
            } else {
                Phase::Pending
            },
            (
                "True",
                "WaitingForReplicas",
                "waiting for serving replicas".to_string(),
            ),
            "waiting for serving replicas".to_string(),
        ),
    };
    status.phase = Some(phase);
    status.message = Some(message);
    let generation = ctx.generation;
    set_condition(
        &mut status.conditions,
        "Progressing",
        progressing.0,
        progressing.1,
        &progressing.2,
        generation,
        now,
    );
    let (ready_status, ready_reason, ready_message) = if serving_available {
        let d = serving_deployment.map_or(0, |d| d.ready);
        (
            "True",
            "Available",
            format!(
                "{d} replica(s) of {} ready",
                status.stable.as_ref().map_or("", |s| s.version.as_str())
            ),
        )
    } else {
        (
            "False",
            "NotAvailable",
            "the serving revision does not have its replicas ready".to_string(),
        )
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        ready_status,
        ready_reason,
        &ready_message,
        generation,
        now,
    );
    analysis_condition(status, generation, now);
}

/// `AnalysisHealthy`: while a canary has analysis results, whether every
/// metric passes (False with the first failing metric's verdict, which an
/// abort keeps visible); absent without a canary or without analysis.
fn analysis_condition(status: &mut RankingModelStatus, generation: Option<i64>, now: Timestamp) {
    const TYPE: &str = "AnalysisHealthy";
    let metrics = status
        .analysis
        .as_ref()
        .map(|a| a.metrics.as_slice())
        .unwrap_or_default();
    if status.canary.is_none() || metrics.is_empty() {
        status.conditions.0.retain(|c| c.type_ != TYPE);
        return;
    }
    let failing = ["Failed", "Error", "Inconclusive"]
        .iter()
        .find_map(|phase| metrics.iter().find(|m| m.phase == *phase));
    let (state, reason, message) = match failing {
        Some(m) => (
            "False",
            m.phase.clone(),
            // The analysis writes its messages as "metric <name>: …".
            m.message
                .clone()
                .unwrap_or_else(|| format!("metric {}: {}", m.name, m.phase)),
        ),
        None => (
            "True",
            "Passing".to_string(),
            format!(
                "{} metric(s) measured, none failing: {}",
                metrics.len(),
                metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        TYPE,
        state,
        &reason,
        &message,
        generation,
        now,
    );
}
