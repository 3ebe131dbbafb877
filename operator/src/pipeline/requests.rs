//! The request annotations of a FeaturePipeline: `mlctl.io/run` (one run
//! now) and `mlctl.io/backfill` (bounded runs over past intervals).

use jiff::{SignedDuration, Timestamp};
use mlctl_crds::featurepipeline::BackfillStatus;
use mlctl_crds::requests::{BACKFILL, RUN};
use serde::Deserialize;

use super::naming::{self, RunTrigger};
use super::{Cx, RunPhase, RunPlan};

/// Most intervals one backfill may have.
pub const MAX_BACKFILL_INTERVALS: i64 = 1000;

/// A backfill request, as `mlctl pipeline backfill` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillRequest {
    /// Start of the first interval (RFC 3339).
    pub from: String,
    /// End of the last interval (RFC 3339).
    pub to: String,
    /// Interval length, e.g. `1h`.
    pub step: String,
    /// Runs at most in parallel (default 1).
    #[serde(default)]
    pub max_parallel: Option<i32>,
    /// When it was asked for; identifies the request.
    pub requested_at: String,
}

/// A checked backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// The request.
    pub request: BackfillRequest,
    /// Interval starts.
    pub starts: Vec<Timestamp>,
    /// Interval length.
    pub step: SignedDuration,
    /// Runs at most in parallel.
    pub max_parallel: i32,
}

const EXAMPLE: &str = r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z","step":"1h","maxParallel":2,"requestedAt":"2026-11-25T10:00:00Z"}"#;

/// The `requestedAt` of an annotation value, or the whole value when it has
/// none (so that a malformed request is still handled once).
pub fn backfill_key(value: &str) -> String {
    serde_json::from_str::<serde_json::Value>(value)
        .ok()
        .and_then(|v| v.get("requestedAt")?.as_str().map(str::to_string))
        .unwrap_or_else(|| value.to_string())
}

/// Parses and checks a backfill annotation; the error names the field and
/// the fix.
pub fn parse_backfill(value: &str) -> Result<Backfill, String> {
    let request: BackfillRequest = serde_json::from_str(value).map_err(|e| {
        format!("annotation {BACKFILL} is not a valid request ({e}); write JSON such as {EXAMPLE}")
    })?;
    let stamp = |field: &str, text: &str| -> Result<Timestamp, String> {
        text.parse().map_err(|e| {
            format!("{BACKFILL}: {field} {text:?} is not an RFC 3339 timestamp ({e}); use e.g. 2026-11-01T00:00:00Z")
        })
    };
    let from = stamp("from", &request.from)?;
    let to = stamp("to", &request.to)?;
    if from >= to {
        return Err(format!(
            "{BACKFILL}: from ({from}) must be before to ({to})"
        ));
    }
    let step =
        mlctl_crds::parse_duration(&request.step).map_err(|e| format!("{BACKFILL}: step: {e}"))?;
    if step.as_secs() < 1 {
        return Err(format!(
            "{BACKFILL}: step {:?} must be at least 1s, e.g. 1h",
            request.step
        ));
    }
    let max_parallel = request.max_parallel.unwrap_or(1);
    if max_parallel < 1 {
        return Err(format!(
            "{BACKFILL}: maxParallel {max_parallel} must be at least 1"
        ));
    }
    let step_secs = step.as_secs() as i64;
    let span = to.as_second() - from.as_second();
    let count = (span + step_secs - 1) / step_secs;
    if count > MAX_BACKFILL_INTERVALS {
        return Err(format!(
            "{BACKFILL}: {count} intervals of {} between {from} and {to}; at most {MAX_BACKFILL_INTERVALS} are allowed: use a longer step or split the range",
            request.step
        ));
    }
    let step = SignedDuration::from_secs(step_secs);
    let starts = (0..count)
        .filter_map(|i| from.checked_add(step * (i as i32)).ok())
        .collect();
    Ok(Backfill {
        request,
        starts,
        step,
        max_parallel,
    })
}

pub(super) fn handle_run_request(cx: &mut Cx<'_>) {
    let Some(value) = cx.obs.annotations.get(RUN).cloned() else {
        return;
    };
    if cx.previous.handled_requests.get(RUN) == Some(&value) {
        return;
    }
    cx.status
        .handled_requests
        .insert(RUN.to_string(), value.clone());
    if cx.spec.trigger.streaming.is_some() {
        cx.event(
            true,
            "RequestIgnored",
            format!("{RUN}: a streaming pipeline runs continuously; run requests apply to scheduled pipelines"),
        );
        return;
    }
    let name = naming::manual_run_name(cx.obs.name, &value);
    if !cx.obs.runs.iter().any(|r| r.name == name) {
        cx.d.create.push(RunPlan {
            name: name.clone(),
            trigger: RunTrigger::Manual,
            request: Some(value.clone()),
            interval: None,
            scheduled_at: None,
        });
    }
    cx.event(
        false,
        "RunRequested",
        format!("started run {name} for {RUN}={value}"),
    );
}

pub(super) fn handle_backfill(cx: &mut Cx<'_>) {
    let mut deleted: Vec<String> = Vec::new();
    if let Some(value) = cx.obs.annotations.get(BACKFILL).cloned() {
        let key = backfill_key(&value);
        if cx.previous.handled_requests.get(BACKFILL) != Some(&key) {
            cx.status
                .handled_requests
                .insert(BACKFILL.to_string(), key.clone());
            let parsed = if cx.spec.trigger.streaming.is_some() {
                Err(format!(
                    "{BACKFILL}: a streaming pipeline cannot be backfilled; backfill a scheduled pipeline"
                ))
            } else {
                parse_backfill(&value)
            };
            match parsed {
                Ok(b) => {
                    // Intervals that failed before run again.
                    for start in &b.starts {
                        let name = naming::backfill_run_name(cx.obs.name, start.as_second());
                        if cx
                            .obs
                            .runs
                            .iter()
                            .any(|r| r.name == name && r.phase == RunPhase::Failed)
                        {
                            cx.d.delete.push(name.clone());
                            deleted.push(name);
                        }
                    }
                    cx.status.backfill = Some(BackfillStatus {
                        requested_at: key,
                        from: b.request.from.clone(),
                        to: b.request.to.clone(),
                        step: b.request.step.clone(),
                        max_parallel: b.max_parallel,
                        phase: "Running".into(),
                        total: b.starts.len() as i32,
                        ..BackfillStatus::default()
                    });
                    cx.event(
                        false,
                        "BackfillStarted",
                        format!(
                            "backfill of {} interval(s) of {} from {} to {}, at most {} at once",
                            b.starts.len(),
                            b.request.step,
                            b.request.from,
                            b.request.to,
                            b.max_parallel
                        ),
                    );
                }
                Err(message) => {
                    cx.status.backfill = Some(BackfillStatus {
                        requested_at: key,
                        phase: "Failed".into(),
                        message: Some(message.clone()),
                        ..BackfillStatus::default()
                    });
                    cx.event(true, "InvalidBackfill", message);
                    return;
                }
            }
        }
    }
    progress(cx, &deleted);
}

fn progress(cx: &mut Cx<'_>, deleted: &[String]) {
    let Some(mut status) = cx.status.backfill.clone() else {
        return;
    };
    if status.phase != "Running" {
        return;
    }
    let request = BackfillRequest {
        from: status.from.clone(),
        to: status.to.clone(),
        step: status.step.clone(),
        max_parallel: Some(status.max_parallel),
        requested_at: status.requested_at.clone(),
    };
    let Ok(b) = serde_json::to_string(&serde_json::json!(request_json(&request)))
        .map_err(|e| e.to_string())
        .and_then(|v| parse_backfill(&v))
    else {
        return;
    };
    let (mut succeeded, mut failed, mut running) = (0, 0, 0);
    let mut missing = Vec::new();
    for start in &b.starts {
        let name = naming::backfill_run_name(cx.obs.name, start.as_second());
        let run = cx
            .obs
            .runs
            .iter()
            .find(|r| r.name == name && !deleted.contains(&r.name));
        match run.map(|r| r.phase) {
            Some(RunPhase::Succeeded) => succeeded += 1,
            Some(RunPhase::Failed) => failed += 1,
            Some(_) => running += 1,
            None => missing.push((name, *start)),
        }
    }
    let slots = (b.max_parallel - running).max(0) as usize;
    for (name, start) in missing.iter().take(slots) {
        cx.d.create.push(RunPlan {
            name: name.clone(),
            trigger: RunTrigger::Backfill,
            request: None,
            interval: start.checked_add(b.step).ok().map(|end| (*start, end)),
            scheduled_at: None,
        });
        running += 1;
    }
    let waiting = missing.len().saturating_sub(slots);
    status.succeeded = succeeded;
    status.failed = failed;
    status.running = running;
    if running == 0 && waiting == 0 {
        if failed == 0 {
            status.phase = "Succeeded".into();
            status.message = Some(format!("all {} interval(s) succeeded", status.total));
            cx.event(
                false,
                "BackfillSucceeded",
                status.message.clone().unwrap_or_default(),
            );
        } else {
            status.phase = "Failed".into();
            let message = format!(
                "{failed} of {} interval(s) failed; request the same backfill again to re-run only those",
                status.total
            );
            cx.event(true, "BackfillFailed", message.clone());
            status.message = Some(message);
        }
    } else {
        status.message = Some(format!(
            "{running} running, {waiting} waiting (maxParallel {})",
            status.max_parallel
        ));
    }
    cx.status.backfill = Some(status);
}

fn request_json(r: &BackfillRequest) -> serde_json::Value {
    serde_json::json!({
        "from": r.from,
        "to": r.to,
        "step": r.step,
        "maxParallel": r.max_parallel,
        "requestedAt": r.requested_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_into_intervals() {
        let b = parse_backfill(r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-01T03:00:00Z","step":"1h","maxParallel":2,"requestedAt":"x"}"#).unwrap();
        assert_eq!(b.starts.len(), 3);
        assert_eq!(b.starts[2].to_string(), "2026-11-01T02:00:00Z");
        assert_eq!(b.max_parallel, 2);
        // A last partial interval counts.
        let b = parse_backfill(r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-01T02:30:00Z","step":"1h","requestedAt":"x"}"#).unwrap();
        assert_eq!(b.starts.len(), 3);
        assert_eq!(b.max_parallel, 1);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        for (value, want) in [
            ("not json", "write JSON such as"),
            (
                r#"{"from":"yesterday","to":"2026-11-01T00:00:00Z","step":"1h","requestedAt":"x"}"#,
                "from \"yesterday\"",
            ),
            (
                r#"{"from":"2026-11-02T00:00:00Z","to":"2026-11-01T00:00:00Z","step":"1h","requestedAt":"x"}"#,
                "must be before to",
            ),
            (
                r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z","step":"1d","requestedAt":"x"}"#,
                "step",
            ),
            (
                r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z","step":"1h","maxParallel":0,"requestedAt":"x"}"#,
                "maxParallel",
            ),
            (
                r#"{"from":"2026-01-01T00:00:00Z","to":"2026-11-02T00:00:00Z","step":"1m","requestedAt":"x"}"#,
                "at most 1000",
            ),
            (
                r#"{"from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z","step":"1h","requestedAt":"x","extra":1}"#,
                "unknown field",
            ),
        ] {
            let e = parse_backfill(value).unwrap_err();
            assert!(e.contains(want), "{value}: {e}");
        }
        assert_eq!(backfill_key(r#"{"requestedAt":"abc"}"#), "abc");
        assert_eq!(backfill_key("garbage"), "garbage");
    }
}
