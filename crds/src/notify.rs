//! Notifications: rollout and pipeline Events sent to webhooks (Slack
//! incoming webhooks and anything that takes a JSON POST). The operator
//! queues them and sends them from a background task with retries; a
//! reconcile never waits for a webhook (docs/notifications.md).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::common::DURATION_MAX_LEN;
use crate::http::{HttpHeader, SecretKeyRef, TIMEOUT_RULE, TlsConfig};

/// One subscription: which Events of this object go to which webhook.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Name of the subscription, unique within the object (it names the
    /// subscription in the operator's log lines and in each notification's
    /// `mlctl.subscription`).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("notifications[].name must be lower-case letters, digits and '-' (e.g. slack-ranking)"))]
    pub name: String,
    /// Event reasons to send, e.g. `[Promoted, RolloutAborted]`. Empty: the
    /// kind's milestones (docs/notifications.md lists them: for a
    /// RankingModel the rollout started, a step completed, paused, aborted,
    /// promoted, rolled back; for a FeaturePipeline stale, fresh again, runs
    /// failing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // Each item's maxLength bounds the CEL rule's estimated cost: without
    // it the API server refuses the CRD (cost budget exceeded 80x).
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = Rule::new("self.all(r, r.matches('^[A-Z][A-Za-z0-9]*$'))").message("notifications[].events are Event reasons in CamelCase, e.g. Promoted or RolloutAborted (see docs/notifications.md)"))]
    pub events: Vec<String>,
    /// Where to POST.
    pub webhook: Webhook,
}

/// An HTTP endpoint taking a JSON POST with a Slack-compatible body
/// (`text`, `blocks`) plus the event's fields under `mlctl`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.url), has(self.urlFrom)].filter(x, x).size() == 1").message("webhook sets exactly one of url or urlFrom (a Slack webhook URL is a credential: prefer urlFrom.secretKeyRef)"),
)]
pub struct Webhook {
    /// The URL, for endpoints whose URL is not a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+$')").message("webhook.url must be an http:// or https:// URL"))]
    pub url: Option<String>,
    /// The URL from a Secret in the object's namespace (Slack incoming
    /// webhook URLs carry their credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<UrlSource>,
    /// Extra request headers; credentials from Secrets (`valueFrom.secretKeyRef`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(h, self.filter(g, g.name.lowerAscii() == h.name.lowerAscii()).size() == 1)").message("webhook.headers names a header twice"))]
    pub headers: Vec<HttpHeader>,
    /// Timeout of one attempt (default `10s`, at most `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("webhook.timeout must be a duration of at most 60s, such as 10s"))]
    pub timeout: Option<String>,
    /// TLS settings (CA bundle, server name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// Where a webhook URL comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UrlSource {
    /// A key of a Secret in the object's namespace holding the URL.
    pub secret_key_ref: SecretKeyRef,
}
