//! The objects a model or pipeline owns, against hands and other tools:
//! hand edits of the fields the operator sets are written back within one
//! reconcile, an object the operator did not create is never taken over, and
//! a lost status does not take down what serves. Writes are counted in the
//! API server's audit log.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mlctl_crds::rankingmodel::Phase;
use mlctl_crds::{FeaturePipeline, RankingModel};
use mlctl_e2e::audit::{Audit, describe};
use mlctl_e2e::operator::setup;
use mlctl_e2e::scene::record_figures;

use mlctl_e2e::{
    DEFAULT_TIMEOUT, apply_yaml, example, kubectl, phase_is, require_e2e, stable_deployment,
    wait_for, wait_for_events, wait_for_list,
};

const LONG: Duration = Duration::from_secs(120);

fn run_kubectl(ns: &str, args: &[&str]) {
    let out = Command::new(kubectl())
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn condition<'a>(
    model: &'a RankingModel,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    model
        .status
        .as_ref()
        .and_then(|s| s.conditions.0.iter().find(|c| c.type_ == type_))
}

#[tokio::test]
async fn hand_edits_of_children_are_written_back_within_one_reconcile() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-drift").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-canary.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    let basic = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let scaled = wait_for(&models, "product-ranker", phase_is(Phase::Healthy), LONG).await;
    let name = stable_deployment(&basic);
    let deployments: Api<Deployment> = ns.api();
    let original = deployments.get(&name).await.expect("deployment");
    let first = &original
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0];
    let (container, image) = (first.name.clone(), first.image.clone().expect("an image"));
    let mut figures = Vec::new();

    // kubectl scale of the serving Deployment.
    let t = Instant::now();
    run_kubectl(
        ns.name(),
        &["scale", &format!("deployment/{name}"), "--replicas=7"],
    );
    wait_for(
        &deployments,
        &name,
        |d: Option<&Deployment>| {
            d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas) == Some(3)
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    figures.push(format!("scale {:.1}s", t.elapsed().as_secs_f64()));

    // kubectl set image.
    let t = Instant::now();
    run_kubectl(
        ns.name(),
        &[
            "set",
            "image",
            &format!("deployment/{name}"),
            &format!("{container}=registry.example/evil:1"),
        ],
    );
    let want = image.clone();
    wait_for(
        &deployments,
        &name,
        move |d: Option<&Deployment>| {
            d.and_then(|d| d.spec.as_ref())
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.as_deref())
                == Some(want.as_str())
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    figures.push(format!("set image {:.1}s", t.elapsed().as_secs_f64()));

    // An edited Service selector (would send stable traffic nowhere).
    let services: Api<Service> = ns.api();
    let svc = "search-ranker-stable";
    let selector = services
        .get(svc)
        .await
        .expect("service")
        .spec
        .unwrap()
        .selector
        .unwrap();
    let t = Instant::now();
    let patch = serde_json::json!({"spec": {"selector": {"mlctl.io/revision": "someone-else"}}});
    services
        .patch(svc, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the selector");
    let want = selector.clone();
    wait_for(
        &services,
        svc,
        move |s: Option<&Service>| {
            s.and_then(|s| s.spec.as_ref())
                .and_then(|s| s.selector.as_ref())
                == Some(&want)
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    figures.push(format!(
        "Service selector {:.1}s",
        t.elapsed().as_secs_f64()
    ));

    // A deleted disruption budget and autoscaler come back.
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    let pdb_uid = pdbs.get("search-ranker").await.expect("pdb").uid();
    let t = Instant::now();
    pdbs.delete("search-ranker", &DeleteParams::default())
        .await
        .expect("delete pdb");
    wait_for(
        &pdbs,
        "search-ranker",
        move |p: Option<&PodDisruptionBudget>| p.is_some_and(|p| p.uid() != pdb_uid),
        DEFAULT_TIMEOUT,
    )
    .await;
    figures.push(format!("PDB delete {:.1}s", t.elapsed().as_secs_f64()));
    let hpas: Api<HorizontalPodAutoscaler> = ns.api();
    let hpa_uid = hpas.get("product-ranker").await.expect("hpa").uid();
    let t = Instant::now();
    hpas.delete("product-ranker", &DeleteParams::default())
        .await
        .expect("delete hpa");
    let target = stable_deployment(&scaled);
    wait_for(
        &hpas,
        "product-ranker",
        move |h: Option<&HorizontalPodAutoscaler>| {
            h.is_some_and(|h| {
                h.uid() != hpa_uid
                    && h.spec
                        .as_ref()
                        .is_some_and(|s| s.scale_target_ref.name == target)
            })
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    figures.push(format!("HPA delete {:.1}s", t.elapsed().as_secs_f64()));

    let events: Api<Event> = ns.api();
    let fields = [".spec.replicas", ".image", ".spec.selector"];
    let repaired = wait_for_events(
        &events,
        "DriftRepaired",
        |l| {
            fields.iter().all(|f| {
                l.iter()
                    .any(|e| e.message.as_deref().is_some_and(|m| m.contains(f)))
            })
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let notes: Vec<String> = repaired.iter().filter_map(|e| e.message.clone()).collect();
    for field in [".spec.replicas", ".image", ".spec.selector"] {
        assert!(
            notes.iter().any(|n| n.contains(field)),
            "no DriftRepaired event for {field}: {notes:?}"
        );
    }
    record_figures(&format!("drift repaired: {}", figures.join(", ")));
    ns.finish().await;
}

#[tokio::test]
async fn an_object_with_a_childs_name_is_never_taken_over() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-conflict").await;
    // Someone's Service already has the name the model's stable Service needs,
    // and a CronJob the name the pipeline's schedule needs.
    let services: Api<Service> = ns.api();
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "search-ranker-stable", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create their Service");
    let cron_jobs: Api<CronJob> = ns.api();
    let their_job: CronJob = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "doc-popularity"},
        "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    cron_jobs
        .create(&PostParams::default(), &their_job)
        .await
        .expect("create their CronJob");
    let audit = Audit::open();
    let mark = audit.mark();

    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    apply_yaml(
        &client,
        ns.name(),
        &example("featurepipeline-container.yaml"),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    let model = wait_for(
        &models,
        "search-ranker",
        |m: Option<&RankingModel>| {
            m.is_some_and(|m| condition(m, "ChildConflict").is_some_and(|c| c.status == "True"))
        },
        LONG,
    )
    .await;
    let c = condition(&model, "ChildConflict").unwrap();
    assert!(
        c.message.contains("Service")
            && c.message.contains("search-ranker-stable")
            && c.message.contains("not owned"),
        "{}",
        c.message
    );
    let ready = condition(&model, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ChildConflict")
    );
    let pipelines: Api<FeaturePipeline> = ns.api();
    let pipeline = wait_for(
        &pipelines,
        "doc-popularity",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                s.conditions
                    .0
                    .iter()
                    .any(|c| c.type_ == "ChildConflict" && c.status == "True")
            })
        },
        LONG,
    )
    .await;
    let message = pipeline
        .status
        .unwrap()
        .conditions
        .0
        .into_iter()
        .find(|c| c.type_ == "ChildConflict")
        .unwrap()
        .message;
    assert!(
        message.contains("CronJob") && message.contains("doc-popularity"),
        "{message}"
    );
    let events: Api<Event> = ns.api();
    wait_for_events(&events, "ChildConflict", |l| !l.is_empty(), DEFAULT_TIMEOUT).await;

    // Theirs are untouched: no write of the operator to them, no owner added.
    let svc = services
        .get("search-ranker-stable")
        .await
        .expect("their Service");
    assert!(
        svc.metadata.owner_references.is_none(),
        "{:?}",
        svc.metadata.owner_references
    );
    assert_eq!(
        svc.spec
            .unwrap()
            .selector
            .unwrap()
            .get("app")
            .map(String::as_str),
        Some("web")
    );
    let touched: Vec<_> = audit
        .operator_writes(mark, ns.name(), "")
        .into_iter()
        .filter(|w| {
            let o = w.object_ref.clone().unwrap_or_default();
            (o.resource == "services" && o.name == "search-ranker-stable")
                || (o.resource == "cronjobs" && o.name == "doc-popularity")
        })
        .collect();
    assert!(
        touched.is_empty(),
        "the operator wrote to objects it does not own:\n{}",
        describe(&touched)
    );

    // Once theirs is gone, the operator creates its own and the condition clears.
    services
        .delete("search-ranker-stable", &DeleteParams::default())
        .await
        .expect("delete their Service");
    let model = wait_for(
        &models,
        "search-ranker",
        |m: Option<&RankingModel>| {
            m.is_some_and(|m| {
                condition(m, "ChildConflict").is_none()
                    && m.status.as_ref().and_then(|s| s.phase) == Some(Phase::Healthy)
            })
        },
        LONG,
    )
    .await;
    assert!(condition(&model, "Ready").is_some_and(|c| c.status == "True"));
    let ours = services
        .get("search-ranker-stable")
        .await
        .expect("our Service");
    assert!(
        ours.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == model.uid().unwrap()),
        "{:?}",
        ours.metadata.owner_references
    );
    ns.finish().await;
}

#[tokio::test]
async fn a_lost_status_is_rebuilt_without_touching_what_serves() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("rm-lost-status").await;
    apply_yaml(&client, ns.name(), &example("rankingmodel-basic.yaml")).await;
    let models: Api<RankingModel> = ns.api();
    let before = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let serving = stable_deployment(&before);
    let pods: Api<Pod> = ns.api();
    let uids = |list: Vec<Pod>| {
        let mut v: Vec<String> = list.iter().filter_map(|p| p.uid()).collect();
        v.sort();
        v
    };
    let pods_before = uids(pods.list(&ListParams::default()).await.expect("pods").items);
    assert_eq!(pods_before.len(), 3);
    // Healthy says the Deployment is Available; the EndpointSlice controller
    // may publish the last pods' endpoints a moment later (seen under load).
    // Start from all three ready, so that a drop afterwards is the operator's.
    let slices: Api<EndpointSlice> = ns.api();
    let ready_endpoints = |list: &[EndpointSlice]| {
        list.iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count()
    };
    let by_service =
        || watcher::Config::default().labels("kubernetes.io/service-name=search-ranker");
    wait_for_list(&slices, by_service(), |l| ready_endpoints(l) == 3, LONG).await;
    let audit = Audit::open();
    let mark = audit.mark();

    // The status is lost (a restore of an old backup, a hand edit).
    let t = Instant::now();
    models
        .patch_status(
            "search-ranker",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": null})),
        )
        .await
        .expect("delete the status");
    let after = wait_for(&models, "search-ranker", phase_is(Phase::Healthy), LONG).await;
    let rebuilt = t.elapsed();
    let stable = after
        .status
        .as_ref()
        .and_then(|s| s.stable.as_ref())
        .expect("stable rebuilt");
    assert_eq!(stable.version, "2026-11-20.3");
    assert_eq!(stable_deployment(&after), serving);
    let events: Api<Event> = ns.api();
    wait_for_events(
        &events,
        "StatusRecovered",
        |l| !l.is_empty(),
        DEFAULT_TIMEOUT,
    )
    .await;

    // Nothing that serves was touched: no delete, no Service or Deployment
    // write, the same pods, all endpoints ready.
    let writes = audit.operator_writes(mark, ns.name(), "");
    let harmful: Vec<_> = writes
        .iter()
        .filter(|w| {
            w.verb == "delete" || matches!(w.resource(), "services" | "deployments" | "pods")
        })
        .cloned()
        .collect();
    assert!(
        harmful.is_empty(),
        "writes to what serves:\n{}",
        describe(&harmful)
    );
    assert_eq!(
        uids(pods.list(&ListParams::default()).await.expect("pods").items),
        pods_before
    );
    let ready = ready_endpoints(
        &slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=search-ranker"))
            .await
            .expect("slices")
            .items,
    );
    assert_eq!(ready, 3, "the model Service lost endpoints");
    record_figures(&format!(
        "lost status rebuilt in {:.1}s with {} operator writes (status, events)",
        rebuilt.as_secs_f64(),
        writes.len()
    ));
    ns.finish().await;
}
