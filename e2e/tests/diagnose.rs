//! Why a revision is not ready, told on the RankingModel: the plumbing from a
//! failing pod to the condition message, the Warning Event and the abort
//! reason at the progress deadline. kwok nodes run no containers, so the
//! failure is written into the pod's status by hand (as admin) once kwok has
//! made the pod Running-but-unready (stage pod-unready), after which no kwok
//! stage touches it. Real failures on the real node are the lead's tests.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::{
    DEFAULT_TIMEOUT, apply_yaml, events_with_reason, require_e2e, wait_for, wait_for_events,
};

const MODEL: &str = r#"
apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model: {version: "v1", uri: "s3://models/ranker/v1/model.txt", format: lightgbm}
  runtime: {image: "ghcr.io/mlctl/lightgbm-runtime:0.1.0"}
  replicas: 1
  rollout:
    steps: [{setWeight: 50}]
    progressDeadlineSeconds: 60
"#;

const SHA: &str =
    "sha256 mismatch for s3://models/ranker/v2/model.txt: expected 93dc4438…, got f3f55c45…";

fn condition_message(m: &RankingModel, type_: &str) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.conditions.0.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failing_storage_initializer_is_told_in_conditions_events_and_the_abort_reason() {
    require_e2e!();
    let (client, ns, _operator, _) = mlctl_e2e::operator::setup("diagnose").await;
    let n = ns.name().to_string();
    apply_yaml(&client, &n, MODEL).await;
    let models: Api<RankingModel> = Api::namespaced(client.clone(), &n);
    wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .is_some_and(|s| s.phase == Some(Phase::Healthy))
        },
        Duration::from_secs(90),
    )
    .await;

    // v2's pods run but never become Ready (kwok stage pod-unready).
    let patch = serde_json::json!({"spec": {
        "model": {"version": "v2", "uri": "s3://models/ranker/v2/model.txt"},
        "runtime": {"podMetadata": {"labels": {"mlctl.io/e2e-unready": "true"}}},
    }});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let params = ListParams::default().labels("mlctl.io/model=ranker,mlctl.io/e2e-unready=true");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pod = loop {
        let list = pods.list(&params).await.unwrap();
        if let Some(p) = list
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Running canary pod"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pod_name = pod.metadata.name.clone().unwrap();

    // What the kubelet reports when `mlctl-ranker fetch` exits 3.
    let status = serde_json::json!({"status": {
        "initContainerStatuses": [{
            "name": "storage-initializer", "image": "mlctl-ranker:e2e", "imageID": "", "ready": false,
            "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "message": SHA,
                "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}}
        }]
    }});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    // kwok leaves a Running pod alone: the status is still ours a moment later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = pods.get(&pod_name).await.unwrap();
    let init = again
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|l| l.first())
        .cloned()
        .unwrap();
    assert_eq!(
        init.restart_count, 2,
        "kwok rewrote the pod status: {again:?}"
    );

    // The pod's Deployment status does not change: the operator's recheck of
    // an unavailable revision finds it.
    let summary = format!("canary v2: init container storage-initializer exited 3: {SHA}");
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.is_some_and(|m| condition_message(m, "Progressing").contains(&summary))
        },
        Duration::from_secs(45),
    )
    .await;
    assert!(
        !condition_message(&m, "Ready").contains("canary"),
        "the stable revision serves: Ready stays about it"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &n);
    let warnings = wait_for_events(
        &events,
        "StorageInitializerFailed",
        |l| !l.is_empty(),
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert_eq!(warnings[0].message.as_deref(), Some(summary.as_str()));

    // At the progress deadline the abort reason says why.
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.aborted_at.is_some())
        },
        Duration::from_secs(90),
    )
    .await;
    let status = m.status.clone().unwrap();
    let reason = status.canary.unwrap().abort_reason.unwrap();
    assert!(
        reason.contains("progressDeadlineSeconds=60") && reason.contains(SHA),
        "{reason}"
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    // Still one Event for the problem (no repeat per recheck).
    let again = events_with_reason(&events, "StorageInitializerFailed").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(
        again[0].series.is_none(),
        "published once, not repeated: {again:?}"
    );
    ns.finish().await;
}
