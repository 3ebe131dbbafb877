//! The canary: a new revision next to the stable one, advanced through
//! `spec.rollout.steps` by evidence (pods Ready, pause timers, analysis
//! verdicts) and by requests, aborted on failure.

use k8s_openapi::jiff::SignedDuration;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    AnalysisMetric, CanaryRevision, MetricStatus, RankingModelStatus, RolloutStep,
};

use super::compare::{self, Flow};
use super::control::{
    abort, abort_delay, abort_or_retry, hold_for_features, keep_aborted, rollback_request, sizes,
};
use super::{Builder, make_stable, pause, seconds_since, start_pending, time};
use crate::render::{RevisionPlan, Track, deployment_name};
use mlctl_crds::requests;

/// The analysis that runs now: the reconciler measures it before deciding.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAnalysis<'a> {
    /// The analysis step's index; None for background analysis.
    pub step: Option<i32>,
    /// The metrics to measure.
    pub metrics: Vec<&'a AnalysisMetric>,
}

/// How traffic is split while a canary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Routing {
    /// `<model>` selects the pods of both revisions; weights follow replicas.
    ReplicaRatio,
    /// A router (Gateway API, Istio) sets the weights.
    Router,
}

pub(super) fn routing(spec: &RankingModelSpec) -> Routing {
    match spec
        .rollout
        .as_ref()
        .and_then(|r| r.traffic_routing.as_ref())
    {
        Some(t) if t.gateway_api.is_some() || t.istio.is_some() => Routing::Router,
        _ => Routing::ReplicaRatio,
    }
}

fn steps(spec: &RankingModelSpec) -> &[RolloutStep] {
    spec.rollout.as_ref().map_or(&[], |r| r.steps.as_slice())
}

/// The metric named by an analysis step: a template, or a background metric.
pub(super) fn find_metric<'a>(
    spec: &'a RankingModelSpec,
    name: &str,
) -> Option<&'a AnalysisMetric> {
    let analysis = spec.rollout.as_ref()?.analysis.as_ref()?;
    analysis
        .templates
        .iter()
        .chain(analysis.metrics.iter())
        .find(|m| m.name == name)
}

/// Canary replicas for a traffic weight. With a router, enough pods for the
/// weight (at least one); with replica ratio the stable revision keeps its
/// size (so an abort never lacks capacity) and the canary gets
/// `stable × w / (100 − w)` pods, capped at full size: weights above 50%
/// are approximated by an even split until the canary becomes stable.
pub fn canary_replicas(weight: i32, stable: i32, full: i32, by_replicas: bool) -> i32 {
    if weight <= 0 {
        return 0;
    }
    if weight >= 100 {
        return full.max(1);
    }
    let s = i64::from(stable.max(1));
    let w = i64::from(weight);
    let n = if by_replicas {
        (s * w + (100 - w) - 1) / (100 - w)
    } else {
        (s * w + 99) / 100
    };
    n.clamp(1, i64::from(full.max(1))) as i32
}

fn live_canary(status: &RankingModelStatus) -> Option<&CanaryRevision> {
    status.stable.as_ref()?;
    status.canary.as_ref().filter(|c| c.aborted_at.is_none())
}

/// The analyses to measure now, from the current status: background metrics
/// once the canary takes traffic, and the current analysis step's metrics.
/// Nothing while the canary is aborted or paused on an inconclusive result.
pub fn active_analysis<'a>(
    spec: &'a RankingModelSpec,
    status: &RankingModelStatus,
) -> Vec<ActiveAnalysis<'a>> {
    let Some(c) = live_canary(status) else {
        return Vec::new();
    };
    if c.revision != crate::render::revision_of(spec)
        || c.pause_reason.as_deref() == Some(pause::INCONCLUSIVE)
    {
        return Vec::new();
    }
    if super::bluegreen::is_blue_green(c) {
        return super::bluegreen::active_analysis(spec, c);
    }
    let mut active = Vec::new();
    if (c.weight > 0 || compare::running(spec, c))
        && let Some(analysis) = spec.rollout.as_ref().and_then(|r| r.analysis.as_ref())
        && !analysis.metrics.is_empty()
    {
        active.push(ActiveAnalysis {
            step: None,
            metrics: analysis.metrics.iter().collect(),
        });
    }
    if let Some(step) = steps(spec).get(c.step_index as usize)
        && let Some(a) = &step.analysis
        && c.pause_reason.is_none()
    {
        let metrics: Vec<&AnalysisMetric> = a
            .metrics
            .iter()
            .filter_map(|n| find_metric(spec, n))
            .collect();
        if !metrics.is_empty() {
            active.push(ActiveAnalysis {
                step: Some(c.step_index),
                metrics,
            });
        }
    }
    active
}

fn metric_status<'s>(
    status: &'s RankingModelStatus,
    name: &str,
    step: Option<i32>,
) -> Option<&'s MetricStatus> {
    status
        .analysis
        .as_ref()?
        .metrics
        .iter()
        .find(|m| m.name == name && m.step == step)
}

fn step_kind(step: &RolloutStep) -> &'static str {
    if step.set_weight.is_some() {
        "setWeight"
    } else if step.pause.is_some() {
        "pause"
    } else if step.analysis.is_some() {
        "analysis"
    } else if step.shadow.is_some() {
        "shadow"
    } else if step.interleave.is_some() {
        "interleave"
    } else if step.set_header_route.is_some() {
        "setHeaderRoute"
    } else {
        "empty"
    }
}

fn describe_step(step: &RolloutStep) -> String {
    if let Some(w) = step.set_weight {
        format!("setWeight {w}")
    } else if let Some(p) = &step.pause {
        match &p.duration {
            Some(d) => format!("pause {d}"),
            None => "pause until promoted".into(),
        }
    } else if let Some(a) = &step.analysis {
        format!("analysis {}", a.metrics.join(", "))
    } else if let Some(sh) = &step.shadow {
        format!(
            "shadow {} at {}%",
            sh.duration,
            sh.sample.unwrap_or(compare::DEFAULT_SAMPLE)
        )
    } else if let Some(il) = &step.interleave {
        format!(
            "interleave at {}% until {}",
            il.sample.unwrap_or(compare::DEFAULT_SAMPLE),
            il.until.summary()
        )
    } else if let Some(h) = &step.set_header_route {
        let matches: Vec<String> = h.match_.iter().map(|m| m.summary()).collect();
        if matches.is_empty() {
            "setHeaderRoute (removed)".into()
        } else {
            format!("setHeaderRoute {}", matches.join(", "))
        }
    } else {
        "empty step".into()
    }
}

/// The canary state machine, one decision. `b.status.stable` is set and is
/// not the target revision.
pub(super) fn run(b: &mut Builder<'_>, scale_down_delay: i64, progress_deadline: i64) {
    let spec = b.spec;
    let now = b.now;
    let target = b.target.clone();
    let steps = steps(spec);
    let n_steps = steps.len();
    let by_replicas = routing(spec) == Routing::ReplicaRatio;
    let abort_delay = abort_delay(spec);
    let autoscaled = spec.autoscaling.is_some();
    let (stable, stable_size, full) = sizes(b);
    let requests = b.ctx.requests.clone();

    // A new revision starts a canary from step 0; an intermediate one is
    // superseded (its Deployment is deleted as a leftover).
    let starting = start_pending(b);
    if starting {
        b.event(
            false,
            if n_steps > 0 {
                "CanaryStarted"
            } else {
                "Deploying"
            },
            format!(
                "version {} (revision {target}) starts next to stable {}: {}",
                spec.model.version,
                stable.version,
                if n_steps > 0 {
                    format!("{n_steps} canary step(s)")
                } else {
                    "no canary steps: it takes all traffic once available".into()
                }
            ),
        );
    }
    let Some(mut c) = b.status.canary.clone() else {
        return;
    };
    if super::bluegreen::is_blue_green(&c) && c.aborted_at.is_none() {
        // The spec dropped blue-green mid-rollout: traffic goes back to
        // stable and the canary starts at its first step.
        c = CanaryRevision {
            version: c.version.clone(),
            uri: c.uri.clone(),
            revision: c.revision.clone(),
            step_started_at: Some(time(now)),
            started_at: c.started_at.clone(),
            ..CanaryRevision::default()
        };
        b.event(
            false,
            "CanaryStarted",
            format!(
                "version {} continues as a canary ({n_steps} step(s)): spec.rollout.blueGreen was removed",
                c.version
            ),
        );
    }

    // Requests.
    if rollback_request(b, starting, &stable) {
        c.step_index = n_steps as i32;
        c.step_started_at = Some(time(now));
    }
    abort_or_retry(b, &mut c, abort_delay);
    if c.aborted_at.is_none() {
        if let Some(v) = &requests.promote_full {
            b.handled.push((requests::PROMOTE_FULL, v.clone()));
            c.step_index = n_steps as i32;
            c.step_started_at = Some(time(now));
            if c.pause_reason.as_deref() != Some(pause::FEATURES) {
                c.pause_reason = None;
                c.paused_at = None;
            }
            b.event(
                false,
                "PromotingFully",
                format!(
                    "canary {} skips its remaining steps and analysis by request",
                    c.version
                ),
            );
        } else if let Some(v) = &requests.promote
            && (c.step_index as usize) < n_steps
        {
            b.handled.push((requests::PROMOTE, v.clone()));
            if c.pause_reason.as_deref() == Some(pause::INCONCLUSIVE) {
                // A person accepts the inconclusive evidence: background
                // metrics start over, the step's analysis counts as passed.
                if let Some(a) = b.status.analysis.as_mut() {
                    a.metrics
                        .retain(|m| !(m.step.is_none() && m.phase == "Inconclusive"));
                }
            }
            if c.pause_reason.as_deref() != Some(pause::FEATURES) {
                c.pause_reason = None;
                c.paused_at = None;
            }
            complete_step(b, &mut c, steps, "promoted by request");
        }
    }

    if c.aborted_at.is_some() {
        keep_aborted(b, c, &stable);
        return;
    }

    // Features: a canary does not advance while they are not ready.
    hold_for_features(b, &mut c);

    // Analysis verdicts: a failure aborts, an inconclusive result pauses.
    if let Some((failed, message)) = analysis_verdict(spec, &b.status, &c) {
        if failed {
            abort(b, &mut c, "AnalysisFailed", message, abort_delay);
            b.status.canary = Some(c);
            b.relabel
                .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
            return;
        }
        if c.pause_reason.is_none() {
            b.event(
                true,
                "AnalysisInconclusive",
                format!(
                    "canary {} paused: {message}; promote to accept, abort to roll back",
                    c.version
                ),
            );
            c.pause_reason = Some(pause::INCONCLUSIVE.into());
            c.paused_at = Some(time(now));
        }
    }

    // Steps, as far as the evidence allows.
    while c.pause_reason.is_none() {
        let i = c.step_index as usize;
        let Some(step) = steps.get(i) else {
            break;
        };
        if let Some(w) = step.set_weight {
            let want = canary_replicas(w, stable_size, full, by_replicas);
            let ready = want == 0
                || b.observed(&target)
                    .is_some_and(|d| d.available && d.desired == want);
            if !ready {
                break;
            }
            c.weight = w;
            complete_step(b, &mut c, steps, "done");
        } else if let Some(p) = &step.pause {
            let duration = p
                .duration
                .as_deref()
                .and_then(|d| mlctl_crds::parse_duration(d).ok());
            match duration {
                Some(d) => {
                    let started = c.step_started_at.as_ref().map_or(now, |t| t.0);
                    let end = started + SignedDuration::from_secs(d.as_secs() as i64);
                    if now >= end {
                        complete_step(b, &mut c, steps, "done");
                    } else {
                        b.wake_at(end);
                        break;
                    }
                }
                None => {
                    c.pause_reason = Some(pause::STEP.into());
                    c.paused_at = Some(time(now));
                    b.event(
                        false,
                        "Paused",
                        format!(
                            "canary {} paused at step {}/{n_steps} with weight {}%: waiting for a promote request (mlctl promote {})",
                            c.version,
                            i + 1,
                            c.weight,
                            b.ctx.name
                        ),
                    );
                }
            }
        } else if let Some(a) = &step.analysis {
            let unknown: Vec<&String> = a
                .metrics
                .iter()
                .filter(|n| find_metric(spec, n).is_none())
                .collect();
            if !unknown.is_empty() {
                let message = format!(
                    "analysis step {} names unknown metric(s) {unknown:?}; define them in spec.rollout.analysis.templates",
                    i + 1
                );
                abort(b, &mut c, "AnalysisFailed", message, abort_delay);
                b.status.canary = Some(c);
                b.relabel
                    .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
                return;
            }
            let all_passed = a.metrics.iter().all(|n| {
                metric_status(&b.status, n, Some(i as i32)).is_some_and(|m| m.phase == "Successful")
            });
            if !all_passed {
                // The reconciler measures it; look again soon when it has not
                // started yet (later wake-ups come from the measurements).
                if a.metrics
                    .iter()
                    .any(|n| metric_status(&b.status, n, Some(i as i32)).is_none())
                {
                    b.wake_at(now);
                }
                break;
            }
            complete_step(b, &mut c, steps, "passed");
        } else if let Some(sample) = compare::sample(step) {
            // The comparison starts once the canary's pods are Ready; a
            // resize while it runs (the stable autoscaled) does not stop it.
            let want = canary_replicas(sample, stable_size, full, false);
            let started = compare::find(&c, i as i32).is_some_and(|x| x.started_at.is_some());
            let ready = b
                .observed(&target)
                .is_some_and(|d| d.available && d.desired == want);
            if !started && !ready {
                break;
            }
            match compare::step(step, i as i32, &mut c, now) {
                Flow::Running { plan, wake } => {
                    b.peer = Some(plan);
                    if let Some(at) = wake {
                        b.wake_at(at);
                    }
                    if step.interleave.is_some() {
                        b.wake_at(now + SignedDuration::from_secs(compare::READ_INTERVAL));
                    }
                    break;
                }
                Flow::Preparing => {
                    // The baseline must be read before the stable pods are
                    // told to interleave; a Prometheus that never answers
                    // must not hold the canary forever.
                    let since = c.step_started_at.as_ref().map_or(now, |t| t.0);
                    let deadline = since + SignedDuration::from_secs(progress_deadline);
                    if now >= deadline {
                        let why = compare::find(&c, i as i32)
                            .and_then(|x| x.message.clone())
                            .unwrap_or_else(|| "the outcome counters were never read".into());
                        abort(
                            b,
                            &mut c,
                            "ProgressDeadlineExceeded",
                            format!(
                                "interleave step {} did not start within progressDeadlineSeconds={progress_deadline}: {why}",
                                i + 1
                            ),
                            abort_delay,
                        );
                        b.status.canary = Some(c);
                        b.relabel
                            .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
                        return;
                    }
                    b.wake_at(deadline.min(now + SignedDuration::from_secs(2)));
                    break;
                }
                Flow::Next(how) => complete_step(b, &mut c, steps, &how),
                Flow::Abort(reason, why) => {
                    abort(b, &mut c, reason, why, abort_delay);
                    b.status.canary = Some(c);
                    b.relabel
                        .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
                    return;
                }
                Flow::Pause(why) => {
                    b.event(
                        true,
                        "InterleavingInconclusive",
                        format!(
                            "canary {} paused: {why}; promote to accept, abort to roll back",
                            c.version
                        ),
                    );
                    c.pause_reason = Some(pause::INCONCLUSIVE.into());
                    c.paused_at = Some(time(now));
                }
            }
        } else if let Some(h) = &step.set_header_route {
            // As setWeight moves traffic only to Ready pods, the header
            // route waits for a Ready canary pod (it is in force once this
            // step is done; header_route_pods keeps one for it).
            let ready = h.match_.is_empty() || b.observed(&target).is_some_and(|d| d.ready > 0);
            if !ready {
                break;
            }
            complete_step(b, &mut c, steps, "done");
        } else {
            complete_step(b, &mut c, steps, "done");
        }
    }

    // Size the canary for where it is: the pending setWeight, or full size
    // once every step is done.
    let at_end = c.step_index as usize >= n_steps;
    let pending_weight = steps
        .get(c.step_index as usize)
        .and_then(|s| s.set_weight)
        .filter(|_| c.pause_reason.is_none())
        .unwrap_or(c.weight);
    let features_wait = c.pause_reason.as_deref() == Some(pause::FEATURES);
    let comparing = steps
        .get(c.step_index as usize)
        .and_then(compare::sample)
        .filter(|_| !features_wait);
    let replicas = if at_end && !features_wait {
        full
    } else if let Some(sample) = comparing {
        canary_replicas(sample, stable_size, full, false).max(canary_replicas(
            c.weight,
            stable_size,
            full,
            by_replicas,
        ))
    } else {
        canary_replicas(pending_weight, stable_size, full, by_replicas)
    };
    let replicas = replicas.max(header_route_pods(spec, &c));
    // Canary pods not Ready within the progress deadline (counted from the
    // start of the step that scaled them): abort.
    let observed = b.observed(&target).cloned();
    let sized = observed
        .as_ref()
        .is_some_and(|d| d.available && d.desired == replicas);
    if replicas > 0
        && !sized
        && let Some(since) = c.step_started_at.clone()
    {
        let deadline = since.0 + SignedDuration::from_secs(progress_deadline);
        if now >= deadline {
            let (ready, want) = observed
                .as_ref()
                .map_or((0, replicas), |d| (d.ready, d.desired));
            abort(
                b,
                &mut c,
                "ProgressDeadlineExceeded",
                format!(
                    "canary pods not Ready within progressDeadlineSeconds={progress_deadline} ({ready}/{want} ready)"
                ),
                abort_delay,
            );
            b.status.canary = Some(c);
            b.relabel
                .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
            return;
        }
        b.wake_at(deadline);
    }
    b.split = by_replicas && c.weight > 0;
    b.canary_weight = c.weight;
    if replicas > 0 || observed.is_some() {
        b.apply.push(RevisionPlan {
            revision: target.clone(),
            track: Track::Canary,
            replicas: (!autoscaled).then_some(replicas),
            initial_replicas: Some(replicas),
        });
    }
    b.relabel
        .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));

    if at_end && !features_wait {
        let available = b
            .observed(&target)
            .is_some_and(|d| d.available && d.desired >= full);
        if available {
            let started = c.started_at.clone();
            b.status.canary = Some(c);
            make_stable(b, Some(scale_down_delay), started.as_ref());
            b.canary_weight = 0;
            b.split = false;
            return;
        }
    }
    if by_replicas && c.weight > 0 {
        // `<model>` selects every pod of the model while the canary takes
        // traffic: earlier revisions kept warm must go first.
        retire_now(b);
    }
    b.status.canary = Some(c);
}

/// One canary pod for a header route, whatever the weight: while its step
/// waits for it and as long as the route is in force.
fn header_route_pods(spec: &RankingModelSpec, c: &CanaryRevision) -> i32 {
    let pending = steps(spec)
        .get(c.step_index as usize)
        .and_then(|s| s.set_header_route.as_ref())
        .is_some_and(|h| !h.match_.is_empty());
    i32::from(pending || super::header_route(spec, Some(c)).is_some())
}

/// Deletes the warm previous revisions now (replica-ratio canaries select
/// every pod of the model).
fn retire_now(b: &mut Builder<'_>) {
    for r in &mut b.status.retiring {
        if r.scale_down_at.0 > b.now {
            r.scale_down_at = time(b.now);
        }
    }
}

/// Marks the current step done and moves to the next one.
fn complete_step(b: &mut Builder<'_>, c: &mut CanaryRevision, steps: &[RolloutStep], how: &str) {
    let i = c.step_index as usize;
    compare::end(c, c.step_index, b.now);
    if let Some(step) = steps.get(i) {
        let took = seconds_since(b.now, c.step_started_at.as_ref()).unwrap_or(0.0);
        b.steps_completed.push((step_kind(step), took));
        b.event(
            false,
            "StepCompleted",
            format!(
                "canary {}: step {}/{} ({}) {how}; weight {}%",
                c.version,
                i + 1,
                steps.len(),
                describe_step(step),
                c.weight
            ),
        );
    }
    c.step_index += 1;
    c.step_started_at = Some(time(b.now));
}

/// The verdict of the running analyses: Some((true, why)) on a failure or
/// error, Some((false, why)) when inconclusive.
fn analysis_verdict(
    spec: &RankingModelSpec,
    status: &RankingModelStatus,
    c: &CanaryRevision,
) -> Option<(bool, String)> {
    let analysis = status.analysis.as_ref()?;
    let current = steps(spec)
        .get(c.step_index as usize)
        .and_then(|s| s.analysis.as_ref())
        .map(|_| c.step_index);
    let relevant = |m: &&MetricStatus| {
        m.stage.is_none() && (m.step.is_none() || (m.step.is_some() && m.step == current))
    };
    let describe = |m: &MetricStatus| {
        m.message
            .clone()
            .unwrap_or_else(|| format!("metric {} is {}", m.name, m.phase))
    };
    if let Some(m) = analysis
        .metrics
        .iter()
        .filter(relevant)
        .find(|m| m.phase == "Failed" || m.phase == "Error")
    {
        return Some((true, describe(m)));
    }
    analysis
        .metrics
        .iter()
        .filter(relevant)
        .find(|m| m.phase == "Inconclusive")
        .map(|m| (false, describe(m)))
}
