//! Pure rendering of the child objects of a RankingModel: per-revision
//! Deployments, the three Services, the autoscaler and the disruption budget.
//! No I/O: everything here is a function of the spec and a few decisions made
//! by the rollout logic, so it is tested without a cluster.

mod labels;
mod peer;
mod pod;
mod workload;

pub use labels::*;
pub use peer::*;
pub use pod::*;
pub use workload::*;

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mlctl_crds::RankingModel;
use sha2::{Digest, Sha256};

/// Annotation holding the hash of what the operator last applied to a child;
/// an unchanged hash means there is nothing to write.
pub const APPLIED_HASH: &str = "mlctl.io/applied-hash";

/// Default CPU utilisation target of the autoscaler when no metric is given.
pub const DEFAULT_CPU_TARGET: i32 = 80;

/// Everything a reconcile needs to know about the model besides its spec.
#[derive(Debug, Clone)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Owner reference to put on every child.
    pub owner: OwnerReference,
}

impl ModelRef {
    /// Builds the reference from a RankingModel read from the API server.
    pub fn from_model(model: &RankingModel) -> Option<Self> {
        let name = model.metadata.name.clone()?;
        let namespace = model.metadata.namespace.clone()?;
        let uid = model.metadata.uid.clone()?;
        Some(Self {
            owner: OwnerReference {
                api_version: mlctl_crds::API_VERSION.to_string(),
                kind: "RankingModel".to_string(),
                name: name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            name,
            namespace,
        })
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Stamps `obj`'s metadata with the hash of its serialized form, so that the
/// next reconcile can tell whether it must be applied again.
pub fn stamp_hash<K>(obj: &K, meta: impl FnOnce(&mut K) -> &mut ObjectMeta) -> K
where
    K: serde::Serialize + Clone,
{
    let mut out = obj.clone();
    let hash = content_hash(obj);
    meta(&mut out)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH.to_string(), hash);
    out
}

/// A short, stable hash of a serializable value.
pub fn content_hash<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The hash stamped on an observed object, if any.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH))
        .map(String::as_str)
}

/// Which revisions the Services point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTargets {
    /// Revision behind `<model>` and `<model>-stable`.
    pub stable: String,
    /// Revision behind `<model>-canary` (the stable one when no canary runs).
    pub canary: String,
    /// `<model>` selects the pods of every serving revision (a replica-ratio
    /// canary takes traffic in proportion to its Ready pods).
    pub split: bool,
    /// `<model>` selects only the canary revision: a blue-green rollout has
    /// switched all traffic to it (the previous revision stays behind
    /// `<model>-stable` until the switch is final).
    pub switched: bool,
    /// Revision behind `<model>-preview`; None: no preview Service (only
    /// blue-green models have one).
    pub preview: Option<String>,
}

/// Name of the blue-green preview Service of a model.
pub fn preview_service_name(model: &str) -> String {
    format!("{model}-preview")
}

/// The Services `<model>`, `<model>-stable` and `<model>-canary`, and
/// `<model>-preview` for a blue-green model.
pub fn services(model: &ModelRef, targets: &ServiceTargets) -> Vec<Service> {
    let make = |name: String, revision: Option<&str>| -> Service {
        let mut labels = model_labels(&model.name);
        labels.insert(COMPONENT_LABEL.into(), "ranking-model".into());
        let selector = match revision {
            Some(revision) => revision_selector(&model.name, revision),
            None => BTreeMap::from([(MODEL_LABEL.to_string(), model.name.clone())]),
        };
        Service {
            metadata: model.meta(name, labels),
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    };
    let main = if targets.switched {
        Some(targets.canary.as_str())
    } else {
        (!targets.split).then_some(targets.stable.as_str())
    };
    let mut out = vec![
        make(model.name.clone(), main),
        make(format!("{}-stable", model.name), Some(&targets.stable)),
        make(format!("{}-canary", model.name), Some(&targets.canary)),
    ];
    if let Some(preview) = &targets.preview {
        out.push(make(preview_service_name(&model.name), Some(preview)));
    }
    out
}

/// The HorizontalPodAutoscaler of the stable Deployment.
pub fn autoscaler(
    model: &ModelRef,
    autoscaling: &mlctl_crds::rankingmodel::Autoscaling,
    stable_deployment: &str,
) -> HorizontalPodAutoscaler {
    let metrics = if autoscaling.metrics.is_empty() {
        vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(
                        autoscaling
                            .target_cpu_utilization_percentage
                            .unwrap_or(DEFAULT_CPU_TARGET),
                    ),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        }]
    } else {
        autoscaling.metrics.clone()
    };
    HorizontalPodAutoscaler {
        metadata: model.meta(model.name.clone(), model_labels(&model.name)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: stable_deployment.to_string(),
            },
            min_replicas: Some(autoscaling.min_replicas.unwrap_or(1)),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            behavior: autoscaling.behavior.clone(),
        }),
        status: None,
    }
}

/// A PodDisruptionBudget that keeps all but one stable pod through voluntary
/// disruptions (node drains).
pub fn disruption_budget(model: &ModelRef, stable_revision: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: model.meta(model.name.clone(), model_labels(&model.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(revision_selector(&model.name, stable_revision)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests;
