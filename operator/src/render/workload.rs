//! The per-revision serving Deployment, and the revision identity it is named by.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecretEnvSource, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::PodMetadata;
use serde::Serialize;

use super::labels::*;
use super::pod::{placed_pod_spec, restricted_container_context, restricted_pod_context};
use super::{
    ModelRef, PEER_CONFIG_PATH, PEER_DIR, PEER_VOLUME, content_hash, peer_config_map_name,
};

/// Where the model artifact is mounted in the serving container.
pub const MODEL_DIR: &str = "/mnt/models";
/// Default port of the runtime.
pub const DEFAULT_PORT: i32 = 8080;
/// Where `spec.model.credentialsSecret` is mounted in the storage initializer.
pub const CREDENTIALS_DIR: &str = "/var/run/secrets/mlctl/model-credentials";
/// Non-root user the pods run as.
const RUN_AS_USER: i64 = 65532;

/// Settings of the operator that shape the pods.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Image of the init container that downloads and verifies the artifact
    /// (started with the arguments [`STORAGE_INITIALIZER_ARGS`]).
    pub storage_initializer_image: String,
}

pub use mlctl_crds::images::STORAGE_INITIALIZER_ARGS;

/// The role a revision's Deployment plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Serves stable traffic.
    Stable,
    /// A new revision on its way in.
    Canary,
    /// A previous revision kept warm until its scale-down time.
    Retiring,
}

impl Track {
    /// The value of the `mlctl.io/track` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
            Track::Retiring => "retiring",
        }
    }
}

/// What a revision is made of: everything that changes what is served. A
/// change of any of these is a new revision and goes through a rollout;
/// resources, probes, ports, the service account and the placement
/// (`spec.runtime.nodeSelector`, `tolerations`, ...) are updated in place: they
/// change the pod template of the revision's Deployment, whose applied hash
/// then differs, so it is applied again and rolls its pods (maxUnavailable 0).
#[derive(Serialize)]
struct RevisionIdentity<'a> {
    version: &'a str,
    uri: &'a str,
    sha256: Option<&'a str>,
    format: &'static str,
    image: &'a str,
    command: &'a [String],
    args: &'a [String],
    env: &'a [EnvVar],
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_metadata: Option<&'a PodMetadata>,
}

/// The revision hash of a spec: 10 hex characters.
pub fn revision_of(spec: &RankingModelSpec) -> String {
    let identity = RevisionIdentity {
        version: &spec.model.version,
        uri: &spec.model.uri,
        sha256: spec.model.sha256.as_deref(),
        format: spec.model.format.as_str(),
        image: &spec.runtime.image,
        command: &spec.runtime.command,
        args: &spec.runtime.args,
        env: &spec.runtime.env,
        pod_metadata: spec.runtime.pod_metadata.as_ref(),
    };
    let mut hash = content_hash(&identity);
    hash.truncate(10);
    hash
}

/// How the artifact reaches the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Downloaded by the storage initializer into an emptyDir.
    Download {
        /// Path of the artifact inside the container.
        model_path: String,
    },
    /// A PersistentVolumeClaim mounted read-only.
    Claim {
        /// Claim name.
        claim: String,
        /// Path of the artifact inside the container.
        model_path: String,
    },
}

/// Where `uri` is mounted and how it gets there.
pub fn artifact_source(uri: &str) -> ArtifactSource {
    if let Some(rest) = uri.strip_prefix("pvc://") {
        let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
        let model_path = if path.is_empty() {
            MODEL_DIR.to_string()
        } else {
            format!("{MODEL_DIR}/{path}")
        };
        return ArtifactSource::Claim {
            claim: claim.to_string(),
            model_path,
        };
    }
    let without_query = uri.split(['?', '#']).next().unwrap_or(uri);
    let file = without_query
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, path)| path.rsplit('/').next().unwrap_or(""))
        .unwrap_or("");
    let model_path = if file.is_empty() {
        MODEL_DIR.to_string()
    } else {
        format!("{MODEL_DIR}/{file}")
    };
    ArtifactSource::Download { model_path }
}

/// What to render for one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionPlan {
    /// Revision hash.
    pub revision: String,
    /// Track label.
    pub track: Track,
    /// Replica count to set, or `None` when an autoscaler owns it.
    pub replicas: Option<i32>,
    /// With an autoscaler: the size to create the Deployment with (set once,
    /// by a separate field manager, so the operator never owns `replicas`).
    pub initial_replicas: Option<i32>,
}

/// `restricted`, plus what the operator can promise for its own ranker
/// image: a fixed user and a read-only root filesystem.
fn hardened_container_context() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        ..restricted_container_context()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn http_probe(path: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn quantity(q: &str) -> Quantity {
    Quantity(q.to_string())
}

/// `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path` for a
/// runtime serving its metrics at `/metrics` on `port` (runtime contract).
pub fn scrape_annotations(port: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SCRAPE_ANNOTATION.to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
}

/// The serving Deployment of one revision.
pub fn deployment(
    model: &ModelRef,
    spec: &RankingModelSpec,
    config: &RenderConfig,
    plan: &RevisionPlan,
) -> Deployment {
    let runtime = &spec.runtime;
    let port = runtime.port.unwrap_or(DEFAULT_PORT);
    let selector = revision_selector(&model.name, &plan.revision);

    // The user's labels first: ours (which select the pods) always win.
    let extra = runtime.pod_metadata.clone().unwrap_or_default();
    let mut pod_labels = extra.labels;
    pod_labels.extend(model_labels(&model.name));
    pod_labels.extend(selector.clone());
    pod_labels.insert(VERSION_LABEL.into(), spec.model.version.clone());
    pod_labels.insert(
        "app.kubernetes.io/version".into(),
        spec.model.version.clone(),
    );
    pod_labels.insert(
        "app.kubernetes.io/instance".into(),
        deployment_name(&model.name, &plan.revision),
    );
    pod_labels.insert(COMPONENT_LABEL.into(), "ranking-model".into());

    // Prometheus' de-facto pod discovery convention (the `kubernetes-pods` job of
    // Prometheus' example configuration and of the community Helm chart): the
    // runtime serves its metrics at /metrics on the serving port. The user's
    // podMetadata annotations win, so `prometheus.io/scrape: "false"` opts out.
    let mut pod_annotations = scrape_annotations(port);
    pod_annotations.extend(extra.annotations);

    let mut deployment_labels = pod_labels.clone();
    deployment_labels.insert(TRACK_LABEL.into(), plan.track.as_str().into());

    let source = artifact_source(&spec.model.uri);
    let model_path = match &source {
        ArtifactSource::Download { model_path } | ArtifactSource::Claim { model_path, .. } => {
            model_path.clone()
        }
    };

    let mut container_env = vec![
        env("MODEL_NAME", model.name.clone()),
        env("MODEL_VERSION", spec.model.version.clone()),
        env("MODEL_FORMAT", spec.model.format.as_str()),
        env("MODEL_PATH", model_path),
        env("MODEL_REVISION", plan.revision.clone()),
        env("PORT", port.to_string()),
    ];
    container_env.push(env("RANKER_PEER_CONFIG", PEER_CONFIG_PATH));
    container_env.extend(runtime.env.iter().cloned());

    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut init_containers = Vec::new();
    match &source {
        ArtifactSource::Download { .. } => {
            volumes.push(Volume {
                name: "model".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
            let mut init_env = vec![
                env("MODEL_URI", spec.model.uri.clone()),
                env("MODEL_DIR", MODEL_DIR),
            ];
            if let Some(sha) = &spec.model.sha256 {
                init_env.push(env("MODEL_SHA256", sha.to_lowercase()));
            }
            let mut init_mounts = vec![
                VolumeMount {
                    name: "model".into(),
                    mount_path: MODEL_DIR.into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                },
            ];
            // The credentials reach the init container only: the serving
            // container has no business reading the bucket.
            let env_from = spec.model.credentials_secret.as_ref().map(|secret| {
                volumes.push(Volume {
                    name: "model-credentials".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret.clone()),
                        default_mode: Some(0o440),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                init_mounts.push(VolumeMount {
                    name: "model-credentials".into(),
                    mount_path: CREDENTIALS_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: secret.clone(),
                        optional: Some(false),
                    }),
                    ..EnvFromSource::default()
                }]
            });
            init_containers.push(Container {
                name: "storage-initializer".into(),
                image: Some(config.storage_initializer_image.clone()),
                args: Some(
                    STORAGE_INITIALIZER_ARGS
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                ),
                env: Some(init_env),
                env_from,
                // A failed fetch writes its reason to the termination message; when it
                // could not, the log tail is the next best thing for `kubectl describe`.
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                volume_mounts: Some(init_mounts),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".into(), quantity("100m")),
                        ("memory".into(), quantity("128Mi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".into(), quantity("1Gi"))])),
                    claims: None,
                }),
                security_context: Some(hardened_container_context()),
                ..Container::default()
            });
        }
        ArtifactSource::Claim { claim, .. } => {
            volumes.push(Volume {
                name: "model".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            });
        }
    }

    volumes.push(Volume {
        name: PEER_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: peer_config_map_name(&model.name),
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    let container = Container {
        name: "ranker".into(),
        image: Some(runtime.image.clone()),
        image_pull_policy: runtime.image_pull_policy.map(|p| format!("{p:?}")),
        command: (!runtime.command.is_empty()).then(|| runtime.command.clone()),
        args: (!runtime.args.is_empty()).then(|| runtime.args.clone()),
        env: Some(container_env),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // Readiness every 2 s: a new pod takes traffic (and a rollout step moves
        // on) soon after it is able to; the probe is one cheap GET.
        readiness_probe: Some(http_probe(
            runtime.readiness_path.as_deref().unwrap_or("/ready"),
            0,
            2,
        )),
        liveness_probe: Some(http_probe(
            runtime.liveness_path.as_deref().unwrap_or("/healthz"),
            10,
            10,
        )),
        resources: runtime.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "model".into(),
                mount_path: MODEL_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: PEER_VOLUME.into(),
                mount_path: PEER_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(hardened_container_context()),
        ..Container::default()
    };

    Deployment {
        metadata: ObjectMeta {
            labels: Some(deployment_labels),
            annotations: Some(BTreeMap::from([(
                MODEL_URI_ANNOTATION.to_string(),
                spec.model.uri.clone(),
            )])),
            ..model.meta(
                deployment_name(&model.name, &plan.revision),
                BTreeMap::new(),
            )
        },
        spec: Some(DeploymentSpec {
            replicas: plan.replicas,
            revision_history_limit: Some(2),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: runtime.service_account_name.clone(),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        ..restricted_pod_context()
                    }),
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..placed_pod_spec(&runtime.placement)
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
