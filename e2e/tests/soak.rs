//! On demand (`make soak`; ignored by `make test`): 100 steady models and a
//! window of `MLCTL_E2E_SOAK_SECONDS` (default 600) in which the operator
//! must make no write at all — counted in the API server's audit log. The CI
//! suite has the short version (operator.rs: a_steady_model_causes_no_writes).

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::audit::{Audit, describe};
use mlctl_e2e::operator::setup;
use mlctl_e2e::scene::record_figures;
use mlctl_e2e::{apply_yaml, phase_is, require_e2e, wait_for};

#[tokio::test]
#[ignore = "soak: 100 models and a 10-minute window; run with make soak"]
async fn a_hundred_steady_models_cause_no_writes_in_ten_minutes() {
    require_e2e!();
    let window = Duration::from_secs(
        std::env::var("MLCTL_E2E_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let (client, ns, operator, _) = setup("soak").await;
    let docs: String = (0..100)
        .map(|i| {
            format!(
                "apiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata: {{name: m-{i:03}}}\nspec:\n  model: {{version: \"1\", uri: \"s3://models/m/1/model.txt\", format: lightgbm}}\n  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}\n  replicas: 2\n  rollout:\n    steps: [{{setWeight: 50}}]\n---\n"
            )
        })
        .collect();
    apply_yaml(&client, ns.name(), &docs).await;
    let models: Api<RankingModel> = ns.api();
    for i in 0..100 {
        wait_for(
            &models,
            &format!("m-{i:03}"),
            phase_is(Phase::Healthy),
            Duration::from_secs(600),
        )
        .await;
    }
    // The window opens once every first deployment's Event has landed (they
    // follow the status writes).
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    mlctl_e2e::wait_for_events(
        &events,
        "Promoted",
        |l| l.len() >= 100,
        Duration::from_secs(120),
    )
    .await;
    let reconciles = |m: &str| -> Option<u64> {
        m.lines()
            .find(|l| l.starts_with("mlctl_reconciles_total{kind=\"rankingmodel\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    };
    let audit = Audit::open();
    let mark = audit.mark();
    let before = reconciles(&operator.metrics().await).unwrap_or(0);
    // The observation window itself, not a synchronisation.
    tokio::time::sleep(window).await;
    let after = reconciles(&operator.metrics().await).unwrap_or(0);
    let writes = audit.operator_writes(mark, ns.name(), "");
    assert!(
        writes.is_empty(),
        "writes in a steady window:\n{}",
        describe(&writes)
    );
    record_figures(&format!(
        "soak: 100 steady models, {}s window: 0 writes, {} reconciles (resyncs)",
        window.as_secs(),
        after - before
    ));
    ns.finish().await;
}
