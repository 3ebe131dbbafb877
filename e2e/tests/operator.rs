//! The operator against the real local control plane. Each test runs its own
//! `mlctl-operator` process, authenticated with a token of the Helm chart's
//! ServiceAccount and bound only by the chart's own RBAC (rendered with
//! `helm template`), so a missing permission fails the test.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::audit::{Audit, describe};
use mlctl_e2e::operator::{install_chart_rbac, service_account_kubeconfig, setup, start_operator};
use mlctl_e2e::scene::record_figures;
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, client, example, install_crds, kubectl, phase_is,
    require_e2e, stable_deployment, wait_for, wait_for_deletion, wait_for_events, wait_for_list,
};

const LONG: Duration = Duration::from_secs(120);

fn stable_version_is(version: &'static str) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m: Option<&RankingModel>| {
        m.and_then(|m| m.status.as_ref())
            .and_then(|s| s.stable.as_ref())
            .is_some_and(|s| s.version == version)
    }
}

#[tokio::test]
async fn a_basic_model_is_served_by_ready_pods_behind_its_services() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-basic").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let status = model.status.clone().expect("status");
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(3));
    assert!(status.conditions.is_true("Ready"), "{status:?}");
    assert_eq!(status.history[0].version, "2026-11-20.3");

    let deployments: Api<Deployment> = ns.api();
    let name = stable_deployment(&model);
    let d = deployments.get(&name).await.expect("the stable Deployment");
    assert_eq!(
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(3)
    );
    assert_eq!(
        d.labels().get("mlctl.io/track").map(String::as_str),
        Some("stable")
    );
    let pods: Api<Pod> = ns.api();
    let listed = pods
        .list(&ListParams::default().labels("mlctl.io/model=search-ranker"))
        .await
        .expect("list pods");
    assert_eq!(listed.items.len(), 3);
    for pod in &listed.items {
        assert!(
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some(),
            "scheduled"
        );
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
    }

    let services: Api<Service> = ns.api();
    for svc in [
        "search-ranker",
        "search-ranker-stable",
        "search-ranker-canary",
    ] {
        services
            .get(svc)
            .await
            .unwrap_or_else(|e| panic!("service {svc}: {e}"));
    }
    let slices: Api<EndpointSlice> = ns.api();
    wait_for_list(
        &slices,
        watcher::Config::default().labels("kubernetes.io/service-name=search-ranker"),
        |slices: &[EndpointSlice]| {
            slices
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count()
                == 3
        },
        DEFAULT_TIMEOUT,
    )
    .await;

    let out = Command::new(kubectl())
        .args(["get", "rm", "-n", ns.name()])
        .output()
        .expect("kubectl get rm");
    let table = String::from_utf8_lossy(&out.stdout);
    for column in ["STABLE", "CANARY", "WEIGHT", "PHASE", "READY", "AGE"] {
        assert!(table.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("search-ranker"))
        .expect("a row");
    assert!(
        row.contains("2026-11-20.3") && row.contains("Healthy") && row.contains("True"),
        "{table}"
    );
    ns.finish().await;
}

#[tokio::test]
async fn with_autoscaling_the_hpa_targets_the_stable_deployment_and_owns_replicas() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-hpa").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-canary.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(&models, "product-ranker", phase_is(Phase::Healthy), LONG).await;
    let name = stable_deployment(&model);
    let hpas: Api<HorizontalPodAutoscaler> = ns.api();
    let hpa = hpas.get("product-ranker").await.expect("the HPA");
    let spec = hpa.spec.expect("spec");
    assert_eq!(spec.scale_target_ref.name, name);
    assert_eq!(spec.min_replicas, Some(3));
    assert_eq!(spec.max_replicas, 12);

    let deployments: Api<Deployment> = ns.api();
    let d = deployments.get(&name).await.expect("deployment");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let ours = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some("mlctl-operator"))
        .expect("mlctl-operator manages fields");
    let fields = serde_json::to_string(&ours.fields_v1).expect("json");
    assert!(fields.contains("f:template"), "{fields}");
    assert!(
        !fields.contains("f:replicas"),
        "the operator must not own replicas: {fields}"
    );
    ns.finish().await;
}

#[tokio::test]
async fn a_version_change_switches_services_when_available_and_retires_the_old_revision() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-version").await;
    let manifest = example("rankingmodel-basic.yaml").replace(
        "  replicas: 3",
        "  replicas: 2\n  rollout:\n    scaleDownDelaySeconds: 8",
    );
    apply_yaml(&client, ns.name(), &manifest).await;
    let models: Api<RankingModel> = ns.api();
    let first = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let old = stable_deployment(&first);

    let patch = serde_json::json!({"spec": {"model": {"version": "2026-11-21.1", "uri": "s3://models/search-ranker/2026-11-21.1/model.txt"}}});
    models
        .patch(
            "search-ranker",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("change version");
    let second = wait_for(
        &models,
        "search-ranker",
        stable_version_is("2026-11-21.1"),
        LONG,
    )
    .await;
    let new = stable_deployment(&second);
    assert_ne!(old, new);

    let deployments: Api<Deployment> = ns.api();
    let d = deployments.get(&new).await.expect("new deployment");
    assert_eq!(
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(2),
        "traffic moved only to an available revision"
    );
    let services: Api<Service> = ns.api();
    let revision = new.trim_start_matches("search-ranker-").to_string();
    for svc in ["search-ranker", "search-ranker-stable"] {
        let s = services.get(svc).await.expect("service");
        let selector = s.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(selector.get("mlctl.io/revision"), Some(&revision), "{svc}");
    }
    // The old revision stays warm during the delay, then goes.
    let retiring = deployments.get_opt(&old).await.expect("get old");
    assert!(
        retiring.is_some(),
        "the previous revision must outlive the switch for the delay"
    );
    wait_for_deletion(&deployments, &old, DEFAULT_TIMEOUT).await;
    let model = wait_for(
        &models,
        "search-ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .is_some_and(|s| s.retiring.is_empty())
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let status = model.status.expect("status");
    assert_eq!(status.history[0].version, "2026-11-21.1");
    assert_eq!(status.history[1].version, "2026-11-20.3");
    ns.finish().await;
}

#[tokio::test]
async fn kubectl_scale_scales_the_model_and_delete_collects_everything() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-scale").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let name = stable_deployment(&model);
    let out = Command::new(kubectl())
        .args([
            "scale",
            "rm/search-ranker",
            "--replicas",
            "5",
            "-n",
            ns.name(),
        ])
        .output()
        .expect("kubectl scale");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployments: Api<Deployment> = ns.api();
    wait_for(
        &deployments,
        &name,
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                == Some(5)
        },
        LONG,
    )
    .await;
    wait_for(
        &models,
        "search-ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref()).and_then(|s| s.replicas) == Some(5)
        },
        LONG,
    )
    .await;

    models
        .delete("search-ranker", &DeleteParams::foreground())
        .await
        .expect("delete model");
    wait_for_deletion(&deployments, &name, LONG).await;
    let services: Api<Service> = ns.api();
    for svc in [
        "search-ranker",
        "search-ranker-stable",
        "search-ranker-canary",
    ] {
        wait_for_deletion(&services, svc, LONG).await;
    }
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    wait_for_deletion(&pdbs, "search-ranker", LONG).await;
    ns.finish().await;
}

#[tokio::test]
async fn a_steady_model_causes_no_writes() {
    require_e2e!();
    let (client, ns, operator, _) = setup("rm-steady").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let reconciles = |text: String| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with("mlctl_reconciles_total{kind=\"rankingmodel\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    };
    // Reconciles still happen in the window (the Deployment's status settles,
    // kwok updates pods): each must decide that nothing needs writing.
    // The transition's Events follow its status write: wait for them, so
    // that the window starts after everything the rollout had to say.
    let events: Api<Event> = ns.api();
    wait_for_events(&events, "Promoted", |l| !l.is_empty(), DEFAULT_TIMEOUT).await;
    let audit = Audit::open();
    let mark = audit.mark();
    let reconciles_before = reconciles(operator.metrics().await).expect("metrics are served");
    // An observation window, not a synchronisation: nothing may be written in it.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let writes = audit.operator_writes(mark, ns.name(), "");
    assert!(
        writes.is_empty(),
        "the operator wrote during a steady state:\n{}",
        describe(&writes)
    );
    // Touch the model's children the way other controllers do (a label on a
    // Deployment by someone else): reconciles, still no write.
    let deployments: Api<Deployment> = ns.api();
    let name = deployments
        .list(&ListParams::default())
        .await
        .expect("list")
        .items[0]
        .name_any();
    let patch = serde_json::json!({"metadata": {"labels": {"team": "search"}}});
    deployments
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label");
    let after = operator
        .wait_for_metrics(
            |m| reconciles(m.to_string()).is_some_and(|n| n > reconciles_before),
            DEFAULT_TIMEOUT,
        )
        .await;
    assert!(
        reconciles(after).is_some_and(|n| n > reconciles_before),
        "the label change was not reconciled"
    );
    let writes = audit.operator_writes(mark, ns.name(), "");
    assert!(
        writes.is_empty(),
        "the operator wrote after a foreign label change:\n{}",
        describe(&writes)
    );
    ns.finish().await;
}

/// Two operator processes (identities `a` and `b`) on one namespace with
/// the basic model Healthy: the namespace, the operators, the Lease and
/// model APIs, and the index of the one holding the lease.
async fn two_operators(
    prefix: &str,
) -> (
    TestNamespace,
    [mlctl_e2e::operator::Operator; 2],
    Api<Lease>,
    Api<RankingModel>,
    usize,
) {
    let (client, mut ns, first, kubeconfig) = setup(prefix).await;
    let second = start_operator(&ns, &kubeconfig, "b");
    ns.dump_log_on_failure(second.log.clone());
    let operators = [first, second];
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let leases: Api<Lease> = ns.api();
    let holder = leases
        .get("mlctl-operator")
        .await
        .expect("the leader lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    let leader = operators
        .iter()
        .position(|o| o.identity == holder)
        .expect("the holder is one of the two operators");
    (ns, operators, leases, models, leader)
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    require_e2e!();
    let (ns, mut operators, leases, models, leader) = two_operators("rm-leader").await;
    let standby = 1 - leader;
    let leader_metrics = operators[leader].metrics().await;
    let standby_metrics = operators[standby].metrics().await;
    assert!(
        leader_metrics.contains("mlctl_leader 1"),
        "{leader_metrics}"
    );
    assert!(
        standby_metrics.contains("mlctl_leader 0"),
        "{standby_metrics}"
    );
    assert!(
        !standby_metrics.contains("mlctl_reconciles_total{"),
        "the standby must not reconcile: {standby_metrics}"
    );
    let standby_identity = operators[standby].identity.clone();
    operators[leader].kill();
    wait_for(
        &leases,
        "mlctl-operator",
        |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some(standby_identity.as_str())
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let patch = serde_json::json!({"spec": {"model": {"version": "2026-11-22.1"}}});
    models
        .patch(
            "search-ranker",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("change version");
    wait_for(
        &models,
        "search-ranker",
        stable_version_is("2026-11-22.1"),
        LONG,
    )
    .await;
    ns.finish().await;
}

/// A leader that cannot renew (SIGSTOP: it neither renews nor writes) is
/// replaced within the lease; resumed, it writes nothing — its writes are
/// fenced from its renew deadline on, and it exits. Counted in the audit log.
#[tokio::test]
async fn a_stopped_leader_is_replaced_and_writes_nothing_once_resumed() {
    require_e2e!();
    let (ns, mut operators, leases, models, leader) = two_operators("rm-sigstop").await;
    let standby = 1 - leader;
    let standby_identity = operators[standby].identity.clone();

    let audit = Audit::open();
    let mark = audit.mark();
    let stopped_at = k8s_openapi::jiff::Timestamp::now();
    let t = std::time::Instant::now();
    operators[leader].signal("STOP");
    wait_for(
        &leases,
        "mlctl-operator",
        |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some(standby_identity.as_str())
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let takeover = t.elapsed();
    // Lease 4 s, retry 1 s (start_operator): expiry is judged from when the
    // standby last saw a renewal, at most a retry before the stop.
    assert!(
        takeover <= Duration::from_secs(7),
        "the standby took {takeover:?} to take over a 4 s lease"
    );

    // The new leader works: a version change rolls out.
    let patch = serde_json::json!({"spec": {"model": {"version": "2026-11-22.1"}}});
    models
        .patch(
            "search-ranker",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("change version");
    wait_for(
        &models,
        "search-ranker",
        stable_version_is("2026-11-22.1"),
        LONG,
    )
    .await;

    // Resumed, the old leader finds its leadership lapsed: it exits, and
    // nothing it sends after the stop is a write the API server accepted.
    operators[leader].signal("CONT");
    let exit = operators[leader].wait_exit(DEFAULT_TIMEOUT).await;
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the resumed old leader must exit non-zero, got {exit:?}"
    );
    let agent = operators[leader].agent();
    let late: Vec<_> = audit
        .writes_by(mark, &mlctl_e2e::audit::operator_user(ns.name()), &agent)
        .into_iter()
        .filter(|w| {
            w.request_received_timestamp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .is_ok_and(|at| at >= stopped_at)
        })
        .filter(|w| w.response_status.as_ref().is_some_and(|s| s.code < 300))
        .collect();
    assert!(
        late.is_empty(),
        "the stopped leader wrote after it was stopped:\n{}",
        describe(&late)
    );
    let new_leader = audit.operator_writes(mark, ns.name(), &operators[standby].agent());
    assert!(
        !new_leader.is_empty(),
        "the audit log must show the new leader's writes (user agent {})",
        operators[standby].agent()
    );
    record_figures(&format!(
        "leader SIGSTOP: standby took over after {:.1}s (lease 4s); the resumed leader exited ({exit:?}) with 0 accepted writes, the new leader made {}",
        takeover.as_secs_f64(),
        new_leader.len()
    ));
    ns.finish().await;
}

#[tokio::test]
async fn generated_pods_are_admitted_under_restricted_pod_security() {
    require_e2e!();
    let client = client().await;
    install_crds(&client).await;
    let mut ns = TestNamespace::with_pod_security(&client, "rm-restricted", "restricted").await;
    let sa = install_chart_rbac(&client, ns.name()).await;
    let kubeconfig = service_account_kubeconfig(&client, ns.name(), &sa).await;
    let operator = start_operator(&ns, &kubeconfig, "a");
    ns.dump_log_on_failure(operator.log.clone());
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let pods: Api<Pod> = ns.api();
    let listed = pods.list(&ListParams::default()).await.expect("pods");
    assert_eq!(listed.items.len(), 3, "all pods admitted");
    ns.finish().await;
}

/// A model that names no runtime gets the CRD's default mlctl-ranker image, and
/// its download credentials (Secret + ServiceAccount) reach the pods the API
/// server admits: the account and the Secret's env only where they belong.
#[tokio::test]
async fn a_model_without_runtime_runs_the_ranker_image_with_its_credentials() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-creds").await;
    apply_yaml(
        &client,
        ns.name(),
        r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: model-reader
---
apiVersion: v1
kind: Secret
metadata:
  name: s3-credentials
stringData:
  AWS_ACCESS_KEY_ID: test
  AWS_SECRET_ACCESS_KEY: test
---
apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: v1
    uri: s3://models/ranker/v1/model.txt
    format: lightgbm
    credentialsSecret: s3-credentials
  runtime:
    serviceAccountName: model-reader
  replicas: 1
"#,
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(&models, "ranker", phase_is(Phase::Healthy), LONG).await;
    assert_eq!(
        model.spec.runtime.image,
        mlctl_crds::images::DEFAULT_RANKER_IMAGE,
        "the API server writes the CRD default into the object"
    );
    let deployments: Api<Deployment> = ns.api();
    let d = deployments.get(&stable_deployment(&model)).await.unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("model-reader"));
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(
        init.image.as_deref(),
        Some(mlctl_crds::images::DEFAULT_RANKER_IMAGE)
    );
    assert_eq!(init.args.as_deref(), Some(&["fetch".to_string()][..]));
    assert_eq!(
        init.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("s3-credentials")
    );
    assert!(pod.containers[0].env_from.is_none());
    // The pods exist (admitted with that ServiceAccount) and run.
    let pods: Api<Pod> = ns.api();
    let listed = pods
        .list(&ListParams::default().labels("mlctl.io/model=ranker"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0]
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("model-reader")
    );
}
