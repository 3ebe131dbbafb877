//! What each subject is given to reconcile, built so that the three are the
//! same workload: N RankingModels (80% plain, 20% canary + HPA) for mlctl; the
//! very children the operator renders for them, created directly, for the
//! floor; Rollouts with the same pod template, Services and HPAs for Argo.
//!
//! The floor and the Rollouts are not written by hand: a probe runs the
//! operator on one plain and one canary model and copies what it rendered
//! (see `probe.rs`), so they follow the operator's render code as it changes.

use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

/// Names of the probe's two models; every occurrence is replaced by the
/// name of the object being built.
pub const PROBE_PLAIN: &str = "bench-probe-plain";
/// See [`PROBE_PLAIN`].
pub const PROBE_CANARY: &str = "bench-probe-canary";

/// The Argo Rollouts resource (not in k8s-openapi).
pub fn rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// The RankingModel resource.
pub fn model_resource() -> ApiResource {
    ApiResource::erase::<mlctl_crds::RankingModel>(&())
}

/// The name of the i-th object.
pub fn name(i: usize) -> String {
    format!("m-{i:05}")
}

/// Every fifth object is a canary with an HPA: the 80/20 mix.
pub fn is_canary(i: usize) -> bool {
    i.is_multiple_of(5)
}

/// The canary steps both controllers get: replica-ratio weights with timed
/// pauses, so a rollout completes by itself in both.
fn canary_steps() -> Value {
    json!([
        {"setWeight": 20}, {"pause": {"duration": "10s"}},
        {"setWeight": 50}, {"pause": {"duration": "10s"}}
    ])
}

/// The i-th RankingModel (`name` overrides the numbered name, for the probe).
pub fn model(i: usize, name: &str) -> Value {
    let mut spec = json!({
        "model": {"version": "v1", "uri": "s3://models/bench/v1/model.txt", "format": "lightgbm"},
        "runtime": {"image": "ghcr.io/mlctl/mlctl-ranker:0.1.0"},
    });
    if is_canary(i) {
        spec["autoscaling"] =
            json!({"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70});
        spec["rollout"] = json!({"steps": canary_steps(), "trafficRouting": {"replicaRatio": {}}});
    } else {
        spec["replicas"] = json!(1);
    }
    json!({
        "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
        "metadata": {"name": name}, "spec": spec
    })
}

/// What the operator rendered for the probe's two models, cleaned of
/// everything the API server assigns.
#[derive(Debug, Clone)]
pub struct Template {
    /// Children of the plain model.
    pub plain: Vec<(ApiResource, Value)>,
    /// Children of the canary model.
    pub canary: Vec<(ApiResource, Value)>,
}

impl Template {
    /// The children of model `i`, to create directly (the floor).
    pub fn floor(&self, i: usize) -> Vec<(ApiResource, Value)> {
        let (children, probe) = if is_canary(i) {
            (&self.canary, PROBE_CANARY)
        } else {
            (&self.plain, PROBE_PLAIN)
        };
        children
            .iter()
            .map(|(ar, v)| (ar.clone(), rename(v, probe, &name(i))))
            .collect()
    }

    /// The pod template and selector of the plain model's Deployment.
    fn workload(&self) -> (Value, Value) {
        let deployment = self
            .plain
            .iter()
            .find(|(ar, _)| ar.kind == "Deployment")
            .map(|(_, v)| v)
            .expect("the probe captured a Deployment");
        (
            deployment["spec"]["template"].clone(),
            deployment["spec"]["selector"].clone(),
        )
    }

    /// The selector of the model's main Service (all of its pods).
    fn service_selector(&self) -> Value {
        self.plain
            .iter()
            .find(|(ar, v)| ar.kind == "Service" && v["metadata"]["name"] == PROBE_PLAIN)
            .map(|(_, v)| v["spec"]["selector"].clone())
            .expect("the probe captured the model's Service")
    }

    /// The Argo equivalent of model `i`: a Rollout with the operator's pod
    /// template and 1 replica (canary: weights 20/50 with pauses, and an HPA
    /// on the Rollout), the same three Services (`<name>` over all pods,
    /// `-stable` and `-canary` whose selectors Argo manages).
    pub fn rollout(&self, i: usize) -> Vec<(ApiResource, Value)> {
        let name = name(i);
        let (template, selector) = self.workload();
        let template = rename(&template, PROBE_PLAIN, &name);
        let selector = rename(&selector, PROBE_PLAIN, &name);
        let mut canary = json!({
            "stableService": format!("{name}-stable"),
            "canaryService": format!("{name}-canary"),
            // As the operator's Deployments: surge, never below the replicas.
            "maxSurge": "25%", "maxUnavailable": 0,
        });
        if is_canary(i) {
            canary["steps"] = canary_steps();
        }
        let mut spec = json!({
            "selector": selector, "template": template,
            "revisionHistoryLimit": 2, "strategy": {"canary": canary}
        });
        if !is_canary(i) {
            spec["replicas"] = json!(1);
        }
        let mut out = vec![(
            rollout_resource(),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                   "metadata": {"name": name}, "spec": spec}),
        )];
        let selector = rename(&self.service_selector(), PROBE_PLAIN, &name);
        for service in [
            name.clone(),
            format!("{name}-stable"),
            format!("{name}-canary"),
        ] {
            out.push((
                ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
                       "spec": {"selector": selector,
                                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
            ));
        }
        if is_canary(i) {
            out.push((
                ApiResource::erase::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(&()),
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                       "metadata": {"name": name},
                       "spec": {"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name},
                                "minReplicas": 1, "maxReplicas": 3,
                                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                    "target": {"type": "Utilization", "averageUtilization": 70}}}]}}),
            ));
        }
        out
    }
}

/// `value` with every occurrence of `from` in its strings replaced by `to`.
fn rename(value: &Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(a.iter().map(|v| rename(v, from, to)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.replace(from, to), rename(v, from, to)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `value` as a DynamicObject for the API of `ar`.
pub fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a well-formed object")
}

/// The churn edit of each subject, number `k`: a rollout setting of a canary
/// model (its progress deadline, `600 + k` seconds, so every edit is a new
/// generation). Both controllers must reconcile it and record the generation;
/// neither has a child to change. What is measured is the controllers'
/// reconcile latency under a steady stream of edits, not how fast a 2-core
/// control plane creates pods (a new version per edit at 10/s is more
/// Deployments per second than the floor creates: docs/performance.md).
pub fn settings_edit(argo: bool, k: usize) -> Value {
    let deadline = 600 + k;
    if argo {
        json!({"spec": {"progressDeadlineSeconds": deadline}})
    } else {
        json!({"spec": {"rollout": {"progressDeadlineSeconds": deadline}}})
    }
}

/// The `k`-th canary model of `n` (the churn edits go round-robin over them).
pub fn canary_name(k: usize, n: usize) -> String {
    let canaries = n.div_ceil(5).max(1);
    name((k % canaries) * 5)
}
