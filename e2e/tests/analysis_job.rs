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

/// A model whose v2 canary waits on an analysis Job that can start no pod
/// (its ServiceAccount does not exist) and fails after `deadline` seconds;
/// returns once that Job exists.
async fn canary_with_a_stuck_job(
    client: &kube::Client,
    ns: &mlctl_e2e::TestNamespace,
    deadline: u32,
) -> (Api<RankingModel>, Api<Job>, Job) {
    let job = format!("{{serviceAccountName: missing, activeDeadlineSeconds: {deadline}}}");
    apply_yaml(client, ns.name(), &model("v1", &job, "")).await;
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
    (models, jobs, list[0].clone())
}

#[tokio::test]
async fn a_job_that_fails_aborts_and_a_restarted_operator_adopts_the_running_job() {
    require_e2e!();
    let (client, mut ns, mut operator, kubeconfig) = setup("aj-fail").await;
    // Its ServiceAccount does not exist: the Job controller can create no
    // pod, and the Job fails at its deadline.
    let (models, jobs, first) = canary_with_a_stuck_job(&client, &ns, 12).await;
    let name = first.metadata.name.clone().unwrap();
    let created = first.metadata.uid.clone();
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
    let (models, jobs, first) = canary_with_a_stuck_job(&client, &ns, 300).await;
    let name = first.metadata.name.clone().unwrap();
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

/// The evaluation the Job runs on the real node (busybox: `sh`, `nc`, `awk`):
/// POSTs the fixed query set from the ConfigMap to the canary's Service,
/// checks the canary answered, writes ranked/expected documents as its
/// termination message and exits 1 when fewer were ranked than expected.
const EVAL_SCRIPT: &str = r#"set -u
d=/etc/mlctl/analysis
case "$MLCTL_CANARY_URL" in
  "http://$MLCTL_MODEL-canary.$MLCTL_NAMESPACE.svc:80") ;;
  *) echo "unexpected MLCTL_CANARY_URL $MLCTL_CANARY_URL" >&2; exit 3 ;;
esac
# The e2e node has no cluster DNS: the canary Service's address comes from
# the environment Kubernetes gives every pod (MLCTL_CANARY_URL elsewhere).
len=$(($(wc -c < $d/request.json)))
# A new Service answers once kube-proxy has its rules: retry (at most ~180 s, inside the Job's 240 s deadline; a loaded CI machine once needed more than 120 s).
for try in $(seq 45); do
  body=$( { printf 'POST /v1/models/%s:rank HTTP/1.0\r\nHost: canary\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n' "$MLCTL_MODEL" "$len"; cat $d/request.json; } | nc -w 3 "$RANKER_CANARY_SERVICE_HOST" 80)
  case "$body" in *"\"$MLCTL_CANARY_VERSION\""*) break ;; esac
  echo "try $try: $(echo "$body" | head -c 300)" >&2
  sleep 1
done
case "$body" in
  *"\"$MLCTL_CANARY_VERSION\""*) ;;
  *) echo "no answer from canary $MLCTL_CANARY_VERSION at $RANKER_CANARY_SERVICE_HOST:" >&2; echo "$body" | head -c 400 >&2; exit 2 ;;
esac
n=$(echo "$body" | grep -o '"score"' | wc -l)
want=$(cat $d/expected)
awk -v n="$n" -v w="$want" 'BEGIN { printf "%g", n / w }' > /dev/termination-log
[ "$n" -ge "$want" ]
"#;

/// Rows of the golden LightGBM ranker's case without missing values.
fn golden_rows(count: usize) -> Vec<serde_json::Value> {
    let dir = mlctl_e2e::workspace_root().join("ranker/golden");
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("lgb_lambdarank.case.json")).unwrap(),
    )
    .unwrap();
    case["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .all(serde_json::Value::is_number)
        })
        .take(count)
        .cloned()
        .collect()
}

fn eval_config(
    rows: &[serde_json::Value],
    expected: usize,
) -> k8s_openapi::api::core::v1::ConfigMap {
    let documents: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| serde_json::json!({"id": i, "features": r}))
        .collect();
    let request = serde_json::json!({"query": "e2e", "documents": documents});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "eval"},
        "data": {
            "eval.sh": EVAL_SCRIPT,
            "request.json": request.to_string(),
            "expected": expected.to_string(),
        },
    }))
    .unwrap()
}

/// The logs of the namespace's analysis Job pods, for a failure message.
async fn job_logs(ns: &mlctl_e2e::TestNamespace) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    let mut out = String::new();
    for pod in pods
        .list(&ListParams::default().labels("mlctl.io/metric=offline-eval"))
        .await
        .unwrap()
        .items
    {
        let name = pod.metadata.name.unwrap_or_default();
        let logs = pods
            .logs(&name, &Default::default())
            .await
            .unwrap_or_default();
        out.push_str(&format!("--- {name}\n{logs}\n"));
    }
    out
}

#[tokio::test]
async fn on_the_real_node_an_eval_job_against_the_canary_service_promotes_or_aborts() {
    mlctl_e2e::require_node!();
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{Patch, PatchParams};
    use mlctl_e2e::node::{self, NODE_IP};

    let (client, ns, _operator, _) = setup("aj-node").await;
    let rows = golden_rows(10);
    assert_eq!(rows.len(), 10, "the golden case has complete rows");
    let golden = mlctl_e2e::workspace_root().join("ranker/golden/lgb_lambdarank.txt");
    let www = node::scratch_dir("www-analysis-job");
    std::fs::copy(&golden, www.join("model.txt")).unwrap();
    let _http = node::file_server(&www, 18090);
    let uri = format!("http://{NODE_IP}:18090/model.txt");
    let sha = node::sha256_hex(&golden);
    let config_maps: Api<ConfigMap> = ns.api();
    let apply = PatchParams::apply("e2e").force();
    // 8 expected of the 10 sent: a canary that ranks them all measures 1.25.
    config_maps
        .patch("eval", &apply, &Patch::Apply(&eval_config(&rows, 8)))
        .await
        .unwrap();
    let busybox = node::busybox_image();
    let model = |version: &str| {
        format!(
            r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model: {{version: "{version}", uri: "{uri}", format: lightgbm, sha256: {sha}}}
  runtime:
{placement}    resources:
      requests: {{cpu: 50m, memory: 64Mi}}
      limits: {{memory: 256Mi}}
  replicas: 1
  rollout:
    steps: [{{setWeight: 50}}, {{analysis: {{metrics: [offline-eval]}}}}]
    analysis:
      templates:
      - name: offline-eval
        provider:
          job:
            image: {busybox}
            command: [sh, /etc/mlctl/analysis/eval.sh]
            configMap: eval
            activeDeadlineSeconds: 240
        successCondition: result >= 1
"#,
            placement = node::placement_yaml(4),
        )
    };
    apply_yaml(&client, ns.name(), &model("v1")).await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", stable_is("v1"), LONG).await;

    let started = Instant::now();
    apply_yaml(&client, ns.name(), &model("v2")).await;
    let m = wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| stable_is("v2")(m) || aborted(m),
        Duration::from_secs(420),
    )
    .await;
    let took = started.elapsed();
    let status = m.status.unwrap();
    let metric = status
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.iter().find(|m| m.name == "offline-eval"))
        .expect("the Job metric was measured")
        .clone();
    if status.history[0].outcome != "Promoted" {
        panic!("{metric:?}\nthe Job's pods said:\n{}", job_logs(&ns).await);
    }
    assert_eq!(
        metric.measurements.last().unwrap().value.as_deref(),
        Some("1.25"),
        "the container's termination message is the result: {metric:?}"
    );
    // The Job ran on the real node (the model's placement).
    let jobs: Api<Job> = ns.api();
    let job = jobs.list(&analysis_jobs()).await.unwrap().items.remove(0);
    let pods: Api<Pod> = ns.api();
    let selector = format!(
        "mlctl.io/analysis-job={}",
        job.metadata.name.as_deref().unwrap()
    );
    let pod = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some(node::name().as_str())
    );

    // The query set now expects more than the canary can rank: the Job
    // exits 1 and the rollout of v3 aborts; v2 keeps serving.
    config_maps
        .patch("eval", &apply, &Patch::Apply(&eval_config(&rows, 999)))
        .await
        .unwrap();
    apply_yaml(&client, ns.name(), &model("v3")).await;
    let m = wait_for(&models, "ranker", aborted, Duration::from_secs(420)).await;
    let status = m.status.unwrap();
    assert_eq!(status.stable.as_ref().unwrap().version, "v2");
    let metric = status
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.iter().find(|m| m.name == "offline-eval"))
        .unwrap();
    assert_eq!(metric.phase, "Failed", "{metric:?}");
    // 10 of 999 ranked (its termination message), or 0 when the script
    // gave up reaching the canary first: a failed Job either way.
    let value = metric.measurements.last().unwrap().value.clone();
    assert!(
        matches!(value.as_deref(), Some("0.01001" | "0")),
        "{metric:?}\n{}",
        job_logs(&ns).await
    );
    let failed = jobs
        .list(&analysis_jobs())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
        })
        .count();
    assert_eq!(failed, 1, "the v3 Job failed by its exit code");
    record_figures(&format!(
        "analysis job (real node): canary v2 → promoted through an eval Job against the canary Service in {:.1}s",
        took.as_secs_f64()
    ));
    ns.finish().await;
}
