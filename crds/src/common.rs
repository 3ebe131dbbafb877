//! Pieces shared by both kinds: conditions, duration syntax, pod placement
//! and the CEL fragments that validate them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every mlctl kind.
pub const GROUP: &str = "mlctl.io";
/// API version of every mlctl kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every mlctl kind.
pub const API_VERSION: &str = "mlctl.io/v1alpha1";

/// Label that assigns an object to one operator installation: an operator
/// started with `--instance-id X` reconciles only objects labelled
/// `mlctl.io/instance-id: X`; one without the flag only objects without the
/// label (the convention of Argo Rollouts' `--instance-id`).
pub const INSTANCE_ID_LABEL: &str = "mlctl.io/instance-id";

/// CEL rule: the string is a duration such as `30s`, `5m`, `1h30m` or `1.5h`.
/// Kept in one place so every duration field accepts the same syntax, which
/// [`parse_duration`] implements for the operator.
pub const DURATION_RULE: &str = r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')";

/// Maximum length of a duration string (keeps CEL cost estimates small).
pub const DURATION_MAX_LEN: u32 = 32;

/// CEL rule: the string is a DNS subdomain (RFC 1123), the form of the name
/// of a ServiceAccount, Secret or PriorityClass; the API server checks pod
/// fields that name one with the same rule.
pub const DNS_SUBDOMAIN_RULE: &str =
    r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// Where the pods of an object may run and what they may pull: the
/// scheduling fields of a pod spec, under their Kubernetes names, copied onto
/// every pod the object creates. Changing them updates the pods in place (a
/// rolling update of the same Deployment or the next run), never a new
/// model revision: they change where a model runs, not what it serves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodPlacement {
    /// Node labels a node must carry for these pods to be scheduled on it
    /// (pod `spec.nodeSelector`), e.g. `node-pool: ranking`. Set on every pod
    /// of the object (a RankingModel's stable and canary pods alike).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints these pods tolerate (pod `spec.tolerations`), e.g. a dedicated
    /// node pool's `NoSchedule` taint. Set on every pod of the object (a
    /// RankingModel's stable and canary pods alike).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.all(t, !has(t.operator) || t.operator in ['', 'Equal', 'Exists'])").message("tolerations[].operator must be Equal or Exists"),
        validation = Rule::new("self.all(t, !has(t.operator) || t.operator != 'Exists' || !has(t.value) || t.value == '')").message("a toleration with operator Exists matches any value: remove its value (or use operator Equal)"),
        validation = Rule::new("self.all(t, (has(t.key) && t.key != '') || (has(t.operator) && t.operator == 'Exists'))").message("a toleration without a key tolerates every taint and needs operator: Exists (or set its key)"),
        validation = Rule::new("self.all(t, !has(t.effect) || t.effect in ['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'])").message("tolerations[].effect must be NoSchedule, PreferNoSchedule or NoExecute (or empty for all effects)"),
        validation = Rule::new("self.all(t, !has(t.tolerationSeconds) || (has(t.effect) && t.effect == 'NoExecute'))").message("tolerations[].tolerationSeconds only applies to effect NoExecute: set effect: NoExecute or remove tolerationSeconds"),
    )]
    pub tolerations: Vec<Toleration>,
    /// Node affinity and pod (anti-)affinity of these pods (pod
    /// `spec.affinity`). Set on every pod of the object (a RankingModel's
    /// stable and canary pods alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How these pods spread across zones or nodes (pod
    /// `spec.topologySpreadConstraints`). Select the pods with their
    /// `labelSelector` (e.g. `mlctl.io/model: <name>`); a RankingModel's
    /// stable and canary pods both carry these constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Secrets (type `kubernetes.io/dockerconfigjson`) in the object's
    /// namespace to pull the images with (pod `spec.imagePullSecrets`). Set
    /// on every pod of the object (a RankingModel's stable and canary pods
    /// alike).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    // No CEL rule on the names: `name` is the k8s type's string without a
    // maxLength, so any rule over it is costed at the 3 MiB request size and
    // the API server refuses the CRD. A wrong name shows as an image pull
    // failure naming the Secret.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// PriorityClass of these pods (pod `spec.priorityClassName`): which pods
    /// the scheduler preempts first when nodes are full. The class must exist.
    /// Set on every pod of the object (a RankingModel's stable and canary pods
    /// alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("priorityClassName must be the name of a PriorityClass: lower-case letters, digits, '-' and '.' (kubectl get priorityclasses lists them)"))]
    pub priority_class_name: Option<String>,
}

impl PodPlacement {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &PodPlacement::default()
    }
}

/// The list of conditions of a status, a list-map keyed on `type` so that
/// server-side apply merges conditions by type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl JsonSchema for Conditions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Conditions".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = <Vec<Condition> as JsonSchema>::json_schema(generator);
        schema.insert("x-kubernetes-list-type".into(), "map".into());
        schema.insert(
            "x-kubernetes-list-map-keys".into(),
            serde_json::json!(["type"]),
        );
        schema.insert(
            "description".into(),
            "Standard conditions (type, status, reason, message, lastTransitionTime, \
             observedGeneration), one per type."
                .into(),
        );
        schema
    }
}

impl Conditions {
    /// The condition of the given type, if present.
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type has status `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.get(type_).is_some_and(|c| c.status == "True")
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Errors from [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid duration {:?}: use a number and a unit (ms, s, m, h), e.g. 30s, 5m, 1h30m",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses the duration syntax accepted by [`DURATION_RULE`]: one or more
/// `<number><unit>` groups with units `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(err());
    }
    let mut total_ms: f64 = 0.0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &text[start..i];
        if number.is_empty()
            || number.starts_with('.')
            || number.ends_with('.')
            || number.matches('.').count() > 1
        {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor_ms = match &text[unit_start..i] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(err()),
        };
        total_ms += value * factor_ms;
    }
    if !total_ms.is_finite() || total_ms > 1.0e15 {
        return Err(err());
    }
    Ok(std::time::Duration::from_millis(total_ms.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_the_documented_examples() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("2h", Duration::from_secs(7200)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_the_cel_rule_rejects() {
        for text in [
            "", "5", "m", "5 m", "1d", "-5s", "1.s", ".5s", "1..5s", "5M", "1h 30m",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn error_message_names_the_fix() {
        let msg = parse_duration("5 minutes").unwrap_err().to_string();
        assert!(msg.contains("e.g. 30s, 5m, 1h30m"), "{msg}");
    }
}
