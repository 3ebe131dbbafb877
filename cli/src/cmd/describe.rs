//! `mlctl describe rm NAME`: everything about one model's rollout in one page.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::ListParams;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::RankingModelStatus;
use mlctl_gitops::terminal::escape_controls;

use super::get::{age, format_rows};
use super::state::{first_deployment, step_text};
use crate::exit;
use crate::kube::{CliError, EVENT, KubeArgs, RANKING_MODEL, Resource, Target};

// The operator's own reading of pod status, compiled here too, so that
// `describe` and the RankingModel's conditions and Events say the same thing.
#[allow(dead_code)]
#[path = "../../../operator/src/diagnose/pods.rs"]
mod diagnose;

/// Pods (the model's serving pods, for `mlctl describe`).
const POD: Resource = Resource {
    singular: "pod",
    plural: "pods",
    group: "",
    short: "pods",
};
/// The label the operator puts on every pod of a model.
const MODEL_LABEL: &str = "mlctl.io/model";
/// The label carrying a pod's revision.
const REVISION_LABEL: &str = "mlctl.io/revision";
/// The label carrying a pod's model version.
const VERSION_LABEL: &str = "mlctl.io/version";

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
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let params = ListParams::default().labels(&format!("{MODEL_LABEL}={}", args.name));
    // Like events: a refused list is shown, not fatal.
    let pods = match pods.list(&params).await {
        Ok(list) => Ok(list.items),
        Err(err) => Err(CliError::from_kube(
            err,
            &Target {
                verb: "list",
                resource: POD,
                name: None,
                namespace: Some(&ns),
            },
        )
        .to_string()),
    };
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
        printed(&model, &pods, &events, k8s_openapi::jiff::Timestamp::now())
    );
    Ok(exit::SUCCESS)
}

fn time(t: &Option<Time>) -> String {
    t.as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// The describe page.
/// The page as printed: remote text (messages, event notes, reasons) with
/// its control characters escaped.
fn printed(
    model: &RankingModel,
    pods: &Result<Vec<Pod>, String>,
    events: &Result<Vec<Event>, String>,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    escape_controls(&render(model, pods, events, now)).into_owned()
}

pub fn render(
    model: &RankingModel,
    pods: &Result<Vec<Pod>, String>,
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
    let no_pods = Vec::new();
    let pod_list = pods.as_ref().unwrap_or(&no_pods);
    for (i, summary) in diagnosis(&status, pod_list, now).into_iter().enumerate() {
        line(if i == 0 { "Diagnosis:" } else { "" }, summary);
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
    let rollout = model.spec.rollout.as_ref();
    let blue_green = rollout.and_then(|r| r.blue_green.as_ref());
    if let Some(bg) = blue_green {
        let name = model.metadata.name.clone().unwrap_or_default();
        let promotion = if bg.auto_promotion_enabled.unwrap_or(true) {
            match bg.auto_promotion_seconds.unwrap_or(0) {
                0 => "automatic promotion".to_string(),
                s => format!("automatic promotion {s}s after the preview is ready"),
            }
        } else {
            "manual promotion (mlctl promote)".to_string()
        };
        let mut parts = vec![format!("preview Service {name}-preview"), promotion];
        if let Some(a) = &bg.pre_promotion_analysis {
            parts.push(format!("pre-promotion analysis {}", a.metrics.join(",")));
        }
        if let Some(a) = &bg.post_promotion_analysis {
            parts.push(format!("post-promotion analysis {}", a.metrics.join(",")));
        }
        line("Strategy:", format!("blue-green: {}", parts.join(", ")));
        if let Some(c) = canary.filter(|c| c.aborted_at.is_none()) {
            let preview = match (&c.preview_ready_at, &c.switched_at) {
                (_, Some(_)) => format!(
                    "switched: {} serves all traffic since {}; the previous revision stays at full size until promotion completes",
                    c.version,
                    time(&c.switched_at)
                ),
                (Some(_), None) => format!(
                    "{} ready at full size behind {name}-preview since {}",
                    c.version,
                    time(&c.preview_ready_at)
                ),
                (None, None) => format!("{} starting at full size (not ready yet)", c.version),
            };
            line("Preview:", preview);
        }
    } else if !steps.is_empty() {
        line("Strategy:", format!("canary, {} step(s)", steps.len()));
    }
    if let (Some(r), Some(c)) = (rollout, canary.filter(|c| c.aborted_at.is_none()))
        && let Some(route) = r
            .header_route_at(c.step_index)
            .filter(|_| blue_green.is_none())
    {
        let conditions: Vec<String> = route.iter().map(|m| m.summary()).collect();
        line(
            "Headers:",
            format!(
                "requests with {} go to the canary",
                conditions.join(" and ")
            ),
        );
    }
    let refs = rollout
        .and_then(|r| r.analysis.as_ref())
        .map(|a| a.template_refs.as_slice())
        .unwrap_or_default();
    if !refs.is_empty() {
        let names: Vec<String> = refs
            .iter()
            .map(|t| {
                if t.background.unwrap_or(false) {
                    format!("{} (background)", t.name)
                } else {
                    t.name.clone()
                }
            })
            .collect();
        line(
            "Templates:",
            format!("AnalysisTemplate {}", names.join(", ")),
        );
    }
    for (i, n) in model.spec.notifications.iter().enumerate() {
        let target = match (&n.webhook.url, &n.webhook.url_from) {
            (Some(url), _) => webhook_host(url),
            (None, Some(from)) => format!(
                "URL from Secret {} key {}",
                from.secret_key_ref.name, from.secret_key_ref.key
            ),
            (None, None) => "-".to_string(),
        };
        let events = if n.events.is_empty() {
            "rollout milestones".to_string()
        } else {
            n.events.join(",")
        };
        line(
            if i == 0 { "Notify:" } else { "" },
            format!("{}: {events} -> {target}", n.name),
        );
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
    // The running canary's comparisons, or those of the last rollout that
    // ended (kept in its history entry).
    let (title, comparisons) = match canary.filter(|c| !c.comparisons.is_empty()) {
        Some(c) => ("Comparisons:".to_string(), c.comparisons.as_slice()),
        None => status
            .history
            .first()
            .filter(|h| !h.comparisons.is_empty())
            .map(|h| {
                (
                    format!("Comparisons (of {}, {}):", h.version, h.outcome),
                    h.comparisons.as_slice(),
                )
            })
            .unwrap_or_default(),
    };
    if !comparisons.is_empty() {
        out.push_str(&title);
        out.push('\n');
        let mut rows = vec![header(&[
            "STEP", "MODE", "STARTED", "ENDED", "CANARY", "STABLE", "TIES", "P", "VERDICT",
            "MESSAGE",
        ])];
        for x in comparisons {
            let counts = x.counts.unwrap_or_default();
            let interleave = x.mode == "interleave";
            let count = |n: i64| {
                if interleave {
                    n.to_string()
                } else {
                    "-".to_string()
                }
            };
            rows.push(vec![
                x.step.to_string(),
                x.mode.clone(),
                time(&x.started_at),
                time(&x.ended_at),
                count(counts.canary),
                count(counts.stable),
                count(counts.ties),
                x.p_value.clone().unwrap_or_else(|| "-".to_string()),
                x.verdict.clone().unwrap_or_else(|| "-".to_string()),
                x.message.clone().unwrap_or_default(),
            ]);
        }
        indent(&mut out, &format_rows(&rows));
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
                match (m.step, m.stage.as_deref()) {
                    (Some(s), _) => s.to_string(),
                    (None, Some("PrePromotion")) => "pre".to_string(),
                    (None, Some("PostPromotion")) => "post".to_string(),
                    (None, Some(other)) => other.to_string(),
                    (None, None) => "bg".to_string(),
                },
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
    out.push_str(&pods_section(&status, pods, now));
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

/// Where a webhook posts, without its path and query (a webhook URL often
/// carries its credential in the path, e.g. Slack's).
fn webhook_host(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "(invalid URL)".to_string(),
    }
}

/// How a revision is named: `canary v2`, `stable v1`, `version v1` (a first
/// deployment), `retiring v0`, as the operator's summaries name it.
fn revision_label(status: &RankingModelStatus, revision: &str) -> Option<String> {
    if let Some(s) = status.stable.as_ref().filter(|s| s.revision == revision) {
        return Some(format!("stable {}", s.version));
    }
    if let Some(c) = status.canary.as_ref().filter(|c| c.revision == revision) {
        let role = if status.stable.is_some() {
            "canary"
        } else {
            "version"
        };
        return Some(format!("{role} {}", c.version));
    }
    status
        .retiring
        .iter()
        .find(|r| r.revision == revision)
        .map(|r| format!("retiring {}", r.version))
}

fn pod_label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

/// One summary per revision the model is bringing in or serving whose pods
/// show a problem: the incoming one first.
fn diagnosis(
    status: &RankingModelStatus,
    pods: &[Pod],
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<String> {
    let incoming = status
        .canary
        .as_ref()
        .filter(|c| c.aborted_at.is_none())
        .map(|c| c.revision.clone());
    let stable = status.stable.as_ref().map(|s| s.revision.clone());
    incoming
        .into_iter()
        .chain(stable)
        .filter_map(|revision| {
            let of_revision: Vec<Pod> = pods
                .iter()
                .filter(|p| pod_label(p, REVISION_LABEL) == revision)
                .cloned()
                .collect();
            let label = revision_label(status, &revision)?;
            diagnose::summary(&label, &diagnose::diagnose(&of_revision, now))
        })
        .collect()
}

/// The Pods section: one row per pod, then what went wrong in each failing
/// container (state, last termination with exit code, reason and message).
fn pods_section(
    status: &RankingModelStatus,
    pods: &Result<Vec<Pod>, String>,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    let mut out = String::from("Pods:\n");
    let pods = match pods {
        Err(err) => {
            out.push_str(&format!("  (cannot list pods: {err})\n"));
            return out;
        }
        Ok(pods) if pods.is_empty() => {
            out.push_str("  <none>\n");
            return out;
        }
        Ok(pods) => pods,
    };
    // The incoming revision first, then stable, then anything retiring.
    let rank = |p: &Pod| {
        let label = revision_label(status, pod_label(p, REVISION_LABEL)).unwrap_or_default();
        let order = match label.split(' ').next() {
            Some("canary" | "version") => 0,
            Some("stable") => 1,
            _ => 2,
        };
        (order, p.metadata.name.clone().unwrap_or_default())
    };
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| rank(p));
    let mut rows = vec![header(&[
        "NAME", "REVISION", "STATUS", "READY", "RESTARTS", "NODE", "AGE",
    ])];
    let mut details = Vec::new();
    for pod in &pods {
        let pod_status = pod.status.clone().unwrap_or_default();
        let containers = pod_status.container_statuses.clone().unwrap_or_default();
        let inits = pod_status
            .init_container_statuses
            .clone()
            .unwrap_or_default();
        let want = pod
            .spec
            .as_ref()
            .map_or(containers.len(), |s| s.containers.len());
        let ready = containers.iter().filter(|c| c.ready).count();
        let restarts: i32 = containers
            .iter()
            .chain(inits.iter())
            .map(|c| c.restart_count)
            .sum();
        let revision = pod_label(pod, REVISION_LABEL);
        let name = pod.metadata.name.clone().unwrap_or_default();
        rows.push(vec![
            name.clone(),
            revision_label(status, revision)
                .unwrap_or_else(|| format!("{} ({revision})", pod_label(pod, VERSION_LABEL))),
            diagnose::pod_status_text(pod),
            format!("{ready}/{want}"),
            restarts.to_string(),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".to_string()),
            pod.metadata
                .creation_timestamp
                .as_ref()
                .map_or("-".to_string(), |t| age(&t.0.to_string(), now)),
        ]);
        for p in diagnose::diagnose_pod(pod, now)
            .iter()
            .filter(|p| p.container.is_none())
        {
            details.push(format!("{name}: {}", p.detail()));
        }
        for (init, cs) in inits
            .iter()
            .map(|c| (true, c))
            .chain(containers.iter().map(|c| (false, c)))
        {
            if let Some(text) = container_text(cs, init) {
                details.push(format!("{name}: {text}"));
            }
        }
    }
    indent(&mut out, &format_rows(&rows));
    for d in details {
        indent(&mut out, &d);
    }
    out
}

/// A failing container as `kubectl describe pod` would tell it, on one or a
/// few lines; None for a container that is fine (Ready, or an init container
/// that completed).
fn container_text(cs: &ContainerStatus, init: bool) -> Option<String> {
    let state = cs.state.clone().unwrap_or_default();
    let completed = state.terminated.as_ref().is_some_and(|t| t.exit_code == 0);
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    // Waiting for the init containers, or being created, is not trouble yet.
    let starting = last.is_none()
        && state.waiting.as_ref().is_some_and(|w| {
            matches!(
                w.reason.as_deref(),
                Some("PodInitializing" | "ContainerCreating")
            )
        });
    let troubled = if init {
        !completed && (last.is_some() || state.terminated.is_some() || state.waiting.is_some())
    } else {
        !cs.ready
    };
    if !troubled || starting {
        return None;
    }
    let state_text = |s: &ContainerState| -> Option<String> {
        if let Some(w) = &s.waiting {
            let reason = w.reason.clone().unwrap_or_else(|| "Waiting".to_string());
            return Some(match &w.message {
                Some(m) if !m.is_empty() => format!("{reason} ({})", diagnose::one_line(m)),
                _ => reason,
            });
        }
        if let Some(t) = &s.terminated {
            let mut text = format!(
                "terminated: exit code {}, reason {}",
                t.exit_code,
                t.reason.as_deref().unwrap_or("-")
            );
            if let Some(at) = &t.finished_at {
                text.push_str(&format!(", at {}", at.0));
            }
            if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                let m = diagnose::clean_message(m);
                if m.contains('\n') {
                    text.push_str(":\n");
                    for l in m.lines() {
                        text.push_str(&format!("      | {l}\n"));
                    }
                    text.pop();
                } else {
                    text.push_str(&format!(": {m}"));
                }
            }
            return Some(text);
        }
        s.running.as_ref().map(|r| match &r.started_at {
            Some(at) => format!("running since {}, not ready", at.0),
            None => "running, not ready".to_string(),
        })
    };
    let which = if init { "init container" } else { "container" };
    let mut text = format!(
        "{which} {}: {}",
        cs.name,
        state_text(&state).unwrap_or_else(|| "no state yet".to_string())
    );
    // The current termination is already shown; an earlier one says why it restarts.
    if state.terminated.is_none()
        && let Some(t) = last
    {
        let last_state = ContainerState {
            terminated: Some(t.clone()),
            ..ContainerState::default()
        };
        if let Some(l) = state_text(&last_state) {
            text.push_str(&format!("; last {l}"));
        }
    }
    Some(text)
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
    fn remote_text_is_printed_with_its_control_characters_escaped() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 1},
            "spec": {"model": {"version": "v1", "uri": "s3://m/v1", "format": "lightgbm"}, "runtime": {"image": "i"}},
            "status": {"phase": "Degraded", "message": "bad\u{1b}[2J\u{1b}[Hall fine",
                "conditions": [{"type": "Ready", "status": "False", "reason": "Aborted",
                    "message": "ok\rFAKE \u{9b}31m", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}
        }))
        .unwrap();
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1"}, "involvedObject": {}, "type": "Warning", "reason": "X",
            "message": "\u{1b}]0;owned\u{7}note", "lastTimestamp": "2026-11-25T11:58:00Z"
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = printed(&model, &Ok(vec![]), &Ok(vec![event]), now);
        assert!(
            !page.chars().any(|c| c.is_control() && c != '\n'),
            "{page:?}"
        );
        for shown in [
            "\\x1b[2J\\x1b[H",
            "ok\\x0dFAKE \\u{9b}31m",
            "\\x1b]0;owned\\x07note",
        ] {
            assert!(page.contains(shown), "missing {shown:?} in\n{page}");
        }
    }

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
        let page = render(&model, &Ok(vec![]), &Ok(vec![event]), now);
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
        let page = render(&model, &Ok(vec![]), &Ok(vec![repeated]), now);
        assert!(page.contains("  60s          StepCompleted x5"), "{page}");
        let refused = render(&model, &Ok(vec![]), &Err("forbidden".into()), now);
        assert!(
            refused.contains("(cannot list events: forbidden)"),
            "{refused}"
        );
    }

    #[test]
    fn a_blue_green_rollout_shows_its_preview_and_pre_post_analysis() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 2},
            "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"},
                "rollout": {"blueGreen": {"autoPromotionEnabled": false, "prePromotionAnalysis": {"metrics": ["smoke"]}},
                    "analysis": {"templateRefs": [{"name": "slo", "background": true}, {"name": "evals"}]}},
                "notifications": [{"name": "slack", "webhook": {"urlFrom": {"secretKeyRef": {"name": "hooks", "key": "slack"}}}},
                    {"name": "audit", "events": ["Promoted"], "webhook": {"url": "https://hooks.example/T0/B0/secret?x=1"}}]},
            "status": {"phase": "Paused", "observedGeneration": 2,
                "stable": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa"},
                "canary": {"version": "v2", "uri": "s3://m/v2", "revision": "bbb", "weight": 0, "stepIndex": 0,
                    "strategy": "BlueGreen", "previewReadyAt": "2026-11-25T11:58:00Z",
                    "pauseReason": "PreviewReady", "pausedAt": "2026-11-25T11:59:00Z"},
                "analysis": {"metrics": [{"name": "smoke", "stage": "PrePromotion", "phase": "Successful", "successful": 1}]}}
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![]), &Ok(vec![]), now);
        for expected in [
            "Strategy:    blue-green: preview Service ranker-preview, manual promotion (mlctl promote), pre-promotion analysis smoke",
            "Preview:     v2 ready at full size behind ranker-preview since 2026-11-25T11:58:00Z",
            "paused since 2026-11-25T11:59:00Z (PreviewReady)",
            "Templates:   AnalysisTemplate slo (background), evals",
            "Notify:      slack: rollout milestones -> URL from Secret hooks key slack",
            "audit: Promoted -> https://hooks.example/…",
            "  smoke    pre    Successful",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
        assert!(
            !page.contains("secret?x=1"),
            "the webhook's path is a credential:\n{page}"
        );
    }

    #[test]
    fn the_header_route_in_force_is_shown_with_its_step() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 2},
            "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"},
                "rollout": {"trafficRouting": {"gatewayAPI": {"httpRoute": "search"}},
                    "steps": [{"setHeaderRoute": {"match": [{"name": "x-ranker", "exact": "canary"}, {"name": "x-team", "regex": "^search-"}]}},
                        {"setWeight": 10}, {"setHeaderRoute": {"match": []}}, {"setWeight": 50}]}},
            "status": {"phase": "Progressing", "observedGeneration": 2,
                "stable": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa"},
                "canary": {"version": "v2", "uri": "s3://m/v2", "revision": "bbb", "weight": 10, "stepIndex": 1}}
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![]), &Ok(vec![]), now);
        for expected in [
            "Strategy:    canary, 4 step(s)",
            "Headers:     requests with x-ranker: canary and x-team ~ ^search- go to the canary",
            "   0  setHeaderRoute x-ranker: canary and x-team ~ ^search-  done",
            "   2  setHeaderRoute (remove)",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
        let mut later = model.clone();
        later
            .status
            .as_mut()
            .unwrap()
            .canary
            .as_mut()
            .unwrap()
            .step_index = 3;
        let page = render(&later, &Ok(vec![]), &Ok(vec![]), now);
        assert!(!page.contains("Headers:"), "removed at step 2:\n{page}");
    }

    #[test]
    fn comparison_steps_and_their_verdicts_are_shown() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 2},
            "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"}, "runtime": {"image": "i"},
                "rollout": {"steps": [
                    {"shadow": {"duration": "10m", "sample": 20}},
                    {"interleave": {"until": {"queries": 2000, "duration": "2h"}, "prometheus": {"address": "http://p:9090"}}},
                    {"setWeight": 50}]}},
            "status": {"phase": "Paused", "observedGeneration": 2,
                "stable": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa"},
                "canary": {"version": "v2", "uri": "s3://m/v2", "revision": "bbb", "weight": 0, "stepIndex": 1,
                    "pauseReason": "Inconclusive",
                    "comparisons": [
                        {"step": 0, "mode": "shadow", "startedAt": "2026-11-25T11:30:00Z", "endedAt": "2026-11-25T11:40:00Z"},
                        {"step": 1, "mode": "interleave", "startedAt": "2026-11-25T11:41:00Z", "endedAt": "2026-11-25T11:59:00Z",
                         "counts": {"canary": 1010, "stable": 990, "ties": 412}, "pValue": "0.6710", "verdict": "NoPreference"}]}}
        }))
        .unwrap();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![]), &Ok(vec![]), now);
        for expected in [
            "   0  shadow 10m at 20%  done",
            "   1  interleave at 10% until 2000 queries or 2h  <- current",
            "Comparisons:",
            "  0      shadow       2026-11-25T11:30:00Z   2026-11-25T11:40:00Z   -",
            "1010     990      412    0.6710   NoPreference",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }

        // Promoted: the history entry keeps them.
        let mut promoted = model.clone();
        let st = promoted.status.as_mut().unwrap();
        let comparisons = st.canary.take().unwrap().comparisons;
        st.phase = Some(mlctl_crds::rankingmodel::Phase::Healthy);
        st.history.insert(
            0,
            serde_json::from_value(serde_json::json!({
                "version": "v2", "uri": "s3://m/v2", "revision": "bbb", "outcome": "Promoted",
                "at": "2026-11-25T12:00:00Z"
            }))
            .unwrap(),
        );
        st.history[0].comparisons = comparisons;
        let page = render(&promoted, &Ok(vec![]), &Ok(vec![]), now);
        assert!(page.contains("Comparisons (of v2, Promoted):"), "{page}");
        assert!(page.contains("NoPreference"), "{page}");
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
        let page = render(&model, &Ok(vec![]), &Ok(vec![]), now);
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

    fn pod(name: &str, revision: &str, node: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": "2026-11-25T11:55:00Z",
                "labels": {"mlctl.io/model": "ranker", "mlctl.io/revision": revision, "mlctl.io/version": "v"}},
            "spec": {"nodeName": node,
                "initContainers": [{"name": "storage-initializer", "image": "mlctl-ranker:1"}],
                "containers": [{"name": "ranker", "image": "mlctl-ranker:1", "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_pods_section_tells_why_each_failing_pod_is_not_ready() {
        let model: RankingModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "namespace": "search", "generation": 2},
            "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "format": "lightgbm"}, "runtime": {"image": "i"}},
            "status": {"phase": "Degraded", "observedGeneration": 2,
                "stable": {"version": "v1", "uri": "s3://m/v1", "revision": "aaa", "since": "2026-11-25T10:00:00Z"},
                "canary": {"version": "v2", "uri": "s3://m/v2", "revision": "bbb", "weight": 0, "stepIndex": 0}}
        }))
        .unwrap();
        let init_ok = serde_json::json!([{"name": "storage-initializer", "image": "", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
        let healthy = pod(
            "ranker-aaa-1",
            "aaa",
            "node-a",
            serde_json::json!({"phase": "Running", "initContainerStatuses": init_ok,
                "containerStatuses": [{"name": "ranker", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-11-25T11:55:10Z"}}}]}),
        );
        let sha = pod(
            "ranker-bbb-1",
            "bbb",
            "node-real",
            serde_json::json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "storage-initializer", "image": "", "imageID": "", "ready": false,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=storage-initializer"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "finishedAt": "2026-11-25T11:59:00Z",
                        "message": "sha256 mismatch for s3://m/v2: expected ab12…, got cd34…"}}}],
                "containerStatuses": [{"name": "ranker", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        let oom = pod(
            "ranker-bbb-2",
            "bbb",
            "node-real",
            serde_json::json!({"phase": "Running", "initContainerStatuses": init_ok,
                "containerStatuses": [{"name": "ranker", "image": "", "imageID": "", "ready": false, "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-25T11:59:30Z"}}}]}),
        );
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let page = render(&model, &Ok(vec![healthy, oom, sha]), &Ok(vec![]), now);
        print!("{page}");
        for expected in [
            "Diagnosis:   canary v2: init container storage-initializer exited 3: sha256 mismatch for s3://m/v2: expected ab12…, got cd34…\n",
            "Pods:\n",
            "  ranker-bbb-1   canary v2   Init:CrashLoopBackOff   0/1     3          node-real   5m0s\n",
            "  ranker-bbb-2   canary v2   CrashLoopBackOff        0/1     2          node-real   5m0s\n",
            "  ranker-aaa-1   stable v1   Running                 1/1     0          node-a      5m0s\n",
            "  ranker-bbb-1: init container storage-initializer: CrashLoopBackOff (back-off 40s restarting failed container=storage-initializer); last terminated: exit code 3, reason Error, at 2026-11-25T11:59:00Z: sha256 mismatch for s3://m/v2: expected ab12…, got cd34…\n",
            "  ranker-bbb-2: container ranker: CrashLoopBackOff (back-off 20s); last terminated: exit code 137, reason OOMKilled, at 2026-11-25T11:59:30Z\n",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
        // Pods of the canary come before the stable ones; a healthy pod has no detail line.
        assert!(page.find("ranker-bbb-2 ").unwrap() < page.find("ranker-aaa-1").unwrap());
        assert!(!page.contains("ranker-aaa-1:"), "{page}");
        assert!(!page.contains("PodInitializing"), "{page}");
        assert!(!page.contains("stable v1:"), "{page}");
        let refused = render(&model, &Err("forbidden".into()), &Ok(vec![]), now);
        assert!(
            refused.contains("Pods:\n  (cannot list pods: forbidden)\n"),
            "{refused}"
        );
        assert!(!refused.contains("Diagnosis:"), "{refused}");
        let none = render(&model, &Ok(vec![]), &Ok(vec![]), now);
        assert!(none.contains("Pods:\n  <none>\n"), "{none}");
    }
}
