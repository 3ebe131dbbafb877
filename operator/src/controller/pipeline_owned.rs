//! What the FeaturePipeline controller reads, indexed by pipeline: its
//! standing children, its run Jobs and the pods of its runs, each fed by a
//! watch that also triggers the controller. Objects are stored trimmed to
//! what a decision or a write compares; at scale a run pod's full spec and
//! status are most of the operator's memory and none of its decisions.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use mlctl_crds::FeaturePipeline;

use super::children::Checked;
use super::index::{self, Index, OnDelete};
use crate::pipeline::naming::{PIPELINE_LABEL, TRIGGER_LABEL};
use crate::render::FIELD_MANAGER;

/// One scope's pipeline children, by pipeline (`mlctl.io/pipeline`).
#[derive(Clone)]
pub struct PipelineChildren {
    /// Run Jobs, the CronJob's too (metadata and the status times and
    /// conditions only: the spec is never read back).
    pub jobs: Index<Job>,
    /// Pods of runs (labels and the terminated containers' reports only).
    pub pods: Index<Pod>,
    /// `<pipeline>` of a scheduled container pipeline.
    pub cron_jobs: Index<CronJob>,
    /// `<pipeline>` of a streaming container pipeline.
    pub deployments: Index<Deployment>,
    /// `<pipeline>-pipeline`.
    pub config_maps: Index<ConfigMap>,
}

impl PipelineChildren {
    /// Empty indexes; a deleted child's check entry goes with it, and a
    /// deleted run Job is passed to `run_gone`.
    pub fn new(checked: &Arc<Checked>, run_gone: OnDelete<Job>) -> Self {
        fn forgetting<K>(checked: &Arc<Checked>) -> Index<K>
        where
            K: Resource<DynamicType = ()>
                + serde::Serialize
                + serde::de::DeserializeOwned
                + 'static,
        {
            let checked = checked.clone();
            Index::new(PIPELINE_LABEL)
                .packed()
                .on_delete(Arc::new(move |o: &K| checked.forget(o)))
        }
        let jobs_checked = checked.clone();
        PipelineChildren {
            jobs: Index::new(PIPELINE_LABEL)
                .packed()
                .on_delete(Arc::new(move |j: &Job| {
                    jobs_checked.forget(j);
                    run_gone(j);
                })),
            pods: Index::new(PIPELINE_LABEL).packed(),
            cron_jobs: forgetting(checked),
            deployments: forgetting(checked),
            config_maps: forgetting(checked),
        }
    }

    /// Waits until every index has its first list: before that, a missing
    /// run or child means only "not listed yet".
    pub async fn ready(&self) {
        self.jobs.ready().await;
        self.pods.ready().await;
        self.cron_jobs.ready().await;
        self.deployments.ready().await;
        self.config_maps.ready().await;
    }

    /// Feeds the indexes from watches of `scope` (a namespace, or all) that
    /// also trigger `controller`: a changed child or run reconciles its
    /// pipeline, and so does a run pod once a container reported.
    pub fn attach(
        &self,
        controller: Controller<DeserializeGuard<FeaturePipeline>>,
        client: &Client,
        scope: Option<&str>,
    ) -> Controller<DeserializeGuard<FeaturePipeline>> {
        fn api<K>(client: &Client, scope: Option<&str>) -> Api<K>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        {
            match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        let managed = format!("app.kubernetes.io/managed-by={FIELD_MANAGER},{PIPELINE_LABEL}");
        let children = index::list_config().labels(&managed);
        // Run pods carry the trigger label (the Job's, the CronJob's
        // template's, the SparkApplication's driver and executors); the
        // streaming workload's pods do not, and are not watched.
        let runs = index::list_config().labels(&format!("{managed},{TRIGGER_LABEL}"));
        let jobs = index::watch(
            api(client, scope),
            children.clone(),
            self.jobs.clone(),
            trim_job,
        );
        let pods = index::watch(api(client, scope), runs, self.pods.clone(), trim_pod);
        let cron_jobs = index::watch(
            api(client, scope),
            children.clone(),
            self.cron_jobs.clone(),
            trim_cron_job,
        );
        let deployments = index::watch(
            api(client, scope),
            children.clone(),
            self.deployments.clone(),
            trim_deployment,
        );
        let config_maps = index::watch(
            api(client, scope),
            children,
            self.config_maps.clone(),
            index::keep,
        );
        controller
            .owns_stream(cron_jobs.boxed())
            .owns_stream(deployments.boxed())
            .owns_stream(config_maps.boxed())
            // Scheduled Jobs belong to the CronJob: found by label.
            .watches_stream(jobs.boxed(), |job: Job| pipeline_of(&job.metadata))
            .watches_stream(pods.boxed(), |pod: Pod| {
                reported(&pod).then(|| pipeline_of(&pod.metadata)).flatten()
            })
    }
}

/// The pipeline an object belongs to, by its label.
pub fn pipeline_of(meta: &ObjectMeta) -> Option<ObjectRef<DeserializeGuard<FeaturePipeline>>> {
    let name = meta.labels.as_ref()?.get(PIPELINE_LABEL)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// Whether a (trimmed) pod has a terminated container with a message: the
/// only pod changes a reconcile reads. A Job completes after its pod
/// terminates, but the two watches may deliver in either order.
fn reported(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// Metadata and the status times and conditions `observe_job` reads.
fn trim_job(job: &mut Job) {
    job.spec = None;
    job.status = job.status.take().map(|s| JobStatus {
        conditions: s.conditions,
        completion_time: s.completion_time,
        start_time: s.start_time,
        ..JobStatus::default()
    });
}

/// Name, labels and the report of each terminated container: all
/// `report_of` reads.
fn trim_pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        resource_version: meta.resource_version,
        uid: meta.uid,
        ..ObjectMeta::default()
    };
    pod.spec = None;
    let reports: Vec<ContainerStatus> = pod
        .status
        .take()
        .and_then(|s| s.container_statuses)
        .into_iter()
        .flatten()
        .filter_map(|cs| {
            let t = cs.state?.terminated?;
            t.message.as_ref()?;
            Some(ContainerStatus {
                name: cs.name,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: t.exit_code,
                        finished_at: t.finished_at,
                        message: t.message,
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            })
        })
        .collect();
    pod.status = (!reports.is_empty()).then(|| PodStatus {
        container_statuses: Some(reports),
        ..PodStatus::default()
    });
}

/// The spec (compared before a write) and the last schedule time.
fn trim_cron_job(c: &mut CronJob) {
    c.status = c.status.take().map(|s| CronJobStatus {
        last_schedule_time: s.last_schedule_time,
        ..CronJobStatus::default()
    });
}

/// The spec (compared before a write) and the ready replicas.
fn trim_deployment(d: &mut Deployment) {
    d.status = d.status.take().map(|s| DeploymentStatus {
        ready_replicas: s.ready_replicas,
        ..DeploymentStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobCondition;
    use k8s_openapi::api::core::v1::{ContainerStateRunning, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::pipeline::observe::observe_job;

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn pod(statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("run-1-abcde".into()),
                namespace: Some("ns".into()),
                labels: Some(
                    [
                        (PIPELINE_LABEL.to_string(), "ctr".to_string()),
                        ("job-name".to_string(), "run-1".to_string()),
                    ]
                    .into(),
                ),
                annotations: Some([("big".to_string(), "x".repeat(1000))].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Succeeded".into()),
                container_statuses: Some(statuses),
                ..PodStatus::default()
            }),
        }
    }

    fn terminated(message: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: "pipeline".into(),
            image: "busybox".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    finished_at: Some(at(100)),
                    message: message.map(str::to_string),
                    reason: Some("Completed".into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn a_pod_keeps_its_labels_and_reports_only() {
        let running = ContainerStatus {
            name: "sidecar".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        let mut p = pod(vec![
            terminated(Some("{\"rows\": 3}")),
            terminated(None),
            running,
        ]);
        trim_pod(&mut p);
        assert!(p.spec.is_none());
        assert!(p.metadata.annotations.is_none());
        assert_eq!(p.metadata.labels.as_ref().unwrap().len(), 2);
        let kept = p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap();
        assert_eq!(kept.len(), 1);
        let t = kept[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(t.message.as_deref(), Some("{\"rows\": 3}"));
        assert_eq!(t.finished_at, Some(at(100)));
        assert!(t.reason.is_none());
        assert!(reported(&p));
        assert_eq!(
            pipeline_of(&p.metadata),
            Some(ObjectRef::new("ctr").within("ns"))
        );

        let mut silent = pod(vec![terminated(None)]);
        trim_pod(&mut silent);
        assert!(silent.status.is_none());
        assert!(!reported(&silent), "no report: no reconcile");
    }

    #[test]
    fn trimmed_runs_and_pods_observe_as_the_full_objects() {
        let labels = [
            (PIPELINE_LABEL.to_string(), "ctr".to_string()),
            (TRIGGER_LABEL.to_string(), "manual".to_string()),
        ];
        let job = Job {
            metadata: ObjectMeta {
                name: Some("run-1".into()),
                namespace: Some("ns".into()),
                labels: Some(labels.clone().into()),
                annotations: Some(
                    [
                        ("mlctl.io/schema-version".to_string(), "3".to_string()),
                        ("mlctl.io/schema-hash".to_string(), "abc".to_string()),
                    ]
                    .into(),
                ),
                creation_timestamp: Some(at(5)),
                ..ObjectMeta::default()
            },
            spec: Some(Default::default()),
            status: Some(JobStatus {
                start_time: Some(at(10)),
                completion_time: Some(at(20)),
                succeeded: Some(1),
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    last_transition_time: Some(at(20)),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
        };
        let full_pod = pod(vec![terminated(Some(
            r#"{"watermark": "2026-11-01T00:00:00Z"}"#,
        ))]);
        let full = observe_job(&job, &[Arc::new(full_pod.clone())]);
        assert!(
            full.as_ref()
                .is_some_and(|r| r.report.is_some() && r.schema.is_some())
        );
        let (mut job, mut p) = (job, full_pod);
        trim_job(&mut job);
        trim_pod(&mut p);
        assert_eq!(observe_job(&job, &[Arc::new(p)]), full);
    }

    #[test]
    fn a_job_keeps_what_observe_job_reads() {
        let mut job = Job {
            metadata: ObjectMeta {
                name: Some("run-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(Default::default()),
            status: Some(JobStatus {
                active: Some(1),
                start_time: Some(at(10)),
                completion_time: Some(at(20)),
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
        };
        trim_job(&mut job);
        assert!(job.spec.is_none());
        let s = job.status.unwrap();
        assert_eq!(s.active, None);
        assert_eq!(s.start_time, Some(at(10)));
        assert_eq!(s.completion_time, Some(at(20)));
        assert_eq!(s.conditions.unwrap().len(), 1);
    }
}
