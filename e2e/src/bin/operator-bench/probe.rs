//! The probe: the operator reconciles one plain and one canary model in a
//! namespace of their own, and the children it rendered become the template
//! of the floor and of the Argo Rollouts (objects.rs).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::objects::{self, PROBE_CANARY, PROBE_PLAIN, Template};
use crate::subject::{Controller, Subject};
use crate::{converge, namespace};

/// Runs the probe and returns the template; leaves nothing behind.
pub async fn capture(client: &Client, log_dir: &std::path::Path) -> Template {
    let ns = "bench-probe";
    namespace::fresh(client, ns).await;
    let controller = Controller::new(Subject::Mlctl, ns, log_dir).expect("mlctl has a process");
    let proc = controller.start().await;
    let (ar, ready) = Subject::Mlctl.converged();
    let waiting = tokio::spawn(converge::all_ready(
        client.clone(),
        ns.into(),
        ar,
        2,
        ready,
        Duration::from_secs(120),
        "the probe's two RankingModels Healthy".into(),
    ));
    converge::create_all(
        client,
        ns,
        vec![
            (objects::model_resource(), objects::model(1, PROBE_PLAIN)),
            (objects::model_resource(), objects::model(0, PROBE_CANARY)),
        ],
        2,
    )
    .await;
    waiting.await.expect("probe watch");
    let template = Template {
        plain: children(client, ns, PROBE_PLAIN).await,
        canary: children(client, ns, PROBE_CANARY).await,
    };
    namespace::delete(client, ns).await;
    proc.stop(Duration::from_secs(10)).await;
    eprintln!(
        "==> probe: a plain model becomes {}, a canary model {}",
        describe(&template.plain),
        describe(&template.canary)
    );
    template
}

fn describe(children: &[(ApiResource, Value)]) -> String {
    let mut kinds: Vec<&str> = children.iter().map(|(ar, _)| ar.kind.as_str()).collect();
    kinds.sort();
    kinds.join(" + ")
}

/// The children owned by `model`, cleaned of what the API server assigns
/// and of the owner reference (the floor's objects have no owner).
async fn children(client: &Client, ns: &str, model: &str) -> Vec<(ApiResource, Value)> {
    let kinds = [
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<ConfigMap>(&()),
    ];
    let mut out = Vec::new();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for o in api
            .list(&ListParams::default())
            .await
            .expect("list the probe's children")
        {
            let owned = o.metadata.owner_references.as_ref().is_some_and(|refs| {
                refs.iter()
                    .any(|r| r.kind == "RankingModel" && r.name == model)
            });
            if owned {
                let mut v = clean(serde_json::to_value(&o).expect("serialize"));
                // Items of a list carry no apiVersion/kind of their own.
                v["apiVersion"] = ar.api_version.clone().into();
                v["kind"] = ar.kind.clone().into();
                out.push((ar.clone(), v));
            }
        }
    }
    assert!(
        out.iter().any(|(ar, _)| ar.kind == "Deployment"),
        "the probe model {model} has no Deployment"
    );
    out
}

fn clean(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "ownerReferences",
            "selfLink",
            "namespace",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        // Assigned by the API server to each Service.
        for k in ["clusterIP", "clusterIPs"] {
            spec.remove(k);
        }
    }
    v
}
