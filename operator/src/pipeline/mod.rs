//! FeaturePipeline logic without I/O: what a pipeline's status is and which
//! runs to start or remove, as a function of its spec, its last status, the
//! runs that exist and the clock. The controller
//! ([`crate::controller::featurepipeline`]) only reads and writes.

pub mod cron;
mod freshness;
pub mod naming;
pub mod observe;
pub mod render;
mod requests;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mlctl_crds::featurepipeline::{
    ConcurrencyPolicy, FeaturePipelineSpec, FeaturePipelineStatus, RunStatus, SchemaStatus,
};
use serde::Deserialize;

pub use freshness::{FreshnessReference, freshness_reference};
pub use naming::RunTrigger;
pub use render::{PipelineRef, RunPlan};
pub use requests::{BackfillRequest, MAX_BACKFILL_INTERVALS, parse_backfill};

use crate::rollout::{Transition, set_condition};
use cron::{Cron, time_zone};

/// The last this many finished runs all failed: the pipeline is Degraded.
pub const DEGRADED_AFTER_FAILURES: usize = 3;
/// Due times looked at in one reconcile; more are handled in the next ones.
pub const MAX_DUE_PER_RECONCILE: usize = 1000;
/// Requeue while the Spark operator's CRD is missing.
pub const SPARK_DISCOVERY_RETRY: Duration = Duration::from_secs(30);
/// Requeue while a SparkApplication runs: a safety net under the watch of
/// SparkApplications (it costs no API call: reconciles read indexes).
pub const SPARK_POLL: Duration = Duration::from_secs(10);
/// Requeue of a running streaming SparkApplication (to notice it stopped).
pub const SPARK_STREAMING_CHECK: Duration = Duration::from_secs(60);

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Created, not running yet.
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished and failed (after its retries).
    Failed,
}

impl RunPhase {
    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::Running => "Running",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Failed => "Failed",
        }
    }

    /// Pending or Running.
    pub fn is_active(self) -> bool {
        matches!(self, RunPhase::Pending | RunPhase::Running)
    }

    /// The phase of a SparkApplication's `status.applicationState.state`.
    pub fn from_spark_state(state: Option<&str>) -> RunPhase {
        match state {
            Some("COMPLETED") => RunPhase::Succeeded,
            Some("FAILED" | "SUBMISSION_FAILED" | "FAILING") => RunPhase::Failed,
            Some("RUNNING" | "SUCCEEDING" | "PENDING_RERUN" | "INVALIDATING") => RunPhase::Running,
            _ => RunPhase::Pending,
        }
    }
}

/// What a run reports as JSON in its termination message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Event time up to which the run's output is complete (RFC 3339).
    #[serde(default)]
    pub watermark: Option<String>,
    /// Rows read.
    #[serde(default)]
    pub rows_read: Option<i64>,
    /// Rows written.
    #[serde(default)]
    pub rows_written: Option<i64>,
}

/// Parses a termination message: the whole message, or its last line that is
/// a JSON object (a run that fails with `FallbackToLogsOnError` may have logs
/// before it).
pub fn parse_report(message: &str) -> Option<RunReport> {
    let trimmed = message.trim();
    if let Ok(r) = serde_json::from_str(trimmed) {
        return Some(r);
    }
    trimmed
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// A run (Job or SparkApplication) as the controller observed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRun {
    /// Object name.
    pub name: String,
    /// What started it (its `mlctl.io/trigger` label).
    pub trigger: RunTrigger,
    /// `mlctl.io/interval-start` of a backfill run.
    pub interval_start: Option<i64>,
    /// Where it is.
    pub phase: RunPhase,
    /// Object creation.
    pub created_at: Option<Timestamp>,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Its termination-message report, if any.
    pub report: Option<RunReport>,
    /// The schema it writes (its annotations).
    pub schema: Option<SchemaStatus>,
}

impl ObservedRun {
    fn sort_time(&self) -> Option<Timestamp> {
        self.started_at.or(self.created_at)
    }
}

/// Which long-lived workload the pipeline has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// No workload (Spark schedule: the operator creates the runs).
    None,
    /// The CronJob `<name>`.
    CronJob,
    /// The Deployment `<name>`.
    StreamingDeployment,
    /// The SparkApplication `<name>`.
    StreamingSpark,
}

/// Everything observed besides spec and status.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// Pipeline name.
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`: no run is due before it.
    pub created_at: Timestamp,
    /// The clock (whole seconds).
    pub now: Timestamp,
    /// The pipeline's annotations (requests).
    pub annotations: &'a BTreeMap<String, String>,
    /// Runs that exist.
    pub runs: &'a [ObservedRun],
    /// Whether the SparkApplication CRD is served (only read for Spark).
    pub spark_available: bool,
    /// `status.lastScheduleTime` of the CronJob.
    pub cron_job_last_schedule: Option<Timestamp>,
    /// Whether the streaming workload runs (ready Deployment replicas, or a
    /// RUNNING application).
    pub streaming_ready: bool,
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The status to write (when it differs).
    pub status: FeaturePipelineStatus,
    /// The workload to apply; `None` removes nothing (owner references do).
    pub workload: Workload,
    /// Whether to apply the ConfigMap and workload at all (false when the
    /// spec cannot run, e.g. the Spark operator is missing).
    pub apply: bool,
    /// Runs to create.
    pub create: Vec<RunPlan>,
    /// Runs to delete (history limits, `Replace`, retried backfill intervals).
    pub delete: Vec<String>,
    /// Events to publish.
    pub events: Vec<Transition>,
    /// When to look again without a watch event.
    pub requeue_after: Option<Duration>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn max_time(a: Option<&Time>, b: Option<Timestamp>) -> Option<Time> {
    match (a.map(|t| t.0), b) {
        (Some(a), Some(b)) => Some(time(a.max(b))),
        (a, b) => a.or(b).map(time),
    }
}

fn min_requeue(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    let secs = t.as_second() - now.as_second();
    Duration::from_secs(secs.max(1) as u64)
}

struct Cx<'a> {
    spec: &'a FeaturePipelineSpec,
    obs: &'a Observed<'a>,
    status: FeaturePipelineStatus,
    previous: &'a FeaturePipelineStatus,
    d: Decision,
}

impl Cx<'_> {
    fn event(&mut self, warning: bool, reason: &'static str, message: String) {
        self.d.events.push(Transition {
            warning,
            reason,
            message,
        });
    }

    /// Sets a condition; publishes `reason` as an event when its status flips.
    fn condition(&mut self, type_: &str, status: &str, reason: &'static str, message: String) {
        let flipped = self
            .previous
            .conditions
            .get(type_)
            .is_none_or(|c| c.status != status || c.reason != reason);
        set_condition(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            &message,
            self.obs.generation,
            self.obs.now,
        );
        let warning = matches!(
            (type_, status, reason),
            ("Ready", "False", _) | ("Fresh", "False", "Stale") | ("Degraded", "True", _)
        );
        if flipped && (warning || self.previous.conditions.get(type_).is_some()) {
            self.event(warning, reason, message);
        }
    }
}

/// Decides the status, runs and events of a pipeline.
pub fn decide(
    spec: &FeaturePipelineSpec,
    current: &FeaturePipelineStatus,
    obs: &Observed<'_>,
) -> Decision {
    let mut cx = Cx {
        spec,
        obs,
        status: current.clone(),
        previous: current,
        d: Decision {
            status: FeaturePipelineStatus::default(),
            workload: Workload::None,
            apply: true,
            create: Vec::new(),
            delete: Vec::new(),
            events: Vec::new(),
            requeue_after: None,
        },
    };
    cx.status.observed_generation = obs.generation;
    let spark = spec.engine.spark.is_some();
    let schedule = spec.trigger.schedule.as_ref();
    cx.status.trigger = Some(match schedule {
        Some(s) => s.cron.trim().to_string(),
        None => "streaming".to_string(),
    });

    let parsed = match schedule {
        Some(s) => match Cron::parse(&s.cron)
            .map_err(|e| e.to_string())
            .and_then(|c| time_zone(s.time_zone.as_deref()).map(|tz| (c, tz)))
        {
            Ok(pair) => Some(pair),
            Err(message) => {
                let message = format!("spec.trigger.schedule: {message}");
                cx.condition("Ready", "False", "InvalidSchedule", message.clone());
                cx.status.phase = Some("Failed".into());
                cx.status.message = Some(message);
                cx.d.apply = false;
                return finish(cx);
            }
        },
        None => None,
    };
    if spark && !obs.spark_available {
        let message = "the SparkApplication CRD (sparkoperator.k8s.io/v1beta2) is not installed: \
             install the Spark operator (e.g. `helm install spark-operator spark-operator/spark-operator`) \
             or use spec.engine.container; the operator checks again every 30s"
            .to_string();
        cx.condition("Ready", "False", "SparkOperatorMissing", message.clone());
        cx.status.phase = Some("Pending".into());
        cx.status.message = Some(message);
        cx.d.apply = false;
        cx.d.requeue_after = Some(SPARK_DISCOVERY_RETRY);
        return finish(cx);
    }

    cx.d.workload = match (schedule.is_some(), spark) {
        (true, false) => Workload::CronJob,
        (true, true) => Workload::None,
        (false, false) => Workload::StreamingDeployment,
        (false, true) => Workload::StreamingSpark,
    };

    summarize_runs(&mut cx);
    if let (Some(s), Some((cron, tz))) = (schedule, parsed.as_ref()) {
        let suspended = s.suspend == Some(true);
        if spark {
            schedule_spark(&mut cx, cron, tz, suspended);
        } else {
            cx.status.last_schedule_time = max_time(
                cx.previous.last_schedule_time.as_ref(),
                obs.cron_job_last_schedule,
            );
        }
        cx.status.next_schedule_time = if suspended {
            None
        } else {
            cron.next_after(obs.now, tz).map(time)
        };
        let ready_reason = if suspended { "Suspended" } else { "Scheduled" };
        let message = if suspended {
            "suspended: no scheduled runs start (running ones continue)".to_string()
        } else {
            format!("runs on the schedule {:?}", s.cron.trim())
        };
        cx.condition("Ready", "True", ready_reason, message);
    } else {
        cx.status.next_schedule_time = None;
        let message = if obs.streaming_ready {
            "the streaming workload runs".to_string()
        } else {
            "waiting for the streaming workload to run".to_string()
        };
        let reason = if obs.streaming_ready {
            "Streaming"
        } else {
            "StreamingPending"
        };
        cx.condition(
            "Ready",
            if obs.streaming_ready { "True" } else { "False" },
            reason,
            message,
        );
        if obs.streaming_ready {
            cx.status.schema = Some(SchemaStatus {
                version: spec.features.schema_version,
                hash: render::schema_hash(spec),
            });
        }
    }

    requests::handle_run_request(&mut cx);
    requests::handle_backfill(&mut cx);
    freshness::freshness(&mut cx);
    degraded(&mut cx);
    phase(&mut cx);
    if spark && cx.obs.runs.iter().any(|r| r.phase.is_active()) {
        cx.d.requeue_after = min_requeue(cx.d.requeue_after, SPARK_POLL);
    }
    if cx.d.workload == Workload::StreamingSpark {
        // Under the SparkApplication watch: look at the streaming one
        // often while it starts, then once a minute (no API call).
        let every = if obs.streaming_ready {
            SPARK_STREAMING_CHECK
        } else {
            SPARK_POLL
        };
        cx.d.requeue_after = min_requeue(cx.d.requeue_after, every);
    }
    finish(cx)
}

fn finish(mut cx: Cx<'_>) -> Decision {
    cx.d.status = cx.status;
    cx.d
}

fn summarize_runs(cx: &mut Cx<'_>) {
    let runs = cx.obs.runs;
    cx.status.active_runs = Some(runs.iter().filter(|r| r.phase.is_active()).count() as i32);
    let succeeded: Vec<&ObservedRun> = runs
        .iter()
        .filter(|r| r.phase == RunPhase::Succeeded)
        .collect();
    cx.status.last_successful_time = max_time(
        cx.previous.last_successful_time.as_ref(),
        succeeded.iter().filter_map(|r| r.finished_at).max(),
    );
    let mut watermark = cx.previous.watermark.as_ref().map(|t| t.0);
    for r in &succeeded {
        let Some(text) = r.report.as_ref().and_then(|rep| rep.watermark.as_deref()) else {
            continue;
        };
        match text.parse::<Timestamp>() {
            Ok(w) => watermark = Some(watermark.map_or(w, |c| c.max(w))),
            Err(e) => {
                let message = format!(
                    "run {} reported the watermark {text:?}, which is not an RFC 3339 timestamp ({e}); \
                     write e.g. {{\"watermark\":\"2026-11-25T10:00:00Z\"}} to the termination message",
                    r.name
                );
                if cx
                    .previous
                    .last_run
                    .as_ref()
                    .is_none_or(|l| l.name != r.name)
                {
                    cx.event(true, "InvalidRunReport", message);
                }
            }
        }
    }
    cx.status.watermark = watermark.map(time);
    if let Some(latest) = succeeded
        .iter()
        .filter(|r| r.schema.is_some())
        .max_by_key(|r| (r.finished_at, r.name.clone()))
    {
        cx.status.schema = latest.schema.clone();
    }
    if let Some(last) = runs.iter().max_by_key(|r| (r.sort_time(), r.name.clone())) {
        let report = last.report.clone().unwrap_or_default();
        cx.status.last_run = Some(RunStatus {
            name: last.name.clone(),
            phase: last.phase.as_str().to_string(),
            started_at: last.started_at.map(time),
            finished_at: last.finished_at.map(time),
            rows_read: report.rows_read,
            rows_written: report.rows_written,
        });
    }
}

fn schedule_spark(cx: &mut Cx<'_>, cron: &Cron, tz: &jiff::tz::TimeZone, suspended: bool) {
    let Some(schedule) = cx.spec.trigger.schedule.clone() else {
        return;
    };
    let now = cx.obs.now;
    let policy = schedule
        .concurrency_policy
        .unwrap_or(ConcurrencyPolicy::Forbid);
    let scheduled: Vec<&ObservedRun> = cx
        .obs
        .runs
        .iter()
        .filter(|r| r.trigger == RunTrigger::Schedule)
        .collect();
    history_limits(cx, &scheduled, &schedule);
    if suspended {
        return;
    }
    let since = cx
        .previous
        .last_schedule_time
        .as_ref()
        .map_or(cx.obs.created_at, |t| t.0);
    let (due, more) = cron.due_between(since, now, tz, MAX_DUE_PER_RECONCILE);
    if let Some(next) = cron.next_after(now, tz) {
        cx.d.requeue_after = min_requeue(cx.d.requeue_after, until(now, next));
    }
    let Some(&latest) = due.last() else {
        return;
    };
    let deadline = schedule.starting_deadline_seconds;
    let in_time = |t: &Timestamp| deadline.is_none_or(|d| now.as_second() - t.as_second() <= d);
    let within: Vec<Timestamp> = if more {
        Vec::new()
    } else {
        due.iter().copied().filter(in_time).collect()
    };
    let active: Vec<&ObservedRun> = scheduled
        .iter()
        .copied()
        .filter(|r| r.phase.is_active())
        .collect();
    if policy == ConcurrencyPolicy::Forbid && !active.is_empty() && !within.is_empty() {
        // Wait for the active run; a due time that passes its deadline
        // meanwhile is counted as missed then.
        if let Some(d) = deadline {
            let expires = within[0].as_second() + d + 1 - now.as_second();
            cx.d.requeue_after = min_requeue(
                cx.d.requeue_after,
                Duration::from_secs(expires.max(1) as u64),
            );
        }
        return;
    }
    let start: Vec<Timestamp> = match policy {
        ConcurrencyPolicy::Allow => within.clone(),
        ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace => {
            within.last().copied().into_iter().collect()
        }
    };
    if policy == ConcurrencyPolicy::Replace && !start.is_empty() {
        cx.d.delete.extend(active.iter().map(|r| r.name.clone()));
    }
    for t in &start {
        let name = naming::scheduled_run_name(cx.obs.name, t.as_second());
        if cx.obs.runs.iter().any(|r| r.name == name) {
            continue;
        }
        cx.d.create.push(RunPlan {
            name: name.clone(),
            trigger: RunTrigger::Schedule,
            request: None,
            interval: None,
            scheduled_at: Some(*t),
        });
        cx.event(
            false,
            "RunStarted",
            format!("started run {name} due at {t}"),
        );
    }
    let missed = (due.len() - start.len()) as i64;
    if missed > 0 {
        cx.status.missed_runs = Some(cx.previous.missed_runs.unwrap_or(0) + missed);
        let why = match deadline {
            Some(d) if within.len() < due.len() => {
                format!("they could not start within startingDeadlineSeconds={d}")
            }
            _ => "a later due time superseded them (one run at a time)".to_string(),
        };
        cx.event(
            true,
            "MissedRuns",
            format!(
                "{missed} run(s) due between {} and {latest} were not started: {why}",
                due[0]
            ),
        );
    }
    cx.status.last_schedule_time = Some(time(latest));
    if more {
        cx.d.requeue_after = Some(Duration::from_secs(1));
    }
}

fn history_limits(
    cx: &mut Cx<'_>,
    scheduled: &[&ObservedRun],
    schedule: &mlctl_crds::featurepipeline::Schedule,
) {
    for (phase, limit) in [
        (RunPhase::Succeeded, schedule.successful_runs_history_limit),
        (RunPhase::Failed, schedule.failed_runs_history_limit),
    ] {
        let limit = limit.unwrap_or(render::DEFAULT_HISTORY_LIMIT).max(0) as usize;
        let mut finished: Vec<&&ObservedRun> =
            scheduled.iter().filter(|r| r.phase == phase).collect();
        finished.sort_by_key(|r| std::cmp::Reverse((r.finished_at, r.name.clone())));
        cx.d.delete
            .extend(finished.iter().skip(limit).map(|r| r.name.clone()));
    }
}

fn degraded(cx: &mut Cx<'_>) {
    let mut finished: Vec<&ObservedRun> = cx
        .obs
        .runs
        .iter()
        .filter(|r| !r.phase.is_active())
        .collect();
    finished.sort_by_key(|r| std::cmp::Reverse((r.finished_at, r.name.clone())));
    let failing = finished
        .iter()
        .take_while(|r| r.phase == RunPhase::Failed)
        .count();
    let n = DEGRADED_AFTER_FAILURES;
    if failing >= n {
        cx.condition(
            "Degraded",
            "True",
            "RunsFailing",
            format!(
                "the last {n} runs failed (latest: {}); see `kubectl logs job/{}`",
                finished[0].name, finished[0].name
            ),
        );
    } else if failing < finished.len() {
        cx.condition(
            "Degraded",
            "False",
            "RunSucceeded",
            format!("the latest run ({}) succeeded", finished[failing].name),
        );
    } else if cx.previous.conditions.get("Degraded").is_none() {
        cx.condition(
            "Degraded",
            "False",
            "NoFailures",
            format!("fewer than {n} runs failed in a row"),
        );
    }
}

fn phase(cx: &mut Cx<'_>) {
    let phase = if cx.spec.trigger.streaming.is_some() {
        "Streaming"
    } else if cx
        .spec
        .trigger
        .schedule
        .as_ref()
        .is_some_and(|s| s.suspend == Some(true))
    {
        "Suspended"
    } else if cx.obs.runs.iter().any(|r| r.phase.is_active()) {
        "Running"
    } else {
        match cx.status.last_run.as_ref() {
            Some(r) => match r.phase.as_str() {
                "Succeeded" => "Succeeded",
                "Failed" => "Failed",
                _ => "Pending",
            },
            None => "Pending",
        }
    };
    cx.status.phase = Some(phase.to_string());
    let fresh = cx
        .status
        .conditions
        .get("Fresh")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    cx.status.message = Some(match &cx.status.last_run {
        Some(r) => format!("last run {} {}; {fresh}", r.name, r.phase),
        None => fresh,
    });
}

#[cfg(test)]
mod tests;
