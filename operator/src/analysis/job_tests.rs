use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, EnvVar, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mlctl_crds::rankingmodel::{AnalysisMetric, MetricProvider, MetricStatus};

use super::super::provider::tests::vars;
use super::super::worker::Task;
use super::*;

fn model() -> ModelKey {
    ModelKey {
        namespace: "shop".into(),
        name: "ranker".into(),
        uid: "uid-1".into(),
        revision: "r2".into(),
        started_at: Some(Timestamp::from_second(1_000).unwrap()),
    }
}

fn measurement(ordinal: i32) -> JobMeasurement {
    JobMeasurement {
        metric: "offline-ndcg".into(),
        step: Some(2),
        ordinal,
        provider: JobProvider {
            args: vec!["eval".into(), "--model={{model}}@{{canary_version}}".into()],
            env: vec![EnvVar {
                name: "WHO".into(),
                value: Some("{{stable_version}}".into()),
                value_from: None,
            }],
            config_map: Some("queries".into()),
            ..JobProvider::default()
        },
        verdict_by_outcome: false,
        placement: PodPlacement::default(),
    }
}

#[test]
fn the_name_is_the_same_for_the_same_measurement_and_differs_otherwise() {
    let a = job_name(&model(), &measurement(0));
    assert_eq!(
        a,
        job_name(&model(), &measurement(0)),
        "a restart finds the same Job"
    );
    assert!(a.starts_with("ranker-offline-ndcg-"), "{a}");
    assert!(a.len() <= 63);
    let mut other_canary = model();
    other_canary.started_at = Some(Timestamp::from_second(2_000).unwrap());
    let mut edited = measurement(0);
    edited.provider.args.push("--gate=g.yaml".into());
    let mut other_step = measurement(0);
    other_step.step = None;
    for different in [
        job_name(&model(), &measurement(1)),
        job_name(&other_canary, &measurement(0)),
        job_name(&model(), &edited),
        job_name(&model(), &other_step),
    ] {
        assert_ne!(a, different);
    }
}

#[test]
fn long_and_odd_names_still_make_a_valid_job_name() {
    let mut key = model();
    key.name = "a".repeat(60);
    let mut m = measurement(0);
    m.metric = "--NDCG@10 (offline)--".repeat(3);
    let name = job_name(&key, &m);
    assert!(name.len() <= 63, "{name}");
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{name}"
    );
    assert!(!name.contains("--"), "{name}");
}

#[test]
fn render_substitutes_placeholders_mounts_the_config_map_and_locks_the_pod_down() {
    let job = render(&model(), &vars(), &measurement(3));
    let meta = &job.metadata;
    assert_eq!(
        meta.name.as_deref(),
        Some(job_name(&model(), &measurement(3)).as_str())
    );
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels[MODEL_LABEL], "ranker");
    assert_eq!(labels[METRIC_LABEL], "offline-ndcg");
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("RankingModel", "uid-1")
    );
    assert_eq!(owner.controller, Some(true));

    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(
        spec.ttl_seconds_after_finished,
        Some(TTL_SECONDS_AFTER_FINISHED)
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(
        !pod_labels.contains_key(MODEL_LABEL),
        "no Service may select it"
    );
    assert_eq!(pod.security_context, Some(restricted_pod_context()));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(DEFAULT_IMAGE));
    assert!(DEFAULT_IMAGE.starts_with("ghcr.io/mlctl/mlctl:"));
    assert_eq!(c.command, None, "the image's entrypoint");
    assert_eq!(
        c.args.as_deref(),
        Some(&["eval".to_string(), "--model=ranker@1.0 beta/x".to_string()][..])
    );
    assert_eq!(c.security_context, Some(restricted_container_context()));
    let env: BTreeMap<&str, &str> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(env["MLCTL_MODEL"], "ranker");
    assert_eq!(env["MLCTL_NAMESPACE"], "shop");
    assert_eq!(env["MLCTL_STABLE_VERSION"], "0.9");
    assert_eq!(env["MLCTL_CANARY_VERSION"], "1.0 beta/x");
    assert_eq!(env["MLCTL_STABLE_URL"], "http://ranker-stable.shop.svc:80");
    assert_eq!(env["MLCTL_CANARY_URL"], "http://ranker-canary.shop.svc:80");
    assert_eq!(env["WHO"], "0.9");
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, CONFIG_MOUNT_PATH);
    assert_eq!(mount.read_only, Some(true));
    let volume = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(volume.config_map.as_ref().unwrap().name, "queries");
}

#[test]
fn render_keeps_the_users_image_limits_and_account() {
    let mut m = measurement(0);
    m.provider.image = Some("example.com/eval:1".into());
    m.provider.command = vec!["/bin/eval".into()];
    m.provider.service_account_name = Some("eval".into());
    m.provider.active_deadline_seconds = Some(30);
    m.provider.backoff_limit = Some(2);
    m.provider.config_map = None;
    let job = render(&model(), &vars(), &m);
    let spec = job.spec.unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(30));
    assert_eq!(spec.backoff_limit, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("eval"));
    assert_eq!(pod.volumes, None);
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("example.com/eval:1"));
    assert_eq!(c.command.as_deref(), Some(&["/bin/eval".to_string()][..]));
    assert_eq!(c.volume_mounts, None);
}

fn job_with(conditions: &[(&str, &str, Option<&str>)]) -> Job {
    Job {
        status: Some(JobStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s, r)| JobCondition {
                        type_: (*t).into(),
                        status: (*s).into(),
                        reason: r.map(Into::into),
                        ..JobCondition::default()
                    })
                    .collect(),
            ),
            ..JobStatus::default()
        }),
        ..Job::default()
    }
}

#[test]
fn state_follows_the_final_conditions_only() {
    assert_eq!(state(&Job::default()), JobState::Running);
    assert_eq!(
        state(&job_with(&[("SuccessCriteriaMet", "True", None)])),
        JobState::Running,
        "an interim condition is not the end"
    );
    assert_eq!(
        state(&job_with(&[("Complete", "True", None)])),
        JobState::Complete
    );
    assert_eq!(
        state(&job_with(&[("Complete", "False", None)])),
        JobState::Running
    );
    assert_eq!(
        state(&job_with(&[("Failed", "True", Some("DeadlineExceeded"))])),
        JobState::Failed("DeadlineExceeded".into())
    );
}

fn pod(message: Option<&str>, finished: i64) -> Pod {
    Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        message: message.map(Into::into),
                        finished_at: Some(Time(Timestamp::from_second(finished).unwrap())),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn the_termination_message_of_the_last_pod_is_the_value_when_it_is_a_number() {
    assert_eq!(termination_value(&[]), None);
    assert_eq!(
        termination_value(&[pod(Some(" 0.8125\n"), 10)]),
        Some(0.8125)
    );
    assert_eq!(termination_value(&[pod(Some("ndcg is fine"), 10)]), None);
    assert_eq!(termination_value(&[pod(None, 10)]), None);
    // Retries (backoffLimit): the pod that finished last speaks.
    assert_eq!(
        termination_value(&[pod(Some("0.9"), 20), pod(Some("0.1"), 10)]),
        Some(0.9)
    );
}

#[test]
fn reading_is_one_or_zero_unless_the_container_says_a_number() {
    let failed = JobState::Failed("BackoffLimitExceeded".into());
    assert_eq!(reading(&JobState::Running, Some(0.5), false), None);
    assert_eq!(reading(&JobState::Complete, None, false), Some(1.0));
    assert_eq!(reading(&failed, None, false), Some(0.0));
    assert_eq!(reading(&JobState::Complete, Some(0.42), false), Some(0.42));
    assert_eq!(reading(&failed, Some(0.42), false), Some(0.42));
    // Without conditions the Job's success decides, whatever it wrote.
    assert_eq!(reading(&JobState::Complete, Some(0.42), true), Some(1.0));
    assert_eq!(reading(&failed, Some(0.42), true), Some(0.0));
}

fn job_metric(success: Option<&str>) -> AnalysisMetric {
    AnalysisMetric {
        name: "offline-ndcg".into(),
        provider: MetricProvider {
            job: Some(JobProvider::default()),
            ..MetricProvider::default()
        },
        success_condition: success.map(Into::into),
        ..AnalysisMetric::default()
    }
}

#[test]
fn without_conditions_the_jobs_success_is_the_verdict() {
    let metric = job_metric(None);
    let at = Timestamp::from_second(5_000).unwrap();
    let mut passed = MetricStatus::default();
    let outcome = super::super::record(&metric, &mut passed, false, Ok(Some(1.0)), at);
    assert_eq!(outcome, super::super::Outcome::Successful);
    assert_eq!(passed.phase, "Successful");
    let mut failed = MetricStatus::default();
    let outcome = super::super::record(&metric, &mut failed, false, Ok(Some(0.0)), at);
    assert_eq!(outcome, super::super::Outcome::Failed);
    assert_eq!(failed.phase, "Failed");
    assert!(failed.message.unwrap().contains("the Job failed"));
}

#[test]
fn with_conditions_the_value_is_judged_like_any_other() {
    let metric = job_metric(Some("result >= 0.8"));
    let at = Timestamp::from_second(5_000).unwrap();
    let mut status = MetricStatus::default();
    let outcome = super::super::record(&metric, &mut status, false, Ok(Some(0.75)), at);
    assert_eq!(outcome, super::super::Outcome::Failed);
}

#[test]
fn the_task_counts_the_measurements_already_taken() {
    let metric = job_metric(None);
    let first = Task::for_metric(&metric, Some(1), &[], &PodPlacement::default());
    let Task::Job(m) = first else {
        panic!("a job metric makes a Job task")
    };
    assert_eq!(
        (m.ordinal, m.step, m.verdict_by_outcome),
        (0, Some(1), true)
    );
    let taken = MetricStatus {
        name: "offline-ndcg".into(),
        step: Some(1),
        successful: 1,
        failed: 1,
        errors: 2,
        ..MetricStatus::default()
    };
    let other_step = MetricStatus {
        step: None,
        successful: 7,
        ..taken.clone()
    };
    let Task::Job(m) = Task::for_metric(
        &job_metric(Some("result > 0")),
        Some(1),
        &[other_step, taken],
        &PodPlacement::default(),
    ) else {
        panic!("a job metric makes a Job task")
    };
    assert_eq!((m.ordinal, m.verdict_by_outcome), (4, false));
    let web = AnalysisMetric {
        provider: super::super::provider::tests::web("http://x", "$.v"),
        ..job_metric(Some("result > 0"))
    };
    assert!(matches!(
        Task::for_metric(&web, None, &[], &PodPlacement::default()),
        Task::Metric(_)
    ));
}

#[test]
fn the_job_runs_where_the_model_runs_but_ignores_its_spread_constraints() {
    let mut m = measurement(0);
    m.placement = crate::render::sample_placement();
    let job = render(&model(), &vars(), &m);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let placed = crate::render::placed_pod_spec(&m.placement);
    assert_eq!(pod.node_selector, placed.node_selector);
    assert_eq!(pod.tolerations, placed.tolerations);
    assert_eq!(pod.affinity, placed.affinity);
    assert_eq!(pod.image_pull_secrets, placed.image_pull_secrets);
    assert_eq!(pod.priority_class_name, placed.priority_class_name);
    assert!(placed.topology_spread_constraints.is_some());
    assert_eq!(pod.topology_spread_constraints, None);
}
