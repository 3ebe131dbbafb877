//! The Job provider: a measurement is the outcome of a Kubernetes Job (an
//! offline evaluation against the canary's Service, a smoke test). The
//! worker creates one Job per measurement under a name derived from what it
//! measures, so an operator that restarts finds the Job its predecessor
//! created and keeps waiting on it; [`render`], [`job_name`], [`state`],
//! [`termination_value`] and [`reading`] are pure, the [`Runner`] is the I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, Pod, PodSpec, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use mlctl_crds::common::PodPlacement;
use mlctl_crds::rankingmodel::JobProvider;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::Vars;
use super::provider::substitute;
use super::worker::ModelKey;
use crate::render::{
    MODEL_LABEL, placed_pod_spec, restricted_container_context, restricted_pod_context,
};

/// This release's `mlctl` CLI image, the default `job.image`.
pub const DEFAULT_IMAGE: &str = mlctl_crds::images::DEFAULT_CLI_IMAGE;
/// Where `job.configMap` is mounted, read-only.
pub const CONFIG_MOUNT_PATH: &str = "/etc/mlctl/analysis";
/// `job.activeDeadlineSeconds` when not set.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 600;
/// A finished Job (and its pod) is deleted by Kubernetes this long after it
/// finished: the operator reads it within seconds, people get ten minutes
/// for `kubectl logs job/<name>`.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 600;
/// Label naming the metric a Job measures (also on its pod).
pub const METRIC_LABEL: &str = "mlctl.io/metric";
/// Label on the Job's pod naming its Job (the pod deliberately carries no
/// `mlctl.io/model`: nothing that selects a model's serving pods may pick
/// an analysis pod up).
pub const JOB_LABEL: &str = "mlctl.io/analysis-job";
/// The container's name.
pub const CONTAINER: &str = "measure";
/// The Service port the model's Services expose (render::services).
const SERVICE_PORT: i32 = 80;
/// Slowest poll of a running Job (a GET each): the first polls come faster.
const POLL_MAX: Duration = Duration::from_secs(5);
/// Time past `activeDeadlineSeconds` after which the worker stops waiting
/// for a Job the Job controller never finished (e.g. a controller down).
const DEADLINE_GRACE: Duration = Duration::from_secs(60);

/// One measurement to take with a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMeasurement {
    /// The metric's name.
    pub metric: String,
    /// The analysis it belongs to (None: background).
    pub step: Option<i32>,
    /// Measurements of this metric taken before this one (errors included):
    /// with the canary and the metric it names the Job, so the same
    /// measurement asked again (after a restart) finds the same Job.
    pub ordinal: i32,
    pub provider: JobProvider,
    /// The metric has no conditions: the Job's success is the verdict and
    /// the value recorded is 1 or 0.
    pub verdict_by_outcome: bool,
    /// The model's `spec.runtime` placement: the Job runs where the model
    /// runs (a dedicated, tainted node pool; the registry's pull secrets).
    pub placement: PodPlacement,
}

/// The deterministic name of the Job of `m` for `model`'s current canary:
/// `<model>-<metric>-<hash>`, at most 63 characters (the Job controller
/// copies it into a label).
pub fn job_name(model: &ModelKey, m: &JobMeasurement) -> String {
    let mut hasher = Sha256::new();
    let provider = serde_json::to_string(&m.provider).unwrap_or_default();
    let started = model.started_at.map_or(0, |t| t.as_second());
    let step = m.step.map_or_else(|| "bg".to_string(), |s| s.to_string());
    for part in [
        model.uid.as_str(),
        model.revision.as_str(),
        &started.to_string(),
        m.metric.as_str(),
        &step,
        &m.ordinal.to_string(),
        &provider,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{hash}",
        dns_part(&model.name, 30),
        dns_part(&m.metric, 20)
    )
}

/// `text` as a DNS label fragment: lower case, other characters as `-`, at
/// most `max` characters, no `-` at either end (never empty).
fn dns_part(text: &str, max: usize) -> String {
    let mut mapped = String::new();
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && mapped.ends_with('-')) {
            mapped.push(c);
        }
    }
    let trimmed: String = mapped.trim_matches('-').chars().take(max).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "m".into()
    } else {
        trimmed.to_string()
    }
}

/// A label value for the metric name (63 characters, alphanumeric ends).
fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The environment every Job gets: who it measures and where.
pub fn base_env(vars: &Vars) -> Vec<EnvVar> {
    let url = |track: &str| {
        format!(
            "http://{}-{track}.{}.svc:{SERVICE_PORT}",
            vars.model, vars.namespace
        )
    };
    [
        ("MLCTL_MODEL", vars.model.clone()),
        ("MLCTL_NAMESPACE", vars.namespace.clone()),
        ("MLCTL_STABLE_VERSION", vars.stable_version.clone()),
        ("MLCTL_CANARY_VERSION", vars.canary_version.clone()),
        ("MLCTL_STABLE_URL", url("stable")),
        ("MLCTL_CANARY_URL", url("canary")),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    })
    .collect()
}

/// Pure. The Job of measurement `m`, owned by the model (deleted with it).
pub fn render(model: &ModelKey, vars: &Vars, m: &JobMeasurement) -> Job {
    let name = job_name(model, m);
    let p = &m.provider;
    let subst = |list: &[String]| -> Option<Vec<String>> {
        (!list.is_empty()).then(|| list.iter().map(|s| substitute(s, vars, false)).collect())
    };
    let mut env = base_env(vars);
    env.extend(p.env.iter().map(|e| EnvVar {
        value: e.value.as_deref().map(|v| substitute(v, vars, false)),
        ..e.clone()
    }));
    let (volumes, mounts) = match &p.config_map {
        Some(cm) => (
            Some(vec![Volume {
                name: "analysis".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.clone(),
                    optional: Some(false),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            Some(vec![VolumeMount {
                name: "analysis".into(),
                mount_path: CONFIG_MOUNT_PATH.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
        ),
        None => (None, None),
    };
    let metric = label_value(&m.metric);
    let job_labels = BTreeMap::from([
        (MODEL_LABEL.to_string(), model.name.clone()),
        (METRIC_LABEL.to_string(), metric.clone()),
    ]);
    let pod_labels = BTreeMap::from([
        (JOB_LABEL.to_string(), name.clone()),
        (METRIC_LABEL.to_string(), metric),
    ]);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(model.namespace.clone()),
            labels: Some(job_labels),
            owner_references: Some(vec![OwnerReference {
                api_version: mlctl_crds::API_VERSION.into(),
                kind: "RankingModel".into(),
                name: model.name.clone(),
                uid: model.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(p.backoff_limit.unwrap_or(0)),
            active_deadline_seconds: Some(
                p.active_deadline_seconds
                    .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS),
            ),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: p.service_account_name.clone(),
                    security_context: Some(restricted_pod_context()),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(p.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into())),
                        command: subst(&p.command),
                        args: subst(&p.args),
                        env: Some(env),
                        resources: p.resources.clone(),
                        volume_mounts: mounts,
                        security_context: Some(restricted_container_context()),
                        termination_message_policy: Some("File".into()),
                        ..Container::default()
                    }],
                    volumes,
                    ..job_placement(&m.placement)
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The model's placement without its spread constraints: they select the
/// serving pods, which a Job's pod is not one of.
fn job_placement(placement: &PodPlacement) -> PodSpec {
    PodSpec {
        topology_spread_constraints: None,
        ..placed_pod_spec(placement)
    }
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Complete,
    /// Failed, with the Job controller's reason (`BackoffLimitExceeded`,
    /// `DeadlineExceeded`) and message.
    Failed(String),
}

/// Pure. The state the Job's `Complete`/`Failed` conditions say.
pub fn state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let holds = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if holds("Complete").is_some() {
        return JobState::Complete;
    }
    match holds("Failed") {
        Some(c) => JobState::Failed(
            [c.reason.as_deref(), c.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        ),
        None => JobState::Running,
    }
}

/// Pure. The number the measuring container wrote as its termination
/// message (`/dev/termination-log`), from the pod that finished last.
pub fn termination_value(pods: &[Pod]) -> Option<f64> {
    pods.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter(|c| c.name == CONTAINER)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .max_by_key(|t| t.finished_at.as_ref().map(|f| f.0))
        .and_then(|t| t.message.as_deref())
        .and_then(|m| m.trim().parse::<f64>().ok())
}

/// Pure. The measurement a finished Job gives: the termination message's
/// number, else 1 (Complete) or 0 (Failed); with `verdict_by_outcome`
/// always 1 or 0 (the Job's success is then the verdict).
pub fn reading(state: &JobState, value: Option<f64>, verdict_by_outcome: bool) -> Option<f64> {
    let succeeded = match state {
        JobState::Running => return None,
        JobState::Complete => true,
        JobState::Failed(_) => false,
    };
    let outcome = if succeeded { 1.0 } else { 0.0 };
    Some(if verdict_by_outcome {
        outcome
    } else {
        value.unwrap_or(outcome)
    })
}

/// Creates, adopts and reads the analysis Jobs.
#[derive(Clone)]
pub struct Runner {
    client: Client,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(client: Client) -> Self {
        Runner { client }
    }

    /// Runs measurement `m` to its end: finds the Job (an operator that
    /// restarted adopts the one it created) or creates it, polls it (one
    /// GET each time, every 1 s rising to 5 s), then reads its pod's
    /// termination message. Err names the Job and what went wrong.
    pub async fn measure(
        &self,
        model: &ModelKey,
        vars: &Vars,
        m: &JobMeasurement,
    ) -> Result<Option<f64>, String> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &model.namespace);
        let desired = render(model, vars, m);
        let name = job_name(model, m);
        let what = format!("job {}/{name}", model.namespace);
        let mut job = match api.get_opt(&name).await {
            Ok(Some(job)) => {
                if !crate::controller::owned_by(&job.metadata, &model.uid) {
                    return Err(format!(
                        "{what}: a Job of that name exists that this model does not own; delete it"
                    ));
                }
                debug!(job = %name, "adopting the analysis Job");
                job
            }
            Ok(None) => match api.create(&PostParams::default(), &desired).await {
                Ok(job) => {
                    info!(job = %name, metric = %m.metric, "analysis Job created");
                    job
                }
                Err(kube::Error::Api(s)) if s.code == 409 => api
                    .get(&name)
                    .await
                    .map_err(|e| format!("{what}: cannot read it: {e}"))?,
                Err(kube::Error::Api(s)) => {
                    return Err(format!(
                        "{what}: the API server refused the Job ({}): {}",
                        s.reason, s.message
                    ));
                }
                Err(e) => return Err(format!("{what}: cannot create it: {e}")),
            },
            Err(e) => return Err(format!("{what}: cannot read it: {e}")),
        };
        let active = job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS);
        let give_up = Instant::now()
            + Duration::from_secs(u64::try_from(active).unwrap_or(0))
            + DEADLINE_GRACE;
        let mut pause = Duration::from_secs(1);
        let finished = loop {
            match state(&job) {
                JobState::Running => {}
                done => break done,
            }
            if Instant::now() > give_up {
                return Err(format!(
                    "{what}: not finished {}s after its activeDeadlineSeconds ({active}s); is the Job controller running?",
                    DEADLINE_GRACE.as_secs()
                ));
            }
            // A poll, not a synchronisation: measurements are seconds to
            // minutes apart, and one GET per Job every few seconds is less
            // than a watch per Job would cost the API server.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            match api.get_opt(&name).await {
                Ok(Some(next)) => job = next,
                Ok(None) => return Err(format!("{what}: deleted before it finished")),
                Err(e) => warn!(job = %name, error = %e, "cannot read the analysis Job; retrying"),
            }
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &model.namespace);
        let selector = format!("{JOB_LABEL}={name}");
        let value = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => termination_value(&list.items),
            Err(e) => {
                warn!(job = %name, error = %e, "cannot list the analysis Job's pods; no termination message");
                None
            }
        };
        if let JobState::Failed(why) = &finished {
            info!(job = %name, reason = %why, "analysis Job failed");
        }
        Ok(reading(&finished, value, m.verdict_by_outcome))
    }

    /// Deletes the Job of a measurement nobody wants any more (its rollout
    /// ended, or the metric changed) with its pod; best effort, never waited
    /// for.
    pub fn abandon(&self, model: &ModelKey, m: &JobMeasurement) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &model.namespace);
        let name = job_name(model, m);
        tokio::spawn(async move {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => info!(job = %name, "analysis Job no longer needed: deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => warn!(job = %name, error = %e, "cannot delete an analysis Job"),
            }
        });
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
