//! What canary and blue-green rollouts share: sizing the new revision,
//! the abort, retry and rollback requests, aborts themselves, and holding a
//! rollout while its features are not ready.

use k8s_openapi::jiff::SignedDuration;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{CanaryRevision, StableRevision};
use mlctl_crds::requests;

use super::{
    Builder, DEFAULT_ABORT_SCALE_DOWN_DELAY, Outcome, compare, features_block, pause,
    seconds_since, time,
};
use crate::render::{Track, deployment_name};

/// The stable revision, its current size, and the full size of the new
/// revision (the autoscaled stable's current size, at least its minimum).
pub(super) fn sizes(b: &Builder<'_>) -> (StableRevision, i32, i32) {
    let stable = b.status.stable.clone().unwrap_or_default();
    let min = super::desired_replicas(b.spec);
    let stable_size = b.observed(&stable.revision).map_or(min, |d| d.desired);
    let full = if b.spec.autoscaling.is_some() {
        stable_size.max(min)
    } else {
        min
    };
    (stable, stable_size, full)
}

/// `abortScaleDownDelaySeconds`, defaulted.
pub(super) fn abort_delay(spec: &RankingModelSpec) -> i64 {
    spec.rollout
        .as_ref()
        .and_then(|r| r.abort_scale_down_delay_seconds)
        .map_or(DEFAULT_ABORT_SCALE_DOWN_DELAY, i64::from)
}

/// A rollback request. When it is what started this rollout the rollback is
/// recorded and the caller skips the strategy's steps and analyses (returns
/// true); otherwise it is only answered.
pub(super) fn rollback_request(
    b: &mut Builder<'_>,
    starting: bool,
    stable: &StableRevision,
) -> bool {
    let Some(v) = b.ctx.requests.rollback.clone() else {
        return false;
    };
    b.handled.push((requests::ROLLBACK, v));
    if !starting {
        return false;
    }
    b.push_history(
        &stable.version,
        &stable.uri,
        None,
        &stable.revision,
        "RolledBack",
    );
    b.outcomes.push(Outcome {
        outcome: "rolled_back",
        seconds: None,
    });
    b.event(
        false,
        "RollingBack",
        format!(
            "rolling back from {} to {}: canary steps skipped, it takes all traffic once available",
            stable.version, b.spec.model.version
        ),
    );
    true
}

/// Abort (any time before the end) and retry (after an abort) requests.
pub(super) fn abort_or_retry(b: &mut Builder<'_>, c: &mut CanaryRevision, abort_delay: i64) {
    let now = b.now;
    if let Some(v) = b.ctx.requests.abort.clone()
        && c.aborted_at.is_none()
    {
        b.handled.push((requests::ABORT, v.clone()));
        abort(
            b,
            c,
            "RolloutAborted",
            format!("aborted by request ({}={v})", requests::ABORT),
            abort_delay,
        );
    }
    if let Some(v) = b.ctx.requests.retry.clone()
        && c.aborted_at.is_some()
    {
        b.handled.push((requests::RETRY, v));
        *c = CanaryRevision {
            version: c.version.clone(),
            uri: c.uri.clone(),
            revision: c.revision.clone(),
            step_started_at: Some(time(now)),
            started_at: Some(time(now)),
            strategy: c.strategy.clone(),
            ..CanaryRevision::default()
        };
        b.status.analysis = None;
        b.event(
            false,
            "Retrying",
            format!("canary {} restarts from step 1 by request", c.version),
        );
    }
}

/// An aborted rollout: traffic is on stable; the new revision's pods go at
/// `scaleDownAt`.
pub(super) fn keep_aborted(b: &mut Builder<'_>, c: CanaryRevision, stable: &StableRevision) {
    if let Some(at) = c.scale_down_at.clone()
        && b.now < at.0
    {
        b.wake_at(at.0);
    }
    b.relabel
        .push((deployment_name(b.ctx.name, &stable.revision), Track::Stable));
    b.status.canary = Some(c);
}

/// Features not ready hold the rollout where it is (pause reason
/// `FeaturesNotReady`); it resumes by itself once they are.
pub(super) fn hold_for_features(b: &mut Builder<'_>, c: &mut CanaryRevision) {
    let now = b.now;
    match features_block(b, false) {
        Some(why) if c.pause_reason.is_none() => {
            b.event(
                true,
                "FeaturesNotReady",
                format!("canary {} waits at weight {}%: {why}", c.version, c.weight),
            );
            c.pause_reason = Some(pause::FEATURES.into());
            c.paused_at = Some(time(now));
        }
        Some(_) => {}
        None if c.pause_reason.as_deref() == Some(pause::FEATURES) => {
            b.event(
                false,
                "FeaturesReady",
                format!("canary {} resumes: its features are ready", c.version),
            );
            c.pause_reason = None;
            c.paused_at = None;
            // The wait does not count against the progress deadline.
            c.step_started_at = Some(time(now));
        }
        None => {}
    }
}

/// All traffic back to stable at once; the canary's pods stay until
/// `abortScaleDownDelaySeconds` have passed.
pub(super) fn abort(
    b: &mut Builder<'_>,
    c: &mut CanaryRevision,
    reason: &'static str,
    why: String,
    abort_delay: i64,
) {
    let now = b.now;
    let stable = b
        .status
        .stable
        .as_ref()
        .map_or(String::new(), |s| s.version.clone());
    compare::end(c, c.step_index, now);
    c.aborted_at = Some(time(now));
    c.abort_reason = Some(why.clone());
    c.scale_down_at = Some(time(now + SignedDuration::from_secs(abort_delay)));
    c.weight = 0;
    c.pause_reason = None;
    c.paused_at = None;
    b.push_history(&c.version, &c.uri, None, &c.revision, "Aborted");
    if let Some(h) = b.status.history.first_mut() {
        h.comparisons = c.comparisons.clone();
    }
    b.outcomes.push(Outcome {
        outcome: "aborted",
        seconds: seconds_since(now, c.started_at.as_ref()),
    });
    b.event(
        true,
        reason,
        format!(
            "canary {} aborted: {why}; all traffic is back on stable {stable}",
            c.version
        ),
    );
    b.wake_at(now + SignedDuration::from_secs(abort_delay));
}
