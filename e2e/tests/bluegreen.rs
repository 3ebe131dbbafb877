//! Blue-green rollouts against the real local control plane (kwok pods):
//! the preview at full size behind `<model>-preview` with no user traffic,
//! pre- and post-promotion analysis over a web metric the test serves on
//! 127.0.0.1, manual promotion by the `mlctl.io/promote` request, the switch
//! of `<model>` (replica ratio) and of a Gateway API HTTPRoute's weights, a
//! failed post-promotion analysis switching back, and an operator killed
//! after the switch resuming without repeating anything.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::operator::{setup, start_operator};
use mlctl_e2e::web::ValueServer;
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, require_e2e, wait_for, wait_for_deletion,
    wait_for_events,
};

const LONG: Duration = Duration::from_secs(120);

/// A two-replica blue-green model; `blue_green` and `extra` are YAML under
/// `rollout:` (indented four spaces). Metric `ndcg` reads the test server.
fn model(version: &str, url: &str, blue_green: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: "{version}"
    uri: s3://models/ranker/{version}/model.onnx
    format: onnx
  runtime:
    image: ghcr.io/mlctl/onnx-runtime:0.1.0
  replicas: 2
  rollout:
    scaleDownDelaySeconds: 3
    abortScaleDownDelaySeconds: 3
    blueGreen:
{blue_green}
    analysis:
      templates:
        - name: ndcg
          provider:
            web: {{url: "{url}", jsonPath: $.value, timeout: 2s}}
          interval: 1s
          count: 2
          successCondition: "result >= 0.4"
{extra}"#
    )
}

/// Metric `ndcg-late`: as `ndcg`, after a 10 s initial delay, so that the
/// state right after a switch lasts long enough to be looked at.
fn late_metric(url: &str) -> String {
    format!(
        r#"        - name: ndcg-late
          provider:
            web: {{url: "{url}", jsonPath: $.value, timeout: 2s}}
          initialDelay: 10s
          interval: 1s
          count: 2
          successCondition: "result >= 0.4"
"#
    )
}

fn status(m: Option<&RankingModel>) -> Option<&mlctl_crds::RankingModelStatus> {
    m.and_then(|m| m.status.as_ref())
}

fn stable_is(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        status(m).is_some_and(|s| {
            s.stable.as_ref().is_some_and(|st| st.version == version)
                && s.canary.is_none()
                && s.phase == Some(Phase::Healthy)
        })
    }
}

/// Traffic has switched to the new revision.
fn switched(m: Option<&RankingModel>) -> bool {
    status(m)
        .and_then(|s| s.canary.as_ref())
        .is_some_and(|c| c.switched_at.is_some())
}

async fn set_version(models: &Api<RankingModel>, version: &str) {
    let patch = serde_json::json!({"spec": {"model": {
        "version": version,
        "uri": format!("s3://models/ranker/{version}/model.onnx"),
    }}});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn annotate(models: &Api<RankingModel>, key: &str, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits until Service `name` selects the pods of `revision`.
async fn wait_selects(ns: &TestNamespace, name: &str, revision: &str) {
    let services: Api<Service> = ns.api();
    let revision = revision.to_string();
    wait_for(
        &services,
        name,
        move |s: Option<&Service>| {
            s.and_then(|s| s.spec.as_ref())
                .and_then(|s| s.selector.as_ref())
                .and_then(|sel: &BTreeMap<String, String>| sel.get("mlctl.io/revision"))
                == Some(&revision)
        },
        LONG,
    )
    .await;
}

async fn selector_revision(ns: &TestNamespace, name: &str) -> Option<String> {
    let services: Api<Service> = ns.api();
    services
        .get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("mlctl.io/revision").cloned())
}

async fn replicas(ns: &TestNamespace, revision: &str) -> Option<i32> {
    let deployments: Api<Deployment> = ns.api();
    deployments
        .get_opt(&format!("ranker-{revision}"))
        .await
        .unwrap()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
}

/// The event messages of `reason` in the namespace.
/// Waits for an Event `reason` whose message contains `text` (Events are
/// queued after the status write they follow).
async fn wait_event(ns: &TestNamespace, reason: &str, text: &str) {
    let has = |l: &[Event]| {
        l.iter()
            .any(|e| e.message.as_deref().is_some_and(|m| m.contains(text)))
    };
    wait_for_events(&ns.api(), reason, has, DEFAULT_TIMEOUT).await;
}

#[tokio::test]
async fn a_preview_is_analysed_promoted_by_request_and_switched_at_once() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("bluegreen-manual").await;
    let server = ValueServer::start(0.5).await;
    let blue_green = "      autoPromotionEnabled: false\n      prePromotionAnalysis: {metrics: [ndcg]}\n      postPromotionAnalysis: {metrics: [ndcg-late]}";
    apply_yaml(
        ns.client(),
        ns.name(),
        &model("v1", &server.url, blue_green, &late_metric(&server.url)),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    let m = wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    let v1 = m.status.unwrap().stable.unwrap().revision;
    // No rollout: the preview Service points at the stable revision.
    wait_selects(&ns, "ranker-preview", &v1).await;

    // v2: a full-size preview without user traffic, analysed, then paused.
    set_version(&models, "v2").await;
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            status(m).is_some_and(|s| {
                s.phase == Some(Phase::Paused)
                    && s.canary.as_ref().and_then(|c| c.pause_reason.as_deref())
                        == Some("PreviewReady")
            })
        },
        LONG,
    )
    .await;
    let s = m.status.unwrap();
    let c = s.canary.clone().unwrap();
    let v2 = c.revision.clone();
    assert_eq!(c.strategy.as_deref(), Some("BlueGreen"));
    assert!(c.preview_ready_at.is_some() && c.switched_at.is_none());
    assert_eq!(c.weight, 0);
    assert_eq!(
        s.message.as_deref(),
        Some("preview of v2 ready at full size behind ranker-preview; waiting for mlctl promote")
    );
    let pre = s
        .analysis
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.stage.as_deref() == Some("PrePromotion"))
        .cloned()
        .unwrap();
    assert_eq!(
        (pre.name.as_str(), pre.phase.as_str()),
        ("ndcg", "Successful")
    );
    assert_eq!(pre.step, None);
    assert!(server.hits() >= 2, "measured twice");
    assert_eq!(
        replicas(&ns, &v2).await,
        Some(2),
        "the preview is full size"
    );
    assert_eq!(selector_revision(&ns, "ranker").await, Some(v1.clone()));
    assert_eq!(
        selector_revision(&ns, "ranker-preview").await,
        Some(v2.clone())
    );
    wait_event(&ns, "StepCompleted", "prePromotionAnalysis (ndcg) passed").await;

    // Promote: all traffic switches at once; v1 stays at full size while
    // the post-promotion analysis runs.
    annotate(&models, "mlctl.io/promote", "t1").await;
    let m = wait_for(&models, "ranker", switched, LONG).await;
    let switched = m.status.unwrap();
    assert_eq!(switched.stable.as_ref().unwrap().version, "v1");
    assert_eq!(switched.canary.as_ref().unwrap().weight, 100);
    // Services are written before the status that reports the switch; the
    // post-promotion analysis holds this state for its initial delay.
    assert_eq!(selector_revision(&ns, "ranker").await, Some(v2.clone()));
    assert_eq!(
        selector_revision(&ns, "ranker-stable").await,
        Some(v1.clone())
    );
    assert_eq!(replicas(&ns, &v1).await, Some(2), "v1 kept at full size");

    let m = wait_for(&models, "ranker", stable_is("v2"), LONG).await;
    let s = m.status.unwrap();
    assert_eq!(s.history[0].outcome, "Promoted");
    assert_eq!(s.history[0].version, "v2");
    let post = s
        .analysis
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.stage.as_deref() == Some("PostPromotion"))
        .cloned()
        .unwrap();
    assert_eq!(post.phase, "Successful");
    wait_event(&ns, "TrafficSwitched", "v1 kept at full size").await;
    wait_event(
        &ns,
        "StepCompleted",
        "postPromotionAnalysis (ndcg-late) passed",
    )
    .await;
    wait_selects(&ns, "ranker-preview", &v2).await;
    // The previous revision goes after scaleDownDelaySeconds.
    let deployments: Api<Deployment> = ns.api();
    wait_for_deletion(&deployments, &format!("ranker-{v1}"), LONG).await;

    // Blue-green removed: the preview Service goes.
    let patch = serde_json::json!({"spec": {"rollout": {"blueGreen": null}}});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let services: Api<Service> = ns.api();
    wait_for_deletion(&services, "ranker-preview", LONG).await;
    drop(server);
    ns.finish().await;
}

#[tokio::test]
async fn a_gateway_route_switches_at_once_and_back_on_a_failed_post_promotion_analysis() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("bluegreen-gateway").await;
    // Below the success condition: the post-promotion analysis fails, after
    // its initial delay (time to see the switch).
    let server = ValueServer::start(0.1).await;
    let applied = apply_yaml(
        ns.client(),
        ns.name(),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ranker
spec:
  parentRefs:
    - name: search-gateway
  rules:
    - matches:
        - path: {type: PathPrefix, value: /rank}
      backendRefs:
        - name: ranker-stable
          port: 80
"#,
    )
    .await;
    let routes: Api<DynamicObject> =
        mlctl_e2e::dynamic_api(ns.client(), &applied[0], ns.name()).await;
    let blue_green = "      postPromotionAnalysis: {metrics: [ndcg-late]}";
    let extra = format!(
        "{}    trafficRouting:\n      gatewayAPI:\n        httpRoute: ranker\n",
        late_metric(&server.url)
    );
    apply_yaml(
        ns.client(),
        ns.name(),
        &model("v1", &server.url, blue_green, &extra),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    let m = wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    let v1 = m.status.unwrap().stable.unwrap().revision;
    let weights = |route: &DynamicObject| -> Vec<(String, i64)> {
        route.data["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect()
    };
    let expect = |stable: i64, canary: i64| {
        vec![
            ("ranker-stable".to_string(), stable),
            ("ranker-canary".to_string(), canary),
        ]
    };
    // Weights are written before the status that says stable.
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(weights(&r), expect(100, 0));

    // v2 is promoted automatically once its preview is Available: weight
    // 100 at once, never a share in between.
    set_version(&models, "v2").await;
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            status(m)
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.switched_at.is_some() && c.aborted_at.is_none())
        },
        LONG,
    )
    .await;
    let c = m.status.unwrap().canary.unwrap();
    assert_eq!(c.weight, 100);
    assert!(c.preview_ready_at.is_some());
    // The route is written before the status that reports the switch.
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(weights(&r), expect(0, 100));
    assert_eq!(
        selector_revision(&ns, "ranker-canary").await,
        Some(c.revision.clone())
    );
    assert_eq!(replicas(&ns, &v1).await, Some(2), "v1 kept at full size");

    // The post-promotion analysis fails: all traffic back on v1 at once.
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            status(m).is_some_and(|s| {
                s.phase == Some(Phase::Degraded)
                    && s.canary.as_ref().is_some_and(|c| c.aborted_at.is_some())
            })
        },
        LONG,
    )
    .await;
    let s = m.status.unwrap();
    let why = s.canary.as_ref().unwrap().abort_reason.clone().unwrap();
    assert!(
        why.contains("postPromotionAnalysis") && why.contains("switched back"),
        "{why}"
    );
    assert_eq!(s.stable.as_ref().unwrap().revision, v1);
    assert_eq!(s.history[0].outcome, "Aborted");
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(weights(&r), expect(100, 0));
    wait_selects(&ns, "ranker", &v1).await;
    wait_event(&ns, "AnalysisFailed", "").await;
    drop(server);
    ns.finish().await;
}

#[tokio::test]
async fn a_killed_operator_resumes_a_switched_rollout_without_repeating_it() {
    require_e2e!();
    let (_client, mut ns, mut operator, kubeconfig) = setup("bluegreen-crash").await;
    let server = ValueServer::start(0.5).await;
    let blue_green = "      prePromotionAnalysis: {metrics: [ndcg]}\n      postPromotionAnalysis: {metrics: [ndcg-late]}";
    apply_yaml(
        ns.client(),
        ns.name(),
        &model("v1", &server.url, blue_green, &late_metric(&server.url)),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    set_version(&models, "v2").await;
    // Killed after the automatic switch, while the post-promotion analysis
    // waits out its initial delay.
    let before = wait_for(&models, "ranker", switched, LONG).await;
    // Events follow the status write: the killed process has published
    // the switch before it dies.
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    mlctl_e2e::wait_for_list(
        &events,
        kube::runtime::watcher::Config::default(),
        |list: &[k8s_openapi::api::events::v1::Event]| {
            list.iter()
                .any(|e| e.reason.as_deref() == Some("TrafficSwitched"))
        },
        LONG,
    )
    .await;
    operator.kill();
    let c = before.status.unwrap().canary.unwrap();
    assert_eq!(c.weight, 100);

    let restarted = start_operator(&ns, &kubeconfig, "b");
    ns.dump_log_on_failure(restarted.log.clone());
    let m = wait_for(&models, "ranker", stable_is("v2"), LONG).await;
    let s = m.status.unwrap();
    assert_eq!(s.history[0].outcome, "Promoted");
    // The new process finished what was left: the post-promotion analysis
    // and the promotion, not the pre-promotion analysis or the switch.
    let want = |m: &str| {
        m.contains("mlctl_rollout_step_duration_seconds_count{step=\"postPromotionAnalysis\"} 1")
            && m.contains("mlctl_rollout_outcomes_total{outcome=\"promoted\"} 1")
    };
    let metrics = restarted.wait_for_metrics(want, LONG).await;
    assert!(want(&metrics), "{metrics}");
    assert!(
        !metrics.contains("step=\"prePromotionAnalysis\""),
        "the pre-promotion analysis was repeated: {metrics}"
    );
    let switched = wait_for_events(
        &ns.api(),
        "TrafficSwitched",
        |l| !l.is_empty(),
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(switched.len(), 1, "{switched:?}");
    assert!(
        switched[0].series.is_none() && switched[0].count.unwrap_or(1) == 1,
        "switched twice: {switched:?}"
    );
    drop(restarted);
    drop(server);
    ns.finish().await;
}
