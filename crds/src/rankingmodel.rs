//! `RankingModel`: a learning-to-rank model that must be served, and how a new
//! revision of it reaches users (canary steps, metric analysis, rollback).

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerBehavior, MetricSpec};
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Conditions, DNS_SUBDOMAIN_RULE, DURATION_MAX_LEN, DURATION_RULE, PodPlacement,
};
use crate::http::{Authorization, BasicAuth, HttpHeader, TIMEOUT_RULE, TlsConfig};
use crate::notify::Notification;

/// Desired state of a RankingModel: which model revision to serve, on which
/// runtime, at what scale, depending on which feature pipelines, and how a new
/// revision is rolled out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mlctl.io",
    version = "v1alpha1",
    kind = "RankingModel",
    plural = "rankingmodels",
    singular = "rankingmodel",
    shortname = "rm",
    category = "mlctl",
    namespaced,
    status = "RankingModelStatus",
    derive = "PartialEq",
    cel,
    doc = "RankingModel serves a learning-to-rank model (LightGBM, XGBoost, ONNX) and rolls out new revisions of it through canary steps with metric analysis and automatic rollback. Short name: rm.",
    validation = Rule::new("!has(self.metadata.name) || (size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))").message("metadata.name must be at most 52 characters of lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (it names the Services <name>-stable and <name>-canary)"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stable.version", description = "Version serving stable traffic"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canary.version", description = "Version under canary, if any"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canary.weight", description = "Percent of traffic sent to the canary"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Progressing, Paused, Healthy or Degraded"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the model serves at full capacity"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Desired", type_ = "string", json_path = ".spec.model.version", priority = 1, description = "Version requested in the spec"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas", priority = 1, description = "Serving pods"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.readyReplicas", priority = 1, description = "Ready serving pods")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either spec.replicas or spec.autoscaling, not both: with autoscaling the HorizontalPodAutoscaler owns the replica count (kubectl scale only works without autoscaling)"),
    validation = Rule::new("!has(self.features) || self.features.all(f, self.features.filter(g, g.pipeline == f.pipeline).size() == 1)").message("spec.features lists a pipeline twice: each feature pipeline may appear once (merge the feature lists)"),
)]
pub struct RankingModelSpec {
    /// The model revision to serve. Changing it starts a rollout.
    pub model: ModelSource,
    /// The serving container. A change of image, args or env is a new revision
    /// and goes through the same rollout as a model change. Optional: without
    /// it the model is served by this release's `mlctl-ranker` image.
    #[serde(default)]
    pub runtime: Runtime,
    /// Number of serving pods when `autoscaling` is not set (default 1). Mutually
    /// exclusive with `autoscaling`; `kubectl scale rm/NAME` sets this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.replicas must be 0 or more"))]
    pub replicas: Option<i32>,
    /// Horizontal autoscaling of the stable revision (autoscaling/v2). Mutually
    /// exclusive with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Feature pipelines this model reads from. A rollout does not start (or
    /// continue) while one of them is stale, failing or on another schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub features: Vec<FeatureDependency>,
    /// How a new revision is rolled out. Without it a new revision replaces the
    /// old one as soon as it is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Webhooks told about this model's rollout Events (started, step
    /// completed, paused, aborted, promoted, rolled back), with a
    /// Slack-compatible body; sent in the background with retries, never
    /// delaying the rollout (docs/notifications.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(n, self.filter(m, m.name == n.name).size() == 1)").message("spec.notifications names must be unique"))]
    pub notifications: Vec<Notification>,
}

/// A model artifact and its identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.credentialsSecret) || !self.uri.startsWith('pvc://')").message("spec.model.credentialsSecret is for downloaded artifacts (s3://, gs://, http(s)://): a pvc:// artifact is mounted, not fetched; remove credentialsSecret"),
)]
pub struct ModelSource {
    /// Version label of the model, e.g. `2026-11-20.3`: 1-63 lower-case letters,
    /// digits, '-' and '.', starting and ending with a letter or digit.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$')").message("spec.model.version must be 1-63 characters of lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. 2026-11-20.3)"))]
    pub version: String,
    /// Where the artifact is: `s3://`, `gs://`, `http(s)://` or `pvc://<claim>/<path>`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(s3|gs|https?|pvc)://.+$')").message("spec.model.uri must start with s3://, gs://, http://, https:// or pvc:// (e.g. s3://models/ranker/2026-11-20.3/model.txt)"))]
    pub uri: String,
    /// Artifact format, which tells the runtime how to load it.
    pub format: ModelFormat,
    /// Optional SHA-256 of the artifact (64 hex characters); the storage
    /// initializer refuses an artifact that does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[a-fA-F0-9]{64}$')").message("spec.model.sha256 must be 64 hex characters (the output of sha256sum)"))]
    pub sha256: Option<String>,
    /// Name of a Secret in the model's namespace holding the credentials the
    /// storage initializer downloads the artifact with. Its keys become the init
    /// container's environment (e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ENDPOINT_URL`) and it is mounted read-only at
    /// `/var/run/secrets/mlctl/model-credentials` (point
    /// `GOOGLE_APPLICATION_CREDENTIALS` at a key file there). The serving
    /// container never sees it. Prefer `spec.runtime.serviceAccountName` with
    /// IRSA or Workload Identity where the cloud offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("spec.model.credentialsSecret must be the name of a Secret: lower-case letters, digits, '-' and '.'"))]
    pub credentials_secret: Option<String>,
}

/// Model artifact formats.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// LightGBM text or binary model.
    Lightgbm,
    /// XGBoost JSON or binary model.
    Xgboost,
    /// ONNX graph.
    Onnx,
    /// Anything the runtime image understands.
    Custom,
}

impl ModelFormat {
    /// The lower-case name used in manifests and in `MODEL_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Lightgbm => "lightgbm",
            ModelFormat::Xgboost => "xgboost",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Custom => "custom",
        }
    }
}

/// The serving container of every revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Container image of the serving runtime. Defaults to this release's
    /// `mlctl-ranker` image, written into the object when it is created (so an
    /// operator upgrade never changes what an existing model runs: set the new
    /// image to roll it out through the model's rollout strategy).
    #[serde(default = "default_runtime_image")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Port the runtime listens on for ranking requests (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("spec.runtime.port must be between 1 and 65535"))]
    pub port: Option<i32>,
    /// Entrypoint override; the image's entrypoint when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the runtime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables. `MODEL_PATH`, `MODEL_VERSION`, `MODEL_FORMAT`
    /// and `MODEL_NAME` are always set by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// CPU and memory requests and limits of the serving container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// HTTP path of the readiness probe (default `/ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.runtime.readinessPath must start with '/'"))]
    pub readiness_path: Option<String>,
    /// HTTP path of the liveness probe (default `/healthz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.runtime.livenessPath must start with '/'"))]
    pub liveness_path: Option<String>,
    /// Image pull policy: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Extra labels and annotations on the serving pods (cost allocation,
    /// sidecar injection, scrape hints). Part of the revision: changing them
    /// rolls out like a new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,
    /// ServiceAccount the serving pods run as (storage initializer included):
    /// how a pod gets cloud credentials through IRSA/EKS Pod Identity or GKE
    /// Workload Identity to read `spec.model.uri`. Default: the namespace's
    /// `default` account. Its API token is not mounted (the runtime never talks
    /// to the API server). Updated in place, not a new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("spec.runtime.serviceAccountName must be the name of a ServiceAccount: lower-case letters, digits, '-' and '.'"))]
    pub service_account_name: Option<String>,
    /// Scheduling of the serving pods: nodeSelector, tolerations, affinity,
    /// topologySpreadConstraints, imagePullSecrets, priorityClassName.
    #[serde(flatten)]
    pub placement: PodPlacement,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            image: default_runtime_image(),
            port: None,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            resources: None,
            readiness_path: None,
            liveness_path: None,
            image_pull_policy: None,
            pod_metadata: None,
            service_account_name: None,
            placement: PodPlacement::default(),
        }
    }
}

fn default_runtime_image() -> String {
    crate::images::DEFAULT_RANKER_IMAGE.to_string()
}

/// Labels and annotations added to generated pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.labels) || self.labels.all(k, !(k in ['mlctl.io/model', 'mlctl.io/revision', 'mlctl.io/version', 'mlctl.io/track']) && !k.startsWith('app.kubernetes.io/'))").message("spec.runtime.podMetadata.labels must not set mlctl.io/model, mlctl.io/revision, mlctl.io/version, mlctl.io/track or app.kubernetes.io/ labels: the operator sets and selects pods by them; use another key"),
)]
pub struct PodMetadata {
    /// Labels added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

/// Image pull policies.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Horizontal autoscaling of the stable revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must be less than or equal to maxReplicas"),
)]
pub struct Autoscaling {
    /// Lower bound of the replica count (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: Option<i32>,
    /// Upper bound of the replica count.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.maxReplicas must be at least 1"))]
    pub max_replicas: i32,
    /// Target average CPU utilisation in percent of requests (default 80 when no
    /// `metrics` are given).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.targetCPUUtilizationPercentage must be at least 1"))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Further metrics, as in a HorizontalPodAutoscaler (autoscaling/v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// Scaling behaviour, as in a HorizontalPodAutoscaler (autoscaling/v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// A dependency on a FeaturePipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDependency {
    /// Name of the FeaturePipeline in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub pipeline: String,
    /// Schema version of the pipeline's features that this model was trained on.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.features[].schemaVersion must be 1 or more"))]
    pub schema_version: i64,
    /// How old the features may be before the model is considered at risk, e.g.
    /// `2h`. Defaults to the pipeline's own freshness objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.features[].maxStaleness must be a duration such as 30s, 5m or 1h30m"))]
    pub max_staleness: Option<String>,
    /// Feature names the model reads; each must exist in the pipeline's schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    pub features: Vec<String>,
    /// `Rollouts` (default): stale or incompatible features block new rollouts
    /// but not the first deployment. `Strict`: they block the first deployment too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<FeatureGate>,
}

/// When feature readiness blocks a model.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureGate {
    /// Block rollouts of new revisions only.
    Rollouts,
    /// Block the first deployment too.
    Strict,
}

/// How a new revision is rolled out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.steps) || !self.steps.exists(s, has(s.setWeight)) || !self.steps.exists(s, has(s.shadow) || has(s.interleave)) || self.steps.filter(s, has(s.setWeight)).all(w, self.steps.filter(s, has(s.shadow) || has(s.interleave)).all(c, self.steps.indexOf(w) > self.steps.lastIndexOf(c)))").message("spec.rollout.steps: shadow and interleave steps must come before the first setWeight step (the canary takes no user traffic while it is compared)"),
    validation = Rule::new("(has(self.analysis) && has(self.analysis.templateRefs)) || !has(self.steps) || self.steps.all(s, !has(s.analysis) || s.analysis.metrics.all(m, has(self.analysis) && ((has(self.analysis.metrics) && self.analysis.metrics.exists(x, x.name == m)) || (has(self.analysis.templates) && self.analysis.templates.exists(x, x.name == m)))))").message("a rollout step's analysis names a metric that is not defined: add it to spec.rollout.analysis.templates (or metrics), or reference an AnalysisTemplate that defines it in spec.rollout.analysis.templateRefs"),
    validation = Rule::new("(has(self.analysis) && has(self.analysis.templateRefs)) || !has(self.blueGreen) || [has(self.blueGreen.prePromotionAnalysis) ? self.blueGreen.prePromotionAnalysis.metrics : [], has(self.blueGreen.postPromotionAnalysis) ? self.blueGreen.postPromotionAnalysis.metrics : []].all(l, l.all(m, has(self.analysis) && ((has(self.analysis.metrics) && self.analysis.metrics.exists(x, x.name == m)) || (has(self.analysis.templates) && self.analysis.templates.exists(x, x.name == m)))))").message("spec.rollout.blueGreen names a pre/post-promotion metric that is not defined: add it to spec.rollout.analysis.templates, or reference an AnalysisTemplate that defines it in spec.rollout.analysis.templateRefs"),
    validation = Rule::new("!has(self.blueGreen) || !has(self.steps) || size(self.steps) == 0").message("spec.rollout sets blueGreen and steps: a rollout is either blue-green or canary steps; remove one"),
    validation = Rule::new("!has(self.steps) || !self.steps.exists(s, has(s.setHeaderRoute)) || (has(self.trafficRouting) && (has(self.trafficRouting.gatewayAPI) || has(self.trafficRouting.istio)))").message("a setHeaderRoute step needs spec.rollout.trafficRouting.gatewayAPI or istio: replica-ratio routing cannot match request headers"),
)]
pub struct Rollout {
    /// Canary steps, executed in order. After the last step the canary becomes
    /// stable at 100%. `shadow` and `interleave` steps come before the first
    /// `setWeight` (the canary must not take user traffic yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub steps: Vec<RolloutStep>,
    /// How traffic is split between stable and canary (default: replica ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Background analysis during the whole canary, and metric templates that
    /// analysis steps refer to by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Seconds the canary may take to become ready before the rollout is
    /// aborted (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.rollout.progressDeadlineSeconds must be 0 or more"))]
    pub progress_deadline_seconds: Option<i32>,
    /// Seconds the previous stable keeps running after a promotion, so that a
    /// quick rollback needs no new pods (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.rollout.scaleDownDelaySeconds must be 0 or more"))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds an aborted canary keeps running for inspection (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.rollout.abortScaleDownDelaySeconds must be 0 or more"))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Blue-green instead of canary steps: the new revision runs at full size
    /// behind the `<model>-preview` Service while the stable one keeps all
    /// traffic; after `prePromotionAnalysis` and promotion (automatic or
    /// `mlctl promote`) traffic switches at once, `postPromotionAnalysis`
    /// runs while the previous revision stays at full size (a failure
    /// switches back), and the previous revision is removed
    /// `scaleDownDelaySeconds` later. Mutually exclusive with `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
}

impl Rollout {
    /// The header route in force while a canary is at step `step_index`:
    /// the last `setHeaderRoute` step among the completed ones (those before
    /// `step_index`; a header step completes once the canary has a Ready
    /// pod, as a `setWeight` does); None when there is none or the last one
    /// has an empty match list (which removes the route).
    pub fn header_route_at(&self, step_index: i32) -> Option<Vec<HeaderMatch>> {
        let done = usize::try_from(step_index).ok()?;
        self.steps
            .iter()
            .take(done)
            .filter_map(|s| s.set_header_route.as_ref())
            .next_back()
            .map(|h| h.match_.clone())
            .filter(|m| !m.is_empty())
    }
}

/// A blue-green rollout (docs/rollouts.md, "Blue-green").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen {
    /// Promote as soon as the preview is Available and `prePromotionAnalysis`
    /// passed (default true). `false`: the rollout pauses (reason
    /// `PreviewReady`) until `mlctl promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// With automatic promotion: seconds the ready preview waits before the
    /// switch (default 0), time for people to try `<model>-preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.rollout.blueGreen.autoPromotionSeconds must be 0 or more"))]
    pub auto_promotion_seconds: Option<i32>,
    /// Metrics (by name, from `spec.rollout.analysis.templates` or referenced
    /// AnalysisTemplates) run against the preview before the switch; a
    /// failure aborts, an inconclusive result pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<AnalysisStep>,
    /// Metrics run after the switch while the previous revision stays at
    /// full size; a failure switches traffic back and aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<AnalysisStep>,
}

/// One canary step: exactly one of `setWeight`, `pause`, `analysis`, `shadow`,
/// `interleave` or `setHeaderRoute`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.setWeight), has(self.pause), has(self.analysis), has(self.shadow), has(self.interleave), has(self.setHeaderRoute)].filter(x, x).size() == 1").message("each spec.rollout.steps[] entry must set exactly one of setWeight, pause, analysis, shadow, interleave or setHeaderRoute"),
)]
pub struct RolloutStep {
    /// Percent of traffic to send to the canary (1-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("setWeight must be between 1 and 100 (percent of traffic sent to the canary)"))]
    pub set_weight: Option<i32>,
    /// Wait for a duration, or (without one) until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Run the named metrics to a verdict before continuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
    /// Shadow scoring: the canary takes no user traffic; the stable pods send
    /// it a sampled copy of their `:rank` requests and export how the two
    /// rankings agree (`ranker_shadow_*` metrics) for the analysis to judge.
    /// Must come before the first `setWeight` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStep>,
    /// Team-draft interleaving: for sampled queries the stable pods merge
    /// their ranking with the canary's, users' clicks credit the ranker that
    /// placed the document, and a sign test decides which one users prefer.
    /// Must come before the first `setWeight` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interleave: Option<InterleaveStep>,
    /// Send requests that carry the given headers (e.g. `x-ranker: canary`,
    /// for internal testers) to the canary, whatever its weight, from this
    /// step until the rollout ends or a later `setHeaderRoute` step changes
    /// it (`match: []` removes it). Needs the Gateway API or Istio router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<HeaderRouteStep>,
}

/// A header route step (docs/rollouts.md, "Header routes").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRouteStep {
    /// Headers a request must all carry to reach the canary; empty removes
    /// the header route.
    #[serde(default, rename = "match")]
    #[schemars(length(max = 8))]
    pub match_: Vec<HeaderMatch>,
}

impl HeaderMatch {
    /// The condition as people write it: `x-ranker: canary`,
    /// `x-ranker ~ ^(canary|beta)$`.
    pub fn summary(&self) -> String {
        match (&self.exact, &self.regex) {
            (Some(v), _) => format!("{}: {v}", self.name),
            (None, Some(r)) => format!("{} ~ {r}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// One header condition: exactly one of `exact` or `regex`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.exact), has(self.regex)].filter(x, x).size() == 1").message("setHeaderRoute.match[] sets exactly one of exact or regex"),
)]
pub struct HeaderMatch {
    /// Header name, e.g. `x-ranker` (case-insensitive, as HTTP).
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9!#$%&\\'*+.^_`|~-]+$')").message("setHeaderRoute.match[].name must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"))]
    pub name: String,
    /// The value must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub exact: Option<String>,
    /// The value must match this regular expression (RE2 syntax, as the
    /// Gateway API and Envoy use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,
}

/// A shadow step (docs/rollouts.md, "Shadow scoring").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStep {
    /// How long the stable pods shadow the canary, e.g. `10m`, counted from
    /// when the canary's pods are Ready and the operator wrote the config
    /// (the kubelet takes up to its sync period to deliver it).
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("shadow.duration must be a duration such as 30s, 5m or 1h30m"))]
    pub duration: String,
    /// Percent of the stable pods' `:rank` requests copied to the canary
    /// (1-100, default 10). The canary gets enough pods for that share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("shadow.sample must be between 1 and 100 (percent of the stable's requests copied to the canary)"))]
    pub sample: Option<i32>,
    /// Cut-off of the `ndcg@k` and `overlap@k` agreement measures (1-1000,
    /// default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("shadow.k must be between 1 and 1000"))]
    pub k: Option<i32>,
}

/// An interleave step (docs/rollouts.md, "Interleaving").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InterleaveStep {
    /// Percent of the stable pods' `:rank` requests answered with an
    /// interleaved ranking (1-100, default 10). Each costs a call to the
    /// canary on the user's request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("interleave.sample must be between 1 and 100 (percent of the stable's requests interleaved)"))]
    pub sample: Option<i32>,
    /// When the step decides: after this many judged queries (feedback
    /// received), or after this long, whichever comes first. The sign test is
    /// run once, then (a fixed horizon: testing as the counts grow and
    /// stopping at the first significant result would inflate `alpha`).
    pub until: InterleaveUntil,
    /// Significance level of the two-sided sign test (default `0.05`), a
    /// decimal between 0 and 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^0?[.][0-9]+$') && double(self) > 0.0 && double(self) <= 0.5").message("interleave.alpha must be a decimal between 0 and 0.5, e.g. \"0.05\""))]
    pub alpha: Option<String>,
    /// What a step without a significant preference does: `Pause` (default:
    /// wait for `mlctl promote` or `mlctl abort`), `Continue` or `Abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_preference: Option<NoPreference>,
    /// The Prometheus that scrapes the ranker pods: the outcome counters
    /// (`ranker_interleave_outcomes_total`) are read from it.
    pub prometheus: InterleavePrometheus,
}

/// The budget of an interleave step: at least one of `queries`, `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.queries) || has(self.duration)").message("interleave.until needs queries or duration (or both: whichever comes first), e.g. until: {queries: 2000}"),
)]
pub struct InterleaveUntil {
    /// Judged queries (feedback received, ties included) to collect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("interleave.until.queries must be at least 1"))]
    pub queries: Option<i64>,
    /// Longest time to collect them, e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("interleave.until.duration must be a duration such as 30m or 2h"))]
    pub duration: Option<String>,
}

impl InterleaveUntil {
    /// The budget as a phrase: `2000 queries or 2h`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(q) = self.queries {
            parts.push(format!("{q} queries"));
        }
        if let Some(d) = &self.duration {
            parts.push(d.clone());
        }
        parts.join(" or ")
    }
}

/// What an interleave step without a significant preference does.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPreference {
    /// Pause the rollout (reason `Inconclusive`) for a person to decide.
    Pause,
    /// Go on to the next step: "not shown worse" is enough.
    Continue,
    /// Abort: the canary must be shown better.
    Abort,
}

/// Where the interleaving outcome counters are read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.authorization) && has(self.basicAuth))").message("interleave.prometheus sets authorization or basicAuth, not both"),
)]
pub struct InterleavePrometheus {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+$')").message("interleave.prometheus.address must be an http:// or https:// URL"))]
    pub address: String,
    /// PromQL returning the outcome counts as a vector by `winner`
    /// (`canary`, `stable`, `tie`). Default:
    /// `sum by (winner) (ranker_interleave_outcomes_total{namespace="{{namespace}}",model="{{model}}",version="{{stable_version}}",canary_version="{{canary_version}}"})`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
    /// Request timeout (default `10s`, at most `60s`; the operator clamps it
    /// to its `--analysis-timeout-max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("interleave.prometheus.timeout must be a duration of at most 60s, such as 10s"))]
    pub timeout: Option<String>,
    /// `Authorization` header with a token from a Secret (e.g. a managed
    /// Prometheus's bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Basic authentication from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings (CA bundle, server name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to wait, e.g. `5m`. Without it the rollout waits for
    /// `mlctl promote` (the `mlctl.io/promote` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("pause.duration must be a duration such as 30s, 5m or 1h30m (omit it to pause until promoted)"))]
    pub duration: Option<String>,
}

/// An analysis step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    /// Names of metrics from `rollout.analysis.templates` (or `metrics`) to run.
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<String>,
}

/// How traffic is split: exactly one kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.replicaRatio), has(self.gatewayAPI), has(self.istio)].filter(x, x).size() == 1").message("spec.rollout.trafficRouting must set exactly one of replicaRatio, gatewayAPI or istio"),
)]
pub struct TrafficRouting {
    /// Split by the ratio of canary to stable pods behind the `<model>` Service.
    /// Works everywhere; the split is approximate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_ratio: Option<ReplicaRatio>,
    /// Set backend weights on a Gateway API HTTPRoute.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "gatewayAPI"
    )]
    pub gateway_api: Option<GatewayApiRouting>,
    /// Set route weights on an Istio VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioRouting>,
}

/// Replica-ratio routing has no settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ReplicaRatio {}

/// Gateway API routing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of the HTTPRoute (same namespace) whose backendRefs point at
    /// `<model>-stable` and `<model>-canary`.
    #[schemars(length(min = 1, max = 253))]
    pub http_route: String,
}

/// Istio routing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioRouting {
    /// The VirtualService whose routes are weighted.
    pub virtual_service: IstioVirtualService,
}

/// An Istio VirtualService reference.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    /// Name of the VirtualService (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Named HTTP routes to weight; all routes when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// Metric analysis of a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.metrics) ? self.metrics.map(m, m.name) : []).all(n, (has(self.metrics) ? self.metrics.filter(m, m.name == n).size() : 0) + (has(self.templates) ? self.templates.filter(m, m.name == n).size() : 0) == 1) && (has(self.templates) ? self.templates.map(m, m.name) : []).all(n, (has(self.metrics) ? self.metrics.filter(m, m.name == n).size() : 0) + self.templates.filter(m, m.name == n).size() == 1)").message("spec.rollout.analysis metric names must be unique across metrics and templates"),
)]
pub struct RolloutAnalysis {
    /// Metrics measured in the background during the whole canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics: Vec<AnalysisMetric>,
    /// Metrics measured only by analysis steps that name them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub templates: Vec<AnalysisMetric>,
    /// Shared AnalysisTemplates (same namespace) whose metrics this model
    /// uses: by name from analysis steps and blue-green analyses, or all of
    /// them in the background (`background: true`). A missing template or a
    /// name defined twice holds the rollout (condition `AnalysisHealthy`
    /// says which) until fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(r, self.filter(t, t.name == r.name).size() == 1)").message("spec.rollout.analysis.templateRefs names a template twice"))]
    pub template_refs: Vec<AnalysisTemplateRef>,
}

/// A reference to an AnalysisTemplate in the model's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Name of the AnalysisTemplate.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("templateRefs[].name must be the name of an AnalysisTemplate: lower-case letters, digits, '-' and '.'"))]
    pub name: String,
    /// Run all the template's metrics in the background during the whole
    /// canary, like `spec.rollout.analysis.metrics` (default false: they are
    /// only run by steps that name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
}

/// One measured metric and the rules that turn measurements into a verdict.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.successCondition) || has(self.failureCondition) || has(self.provider.job)").message("an analysis metric needs a successCondition or a failureCondition, e.g. successCondition: \"result < 0.05\" (only a job provider may omit both: then the Job's success is the verdict)"),
)]
pub struct AnalysisMetric {
    /// Name of the metric, unique within the rollout.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Where measurements come from: exactly one provider.
    pub provider: MetricProvider,
    /// Time between measurements (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("interval must be a duration such as 30s, 5m or 1h30m"))]
    pub interval: Option<String>,
    /// Wait before the first measurement (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("initialDelay must be a duration such as 30s, 5m or 1h30m"))]
    pub initial_delay: Option<String>,
    /// Number of measurements; 0 means until the canary ends (background) or 1
    /// (steps). Default 0 for background metrics, 1 for step analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("count must be 0 or more"))]
    pub count: Option<i32>,
    /// Expression over `result` that makes a measurement Successful, e.g.
    /// `result < 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the analysis fails (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("failureLimit must be 0 or more"))]
    pub failure_limit: Option<i32>,
    /// Consecutive failed measurements tolerated (default: no separate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("consecutiveFailureLimit must be 0 or more"))]
    pub consecutive_failure_limit: Option<i32>,
    /// Inconclusive measurements tolerated before the rollout pauses (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("inconclusiveLimit must be 0 or more"))]
    pub inconclusive_limit: Option<i32>,
    /// Consecutive provider errors tolerated before the analysis errs (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("consecutiveErrorLimit must be 0 or more"))]
    pub consecutive_error_limit: Option<i32>,
}

/// A measurement provider: exactly one kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.prometheus), has(self.web), has(self.job)].filter(x, x).size() == 1").message("each analysis metric's provider must set exactly one of prometheus, web or job"),
)]
pub struct MetricProvider {
    /// An instant PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    /// An HTTP GET returning JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebProvider>,
    /// A Kubernetes Job per measurement (e.g. `mlctl eval` against the
    /// canary Service on a fixed query set): its outcome is the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobProvider>,
}

/// A measurement that is a Job's outcome (docs/analysis.md, "Job
/// provider"). The Job runs in the model's namespace, owned by the model,
/// with `MLCTL_MODEL`, `MLCTL_NAMESPACE`, `MLCTL_STABLE_VERSION`,
/// `MLCTL_CANARY_VERSION`, `MLCTL_STABLE_URL` and `MLCTL_CANARY_URL` in its
/// environment. A Job that succeeds measures `1` and one that fails `0`;
/// when the container writes a number as its termination message
/// (`/dev/termination-log`), that number is `result` instead. Without
/// conditions, success is Successful and failure Failed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobProvider {
    /// Container image (default: this release's `mlctl` CLI image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Entrypoint override; the image's entrypoint when empty. The query
    /// placeholders (`{{model}}`, `{{canary_version}}`, ...) are substituted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// Arguments; placeholders substituted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,
    /// Extra environment variables; placeholders substituted in `value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// CPU and memory of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A ConfigMap (same namespace) mounted read-only at
    /// `/etc/mlctl/analysis` (a fixed query set, qrels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("job.configMap must be the name of a ConfigMap: lower-case letters, digits, '-' and '.'"))]
    pub config_map: Option<String>,
    /// ServiceAccount the Job runs as (default: the namespace's `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("job.serviceAccountName must be the name of a ServiceAccount: lower-case letters, digits, '-' and '.'"))]
    pub service_account_name: Option<String>,
    /// Seconds the Job may run before it counts as failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("job.activeDeadlineSeconds must be at least 1"))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of a failed pod within one measurement (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("job.backoffLimit must be between 0 and 10"))]
    pub backoff_limit: Option<i32>,
}

/// Prometheus instant query.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.authorization) && has(self.basicAuth))").message("prometheus sets authorization or basicAuth, not both"),
)]
pub struct PrometheusProvider {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+$')").message("prometheus.address must be an http:// or https:// URL"))]
    pub address: String,
    /// PromQL returning one number. `{{model}}`, `{{namespace}}`, `{{version}}`,
    /// `{{track}}`, `{{stable_version}}` and `{{canary_version}}` are
    /// substituted.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Request timeout (default `10s`, at most `60s`; the operator clamps it
    /// to its `--analysis-timeout-max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("prometheus.timeout must be a duration of at most 60s, such as 10s"))]
    pub timeout: Option<String>,
    /// `Authorization` header with a token from a Secret (e.g. a managed
    /// Prometheus's bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Basic authentication from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings (CA bundle, server name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// HTTP GET returning JSON.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebProvider {
    /// URL to GET; the same placeholders as for Prometheus are substituted.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+$')").message("web.url must be an http:// or https:// URL"))]
    pub url: String,
    /// JSON path to the number in the response, e.g. `$.data.ndcg`.
    #[schemars(length(min = 1, max = 512))]
    pub json_path: String,
    /// Extra request headers; credentials from Secrets
    /// (`valueFrom.secretKeyRef`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(h, self.filter(g, g.name.lowerAscii() == h.name.lowerAscii()).size() == 1)").message("web.headers names a header twice"))]
    pub headers: Vec<HttpHeader>,
    /// Request timeout (default `10s`, at most `60s`; the operator clamps it
    /// to its `--analysis-timeout-max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LEN))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("web.timeout must be a duration of at most 60s, such as 10s"))]
    pub timeout: Option<String>,
    /// TLS settings (CA bundle, server name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// Observed state of a RankingModel, written only by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RankingModelStatus {
    /// Pending, Progressing, Paused, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision serving stable traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<StableRevision>,
    /// The revision under canary, if a rollout is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryRevision>,
    /// Previous revisions kept running for a quick rollback until their
    /// scale-down time (`scaleDownDelaySeconds` after they stopped serving).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringRevision>,
    /// Recent analysis measurements and verdicts (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// The last revisions served, newest first (bounded); `mlctl rollback` uses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Ready, Progressing, FeaturesReady, AnalysisHealthy.
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Serving pods of the stable revision (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready serving pods of all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the serving pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Request annotations (`mlctl.io/promote`, …) already acted on, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled_requests: BTreeMap<String, String>,
    /// Human-readable summary of what the operator is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Rollout phases.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing is serving yet.
    Pending,
    /// A revision is being deployed or a canary is advancing.
    Progressing,
    /// A canary waits for a person (pause without duration, inconclusive analysis).
    Paused,
    /// The desired revision serves all traffic at full capacity.
    Healthy,
    /// The last rollout failed or the model cannot be served.
    Degraded,
}

impl Phase {
    /// The name shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Healthy => "Healthy",
            Phase::Degraded => "Degraded",
        }
    }
}

/// The revision serving stable traffic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StableRevision {
    /// Model version.
    pub version: String,
    /// Model URI.
    pub uri: String,
    /// Revision hash (model, runtime image, args, env).
    pub revision: String,
    /// When it became stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// A revision that no longer serves and is removed at `scaleDownAt`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetiringRevision {
    /// Model version.
    pub version: String,
    /// Revision hash.
    pub revision: String,
    /// When its Deployment is scaled down and deleted.
    pub scale_down_at: Time,
}

/// The revision under canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryRevision {
    /// Model version.
    pub version: String,
    /// Model URI.
    pub uri: String,
    /// Revision hash.
    pub revision: String,
    /// Percent of traffic currently sent to the canary.
    pub weight: i32,
    /// Index of the current step in `spec.rollout.steps`. Blue-green: the
    /// stage (0 preview starting, 1 pre-promotion analysis, 2 promotion,
    /// 3 switched / post-promotion analysis, 4-5 promoted by request).
    pub step_index: i32,
    /// When the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// When the canary started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Set while the canary waits for a person or for its features: when it
    /// paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
    /// Why the canary is paused: `PauseStep`, `Inconclusive`, `FeaturesNotReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// Set once the canary was aborted: all traffic went back to stable. A
    /// `mlctl.io/retry` request or a new `spec.model` starts it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Why it was aborted (the metric, its value and the broken condition; or
    /// the progress deadline; or a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// When the aborted canary's Deployment is scaled down
    /// (`abortScaleDownDelaySeconds` after the abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<Time>,
    /// The shadow and interleave steps of this canary that have started,
    /// in step order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<ComparisonStatus>,
    /// `BlueGreen` for a blue-green rollout; absent for canary steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Blue-green: when the preview (the new revision at full size behind
    /// `<model>-preview`) became Available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_ready_at: Option<Time>,
    /// Blue-green: when all traffic switched to the new revision
    /// (post-promotion analysis runs from here; the previous revision stays
    /// at full size until it passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<Time>,
}

/// A shadow or interleave step of the current canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonStatus {
    /// Index of the step in `spec.rollout.steps`.
    pub step: i32,
    /// `shadow` or `interleave`.
    pub mode: String,
    /// When the canary's pods were Ready and the stable pods were told to
    /// compare (the step's clock starts here). Unset while it prepares
    /// (canary pods starting; interleave: reading the counters' baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the step ended (its duration passed, or its verdict was reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// Interleave: outcome counts when the step started (the counters are
    /// cumulative per pod; the step counts what came after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<InterleaveCounts>,
    /// Interleave: judged queries since the step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<InterleaveCounts>,
    /// Interleave: the sign test's two-sided p-value, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<String>,
    /// Interleave: `CanaryPreferred`, `StablePreferred` or `NoPreference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The last reading of the counters, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the counters were last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
}

/// Interleaving outcomes: which ranker's documents got more clicks per query.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InterleaveCounts {
    /// Queries the canary won.
    pub canary: i64,
    /// Queries the stable won.
    pub stable: i64,
    /// Ties (equal clicks, or none).
    pub ties: i64,
}

/// Analysis state of the current canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// One entry per metric being measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStatus>,
}

/// Measurements and verdict of one metric.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// Metric name.
    pub name: String,
    /// Index of the analysis step that runs this metric; absent for
    /// background analysis (`spec.rollout.analysis.metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// Blue-green: `PrePromotion` or `PostPromotion`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Running, Successful, Failed, Inconclusive or Error.
    pub phase: String,
    /// When this metric's analysis started (the base of `initialDelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Why the verdict is what it is, e.g. `result 0.12 broke failureCondition
    /// "result > 0.05"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Counts of measurements by outcome.
    #[serde(default)]
    pub successful: i32,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,
    /// Inconclusive measurements.
    #[serde(default)]
    pub inconclusive: i32,
    /// Errors.
    #[serde(default)]
    pub errors: i32,
    /// Consecutive errors.
    #[serde(default)]
    pub consecutive_errors: i32,
    /// Consecutive failures.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// The most recent measurements, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// One measurement.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Successful, Failed, Inconclusive or Error.
    pub outcome: String,
    /// The measured value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why, for errors and inconclusive results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was taken.
    pub at: Time,
}

/// A revision that was served.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Model version.
    pub version: String,
    /// Model URI.
    pub uri: String,
    /// Model SHA-256, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Revision hash.
    pub revision: String,
    /// Promoted, Aborted, Superseded or RolledBack.
    pub outcome: String,
    /// When the outcome happened.
    pub at: Time,
    /// The shadow and interleave comparisons of the canary that ended here
    /// (kept after `status.canary` is cleared: why it was promoted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<ComparisonStatus>,
}
