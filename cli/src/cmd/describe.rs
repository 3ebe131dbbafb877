//! `mlctl describe rm NAME`: everything about one model's rollout in one page.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::ListParams;
use mlctl_crds::RankingModel;

use super::get::{age, format_rows};
use super::state::{first_deployment, step_text};
use crate::exit;
use crate::kube::{CliError, EVENT, KubeArgs, RANKING_MODEL, Target};

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// Kind: rm (rankingmodel, rankingmodels).
    #[arg(value_parser = ["rm", "rankingmodel", "rankingmodels"], hide_possible_values = true)]
    kind: String,
    /// The RankingModel.
    name: String,
    #[command(flatten)]
    pub(super) kube: KubeArgs,
}

pub async fn run(args: &DescribeArgs) -> Result<u8, CliError> {
    let (client, ns) = args.kube.client().await?;
    let api: Api<RankingModel> = Api::namespaced(client.clone(), &ns);
    let target = Target {
        verb: "get",
        resource: RANKING_MODEL,
        name: Some(&args.name),
        namespace: Some(&ns),
    };
    let model = api
        .get(&args.name)
        .await
        .map_err(|e| CliError::from_kube(e, &target))?;
    let uid = model.metadata.uid.clone().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client, &ns);
    let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    // Events are a help, not the point: a refused list is shown, not fatal.
    let events = match events.list(&params).await {
        Ok(list) => Ok(list.items),
        Err(err) => Err(CliError::from_kube(
            err,
            &Target {
                verb: "list",
                resource: EVENT,
                name: None,
                namespace: Some(&ns),
            },
        )
        .to_string()),
    };
    print!(
        "{}",
        render(&model, &events, k8s_openapi::jiff::Timestamp::now())
    );
    Ok(exit::SUCCESS)
}

fn time(t: &Option<Time>) -> String {
    t.as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// The describe page.
pub fn render(
    model: &RankingModel,
    events: &Result<Vec<Event>, String>,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<13}{value}\n"));
    let status = model.status.clone().unwrap_or_default();
    line("Name:", model.metadata.name.clone().unwrap_or_default());
    line(
        "Namespace:",
        model.metadata.namespace.clone().unwrap_or_default(),
    );
    line(
        "Phase:",
        format!(
            "{} (observed generation {} of {})",
            status.phase.map(|p| p.as_str()).unwrap_or("Pending"),
            status
                .observed_generation
                .map_or("-".to_string(), |g| g.to_string()),
            model
                .metadata
                .generation
                .map_or("-".to_string(), |g| g.to_string())
        ),
    );
    if let Some(message) = &status.message {
        line("Message:", message.clone());
    }
    let spec = &model.spec.model;
    line(
        "Desired:",
        format!("{} ({}, {})", spec.version, spec.uri, spec.format.as_str()),
    );
    match &status.stable {
        Some(s) => line(
            "Stable:",
            format!(
                "{} ({}) revision {} since {}",
                s.version,
                s.uri,
                s.revision,
                time(&s.since)
            ),
        ),
        None => match first_deployment(&status) {
            Some(first) => line(
                "Stable:",
                format!(
                    "none yet: deploying the first version {} ({}) revision {}, started {}",
                    first.version,
                    first.uri,
                    first.revision,
                    time(&first.started_at)
                ),
            ),
            None => line("Stable:", "none".to_string()),
        },
    }
    // The first version is tracked in status.canary but is none: it gets no
    // step (the steps are for the versions after it) and no weight.
    let canary = status.canary.as_ref().filter(|_| status.stable.is_some());
    let steps = model
        .spec
        .rollout
        .as_ref()
        .map(|r| r.steps.clone())
        .unwrap_or_default();
    match canary {
        Some(c) => {
            let step = if steps.is_empty() {
                String::new()
            } else {
                let index = usize::try_from(c.step_index).unwrap_or(0);
                format!(
                    ", step {}/{}{}",
                    (index + 1).min(steps.len()),
                    steps.len(),
                    steps
                        .get(index)
                        .map(|s| format!(" ({})", step_text(s)))
                        .unwrap_or_default()
                )
            };
            line(
                "Canary:",
                format!(
                    "{} ({}) revision {}, weight {}%{step}, started {}",
                    c.version,
                    c.uri,
                    c.revision,
                    c.weight,
                    time(&c.started_at)
                ),
            );
        }
        None => line("Canary:", "none".to_string()),
    }
    // Pauses (features not ready) and aborts happen to a first version too.
    if let Some(c) = &status.canary {
        if let Some(reason) = &c.pause_reason {
            line(
                "",
                format!("paused since {} ({reason})", time(&c.paused_at)),
            );
        }
        if c.aborted_at.is_some() {
            line(
                "",
                format!(
                    "aborted at {}: {}",
                    time(&c.aborted_at),
                    c.abort_reason.clone().unwrap_or_default()
                ),
            );
        }
    }
    for r in &status.retiring {
        line(
            "Retiring:",
            format!(
                "{} revision {} until {}",
                r.version, r.revision, r.scale_down_at.0
            ),
        );
    }
    if !steps.is_empty() {
        out.push_str("Steps:\n");
        let current = canary.map(|c| c.step_index);
        for (i, step) in steps.iter().enumerate() {
            let i32_index = i32::try_from(i).unwrap_or(i32::MAX);
            let marker = match current {
                Some(c) if c == i32_index => "  <- current",
                Some(c) if c > i32_index => "  done",
                _ => "",
            };
            out.push_str(&format!("  {i:>2}  {}{marker}\n", step_text(step)));
        }
    }
    let metrics = status
        .analysis
        .as_ref()
        .map(|a| a.metrics.as_slice())
        .unwrap_or_default();
    if !metrics.is_empty() {
        out.push_str("Analysis:\n");
        let mut rows = vec![header(&[
            "METRIC",
            "STEP",
            "PHASE",
            "OK",
            "FAILED",
            "INCONCLUSIVE",
            "ERRORS",
            "LAST",
            "MESSAGE",
        ])];
        for m in metrics {
            rows.push(vec![
                m.name.clone(),
                m.step.map_or("bg".to_string(), |s| s.to_string()),
                m.phase.clone(),
                m.successful.to_string(),
                m.failed.to_string(),
                m.inconclusive.to_string(),
                m.errors.to_string(),
                m.measurements
                    .last()
                    .map(|x| format!("{} {}", x.outcome, x.value.clone().unwrap_or_default()))
                    .unwrap_or_else(|| "-".to_string()),
                m.message.clone().unwrap_or_default(),
            ]);
        }
        indent(&mut out, &format_rows(&rows));
    }
    if !status.history.is_empty() {
        out.push_str("History:\n");
        let mut rows = vec![header(&["VERSION", "OUTCOME", "AT", "REVISION", "URI"])];
        for h in &status.history {
            rows.push(vec![
                h.version.clone(),
                h.outcome.clone(),
                h.at.0.to_string(),
                h.revision.clone(),
                h.uri.clone(),
            ]);
        }
        indent(&mut out, &format_rows(&rows));
    }
    if !status.conditions.is_empty() {
        out.push_str("Conditions:\n");
        let mut rows = vec![header(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"])];
        for c in &status.conditions.0 {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(&c.last_transition_time.0.to_string(), now),
                c.message.clone(),
            ]);
        }
        indent(&mut out, &format_rows(&rows));
    }
    out.push_str("Events:\n");
    match events {
        Err(err) => out.push_str(&format!("  (cannot list events: {err})\n")),
        Ok(events) if events.is_empty() => out.push_str("  <none>\n"),
        Ok(events) => {
            let mut events = events.clone();
            events.sort_by_key(|e| event_time(e).unwrap_or_default());
            let mut rows = vec![header(&["AGE", "TYPE", "REASON", "FROM", "MESSAGE"])];
            for e in events.iter().rev().take(15).rev() {
                rows.push(vec![
                    event_time(e).map_or("-".to_string(), |t| age(&t, now)),
                    e.type_.clone().unwrap_or_default(),
                    reason(e),
                    e.reporting_component
                        .clone()
                        .filter(|c| !c.is_empty())
                        .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                        .unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                ]);
            }
            indent(&mut out, &format_rows(&rows));
        }
    }
    out
}

/// The reason, with how often it happened when more than once (`x5`).
fn reason(e: &Event) -> String {
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1);
    let reason = e.reason.clone().unwrap_or_default();
    if count > 1 {
        format!("{reason} x{count}")
    } else {
        reason
    }
}

/// When an event last happened: a repeated events.k8s.io event keeps that in
/// its series; older ones in lastTimestamp.
fn event_time(e: &Event) -> Option<String> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0.to_string())
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn indent(out: &mut String, text: &str) {
    for l in text.lines() {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_versions_step_analysis_history_conditions_and_events() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 4},
            "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"}, "runtime": {"image": "i"},
                "rollout": {"steps": [{"setWeight": 20}, {"analysis": {"metrics": ["err"]}}, {"pause": {}}],
                    "analysis": {"templates": [{"name": "err", "provider": {"prometheus": {"address": "http://p:9090", "query": "q"}}, "successCondition": "result < 1"}]}}},
            "status": {"phase": "Progressing", "observedGeneration": 4,
                "stable": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa", "since": "2026-11-25T10:00:00Z"},
                "canary": {"version": "v2", "uri": "s3://m/v2", "revision": "bbb", "weight": 20, "stepIndex": 1, "startedAt": "2026-11-25T11:50:00Z"},
                "analysis": {"metrics": [{"name": "err", "step": 1, "phase": "Running", "successful": 2,
                    "measurements": [{"outcome": "Successful", "value": "0.01", "at": "2026-11-25T11:59:00Z"}]}]},
                "history": [{"version": "v1", "uri": "s3://m/v1", "revision": "aaa", "outcome": "Promoted", "at": "2026-11-25T10:00:00Z"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "3/3 ready", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}
        }))
        .unwrap();
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1"}, "involvedObject": {}, "type": "Normal", "reason": "StepAdvanced",
            "message": "step 1/3: setWeight 20", "lastTimestamp": "2026-11-25T11:58:00Z",
            "source": {"component": "mlctl-operator"}
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![event]), now);
        for expected in [
            "Phase:       Progressing (observed generation 4 of 4)",
            "Stable:      v1 (s3://m/v1) revision aaa since 2026-11-25T10:00:00Z",
            "Canary:      v2 (s3://m/v2) revision bbb, weight 20%, step 2/3 (analysis err)",
            "   0  setWeight 20  done",
            "   1  analysis err  <- current",
            "  err      1      Running   2    0",
            "Successful 0.01",
            "  v1        Promoted",
            "  Ready   True     Available   60m",
            "  2m0s   Normal   StepAdvanced   mlctl-operator   step 1/3: setWeight 20",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
        let repeated: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e2"}, "involvedObject": {}, "reason": "StepCompleted",
            "eventTime": "2026-11-25T11:50:00.000000Z",
            "series": {"count": 5, "lastObservedTime": "2026-11-25T11:59:00.000000Z"}
        }))
        .unwrap();
        let page = render(&model, &Ok(vec![repeated]), now);
        assert!(page.contains("  60s          StepCompleted x5"), "{page}");
        let refused = render(&model, &Err("forbidden".into()), now);
        assert!(
            refused.contains("(cannot list events: forbidden)"),
            "{refused}"
        );
    }

    #[test]
    fn a_first_deployment_is_shown_as_one_not_as_a_canary_at_step_1() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 1},
            "spec": {"model": {"version": "v1", "uri": "s3://m/v1", "format": "lightgbm"}, "runtime": {"image": "i"},
                "rollout": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
            "status": {"phase": "Progressing", "observedGeneration": 1, "message": "deploying v1: 1/3 ready",
                "canary": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa", "weight": 0, "stepIndex": 0, "startedAt": "2026-11-25T11:59:00Z"}}
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![]), now);
        for expected in [
            "Stable:      none yet: deploying the first version v1 (s3://m/v1) revision aaa, started 2026-11-25T11:59:00Z\n",
            "Canary:      none\n",
            "   0  setWeight 20\n",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
        assert!(!page.contains("weight 0%"), "{page}");
        assert!(!page.contains("<- current"), "{page}");
    }
}
