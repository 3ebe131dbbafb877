//! Proof that the local control plane is a real Kubernetes: scheduling onto kwok
//! nodes, the workload controllers, garbage collection, CRD installation and
//! validation, RBAC and PodSecurity admission. Each test runs in its own namespace
//! and skips unless `MLCTL_E2E=1` (set by `e2e/run`).

// Test code: its helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::PathBuf, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::{CronJob, Job},
        core::v1::{ContainerStateTerminated, Node, Pod, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, PostParams},
    runtime::{wait::conditions::is_job_completed, watcher},
};
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, client, client_with_token, dynamic_api, install_crds,
    require_e2e, service_account_token, wait_for, wait_for_deletion, wait_for_list, workspace_root,
};
use serde_json::json;

/// kwok pulls no images; any reference will do.
const IMAGE: &str = "registry.invalid/mlctl-e2e/app:1";

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

fn deployment(name: &str, replicas: i32, pod_labels: serde_json::Value) -> Deployment {
    let mut labels = pod_labels;
    labels["app"] = json!(name);
    from_json(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{ "name": "app", "image": IMAGE }] }
            }
        }
    }))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_available(deployment: &Deployment, replicas: i32) -> bool {
    deployment.status.as_ref().is_some_and(|s| {
        s.available_replicas == Some(replicas)
            && s.conditions.as_ref().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            })
    })
}

/// The terminated state of the pod's first container (kwok's stages set it).
fn terminated_state(pod: &Pod) -> ContainerStateTerminated {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| {
            panic!(
                "pod {} has no terminated container: {:?}",
                pod.name_any(),
                pod.status
            )
        })
}

async fn kwok_node_names(client: &Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .expect("list nodes");
    list.items.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn deployment_with_three_replicas_becomes_available_on_kwok_nodes() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "deployment").await;
    let deployments = ns.api::<Deployment>();
    deployments
        .create(&PostParams::default(), &deployment("web", 3, json!({})))
        .await
        .expect("create deployment");

    wait_for(
        &deployments,
        "web",
        |d: Option<&Deployment>| d.is_some_and(|d| is_available(d, 3)),
        DEFAULT_TIMEOUT,
    )
    .await;

    let pods = ns.api::<Pod>();
    let running = wait_for_list(
        &pods,
        watcher::Config::default().labels("app=web"),
        |pods: &[Pod]| pods.len() == 3 && pods.iter().all(|p| phase(p) == "Running" && is_ready(p)),
        DEFAULT_TIMEOUT,
    )
    .await;
    let nodes = kwok_node_names(&client).await;
    assert!(!nodes.is_empty(), "no kwok nodes in the cluster");
    for pod in &running {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            nodes.contains(&node),
            "pod {} is on {node:?}, not on a kwok node {nodes:?}",
            pod.name_any()
        );
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        assert!(ip.is_some(), "kwok gave pod {} no IP", pod.name_any());
    }
    ns.finish().await;
}

#[tokio::test]
async fn a_pod_labelled_unready_runs_but_never_becomes_ready() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "unready").await;
    let deployments = ns.api::<Deployment>();
    // The stable deployment is the control: both pods are started by the same
    // kwok at the same time, so once the stable pod is Ready the canary had
    // every chance to become Ready too.
    for d in [
        deployment("stable", 1, json!({})),
        deployment("canary", 1, json!({ "mlctl.io/e2e-unready": "true" })),
    ] {
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
    }
    let pods = ns.api::<Pod>();
    wait_for_list(
        &pods,
        watcher::Config::default().labels("app=stable"),
        |pods: &[Pod]| pods.len() == 1 && is_ready(&pods[0]),
        DEFAULT_TIMEOUT,
    )
    .await;
    let canary = wait_for_list(
        &pods,
        watcher::Config::default().labels("app=canary"),
        |pods: &[Pod]| pods.len() == 1 && phase(&pods[0]) == "Running",
        DEFAULT_TIMEOUT,
    )
    .await;
    assert!(
        !is_ready(&canary[0]),
        "the canary pod became Ready: {:?}",
        canary[0].status
    );
    let status = canary[0].status.as_ref().expect("status");
    let containers = status
        .container_statuses
        .as_ref()
        .expect("container statuses");
    assert!(
        containers
            .iter()
            .all(|c| !c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
    );

    let canary_deployment = deployments.get("canary").await.expect("get canary");
    let available = canary_deployment
        .status
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    assert_eq!(available, 0, "an unready pod must not count as available");
    ns.finish().await;
}

#[tokio::test]
async fn a_job_completes_and_reports_its_termination_message() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "job").await;
    let jobs = ns.api::<Job>();
    let message = r#"{"rows":42,"ok":true}"#;
    let job: Job = from_json(json!({
        "metadata": { "name": "batch" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { "mlctl.io/e2e-termination-message": message } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "work", "image": IMAGE }]
                }
            }
        }
    }));
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let done = wait_for(&jobs, "batch", is_job_completed(), DEFAULT_TIMEOUT).await;
    assert_eq!(done.status.as_ref().and_then(|s| s.succeeded), Some(1));

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("job-name=batch"))
        .await
        .expect("list pods");
    assert_eq!(pods.items.len(), 1, "one pod for a Job without failures");
    let pod = &pods.items[0];
    assert_eq!(phase(pod), "Succeeded");
    let terminated = terminated_state(pod);
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.message.as_deref(), Some(message));
    ns.finish().await;
}

#[tokio::test]
async fn a_pod_labelled_to_fail_fails_its_job() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "failing-job").await;
    let jobs = ns.api::<Job>();
    let job: Job = from_json(json!({
        "metadata": { "name": "doomed" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": { "mlctl.io/e2e-fail": "true" },
                    "annotations": { "mlctl.io/e2e-termination-message": "boom" }
                },
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "work", "image": IMAGE }] }
            }
        }
    }));
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let failed = |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    wait_for(&jobs, "doomed", failed, DEFAULT_TIMEOUT).await;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("job-name=doomed"))
        .await
        .expect("list pods");
    let pod = pods.items.first().expect("the job's pod");
    assert_eq!(phase(pod), "Failed");
    let terminated = terminated_state(pod);
    assert_eq!(terminated.exit_code, 1);
    assert_eq!(terminated.message.as_deref(), Some("boom"));
    ns.finish().await;
}

#[tokio::test]
async fn a_cronjob_creates_a_job() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "cronjob").await;
    let cronjob: CronJob = from_json(json!({
        "metadata": { "name": "nightly" },
        "spec": {
            // Cron has minute granularity: the first Job comes within 60 s.
            "schedule": "* * * * *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "work", "image": IMAGE }]
            }}}}
        }
    }));
    let created = ns
        .api::<CronJob>()
        .create(&PostParams::default(), &cronjob)
        .await
        .expect("create cronjob");
    let uid = created.uid().expect("uid");
    let jobs = wait_for_list(
        &ns.api::<Job>(),
        watcher::Config::default(),
        |jobs: &[Job]| !jobs.is_empty(),
        Duration::from_secs(120),
    )
    .await;
    let owners = jobs[0].owner_references();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "CronJob" && o.uid == uid && o.controller == Some(true)),
        "job {} is not controlled by the CronJob: {owners:?}",
        jobs[0].name_any()
    );
    wait_for(
        &ns.api::<Job>(),
        &jobs[0].name_any(),
        is_job_completed(),
        DEFAULT_TIMEOUT,
    )
    .await;
    ns.finish().await;
}

#[tokio::test]
async fn deleting_a_deployment_garbage_collects_its_replicaset_and_pods() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "gc").await;
    let deployments = ns.api::<Deployment>();
    deployments
        .create(&PostParams::default(), &deployment("doomed", 2, json!({})))
        .await
        .expect("create deployment");
    wait_for(
        &deployments,
        "doomed",
        |d: Option<&Deployment>| d.is_some_and(|d| is_available(d, 2)),
        DEFAULT_TIMEOUT,
    )
    .await;
    let replicasets = ns.api::<ReplicaSet>();
    let owned = replicasets
        .list(&ListParams::default().labels("app=doomed"))
        .await
        .expect("list replicasets");
    assert_eq!(owned.items.len(), 1);
    let pods = ns.api::<Pod>();
    assert_eq!(
        pods.list(&ListParams::default().labels("app=doomed"))
            .await
            .expect("list pods")
            .items
            .len(),
        2
    );

    // Background propagation: the Deployment goes at once, and only the garbage
    // collector can remove what it owned.
    deployments
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("delete deployment");
    wait_for_deletion(&deployments, "doomed", DEFAULT_TIMEOUT).await;
    wait_for_deletion(&replicasets, &owned.items[0].name_any(), DEFAULT_TIMEOUT).await;
    wait_for_list(
        &pods,
        watcher::Config::default().labels("app=doomed"),
        |pods: &[Pod]| pods.is_empty(),
        DEFAULT_TIMEOUT,
    )
    .await;
    ns.finish().await;
}

#[tokio::test]
async fn the_horizontal_pod_autoscaler_controller_runs() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "hpa").await;
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment("scaled", 1, json!({})))
        .await
        .expect("create deployment");
    let hpa: HorizontalPodAutoscaler = from_json(json!({
        "metadata": { "name": "scaled" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled" },
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [{ "type": "Resource", "resource": {
                "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 50 } } }]
        }
    }));
    let hpas = ns.api::<HorizontalPodAutoscaler>();
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create hpa");
    // There is no metrics API, so the controller cannot compute a scale; that it
    // records conditions at all proves it runs.
    let seen = wait_for(
        &hpas,
        "scaled",
        |h: Option<&HorizontalPodAutoscaler>| {
            h.and_then(|h| h.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "AbleToScale"))
        },
        Duration::from_secs(90),
    )
    .await;
    let conditions = seen.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "AbleToScale" && c.status == "True"),
        "{conditions:?}"
    );
    ns.finish().await;
}

#[tokio::test]
async fn the_crds_install_and_become_established() {
    require_e2e!();
    let client = client().await;
    let names = install_crds(&client).await;
    for expected in [
        "rankingmodels.mlctl.io",
        "featurepipelines.mlctl.io",
        "analysistemplates.mlctl.io",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from crds/yaml: {names:?}"
        );
    }
    // The served schema is the one we generated: `kubectl explain` shows the docs.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in &names {
        let crd = crds.get(name).await.expect("get crd");
        let served = crd.spec.versions.iter().filter(|v| v.served).count();
        assert!(served > 0, "{name} serves no version");
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_step_kinds_docs() {
    require_e2e!();
    let client = client().await;
    install_crds(&client).await;
    for (path, expect) in [
        (
            "rankingmodel.spec.rollout.steps.shadow",
            "copy of their `:rank` requests",
        ),
        (
            "rankingmodel.spec.rollout.steps.interleave.until",
            "whichever comes first",
        ),
        (
            "rankingmodel.status.canary.comparisons.verdict",
            "CanaryPreferred",
        ),
    ] {
        let out = std::process::Command::new(mlctl_e2e::kubectl())
            .args(["explain", path])
            .output()
            .expect("run kubectl explain");
        let text = String::from_utf8_lossy(&out.stdout);
        // kubectl wraps the description: compare with single spaces.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            out.status.success() && flat.contains(expect),
            "kubectl explain {path}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One case of the table in crds/testdata/invalid: the first line is
/// `# expect: <substring of the error>`, the rest one YAML document.
struct InvalidCase {
    file: PathBuf,
    expect: String,
    object: DynamicObject,
}

fn invalid_cases() -> Vec<InvalidCase> {
    let dir = workspace_root().join("crds/testdata/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no invalid manifests in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read invalid manifest");
            let first = text.lines().next().unwrap_or_default();
            let expect = first
                .strip_prefix("# expect:")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: first line must be `# expect: <message>`",
                        file.display()
                    )
                })
                .trim()
                .to_owned();
            assert!(!expect.is_empty(), "{}: empty expectation", file.display());
            let object: DynamicObject = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not one Kubernetes object: {e}", file.display()));
            InvalidCase {
                file,
                expect,
                object,
            }
        })
        .collect()
}

/// Creates `object` with `dryRun=All&fieldValidation=Strict`: what `kubectl
/// create`/`kubectl apply` of a new object does (a POST, so the error is the
/// validation's), with unknown fields rejected instead of dropped.
async fn create_dry_run_strict(
    client: &Client,
    api: &Api<DynamicObject>,
    object: &DynamicObject,
) -> kube::Result<DynamicObject> {
    let params = PostParams {
        dry_run: true,
        field_manager: Some(mlctl_e2e::FIELD_MANAGER.to_owned()),
    };
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(api.resource_url())
        .create(&params, body)
        .map_err(kube::Error::BuildRequest)?;
    let uri = format!("{}&fieldValidation=Strict", request.uri());
    *request.uri_mut() = uri.parse().expect("a valid URI");
    client.request(request).await
}

#[tokio::test]
async fn every_invalid_manifest_is_rejected_by_the_api_server_with_its_message() {
    require_e2e!();
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "invalid").await;
    let cases = invalid_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let api = dynamic_api(&client, &case.object, ns.name()).await;
        let file = case.file.display();
        match create_dry_run_strict(&client, &api, &case.object).await {
            Ok(_) => failures.push(format!(
                "{file}: accepted, expected an error containing {:?}",
                case.expect
            )),
            Err(kube::Error::Api(status)) => {
                if !status.message.contains(&case.expect) {
                    failures.push(format!(
                        "{file}: rejected ({} {}), but the message does not contain {:?}:\n    {}",
                        status.code, status.reason, case.expect, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{file}: request failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests were not rejected as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} invalid manifests rejected with their expected messages",
        cases.len()
    );
    ns.finish().await;
}

#[tokio::test]
async fn a_service_account_with_namespaced_rights_may_not_list_nodes() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::new(&client, "rbac").await;
    let sa: ServiceAccount = from_json(json!({ "metadata": { "name": "limited" } }));
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
    let role: Role = from_json(json!({
        "metadata": { "name": "pod-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] }]
    }));
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding: RoleBinding = from_json(json!({
        "metadata": { "name": "limited-reads-pods" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "limited", "namespace": ns.name() }]
    }));
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");

    let token = service_account_token(&client, ns.name(), "limited").await;
    let limited = client_with_token(&token).await;

    // The control: the token authenticates and its Role is in force...
    Api::<Pod>::namespaced(limited.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .expect("the service account may list pods in its namespace");
    // ...but nothing grants it cluster-scoped reads.
    match Api::<Node>::all(limited.clone())
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "expected Forbidden, got {status:?}");
            let user = format!("system:serviceaccount:{}:limited", ns.name());
            assert!(status.message.contains(&user), "{}", status.message);
        }
        other => {
            panic!("listing nodes as a namespaced service account must be forbidden, got {other:?}")
        }
    }
    match Api::<Pod>::namespaced(limited, "kube-system")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("reading another namespace must be forbidden, got {other:?}"),
    }
    ns.finish().await;
}

#[tokio::test]
async fn a_privileged_pod_is_refused_in_a_restricted_namespace() {
    require_e2e!();
    let client = client().await;
    let ns = TestNamespace::with_pod_security(&client, "restricted", "restricted").await;
    let pods = ns.api::<Pod>();
    let privileged: Pod = from_json(json!({
        "metadata": { "name": "privileged" },
        "spec": { "containers": [{
            "name": "app", "image": IMAGE, "securityContext": { "privileged": true }
        }]}
    }));
    match pods.create(&PostParams::default(), &privileged).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                status.message
            );
            assert!(status.message.contains("privileged"), "{}", status.message);
        }
        other => {
            panic!("a privileged pod must be refused in a restricted namespace, got {other:?}")
        }
    }
    // The control: a pod that meets the restricted profile is admitted and runs.
    let compliant: Pod = from_json(json!({
        "metadata": { "name": "compliant" },
        "spec": {
            "securityContext": { "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "app", "image": IMAGE,
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }
            }]
        }
    }));
    pods.create(&PostParams::default(), &compliant)
        .await
        .expect("a restricted-compliant pod is admitted");
    wait_for(
        &pods,
        "compliant",
        |p: Option<&Pod>| p.is_some_and(is_ready),
        DEFAULT_TIMEOUT,
    )
    .await;
    ns.finish().await;
}
