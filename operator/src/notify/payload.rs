//! What a notification says: which Event reasons a subscription takes by
//! default, and the JSON body — a Slack-compatible `text` plus the Event's
//! fields under `mlctl` for any other receiver. Pure: no I/O, no clock.

use jiff::Timestamp;
use mlctl_crds::notify::Notification;
use mlctl_crds::{FeaturePipeline, RankingModel, RankingModelStatus};
use serde_json::{Value, json};

/// The RankingModel reasons a subscription without `events` takes: a
/// rollout started, a step completed, paused, aborted, promoted, rolled
/// back. Each is emitted by `crate::rollout` (canary.rs, mod.rs, compare.rs).
pub const MODEL_MILESTONES: &[&str] = &[
    // Started: a canary, or a revision deployed without canary steps.
    "CanaryStarted",
    "Deploying",
    // Blue-green: started, preview ready at full size, traffic switched.
    "BlueGreenStarted",
    "PreviewReady",
    "TrafficSwitched",
    "StepCompleted",
    // Paused: an indefinite pause step, or an inconclusive verdict.
    "Paused",
    "AnalysisInconclusive",
    "InterleavingInconclusive",
    // Aborted: by request, by analysis, by a deadline, by interleaving.
    "RolloutAborted",
    "AnalysisFailed",
    "ProgressDeadlineExceeded",
    "InterleavingLost",
    "Promoted",
    "RollingBack",
];

/// The FeaturePipeline reasons a subscription without `events` takes:
/// stale, fresh again, runs failing (`crate::pipeline`: freshness.rs and
/// the Degraded condition in mod.rs).
pub const PIPELINE_MILESTONES: &[&str] = &["Stale", "WithinObjective", "RunsFailing"];

/// The kind of object a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RankingModel,
    FeaturePipeline,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RankingModel => "RankingModel",
            Kind::FeaturePipeline => "FeaturePipeline",
        }
    }

    fn milestones(self) -> &'static [&'static str] {
        match self {
            Kind::RankingModel => MODEL_MILESTONES,
            Kind::FeaturePipeline => PIPELINE_MILESTONES,
        }
    }
}

/// Whether `subscription` takes Events of `reason` about a `kind`.
pub fn wants(subscription: &Notification, kind: Kind, reason: &str) -> bool {
    if subscription.events.is_empty() {
        kind.milestones().contains(&reason)
    } else {
        subscription.events.iter().any(|e| e == reason)
    }
}

/// An object with subscriptions, and what a reader of a notification
/// about it wants besides the Event: the versions and the canary's place.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub notifications: Vec<Notification>,
    /// The version the spec asks for (RankingModel).
    pub version: Option<String>,
    pub stable_version: Option<String>,
    pub canary_version: Option<String>,
    /// The canary's current step (1-based) and weight, while there is one.
    pub step: Option<i32>,
    pub weight: Option<i32>,
}

impl Subject {
    /// A model with the status just decided; None without subscriptions
    /// (the common case costs nothing).
    pub fn model(model: &RankingModel, status: &RankingModelStatus) -> Option<Subject> {
        if model.spec.notifications.is_empty() {
            return None;
        }
        let canary = status.canary.as_ref();
        Some(Subject {
            kind: Kind::RankingModel,
            namespace: model.metadata.namespace.clone()?,
            name: model.metadata.name.clone()?,
            uid: model.metadata.uid.clone().unwrap_or_default(),
            notifications: model.spec.notifications.clone(),
            version: Some(model.spec.model.version.clone()),
            stable_version: status.stable.as_ref().map(|s| s.version.clone()),
            canary_version: canary.map(|c| c.version.clone()),
            step: canary.map(|c| c.step_index + 1),
            weight: canary.map(|c| c.weight),
        })
    }

    /// A pipeline; None without subscriptions.
    pub fn pipeline(pipeline: &FeaturePipeline) -> Option<Subject> {
        if pipeline.spec.notifications.is_empty() {
            return None;
        }
        Some(Subject {
            kind: Kind::FeaturePipeline,
            namespace: pipeline.metadata.namespace.clone()?,
            name: pipeline.metadata.name.clone()?,
            uid: pipeline.metadata.uid.clone().unwrap_or_default(),
            notifications: pipeline.spec.notifications.clone(),
            version: None,
            stable_version: None,
            canary_version: None,
            step: None,
            weight: None,
        })
    }

    /// The version a rollout Event is about: the canary's while there is
    /// one, else the one the spec asks for.
    fn headline_version(&self) -> Option<&str> {
        self.canary_version.as_deref().or(self.version.as_deref())
    }
}

/// One Event as a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub warning: bool,
    pub time: Timestamp,
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>` pings everyone, `<url|x>`
/// is a link): a message quoting user input must not.
pub fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The line a person reads: `shop/ranker: Promoted v2 — version v2 … serves all traffic`.
pub fn text(subject: &Subject, event: &Event<'_>) -> String {
    let version = match (subject.kind, subject.headline_version()) {
        (Kind::RankingModel, Some(v)) => format!(" {v}"),
        _ => String::new(),
    };
    let icon = if event.warning { ":warning: " } else { "" };
    escape_mrkdwn(&format!(
        "{icon}{}/{}: {}{version} — {}",
        subject.namespace, subject.name, event.reason, event.message
    ))
}

/// The JSON body: Slack's `text` (what Slack, Mattermost and Rocket.Chat
/// show) and the Event's fields under `mlctl` for everything else.
/// `subscription` is the subscription's name; `id` is unique per
/// notification (a receiver can drop a retry it already has).
pub fn body(subject: &Subject, subscription: &str, id: &str, event: &Event<'_>) -> Value {
    let mut fields = json!({
        "id": id,
        "subscription": subscription,
        "kind": subject.kind.as_str(),
        "namespace": subject.namespace,
        "name": subject.name,
        "uid": subject.uid,
        "reason": event.reason,
        "type": if event.warning { "Warning" } else { "Normal" },
        "message": event.message,
        "time": event.time.to_string(),
    });
    let optional = [
        ("version", subject.version.clone().map(Value::from)),
        (
            "stableVersion",
            subject.stable_version.clone().map(Value::from),
        ),
        (
            "canaryVersion",
            subject.canary_version.clone().map(Value::from),
        ),
        ("step", subject.step.map(Value::from)),
        ("weight", subject.weight.map(Value::from)),
    ];
    if let Value::Object(map) = &mut fields {
        for (key, value) in optional {
            if let Some(v) = value {
                map.insert(key.into(), v);
            }
        }
    }
    json!({
        "text": text(subject, event),
        "mlctl": fields,
    })
}
