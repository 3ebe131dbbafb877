//! Pure rendering of the objects of a FeaturePipeline: the ConfigMap with its
//! spec, the CronJob or Deployment of the container engine, run Jobs, and
//! SparkApplications (as JSON: there is no typed crate for them).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, PodSpec, PodTemplateSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use mlctl_crds::FeaturePipeline;
use mlctl_crds::common::PodPlacement;
use mlctl_crds::featurepipeline::{ConcurrencyPolicy, FeaturePipelineSpec, SparkEngine};
use mlctl_crds::rankingmodel::PodMetadata;
use serde_json::{Value, json};

use super::naming::*;
use crate::render::{
    content_hash, placed_pod_spec, restricted_container_context, restricted_pod_context,
};

/// Where the ConfigMap is mounted in run containers and the Spark driver.
pub const CONFIG_DIR: &str = "/etc/mlctl/pipeline";
/// Key (and file name) of the pipeline's sources, sinks and features as JSON.
pub const CONFIG_KEY: &str = "pipeline.json";
/// Key (and file name) of the Spark SQL, when there is one.
pub const SQL_KEY: &str = "query.sql";
/// Seconds a finished manual or backfill run (and every Spark run) is kept.
pub const FINISHED_RUN_TTL_SECONDS: i32 = 86_400;
/// Default retries of a run (`spec.retries.backoffLimit`).
pub const DEFAULT_BACKOFF_LIMIT: i32 = 2;
/// Default finished runs kept per outcome (CronJob history limits).
pub const DEFAULT_HISTORY_LIMIT: i32 = 3;
/// API version of SparkApplication.
pub const SPARK_API_VERSION: &str = "sparkoperator.k8s.io/v1beta2";
/// Main class that runs `query.sql` (Spark's own `spark-sql` driver).
pub const SPARK_SQL_MAIN_CLASS: &str = "org.apache.spark.sql.hive.thriftserver.SparkSQLCLIDriver";

const VOLUME: &str = "pipeline";

/// Everything rendering needs besides the spec.
#[derive(Debug, Clone)]
pub struct PipelineRef {
    /// Pipeline name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Owner reference put on every child.
    pub owner: OwnerReference,
}

impl PipelineRef {
    /// From a pipeline read from the API server.
    pub fn from_pipeline(p: &FeaturePipeline) -> Option<Self> {
        let name = p.metadata.name.clone()?;
        Some(Self {
            owner: OwnerReference {
                api_version: mlctl_crds::API_VERSION.to_string(),
                kind: "FeaturePipeline".to_string(),
                name: name.clone(),
                uid: p.metadata.uid.clone()?,
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            namespace: p.metadata.namespace.clone()?,
            name,
        })
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// What one run is for, beyond the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// Object name.
    pub name: String,
    /// What started it.
    pub trigger: RunTrigger,
    /// The request value of a manual run.
    pub request: Option<String>,
    /// `[start, end)` of a backfill interval.
    pub interval: Option<(Timestamp, Timestamp)>,
    /// The due time of a scheduled run.
    pub scheduled_at: Option<Timestamp>,
}

/// Hash of the feature fields (names and types, in order).
pub fn schema_hash(spec: &FeaturePipelineSpec) -> String {
    content_hash(&spec.features.fields)
}

/// The ConfigMap `<name>-pipeline`: `pipeline.json` (name, sources, sinks,
/// features, freshness) and `query.sql` for a Spark SQL engine.
pub fn config_map(p: &PipelineRef, spec: &FeaturePipelineSpec) -> ConfigMap {
    let config = json!({
        "pipeline": p.name,
        "namespace": p.namespace,
        "sources": spec.sources,
        "sinks": spec.sinks,
        "features": spec.features,
        "freshness": spec.freshness,
    });
    let mut data = BTreeMap::from([(
        CONFIG_KEY.to_string(),
        serde_json::to_string_pretty(&config).unwrap_or_default(),
    )]);
    if let Some(sql) = spec.engine.spark.as_ref().and_then(|s| s.sql.as_ref()) {
        data.insert(SQL_KEY.to_string(), sql.clone());
    }
    ConfigMap {
        metadata: p.meta(config_map_name(&p.name), pipeline_labels(&p.name)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The variables every run gets (before the user's own).
fn run_env(p: &PipelineRef, spec: &FeaturePipelineSpec, plan: Option<&RunPlan>) -> Vec<EnvVar> {
    let mut out = vec![
        env("MLCTL_PIPELINE", p.name.clone()),
        env(
            "MLCTL_PIPELINE_CONFIG",
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ),
        env(
            "MLCTL_SCHEMA_VERSION",
            spec.features.schema_version.to_string(),
        ),
    ];
    if let Some(plan) = plan {
        out.push(env("MLCTL_TRIGGER", plan.trigger.as_str()));
        if let Some((start, end)) = plan.interval {
            out.push(env("MLCTL_INTERVAL_START", start.to_string()));
            out.push(env("MLCTL_INTERVAL_END", end.to_string()));
        }
    }
    out
}

fn pod_meta(
    labels: BTreeMap<String, String>,
    extra: Option<&PodMetadata>,
    annotations: BTreeMap<String, String>,
) -> ObjectMeta {
    let mut all_labels = extra.map(|m| m.labels.clone()).unwrap_or_default();
    all_labels.extend(labels);
    let mut all_annotations = extra.map(|m| m.annotations.clone()).unwrap_or_default();
    all_annotations.extend(annotations);
    ObjectMeta {
        labels: Some(all_labels),
        annotations: (!all_annotations.is_empty()).then_some(all_annotations),
        ..ObjectMeta::default()
    }
}

fn config_volume(p: &PipelineRef) -> Volume {
    Volume {
        name: VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&p.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn config_mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME.into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn container_pod(
    p: &PipelineRef,
    spec: &FeaturePipelineSpec,
    labels: BTreeMap<String, String>,
    plan: Option<&RunPlan>,
    restart_policy: &str,
) -> PodTemplateSpec {
    let engine = spec.engine.container.clone().unwrap_or_default();
    let mut env = run_env(p, spec, plan);
    env.extend(engine.env.iter().cloned());
    PodTemplateSpec {
        metadata: Some(pod_meta(
            labels,
            engine.pod_metadata.as_ref(),
            BTreeMap::new(),
        )),
        spec: Some(PodSpec {
            restart_policy: Some(restart_policy.into()),
            security_context: Some(restricted_pod_context()),
            containers: vec![Container {
                name: "pipeline".into(),
                image: Some(engine.image.clone()),
                command: (!engine.command.is_empty()).then(|| engine.command.clone()),
                args: (!engine.args.is_empty()).then(|| engine.args.clone()),
                env: Some(env),
                resources: engine.resources.clone(),
                volume_mounts: Some(vec![config_mount()]),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                security_context: Some(restricted_container_context()),
                ..Container::default()
            }],
            volumes: Some(vec![config_volume(p)]),
            ..placed_pod_spec(&engine.placement)
        }),
    }
}

fn schema_annotations(spec: &FeaturePipelineSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            SCHEMA_VERSION_ANNOTATION.to_string(),
            spec.features.schema_version.to_string(),
        ),
        (SCHEMA_HASH_ANNOTATION.to_string(), schema_hash(spec)),
    ])
}

fn run_annotations(spec: &FeaturePipelineSpec, plan: &RunPlan) -> BTreeMap<String, String> {
    let mut out = schema_annotations(spec);
    if let Some(request) = &plan.request {
        out.insert(REQUEST_ANNOTATION.to_string(), request.clone());
    }
    if let Some(at) = plan.scheduled_at {
        out.insert(SCHEDULED_AT_ANNOTATION.to_string(), at.to_string());
    }
    out
}

fn plan_labels(p: &PipelineRef, plan: &RunPlan) -> BTreeMap<String, String> {
    let mut labels = run_labels(&p.name, plan.trigger);
    if let Some((start, _)) = plan.interval {
        labels.insert(
            INTERVAL_START_LABEL.to_string(),
            start.as_second().to_string(),
        );
    }
    labels
}

fn job_spec(
    p: &PipelineRef,
    spec: &FeaturePipelineSpec,
    labels: BTreeMap<String, String>,
    plan: Option<&RunPlan>,
) -> JobSpec {
    let retries = spec.retries.clone().unwrap_or_default();
    JobSpec {
        backoff_limit: Some(retries.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT)),
        active_deadline_seconds: retries.active_deadline_seconds,
        ttl_seconds_after_finished: Some(FINISHED_RUN_TTL_SECONDS),
        template: container_pod(p, spec, labels, plan, "Never"),
        ..JobSpec::default()
    }
}

/// The CronJob `<name>` of a scheduled container pipeline.
pub fn cron_job(p: &PipelineRef, spec: &FeaturePipelineSpec) -> CronJob {
    let schedule = spec.trigger.schedule.clone().unwrap_or_default();
    let labels = run_labels(&p.name, RunTrigger::Schedule);
    let policy = match schedule
        .concurrency_policy
        .unwrap_or(ConcurrencyPolicy::Forbid)
    {
        ConcurrencyPolicy::Allow => "Allow",
        ConcurrencyPolicy::Forbid => "Forbid",
        ConcurrencyPolicy::Replace => "Replace",
    };
    CronJob {
        metadata: p.meta(p.name.clone(), pipeline_labels(&p.name)),
        spec: Some(CronJobSpec {
            schedule: schedule.cron.trim().to_string(),
            time_zone: schedule.time_zone.clone(),
            concurrency_policy: Some(policy.into()),
            starting_deadline_seconds: schedule.starting_deadline_seconds,
            suspend: Some(schedule.suspend.unwrap_or(false)),
            successful_jobs_history_limit: Some(
                schedule
                    .successful_runs_history_limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT),
            ),
            failed_jobs_history_limit: Some(
                schedule
                    .failed_runs_history_limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT),
            ),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(schema_annotations(spec)),
                    ..ObjectMeta::default()
                }),
                spec: Some(job_spec(p, spec, labels, None)),
            },
        }),
        status: None,
    }
}

/// A run Job (manual or backfill) of the container engine.
pub fn run_job(p: &PipelineRef, spec: &FeaturePipelineSpec, plan: &RunPlan) -> Job {
    let labels = plan_labels(p, plan);
    let mut meta = p.meta(plan.name.clone(), labels.clone());
    meta.annotations = Some(run_annotations(spec, plan));
    Job {
        metadata: meta,
        spec: Some(job_spec(p, spec, labels, Some(plan))),
        status: None,
    }
}

/// The Deployment `<name>` of a streaming container pipeline.
pub fn streaming_deployment(p: &PipelineRef, spec: &FeaturePipelineSpec) -> Deployment {
    let replicas = spec
        .trigger
        .streaming
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let labels = pipeline_labels(&p.name);
    let mut meta = p.meta(p.name.clone(), labels.clone());
    meta.annotations = Some(schema_annotations(spec));
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    PIPELINE_LABEL.to_string(),
                    p.name.clone(),
                )])),
                match_expressions: None,
            },
            template: container_pod(p, spec, labels, None, "Always"),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Connector settings derived from the sources and sinks; the user's
/// `sparkConf` wins on every key.
pub fn spark_conf(spec: &FeaturePipelineSpec, engine: &SparkEngine) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    let mut packages = Vec::new();
    let scala = "2.12";
    if spec.sources.iter().any(|s| s.kafka.is_some()) {
        packages.push(format!(
            "org.apache.spark:spark-sql-kafka-0-10_{scala}:{}",
            engine.spark_version
        ));
    }
    for s in &spec.sources {
        if let Some(k) = &s.kafka {
            let prefix = format!("spark.mlctl.source.{}.kafka", s.name);
            conf.insert(
                format!("{prefix}.bootstrapServers"),
                k.bootstrap_servers.clone(),
            );
            conf.insert(format!("{prefix}.topic"), k.topic.clone());
            conf.insert(
                format!("{prefix}.startingOffsets"),
                k.starting_offsets
                    .clone()
                    .unwrap_or_else(|| "latest".into()),
            );
        }
    }
    if let Some(c) = spec.sinks.iter().find_map(|s| s.cassandra.as_ref()) {
        packages.push(format!(
            "com.datastax.spark:spark-cassandra-connector_{scala}:3.5.1"
        ));
        let hosts: Vec<&str> = c
            .contact_points
            .iter()
            .map(|h| h.split(':').next().unwrap_or(h))
            .collect();
        conf.insert("spark.cassandra.connection.host".into(), hosts.join(","));
        if let Some(port) = c.contact_points.iter().find_map(|h| h.split_once(':')) {
            conf.insert("spark.cassandra.connection.port".into(), port.1.to_string());
        }
        conf.insert(
            "spark.sql.extensions".into(),
            "com.datastax.spark.connector.CassandraSparkExtensions".into(),
        );
    }
    for s in &spec.sinks {
        if let Some(c) = &s.cassandra {
            let prefix = format!("spark.mlctl.sink.{}.cassandra", s.name);
            conf.insert(format!("{prefix}.keyspace"), c.keyspace.clone());
            conf.insert(format!("{prefix}.table"), c.table.clone());
        }
    }
    if !packages.is_empty() {
        conf.insert("spark.jars.packages".into(), packages.join(","));
    }
    conf.extend(engine.spark_conf.clone());
    conf
}

/// The restricted security contexts and the placement on the driver and the
/// executors, in the SparkApplication's own fields (v1beta2 `SparkPodSpec`);
/// topology spread constraints have none and go through the pod template
/// (spark-operator 2.1+, Spark 3.0+).
fn spark_pod_settings(body: &mut Value, placement: &PodPlacement) {
    let placed = placed_pod_spec(placement);
    for role in ["driver", "executor"] {
        let pod = &mut body[role];
        pod["podSecurityContext"] = json!(restricted_pod_context());
        pod["securityContext"] = json!(restricted_container_context());
        if let Some(v) = &placed.node_selector {
            pod["nodeSelector"] = json!(v);
        }
        if let Some(v) = &placed.tolerations {
            pod["tolerations"] = json!(v);
        }
        if let Some(v) = &placed.affinity {
            pod["affinity"] = json!(v);
        }
        if let Some(v) = &placed.priority_class_name {
            pod["priorityClassName"] = json!(v);
        }
        if let Some(v) = &placed.topology_spread_constraints {
            pod["template"] = json!({"spec": {"topologySpreadConstraints": v}});
        }
    }
    if let Some(secrets) = &placed.image_pull_secrets {
        let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
        body["imagePullSecrets"] = json!(names);
    }
}

/// A SparkApplication: a run (`plan` set; restart Never or OnFailure, a
/// time to live) or the streaming application `<name>` (restart Always).
pub fn spark_application(
    p: &PipelineRef,
    spec: &FeaturePipelineSpec,
    plan: Option<&RunPlan>,
) -> Value {
    let engine = spec.engine.spark.clone().unwrap_or_default();
    let (name, labels, annotations) = match plan {
        Some(plan) => {
            let mut labels = plan_labels(p, plan);
            labels.insert(RUN_LABEL.to_string(), plan.name.clone());
            (plan.name.clone(), labels, run_annotations(spec, plan))
        }
        None => (
            p.name.clone(),
            pipeline_labels(&p.name),
            schema_annotations(spec),
        ),
    };
    let retries = spec.retries.clone().unwrap_or_default();
    let backoff = retries.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let restart = match plan {
        None => {
            json!({"type": "Always", "onFailureRetryInterval": 10, "onSubmissionFailureRetryInterval": 10})
        }
        Some(_) if backoff == 0 => json!({"type": "Never"}),
        Some(_) => json!({
            "type": "OnFailure",
            "onFailureRetries": backoff,
            "onFailureRetryInterval": 10,
            "onSubmissionFailureRetries": backoff,
            "onSubmissionFailureRetryInterval": 10,
        }),
    };
    let env = run_env(p, spec, plan);
    let meta = pod_meta(
        labels.clone(),
        engine.pod_metadata.as_ref(),
        BTreeMap::new(),
    );
    let driver = engine.driver.clone().unwrap_or_default();
    let executor = engine.executor.clone().unwrap_or_default();
    let mut body = json!({
        "type": if engine.sql.is_some() { "Scala" } else if engine.main_application_file.as_deref().is_some_and(|f| f.ends_with(".py")) { "Python" } else { "Scala" },
        "mode": "cluster",
        "image": engine.image,
        "sparkVersion": engine.spark_version,
        "sparkConf": spark_conf(spec, &engine),
        "restartPolicy": restart,
        "volumes": [{"name": VOLUME, "configMap": {"name": config_map_name(&p.name)}}],
        "driver": {
            "cores": driver.cores.unwrap_or(1),
            "memory": driver.memory.clone().unwrap_or_else(|| "1g".into()),
            "labels": meta.labels,
            "annotations": meta.annotations,
            "env": env,
            "volumeMounts": [config_mount()],
        },
        "executor": {
            "cores": executor.cores.unwrap_or(1),
            "memory": executor.memory.clone().unwrap_or_else(|| "1g".into()),
            "instances": plan.map_or_else(
                || spec.trigger.streaming.as_ref().and_then(|s| s.replicas).or(executor.instances).unwrap_or(1),
                |_| executor.instances.unwrap_or(1),
            ),
            "labels": meta.labels,
            "annotations": meta.annotations,
            "env": env,
            "volumeMounts": [config_mount()],
        },
    });
    if let Some(sa) = driver.service_account {
        body["driver"]["serviceAccount"] = json!(sa);
    }
    spark_pod_settings(&mut body, &engine.placement);
    match (&engine.sql, &engine.main_application_file) {
        (Some(_), _) => {
            body["mainClass"] = json!(SPARK_SQL_MAIN_CLASS);
            body["mainApplicationFile"] = json!("spark-internal");
            body["arguments"] = json!(["-f", format!("{CONFIG_DIR}/{SQL_KEY}")]);
        }
        (None, Some(file)) => {
            body["mainApplicationFile"] = json!(file);
            if let Some(class) = &engine.main_class {
                body["mainClass"] = json!(class);
            }
        }
        (None, None) => {}
    }
    if plan.is_some() {
        body["timeToLiveSeconds"] = json!(FINISHED_RUN_TTL_SECONDS);
    }
    let mut metadata = serde_json::to_value(p.meta(name, labels)).unwrap_or_default();
    metadata["annotations"] = json!(annotations);
    json!({
        "apiVersion": SPARK_API_VERSION,
        "kind": "SparkApplication",
        "metadata": metadata,
        "spec": body,
    })
}
