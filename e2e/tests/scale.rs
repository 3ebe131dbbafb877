//! The CI-sized version of the scale benchmark (`make bench`,
//! docs/performance.md): 100 models — 80 plain, 20 with a canary strategy and
//! an autoscaler — converge without a single LIST from a reconcile (children
//! are read from the watches' indexes), with GETs only for children not yet
//! created, and then sit idle with zero requests of any kind. Counted in the
//! API server's audit log, which records the operator's reads too.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::audit::{Audit, Write, describe, operator_user};
use mlctl_e2e::operator::setup;
use mlctl_e2e::scene::record_figures;
use mlctl_e2e::{apply_yaml, phase_is, require_e2e, wait_for};

const MODELS: usize = 100;

fn model(i: usize) -> String {
    let canary = i.is_multiple_of(5);
    let extra = if canary {
        "  autoscaling: {minReplicas: 1, maxReplicas: 3, targetCPUUtilizationPercentage: 70}\n  rollout:\n    steps: [{setWeight: 20}, {setWeight: 50}]\n"
    } else {
        "  replicas: 1\n"
    };
    format!(
        "apiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata: {{name: m-{i:03}}}\nspec:\n  model: {{version: \"1\", uri: \"s3://models/m/1/model.txt\", format: lightgbm}}\n  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}\n{extra}---\n"
    )
}

fn by_verb(requests: &[Write]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(r.verb.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_hundred_models_converge_without_lists_and_idle_without_requests() {
    require_e2e!();
    let (client, ns, operator, _) = setup("scale").await;
    let audit = Audit::open();
    let user = operator_user(ns.name());
    let models: Api<RankingModel> = ns.api();

    // One model first: once it is Healthy the operator's watches have
    // listed (a reconcile waits for its indexes), so what follows is
    // reconciles only.
    apply_yaml(&client, ns.name(), &model(999)).await;
    wait_for(
        &models,
        "m-999",
        phase_is(Phase::Healthy),
        Duration::from_secs(120),
    )
    .await;

    let mark = audit.mark();
    let docs: String = (0..MODELS).map(model).collect();
    apply_yaml(&client, ns.name(), &docs).await;
    for i in 0..MODELS {
        wait_for(
            &models,
            &format!("m-{i:03}"),
            phase_is(Phase::Healthy),
            Duration::from_secs(300),
        )
        .await;
    }
    let converging = audit.requests_by(mark, &user, "mlctl-operator");
    let lists: Vec<Write> = converging
        .iter()
        .filter(|r| r.verb == "list")
        .cloned()
        .collect();
    assert!(
        lists.is_empty(),
        "reconciles listed (children must come from the watches' indexes):\n{}",
        describe(&lists)
    );
    // A GET is allowed only for a child that did not exist yet (the index
    // holds only what the operator owns; an object of that name it does not
    // own must not be taken over): at most one per child created.
    let created = converging
        .iter()
        .filter(|r| r.verb == "create" || (r.verb == "patch" && r.resource() != "rankingmodels"))
        .count();
    let gets: Vec<Write> = converging
        .iter()
        .filter(|r| r.verb == "get" && r.resource() != "leases")
        .cloned()
        .collect();
    assert!(
        gets.len() <= created,
        "{} GETs for {created} child writes: reads must not grow with reconciles:\n{}",
        gets.len(),
        describe(&gets)
    );

    // Idle: every model Healthy and the last Events and status writes
    // landed (a 5 s span without a request, within two minutes); then a
    // 30 s window with nothing at all. The leader's lease renewals are the
    // election's own traffic; a watch that ends and resumes is not a
    // request about a model.
    let about_models = |mark| -> Vec<Write> {
        audit
            .requests_by(mark, &user, "mlctl-operator")
            .into_iter()
            .filter(|r| r.resource() != "leases" && r.verb != "watch")
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let span = audit.mark();
        // An observation span, not a synchronisation.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let late = about_models(span);
        if late.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still requesting two minutes after every model was Healthy:\n{}",
            describe(&late)
        );
    }
    let idle = audit.mark();
    // The observation window itself, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let requests = about_models(idle);
    assert!(
        requests.is_empty(),
        "requests in a 30 s idle window with {MODELS} steady models:\n{}",
        describe(&requests)
    );
    record_figures(&format!(
        "scale: {MODELS} models converged with {:?} requests (0 lists, {} gets for {created} child writes); 30 s idle: 0 requests",
        by_verb(&converging),
        gets.len()
    ));
    drop(operator);
    ns.finish().await;
}
