//! What the runs the controller observes say: a run Job or SparkApplication
//! and the pods of runs, as [`ObservedRun`]s the decision reads. Pure: the
//! objects come from the controller's indexes.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use mlctl_crds::featurepipeline::SchemaStatus;

use super::naming::{
    INTERVAL_START_LABEL, JOB_NAME_LABELS, RUN_LABEL, SCHEMA_HASH_ANNOTATION,
    SCHEMA_VERSION_ANNOTATION, SPARK_APP_LABEL, TRIGGER_LABEL,
};
use super::{ObservedRun, RunPhase, RunReport, RunTrigger, parse_report};
use crate::controller::now_seconds;

/// The value of label `key`.
pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
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
fn report_of(run: &str, pods: &[Arc<Pod>]) -> Option<RunReport> {
    let mut best: Option<(Option<Timestamp>, RunReport)> = None;
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
            let Some(report) = term.message.as_deref().and_then(parse_report) else {
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

/// A run Job as a run: its trigger and interval (labels), phase and times
/// (status), schema (annotations) and report (its pods); None for a Job
/// without a trigger label.
pub fn observe_job(job: &Job, pods: &[Arc<Pod>]) -> Option<ObservedRun> {
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

/// `status.applicationState.state` of a SparkApplication.
pub fn spark_state(app: &DynamicObject) -> Option<&str> {
    app.data
        .get("status")?
        .get("applicationState")?
        .get("state")?
        .as_str()
}

/// A SparkApplication run as a run, like [`observe_job`].
pub fn observe_spark(app: &DynamicObject, pods: &[Arc<Pod>]) -> Option<ObservedRun> {
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
