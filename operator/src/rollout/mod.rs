//! The revision state machine of a RankingModel, as a pure function:
//! (spec, status, observed Deployments, clock) → (next status, what to apply,
//! what to delete, events, when to look again). All state lives in `status`,
//! so a restarted operator resumes where it left off.
//!
//! This is the replace-when-available strategy: a new revision is deployed at
//! full size next to the stable one and takes all traffic once it is
//! Available; the previous revision stays warm for `scaleDownDelaySeconds`
//! (a rollback to it needs no new pods) and is then deleted. Canary steps
//! build on it.

mod conditions;
#[cfg(test)]
mod tests;

pub use conditions::set_condition;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    CanaryRevision, HistoryEntry, Phase, RankingModelStatus, RetiringRevision, StableRevision,
};

use crate::render::{
    RevisionPlan, ServiceTargets, Track, deployment_name, revision_of, revision_selector,
    selector_string,
};

/// Revisions kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;
/// Default `scaleDownDelaySeconds`.
pub const DEFAULT_SCALE_DOWN_DELAY: i64 = 30;
/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE: i64 = 600;

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
    /// Deployment the autoscaler targets (when autoscaling is set).
    pub autoscaler_target: Option<String>,
    /// Revision the disruption budget protects (when there is more than one replica).
    pub disruption_budget: Option<String>,
    /// Events to publish.
    pub events: Vec<Transition>,
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
}

fn time(ts: Timestamp) -> Time {
    Time(ts)
}

fn seconds_until(now: Timestamp, at: Timestamp) -> Duration {
    let secs = at.as_second().saturating_sub(now.as_second()).max(0);
    Duration::from_secs(secs as u64 + 1)
}

fn desired_replicas(spec: &RankingModelSpec) -> i32 {
    match &spec.autoscaling {
        Some(a) => a.min_replicas.unwrap_or(1),
        None => spec.replicas.unwrap_or(1),
    }
}

/// Decides the next step for a model.
pub fn decide(
    spec: &RankingModelSpec,
    current: &RankingModelStatus,
    ctx: &Context<'_>,
) -> Decision {
    let now = ctx.now;
    let target = revision_of(spec);
    let mut status = current.clone();
    status.observed_generation = ctx.generation;
    let mut events = Vec::new();
    let mut requeue: Option<Duration> = None;
    let wake_at = |at: Timestamp, requeue: &mut Option<Duration>| {
        let d = seconds_until(now, at);
        *requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
    };
    let observed = |revision: &str| ctx.observed.iter().find(|d| d.revision == revision);
    let autoscaled = spec.autoscaling.is_some();
    let rollout = spec.rollout.as_ref();
    let scale_down_delay = rollout
        .and_then(|r| r.scale_down_delay_seconds)
        .map_or(DEFAULT_SCALE_DOWN_DELAY, i64::from);
    let progress_deadline = rollout
        .and_then(|r| r.progress_deadline_seconds)
        .map_or(DEFAULT_PROGRESS_DEADLINE, i64::from);

    // A revision coming back (a rollback within the scale-down delay) is no
    // longer retiring: its warm pods make the switch immediate.
    status.retiring.retain(|r| r.revision != target);

    let stable_revision = status.stable.as_ref().map(|s| s.revision.clone());
    let mut apply = Vec::new();
    let mut relabel = Vec::new();

    // Sizing the new revision: with an autoscaler, as large as the stable
    // currently is, so that switching traffic never drops capacity.
    let stable_current = stable_revision
        .as_deref()
        .and_then(observed)
        .map(|d| d.desired);
    let target_replicas = if autoscaled {
        let min = desired_replicas(spec);
        let existing = observed(&target).map(|d| d.desired);
        existing.or(stable_current).unwrap_or(min).max(min)
    } else {
        desired_replicas(spec)
    };

    match stable_revision.as_deref() {
        Some(stable) if stable == target => {
            // Back to the stable revision while another was on its way in
            // (the spec was reverted): that one is abandoned.
            supersede_pending(
                &mut status,
                &mut events,
                now,
                &format!(
                    "the spec is back on the stable version {}",
                    spec.model.version
                ),
            );
            apply.push(RevisionPlan {
                revision: target.clone(),
                track: Track::Stable,
                replicas: (!autoscaled).then_some(desired_replicas(spec)),
                initial_replicas: Some(target_replicas),
            });
        }
        _ => {
            // A new revision (or the first one) is on its way in.
            let starting = status.canary.as_ref().map(|c| c.revision.as_str()) != Some(&target);
            if starting {
                supersede_pending(
                    &mut status,
                    &mut events,
                    now,
                    &format!("replaced by {} before it became stable", spec.model.version),
                );
                events.push(Transition {
                    warning: false,
                    reason: "Deploying",
                    message: format!(
                        "deploying version {} (revision {target}) with {} replica(s)",
                        spec.model.version, target_replicas
                    ),
                });
                status.canary = Some(CanaryRevision {
                    version: spec.model.version.clone(),
                    uri: spec.model.uri.clone(),
                    revision: target.clone(),
                    weight: 0,
                    step_index: 0,
                    step_started_at: Some(time(now)),
                    started_at: Some(time(now)),
                    ..CanaryRevision::default()
                });
            }
            apply.push(RevisionPlan {
                revision: target.clone(),
                track: if stable_revision.is_some() {
                    Track::Canary
                } else {
                    Track::Stable
                },
                replicas: (!autoscaled).then_some(target_replicas),
                initial_replicas: Some(target_replicas),
            });
            if let Some(stable) = stable_revision.as_deref() {
                relabel.push((deployment_name(ctx.name, stable), Track::Stable));
            }
            let ready = observed(&target).is_some_and(|d| d.available);
            if ready {
                // Promote: traffic and the stable pointer move together.
                if let Some(old) = status.stable.take() {
                    status.retiring.push(RetiringRevision {
                        version: old.version.clone(),
                        revision: old.revision.clone(),
                        scale_down_at: time(now + SignedDuration::from_secs(scale_down_delay)),
                    });
                    relabel.retain(|(name, _)| *name != deployment_name(ctx.name, &old.revision));
                    relabel.push((deployment_name(ctx.name, &old.revision), Track::Retiring));
                }
                status.stable = Some(StableRevision {
                    version: spec.model.version.clone(),
                    uri: spec.model.uri.clone(),
                    revision: target.clone(),
                    since: Some(time(now)),
                });
                status.canary = None;
                push_history(
                    &mut status,
                    &spec.model.version,
                    &spec.model.uri,
                    spec.model.sha256.clone(),
                    &target,
                    "Promoted",
                    now,
                );
                if let Some(plan) = apply.last_mut() {
                    plan.track = Track::Stable;
                }
                events.push(Transition {
                    warning: false,
                    reason: "Promoted",
                    message: format!(
                        "version {} (revision {target}) is available and serves all traffic",
                        spec.model.version
                    ),
                });
            } else if let Some(started) = status.canary.as_ref().and_then(|c| c.started_at.as_ref())
            {
                let deadline = started.0 + SignedDuration::from_secs(progress_deadline);
                if now >= deadline {
                    if status.phase != Some(Phase::Degraded) {
                        events.push(Transition {
                            warning: true,
                            reason: "ProgressDeadlineExceeded",
                            message: format!(
                                "version {} did not become available within {progress_deadline}s; traffic stays on the stable revision",
                                spec.model.version
                            ),
                        });
                    }
                } else {
                    wake_at(deadline, &mut requeue);
                }
            }
        }
    }

    // Retiring revisions: deleted once their delay has passed.
    let mut delete = Vec::new();
    status.retiring.retain(|r| {
        if now >= r.scale_down_at.0 {
            delete.push(deployment_name(ctx.name, &r.revision));
            events.push(Transition {
                warning: false,
                reason: "ScaledDown",
                message: format!(
                    "previous revision {} ({}) scaled down after the scale-down delay",
                    r.revision, r.version
                ),
            });
            false
        } else {
            true
        }
    });
    for r in &status.retiring {
        wake_at(r.scale_down_at.0, &mut requeue);
    }
    // Anything else the model owns is a leftover (e.g. a superseded revision).
    let keep: Vec<String> = status
        .stable
        .iter()
        .map(|s| s.revision.clone())
        .chain(std::iter::once(target.clone()))
        .chain(status.retiring.iter().map(|r| r.revision.clone()))
        .collect();
    for d in ctx.observed {
        if !keep.contains(&d.revision) && !delete.contains(&d.name) {
            delete.push(d.name.clone());
        }
    }
    relabel.retain(|(name, track)| {
        ctx.observed
            .iter()
            .any(|d| &d.name == name && d.track.as_deref() != Some(track.as_str()))
    });

    let serving = status
        .stable
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_else(|| target.clone());
    let services = ServiceTargets {
        stable: serving.clone(),
        canary: status
            .canary
            .as_ref()
            .map(|c| c.revision.clone())
            .unwrap_or_else(|| serving.clone()),
    };

    summarize(spec, &mut status, ctx, &serving, progress_deadline);
    let replicas = desired_replicas(spec);
    Decision {
        autoscaler_target: autoscaled.then(|| deployment_name(ctx.name, &serving)),
        disruption_budget: (replicas > 1).then(|| serving.clone()),
        status,
        apply,
        relabel,
        delete,
        services,
        events,
        requeue_after: requeue,
    }
}

/// Abandons the revision that was on its way in, if any: a history entry and
/// an Event saying `why`.
fn supersede_pending(
    status: &mut RankingModelStatus,
    events: &mut Vec<Transition>,
    now: Timestamp,
    why: &str,
) {
    let Some(old) = status.canary.take() else {
        return;
    };
    push_history(
        status,
        &old.version,
        &old.uri,
        None,
        &old.revision,
        "Superseded",
        now,
    );
    events.push(Transition {
        warning: false,
        reason: "Superseded",
        message: format!(
            "revision {} ({}) was superseded: {why}",
            old.revision, old.version
        ),
    });
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
        .and_then(|c| find(&c.revision))
        .map_or(0, |d| d.ready);
    status.ready_replicas = Some(serving_deployment.map_or(0, |d| d.ready) + canary_ready);
    status.selector = Some(selector_string(&revision_selector(ctx.name, serving)));

    let deadline_passed = status
        .canary
        .as_ref()
        .and_then(|c| c.started_at.as_ref())
        .is_some_and(|started| now >= started.0 + SignedDuration::from_secs(progress_deadline));
    let strategy_note = if spec.rollout.as_ref().is_some_and(|r| !r.steps.is_empty()) {
        " (canary steps are not executed yet by this operator version: the new revision replaces the old one once available)"
    } else {
        ""
    };
    let (phase, progressing, message) = match (&status.canary, serving_available) {
        (Some(c), _) if deadline_passed => (
            Phase::Degraded,
            (
                "False",
                "ProgressDeadlineExceeded",
                format!(
                    "version {} did not become available within {progress_deadline}s; traffic stays on {}",
                    c.version,
                    status
                        .stable
                        .as_ref()
                        .map_or("nothing", |s| s.version.as_str())
                ),
            ),
            format!("rollout of {} stalled: pods not available", c.version),
        ),
        (Some(c), _) => {
            let ready = find(&c.revision).map_or(0, |d| d.ready);
            let want = find(&c.revision).map_or(0, |d| d.desired);
            (
                Phase::Progressing,
                (
                    "True",
                    "RollingOut",
                    format!(
                        "deploying version {}: {ready}/{want} replicas ready{strategy_note}",
                        c.version
                    ),
                ),
                format!("deploying {}: {ready}/{want} ready", c.version),
            )
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
}
