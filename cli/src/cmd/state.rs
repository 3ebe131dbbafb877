//! What a RankingModel's status means for someone waiting on it: the outcome
//! classification behind the exit codes, the progress line and the summary.

use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::{CanaryRevision, Phase, RankingModelStatus, RolloutStep};

use crate::exit;

/// What `--until` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Until {
    /// The rollout is over: 0 when Healthy, 10 when it failed, 11 as soon as
    /// it pauses for a person.
    Done,
    /// The same outcomes as `done` (0 Healthy, 10 failed, 11 paused), for
    /// jobs that read better as "wait until healthy".
    Healthy,
    /// The rollout stops for a person: 0 when Paused, also 0 when it finished
    /// Healthy without pausing (nothing left to wait for), 10 when it failed.
    Paused,
}

/// Where a model's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Done and healthy: phase Healthy, no canary, the status describes the
    /// current generation and the stable version is the desired one.
    Healthy,
    /// The rollout failed (Degraded: aborted, progress deadline), or the
    /// awaited version was replaced (rolled back, superseded).
    Failed(String),
    /// Waiting for a person (an indefinite pause step, inconclusive analysis).
    Paused(String),
    /// Anything else: deploying, advancing, a timed pause, waiting for
    /// features, or the operator has not seen the latest spec yet.
    Progressing,
}

impl State {
    /// The exit code this state ends a wait with, or `None` to keep waiting.
    pub fn exit_code(&self, until: Until) -> Option<u8> {
        match (self, until) {
            (State::Healthy, _) => Some(exit::SUCCESS),
            (State::Failed(_), _) => Some(exit::FAILED),
            (State::Paused(_), Until::Paused) => Some(exit::SUCCESS),
            (State::Paused(_), _) => Some(exit::PAUSED),
            (State::Progressing, _) => None,
        }
    }

    /// The exit code of a one-shot `mlctl status` (no `--wait`): 0 for
    /// Healthy and Progressing, 10 Failed, 11 Paused.
    pub fn snapshot_code(&self) -> u8 {
        match self {
            State::Failed(_) => exit::FAILED,
            State::Paused(_) => exit::PAUSED,
            State::Healthy | State::Progressing => exit::SUCCESS,
        }
    }
}

/// Classifies a model. `awaited` is the spec version the caller is waiting
/// for: when the spec moves away from it, the wait is over and failed.
pub fn classify(model: &RankingModel, awaited: Option<&str>) -> State {
    let desired = model.spec.model.version.as_str();
    if let Some(awaited) = awaited
        && awaited != desired
    {
        return State::Failed(format!(
            "spec.model.version changed from {awaited} to {desired} (rolled back or superseded)"
        ));
    }
    let Some(status) = model.status.as_ref() else {
        return State::Progressing;
    };
    if status.observed_generation.is_none()
        || status.observed_generation != model.metadata.generation
    {
        return State::Progressing;
    }
    match status.phase {
        Some(Phase::Degraded) => State::Failed(failure_reason(status)),
        Some(Phase::Paused) => State::Paused(
            status
                .canary
                .as_ref()
                .and_then(|c| c.pause_reason.clone())
                .unwrap_or_else(|| "Paused".to_string()),
        ),
        Some(Phase::Healthy)
            if status.canary.is_none()
                && status.stable.as_ref().is_some_and(|s| s.version == desired) =>
        {
            State::Healthy
        }
        _ => State::Progressing,
    }
}

fn failure_reason(status: &RankingModelStatus) -> String {
    status
        .canary
        .as_ref()
        .and_then(|c| c.abort_reason.clone())
        .or_else(|| status.message.clone())
        .unwrap_or_else(|| "Degraded".to_string())
}

/// The revision of a first deployment, if this is one. With nothing stable
/// yet, the operator brings the first version up at full size and tracks it
/// in `status.canary` (weight 0, step 0). It is no canary: nothing else
/// serves, and the steps are for the versions after it, so callers show it as
/// "deploying the first version" instead of `canary v1 weight 0% step 1/N`.
pub fn first_deployment(status: &RankingModelStatus) -> Option<&CanaryRevision> {
    status.canary.as_ref().filter(|_| status.stable.is_none())
}

/// A step as one short phrase: `setWeight 20`, `pause 30s`, `pause (until
/// promoted)`, `analysis error-rate,latency`, `shadow 10m at 20%`,
/// `interleave at 10% until 2000 queries`.
pub fn step_text(step: &RolloutStep) -> String {
    if let Some(weight) = step.set_weight {
        format!("setWeight {weight}")
    } else if let Some(pause) = &step.pause {
        match &pause.duration {
            Some(d) => format!("pause {d}"),
            None => "pause (until promoted)".to_string(),
        }
    } else if let Some(analysis) = &step.analysis {
        format!("analysis {}", analysis.metrics.join(","))
    } else if let Some(shadow) = &step.shadow {
        format!(
            "shadow {} at {}%",
            shadow.duration,
            shadow.sample.unwrap_or(10)
        )
    } else if let Some(il) = &step.interleave {
        format!(
            "interleave at {}% until {}",
            il.sample.unwrap_or(10),
            il.until.summary()
        )
    } else if let Some(route) = &step.set_header_route {
        if route.match_.is_empty() {
            "setHeaderRoute (remove)".to_string()
        } else {
            let conditions: Vec<String> = route.match_.iter().map(|m| m.summary()).collect();
            format!("setHeaderRoute {}", conditions.join(" and "))
        }
    } else {
        "(empty step)".to_string()
    }
}

/// A measured value as a person reads it: four significant digits
/// (`0.009350000000000006` -> `0.00935`, `4.95e-4` stays short); anything
/// that is not a finite number is shown as recorded.
pub fn short_number(value: &str) -> String {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            let rounded: f64 = format!("{v:.3e}").parse().unwrap_or(v);
            let plain = format!("{rounded}");
            let exp = format!("{rounded:e}");
            if plain.len() <= exp.len() { plain } else { exp }
        }
        _ => value.to_string(),
    }
}

/// One line describing where the rollout is, without a timestamp: printed on
/// stderr whenever it changes.
pub fn progress_line(model: &RankingModel) -> String {
    let Some(status) = model.status.as_ref() else {
        return "Pending: the operator has not reported a status yet".to_string();
    };
    let phase = status.phase.map(Phase::as_str).unwrap_or("Pending");
    let mut parts = vec![phase.to_string()];
    if status.observed_generation != model.metadata.generation {
        parts.push("(operator has not seen the latest spec yet)".to_string());
    }
    if let Some(stable) = &status.stable {
        parts.push(format!("stable {}", stable.version));
    }
    let first = first_deployment(status);
    if let Some(first) = first {
        let mut text = format!("deploying the first version {}", first.version);
        if let Some(reason) = &first.abort_reason {
            text.push_str(&format!(" aborted: {reason}"));
        }
        parts.push(text);
    } else if let Some(canary) = &status.canary {
        let steps = model
            .spec
            .rollout
            .as_ref()
            .map(|r| r.steps.as_slice())
            .unwrap_or_default();
        let blue_green = canary.strategy.as_deref() == Some("BlueGreen");
        let mut text = if blue_green {
            let stage = if canary.switched_at.is_some() {
                "switched, serving all traffic"
            } else if canary.preview_ready_at.is_some() {
                "preview ready"
            } else {
                "preview starting"
            };
            format!("blue-green {} {stage}", canary.version)
        } else {
            format!("canary {} weight {}%", canary.version, canary.weight)
        };
        if !steps.is_empty() && !blue_green {
            let index = usize::try_from(canary.step_index).unwrap_or(0);
            let shown = (index + 1).min(steps.len());
            text.push_str(&format!(" step {shown}/{}", steps.len()));
            if let Some(step) = steps.get(index) {
                text.push_str(&format!(" ({})", step_text(step)));
            }
        }
        if let Some(reason) = &canary.pause_reason {
            text.push_str(&format!(" paused: {reason}"));
        }
        if let Some(reason) = &canary.abort_reason {
            text.push_str(&format!(" aborted: {reason}"));
        }
        parts.push(text);
    }
    // Analysis belongs to the canary; after it the verdicts are history. A
    // step's metrics are shown while that step is current.
    let current_step = status.canary.as_ref().map(|c| c.step_index);
    let metrics = status
        .analysis
        .iter()
        .flat_map(|a| a.metrics.iter())
        .filter(|_| status.canary.is_some() && first.is_none())
        .filter(|m| m.step.is_none() || m.step == current_step);
    for metric in metrics {
        let last = metric
            .measurements
            .last()
            .and_then(|m| m.value.as_deref())
            .map(|v| format!(" last {}", short_number(v)))
            .unwrap_or_default();
        let kind = if metric.step.is_some() {
            "step analysis"
        } else {
            "analysis"
        };
        parts.push(format!(
            "{kind} {} {} ({} ok, {} failed, {} inconclusive, {} errors{last})",
            metric.name,
            metric.phase,
            metric.successful,
            metric.failed,
            metric.inconclusive,
            metric.errors
        ));
    }
    // The operator's message repeats a canary's step and weight; it says
    // something new without one, and during a first deployment (how many
    // replicas are ready, or that it waits for features) unless that was
    // aborted, where it would call the first version a canary.
    let message_is_news = match first {
        Some(first) => first.aborted_at.is_none(),
        None => status.canary.is_none(),
    };
    if let Some(message) = status.message.as_ref().filter(|_| message_is_news) {
        parts.push(format!("- {message}"));
    }
    parts.join("  ")
}

/// The final summary of a wait or a one-shot status, printed on stdout.
pub fn summary(model: &RankingModel, state: &State, namespace: &str) -> String {
    let name = model.metadata.name.as_deref().unwrap_or("?");
    let stable = model
        .status
        .as_ref()
        .and_then(|s| s.stable.as_ref())
        .map(|s| s.version.as_str())
        .unwrap_or("none");
    match state {
        State::Healthy => format!("rankingmodel/{name}: Healthy: {stable} serves all traffic"),
        State::Failed(reason) => match model.status.as_ref().and_then(first_deployment) {
            Some(first) => format!(
                "rankingmodel/{name}: rollout failed: {reason}; nothing serves yet: the first version {} did not become available (mlctl describe rm {name} -n {namespace}; fix the model and mlctl set-version, or mlctl retry {name} -n {namespace})",
                first.version
            ),
            None => format!(
                "rankingmodel/{name}: rollout failed: {reason}; stable is {stable} (mlctl describe rm {name} -n {namespace}; mlctl retry {name} -n {namespace} to try the canary again)"
            ),
        },
        State::Paused(reason) => format!(
            "rankingmodel/{name}: Paused ({reason}): {}; continue with mlctl promote {name} -n {namespace}, or mlctl abort {name} -n {namespace}",
            progress_line(model)
        ),
        State::Progressing => format!("rankingmodel/{name}: {}", progress_line(model)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(status: serde_json::Value, generation: i64) -> RankingModel {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1",
            "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "ns", "generation": generation},
            "spec": {
                "model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"},
                "runtime": {"image": "ranker:1"},
                "rollout": {"steps": [
                    {"setWeight": 20}, {"pause": {"duration": "30s"}}, {"analysis": {"metrics": ["err"]}}, {"pause": {}}
                ], "analysis": {"templates": [{"name": "err", "provider": {"prometheus": {"address": "http://p:9090", "query": "q"}}, "successCondition": "result < 1"}]}}
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn healthy_needs_the_current_generation_and_the_desired_stable_version() {
        let healthy = serde_json::json!({"phase": "Healthy", "observedGeneration": 2, "stable": {"version": "v2", "uri": "u", "revision": "r"}});
        assert_eq!(classify(&model(healthy.clone(), 2), None), State::Healthy);
        // Not observed yet: the Healthy is about the previous spec.
        assert_eq!(classify(&model(healthy, 3), None), State::Progressing);
        let old_stable = serde_json::json!({"phase": "Healthy", "observedGeneration": 2, "stable": {"version": "v1", "uri": "u", "revision": "r"}});
        assert_eq!(classify(&model(old_stable, 2), None), State::Progressing);
    }

    #[test]
    fn degraded_is_failed_with_the_abort_reason() {
        let s = serde_json::json!({"phase": "Degraded", "observedGeneration": 1, "canary": {"version": "v2", "uri": "u", "revision": "r", "weight": 0, "stepIndex": 2, "abortReason": "err: result 3 broke result < 1"}});
        let state = classify(&model(s, 1), None);
        assert_eq!(
            state,
            State::Failed("err: result 3 broke result < 1".into())
        );
        assert_eq!(state.exit_code(Until::Done), Some(exit::FAILED));
        assert_eq!(state.exit_code(Until::Paused), Some(exit::FAILED));
    }

    #[test]
    fn paused_is_11_unless_waiting_for_the_pause() {
        let s = serde_json::json!({"phase": "Paused", "observedGeneration": 1, "stable": {"version": "v1", "uri": "u", "revision": "a"}, "canary": {"version": "v2", "uri": "u", "revision": "r", "weight": 20, "stepIndex": 3, "pauseReason": "PauseStep"}});
        let m = model(s, 1);
        let state = classify(&m, None);
        assert_eq!(state, State::Paused("PauseStep".into()));
        assert_eq!(state.exit_code(Until::Done), Some(exit::PAUSED));
        assert_eq!(state.exit_code(Until::Healthy), Some(exit::PAUSED));
        assert_eq!(state.exit_code(Until::Paused), Some(exit::SUCCESS));
        assert_eq!(state.snapshot_code(), exit::PAUSED);
        let line = progress_line(&m);
        assert!(
            line.contains(
                "canary v2 weight 20% step 4/4 (pause (until promoted)) paused: PauseStep"
            ),
            "{line}"
        );
        let summary = summary(&m, &state, "ns");
        assert!(summary.contains("mlctl promote ranker -n ns"), "{summary}");
    }

    #[test]
    fn a_blue_green_preview_waiting_for_promotion_is_a_pause_for_a_person() {
        let s = serde_json::json!({"phase": "Paused", "observedGeneration": 1, "stable": {"version": "v1", "uri": "u", "revision": "a"},
            "canary": {"version": "v2", "uri": "u", "revision": "r", "weight": 0, "stepIndex": 0, "strategy": "BlueGreen",
                "previewReadyAt": "2026-11-25T11:58:00Z", "pauseReason": "PreviewReady"}});
        let m = model(s, 1);
        let state = classify(&m, None);
        assert_eq!(state, State::Paused("PreviewReady".into()));
        assert_eq!(state.exit_code(Until::Done), Some(exit::PAUSED));
        assert_eq!(state.exit_code(Until::Paused), Some(exit::SUCCESS));
        let line = progress_line(&m);
        assert!(
            line.contains("blue-green v2 preview ready paused: PreviewReady"),
            "{line}"
        );
        assert!(!line.contains("step"), "{line}");
        let summary = summary(&m, &state, "ns");
        assert!(summary.contains("mlctl promote ranker -n ns"), "{summary}");
    }

    #[test]
    fn a_timed_pause_and_waiting_for_features_keep_waiting() {
        let s = serde_json::json!({"phase": "Progressing", "observedGeneration": 1, "canary": {"version": "v2", "uri": "u", "revision": "r", "weight": 20, "stepIndex": 1, "pauseReason": "FeaturesNotReady"}});
        let state = classify(&model(s, 1), None);
        assert_eq!(state, State::Progressing);
        for until in [Until::Done, Until::Healthy, Until::Paused] {
            assert_eq!(state.exit_code(until), None);
        }
        assert_eq!(state.snapshot_code(), exit::SUCCESS);
    }

    #[test]
    fn healthy_ends_every_wait_with_0() {
        for until in [Until::Done, Until::Healthy, Until::Paused] {
            assert_eq!(State::Healthy.exit_code(until), Some(exit::SUCCESS));
        }
    }

    #[test]
    fn a_spec_that_moved_away_from_the_awaited_version_fails_the_wait() {
        let healthy = serde_json::json!({"phase": "Healthy", "observedGeneration": 2, "stable": {"version": "v2", "uri": "u", "revision": "r"}});
        let state = classify(&model(healthy, 2), Some("v3"));
        assert!(
            matches!(state, State::Failed(ref r) if r.contains("from v3 to v2")),
            "{state:?}"
        );
    }

    #[test]
    fn the_progress_line_shows_step_weight_and_measurements() {
        let s = serde_json::json!({"phase": "Progressing", "observedGeneration": 1,
            "stable": {"version": "v1", "uri": "u", "revision": "a"},
            "canary": {"version": "v2", "uri": "u", "revision": "b", "weight": 20, "stepIndex": 2},
            "analysis": {"metrics": [{"name": "err", "step": 2, "phase": "Running", "successful": 2,
                "measurements": [{"outcome": "Successful", "value": "0.01", "at": "2026-11-25T10:00:00Z"}]}]}});
        let line = progress_line(&model(s, 1));
        assert_eq!(
            line,
            "Progressing  stable v1  canary v2 weight 20% step 3/4 (analysis err)  step analysis err Running (2 ok, 0 failed, 0 inconclusive, 0 errors last 0.01)"
        );
    }

    #[test]
    fn the_progress_line_shows_background_metrics_and_only_the_current_steps_metrics() {
        let s = serde_json::json!({"phase": "Progressing", "observedGeneration": 1,
            "stable": {"version": "v1", "uri": "u", "revision": "a"},
            "canary": {"version": "v2", "uri": "u", "revision": "b", "weight": 50, "stepIndex": 3},
            "analysis": {"metrics": [
                {"name": "err", "step": 2, "phase": "Successful", "successful": 1},
                {"name": "p99", "phase": "Running", "successful": 3,
                 "measurements": [{"outcome": "Successful", "value": "0.009350000000000006", "at": "2026-11-25T10:00:00Z"}]}]}});
        let line = progress_line(&model(s, 1));
        assert!(!line.contains("analysis err"), "{line}");
        assert!(
            line.ends_with(
                "analysis p99 Running (3 ok, 0 failed, 0 inconclusive, 0 errors last 0.00935)"
            ),
            "{line}"
        );
    }

    #[test]
    fn measured_values_are_shown_with_four_significant_digits() {
        assert_eq!(short_number("0.009350000000000006"), "0.00935");
        assert_eq!(short_number("4.950000000000001e-4"), "4.95e-4");
        assert_eq!(short_number("1"), "1");
        assert_eq!(short_number("0.25"), "0.25");
        assert_eq!(short_number("123456789"), "1.235e8");
        assert_eq!(short_number("NaN"), "NaN");
        assert_eq!(short_number("+Inf"), "+Inf");
    }

    #[test]
    fn a_first_deployment_is_no_canary() {
        // What the operator writes while it brings up the first version.
        let s = serde_json::json!({"phase": "Progressing", "observedGeneration": 1,
            "canary": {"version": "v2", "uri": "u", "revision": "b", "weight": 0, "stepIndex": 0},
            "message": "deploying v2: 1/3 ready"});
        let m = model(s, 1);
        let line = progress_line(&m);
        assert_eq!(
            line,
            "Progressing  deploying the first version v2  - deploying v2: 1/3 ready"
        );
        let deploying = summary(&m, &classify(&m, None), "ns");
        assert_eq!(
            deploying,
            "rankingmodel/ranker: Progressing  deploying the first version v2  - deploying v2: 1/3 ready"
        );
        // At the progress deadline it fails; the summary says nothing serves.
        let s = serde_json::json!({"phase": "Degraded", "observedGeneration": 1,
            "canary": {"version": "v2", "uri": "u", "revision": "b", "weight": 0, "stepIndex": 0},
            "message": "rollout of v2 stalled: pods not available"});
        let m = model(s, 1);
        let state = classify(&m, None);
        let summary = summary(&m, &state, "ns");
        assert!(
            summary.contains("rollout failed: rollout of v2 stalled")
                && summary.contains("nothing serves yet: the first version v2"),
            "{summary}"
        );
        assert!(!summary.contains("canary"), "{summary}");
    }

    #[test]
    fn a_canary_next_to_a_stable_version_keeps_its_step_and_weight() {
        let s = serde_json::json!({"phase": "Progressing", "observedGeneration": 1,
            "stable": {"version": "v1", "uri": "u", "revision": "a"},
            "canary": {"version": "v2", "uri": "u", "revision": "b", "weight": 0, "stepIndex": 0},
            "message": "canary v2 step 1/4"});
        let line = progress_line(&model(s, 1));
        assert_eq!(
            line,
            "Progressing  stable v1  canary v2 weight 0% step 1/4 (setWeight 20)"
        );
    }
}
