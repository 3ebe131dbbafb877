//! Shared AnalysisTemplates against the real control plane: a canary's
//! analysis step runs a metric defined only in an AnalysisTemplate (a web
//! provider served by the test on 127.0.0.1), and a reference to a template
//! that does not exist holds the rollout with `AnalysisHealthy=False`
//! naming it, until the template is created.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mlctl_crds::rankingmodel::Phase;
use mlctl_crds::{AnalysisTemplate, RankingModel};
use mlctl_e2e::operator::setup;
use mlctl_e2e::web::ValueServer;
use mlctl_e2e::{apply_yaml, require_e2e, set_version, wait_for, wait_for_list};

const LONG: Duration = Duration::from_secs(120);

fn template(name: &str, url: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: {name}
spec:
  metrics:
  - name: offline-ndcg
    provider:
      web: {{url: "{url}?version={{{{version}}}}", jsonPath: $.value, timeout: 2s}}
    interval: 1s
    count: 2
    successCondition: result >= 0.4
"#
    )
}

fn model(name: &str, version: &str, template: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model: {{version: "{version}", uri: "s3://models/{name}/{version}/model.txt", format: lightgbm}}
  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}
  replicas: 1
  rollout:
    steps: [{{setWeight: 50}}, {{analysis: {{metrics: [offline-ndcg]}}}}]
    analysis:
      templateRefs: [{{name: {template}}}]
"#
    )
}

fn stable_is(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
            s.stable.as_ref().is_some_and(|st| st.version == version)
                && s.canary.is_none()
                && s.phase == Some(Phase::Healthy)
        })
    }
}

fn analysis_healthy(m: &RankingModel) -> Option<(String, String, String)> {
    m.status
        .as_ref()?
        .conditions
        .0
        .iter()
        .find(|c| c.type_ == "AnalysisHealthy")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Whether condition `type_` was written from the model's current spec.
fn decided_from_latest(m: &RankingModel, type_: &str) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.conditions
            .0
            .iter()
            .any(|c| c.type_ == type_ && c.observed_generation == m.metadata.generation)
    })
}

#[tokio::test]
async fn a_step_runs_a_templates_metric_and_a_missing_template_holds_until_created() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("at-templates").await;
    let server = ValueServer::start(0.45).await;
    let url = server.url.clone();
    apply_yaml(&client, ns.name(), &template("shared", &url)).await;
    apply_yaml(&client, ns.name(), &model("ranker", "v1", "shared")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;

    // The analysis step names a metric only the template defines.
    set_version(&models, "ranker", "v2").await;
    let m = wait_for(&models, "ranker", stable_is("v2"), LONG).await;
    let status = m.status.unwrap();
    let metric = status
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.iter().find(|m| m.name == "offline-ndcg"))
        .expect("the template's metric was measured");
    assert_eq!(metric.step, Some(1), "{metric:?}");
    assert_eq!(metric.phase, "Successful", "{metric:?}");
    assert_eq!(metric.successful, 2, "{metric:?}");
    assert_eq!(
        metric.measurements.last().unwrap().value.as_deref(),
        Some("0.45")
    );
    assert!(server.hits() >= 2, "the test server was asked");
    assert_eq!(status.history[0].outcome, "Promoted");

    // The template disappears: the next rollout is held, and says why.
    let templates: Api<AnalysisTemplate> = ns.api();
    templates
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    set_version(&models, "ranker", "v3").await;
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            // Decided from the spec that asks for v3 (the held reconcile
            // records the generation it saw).
            m.is_some_and(|m| decided_from_latest(m, "AnalysisHealthy"))
                && m.and_then(analysis_healthy)
                    .is_some_and(|(s, r, _)| s == "False" && r == "AnalysisTemplateNotFound")
        },
        LONG,
    )
    .await;
    let (_, _, message) = analysis_healthy(&m).unwrap();
    assert!(
        message.contains("AnalysisTemplate \"shared\"") && message.contains("create it"),
        "{message}"
    );
    let status = m.status.unwrap();
    assert!(
        status.canary.is_none(),
        "held: no canary started {status:?}"
    );
    assert_eq!(status.stable.as_ref().unwrap().version, "v2");
    // The Event is queued after the status write: wait for it.
    let events: Api<Event> = ns.api();
    wait_for_list(
        &events,
        kube::runtime::watcher::Config::default(),
        |list: &[Event]| {
            list.iter().any(|e| {
                e.reason.as_deref() == Some("AnalysisTemplateNotFound")
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains("\"shared\""))
            })
        },
        LONG,
    )
    .await;
    let deployments: Api<Deployment> = ns.api();
    let v3 = deployments
        .list(&ListParams::default().labels("mlctl.io/model=ranker,mlctl.io/version=v3"))
        .await
        .unwrap();
    assert!(v3.items.is_empty(), "no canary Deployment while held");

    // Creating the template resumes the rollout: v3 runs the step and wins.
    let before = server.hits();
    apply_yaml(&client, ns.name(), &template("shared", &url)).await;
    let m = wait_for(&models, "ranker", stable_is("v3"), LONG).await;
    assert!(server.hits() >= before + 2);
    let (state, reason, _) = analysis_healthy(&m).unwrap_or_default();
    assert_ne!(
        (state.as_str(), reason.as_str()),
        ("False", "AnalysisTemplateNotFound"),
        "the hold is lifted"
    );
    drop(server);
    ns.finish().await;
}

#[tokio::test]
async fn a_metric_defined_in_the_model_and_its_template_is_reported_until_fixed() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("at-clash").await;
    let server = ValueServer::start(0.45).await;
    let url = server.url.clone();
    apply_yaml(&client, ns.name(), &template("shared", &url)).await;
    // The model also defines offline-ndcg itself.
    let clashing = model("ranker", "v1", "shared").replace(
        "      templateRefs:",
        &format!(
            "      templates:\n      - {{name: offline-ndcg, provider: {{web: {{url: \"{url}\", jsonPath: $.value}}}}, successCondition: result > 0}}\n      templateRefs:"
        ),
    );
    apply_yaml(&client, ns.name(), &clashing).await;
    let models: Api<RankingModel> = ns.api();
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(analysis_healthy)
                .is_some_and(|(s, r, _)| s == "False" && r == "MetricDefinedTwice")
        },
        LONG,
    )
    .await;
    let (_, _, message) = analysis_healthy(&m).unwrap();
    assert!(
        message.contains("\"offline-ndcg\"")
            && message.contains("spec.rollout.analysis.templates")
            && message.contains("AnalysisTemplate \"shared\""),
        "{message}"
    );
    // Fixed by dropping the model's own copy: it deploys.
    apply_yaml(&client, ns.name(), &model("ranker", "v1", "shared")).await;
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    drop(server);
    ns.finish().await;
}
