//! Canary rollouts against the real local control plane, with the real
//! Prometheus (`e2e/cluster up --with-prometheus`) scraping a metrics endpoint
//! each test controls: steps, weights, analysis verdicts, requests by
//! `kubectl annotate`, aborts, crash recovery and Gateway API weights.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::metrics::{MetricsEndpoint, prometheus_url};
use mlctl_e2e::operator::{setup, start_operator};
use mlctl_e2e::{TestNamespace, apply_yaml, kubectl, require_e2e, wait_for, wait_for_list};

const LONG: Duration = Duration::from_secs(120);

/// A RankingModel manifest with `rollout` (YAML, indented under `rollout:`).
fn model(name: &str, version: &str, extra_runtime: &str, rollout: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model:
    version: "{version}"
    uri: s3://models/{name}/{version}/model.onnx
    format: onnx
  runtime:
    image: ghcr.io/mlctl/onnx-runtime:0.1.0
{extra_runtime}  replicas: 2
  rollout:
{rollout}"#
    )
}

/// A background metric and a template over the test's endpoint.
fn analysis(endpoint: &MetricsEndpoint, interval: &str, extra: &str) -> String {
    let prom = prometheus_url().expect("MLCTL_E2E_PROMETHEUS_URL: run with --with-prometheus");
    format!(
        r#"    analysis:
      metrics:
        - name: error-rate
          provider:
            prometheus:
              address: {prom}
              query: 'e2e_error_rate{{e2e_test="{id}", version="{{{{version}}}}"}}'
          interval: {interval}
          successCondition: "result < 0.05"
{extra}      templates:
        - name: ndcg
          provider:
            prometheus:
              address: {prom}
              query: 'e2e_ndcg{{e2e_test="{id}", version="{{{{version}}}}"}}'
          interval: {interval}
          count: 2
          successCondition: "result >= 0.4"
"#,
        id = endpoint.id,
    )
}

async fn set_version(
    api: &Api<RankingModel>,
    name: &str,
    version: &str,
    runtime_patch: serde_json::Value,
) {
    let mut patch = serde_json::json!({
        "spec": {"model": {"version": version, "uri": format!("s3://models/{name}/{version}/model.onnx")}}
    });
    if !runtime_patch.is_null() {
        patch["spec"]["runtime"] = runtime_patch;
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn status_of(m: Option<&RankingModel>) -> Option<&mlctl_crds::RankingModelStatus> {
    m.and_then(|m| m.status.as_ref())
}

fn stable_is(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        status_of(m).is_some_and(|s| {
            s.stable.as_ref().is_some_and(|st| st.version == version)
                && s.canary.is_none()
                && s.phase == Some(Phase::Healthy)
        })
    }
}

fn canary_at(step: i32, weight: i32) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        status_of(m)
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.step_index == step && c.weight == weight)
    }
}

fn paused(reason: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        status_of(m).is_some_and(|s| {
            s.phase == Some(Phase::Paused)
                && s.canary.as_ref().and_then(|c| c.pause_reason.as_deref()) == Some(reason)
        })
    }
}

fn aborted() -> impl Fn(Option<&RankingModel>) -> bool {
    |m| {
        status_of(m).is_some_and(|s| {
            s.phase == Some(Phase::Degraded)
                && s.canary.as_ref().is_some_and(|c| c.aborted_at.is_some())
        })
    }
}

fn annotate(ns: &str, name: &str, key: &str, value: &str) {
    let out = Command::new(kubectl())
        .args([
            "-n",
            ns,
            "annotate",
            "--overwrite",
            &format!("rankingmodel/{name}"),
        ])
        .arg(format!("{key}={value}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl annotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Events of `reason` in the namespace, once there is at least one
/// (Events are published right after the status write that a test waits for).
async fn events(ns: &TestNamespace, reason: &str) -> Vec<Event> {
    let api: Api<Event> = ns.api();
    let reason = reason.to_string();
    let matching = |list: &[Event]| -> Vec<Event> {
        list.iter()
            .filter(|e| e.reason.as_deref() == Some(reason.as_str()))
            .cloned()
            .collect()
    };
    let list = wait_for_list(
        &api,
        kube::runtime::watcher::Config::default(),
        |list: &[Event]| !matching(list).is_empty(),
        LONG,
    )
    .await;
    matching(&list)
}

async fn service_selector(
    ns: &TestNamespace,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let api: Api<Service> = ns.api();
    api.get(name).await.unwrap().spec.unwrap().selector.unwrap()
}

/// The model reaches Healthy on v1 with the test's metrics good for v1 and v2.
async fn healthy_model(ns: &TestNamespace, yaml: &str, name: &str) -> Api<RankingModel> {
    apply_yaml(ns.client(), ns.name(), yaml).await;
    let api: Api<RankingModel> = ns.api();
    wait_for(&api, name, stable_is("v1"), LONG).await;
    api
}

#[tokio::test]
async fn a_canary_walks_its_steps_with_analysis_to_stable() {
    require_e2e!();
    let (_client, ns, operator, _) = setup("canary-happy").await;
    let endpoint = MetricsEndpoint::start(ns.name()).await;
    endpoint.set("e2e_error_rate", "v2", 0.01);
    endpoint.set("e2e_ndcg", "v2", 0.45);
    endpoint
        .wait_for_value(
            &format!("e2e_ndcg{{e2e_test=\"{}\",version=\"v2\"}}", endpoint.id),
            0.45,
            LONG,
        )
        .await;
    let rollout = format!(
        "    steps:\n      - setWeight: 50\n      - analysis: {{metrics: [ndcg]}}\n      - pause: {{duration: 2s}}\n{}",
        analysis(&endpoint, "2s", "")
    );
    let api = healthy_model(&ns, &model("ranker", "v1", "", &rollout), "ranker").await;

    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    // 50%: one canary pod next to two stable ones... by replica ratio the
    // canary gets stable×50/50 = 2 pods, and <model> selects both revisions.
    let m = wait_for(&api, "ranker", canary_at(1, 50), LONG).await;
    let canary_rev = m
        .status
        .as_ref()
        .unwrap()
        .canary
        .as_ref()
        .unwrap()
        .revision
        .clone();
    let selector = service_selector(&ns, "ranker").await;
    assert_eq!(
        selector.len(),
        1,
        "<model> selects every serving revision: {selector:?}"
    );
    let deployments: Api<Deployment> = ns.api();
    let canary = deployments
        .get(&format!("ranker-{canary_rev}"))
        .await
        .unwrap();
    assert_eq!(canary.spec.unwrap().replicas, Some(2));

    let m = wait_for(&api, "ranker", stable_is("v2"), LONG).await;
    let s = m.status.unwrap();
    let metrics = &s.analysis.as_ref().unwrap().metrics;
    let ndcg = metrics.iter().find(|m| m.name == "ndcg").unwrap();
    assert_eq!(ndcg.phase, "Successful", "{ndcg:?}");
    assert_eq!(ndcg.successful, 2);
    assert_eq!(
        ndcg.measurements.last().unwrap().value.as_deref(),
        Some("0.45")
    );
    let background = metrics
        .iter()
        .find(|m| m.name == "error-rate" && m.step.is_none())
        .unwrap();
    assert!(background.successful >= 1, "{background:?}");
    assert_eq!(s.history[0].outcome, "Promoted");
    assert_eq!(s.history[0].version, "v2");
    // Traffic is on v2 alone again.
    let selector = service_selector(&ns, "ranker").await;
    assert_eq!(selector.get("mlctl.io/revision"), Some(&canary_rev));
    events(&ns, "StepCompleted").await;
    let metrics = operator
        .wait_for_metrics(
            |m| m.contains("mlctl_rollout_outcomes_total{outcome=\"promoted\"}"),
            LONG,
        )
        .await;
    assert!(
        metrics.contains("mlctl_rollout_outcomes_total{outcome=\"promoted\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_analysis_measurements_total{outcome=\"Successful\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_rollout_step_duration_seconds_count{step=\"analysis\"} 1"),
        "{metrics}"
    );
    ns.finish().await;
}

#[tokio::test]
async fn an_indefinite_pause_waits_for_kubectl_annotate_and_promote_full_skips_the_rest() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("canary-pause").await;
    let rollout = "    steps:\n      - setWeight: 25\n      - pause: {}\n      - setWeight: 50\n      - pause: {}\n      - pause: {duration: 1h}\n";
    let api = healthy_model(&ns, &model("ranker", "v1", "", rollout), "ranker").await;

    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    let m = wait_for(&api, "ranker", paused("PauseStep"), LONG).await;
    assert_eq!(
        m.status.as_ref().unwrap().canary.as_ref().unwrap().weight,
        25
    );
    events(&ns, "Paused").await;

    annotate(
        ns.name(),
        "ranker",
        "mlctl.io/promote",
        "2026-11-25T10:00:00Z",
    );
    let m = wait_for(
        &api,
        "ranker",
        |m: Option<&RankingModel>| paused("PauseStep")(m) && canary_at(3, 50)(m),
        LONG,
    )
    .await;
    assert_eq!(
        m.status
            .unwrap()
            .handled_requests
            .get("mlctl.io/promote")
            .map(String::as_str),
        Some("2026-11-25T10:00:00Z"),
        "the request is recorded as handled"
    );

    // promote-full skips the second pause and the one-hour pause.
    annotate(
        ns.name(),
        "ranker",
        "mlctl.io/promote-full",
        "2026-11-25T10:01:00Z",
    );
    let m = wait_for(&api, "ranker", stable_is("v2"), LONG).await;
    assert_eq!(m.status.unwrap().history[0].outcome, "Promoted");
    ns.finish().await;
}

#[tokio::test]
async fn a_failing_analysis_rolls_back_by_itself_and_says_why() {
    require_e2e!();
    let (_client, ns, operator, _) = setup("canary-fail").await;
    let endpoint = MetricsEndpoint::start(ns.name()).await;
    endpoint.set("e2e_error_rate", "v2", 0.5);
    endpoint
        .wait_for_value(
            &format!(
                "e2e_error_rate{{e2e_test=\"{}\",version=\"v2\"}}",
                endpoint.id
            ),
            0.5,
            LONG,
        )
        .await;
    let rollout = format!(
        "    steps:\n      - setWeight: 50\n      - pause: {{}}\n{}",
        analysis(&endpoint, "3s", "          failureLimit: 1\n")
    );
    let api = healthy_model(&ns, &model("ranker", "v1", "", &rollout), "ranker").await;
    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;

    let m = wait_for(&api, "ranker", aborted(), LONG).await;
    let s = m.status.unwrap();
    let c = s.canary.as_ref().unwrap();
    let metric = s
        .analysis
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.name == "error-rate")
        .unwrap();
    assert_eq!(metric.phase, "Failed");
    assert_eq!(metric.failed, 2, "failureLimit 1 tolerates one failure");
    // Within interval × (failureLimit + 1) plus one reconcile of the first
    // measurement's start.
    let started = metric.started_at.as_ref().unwrap().0.as_second();
    let aborted_at = c.aborted_at.as_ref().unwrap().0.as_second();
    assert!(
        aborted_at - started <= 3 * 2 + 3,
        "aborted {}s after the analysis started",
        aborted_at - started
    );
    let reason = c.abort_reason.as_deref().unwrap();
    assert!(
        reason.contains("error-rate") && reason.contains("0.5") && reason.contains("result < 0.05"),
        "{reason}"
    );
    let cond = s.conditions.get("Progressing").unwrap();
    assert_eq!(cond.reason, "RolloutAborted");
    assert_eq!(s.history[0].outcome, "Aborted");
    let failed = events(&ns, "AnalysisFailed").await;
    assert_eq!(failed.len(), 1);
    assert!(failed[0].note.as_deref().unwrap().contains("result < 0.05"));
    // All traffic on v1.
    let selector = service_selector(&ns, "ranker").await;
    assert_eq!(
        selector.get("mlctl.io/revision"),
        Some(&s.stable.as_ref().unwrap().revision)
    );
    assert!(
        operator
            .wait_for_metrics(
                |m| m.contains("mlctl_rollout_outcomes_total{outcome=\"aborted\"} 1"),
                LONG
            )
            .await
            .contains("mlctl_rollout_outcomes_total{outcome=\"aborted\"} 1")
    );
    ns.finish().await;
}

#[tokio::test]
async fn no_data_is_inconclusive_and_pauses_for_a_person() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("canary-nodata").await;
    // The endpoint exists but never reports v2's NDCG.
    let endpoint = MetricsEndpoint::start(ns.name()).await;
    endpoint.set("e2e_error_rate", "v2", 0.0);
    let rollout = format!(
        "    steps:\n      - setWeight: 50\n      - analysis: {{metrics: [ndcg]}}\n{}",
        analysis(&endpoint, "2s", "")
    );
    let api = healthy_model(&ns, &model("ranker", "v1", "", &rollout), "ranker").await;
    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    let m = wait_for(&api, "ranker", paused("Inconclusive"), LONG).await;
    let s = m.status.unwrap();
    let ndcg = s
        .analysis
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.name == "ndcg")
        .unwrap();
    assert_eq!(ndcg.phase, "Inconclusive");
    assert_eq!(
        s.canary.as_ref().unwrap().weight,
        50,
        "traffic stays where it was"
    );
    events(&ns, "AnalysisInconclusive").await;
    ns.finish().await;
}

#[tokio::test]
async fn canary_pods_that_never_get_ready_abort_at_the_progress_deadline() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("canary-deadline").await;
    let rollout = "    steps:\n      - setWeight: 50\n      - pause: {}\n    progressDeadlineSeconds: 8\n    abortScaleDownDelaySeconds: 2\n";
    let api = healthy_model(&ns, &model("ranker", "v1", "", rollout), "ranker").await;
    // v2's pods carry the kwok label that keeps them unready.
    set_version(
        &api,
        "ranker",
        "v2",
        serde_json::json!({"podMetadata": {"labels": {"mlctl.io/e2e-unready": "true"}}}),
    )
    .await;
    let m = wait_for(&api, "ranker", aborted(), LONG).await;
    let s = m.status.unwrap();
    let reason = s.canary.as_ref().unwrap().abort_reason.clone().unwrap();
    assert!(reason.contains("progressDeadlineSeconds=8"), "{reason}");
    events(&ns, "ProgressDeadlineExceeded").await;
    // The canary's pods go after abortScaleDownDelaySeconds; v1 serves.
    let deployments: Api<Deployment> = ns.api();
    let stable = s.stable.as_ref().unwrap().revision.clone();
    wait_for_list(
        &deployments,
        kube::runtime::watcher::Config::default().labels("mlctl.io/model=ranker"),
        |list: &[Deployment]| list.len() == 1 && list[0].name_any() == format!("ranker-{stable}"),
        LONG,
    )
    .await;
    ns.finish().await;
}

#[tokio::test]
async fn a_killed_operator_resumes_the_canary_at_the_same_step() {
    require_e2e!();
    let (_client, mut ns, mut operator, kubeconfig) = setup("canary-crash").await;
    let rollout = "    steps:\n      - setWeight: 25\n      - pause: {duration: 6s}\n      - setWeight: 50\n      - pause: {}\n";
    let api = healthy_model(&ns, &model("ranker", "v1", "", rollout), "ranker").await;
    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    // Killed during the timed pause at 25%.
    let before = wait_for(&api, "ranker", canary_at(1, 25), LONG).await;
    operator.kill();
    let c = before.status.as_ref().unwrap().canary.clone().unwrap();

    let restarted = start_operator(&ns, &kubeconfig, "b");
    ns.dump_log_on_failure(restarted.log.clone());
    let m = wait_for(&api, "ranker", paused("PauseStep"), LONG).await;
    let s = m.status.unwrap();
    let after = s.canary.unwrap();
    assert_eq!((after.step_index, after.weight), (3, 50));
    assert_eq!(
        after.started_at, c.started_at,
        "the same canary, not a new one"
    );
    // No step was repeated: the restarted process completed exactly the
    // steps that were left (the pause and setWeight 50), not setWeight 25.
    let want = |m: &str| {
        m.contains("mlctl_rollout_step_duration_seconds_count{step=\"setWeight\"} 1")
            && m.contains("mlctl_rollout_step_duration_seconds_count{step=\"pause\"} 1")
    };
    let metrics = restarted.wait_for_metrics(want, LONG).await;
    assert!(want(&metrics), "{metrics}");
    drop(restarted);
    ns.finish().await;
}

#[tokio::test]
async fn gateway_api_weights_follow_the_steps() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("canary-gateway").await;
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
    let rollout = "    steps:\n      - setWeight: 20\n      - pause: {}\n      - setWeight: 60\n      - pause: {}\n    trafficRouting:\n      gatewayAPI:\n        httpRoute: ranker\n";
    let api = healthy_model(&ns, &model("ranker", "v1", "", rollout), "ranker").await;
    let routes = mlctl_e2e::dynamic_api(ns.client(), &applied[0], ns.name()).await;
    let weights = |route: &kube::api::DynamicObject| -> Vec<(String, i64)> {
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
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(
        weights(&r),
        vec![
            ("ranker-stable".to_string(), 100),
            ("ranker-canary".to_string(), 0)
        ]
    );

    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    wait_for(&api, "ranker", paused("PauseStep"), LONG).await;
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(
        weights(&r),
        vec![
            ("ranker-stable".to_string(), 80),
            ("ranker-canary".to_string(), 20)
        ]
    );
    // The Service <model> stays on stable: the route splits traffic.
    assert!(
        service_selector(&ns, "ranker")
            .await
            .contains_key("mlctl.io/revision")
    );

    annotate(ns.name(), "ranker", "mlctl.io/promote", "t1");
    wait_for(&api, "ranker", canary_at(3, 60), LONG).await;
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(weights(&r)[0], ("ranker-stable".to_string(), 40));

    annotate(ns.name(), "ranker", "mlctl.io/abort", "t2");
    wait_for(&api, "ranker", aborted(), LONG).await;
    let r = routes.get("ranker").await.unwrap();
    assert_eq!(
        weights(&r),
        vec![
            ("ranker-stable".to_string(), 100),
            ("ranker-canary".to_string(), 0)
        ]
    );
    ns.finish().await;
}

#[tokio::test]
async fn a_newer_version_supersedes_a_running_canary() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("canary-supersede").await;
    let rollout = "    steps:\n      - setWeight: 50\n      - pause: {}\n";
    let api = healthy_model(&ns, &model("ranker", "v1", "", rollout), "ranker").await;
    set_version(&api, "ranker", "v2", serde_json::Value::Null).await;
    let m = wait_for(&api, "ranker", paused("PauseStep"), LONG).await;
    let v2_rev = m.status.unwrap().canary.unwrap().revision;

    set_version(&api, "ranker", "v3", serde_json::Value::Null).await;
    let m = wait_for(
        &api,
        "ranker",
        |m: Option<&RankingModel>| {
            paused("PauseStep")(m)
                && status_of(m)
                    .and_then(|s| s.canary.as_ref())
                    .is_some_and(|c| c.version == "v3")
        },
        LONG,
    )
    .await;
    let s = m.status.unwrap();
    assert_eq!(s.history[0].outcome, "Superseded");
    assert_eq!(s.history[0].version, "v2");
    let deployments: Api<Deployment> = ns.api();
    wait_for_list(
        &deployments,
        kube::runtime::watcher::Config::default().labels("mlctl.io/model=ranker"),
        |list: &[Deployment]| {
            !list
                .iter()
                .any(|d| d.name_any() == format!("ranker-{v2_rev}"))
        },
        LONG,
    )
    .await;
    events(&ns, "Superseded").await;
    ns.finish().await;
}
