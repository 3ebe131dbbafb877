//! Pod placement and pod security against the real local control plane: a
//! RankingModel's nodeSelector, tolerations and priorityClassName reach its
//! Deployment and the scheduler honours them; a FeaturePipeline's run pods
//! are admitted in a namespace that enforces Pod Security `restricted`.
//!
//! Each test brings its own kwok node, labelled and tainted with a name only
//! it uses, so the other tests' pods never land there and nothing else has to
//! tolerate the taint.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use mlctl_crds::rankingmodel::Phase;
use mlctl_crds::{FeaturePipeline, RankingModel};
use mlctl_e2e::operator::{install_chart_rbac, service_account_kubeconfig, setup, start_operator};
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, install_crds, require_e2e, unique_suffix, wait_for,
    wait_for_list,
};
use serde_json::json;

const LONG: Duration = Duration::from_secs(120);

/// A kwok node of one test's own: label `pool=<pool>`, taint
/// `dedicated=<pool>:NoSchedule`. Deleted by [`PoolNode::delete`]; a failed
/// test leaves it behind, tainted, which keeps other pods off it.
struct PoolNode {
    client: Client,
    name: String,
    pool: String,
}

impl PoolNode {
    async fn create(client: &Client, pool: &str) -> Self {
        let name = format!("kwok-{pool}");
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                // kwok manages the nodes with this annotation (e2e/cluster).
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "pool": pool,
                },
            },
            "spec": {"taints": [{"key": "dedicated", "value": pool, "effect": "NoSchedule"}]},
        }))
        .unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        nodes.create(&PostParams::default(), &node).await.unwrap();
        wait_for(
            &nodes,
            &name,
            |n: Option<&Node>| {
                n.and_then(|n| n.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            },
            DEFAULT_TIMEOUT,
        )
        .await;
        Self {
            client: client.clone(),
            name,
            pool: pool.to_string(),
        }
    }

    async fn delete(self) {
        Api::<Node>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// Every pod matching `selector`, once there are `count` of them and all are
/// scheduled.
async fn scheduled_pods(ns: &TestNamespace, selector: &str, count: usize) -> Vec<Pod> {
    wait_for_list(
        &ns.api::<Pod>(),
        watcher::Config::default().labels(selector),
        |pods: &[Pod]| {
            pods.len() == count
                && pods
                    .iter()
                    .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        },
        LONG,
    )
    .await
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_model_with_placement_runs_on_its_pool_with_its_priority() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("placement-rm").await;
    let pool = format!("rm-{}", unique_suffix());
    let node = PoolNode::create(&client, &pool).await;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let class = format!("e2e-{pool}");
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": class},
                "value": 1000,
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let yaml = format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: pinned
spec:
  model: {{version: "1", uri: s3://models/pinned/model.txt, format: lightgbm}}
  runtime:
    nodeSelector: {{pool: {pool}}}
    tolerations:
      - {{key: dedicated, operator: Equal, value: {pool}, effect: NoSchedule}}
    priorityClassName: {class}
  replicas: 2
"#
    );
    apply_yaml(&client, ns.name(), &yaml).await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(
        &models,
        "pinned",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .is_some_and(|s| s.phase == Some(Phase::Healthy))
        },
        LONG,
    )
    .await;
    let revision = model.status.unwrap().stable.unwrap().revision;
    let name = format!("pinned-{revision}");

    let deployments: Api<Deployment> = ns.api();
    let template = deployments.get(&name).await.unwrap().spec.unwrap().template;
    let pod_spec = template.spec.unwrap();
    assert_eq!(
        pod_spec.node_selector.unwrap().get("pool"),
        Some(&node.pool)
    );
    let tolerations = pod_spec.tolerations.unwrap();
    assert_eq!(tolerations.len(), 1, "{tolerations:?}");
    assert_eq!(tolerations[0].value.as_deref(), Some(node.pool.as_str()));
    assert_eq!(
        pod_spec.priority_class_name.as_deref(),
        Some(class.as_str())
    );

    // The scheduler put them on the pool's node; the Priority admission
    // resolved the class to its value.
    let pods = scheduled_pods(&ns, "mlctl.io/model=pinned", 2).await;
    for pod in &pods {
        assert_eq!(node_of(pod), node.name, "{}", pod.name_any());
        assert_eq!(pod.spec.as_ref().unwrap().priority, Some(1000));
    }

    // A placement change is no new revision: the same Deployment rolls.
    let patch = json!({"spec": {"runtime": {"nodeSelector": {"pool": pool, "kubernetes.io/hostname": node.name}}}});
    models
        .patch("pinned", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let rolled = wait_for(
        &deployments,
        &name,
        |d: Option<&Deployment>| {
            let Some(d) = d else { return false };
            let selector_updated = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.node_selector.as_ref())
                .is_some_and(|s| s.contains_key("kubernetes.io/hostname"));
            let status = d.status.clone().unwrap_or_default();
            selector_updated
                && status.observed_generation == d.metadata.generation
                && status.updated_replicas == Some(2)
                && status.available_replicas == Some(2)
                && status.replicas == Some(2)
        },
        LONG,
    )
    .await;
    assert_eq!(rolled.name_any(), name);
    let model = models.get("pinned").await.unwrap();
    let status = model.status.unwrap();
    assert_eq!(status.stable.unwrap().revision, revision);
    assert!(
        status.canary.is_none(),
        "a placement change started a canary"
    );

    ns.finish().await;
    node.delete().await;
    classes
        .delete(&class, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn pipeline_run_pods_are_admitted_under_pod_security_restricted() {
    require_e2e!();
    let client = mlctl_e2e::client().await;
    install_crds(&client).await;
    let mut ns = TestNamespace::with_pod_security(&client, "placement-fp", "restricted").await;
    let sa = install_chart_rbac(&client, ns.name()).await;
    let kubeconfig = service_account_kubeconfig(&client, ns.name(), &sa).await;
    let operator = start_operator(&ns, &kubeconfig, "a");
    ns.dump_log_on_failure(operator.log.clone());
    let pool = format!("fp-{}", unique_suffix());
    let node = PoolNode::create(&client, &pool).await;

    let yaml = format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: restricted
spec:
  trigger:
    schedule: {{cron: "0 0 1 1 *"}}
  engine:
    container:
      image: busybox:1.36
      command: ["true"]
      nodeSelector: {{pool: {pool}}}
      tolerations:
        - {{key: dedicated, operator: Exists, effect: NoSchedule}}
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{{name: ctr, dtype: float32}}]
  retries: {{backoffLimit: 0}}
"#
    );
    apply_yaml(&client, ns.name(), &yaml).await;
    let pipelines: Api<FeaturePipeline> = ns.api();
    let requested = "2026-11-25T10:05:00Z";
    let patch = json!({"metadata": {"annotations": {"mlctl.io/run": requested}}});
    pipelines
        .patch("restricted", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let jobs = wait_for_list(
        &ns.api::<Job>(),
        watcher::Config::default().labels("mlctl.io/pipeline=restricted,mlctl.io/trigger=manual"),
        |jobs: &[Job]| jobs.len() == 1,
        LONG,
    )
    .await;
    let job = jobs[0].name_any();
    // A pod the restricted level rejects never exists: the Job controller
    // records a FailedCreate Event instead. So the pod itself is the proof.
    let pods = scheduled_pods(&ns, &format!("job-name={job}"), 1).await;
    assert_eq!(node_of(&pods[0]), node.name);
    let pod_spec = pods[0].spec.as_ref().unwrap();
    let pod_context = pod_spec.security_context.as_ref().unwrap();
    assert_eq!(pod_context.run_as_non_root, Some(true));
    assert_eq!(pod_context.run_as_user, None, "no user id is forced");

    // The run finishes (kwok completes Job pods) and the pipeline records it.
    wait_for(
        &pipelines,
        "restricted",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.phase == "Succeeded")
        },
        LONG,
    )
    .await;
    let events = ns
        .api::<Event>()
        .list(&ListParams::default().fields(&format!("involvedObject.name={job}")))
        .await
        .unwrap();
    let failed: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        failed.is_empty(),
        "the Job could not create pods: {failed:?}"
    );

    ns.finish().await;
    node.delete().await;
}
