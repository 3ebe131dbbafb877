//! Metric analysis of canary rollouts, after Argo Rollouts' AnalysisRun: each
//! metric is measured on a schedule by a provider (Prometheus, web), every
//! value is classified by the metric's conditions, and the counts against the
//! limits give the metric's verdict. The bookkeeping ([`next_due`], [`due`],
//! [`record`]) is pure; the requests run in the [`Worker`], off the reconcile
//! path, and only where the operator's allow-list ([`guard`]) lets them go.

pub mod client;
pub mod expr;
pub mod guard;
pub mod job;
pub mod provider;
pub mod secrets;
pub mod templates;
pub mod worker;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mlctl_crds::common::parse_duration;
use mlctl_crds::rankingmodel::{AnalysisMetric, Measurement, MetricStatus};

pub use provider::Prober;
pub use worker::Worker;

/// The operator's analysis settings (its `--analysis-*` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where requests may go.
    pub allow: Vec<guard::AllowEntry>,
    /// The Services' DNS domain, for `in-cluster`.
    pub cluster_domain: String,
    /// Upper bound of every request's timeout.
    pub timeout_max: Duration,
    /// Requests to one host at once.
    pub per_host_concurrency: usize,
    /// Requests at once, all hosts together.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow: vec![guard::AllowEntry::InCluster],
            cluster_domain: guard::DEFAULT_CLUSTER_DOMAIN.into(),
            timeout_max: provider::DEFAULT_TIMEOUT,
            per_host_concurrency: 4,
            concurrency: 64,
        }
    }
}

impl From<&crate::config::Config> for Settings {
    fn from(c: &crate::config::Config) -> Self {
        Settings {
            allow: c.analysis_allow.clone(),
            cluster_domain: c.analysis_cluster_domain.clone(),
            timeout_max: c.analysis_timeout_max,
            per_host_concurrency: usize::from(c.analysis_per_host_concurrency),
            concurrency: usize::from(c.analysis_concurrency),
        }
    }
}

impl Settings {
    /// The prober these settings describe, reading credentials from `secrets`.
    pub fn prober(&self, secrets: std::sync::Arc<dyn secrets::Source>) -> Prober {
        Prober::new(
            guard::AllowList::new(self.allow.clone(), &self.cluster_domain),
            self.timeout_max,
            secrets,
        )
    }
}

/// Measurements kept in status per metric (newest last).
pub const MEASUREMENTS_KEPT: usize = 10;
/// Time between measurements when `interval` is not set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Consecutive errors tolerated when `consecutiveErrorLimit` is not set.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;

/// Outcome of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

impl Outcome {
    /// The name stored in `Measurement.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Successful => "Successful",
            Outcome::Failed => "Failed",
            Outcome::Inconclusive => "Inconclusive",
            Outcome::Error => "Error",
        }
    }
}

/// Verdict of one metric's analysis (stored as `MetricStatus.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Running,
    Successful,
    Failed,
    Inconclusive,
    Error,
}

impl Verdict {
    /// The name stored in `MetricStatus.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Running => "Running",
            Verdict::Successful => "Successful",
            Verdict::Failed => "Failed",
            Verdict::Inconclusive => "Inconclusive",
            Verdict::Error => "Error",
        }
    }

    /// Parses `status.phase`; unknown or empty → Running.
    pub fn of(status: &MetricStatus) -> Verdict {
        match status.phase.as_str() {
            "Successful" => Verdict::Successful,
            "Failed" => Verdict::Failed,
            "Inconclusive" => Verdict::Inconclusive,
            "Error" => Verdict::Error,
            _ => Verdict::Running,
        }
    }

    /// Whether the verdict can no longer change.
    pub fn is_final(self) -> bool {
        self != Verdict::Running
    }
}

/// Placeholder values substituted into queries and URLs: `{{model}}`,
/// `{{namespace}}`, `{{version}}`, `{{track}}`, `{{stable_version}}`,
/// `{{canary_version}}`.
#[derive(Debug, Clone)]
pub struct Vars {
    pub model: String,
    pub namespace: String,
    pub version: String,
    pub track: String,
    /// The version serving stable traffic.
    pub stable_version: String,
    /// The version under canary.
    pub canary_version: String,
}

/// A duration field, falling back to `default` when absent or invalid (the
/// CRD's CEL rules reject invalid durations before they get here).
fn duration_field(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).unwrap_or(default)
}

fn plus(at: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The number of measurements a metric takes; 0 means unlimited.
fn effective_count(metric: &AnalysisMetric, background: bool) -> i32 {
    metric
        .count
        .unwrap_or(if background { 0 } else { 1 })
        .max(0)
}

/// Measurements that count towards `count` (errors are retried instead).
fn taken(status: &MetricStatus) -> i32 {
    status
        .successful
        .saturating_add(status.failed)
        .saturating_add(status.inconclusive)
}

/// Pure. When the next measurement of `metric` is due, or None when no more
/// are needed (verdict final, or `count` measurements taken). First one at
/// `started_at + initialDelay` (a status without `startedAt` is due at once),
/// then every `interval` (default 1m) after the previous measurement's `at`.
/// `count` default: 0 (= unlimited) when `background`, 1 for a step analysis.
pub fn next_due(
    metric: &AnalysisMetric,
    status: &MetricStatus,
    background: bool,
) -> Option<Timestamp> {
    if Verdict::of(status).is_final() {
        return None;
    }
    let count = effective_count(metric, background);
    if count > 0 && taken(status) >= count {
        return None;
    }
    match status.measurements.last() {
        Some(last) => Some(plus(
            last.at.0,
            duration_field(metric.interval.as_deref(), DEFAULT_INTERVAL),
        )),
        None => {
            let started = status
                .started_at
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            Some(plus(
                started,
                duration_field(metric.initial_delay.as_deref(), Duration::ZERO),
            ))
        }
    }
}

/// Formats a measured value compactly: `0.0123`, `12`, `1e-9`, `NaN`, `+Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let plain = format!("{v}");
    let scientific = format!("{v:e}");
    if plain.len() > 8 && scientific.len() < plain.len() {
        scientific
    } else {
        plain
    }
}

/// One classified measurement. `detail` says why (absent for a success).
struct Classified {
    outcome: Outcome,
    value: Option<String>,
    detail: Option<String>,
}

fn condition_error(field: &str, src: &str, e: &expr::ExprError) -> String {
    format!("{field} {src:?} cannot be evaluated: {e}")
}

fn classify(metric: &AnalysisMetric, result: Result<Option<f64>, String>) -> Classified {
    let v = match result {
        Err(message) => {
            return Classified {
                outcome: Outcome::Error,
                value: None,
                detail: Some(message),
            };
        }
        Ok(None) => {
            return Classified {
                outcome: Outcome::Inconclusive,
                value: None,
                detail: Some("no data".into()),
            };
        }
        Ok(Some(v)) => v,
    };
    let shown = format_value(v);
    let with = |outcome, detail: Option<String>| Classified {
        outcome,
        value: Some(shown.clone()),
        detail,
    };
    if !v.is_finite() {
        return with(
            Outcome::Inconclusive,
            Some(format!("result {shown} is not a finite number")),
        );
    }
    let eval = |field: &str, src: &str| {
        expr::evaluate(src, v).map_err(|e| condition_error(field, src, &e))
    };
    let success = metric
        .success_condition
        .as_deref()
        .map(|src| (src, eval("successCondition", src)));
    let failure = metric
        .failure_condition
        .as_deref()
        .map(|src| (src, eval("failureCondition", src)));
    let broke = |field: &str, src: &str| Some(format!("result {shown} broke {field} {src:?}"));
    match (success, failure) {
        (Some((_, Err(e))), _) | (_, Some((_, Err(e)))) => with(Outcome::Error, Some(e)),
        (Some((s, Ok(passed))), Some((f, Ok(failed)))) => {
            if failed {
                with(Outcome::Failed, broke("failureCondition", f))
            } else if passed {
                with(Outcome::Successful, None)
            } else {
                with(
                    Outcome::Inconclusive,
                    Some(format!(
                        "result {shown} met neither successCondition {s:?} nor failureCondition {f:?}"
                    )),
                )
            }
        }
        (Some((s, Ok(passed))), None) => {
            if passed {
                with(Outcome::Successful, None)
            } else {
                with(Outcome::Failed, broke("successCondition", s))
            }
        }
        (None, Some((f, Ok(failed)))) => {
            if failed {
                with(Outcome::Failed, broke("failureCondition", f))
            } else {
                with(Outcome::Successful, None)
            }
        }
        // A Job metric without conditions: the Job's success is the verdict
        // (the value is then 1 or 0, see job::reading).
        (None, None) if metric.provider.job.is_some() => {
            if v == 1.0 {
                with(Outcome::Successful, None)
            } else {
                with(Outcome::Failed, Some("the Job failed".into()))
            }
        }
        (None, None) => with(
            Outcome::Error,
            Some(
                "the metric has neither successCondition nor failureCondition; \
                 add one, e.g. successCondition: \"result < 0.05\""
                    .into(),
            ),
        ),
    }
}

/// The verdict the counters give, and the limit that decided it.
fn verdict(metric: &AnalysisMetric, status: &MetricStatus, background: bool) -> (Verdict, String) {
    let error_limit = metric
        .consecutive_error_limit
        .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT)
        .max(0);
    let failure_limit = metric.failure_limit.unwrap_or(0).max(0);
    let inconclusive_limit = metric.inconclusive_limit.unwrap_or(0).max(0);
    let count = effective_count(metric, background);
    if status.consecutive_errors > error_limit {
        return (
            Verdict::Error,
            format!(
                "{} consecutive errors > consecutiveErrorLimit {error_limit}",
                status.consecutive_errors
            ),
        );
    }
    if status.failed > failure_limit {
        return (
            Verdict::Failed,
            format!("{} failed > failureLimit {failure_limit}", status.failed),
        );
    }
    if let Some(limit) = metric.consecutive_failure_limit
        && status.consecutive_failures > limit.max(0)
    {
        return (
            Verdict::Failed,
            format!(
                "{} consecutive failed > consecutiveFailureLimit {}",
                status.consecutive_failures,
                limit.max(0)
            ),
        );
    }
    if status.inconclusive > inconclusive_limit {
        return (
            Verdict::Inconclusive,
            format!(
                "{} inconclusive > inconclusiveLimit {inconclusive_limit}",
                status.inconclusive
            ),
        );
    }
    let tally = format!(
        "{} successful, {} failed, {} inconclusive, {} errors",
        status.successful, status.failed, status.inconclusive, status.errors
    );
    if count > 0 && taken(status) >= count {
        return (
            Verdict::Successful,
            format!("{count} of {count} measurements taken: {tally}"),
        );
    }
    let of = if count > 0 {
        format!(" of {count}")
    } else {
        String::new()
    };
    (
        Verdict::Running,
        format!("{} measurements{of} taken: {tally}", taken(status)),
    )
}

/// Pure. Classifies one provider result and records it: counters,
/// consecutive counters, bounded measurements, then recomputes phase
/// (Verdict) and message. Returns the outcome.
/// `result`: Ok(Some(v)) a number; Ok(None) no data; Err(msg) the provider failed.
/// On a final status this records nothing and only returns the outcome.
pub fn record(
    metric: &AnalysisMetric,
    status: &mut MetricStatus,
    background: bool,
    result: Result<Option<f64>, String>,
    at: Timestamp,
) -> Outcome {
    let classified = classify(metric, result);
    let outcome = classified.outcome;
    if Verdict::of(status).is_final() {
        return outcome;
    }
    let bump = |n: &mut i32| *n = n.saturating_add(1);
    match outcome {
        Outcome::Successful => bump(&mut status.successful),
        Outcome::Failed => bump(&mut status.failed),
        Outcome::Inconclusive => bump(&mut status.inconclusive),
        Outcome::Error => bump(&mut status.errors),
    }
    if outcome == Outcome::Error {
        bump(&mut status.consecutive_errors);
    } else {
        status.consecutive_errors = 0;
    }
    if outcome == Outcome::Failed {
        bump(&mut status.consecutive_failures);
    } else {
        status.consecutive_failures = 0;
    }
    status.measurements.push(Measurement {
        outcome: outcome.as_str().into(),
        value: classified.value.clone(),
        message: classified.detail.clone(),
        at: Time(at),
    });
    let excess = status.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    status.measurements.drain(..excess);

    let (verdict, reason) = verdict(metric, status, background);
    status.phase = verdict.as_str().into();
    let last = match (&classified.detail, &classified.value) {
        (Some(detail), _) => detail.clone(),
        (None, Some(value)) => format!("result {value} {}", outcome.as_str()),
        (None, None) => outcome.as_str().into(),
    };
    status.message = Some(match verdict {
        // The measurement that decided it explains the verdict.
        Verdict::Failed | Verdict::Error | Verdict::Inconclusive => {
            format!("metric {}: {last} ({reason})", metric.name)
        }
        Verdict::Successful => format!("metric {}: {reason}", metric.name),
        Verdict::Running => format!("metric {}: last {last}; {reason}", metric.name),
    });
    outcome
}

/// Blue-green pre- and post-promotion analyses are measured like analysis
/// steps, under these reserved step numbers; their MetricStatus carries
/// `stage` (`PrePromotion`, `PostPromotion`) instead of `step`.
pub const PRE_PROMOTION_STEP: i32 = -1;
/// See [`PRE_PROMOTION_STEP`].
pub const POST_PROMOTION_STEP: i32 = -2;

/// The blue-green stage a reserved step number stands for.
pub fn stage_of(step: Option<i32>) -> Option<&'static str> {
    match step {
        Some(PRE_PROMOTION_STEP) => Some("PrePromotion"),
        Some(POST_PROMOTION_STEP) => Some("PostPromotion"),
        _ => None,
    }
}

/// Whether `s` records metric `name` of analysis `step`.
fn is_status_of(s: &MetricStatus, name: &str, step: Option<i32>) -> bool {
    s.name == name
        && match stage_of(step) {
            Some(stage) => s.step.is_none() && s.stage.as_deref() == Some(stage),
            None => s.step == step && s.stage.is_none(),
        }
}

/// Pure. The metrics of one analysis (`step`, None for background) whose
/// measurement is due at `now`, each with the time it fell due. Creates a
/// metric's MetricStatus in `statuses` when missing (matched by (name,
/// step); started_at = now, phase Running).
pub fn due<'a>(
    metrics: &[&'a AnalysisMetric],
    step: Option<i32>,
    statuses: &mut Vec<MetricStatus>,
    now: Timestamp,
) -> Vec<(&'a AnalysisMetric, Timestamp)> {
    let background = step.is_none();
    let mut due = Vec::new();
    for metric in metrics {
        let index = match statuses
            .iter()
            .position(|s| is_status_of(s, &metric.name, step))
        {
            Some(index) => index,
            None => {
                statuses.push(MetricStatus {
                    name: metric.name.clone(),
                    step: step.filter(|_| stage_of(step).is_none()),
                    stage: stage_of(step).map(str::to_string),
                    phase: Verdict::Running.as_str().into(),
                    started_at: Some(Time(now)),
                    ..MetricStatus::default()
                });
                statuses.len() - 1
            }
        };
        if let Some(at) = statuses
            .get(index)
            .and_then(|s| next_due(metric, s, background))
            .filter(|at| *at <= now)
        {
            due.push((*metric, at));
        }
    }
    due
}

/// Pure. Records a finished measurement of `metric` (of analysis `step`),
/// taken at `at`, in its MetricStatus; None when it has none.
pub fn record_in(
    metric: &AnalysisMetric,
    step: Option<i32>,
    statuses: &mut [MetricStatus],
    result: Result<Option<f64>, String>,
    at: Timestamp,
) -> Option<Outcome> {
    let status = statuses
        .iter_mut()
        .find(|s| is_status_of(s, &metric.name, step))?;
    Some(record(metric, status, step.is_none(), result, at))
}

/// Pure. When the earliest next measurement of `metrics` is due, leaving
/// out those `in_flight(name, due_at)` says are being taken (their result
/// re-enqueues the model).
pub fn next_wake(
    metrics: &[&AnalysisMetric],
    step: Option<i32>,
    statuses: &[MetricStatus],
    in_flight: impl Fn(&str, Timestamp) -> bool,
) -> Option<Timestamp> {
    metrics
        .iter()
        .filter_map(|metric| {
            let status = statuses
                .iter()
                .find(|s| is_status_of(s, &metric.name, step))?;
            next_due(metric, status, step.is_none()).filter(|at| !in_flight(&metric.name, *at))
        })
        .min()
}

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
