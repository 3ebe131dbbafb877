//! How fresh a pipeline's features are: its `Fresh` condition, and the
//! reference the features gate and the lag metric measure their age from.
//!
//! A scheduled pipeline's features are as old as the watermark its runs
//! report (else its last successful run). A streaming pipeline has no run
//! that finishes, so it never reports a watermark: its features are current
//! while its workload runs (a Ready pod of the Deployment -- the runtime
//! contract makes readiness mean "keeping up" -- or a RUNNING
//! SparkApplication), and age from the moment the operator saw it stop.

use jiff::Timestamp;
use mlctl_crds::featurepipeline::FeaturePipelineStatus;

use super::{Cx, min_requeue, time};

/// The `Fresh` reason of a streaming pipeline whose workload runs.
pub const STREAMING: &str = "Streaming";

/// What the age of a pipeline's features is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessReference {
    /// A streaming pipeline that runs: the features are current.
    Current,
    /// The features are complete up to this time.
    Since(Timestamp),
}

/// The freshness reference of a pipeline from its status; `None` before any
/// success (a scheduled pipeline) or before its workload first ran
/// (streaming). The one definition the features gate and the lag metric use.
pub fn freshness_reference(status: &FeaturePipelineStatus) -> Option<FreshnessReference> {
    if status
        .conditions
        .get("Fresh")
        .is_some_and(|c| c.status == "True" && c.reason == STREAMING)
    {
        return Some(FreshnessReference::Current);
    }
    since(status).map(FreshnessReference::Since)
}

/// Up to when the features are complete, by the status's times alone.
fn since(status: &FeaturePipelineStatus) -> Option<Timestamp> {
    let watermark = status.watermark.as_ref().map(|t| t.0);
    let last_success = status.last_successful_time.as_ref().map(|t| t.0);
    if status.trigger.as_deref() == Some("streaming") {
        // When the stream stopped; a watermark left from scheduled runs
        // before the switch to streaming is older.
        watermark.max(last_success)
    } else {
        watermark.or(last_success)
    }
}

/// Sets the `Fresh` condition (and, for a streaming pipeline, records when
/// its workload was last seen running in `lastSuccessfulTime`: written when
/// it starts and when it stops, never in between, so a running stream
/// causes no status writes).
pub(super) fn freshness(cx: &mut Cx<'_>) {
    let streaming = cx.spec.trigger.streaming.is_some();
    if streaming {
        let was_running = cx
            .previous
            .conditions
            .get("Fresh")
            .is_some_and(|c| c.status == "True" && c.reason == STREAMING);
        if cx.obs.streaming_ready != was_running {
            cx.status.last_successful_time = Some(time(cx.obs.now));
        }
        if cx.obs.streaming_ready {
            cx.condition(
                "Fresh",
                "True",
                STREAMING,
                "the streaming workload runs: its features are current".into(),
            );
            return;
        }
    }
    let reference = since(&cx.status);
    let what = if streaming {
        "the stop of the streaming workload"
    } else if cx.status.watermark.is_some() {
        "the watermark"
    } else {
        "the last successful run"
    };
    let objective = cx
        .spec
        .freshness
        .as_ref()
        .map(|f| f.max_staleness.clone())
        .unwrap_or_default();
    let max = mlctl_crds::parse_duration(&objective).ok();
    match (reference, max) {
        (None, _) if streaming => cx.condition(
            "Fresh",
            "False",
            "NotStreaming",
            "the streaming workload has not run yet".into(),
        ),
        (None, _) => cx.condition(
            "Fresh",
            "False",
            "NoSuccessfulRun",
            "no run has succeeded yet".into(),
        ),
        (Some(reference), None) if streaming => cx.condition(
            "Fresh",
            "True",
            "StreamStopped",
            format!("the streaming workload stopped at {reference} (no spec.freshness objective)"),
        ),
        (Some(_), None) => cx.condition(
            "Fresh",
            "True",
            "RunSucceeded",
            "a run succeeded (no spec.freshness objective)".into(),
        ),
        (Some(reference), Some(max)) => {
            let lag = cx.obs.now.as_second() - reference.as_second();
            let allowed = max.as_secs() as i64;
            if lag > allowed {
                cx.condition(
                    "Fresh",
                    "False",
                    "Stale",
                    format!(
                        "{what} ({reference}) is {lag}s old, more than maxStaleness {objective}"
                    ),
                );
            } else {
                cx.condition(
                    "Fresh",
                    "True",
                    if streaming {
                        "StreamStopped"
                    } else {
                        "WithinObjective"
                    },
                    format!("{what} ({reference}) is within maxStaleness {objective}"),
                );
                // Turns stale one second after the deadline: requeue then.
                let wait = std::time::Duration::from_secs((allowed - lag + 1).max(1) as u64);
                cx.d.requeue_after = min_requeue(cx.d.requeue_after, wait);
            }
        }
    }
}
