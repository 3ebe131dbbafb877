use std::collections::BTreeMap;

use mlctl_crds::featurepipeline::{
    ContainerEngine, Engine, FeatureField, FeatureSchema, Freshness, Schedule, SparkEngine,
    Streaming, Trigger,
};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec(cron: &str) -> FeaturePipelineSpec {
    FeaturePipelineSpec {
        trigger: Trigger {
            schedule: Some(Schedule {
                cron: cron.into(),
                ..Schedule::default()
            }),
            streaming: None,
        },
        engine: Engine {
            container: Some(ContainerEngine {
                image: "ghcr.io/acme/features:1".into(),
                ..ContainerEngine::default()
            }),
            spark: None,
        },
        sources: vec![],
        sinks: vec![],
        features: FeatureSchema {
            entity_keys: vec!["doc_id".into()],
            schema_version: 2,
            fields: vec![FeatureField {
                name: "ctr".into(),
                dtype: mlctl_crds::featurepipeline::Dtype::Float32,
            }],
        },
        freshness: None,
        retries: None,
        notifications: Vec::new(),
    }
}

fn spark(mut s: FeaturePipelineSpec) -> FeaturePipelineSpec {
    s.engine = Engine {
        container: None,
        spark: Some(SparkEngine {
            image: "spark:3.5.3".into(),
            spark_version: "3.5.3".into(),
            sql: Some("SELECT 1".into()),
            ..SparkEngine::default()
        }),
    };
    s
}

fn run(name: &str, trigger: RunTrigger, phase: RunPhase, finished: Option<&str>) -> ObservedRun {
    ObservedRun {
        name: name.into(),
        trigger,
        interval_start: None,
        phase,
        created_at: Some(ts("2026-11-25T09:00:00Z")),
        started_at: finished.map(|f| ts(f) - jiff::SignedDuration::from_secs(30)),
        finished_at: finished.map(ts),
        report: None,
        schema: None,
    }
}

struct World {
    annotations: BTreeMap<String, String>,
    runs: Vec<ObservedRun>,
    now: Timestamp,
    spark_available: bool,
    streaming_ready: bool,
}

impl World {
    fn new(now: &str) -> Self {
        World {
            annotations: BTreeMap::new(),
            runs: vec![],
            now: ts(now),
            spark_available: true,
            streaming_ready: false,
        }
    }

    fn decide(&self, spec: &FeaturePipelineSpec, status: &FeaturePipelineStatus) -> Decision {
        decide(
            spec,
            status,
            &Observed {
                name: "ctr",
                generation: Some(1),
                created_at: ts("2026-11-25T08:00:30Z"),
                now: self.now,
                annotations: &self.annotations,
                runs: &self.runs,
                spark_available: self.spark_available,
                cron_job_last_schedule: None,
                streaming_ready: self.streaming_ready,
            },
        )
    }
}

fn cond<'a>(d: &'a Decision, type_: &str) -> (&'a str, &'a str) {
    let c = d.status.conditions.get(type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_scheduled_container_pipeline_is_a_cron_job_and_ready() {
    let w = World::new("2026-11-25T10:20:00Z");
    let d = w.decide(&spec("@hourly"), &FeaturePipelineStatus::default());
    assert_eq!(d.workload, Workload::CronJob);
    assert!(d.apply);
    assert!(d.create.is_empty());
    assert_eq!(cond(&d, "Ready"), ("True", "Scheduled"));
    assert_eq!(cond(&d, "Fresh"), ("False", "NoSuccessfulRun"));
    assert_eq!(
        d.status
            .next_schedule_time
            .as_ref()
            .map(|t| t.0.to_string()),
        Some("2026-11-25T11:00:00Z".into())
    );
    assert_eq!(d.status.phase.as_deref(), Some("Pending"));
    assert_eq!(d.status.trigger.as_deref(), Some("@hourly"));
    // A second pass over its own status changes nothing.
    let again = w.decide(&spec("@hourly"), &d.status);
    assert_eq!(again.status, d.status);
    assert!(again.events.is_empty());
}

#[test]
fn an_invalid_schedule_is_not_ready_and_applies_nothing() {
    let w = World::new("2026-11-25T10:20:00Z");
    let d = w.decide(&spec("61 * * * *"), &FeaturePipelineStatus::default());
    assert!(!d.apply);
    assert_eq!(cond(&d, "Ready"), ("False", "InvalidSchedule"));
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "InvalidSchedule")
    );
    let mut s = spec("@daily");
    s.trigger.schedule.as_mut().unwrap().time_zone = Some("Nowhere/Land".into());
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    assert!(d.status.message.unwrap().contains("timeZone"));
}

#[test]
fn success_advances_the_watermark_and_never_back() {
    let mut w = World::new("2026-11-25T10:20:00Z");
    let mut ok = run(
        "ctr-1",
        RunTrigger::Schedule,
        RunPhase::Succeeded,
        Some("2026-11-25T10:01:00Z"),
    );
    ok.report =
        parse_report(r#"{"watermark":"2026-11-25T10:00:00Z","rowsRead":10,"rowsWritten":7}"#);
    ok.schema = Some(SchemaStatus {
        version: 2,
        hash: "h".into(),
    });
    let mut failed = run(
        "ctr-2",
        RunTrigger::Schedule,
        RunPhase::Failed,
        Some("2026-11-25T10:15:00Z"),
    );
    failed.report = parse_report(r#"{"watermark":"2026-11-25T10:14:00Z"}"#);
    w.runs = vec![ok, failed];
    let d = w.decide(&spec("@hourly"), &FeaturePipelineStatus::default());
    assert_eq!(
        d.status.watermark.as_ref().map(|t| t.0.to_string()),
        Some("2026-11-25T10:00:00Z".into()),
        "a failed run does not move the watermark"
    );
    assert_eq!(
        d.status
            .last_successful_time
            .as_ref()
            .map(|t| t.0.to_string()),
        Some("2026-11-25T10:01:00Z".into())
    );
    assert_eq!(d.status.schema.as_ref().map(|s| s.version), Some(2));
    let last = d.status.last_run.clone().unwrap();
    assert_eq!(
        (last.name.as_str(), last.phase.as_str()),
        ("ctr-2", "Failed")
    );
    assert_eq!(cond(&d, "Fresh"), ("True", "RunSucceeded"));
    // A later success with an older watermark keeps the newer one.
    let mut older = run(
        "ctr-3",
        RunTrigger::Manual,
        RunPhase::Succeeded,
        Some("2026-11-25T10:18:00Z"),
    );
    older.report = parse_report("log line\n{\"watermark\":\"2026-11-25T09:00:00Z\"}");
    w.runs = vec![older];
    let d2 = w.decide(&spec("@hourly"), &d.status);
    assert_eq!(d2.status.watermark, d.status.watermark);
    assert_eq!(
        d2.status
            .last_successful_time
            .as_ref()
            .map(|t| t.0.to_string()),
        Some("2026-11-25T10:18:00Z".into())
    );
}

#[test]
fn fresh_flips_exactly_after_max_staleness_with_a_requeue_at_the_deadline() {
    let mut s = spec("@hourly");
    s.freshness = Some(Freshness {
        max_staleness: "20s".into(),
    });
    let mut w = World::new("2026-11-25T10:00:10Z");
    let mut ok = run(
        "ctr-1",
        RunTrigger::Schedule,
        RunPhase::Succeeded,
        Some("2026-11-25T10:00:05Z"),
    );
    ok.report = parse_report(r#"{"watermark":"2026-11-25T10:00:00Z"}"#);
    w.runs = vec![ok];
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    assert_eq!(cond(&d, "Fresh"), ("True", "WithinObjective"));
    // 10s old, allowed 20s: stale at 21s old, i.e. in 11s.
    assert_eq!(d.requeue_after, Some(Duration::from_secs(11)));
    w.now = ts("2026-11-25T10:00:20Z");
    let at_limit = w.decide(&s, &d.status);
    assert_eq!(cond(&at_limit, "Fresh"), ("True", "WithinObjective"));
    assert_eq!(
        at_limit.status, d.status,
        "no status write before the deadline"
    );
    w.now = ts("2026-11-25T10:00:21Z");
    let stale = w.decide(&s, &d.status);
    assert_eq!(cond(&stale, "Fresh"), ("False", "Stale"));
    assert!(
        stale
            .events
            .iter()
            .any(|e| e.warning && e.reason == "Stale")
    );
}

#[test]
fn three_failures_in_a_row_degrade_and_a_success_recovers() {
    let mut w = World::new("2026-11-25T10:20:00Z");
    w.runs = vec![
        run(
            "a",
            RunTrigger::Schedule,
            RunPhase::Succeeded,
            Some("2026-11-25T10:00:00Z"),
        ),
        run(
            "b",
            RunTrigger::Schedule,
            RunPhase::Failed,
            Some("2026-11-25T10:01:00Z"),
        ),
        run(
            "c",
            RunTrigger::Schedule,
            RunPhase::Failed,
            Some("2026-11-25T10:02:00Z"),
        ),
    ];
    let d = w.decide(&spec("@hourly"), &FeaturePipelineStatus::default());
    assert_eq!(cond(&d, "Degraded").0, "False");
    w.runs.push(run(
        "d",
        RunTrigger::Manual,
        RunPhase::Failed,
        Some("2026-11-25T10:03:00Z"),
    ));
    let d = w.decide(&spec("@hourly"), &d.status);
    assert_eq!(cond(&d, "Degraded"), ("True", "RunsFailing"));
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "RunsFailing")
    );
    w.runs.push(run(
        "e",
        RunTrigger::Manual,
        RunPhase::Succeeded,
        Some("2026-11-25T10:04:00Z"),
    ));
    let d = w.decide(&spec("@hourly"), &d.status);
    assert_eq!(cond(&d, "Degraded"), ("False", "RunSucceeded"));
}

#[test]
fn a_run_request_is_acted_on_once() {
    let mut w = World::new("2026-11-25T10:20:00Z");
    w.annotations.insert(
        mlctl_crds::requests::RUN.into(),
        "2026-11-25T10:19:00Z".into(),
    );
    let d = w.decide(&spec("@hourly"), &FeaturePipelineStatus::default());
    assert_eq!(d.create.len(), 1);
    let plan = &d.create[0];
    assert_eq!(plan.trigger, RunTrigger::Manual);
    assert_eq!(plan.request.as_deref(), Some("2026-11-25T10:19:00Z"));
    assert!(plan.name.starts_with("ctr-m"));
    assert_eq!(
        d.status.handled_requests.get(mlctl_crds::requests::RUN),
        Some(&"2026-11-25T10:19:00Z".to_string())
    );
    let again = w.decide(&spec("@hourly"), &d.status);
    assert!(again.create.is_empty());
}

fn backfill_value(max_parallel: i32, requested_at: &str) -> String {
    format!(
        r#"{{"from":"2026-11-01T00:00:00Z","to":"2026-11-01T05:00:00Z","step":"1h","maxParallel":{max_parallel},"requestedAt":"{requested_at}"}}"#
    )
}

fn backfill_run(start: Timestamp, phase: RunPhase) -> ObservedRun {
    let mut r = run(
        &naming::backfill_run_name("ctr", start.as_second()),
        RunTrigger::Backfill,
        phase,
        (!phase.is_active()).then_some("2026-11-25T10:10:00Z"),
    );
    r.interval_start = Some(start.as_second());
    r
}

#[test]
fn a_backfill_runs_each_interval_once_with_at_most_max_parallel() {
    let mut w = World::new("2026-11-25T10:20:00Z");
    w.annotations.insert(
        mlctl_crds::requests::BACKFILL.into(),
        backfill_value(2, "r1"),
    );
    let s = spec("@hourly");
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    let b = d.status.backfill.clone().unwrap();
    assert_eq!((b.phase.as_str(), b.total, b.running), ("Running", 5, 2));
    assert_eq!(d.create.len(), 2);
    let first = &d.create[0];
    assert_eq!(first.trigger, RunTrigger::Backfill);
    let (start, end) = first.interval.unwrap();
    assert_eq!(start.to_string(), "2026-11-01T00:00:00Z");
    assert_eq!(end.to_string(), "2026-11-01T01:00:00Z");
    assert_eq!(first.name, format!("ctr-b{}", start.as_second()));
    assert_eq!(
        d.status
            .handled_requests
            .get(mlctl_crds::requests::BACKFILL),
        Some(&"r1".to_string())
    );

    // Two running: nothing more starts.
    w.runs = d
        .create
        .iter()
        .map(|p| backfill_run(p.interval.unwrap().0, RunPhase::Running))
        .collect();
    let d2 = w.decide(&s, &d.status);
    assert!(d2.create.is_empty());

    // All done, one failed.
    let starts: Vec<Timestamp> = (0..5)
        .map(|i| ts("2026-11-01T00:00:00Z") + jiff::SignedDuration::from_hours(i))
        .collect();
    w.runs = starts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            backfill_run(
                *t,
                if i == 3 {
                    RunPhase::Failed
                } else {
                    RunPhase::Succeeded
                },
            )
        })
        .collect();
    let d3 = w.decide(&s, &d2.status);
    let b = d3.status.backfill.clone().unwrap();
    assert_eq!((b.phase.as_str(), b.succeeded, b.failed), ("Failed", 4, 1));
    assert!(d3.create.is_empty());

    // The same backfill again: only the failed interval runs again.
    w.annotations.insert(
        mlctl_crds::requests::BACKFILL.into(),
        backfill_value(2, "r2"),
    );
    let d4 = w.decide(&s, &d3.status);
    assert_eq!(
        d4.delete,
        vec![naming::backfill_run_name("ctr", starts[3].as_second())]
    );
    assert_eq!(d4.create.len(), 1);
    assert_eq!(d4.create[0].interval.unwrap().0, starts[3]);
    let b = d4.status.backfill.unwrap();
    assert_eq!(
        (b.phase.as_str(), b.succeeded, b.running),
        ("Running", 4, 1)
    );
}

#[test]
fn a_malformed_backfill_fails_with_a_message_and_nothing_else_is_lost() {
    let mut w = World::new("2026-11-25T10:20:00Z");
    w.annotations.insert(
        mlctl_crds::requests::BACKFILL.into(),
        r#"{"from":"2026-11-01","to":"2026-11-02T00:00:00Z","step":"1h","requestedAt":"r1"}"#
            .into(),
    );
    let mut previous = FeaturePipelineStatus::default();
    previous
        .handled_requests
        .insert(mlctl_crds::requests::RUN.into(), "x".into());
    let d = w.decide(&spec("@hourly"), &previous);
    let b = d.status.backfill.unwrap();
    assert_eq!(b.phase, "Failed");
    assert!(b.message.unwrap().contains("from"));
    assert!(d.create.is_empty());
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "InvalidBackfill")
    );
    assert_eq!(d.status.handled_requests.len(), 2);
}

#[test]
fn spark_schedules_runs_itself_and_counts_missed_ones() {
    let mut s = spark(spec("*/10 * * * *"));
    s.trigger
        .schedule
        .as_mut()
        .unwrap()
        .starting_deadline_seconds = Some(300);
    // Created 08:00:30; now 09:02: due 08:10 … 09:00 (6 times); only 09:00 is
    // within 300 s.
    let w = World::new("2026-11-25T09:02:00Z");
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    assert_eq!(d.workload, Workload::None);
    assert_eq!(d.create.len(), 1);
    let due = ts("2026-11-25T09:00:00Z");
    assert_eq!(d.create[0].name, format!("ctr-s{}", due.as_second()));
    assert_eq!(d.create[0].scheduled_at, Some(due));
    assert_eq!(d.status.missed_runs, Some(5));
    assert!(
        d.events
            .iter()
            .any(|e| e.warning && e.reason == "MissedRuns")
    );
    assert_eq!(d.status.last_schedule_time.as_ref().map(|t| t.0), Some(due));
    // Requeue at the next due time (09:10), 480 s away.
    assert_eq!(d.requeue_after, Some(Duration::from_secs(480)));
    // Next pass: nothing new is due.
    let again = w.decide(&s, &d.status);
    assert!(again.create.is_empty());
    assert_eq!(again.status.missed_runs, Some(5));
}

#[test]
fn spark_forbid_waits_for_the_active_run() {
    let s = spark(spec("*/10 * * * *"));
    let mut w = World::new("2026-11-25T09:10:05Z");
    let previous = FeaturePipelineStatus {
        last_schedule_time: Some(Time(ts("2026-11-25T09:00:00Z"))),
        ..FeaturePipelineStatus::default()
    };
    w.runs = vec![run("ctr-s1", RunTrigger::Schedule, RunPhase::Running, None)];
    let d = w.decide(&s, &previous);
    assert!(d.create.is_empty());
    assert_eq!(d.status.last_schedule_time, previous.last_schedule_time);
    assert_eq!(d.requeue_after, Some(SPARK_POLL));
    w.runs[0].phase = RunPhase::Succeeded;
    w.runs[0].finished_at = Some(ts("2026-11-25T09:10:03Z"));
    let d = w.decide(&s, &previous);
    assert_eq!(d.create.len(), 1);
}

#[test]
fn spark_without_its_operator_waits_with_a_bounded_requeue() {
    let mut w = World::new("2026-11-25T09:02:00Z");
    w.spark_available = false;
    let d = w.decide(&spark(spec("@hourly")), &FeaturePipelineStatus::default());
    assert_eq!(cond(&d, "Ready"), ("False", "SparkOperatorMissing"));
    assert!(!d.apply);
    assert!(d.create.is_empty());
    assert_eq!(d.requeue_after, Some(SPARK_DISCOVERY_RETRY));
    w.spark_available = true;
    let d2 = w.decide(&spark(spec("@hourly")), &d.status);
    assert_eq!(cond(&d2, "Ready").0, "True");
    assert_eq!(d2.create.len(), 1, "the 09:00 run is due");
}

#[test]
fn suspend_stops_scheduling() {
    let mut s = spark(spec("*/10 * * * *"));
    s.trigger.schedule.as_mut().unwrap().suspend = Some(true);
    let w = World::new("2026-11-25T09:02:00Z");
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase.as_deref(), Some("Suspended"));
    assert_eq!(d.status.next_schedule_time, None);
    assert_eq!(cond(&d, "Ready"), ("True", "Suspended"));
}

#[test]
fn spark_history_limits_delete_the_oldest_finished_runs() {
    let s = spark(spec("@hourly"));
    let mut w = World::new("2026-11-25T10:20:00Z");
    let previous = FeaturePipelineStatus {
        last_schedule_time: Some(Time(ts("2026-11-25T10:00:00Z"))),
        ..FeaturePipelineStatus::default()
    };
    w.runs = (0..5)
        .map(|i| {
            run(
                &format!("ctr-s{i}"),
                RunTrigger::Schedule,
                RunPhase::Succeeded,
                Some(&format!("2026-11-25T0{i}:00:00Z")),
            )
        })
        .collect();
    let d = w.decide(&s, &previous);
    assert_eq!(d.delete, vec!["ctr-s1".to_string(), "ctr-s0".to_string()]);
}

#[test]
fn streaming_is_a_deployment_or_an_application() {
    let mut s = spec("x");
    s.trigger = Trigger {
        schedule: None,
        streaming: Some(Streaming { replicas: Some(2) }),
    };
    let mut w = World::new("2026-11-25T10:20:00Z");
    let d = w.decide(&s, &FeaturePipelineStatus::default());
    assert_eq!(d.workload, Workload::StreamingDeployment);
    assert_eq!(d.status.phase.as_deref(), Some("Streaming"));
    assert_eq!(cond(&d, "Ready"), ("False", "StreamingPending"));
    w.streaming_ready = true;
    let d = w.decide(&s, &d.status);
    assert_eq!(cond(&d, "Ready"), ("True", "Streaming"));
    assert_eq!(cond(&d, "Fresh"), ("True", "Streaming"));
    assert_eq!(d.status.schema.as_ref().map(|s| s.version), Some(2));
    let d = w.decide(&spark(s.clone()), &d.status);
    assert_eq!(d.workload, Workload::StreamingSpark);
    assert_eq!(d.requeue_after, Some(SPARK_STREAMING_CHECK));
    w.streaming_ready = false;
    let d = w.decide(&spark(s), &d.status);
    assert_eq!(d.requeue_after, Some(SPARK_POLL));
}

#[test]
fn metrics_count_runs_and_export_the_freshness_lag() {
    let m = crate::telemetry::Metrics::new();
    m.pipeline_run("ml", "ctr", "succeeded");
    m.pipeline_run("ml", "ctr", "failed");
    m.pipeline_run("ml", "ctr", "failed");
    let an_hour_ago = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    m.set_pipeline_freshness("ml", "ctr", Some(FreshnessReference::Since(an_hour_ago)));
    // A running stream's features are current: lag 0 however long it runs.
    m.set_pipeline_freshness("ml", "clicks", Some(FreshnessReference::Current));
    let text = m.encode();
    assert!(
        text.contains(
            r#"mlctl_pipeline_freshness_lag_seconds{namespace="ml",pipeline="clicks"} 0"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"mlctl_pipeline_runs_total{namespace="ml",pipeline="ctr",outcome="failed"} 2"#
        ),
        "{text}"
    );
    let lag: i64 = text
        .lines()
        .find(|l| {
            l.starts_with(r#"mlctl_pipeline_freshness_lag_seconds{namespace="ml",pipeline="ctr"}"#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((3600..3610).contains(&lag), "{lag}");
    m.forget_pipeline("ml", "ctr");
    assert!(!m.encode().contains(r#"pipeline="ctr""#));
}

mod rendering {
    use super::*;

    fn pref() -> PipelineRef {
        PipelineRef {
            name: "ctr".into(),
            namespace: "ml".into(),
            owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "mlctl.io/v1alpha1".into(),
                kind: "FeaturePipeline".into(),
                name: "ctr".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        }
    }

    #[test]
    fn the_cron_job_carries_the_schedule_and_the_run_contract() {
        let mut s = spec("*/5 * * * *");
        {
            let sch = s.trigger.schedule.as_mut().unwrap();
            sch.time_zone = Some("Europe/Berlin".into());
            sch.starting_deadline_seconds = Some(60);
        }
        s.retries = Some(mlctl_crds::featurepipeline::Retries {
            backoff_limit: Some(1),
            active_deadline_seconds: Some(600),
        });
        let cj = render::cron_job(&pref(), &s);
        let v = serde_json::to_value(&cj).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["schedule"], "*/5 * * * *");
        assert_eq!(spec["timeZone"], "Europe/Berlin");
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["startingDeadlineSeconds"], 60);
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        let job = &spec["jobTemplate"]["spec"];
        assert_eq!(job["backoffLimit"], 1);
        assert_eq!(job["activeDeadlineSeconds"], 600);
        assert_eq!(job["ttlSecondsAfterFinished"], 86400);
        let pod = &job["template"];
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["metadata"]["labels"]["mlctl.io/pipeline"], "ctr");
        assert_eq!(pod["metadata"]["labels"]["mlctl.io/trigger"], "schedule");
        assert_eq!(
            spec["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "mlctl-operator"
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["volumeMounts"][0]["mountPath"], render::CONFIG_DIR);
        assert_eq!(
            pod["spec"]["volumes"][0]["configMap"]["name"],
            "ctr-pipeline"
        );
        assert!(
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "MLCTL_PIPELINE_CONFIG")
        );
    }

    #[test]
    fn a_backfill_job_gets_its_interval_and_labels() {
        let plan = RunPlan {
            name: "ctr-b3600".into(),
            trigger: RunTrigger::Backfill,
            request: None,
            interval: Some((ts("1970-01-01T01:00:00Z"), ts("1970-01-01T02:00:00Z"))),
            scheduled_at: None,
        };
        let job = serde_json::to_value(render::run_job(&pref(), &spec("@daily"), &plan)).unwrap();
        assert_eq!(job["metadata"]["labels"]["mlctl.io/trigger"], "backfill");
        assert_eq!(job["metadata"]["labels"]["mlctl.io/interval-start"], "3600");
        assert_eq!(
            job["metadata"]["ownerReferences"][0]["kind"],
            "FeaturePipeline"
        );
        let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        let get = |n: &str| {
            env.iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].clone())
        };
        assert_eq!(
            get("MLCTL_INTERVAL_START"),
            Some("1970-01-01T01:00:00Z".into())
        );
        assert_eq!(
            get("MLCTL_INTERVAL_END"),
            Some("1970-01-01T02:00:00Z".into())
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["mlctl.io/trigger"],
            "backfill"
        );
    }

    #[test]
    fn pod_metadata_is_added_but_never_overrides_the_operator_labels() {
        let mut s = spec("@daily");
        s.engine.container.as_mut().unwrap().pod_metadata =
            Some(mlctl_crds::rankingmodel::PodMetadata {
                labels: BTreeMap::from([
                    ("cost-center".into(), "ranking".into()),
                    ("mlctl.io/pipeline".into(), "other".into()),
                ]),
                annotations: BTreeMap::from([("a".into(), "b".into())]),
            });
        let cj = serde_json::to_value(render::cron_job(&pref(), &s)).unwrap();
        let meta = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"];
        assert_eq!(meta["labels"]["cost-center"], "ranking");
        assert_eq!(meta["labels"]["mlctl.io/pipeline"], "ctr");
        assert_eq!(meta["annotations"]["a"], "b");
    }

    #[test]
    fn spark_applications_carry_sql_connectors_and_restart_policy() {
        let mut s = spark(spec("@daily"));
        s.sources = vec![mlctl_crds::featurepipeline::Source {
            name: "clicks".into(),
            kafka: Some(mlctl_crds::featurepipeline::KafkaSource {
                bootstrap_servers: "kafka:9092".into(),
                topic: "clicks".into(),
                starting_offsets: None,
            }),
            table: None,
        }];
        s.sinks = vec![mlctl_crds::featurepipeline::Sink {
            name: "online".into(),
            cassandra: Some(mlctl_crds::featurepipeline::CassandraSink {
                contact_points: vec!["cass-0:9042".into(), "cass-1:9042".into()],
                keyspace: "features".into(),
                table: "ctr".into(),
            }),
            redis: None,
            parquet: None,
        }];
        let plan = RunPlan {
            name: "ctr-s60".into(),
            trigger: RunTrigger::Schedule,
            request: None,
            interval: None,
            scheduled_at: Some(ts("1970-01-01T00:01:00Z")),
        };
        let app = render::spark_application(&pref(), &s, Some(&plan));
        assert_eq!(app["apiVersion"], "sparkoperator.k8s.io/v1beta2");
        assert_eq!(app["metadata"]["name"], "ctr-s60");
        assert_eq!(app["metadata"]["labels"]["mlctl.io/trigger"], "schedule");
        let spec = &app["spec"];
        assert_eq!(spec["mainClass"], render::SPARK_SQL_MAIN_CLASS);
        assert_eq!(spec["arguments"][1], "/etc/mlctl/pipeline/query.sql");
        assert_eq!(spec["restartPolicy"]["type"], "OnFailure");
        assert_eq!(spec["timeToLiveSeconds"], 86400);
        assert_eq!(
            spec["sparkConf"]["spark.cassandra.connection.host"],
            "cass-0,cass-1"
        );
        assert_eq!(spec["sparkConf"]["spark.cassandra.connection.port"], "9042");
        assert!(
            spec["sparkConf"]["spark.jars.packages"]
                .as_str()
                .unwrap()
                .contains("spark-sql-kafka-0-10_2.12:3.5.3")
        );
        assert_eq!(spec["driver"]["labels"]["mlctl.io/pipeline"], "ctr");
        assert_eq!(
            spec["driver"]["volumeMounts"][0]["mountPath"],
            "/etc/mlctl/pipeline"
        );
        let cm = render::config_map(&pref(), &s);
        assert_eq!(cm.data.unwrap()[render::SQL_KEY], "SELECT 1");

        let streaming = render::spark_application(&pref(), &s, None);
        assert_eq!(streaming["metadata"]["name"], "ctr");
        assert_eq!(streaming["spec"]["restartPolicy"]["type"], "Always");
        assert!(streaming["spec"].get("timeToLiveSeconds").is_none());
    }

    /// The pods of every container workload a pipeline creates.
    fn container_pods(s: &FeaturePipelineSpec) -> Vec<(&'static str, serde_json::Value)> {
        let plan = RunPlan {
            name: "ctr-m1".into(),
            trigger: RunTrigger::Manual,
            request: Some("r".into()),
            interval: None,
            scheduled_at: None,
        };
        let cj = serde_json::to_value(render::cron_job(&pref(), s)).unwrap();
        let job = serde_json::to_value(render::run_job(&pref(), s, &plan)).unwrap();
        let dep = serde_json::to_value(render::streaming_deployment(&pref(), s)).unwrap();
        vec![
            (
                "cron job",
                cj["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone(),
            ),
            ("run job", job["spec"]["template"]["spec"].clone()),
            (
                "streaming deployment",
                dep["spec"]["template"]["spec"].clone(),
            ),
        ]
    }

    fn spark_pods(s: &FeaturePipelineSpec) -> Vec<(String, serde_json::Value)> {
        let plan = RunPlan {
            name: "ctr-m1".into(),
            trigger: RunTrigger::Manual,
            request: None,
            interval: None,
            scheduled_at: None,
        };
        let run = render::spark_application(&pref(), s, Some(&plan));
        let streaming = render::spark_application(&pref(), s, None);
        let mut out = Vec::new();
        for (what, app) in [("spark run", &run), ("spark streaming", &streaming)] {
            for role in ["driver", "executor"] {
                out.push((format!("{what} {role}"), app["spec"][role].clone()));
            }
        }
        out
    }

    #[test]
    fn every_pipeline_pod_meets_pod_security_restricted() {
        let restricted_container = serde_json::json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        let restricted_pod = serde_json::json!({
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        // No user id is forced: pipeline images bring their own user.
        for (what, pod) in container_pods(&spec("@daily")) {
            assert_eq!(pod["securityContext"], restricted_pod, "{what}");
            for c in pod["containers"].as_array().unwrap() {
                assert_eq!(c["securityContext"], restricted_container, "{what}");
            }
        }
        for (what, pod) in spark_pods(&spark(spec("@daily"))) {
            assert_eq!(pod["podSecurityContext"], restricted_pod, "{what}");
            assert_eq!(pod["securityContext"], restricted_container, "{what}");
        }
    }

    #[test]
    fn placement_lands_on_every_container_pod() {
        let mut s = spec("@daily");
        s.engine.container.as_mut().unwrap().placement = crate::render::sample_placement();
        for (what, pod) in container_pods(&s) {
            let pod: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(pod).unwrap();
            crate::render::assert_sample_placement(&pod, what);
        }
        for (what, pod) in container_pods(&spec("@daily")) {
            for key in crate::render::PLACEMENT_FIELDS {
                assert!(pod.get(key).is_none(), "{what}: {key} rendered unset");
            }
        }
    }

    #[test]
    fn placement_lands_on_spark_drivers_and_executors() {
        let mut s = spark(spec("@daily"));
        s.engine.spark.as_mut().unwrap().placement = crate::render::sample_placement();
        let want = crate::render::placed_pod_spec(&crate::render::sample_placement());
        for (what, pod) in spark_pods(&s) {
            assert_eq!(
                pod["nodeSelector"],
                serde_json::json!(want.node_selector),
                "{what}"
            );
            assert_eq!(
                pod["tolerations"],
                serde_json::json!(want.tolerations),
                "{what}"
            );
            assert_eq!(pod["affinity"], serde_json::json!(want.affinity), "{what}");
            assert_eq!(pod["priorityClassName"], "ranking-critical", "{what}");
            assert_eq!(
                pod["template"]["spec"]["topologySpreadConstraints"],
                serde_json::json!(want.topology_spread_constraints),
                "{what}"
            );
        }
        let app = render::spark_application(&pref(), &s, None);
        assert_eq!(
            app["spec"]["imagePullSecrets"],
            serde_json::json!(["registry"])
        );
        let bare = render::spark_application(&pref(), &spark(spec("@daily")), None);
        for key in [
            "nodeSelector",
            "tolerations",
            "affinity",
            "priorityClassName",
            "template",
        ] {
            assert!(
                bare["spec"]["driver"].get(key).is_none(),
                "{key} rendered unset"
            );
        }
        assert!(bare["spec"].get("imagePullSecrets").is_none());
    }
}

/// The features gate on what the pipeline controller writes for a streaming
/// pipeline: a model reading from it rolls out while the stream runs, keeps
/// rolling out through a stop shorter than the allowed staleness, and waits
/// once the stop is longer.
mod streaming_freshness {
    use mlctl_crds::FeaturePipeline;
    use mlctl_crds::rankingmodel::FeatureDependency;

    use super::*;
    use crate::features::{FeaturesVerdict, evaluate};

    fn streaming_spec(objective: Option<&str>) -> FeaturePipelineSpec {
        let mut s = spec("x");
        s.trigger = Trigger {
            schedule: None,
            streaming: Some(Streaming { replicas: Some(1) }),
        };
        s.freshness = objective.map(|o| Freshness {
            max_staleness: o.into(),
        });
        s
    }

    fn gate(
        spec: &FeaturePipelineSpec,
        status: &FeaturePipelineStatus,
        now: &str,
    ) -> FeaturesVerdict {
        let mut p = FeaturePipeline::new("ctr", spec.clone());
        p.status = Some(status.clone());
        let dep = FeatureDependency {
            pipeline: "ctr".into(),
            schema_version: 2,
            max_staleness: None,
            features: vec!["ctr".into()],
            gate: None,
        };
        evaluate(&[dep], &[p], ts(now)).unwrap()
    }

    #[test]
    fn a_running_stream_lets_the_model_roll_out() {
        let s = streaming_spec(Some("30m"));
        let mut w = World::new("2026-11-25T10:00:00Z");
        let pending = w.decide(&s, &FeaturePipelineStatus::default());
        let v = gate(&s, &pending.status, "2026-11-25T10:00:00Z");
        assert!(!v.ready, "a stream that never ran: {v:?}");
        assert_eq!(cond(&pending, "Fresh"), ("False", "NotStreaming"));

        w.streaming_ready = true;
        let running = w.decide(&s, &pending.status);
        assert_eq!(cond(&running, "Fresh"), ("True", "Streaming"));
        // Hours later, with no reconcile in between: still current.
        let v = gate(&s, &running.status, "2026-11-25T15:00:00Z");
        assert!(v.ready, "{v:?}");
        assert_eq!(
            v.wake_at, None,
            "the pipeline's status changes when it stops"
        );
        assert_eq!(
            freshness_reference(&running.status),
            Some(FreshnessReference::Current)
        );
        // Nothing changes while it keeps running: no status write.
        w.now = ts("2026-11-25T15:00:00Z");
        assert_eq!(w.decide(&s, &running.status).status, running.status);
    }

    #[test]
    fn a_stopped_stream_ages_from_when_it_stopped() {
        let s = streaming_spec(Some("30m"));
        let mut w = World::new("2026-11-25T10:00:00Z");
        w.streaming_ready = true;
        let running = w.decide(&s, &FeaturePipelineStatus::default());

        w.streaming_ready = false;
        w.now = ts("2026-11-25T12:00:00Z");
        let stopped = w.decide(&s, &running.status);
        assert_eq!(cond(&stopped, "Fresh"), ("True", "StreamStopped"));
        assert_eq!(cond(&stopped, "Ready"), ("False", "StreamingPending"));
        assert_eq!(
            stopped.status.last_successful_time.as_ref().map(|t| t.0),
            Some(ts("2026-11-25T12:00:00Z")),
            "features were current until the stop was seen"
        );
        assert_eq!(
            stopped.requeue_after,
            Some(Duration::from_secs(30 * 60 + 1))
        );
        let v = gate(&s, &stopped.status, "2026-11-25T12:10:00Z");
        assert!(v.ready, "within the objective: {v:?}");
        assert_eq!(v.wake_at, Some(ts("2026-11-25T12:30:00Z")));

        // The requeue past the objective: Stale, and the model waits.
        w.now = ts("2026-11-25T12:30:01Z");
        let stale = w.decide(&s, &stopped.status);
        assert_eq!(cond(&stale, "Fresh"), ("False", "Stale"));
        assert_eq!(
            stale.status.last_successful_time, stopped.status.last_successful_time,
            "the stop time is kept, not moved by later reconciles"
        );
        assert!(!gate(&s, &stale.status, "2026-11-25T12:30:01Z").ready);

        // Running again: current at once.
        w.streaming_ready = true;
        let again = w.decide(&s, &stale.status);
        assert_eq!(cond(&again, "Fresh"), ("True", "Streaming"));
        assert!(gate(&s, &again.status, "2026-11-25T12:31:00Z").ready);
    }

    #[test]
    fn without_an_objective_a_stopped_stream_is_judged_by_the_model_alone() {
        let s = streaming_spec(None);
        let mut w = World::new("2026-11-25T10:00:00Z");
        w.streaming_ready = true;
        let running = w.decide(&s, &FeaturePipelineStatus::default());
        w.streaming_ready = false;
        w.now = ts("2026-11-25T11:00:00Z");
        let stopped = w.decide(&s, &running.status);
        assert_eq!(cond(&stopped, "Fresh"), ("True", "StreamStopped"));
        assert_eq!(
            freshness_reference(&stopped.status),
            Some(FreshnessReference::Since(ts("2026-11-25T11:00:00Z")))
        );
    }
}
