//! The fixtures of the Argo CD health check come from the operator: a model
//! is driven through Healthy, a progressing canary, a pause, an abort by its
//! analysis and a manual abort, and the live object is captured at each.
//! gitops/tests/argocd_health.rs runs the check (Lua 5.1, as Argo CD's
//! gopher-lua) on these captures (examples/argocd/fixtures/
//! rankingmodel-captured.json) with the health and message each case
//! expects. With `MLCTL_E2E_UPDATE_FIXTURES=1` this test rewrites the file;
//! otherwise it fails when the committed captures no longer have the phase
//! and conditions the operator writes, so they cannot go stale.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::metrics::{MetricsEndpoint, prometheus_url};
use mlctl_e2e::operator::setup;
use mlctl_e2e::{apply_yaml, phase_is, require_e2e, set_version, wait_for, workspace_root};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

fn model(name: &str, version: &str, prometheus: &str, id: &str) -> String {
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
  rollout:
    steps:
    - setWeight: 50
    - pause: {{duration: 1h}}
    - pause: {{}}
    analysis:
      metrics:
      - name: error-rate
        provider:
          prometheus:
            address: {prometheus}
            query: 'e2e_error_rate{{e2e_test="{id}", version="{{{{version}}}}"}}'
        interval: 2s
        successCondition: result < 0.05
"#
    )
}

/// The live object as Argo CD sees it (metadata trimmed to what the check
/// reads, so the fixture is stable across runs).
async fn capture(models: &Api<RankingModel>, name: &str) -> Value {
    let m = models.get(name).await.expect("the model");
    json!({
        "apiVersion": "mlctl.io/v1alpha1",
        "kind": "RankingModel",
        "metadata": {"name": name, "generation": m.metadata.generation},
        "status": serde_json::to_value(m.status).unwrap(),
    })
}

/// The parts of a status the health check decides on: phase and each
/// condition's type, status and reason.
fn shape(obj: &Value) -> Value {
    let mut conditions: Vec<String> = obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={} {}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    conditions.sort();
    json!({"phase": obj["status"]["phase"], "conditions": conditions})
}

async fn request(models: &Api<RankingModel>, name: &str, key: &str) {
    let patch = json!({"metadata": {"annotations": {key: Timestamp::now().to_string()}}});
    models
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn canary_is(
    version: &'static str,
    test: impl Fn(&mlctl_crds::rankingmodel::CanaryRevision) -> bool,
) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        m.and_then(|m| m.status.as_ref())
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.version == version && test(c))
    }
}

#[tokio::test]
async fn the_health_check_reads_the_statuses_the_operator_writes() {
    require_e2e!();
    let Some(prometheus) = prometheus_url() else {
        panic!("needs the cluster's Prometheus (e2e/cluster up --with-prometheus)");
    };
    let (client, ns, _operator, _) = setup("argocd-health").await;
    let endpoint = MetricsEndpoint::start(&format!("argocd-{}", ns.name())).await;
    for v in ["2.0.0", "3.0.0"] {
        endpoint.set("e2e_error_rate", v, 0.0);
    }
    // Scraped before any canary reads it (no data would be Inconclusive).
    endpoint
        .wait_for_value(
            &format!(
                "e2e_error_rate{{e2e_test=\"{}\",version=\"3.0.0\"}}",
                endpoint.id
            ),
            0.0,
            LONG,
        )
        .await;
    let models: Api<RankingModel> = ns.api();
    apply_yaml(
        &client,
        ns.name(),
        &model("ranker", "1.0.0", &prometheus, &endpoint.id),
    )
    .await;
    wait_for(&models, "ranker", phase_is(Phase::Healthy), LONG).await;
    let mut cases = vec![(
        "healthy",
        "Healthy",
        "replica(s) of 1.0.0 ready",
        capture(&models, "ranker").await,
    )];

    set_version(&models, "ranker", "2.0.0").await;
    wait_for(
        &models,
        "ranker",
        canary_is("2.0.0", |c| c.weight == 50 && c.step_index == 1),
        LONG,
    )
    .await;
    wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .is_some_and(|s| s.conditions.is_true("AnalysisHealthy"))
        },
        LONG,
    )
    .await;
    cases.push((
        "canary progressing",
        "Progressing",
        "canary 2.0.0",
        capture(&models, "ranker").await,
    ));

    // A promote ends the timed pause; the next one waits for a person.
    request(&models, "ranker", "mlctl.io/promote").await;
    wait_for(&models, "ranker", phase_is(Phase::Paused), LONG).await;
    cases.push((
        "paused for a person",
        "Suspended",
        "paused (PauseStep)",
        capture(&models, "ranker").await,
    ));

    // The analysis fails: aborted, Degraded with the metric named.
    endpoint.set("e2e_error_rate", "2.0.0", 0.5);
    wait_for(&models, "ranker", phase_is(Phase::Degraded), LONG).await;
    cases.push((
        "aborted by its analysis",
        "Degraded",
        "metric error-rate",
        capture(&models, "ranker").await,
    ));

    // A manual abort while the analysis passes: the message is the abort's.
    set_version(&models, "ranker", "3.0.0").await;
    wait_for(
        &models,
        "ranker",
        canary_is("3.0.0", |c| c.step_index == 1),
        LONG,
    )
    .await;
    request(&models, "ranker", "mlctl.io/abort").await;
    wait_for(
        &models,
        "ranker",
        canary_is("3.0.0", |c| c.aborted_at.is_some()),
        LONG,
    )
    .await;
    cases.push((
        "aborted by a person",
        "Degraded",
        "canary 3.0.0 aborted",
        capture(&models, "ranker").await,
    ));

    let fixtures: Vec<Value> = cases
        .iter()
        .map(|(name, want, needle, obj)| json!({"name": name, "expect": want, "message": needle, "obj": obj}))
        .collect();
    let path = workspace_root().join("examples/argocd/fixtures/rankingmodel-captured.json");
    if std::env::var("MLCTL_E2E_UPDATE_FIXTURES").is_ok_and(|v| v == "1") {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&fixtures).unwrap() + "\n",
        )
        .unwrap();
    } else {
        let committed: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (MLCTL_E2E_UPDATE_FIXTURES=1 writes it)",
                    path.display()
                )
            }))
            .unwrap();
        assert_eq!(
            committed.len(),
            fixtures.len(),
            "regenerate with MLCTL_E2E_UPDATE_FIXTURES=1"
        );
        for (old, new) in committed.iter().zip(&fixtures) {
            assert_eq!(
                shape(&old["obj"]),
                shape(&new["obj"]),
                "{}: the committed fixture no longer matches what the operator writes; regenerate with MLCTL_E2E_UPDATE_FIXTURES=1",
                new["name"]
            );
        }
    }
    ns.finish().await;
}
