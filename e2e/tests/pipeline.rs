//! The FeaturePipeline controller against the real local control plane, with
//! the operator binary bound by the chart's RBAC (the harness of
//! `gate_support`). kwok completes Job pods; the pod template's
//! `podMetadata` carries kwok's knobs (termination message, failure).

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gate_support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mlctl_crds::FeaturePipeline;
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, require_e2e, wait_for, wait_for_deletion,
    wait_for_list, workspace_root,
};
use serde_json::json;

use gate_support::{LONG, setup};

/// A scheduled container pipeline; `extra` is appended under `spec`, and
/// `pod` is the YAML flow map of `engine.container.podMetadata`.
fn pipeline(name: &str, cron: &str, pod: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: {name}
spec:
  trigger:
    schedule: {{cron: "{cron}"}}
  engine:
    container: {{image: busybox:1.36, podMetadata: {pod}}}
  features:
    entityKeys: [doc_id]
    schemaVersion: 3
    fields: [{{name: ctr, dtype: float32}}]
  retries: {{backoffLimit: 0}}
{extra}"#
    )
}

/// Now plus `offset` seconds, in whole seconds.
fn now_seconds(offset: i64) -> Result<k8s_openapi::jiff::Timestamp, k8s_openapi::jiff::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    k8s_openapi::jiff::Timestamp::from_second(now + offset)
}

fn report(watermark: &str) -> String {
    format!(
        "{{annotations: {{mlctl.io/e2e-termination-message: '{{\"watermark\":\"{watermark}\",\"rowsRead\":42,\"rowsWritten\":40}}'}}}}"
    )
}

fn condition(p: Option<&FeaturePipeline>, type_: &str) -> Option<(String, String)> {
    let c = p?.status.as_ref()?.conditions.get(type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn condition_is(
    type_: &'static str,
    status: &'static str,
) -> impl Fn(Option<&FeaturePipeline>) -> bool {
    move |p| condition(p, type_).is_some_and(|(s, _)| s == status)
}

async fn annotate(api: &Api<FeaturePipeline>, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn handled(key: &'static str, value: String) -> impl Fn(Option<&FeaturePipeline>) -> bool {
    move |p| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.handled_requests.get(key) == Some(&value))
    }
}

async fn jobs(ns: &TestNamespace, selector: &str) -> Vec<Job> {
    ns.api::<Job>()
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn the_cron_job_carries_the_schedule_and_a_manual_run_advances_the_watermark() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-run").await;
    let yaml = pipeline(
        "ctr",
        "0 3 * * MON-FRI",
        &report("2026-11-25T10:00:00Z"),
        "  freshness: {maxStaleness: 1h}\n",
    );
    apply_yaml(&client, ns.name(), &yaml).await;
    let cron = wait_for(
        &ns.api::<CronJob>(),
        "ctr",
        |c: Option<&CronJob>| c.is_some(),
        DEFAULT_TIMEOUT,
    )
    .await;
    let spec = cron.spec.unwrap();
    assert_eq!(spec.schedule, "0 3 * * MON-FRI");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.suspend, Some(false));
    let template = spec.job_template.spec.unwrap().template;
    let labels = template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["mlctl.io/pipeline"], "ctr");
    assert_eq!(labels["mlctl.io/trigger"], "schedule");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "mlctl-operator");
    let cm = ns.api::<ConfigMap>().get("ctr-pipeline").await.unwrap();
    let config = &cm.data.unwrap()["pipeline.json"];
    assert!(config.contains("\"schemaVersion\": 3"), "{config}");

    let pipelines = ns.api::<FeaturePipeline>();
    let requested = "2026-11-25T10:05:00.000000001Z".to_string();
    annotate(&pipelines, "ctr", "mlctl.io/run", &requested).await;
    let done = wait_for(
        &pipelines,
        "ctr",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.watermark.is_some() && s.last_successful_time.is_some())
        },
        LONG,
    )
    .await;
    let status = done.status.unwrap();
    assert_eq!(
        status.handled_requests.get("mlctl.io/run"),
        Some(&requested)
    );
    assert_eq!(
        status.watermark.unwrap().0.to_string(),
        "2026-11-25T10:00:00Z"
    );
    let last = status.last_run.unwrap();
    assert_eq!(last.phase, "Succeeded");
    assert_eq!((last.rows_read, last.rows_written), (Some(42), Some(40)));
    assert_eq!(status.schema.map(|s| s.version), Some(3));
    let manual = jobs(&ns, "mlctl.io/pipeline=ctr,mlctl.io/trigger=manual").await;
    assert_eq!(manual.len(), 1);
    assert_eq!(
        manual[0].annotations().get("mlctl.io/request"),
        Some(&requested)
    );
    assert!(manual[0].name_any().len() <= 63);
    ns.finish().await;
}

#[tokio::test]
async fn three_failed_runs_degrade_the_pipeline() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-fail").await;
    let yaml = pipeline(
        "flaky",
        "0 0 1 1 *",
        "{labels: {mlctl.io/e2e-fail: \"true\"}}",
        "",
    );
    apply_yaml(&client, ns.name(), &yaml).await;
    let pipelines = ns.api::<FeaturePipeline>();
    for i in 0..3 {
        let value = format!("2026-11-25T10:0{i}:00Z");
        annotate(&pipelines, "flaky", "mlctl.io/run", &value).await;
        wait_for(&pipelines, "flaky", handled("mlctl.io/run", value), LONG).await;
        wait_for(
            &pipelines,
            "flaky",
            |p: Option<&FeaturePipeline>| {
                p.and_then(|p| p.status.as_ref())
                    .is_some_and(|s| s.active_runs == Some(0))
            },
            LONG,
        )
        .await;
    }
    let p = wait_for(&pipelines, "flaky", condition_is("Degraded", "True"), LONG).await;
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert!(status.watermark.is_none(), "failures never set a watermark");
    assert_eq!(condition(Some(&p), "Fresh").unwrap().1, "NoSuccessfulRun");
    ns.finish().await;
}

#[tokio::test]
async fn fresh_turns_false_when_the_watermark_is_older_than_max_staleness() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-fresh").await;
    let watermark = now_seconds(0).unwrap().to_string();
    let yaml = pipeline(
        "fresh",
        "0 0 1 1 *",
        &report(&watermark),
        "  freshness: {maxStaleness: 20s}\n",
    );
    apply_yaml(&client, ns.name(), &yaml).await;
    let pipelines = ns.api::<FeaturePipeline>();
    annotate(&pipelines, "fresh", "mlctl.io/run", &watermark).await;
    wait_for(&pipelines, "fresh", condition_is("Fresh", "True"), LONG).await;
    let stale = wait_for(&pipelines, "fresh", condition_is("Fresh", "False"), LONG).await;
    let status = stale.status.unwrap();
    let fresh = status.conditions.get("Fresh").unwrap();
    assert_eq!(fresh.reason, "Stale");
    let lag = fresh.last_transition_time.0.as_second()
        - watermark
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
            .as_second();
    assert!(
        (21..=24).contains(&lag),
        "Fresh turned False {lag}s after the watermark; want just past maxStaleness 20s"
    );
    ns.finish().await;
}

#[tokio::test]
async fn a_backfill_runs_each_interval_once_and_a_repeat_runs_none() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-backfill").await;
    apply_yaml(&client, ns.name(), &pipeline("bf", "0 0 1 1 *", "{}", "")).await;
    let pipelines = ns.api::<FeaturePipeline>();
    let request = |at: &str| {
        format!(
            r#"{{"from":"2026-11-01T00:00:00Z","to":"2026-11-01T03:00:00Z","step":"1h","maxParallel":2,"requestedAt":"{at}"}}"#
        )
    };
    let succeeded = |at: &'static str| {
        move |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.backfill.as_ref())
                .is_some_and(|b| b.requested_at == at && b.phase == "Succeeded")
        }
    };
    annotate(&pipelines, "bf", "mlctl.io/backfill", &request("r1")).await;
    let p = wait_for(&pipelines, "bf", succeeded("r1"), LONG).await;
    let b = p.status.unwrap().backfill.unwrap();
    assert_eq!((b.total, b.succeeded, b.failed), (3, 3, 0));
    let runs = jobs(&ns, "mlctl.io/pipeline=bf,mlctl.io/trigger=backfill").await;
    let mut starts: Vec<String> = runs
        .iter()
        .map(|j| j.labels()["mlctl.io/interval-start"].clone())
        .collect();
    starts.sort();
    let t0 = "2026-11-01T00:00:00Z"
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert_eq!(
        starts,
        [t0, t0 + 3600, t0 + 7200].map(|t| t.to_string()).to_vec()
    );
    let env = runs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(|e| e.name == "MLCTL_INTERVAL_START"));
    assert!(env.iter().any(|e| e.name == "MLCTL_INTERVAL_END"));

    annotate(&pipelines, "bf", "mlctl.io/backfill", &request("r2")).await;
    let p = wait_for(&pipelines, "bf", succeeded("r2"), LONG).await;
    assert_eq!(p.status.unwrap().backfill.unwrap().succeeded, 3);
    let again = jobs(&ns, "mlctl.io/pipeline=bf,mlctl.io/trigger=backfill").await;
    assert_eq!(again.len(), 3, "the repeat created no run");

    // A malformed request: Failed with the field named, nothing else lost.
    annotate(
        &pipelines,
        "bf",
        "mlctl.io/backfill",
        r#"{"from":"yesterday","to":"2026-11-01T03:00:00Z","step":"1h","requestedAt":"r3"}"#,
    )
    .await;
    let p = wait_for(
        &pipelines,
        "bf",
        handled("mlctl.io/backfill", "r3".into()),
        LONG,
    )
    .await;
    let b = p.status.unwrap().backfill.unwrap();
    assert_eq!(b.phase, "Failed");
    assert!(b.message.unwrap().contains("from"));
    ns.finish().await;
}

#[tokio::test]
async fn suspend_stops_the_cron_job_and_resuming_lets_it_create_a_run() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-cron").await;
    let yaml = pipeline("every", "* * * * *", &report("2026-11-25T00:00:00Z"), "");
    let suspended = yaml.replace(
        "schedule: {cron: \"* * * * *\"}",
        "schedule: {cron: \"* * * * *\", suspend: true}",
    );
    apply_yaml(&client, ns.name(), &suspended).await;
    let pipelines = ns.api::<FeaturePipeline>();
    let p = wait_for(
        &pipelines,
        "every",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.phase.as_deref() == Some("Suspended"))
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    assert!(p.status.unwrap().next_schedule_time.is_none());
    let cron = ns.api::<CronJob>().get("every").await.unwrap();
    assert_eq!(cron.spec.unwrap().suspend, Some(true));

    // Resume: the real CronJob controller creates a run within a minute.
    apply_yaml(&client, ns.name(), &yaml).await;
    let runs = wait_for_list(
        &ns.api::<Job>(),
        watcher::Config::default().labels("mlctl.io/pipeline=every,mlctl.io/trigger=schedule"),
        |jobs: &[Job]| !jobs.is_empty(),
        Duration::from_secs(90),
    )
    .await;
    assert!(runs[0].name_any().starts_with("every-"));
    let p = wait_for(
        &pipelines,
        "every",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.last_schedule_time.is_some() && s.last_successful_time.is_some())
        },
        LONG,
    )
    .await;
    assert!(p.status.unwrap().next_schedule_time.is_some());
    ns.finish().await;
}

fn spark_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sparkoperator.k8s.io",
        "v1beta2",
        "SparkApplication",
    ))
}

/// Moves an application to `state` as the Spark operator would.
async fn set_spark_state(api: &Api<DynamicObject>, name: &str, state: &str) {
    let now = now_seconds(0).unwrap();
    let mut status =
        json!({"applicationState": {"state": state}, "submissionTime": now.to_string()});
    if state == "COMPLETED" || state == "FAILED" {
        status["terminationTime"] = json!(now.to_string());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// The only test that touches the SparkApplication CRD (cluster-scoped):
/// without it the pipeline waits with SparkOperatorMissing; once it appears
/// the operator schedules runs itself, counts missed ones and tracks the
/// application state.
#[tokio::test]
async fn spark_waits_for_its_operator_then_schedules_runs_and_counts_missed_ones() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-spark").await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = "sparkapplications.sparkoperator.k8s.io";
    if crds.get_opt(crd_name).await.unwrap().is_some() {
        crds.delete(crd_name, &Default::default()).await.unwrap();
        wait_for_deletion(&crds, crd_name, LONG).await;
    }
    let yaml = r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: sp
spec:
  trigger:
    schedule: {cron: "* * * * *", startingDeadlineSeconds: 30, suspend: true}
  engine:
    spark: {image: "spark:3.5.3", sparkVersion: "3.5.3", sql: "SELECT 1"}
  sinks:
    - name: online
      cassandra: {contactPoints: ["cassandra:9042"], keyspace: features, table: ctr}
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{name: ctr, dtype: float32}]
"#;
    apply_yaml(&client, ns.name(), yaml).await;
    let pipelines = ns.api::<FeaturePipeline>();
    let p = wait_for(
        &pipelines,
        "sp",
        condition_is("Ready", "False"),
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(
        condition(Some(&p), "Ready").unwrap().1,
        "SparkOperatorMissing"
    );

    let crd =
        std::fs::read_to_string(workspace_root().join("e2e/testdata/spark/crd.yaml")).unwrap();
    apply_yaml(&client, "default", &crd).await;
    wait_for(
        &crds,
        crd_name,
        kube::runtime::wait::conditions::is_crd_established(),
        DEFAULT_TIMEOUT,
    )
    .await;
    // The operator re-checks discovery within 30 s.
    wait_for(&pipelines, "sp", condition_is("Ready", "True"), LONG).await;

    // Ten minutes of due times were never started: pretend the last
    // schedule was then, and resume.
    let ten_minutes_ago = now_seconds(-600).unwrap();
    pipelines
        .patch_status(
            "sp",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastScheduleTime": ten_minutes_ago.to_string()}})),
        )
        .await
        .unwrap();
    apply_yaml(&client, ns.name(), &yaml.replace(", suspend: true", "")).await;
    let p = wait_for(
        &pipelines,
        "sp",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.missed_runs.unwrap_or(0) >= 8)
        },
        LONG,
    )
    .await;
    let missed = p.status.as_ref().unwrap().missed_runs.unwrap();
    assert!(missed <= 11, "missed {missed}");
    // The latest due time inside the deadline runs (or the next one, when
    // the resume came more than 30 s after a minute began).
    wait_for(
        &pipelines,
        "sp",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.last_run.is_some())
        },
        LONG,
    )
    .await;
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns.name(), &spark_resource());
    let list = apps
        .list(&ListParams::default().labels("mlctl.io/pipeline=sp,mlctl.io/trigger=schedule"))
        .await
        .unwrap()
        .items;
    assert!(!list.is_empty(), "the latest due time in the deadline runs");
    let app = &list[0];
    let name = app.name_any();
    assert_eq!(
        app.data["spec"]["mainClass"],
        "org.apache.spark.sql.hive.thriftserver.SparkSQLCLIDriver"
    );
    assert_eq!(
        app.data["spec"]["sparkConf"]["spark.cassandra.connection.host"],
        "cassandra"
    );

    set_spark_state(&apps, &name, "SUBMITTED").await;
    set_spark_state(&apps, &name, "RUNNING").await;
    wait_for(
        &pipelines,
        "sp",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.phase == "Running")
        },
        LONG,
    )
    .await;
    set_spark_state(&apps, &name, "COMPLETED").await;
    let p = wait_for(
        &pipelines,
        "sp",
        |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.last_successful_time.is_some())
        },
        LONG,
    )
    .await;
    assert_eq!(condition(Some(&p), "Fresh").unwrap().0, "True");
    ns.finish().await;
}

#[tokio::test]
async fn a_streaming_container_pipeline_is_a_deployment_and_fresh_while_it_runs() {
    require_e2e!();
    let (client, ns, _op) = setup("fp-stream").await;
    let yaml = r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: live
spec:
  trigger:
    streaming: {replicas: 2}
  engine:
    container: {image: busybox:1.36, podMetadata: {labels: {cost-center: ranking}}}
  sources:
    - name: clicks
      kafka: {bootstrapServers: "kafka:9092", topic: clicks}
  features:
    entityKeys: [doc_id]
    schemaVersion: 4
    fields: [{name: ctr, dtype: float32}]
"#;
    apply_yaml(&client, ns.name(), yaml).await;
    let deployment = wait_for(
        &ns.api::<k8s_openapi::api::apps::v1::Deployment>(),
        "live",
        |d: Option<&k8s_openapi::api::apps::v1::Deployment>| d.is_some(),
        DEFAULT_TIMEOUT,
    )
    .await;
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["cost-center"], "ranking");
    assert_eq!(labels["mlctl.io/pipeline"], "live");
    let p = wait_for(
        &ns.api::<FeaturePipeline>(),
        "live",
        condition_is("Fresh", "True"),
        LONG,
    )
    .await;
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Streaming"));
    assert_eq!(status.trigger.as_deref(), Some("streaming"));
    assert_eq!(status.schema.as_ref().map(|s| s.version), Some(4));
    assert_eq!(condition(Some(&p), "Ready").unwrap().1, "Streaming");
    ns.finish().await;
}
