//! The Job analysis provider against the real control plane: the real Job
//! controller runs the Job the operator creates per measurement (its pods
//! on kwok nodes, which complete a Job's pod with exit code 0 — e2e/stages);
//! a Job that cannot run fails by its deadline. Proves the Job's shape
//! (owner, labels, environment, lock-down, TTL), the verdict both ways, that
//! a restarted operator adopts the running Job instead of starting a second
//! one, and that the Job of an ended rollout is deleted.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::operator::{setup, start_operator};
use mlctl_e2e::scene::record_figures;
use mlctl_e2e::{
    apply_yaml, kubectl, require_e2e, set_version, wait_for, wait_for_deletion, wait_for_list,
};

const LONG: Duration = Duration::from_secs(120);

/// A model whose analysis step runs the Job metric `offline-eval`
/// (`job` is its provider, YAML flow style).
fn model(version: &str, job: &str, conditions: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model: {{version: "{version}", uri: "s3://models/ranker/{version}/model.txt", format: lightgbm}}
  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}
  replicas: 1
  rollout:
    steps: [{{setWeight: 50}}, {{analysis: {{metrics: [offline-eval]}}}}]
    analysis:
      templates:
      - name: offline-eval
        provider:
          job: {job}
{conditions}"#
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

fn aborted(m: Option<&RankingModel>) -> bool {
    m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
        s.phase == Some(Phase::Degraded)
            && s.canary.as_ref().is_some_and(|c| c.aborted_at.is_some())
    })
}

fn analysis_jobs() -> ListParams {
    ListParams::default().labels("mlctl.io/model=ranker,mlctl.io/metric=offline-eval")
}

#[tokio::test]
async fn an_analysis_step_runs_a_job_and_its_success_promotes() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("aj-pass").await;
    apply_yaml(
        &client,
        ns.name(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: queries}\ndata: {queries.tsv: \"q1\\tshoes\\n\"}\n",
    )
    .await;
    let job = r#"{args: [eval, "--canary={{model}}@{{canary_version}}"], configMap: queries, env: [{name: BASELINE, value: "{{stable_version}}"}]}"#;
    apply_yaml(&client, ns.name(), &model("v1", job, "")).await;
    let models: Api<RankingModel> = ns.api();
    let m = wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    let uid = m.metadata.uid.clone().unwrap();

    let started = Instant::now();
    set_version(&models, "ranker", "v2").await;
    let m = wait_for(&models, "ranker", stable_is("v2"), LONG).await;
    let took = started.elapsed();
    let status = m.status.unwrap();
    assert_eq!(status.history[0].outcome, "Promoted");
    let metric = status
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.iter().find(|m| m.name == "offline-eval"))
        .expect("the Job metric was measured");
    assert_eq!(
        (metric.phase.as_str(), metric.successful),
        ("Successful", 1),
        "{metric:?}"
    );
    assert_eq!(
        metric.measurements.last().unwrap().value.as_deref(),
        Some("1")
    );

    // The Job the operator created: one, finished, shaped as documented.
    let jobs: Api<Job> = ns.api();
    let list = jobs.list(&analysis_jobs()).await.unwrap().items;
    assert_eq!(list.len(), 1, "one Job per measurement");
    let job = &list[0];
    let name = job.metadata.name.clone().unwrap();
    assert!(name.starts_with("ranker-offline-eval-"), "{name}");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("RankingModel", uid.as_str())
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.ttl_seconds_after_finished, Some(600));
    assert_eq!(
        (spec.backoff_limit, spec.active_deadline_seconds),
        (Some(0), Some(600))
    );
    let conditions = job.status.as_ref().unwrap().conditions.clone().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True"),
        "{conditions:?}"
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert!(
        c.image
            .as_deref()
            .unwrap()
            .starts_with("ghcr.io/mlctl/mlctl:")
    );
    assert_eq!(c.args.as_ref().unwrap()[1], "--canary=ranker@v2");
    let env: BTreeMap<String, String> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    let url = |track: &str| format!("http://ranker-{track}.{}.svc:80", ns.name());
    assert_eq!(env["MLCTL_CANARY_URL"], url("canary"));
    assert_eq!(env["MLCTL_STABLE_URL"], url("stable"));
    assert_eq!(
        (
            env["MLCTL_STABLE_VERSION"].as_str(),
            env["MLCTL_CANARY_VERSION"].as_str()
        ),
        ("v1", "v2")
    );
    assert_eq!(env["BASELINE"], "v1");
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/mlctl/analysis", Some(true))
    );
    let security = c.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    record_figures(&format!(
        "analysis job: canary v2 started → promoted through a Job analysis step in {:.1}s (kwok pod, 1 s run)",
        took.as_secs_f64()
    ));
    ns.finish().await;
}

#[tokio::test]
async fn a_job_that_fails_aborts_and_a_restarted_operator_adopts_the_running_job() {
    require_e2e!();
    let (client, mut ns, mut operator, kubeconfig) = setup("aj-fail").await;
    // Its ServiceAccount does not exist: the Job controller can create no
    // pod, and the Job fails at its deadline.
    let job = "{serviceAccountName: missing, activeDeadlineSeconds: 12}";
    apply_yaml(&client, ns.name(), &model("v1", job, "")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    set_version(&models, "ranker", "v2").await;

    let jobs: Api<Job> = ns.api();
    let list = wait_for_list(
        &jobs,
        kube::runtime::watcher::Config::default().labels("mlctl.io/model=ranker"),
        |list: &[Job]| !list.is_empty(),
        LONG,
    )
    .await;
    let name = list[0].metadata.name.clone().unwrap();
    let created = list[0].metadata.uid.clone();
    // The operator dies while the Job runs; its successor must keep
    // waiting on that Job, not start a second one.
    operator.kill();
    let restarted = start_operator(&ns, &kubeconfig, "b");
    ns.dump_log_on_failure(restarted.log.clone());

    let m = wait_for(&models, "ranker", aborted, LONG).await;
    let status = m.status.unwrap();
    let metric = status
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.iter().find(|m| m.name == "offline-eval"))
        .unwrap();
    assert_eq!(metric.phase, "Failed", "{metric:?}");
    assert_eq!(
        metric.measurements.last().unwrap().value.as_deref(),
        Some("0")
    );
    assert!(
        metric
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("the Job failed"),
        "{metric:?}"
    );
    let list = jobs.list(&analysis_jobs()).await.unwrap().items;
    assert_eq!(
        list.len(),
        1,
        "the restarted operator adopted the Job: {list:?}"
    );
    assert_eq!(list[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        list[0].metadata.uid, created,
        "the same Job, not a re-created one"
    );
    let failed = list[0].status.as_ref().unwrap().conditions.clone().unwrap();
    assert!(
        failed
            .iter()
            .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("DeadlineExceeded")),
        "{failed:?}"
    );
    drop(restarted);
    ns.finish().await;
}

#[tokio::test]
async fn the_running_job_of_an_aborted_rollout_is_deleted() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("aj-abort").await;
    let job = "{serviceAccountName: missing, activeDeadlineSeconds: 300}";
    apply_yaml(&client, ns.name(), &model("v1", job, "")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;
    set_version(&models, "ranker", "v2").await;
    let jobs: Api<Job> = ns.api();
    let list = wait_for_list(
        &jobs,
        kube::runtime::watcher::Config::default().labels("mlctl.io/model=ranker"),
        |list: &[Job]| !list.is_empty(),
        LONG,
    )
    .await;
    let name = list[0].metadata.name.clone().unwrap();
    let out = Command::new(kubectl())
        .args([
            "-n",
            ns.name(),
            "annotate",
            "--overwrite",
            "rankingmodel/ranker",
        ])
        .arg("mlctl.io/abort=2026-12-03T10:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&models, "ranker", aborted, LONG).await;
    wait_for_deletion(&jobs, &name, LONG).await;
    ns.finish().await;
}
