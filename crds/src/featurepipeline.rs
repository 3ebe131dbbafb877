//! `FeaturePipeline`: a scheduled or streaming job that turns raw events into
//! features in an online store, with a freshness objective.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Conditions, DURATION_MAX_LEN, DURATION_RULE, PodPlacement};
use crate::rankingmodel::PodMetadata;

/// Desired state of a FeaturePipeline: when it runs, on which engine, from
/// which sources into which sinks, the schema of the features it writes and
/// how fresh they must be.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mlctl.io",
    version = "v1alpha1",
    kind = "FeaturePipeline",
    plural = "featurepipelines",
    singular = "featurepipeline",
    shortname = "fp",
    category = "mlctl",
    namespaced,
    status = "FeaturePipelineStatus",
    derive = "PartialEq",
    cel,
    doc = "FeaturePipeline runs a scheduled or streaming feature job (container or Spark) from sources such as Kafka into online or offline stores, and tracks the freshness and schema of the features it writes. Short name: fp.",
    validation = Rule::new("!has(self.metadata.name) || (size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))").message("metadata.name must be at most 52 characters of lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (it names the CronJob <name>)"),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".status.trigger", description = "Cron schedule or 'streaming'"),
    printcolumn(name = "Last Success", type_ = "date", json_path = ".status.lastSuccessfulTime", description = "When the last run succeeded"),
    printcolumn(name = "Fresh", type_ = "string", json_path = ".status.conditions[?(@.type==\"Fresh\")].status", description = "Whether the features meet the freshness objective"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Running, Succeeded, Failed, Suspended or Streaming"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Watermark", type_ = "string", json_path = ".status.watermark", priority = 1, description = "Event time up to which features are complete"),
    printcolumn(name = "Schema", type_ = "integer", json_path = ".spec.features.schemaVersion", priority = 1, description = "Feature schema version")
)]
#[serde(rename_all = "camelCase")]
pub struct FeaturePipelineSpec {
    /// When the pipeline runs: exactly one of `schedule` or `streaming`.
    pub trigger: Trigger,
    /// What runs: exactly one of `container` or `spark`.
    pub engine: Engine,
    /// Inputs of the pipeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.filter(t, t.name == s.name).size() == 1)").message("spec.sources names must be unique"))]
    pub sources: Vec<Source>,
    /// Outputs of the pipeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.filter(t, t.name == s.name).size() == 1)").message("spec.sinks names must be unique"))]
    pub sinks: Vec<Sink>,
    /// Schema of the features written; models declare which version they need.
    pub features: FeatureSchema,
    /// Freshness objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// Retry and time limits of one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Webhooks told about this pipeline's Events (stale, fresh again, runs
    /// failing), with a Slack-compatible body; sent in the background with
    /// retries (docs/notifications.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(n, self.filter(m, m.name == n.name).size() == 1)").message("spec.notifications names must be unique"))]
    pub notifications: Vec<crate::notify::Notification>,
}

/// When the pipeline runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.schedule), has(self.streaming)].filter(x, x).size() == 1").message("spec.trigger must set exactly one of schedule or streaming"),
)]
pub struct Trigger {
    /// Run on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Run continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<Streaming>,
}

/// A cron schedule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression (minute hour day-of-month month day-of-week),
    /// e.g. `*/30 * * * *`, or a macro such as `@hourly`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^ *[^ ]+( +[^ ]+){4} *$')").message("spec.trigger.schedule.cron must have five fields (minute hour day-of-month month day-of-week), e.g. \"*/30 * * * *\""))]
    pub cron: String,
    /// IANA time zone of the schedule, e.g. `Europe/Berlin` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// What to do when a run is due while the previous one still runs
    /// (default Forbid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A run that could not start within this many seconds of its due time is
    /// counted as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("startingDeadlineSeconds must be 0 or more"))]
    pub starting_deadline_seconds: Option<i64>,
    /// Stop starting new runs (running ones continue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Finished successful runs to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("successfulRunsHistoryLimit must be 0 or more"))]
    pub successful_runs_history_limit: Option<i32>,
    /// Finished failed runs to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("failedRunsHistoryLimit must be 0 or more"))]
    pub failed_runs_history_limit: Option<i32>,
}

/// Concurrency policies, as for CronJobs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// Skip a run while the previous one is active.
    Forbid,
    /// Cancel the active run and start the new one.
    Replace,
}

/// Continuous processing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Streaming {
    /// Parallel workers (container engine) or executors (spark engine); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.trigger.streaming.replicas must be at least 1"))]
    pub replicas: Option<i32>,
}

/// What runs the pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.container), has(self.spark)].filter(x, x).size() == 1").message("spec.engine must set exactly one of container or spark"),
)]
pub struct Engine {
    /// A container image that does the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerEngine>,
    /// A Spark application (needs the Spark operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark: Option<SparkEngine>,
}

/// A container engine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEngine {
    /// Container image.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra labels and annotations on the run and streaming pods (cost
    /// allocation, sidecar injection, scrape hints). The operator's own labels
    /// (`mlctl.io/pipeline`, `mlctl.io/trigger`, `app.kubernetes.io/*`) win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,
    /// Scheduling of the run and streaming pods: nodeSelector, tolerations,
    /// affinity, topologySpreadConstraints, imagePullSecrets,
    /// priorityClassName. The pods always run with the Pod Security
    /// `restricted` settings (non-root, no privilege escalation, no
    /// capabilities, RuntimeDefault seccomp): the image must run as a numeric
    /// non-root user.
    #[serde(flatten)]
    pub placement: PodPlacement,
}

/// A Spark engine: exactly one of `sql` or `mainApplicationFile`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.sql), has(self.mainApplicationFile)].filter(x, x).size() == 1").message("spec.engine.spark must set exactly one of sql or mainApplicationFile"),
)]
pub struct SparkEngine {
    /// Spark image.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Spark version, e.g. `3.5.3`.
    #[schemars(length(min = 1, max = 32))]
    pub spark_version: String,
    /// Spark SQL to run; mounted into the driver from a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub sql: Option<String>,
    /// Application file (jar or Python) instead of SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub main_application_file: Option<String>,
    /// Main class of a JVM application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    /// Extra Spark configuration (`spark.*` keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spark_conf: BTreeMap<String, String>,
    /// Driver resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<SparkPod>,
    /// Executor resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<SparkPod>,
    /// Extra labels and annotations on the driver and executor pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,
    /// Scheduling of the driver and executor pods alike: nodeSelector,
    /// tolerations, affinity, priorityClassName (on the driver and executor
    /// specs), imagePullSecrets (the application's) and
    /// topologySpreadConstraints (through the driver and executor pod
    /// templates: spark-operator 2.1+ and Spark 3.0+). Both pods always run
    /// with the Pod Security `restricted` settings.
    #[serde(flatten)]
    pub placement: PodPlacement,
}

/// Resources of a Spark driver or executors.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SparkPod {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("cores must be at least 1"))]
    pub cores: Option<i32>,
    /// Memory, e.g. `4g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Number of executors (executor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("instances must be at least 1"))]
    pub instances: Option<i32>,
    /// Service account of the driver (driver only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// An input: exactly one kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.kafka), has(self.table)].filter(x, x).size() == 1").message("each spec.sources[] entry must set exactly one of kafka or table"),
)]
pub struct Source {
    /// Name of the input, unique within the pipeline.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSource>,
    /// A table (files or a catalog table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableSource>,
}

/// A Kafka topic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSource {
    /// Comma-separated `host:port` list.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topic name.
    #[schemars(length(min = 1))]
    pub topic: String,
    /// Where a new consumer starts: `earliest` or `latest` (default latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_offsets: Option<String>,
}

/// A table source.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TableSource {
    /// Location, e.g. `s3://lake/events/`.
    #[schemars(length(min = 1))]
    pub uri: String,
    /// File or table format, e.g. `parquet`, `delta`, `iceberg`.
    #[schemars(length(min = 1))]
    pub format: String,
    /// Event-time column used for watermarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_column: Option<String>,
}

/// An output: exactly one kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.cassandra), has(self.redis), has(self.parquet)].filter(x, x).size() == 1").message("each spec.sinks[] entry must set exactly one of cassandra, redis or parquet"),
)]
pub struct Sink {
    /// Name of the output, unique within the pipeline.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A Cassandra table (online store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraSink>,
    /// A Redis database (online store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSink>,
    /// Parquet files (offline store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetSink>,
}

/// A Cassandra table.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CassandraSink {
    /// Contact points, `host` or `host:port`.
    #[schemars(length(min = 1))]
    pub contact_points: Vec<String>,
    /// Keyspace.
    #[schemars(length(min = 1))]
    pub keyspace: String,
    /// Table.
    #[schemars(length(min = 1))]
    pub table: String,
}

/// A Redis database.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedisSink {
    /// `host:port` of Redis.
    #[schemars(length(min = 1))]
    pub address: String,
    /// Prefix of the keys written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Time to live of written keys, e.g. `48h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Parquet output.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParquetSink {
    /// Location, e.g. `s3://lake/features/query_doc/`.
    #[schemars(length(min = 1))]
    pub uri: String,
}

/// Schema of the features a pipeline writes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSchema {
    /// Columns identifying an entity, e.g. `[query_id, doc_id]`.
    #[schemars(length(min = 1, max = 16))]
    pub entity_keys: Vec<String>,
    /// Version of this schema; bump it on any incompatible change.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.features.schemaVersion must be 1 or more"))]
    pub schema_version: i64,
    /// The features and their types; names are unique (a list-map keyed on
    /// `name`, so the API server refuses duplicates without an O(n²) rule).
    #[schemars(length(min = 1, max = 4096))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub fields: Vec<FeatureField>,
}

/// One feature.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureField {
    /// Feature name.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Data type.
    pub dtype: Dtype,
}

/// Feature data types.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// Raw bytes.
    Bytes,
    /// Timestamp.
    Timestamp,
    /// List of 32-bit floats (e.g. an embedding).
    #[serde(rename = "float32_list")]
    Float32List,
    /// List of 64-bit floats.
    #[serde(rename = "float64_list")]
    Float64List,
}

/// Freshness objective.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    /// Features older than this are stale, e.g. `2h`.
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.freshness.maxStaleness must be a duration such as 30s, 5m or 1h30m"))]
    pub max_staleness: String,
}

/// Retry and time limits of one run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Retries of a failed run before it counts as failed (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.retries.backoffLimit must be 0 or more"))]
    pub backoff_limit: Option<i32>,
    /// Seconds a run may take before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.retries.activeDeadlineSeconds must be at least 1"))]
    pub active_deadline_seconds: Option<i64>,
}

/// Observed state of a FeaturePipeline, written only by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeaturePipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Succeeded, Failed, Suspended or Streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The trigger in one word or the cron expression (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Ready, Fresh, Degraded.
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// When a run was last scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Event time up to which the features are complete (advances on success only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Time>,
    /// Runs in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_runs: Option<i32>,
    /// Runs that were due but could not start within `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_runs: Option<i64>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStatus>,
    /// Schema of the features currently written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaStatus>,
    /// Request annotations (`mlctl.io/run`, `mlctl.io/backfill`) already acted
    /// on: annotation name → the value that was handled.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled_requests: BTreeMap<String, String>,
    /// Progress of the most recent backfill request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillStatus>,
    /// Human-readable summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of a backfill: bounded runs over `[from, to)` in `step` intervals.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The `requestedAt` of the request this describes.
    pub requested_at: String,
    /// Start of the first interval (RFC 3339).
    pub from: String,
    /// End of the last interval (RFC 3339).
    pub to: String,
    /// Interval length, e.g. `1h`.
    pub step: String,
    /// Runs at most in parallel.
    pub max_parallel: i32,
    /// Running, Succeeded or Failed.
    pub phase: String,
    /// Intervals in the request.
    pub total: i32,
    /// Intervals finished successfully (including ones done by an earlier identical request).
    pub succeeded: i32,
    /// Intervals whose run failed.
    pub failed: i32,
    /// Intervals running now.
    pub running: i32,
    /// Why it failed or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One run of a pipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Name of the Job or SparkApplication.
    pub name: String,
    /// Pending, Running, Succeeded or Failed.
    pub phase: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Rows read, as reported by the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<i64>,
    /// Rows written, as reported by the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<i64>,
}

/// Schema currently written by the pipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SchemaStatus {
    /// `spec.features.schemaVersion` of the last successful run.
    pub version: i64,
    /// Hash of the field names and types.
    pub hash: String,
}
