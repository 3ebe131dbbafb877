//! The features gate against the real local control plane: a RankingModel
//! whose FeaturePipeline is stale or on another schema does not start (or
//! continue) a canary, and resumes by itself when the pipeline is fine again.
//!
//! Most tests play the pipeline controller: they write the FeaturePipeline's
//! status (watermark, schema, Fresh) through the status subresource. The
//! pipeline has a schedule that never comes due in the test and
//! `spec.freshness` consistent with the written watermark, so the operator's
//! own pipeline controller (which keeps the previous watermark and derives
//! Fresh from it) agrees with what the test writes. One test takes the
//! whole real path instead: a run of the pipeline completes, and its reported
//! watermark releases the held canary.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gate_support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use mlctl_crds::{FeaturePipeline, RankingModel};
use mlctl_e2e::{TestNamespace, apply_yaml, require_e2e, set_version, wait_for, wait_for_list};

use gate_support::{LONG, pipeline_yaml, setup};

/// A model with a two-step canary reading `ctr` from `pipeline`.
fn model_yaml(name: &str, version: &str, pipeline: &str, schema: i64, gate: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model:
    version: "{version}"
    uri: s3://models/{name}/{version}/model.txt
    format: lightgbm
  runtime:
    image: ghcr.io/mlctl/lightgbm-runtime:0.1.0
    port: 8080
  replicas: 1
  features:
  - pipeline: {pipeline}
    schemaVersion: {schema}
    features: [ctr]
    gate: {gate}
  rollout:
    steps:
    - setWeight: 50
    - pause: {{}}
"#
    )
}

/// Writes the pipeline's status as its controller would: fresh (watermark
/// now) or stale (watermark 3h ago, over the 1h objective).
async fn set_freshness(pipelines: &Api<FeaturePipeline>, name: &str, fresh: bool) {
    let now = Timestamp::now();
    let watermark = if fresh {
        now
    } else {
        now.checked_sub(SignedDuration::from_hours(3)).unwrap()
    };
    let (status, reason) = if fresh {
        ("True", "WithinObjective")
    } else {
        ("False", "Stale")
    };
    let patch = serde_json::json!({"status": {
        "watermark": watermark.to_string(),
        "lastSuccessfulTime": watermark.to_string(),
        "schema": {"version": 1, "hash": "e2e"},
        "conditions": [{"type": "Fresh", "status": status, "reason": reason,
            "message": "written by the e2e test", "lastTransitionTime": now.to_string()}]
    }});
    pipelines
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch status of {name}: {e}"));
}

fn features_ready(m: &RankingModel) -> Option<(String, String)> {
    let c = m.status.as_ref()?.conditions.get("FeaturesReady")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn stable_is(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        m.and_then(|m| m.status.as_ref())
            .and_then(|s| s.stable.as_ref())
            .is_some_and(|s| s.version == version)
    }
}

/// The canary of `version` is held at weight 0 for the features.
fn held_for_features(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        m.and_then(|m| m.status.as_ref())
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| {
                c.version == version
                    && c.weight == 0
                    && c.pause_reason.as_deref() == Some("FeaturesNotReady")
            })
    }
}

async fn deployments_of(ns: &TestNamespace, model: &str, version: &str) -> usize {
    let deployments: Api<Deployment> = ns.api();
    deployments
        .list(&ListParams::default().labels(&format!(
            "mlctl.io/model={model},mlctl.io/version={version}"
        )))
        .await
        .unwrap()
        .items
        .len()
}

/// Everything a test needs: an operator, the pipeline `clicks` (fresh or
/// stale) and the model `ranker` 1.0.0 depending on it.
struct Setup {
    ns: TestNamespace,
    pipelines: Api<FeaturePipeline>,
    models: Api<RankingModel>,
    _operator: gate_support::Operator,
}

async fn start(prefix: &str, fresh: bool, schema: i64, gate: &str) -> Setup {
    let (client, ns, operator) = setup(prefix).await;
    let pipelines: Api<FeaturePipeline> = ns.api();
    apply_yaml(&client, ns.name(), &pipeline_yaml("clicks", false)).await;
    set_freshness(&pipelines, "clicks", fresh).await;
    let model = model_yaml("ranker", "1.0.0", "clicks", schema, gate);
    apply_yaml(&client, ns.name(), &model).await;
    Setup {
        models: ns.api(),
        ns,
        pipelines,
        _operator: operator,
    }
}

/// Waits until `FeaturesReady` has this status and reason.
async fn wait_features(models: &Api<RankingModel>, status: &str, reason: &str) -> RankingModel {
    let want = Some((status.to_string(), reason.to_string()));
    wait_for(
        models,
        "ranker",
        move |m: Option<&RankingModel>| m.and_then(features_ready) == want,
        LONG,
    )
    .await
}

#[tokio::test]
async fn a_stale_pipeline_holds_a_new_version_until_it_is_fresh_again() {
    require_e2e!();
    let s = start("gate-fresh", true, 1, "Rollouts").await;
    wait_for(&s.models, "ranker", stable_is("1.0.0"), LONG).await;
    wait_features(&s.models, "True", "FeaturesReady").await;

    // Stale: the pipeline change alone (no touch of the model) flips the condition.
    set_freshness(&s.pipelines, "clicks", false).await;
    wait_features(&s.models, "False", "PipelineNotFresh").await;

    set_version(&s.models, "ranker", "2.0.0").await;
    let m = wait_for(&s.models, "ranker", held_for_features("2.0.0"), LONG).await;
    let status = m.status.clone().unwrap();
    assert_eq!(status.stable.as_ref().unwrap().version, "1.0.0");
    assert_eq!(
        status.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Progressing")
    );
    let message = &status.conditions.get("FeaturesReady").unwrap().message;
    assert!(message.contains("clicks"), "{message}");
    assert_eq!(
        deployments_of(&s.ns, "ranker", "2.0.0").await,
        0,
        "no canary Deployment while held"
    );
    let events: Api<Event> = s.ns.api();
    wait_for_list(
        &events,
        kube::runtime::watcher::Config::default(),
        |events: &[Event]| {
            events.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref().is_some_and(|m| m.contains("clicks"))
                    && e.involved_object.name.as_deref() == Some("ranker")
            })
        },
        LONG,
    )
    .await;

    // Fresh again: the canary starts by itself.
    set_freshness(&s.pipelines, "clicks", true).await;
    wait_for(
        &s.models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| {
                    c.version == "2.0.0"
                        && c.weight > 0
                        && c.pause_reason.as_deref() != Some("FeaturesNotReady")
                })
        },
        LONG,
    )
    .await;
    assert_eq!(deployments_of(&s.ns, "ranker", "2.0.0").await, 1);
    s.ns.finish().await;
}

#[tokio::test]
async fn a_schema_mismatch_blocks_rollouts_but_not_the_first_deployment() {
    require_e2e!();
    // Trained on schema 2; the pipeline writes 1. gate: Rollouts lets the
    // first deployment through.
    let s = start("gate-schema", true, 2, "Rollouts").await;
    wait_for(&s.models, "ranker", stable_is("1.0.0"), LONG).await;
    wait_features(&s.models, "False", "SchemaVersionMismatch").await;

    set_version(&s.models, "ranker", "2.0.0").await;
    wait_for(&s.models, "ranker", held_for_features("2.0.0"), LONG).await;
    assert_eq!(deployments_of(&s.ns, "ranker", "2.0.0").await, 0);
    s.ns.finish().await;
}

#[tokio::test]
async fn strict_blocks_the_first_deployment_until_the_features_are_fresh() {
    require_e2e!();
    let s = start("gate-strict", false, 1, "Strict").await;
    let m = wait_features(&s.models, "False", "PipelineNotFresh").await;
    assert!(
        !stable_is("1.0.0")(Some(&m)),
        "no stable while Strict blocks"
    );
    assert_eq!(deployments_of(&s.ns, "ranker", "1.0.0").await, 0);

    set_freshness(&s.pipelines, "clicks", true).await;
    wait_for(&s.models, "ranker", stable_is("1.0.0"), LONG).await;
    s.ns.finish().await;
}

/// The real path, nothing written by the test: a pipeline that never ran
/// holds the canary; a run of it completes (its pod reports the watermark in
/// its termination message), the pipeline controller records the watermark
/// and Fresh, and the held canary starts by itself.
#[tokio::test]
async fn a_completed_pipeline_run_releases_the_held_canary() {
    require_e2e!();
    let (client, ns, _operator) = setup("gate-run").await;
    let watermark = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let pipeline = format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: clicks
spec:
  trigger:
    schedule: {{cron: "0 0 1 1 *"}}
  engine:
    container:
      image: busybox:1.36
      podMetadata:
        annotations:
          mlctl.io/e2e-termination-message: '{{"watermark":"{watermark}","rowsRead":10,"rowsWritten":10}}'
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{{name: ctr, dtype: float32}}]
  freshness: {{maxStaleness: 1h}}
  retries: {{backoffLimit: 0}}
"#
    );
    apply_yaml(&client, ns.name(), &pipeline).await;
    apply_yaml(
        &client,
        ns.name(),
        &model_yaml("ranker", "1.0.0", "clicks", 1, "Rollouts"),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    // gate: Rollouts lets the first deployment through, not the next version.
    wait_for(&models, "ranker", stable_is("1.0.0"), LONG).await;
    set_version(&models, "ranker", "2.0.0").await;
    wait_for(&models, "ranker", held_for_features("2.0.0"), LONG).await;
    assert_eq!(deployments_of(&ns, "ranker", "2.0.0").await, 0);

    let pipelines: Api<FeaturePipeline> = ns.api();
    let patch = serde_json::json!({"metadata": {"annotations": {"mlctl.io/run": Timestamp::now().to_string()}}});
    pipelines
        .patch("clicks", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let p = wait_for(
        &pipelines,
        "clicks",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.conditions.is_true("Fresh") && s.last_successful_time.is_some())
        },
        LONG,
    )
    .await;
    assert_eq!(
        p.status.unwrap().watermark.map(|w| w.0),
        Some(watermark),
        "the watermark is the one the run reported"
    );
    wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| {
                    c.version == "2.0.0"
                        && c.weight > 0
                        && c.pause_reason.as_deref() != Some("FeaturesNotReady")
                })
        },
        LONG,
    )
    .await;
    assert_eq!(deployments_of(&ns, "ranker", "2.0.0").await, 1);
    ns.finish().await;
}

/// A model depending on a streaming pipeline rolls out: the stream never
/// finishes a run (no watermark, no last success of its own), and its
/// features count as current while it runs.
#[tokio::test]
async fn a_model_on_a_streaming_pipeline_rolls_out_while_the_stream_runs() {
    require_e2e!();
    let (client, ns, _operator) = setup("gate-stream").await;
    let pipeline = r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: clicks
spec:
  trigger:
    streaming: {replicas: 1}
  engine:
    container: {image: busybox:1.36}
  sources:
    - name: clicks
      kafka: {bootstrapServers: "kafka:9092", topic: clicks}
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{name: ctr, dtype: float32}]
  freshness: {maxStaleness: 1h}
"#;
    apply_yaml(&client, ns.name(), pipeline).await;
    // Strict: not even the first deployment without fresh features.
    apply_yaml(
        &client,
        ns.name(),
        &model_yaml("ranker", "1.0.0", "clicks", 1, "Strict"),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("1.0.0"), LONG).await;
    set_version(&models, "ranker", "2.0.0").await;
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.version == "2.0.0" && c.weight > 0)
        },
        LONG,
    )
    .await;
    assert_eq!(
        features_ready(&m).map(|(s, _)| s).as_deref(),
        Some("True"),
        "{:?}",
        m.status.as_ref().map(|s| &s.conditions)
    );
    ns.finish().await;
}
