//! Blue-green (`spec.rollout.blueGreen`): the new revision runs at full size
//! behind `<model>-preview` with no user traffic, passes
//! `prePromotionAnalysis`, is promoted (automatically or by request), takes
//! all traffic at once, passes `postPromotionAnalysis` while the previous
//! revision stays at full size (a failure switches back), then is stable.
//!
//! The rollout's place is `status.canary` (`strategy: BlueGreen`), with
//! `stepIndex` as the stage (see [`stage`]), so a restarted operator resumes
//! where it was.

use k8s_openapi::jiff::SignedDuration;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    AnalysisMetric, BlueGreen, CanaryRevision, MetricStatus, Phase, RankingModelStatus,
    StableRevision,
};
use mlctl_crds::requests;

use super::canary::{ActiveAnalysis, find_metric};
use super::control::{
    abort, abort_delay, abort_or_retry, hold_for_features, keep_aborted, rollback_request, sizes,
};
use super::{Builder, make_stable, pause, seconds_since, start_pending, time};
use crate::analysis::{POST_PROMOTION_STEP, PRE_PROMOTION_STEP};
use crate::render::{RevisionPlan, Track, deployment_name, preview_service_name};

/// `status.canary.strategy` of a blue-green rollout.
pub const STRATEGY: &str = "BlueGreen";

/// The stages of a blue-green rollout (`status.canary.stepIndex`).
pub mod stage {
    /// The preview scales to full size.
    pub const PREVIEW: i32 = 0;
    /// The preview is Available: `prePromotionAnalysis` runs against it.
    pub const PRE_PROMOTION: i32 = 1;
    /// Waiting for promotion (`autoPromotionSeconds`, or `mlctl promote`).
    pub const PROMOTION: i32 = 2;
    /// All traffic switched: `postPromotionAnalysis` runs.
    pub const POST_PROMOTION: i32 = 3;
    /// `promote-full` or a rollback: switch and finish as soon as the
    /// preview is Available, without analyses.
    pub const FULL: i32 = 4;
    /// Promoted by request: switch as soon as the preview is Available,
    /// then `postPromotionAnalysis`.
    pub const PROMOTED: i32 = 5;
}

/// Pause reason while a manually promoted preview is ready.
pub const PREVIEW_READY: &str = "PreviewReady";

/// Whether `c` is a blue-green rollout.
pub fn is_blue_green(c: &CanaryRevision) -> bool {
    c.strategy.as_deref() == Some(STRATEGY)
}

fn settings(spec: &RankingModelSpec) -> BlueGreen {
    spec.rollout
        .as_ref()
        .and_then(|r| r.blue_green.clone())
        .unwrap_or_default()
}

fn stage_metrics(spec: &RankingModelSpec, at_stage: i32) -> Vec<String> {
    let bg = settings(spec);
    let step = match at_stage {
        stage::PRE_PROMOTION => bg.pre_promotion_analysis,
        stage::POST_PROMOTION => bg.post_promotion_analysis,
        _ => None,
    };
    step.map(|a| a.metrics).unwrap_or_default()
}

fn stage_name(at_stage: i32) -> &'static str {
    if at_stage == stage::POST_PROMOTION {
        "postPromotionAnalysis"
    } else {
        "prePromotionAnalysis"
    }
}

/// What to measure now: background metrics once the preview is ready, and
/// the current stage's analysis (under its reserved step number).
pub(super) fn active_analysis<'a>(
    spec: &'a RankingModelSpec,
    c: &CanaryRevision,
) -> Vec<ActiveAnalysis<'a>> {
    let mut active = Vec::new();
    if c.preview_ready_at.is_none() {
        return active;
    }
    if let Some(analysis) = spec.rollout.as_ref().and_then(|r| r.analysis.as_ref())
        && !analysis.metrics.is_empty()
    {
        active.push(ActiveAnalysis {
            step: None,
            metrics: analysis.metrics.iter().collect(),
        });
    }
    let step = match c.step_index {
        stage::PRE_PROMOTION => PRE_PROMOTION_STEP,
        stage::POST_PROMOTION => POST_PROMOTION_STEP,
        _ => return active,
    };
    if c.pause_reason.is_some() {
        return active;
    }
    let metrics: Vec<&AnalysisMetric> = stage_metrics(spec, c.step_index)
        .iter()
        .filter_map(|n| find_metric(spec, n))
        .collect();
    if !metrics.is_empty() {
        active.push(ActiveAnalysis {
            step: Some(step),
            metrics,
        });
    }
    active
}

/// Where an analysis stands.
enum Verdict {
    Passed,
    /// Still measuring; `unstarted`: some metric has no status yet.
    Running {
        unstarted: bool,
    },
    Failed(String),
    Inconclusive(String),
}

fn describe(m: &MetricStatus) -> String {
    m.message
        .clone()
        .unwrap_or_else(|| format!("metric {} is {}", m.name, m.phase))
}

/// The verdict of the background metrics (failure or inconclusive only).
fn background_verdict(status: &RankingModelStatus) -> Option<Verdict> {
    let metrics = status.analysis.as_ref()?.metrics.iter();
    let background: Vec<&MetricStatus> = metrics
        .filter(|m| m.step.is_none() && m.stage.is_none())
        .collect();
    if let Some(m) = background
        .iter()
        .find(|m| m.phase == "Failed" || m.phase == "Error")
    {
        return Some(Verdict::Failed(describe(m)));
    }
    background
        .iter()
        .find(|m| m.phase == "Inconclusive")
        .map(|m| Verdict::Inconclusive(describe(m)))
}

/// The verdict of a stage's analysis (`Passed` without metrics).
fn stage_verdict(spec: &RankingModelSpec, status: &RankingModelStatus, at_stage: i32) -> Verdict {
    let names = stage_metrics(spec, at_stage);
    let label = crate::analysis::stage_of(Some(match at_stage {
        stage::POST_PROMOTION => POST_PROMOTION_STEP,
        _ => PRE_PROMOTION_STEP,
    }));
    let of = |name: &str| {
        status.analysis.as_ref().and_then(|a| {
            a.metrics
                .iter()
                .find(|m| m.name == name && m.step.is_none() && m.stage.as_deref() == label)
        })
    };
    if let Some(name) = names.iter().find(|n| find_metric(spec, n).is_none()) {
        return Verdict::Failed(format!(
            "{} names metric {name}, which is not defined; define it in spec.rollout.analysis.templates",
            stage_name(at_stage)
        ));
    }
    let found: Vec<Option<&MetricStatus>> = names.iter().map(|n| of(n)).collect();
    if let Some(m) = found
        .iter()
        .flatten()
        .find(|m| m.phase == "Failed" || m.phase == "Error")
    {
        return Verdict::Failed(describe(m));
    }
    if let Some(m) = found.iter().flatten().find(|m| m.phase == "Inconclusive") {
        return Verdict::Inconclusive(describe(m));
    }
    if found
        .iter()
        .all(|m| m.is_some_and(|m| m.phase == "Successful"))
    {
        Verdict::Passed
    } else {
        Verdict::Running {
            unstarted: found.iter().any(Option::is_none),
        }
    }
}

/// A person accepts inconclusive evidence (`mlctl promote` while paused
/// Inconclusive): background metrics start over, the stage's inconclusive
/// metrics count as passed.
fn accept_inconclusive(status: &mut RankingModelStatus) {
    if let Some(a) = status.analysis.as_mut() {
        a.metrics
            .retain(|m| !(m.step.is_none() && m.stage.is_none() && m.phase == "Inconclusive"));
        for m in a
            .metrics
            .iter_mut()
            .filter(|m| m.stage.is_some() && m.phase == "Inconclusive")
        {
            m.phase = "Successful".into();
            m.message = Some(format!(
                "metric {}: inconclusive, accepted by a promote request",
                m.name
            ));
        }
    }
}

/// The blue-green state machine, one decision. `b.status.stable` is set and
/// is not the target revision.
pub(super) fn run(b: &mut Builder<'_>, scale_down_delay: i64, progress_deadline: i64) {
    let spec = b.spec;
    let now = b.now;
    let target = b.target.clone();
    let bg = settings(spec);
    let abort_delay = abort_delay(spec);
    let (stable, _, full) = sizes(b);
    let preview_service = preview_service_name(b.ctx.name);

    let starting = start_pending(b);
    let Some(mut c) = b.status.canary.clone() else {
        return;
    };
    if !is_blue_green(&c) {
        // A new rollout, or a canary whose spec switched to blue-green: it
        // starts over as a preview without user traffic.
        c.strategy = Some(STRATEGY.into());
        c.step_index = stage::PREVIEW;
        c.weight = 0;
        c.step_started_at = Some(time(now));
        b.event(
            false,
            "BlueGreenStarted",
            format!(
                "version {} (revision {target}) starts as a blue-green preview next to stable {}: {full} replica(s) behind {preview_service}, no user traffic",
                spec.model.version, stable.version
            ),
        );
    }

    // Requests.
    if rollback_request(b, starting, &stable) {
        c.step_index = stage::FULL;
    }
    abort_or_retry(b, &mut c, abort_delay);
    if c.aborted_at.is_none() {
        promote_requests(b, &mut c);
    }
    if c.aborted_at.is_some() {
        keep_aborted(b, c, &stable);
        return;
    }

    if c.switched_at.is_none() {
        hold_for_features(b, &mut c);
    }
    let preview = b.observed(&target).cloned();
    let available = preview
        .as_ref()
        .is_some_and(|d| d.available && d.desired >= full);

    // Background analysis: a failure aborts (switching back), inconclusive
    // pauses.
    if c.preview_ready_at.is_some() && c.step_index != stage::FULL {
        match background_verdict(&b.status) {
            Some(Verdict::Failed(why)) => {
                return fail(b, c, &stable, "AnalysisFailed", why, abort_delay);
            }
            Some(Verdict::Inconclusive(why)) => pause_inconclusive(b, &mut c, &why),
            _ => {}
        }
    }

    // The preview becomes Available within the progress deadline.
    if c.preview_ready_at.is_none() {
        if available {
            c.preview_ready_at = Some(time(now));
            if c.step_index == stage::PREVIEW {
                c.step_index = stage::PRE_PROMOTION;
            }
            c.step_started_at = Some(time(now));
            b.event(
                false,
                "PreviewReady",
                format!(
                    "preview of {} ready at full size ({full} replica(s)) behind {preview_service}",
                    c.version
                ),
            );
        } else if c.pause_reason.is_none() {
            let since = c.step_started_at.as_ref().map_or(now, |t| t.0);
            let deadline = since + SignedDuration::from_secs(progress_deadline);
            if now >= deadline {
                let (ready, want) = preview.as_ref().map_or((0, full), |d| (d.ready, d.desired));
                let why = format!(
                    "preview pods not Ready within progressDeadlineSeconds={progress_deadline} ({ready}/{want} ready)"
                );
                return fail(b, c, &stable, "ProgressDeadlineExceeded", why, abort_delay);
            }
            b.wake_at(deadline);
        }
    }

    // Stages, as far as the evidence allows.
    while c.pause_reason.is_none() && c.preview_ready_at.is_some() {
        match c.step_index {
            stage::PRE_PROMOTION | stage::POST_PROMOTION => {
                let at_stage = c.step_index;
                match stage_verdict(spec, &b.status, at_stage) {
                    Verdict::Passed => {
                        if !stage_metrics(spec, at_stage).is_empty() {
                            let took =
                                seconds_since(now, c.step_started_at.as_ref()).unwrap_or(0.0);
                            b.steps_completed.push((stage_name(at_stage), took));
                            b.event(
                                false,
                                "StepCompleted",
                                format!(
                                    "blue-green {}: {} ({}) passed",
                                    c.version,
                                    stage_name(at_stage),
                                    stage_metrics(spec, at_stage).join(", ")
                                ),
                            );
                        }
                        if at_stage == stage::POST_PROMOTION {
                            return finish(b, c, scale_down_delay, full);
                        }
                        c.step_index = stage::PROMOTION;
                        c.step_started_at = Some(time(now));
                    }
                    Verdict::Running { unstarted } => {
                        if unstarted {
                            // The reconciler measures it; look again soon.
                            b.wake_at(now);
                        }
                        break;
                    }
                    Verdict::Failed(why) => {
                        let why = format!("{}: {why}", stage_name(at_stage));
                        return fail(b, c, &stable, "AnalysisFailed", why, abort_delay);
                    }
                    Verdict::Inconclusive(why) => {
                        let why = format!("{}: {why}", stage_name(at_stage));
                        pause_inconclusive(b, &mut c, &why);
                    }
                }
            }
            stage::PROMOTION => {
                if !bg.auto_promotion_enabled.unwrap_or(true) {
                    c.pause_reason = Some(PREVIEW_READY.into());
                    c.paused_at = Some(time(now));
                    b.event(
                        false,
                        "Paused",
                        format!(
                            "preview of {} ready at full size behind {preview_service}; waiting for mlctl promote {}",
                            c.version, b.ctx.name
                        ),
                    );
                    break;
                }
                let wait = i64::from(bg.auto_promotion_seconds.unwrap_or(0).max(0));
                let ready_at = c.preview_ready_at.as_ref().map_or(now, |t| t.0);
                let at = ready_at + SignedDuration::from_secs(wait);
                if now < at {
                    b.wake_at(at);
                    break;
                }
                if !switch(b, &mut c, available, "automatically") {
                    break;
                }
            }
            stage::PROMOTED => {
                if !switch(b, &mut c, available, "by request") {
                    break;
                }
            }
            stage::FULL => {
                if c.switched_at.is_none() && !switch(b, &mut c, available, "by request") {
                    break;
                }
                return finish(b, c, scale_down_delay, full);
            }
            _ => break,
        }
    }

    b.canary_weight = c.weight;
    b.switched = c.switched_at.is_some();
    // Switched and autoscaled: the autoscaler sizes the new revision now
    // (it serves all traffic); the operator no longer resizes it.
    let size = match preview.as_ref() {
        Some(d) if b.switched && spec.autoscaling.is_some() => d.desired,
        _ => full,
    };
    b.apply.push(RevisionPlan {
        revision: target,
        track: Track::Canary,
        replicas: (spec.autoscaling.is_none()).then_some(full),
        initial_replicas: Some(size),
    });
    b.relabel
        .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
    b.status.canary = Some(c);
}

/// `promote` acts on a paused rollout (PreviewReady: switch now;
/// Inconclusive: accept the evidence); before that it is answered as
/// ignored, as Argo Rollouts' promote only resumes a pause. `promote-full`
/// skips all remaining analysis: switch and finish once Available.
fn promote_requests(b: &mut Builder<'_>, c: &mut CanaryRevision) {
    if let Some(v) = b.ctx.requests.promote_full.clone() {
        b.handled.push((requests::PROMOTE_FULL, v));
        c.step_index = stage::FULL;
        if c.pause_reason.as_deref() != Some(pause::FEATURES) {
            c.pause_reason = None;
            c.paused_at = None;
        }
        b.event(
            false,
            "PromotingFully",
            format!(
                "blue-green {} skips its remaining analyses by request: all traffic switches once the preview is Available",
                c.version
            ),
        );
        return;
    }
    let Some(v) = b.ctx.requests.promote.clone() else {
        return;
    };
    let reason = c.pause_reason.clone();
    match reason.as_deref() {
        Some(PREVIEW_READY) => {
            c.pause_reason = None;
            c.paused_at = None;
            // Promotion granted: the switch is not held by the setting.
            c.step_index = stage::PROMOTED;
            b.handled.push((requests::PROMOTE, v));
        }
        Some(pause::INCONCLUSIVE) => {
            accept_inconclusive(&mut b.status);
            c.pause_reason = None;
            c.paused_at = None;
            b.handled.push((requests::PROMOTE, v));
            b.event(
                false,
                "InconclusiveAccepted",
                format!(
                    "blue-green {}: inconclusive analysis accepted by request",
                    c.version
                ),
            );
        }
        // Not paused: nothing to promote yet (answered as ignored).
        _ => {}
    }
}

fn pause_inconclusive(b: &mut Builder<'_>, c: &mut CanaryRevision, why: &str) {
    if c.pause_reason.is_some() {
        return;
    }
    b.event(
        true,
        "AnalysisInconclusive",
        format!(
            "blue-green {} paused: {why}; promote to accept, abort to roll back",
            c.version
        ),
    );
    c.pause_reason = Some(pause::INCONCLUSIVE.into());
    c.paused_at = Some(time(b.now));
}

/// All traffic to the new revision at once, when its preview is Available.
/// Returns whether it switched.
fn switch(b: &mut Builder<'_>, c: &mut CanaryRevision, available: bool, how: &str) -> bool {
    if !available {
        return false;
    }
    let stable = b
        .status
        .stable
        .as_ref()
        .map_or(String::new(), |s| s.version.clone());
    c.switched_at = Some(time(b.now));
    c.weight = 100;
    if c.step_index != stage::FULL {
        c.step_index = stage::POST_PROMOTION;
    }
    c.step_started_at = Some(time(b.now));
    b.event(
        false,
        "TrafficSwitched",
        format!(
            "blue-green {}: promoted {how}; all traffic switched to it, {stable} kept at full size",
            c.version
        ),
    );
    true
}

/// An abort: traffic goes (back) to the previous stable revision at once.
fn fail(
    b: &mut Builder<'_>,
    mut c: CanaryRevision,
    stable: &StableRevision,
    reason: &'static str,
    why: String,
    abort_delay: i64,
) {
    let why = if c.switched_at.is_some() {
        format!("{why} (switched back)")
    } else {
        why
    };
    abort(b, &mut c, reason, why, abort_delay);
    keep_aborted(b, c, stable);
}

/// The new revision becomes stable; the previous one retires after
/// `scaleDownDelaySeconds`.
fn finish(b: &mut Builder<'_>, c: CanaryRevision, scale_down_delay: i64, full: i32) {
    let started = c.started_at.clone();
    let target = b.target.clone();
    b.apply.push(RevisionPlan {
        revision: target,
        track: Track::Canary,
        replicas: (b.spec.autoscaling.is_none()).then_some(full),
        initial_replicas: Some(full),
    });
    b.status.canary = Some(c);
    make_stable(b, Some(scale_down_delay), started.as_ref());
    b.canary_weight = 0;
    b.switched = false;
}

/// Phase, Progressing (status, reason, message) and the summary of a live
/// blue-green rollout.
pub(super) fn summary(
    spec: &RankingModelSpec,
    model: &str,
    c: &CanaryRevision,
    stable: &StableRevision,
    preview_ready: (i32, i32),
) -> (Phase, (&'static str, &'static str, String), String) {
    let preview = preview_service_name(model);
    let (ready, want) = preview_ready;
    let waiting = match c.step_index {
        stage::PREVIEW => format!("preview coming up behind {preview}: {ready}/{want} ready"),
        stage::PRE_PROMOTION => {
            format!("preview ready at full size behind {preview}; prePromotionAnalysis running")
        }
        stage::PROMOTION => {
            let wait = i64::from(settings(spec).auto_promotion_seconds.unwrap_or(0).max(0));
            match &c.preview_ready_at {
                Some(ready) => format!(
                    "preview ready at full size behind {preview}; all traffic switches at {} (autoPromotionSeconds={wait})",
                    ready.0 + SignedDuration::from_secs(wait)
                ),
                None => format!("preview ready at full size behind {preview}"),
            }
        }
        stage::POST_PROMOTION => format!(
            "all traffic on {} since the switch; postPromotionAnalysis running, {} kept at full size",
            c.version, stable.version
        ),
        _ if c.switched_at.is_some() => format!("all traffic on {}", c.version),
        stage::PROMOTED => format!(
            "promoted by request: switching once the preview is Available ({ready}/{want} ready)"
        ),
        _ => format!(
            "promoted fully by request: switching and finishing once the preview is Available ({ready}/{want} ready)"
        ),
    };
    match c.pause_reason.as_deref() {
        Some(PREVIEW_READY) => (
            Phase::Paused,
            (
                "Unknown",
                "RolloutPaused",
                format!(
                    "preview of {} ready at full size behind {preview}; waiting for mlctl promote {model} (or abort)",
                    c.version
                ),
            ),
            format!(
                "preview of {} ready at full size behind {preview}; waiting for mlctl promote",
                c.version
            ),
        ),
        Some(pause::FEATURES) => (
            Phase::Progressing,
            (
                "True",
                "WaitingForFeatures",
                format!("blue-green {} waits for its features: {waiting}", c.version),
            ),
            format!("blue-green {} waits for features", c.version),
        ),
        Some(reason) => (
            Phase::Paused,
            (
                "Unknown",
                "RolloutPaused",
                format!(
                    "blue-green {} paused ({reason}): {waiting}; promote to accept or abort",
                    c.version
                ),
            ),
            format!("blue-green {} paused ({reason})", c.version),
        ),
        None => (
            Phase::Progressing,
            (
                "True",
                "RollingOut",
                format!("blue-green {}: {waiting}", c.version),
            ),
            format!("blue-green {}: {waiting}", c.version),
        ),
    }
}

/// Whether the model renders `<model>-preview`.
pub(super) fn has_preview(spec: &RankingModelSpec, canary: Option<&CanaryRevision>) -> bool {
    spec.rollout
        .as_ref()
        .is_some_and(|r| r.blue_green.is_some())
        || canary.is_some_and(is_blue_green)
}
