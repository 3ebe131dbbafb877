//! Labels, annotations and the names of the objects of a FeaturePipeline.
//!
//! Run names are at most 63 characters (a Job's name becomes a label value):
//! `<pipeline name, truncated>-<letter><suffix>` where the letter is `s`
//! (scheduled by the operator, Spark), `m` (manual, `mlctl.io/run`) or `b`
//! (backfill), and the suffix is the due time or interval start in Unix
//! seconds (`s`, `b`) or a 10-hex-digit hash of the request value (`m`).
//! Scheduled Jobs of the container engine are named by the CronJob controller.

use std::collections::BTreeMap;

use crate::render::{COMPONENT_LABEL, FIELD_MANAGER, content_hash};

/// The pipeline a run, pod or child belongs to.
pub const PIPELINE_LABEL: &str = "mlctl.io/pipeline";
/// What started a run: `schedule`, `manual` or `backfill`.
pub const TRIGGER_LABEL: &str = "mlctl.io/trigger";
/// Unix seconds of the start of a backfill interval.
pub const INTERVAL_START_LABEL: &str = "mlctl.io/interval-start";
/// On pods of runs the operator names itself: the run's name.
pub const RUN_LABEL: &str = "mlctl.io/run";
/// On manual runs: the `mlctl.io/run` value that asked for it.
pub const REQUEST_ANNOTATION: &str = "mlctl.io/request";
/// On scheduled Spark runs: the due time (RFC 3339) the run is for.
pub const SCHEDULED_AT_ANNOTATION: &str = "mlctl.io/scheduled-at";
/// On every run: `spec.features.schemaVersion` it writes.
pub const SCHEMA_VERSION_ANNOTATION: &str = "mlctl.io/schema-version";
/// On every run: the hash of the feature fields it writes.
pub const SCHEMA_HASH_ANNOTATION: &str = "mlctl.io/schema-hash";
/// Labels the Job controller puts on a Job's pods.
pub const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// Label the Spark operator puts on an application's pods.
pub const SPARK_APP_LABEL: &str = "sparkoperator.k8s.io/app-name";

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunTrigger {
    /// The schedule.
    Schedule,
    /// A `mlctl.io/run` request.
    Manual,
    /// A `mlctl.io/backfill` request.
    Backfill,
}

impl RunTrigger {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
            RunTrigger::Backfill => "backfill",
        }
    }

    /// Parses a label value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "schedule" => Some(RunTrigger::Schedule),
            "manual" => Some(RunTrigger::Manual),
            "backfill" => Some(RunTrigger::Backfill),
            _ => None,
        }
    }
}

/// Labels of every object of a pipeline.
pub fn pipeline_labels(pipeline: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), pipeline.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        (COMPONENT_LABEL.to_string(), "feature-pipeline".to_string()),
        (PIPELINE_LABEL.to_string(), pipeline.to_string()),
    ])
}

/// Labels of a run object and its pods.
pub fn run_labels(pipeline: &str, trigger: RunTrigger) -> BTreeMap<String, String> {
    let mut labels = pipeline_labels(pipeline);
    labels.insert(TRIGGER_LABEL.to_string(), trigger.as_str().to_string());
    labels
}

fn truncated(pipeline: &str, suffix_len: usize) -> &str {
    let keep = 63usize.saturating_sub(suffix_len + 2);
    let mut end = pipeline.len().min(keep);
    while !pipeline.is_char_boundary(end) {
        end -= 1;
    }
    pipeline[..end].trim_end_matches('-')
}

fn run_name(pipeline: &str, letter: char, suffix: &str) -> String {
    format!("{}-{letter}{suffix}", truncated(pipeline, suffix.len()))
}

/// Name of a run the operator schedules itself (Spark), by due time.
pub fn scheduled_run_name(pipeline: &str, due_unix: i64) -> String {
    run_name(pipeline, 's', &due_unix.to_string())
}

/// Name of a manual run, by request value.
pub fn manual_run_name(pipeline: &str, request: &str) -> String {
    let hash = content_hash(&request);
    run_name(pipeline, 'm', &hash[..10.min(hash.len())])
}

/// Name of the run of one backfill interval, by interval start.
pub fn backfill_run_name(pipeline: &str, interval_start_unix: i64) -> String {
    run_name(pipeline, 'b', &interval_start_unix.to_string())
}

/// Name of the ConfigMap holding the pipeline's spec (and SQL).
pub fn config_map_name(pipeline: &str) -> String {
    format!("{pipeline}-pipeline")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_fit_a_label_and_are_deterministic() {
        let long = "a".repeat(52);
        for name in [
            scheduled_run_name(&long, 1_795_000_000),
            manual_run_name(&long, "2026-11-25T10:00:00.123456789Z"),
            backfill_run_name(&long, 1_795_000_000),
            backfill_run_name(&"x".repeat(80), i64::MAX),
        ] {
            assert!(name.len() <= 63, "{name}");
        }
        assert_eq!(backfill_run_name("ctr", 3600), "ctr-b3600");
        assert_eq!(scheduled_run_name("ctr", 60), "ctr-s60");
        assert_eq!(
            manual_run_name("ctr", "2026-11-25T10:00:00Z"),
            manual_run_name("ctr", "2026-11-25T10:00:00Z")
        );
        assert_ne!(
            manual_run_name("ctr", "2026-11-25T10:00:00Z"),
            manual_run_name("ctr", "2026-11-25T10:00:01Z")
        );
        // Truncation never leaves a double dash.
        let dashed = format!("{}-b{}", "a".repeat(50), "c".repeat(5));
        assert!(!backfill_run_name(&dashed, i64::MAX).contains("--"));
    }
}
