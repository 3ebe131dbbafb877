//! Label keys and selectors shared by every child object.

use std::collections::BTreeMap;

/// The model a pod or object belongs to.
pub const MODEL_LABEL: &str = "mlctl.io/model";
/// The model version (`spec.model.version`) a pod serves.
pub const VERSION_LABEL: &str = "mlctl.io/version";
/// The revision hash a pod serves; Services select on it.
pub const REVISION_LABEL: &str = "mlctl.io/revision";
/// `stable`, `canary` or `retiring`; on Deployments only, because changing a
/// pod template label would restart the pods.
pub const TRACK_LABEL: &str = "mlctl.io/track";
/// Deployment annotation: the model URI its pods serve (with the version
/// label, what lets a lost status be rebuilt from the Deployments).
pub const MODEL_URI_ANNOTATION: &str = "mlctl.io/model-uri";
/// Pod annotation Prometheus' `kubernetes-pods` discovery keeps pods by.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// `app.kubernetes.io/component`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The field manager of every write of the operator.
pub const FIELD_MANAGER: &str = "mlctl-operator";
/// The field manager that sets the initial replica count of a Deployment an
/// autoscaler will own; the main manager never mentions `replicas` then.
pub const INITIAL_REPLICAS_MANAGER: &str = "mlctl-operator-initial-replicas";

/// Labels every object of a model carries.
pub fn model_labels(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), model.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        (MODEL_LABEL.to_string(), model.to_string()),
    ])
}

/// Selector of the serving pods of one revision of a model.
pub fn revision_selector(model: &str, revision: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MODEL_LABEL.to_string(), model.to_string()),
        (REVISION_LABEL.to_string(), revision.to_string()),
    ])
}

/// The selector string written to `status.selector` (scale subresource).
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Deployment name of a revision: `<model>-<revision>`.
pub fn deployment_name(model: &str, revision: &str) -> String {
    format!("{model}-{revision}")
}
