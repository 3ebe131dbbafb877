//! Measurements off the reconcile path. A reconcile hands the worker the
//! measurements that are due ([`Worker::poll`]) and never waits on the
//! network: the worker runs them in the background, at most
//! `--analysis-per-host-concurrency` per host and `--analysis-concurrency` in
//! all, and re-enqueues the model when one lands; the next reconcile folds
//! the result into status. A result is kept under its [`Subject`] (which
//! metric of which analysis, due when) and the canary it was taken for, so it
//! is folded only while status still asks for exactly that measurement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use mlctl_crds::common::PodPlacement;
use mlctl_crds::rankingmodel::{
    AnalysisMetric, InterleavePrometheus, MetricProvider, MetricStatus, RankingModelStatus,
};
use reqwest::Url;
use tokio::sync::{Semaphore, broadcast};
use tokio::task::AbortHandle;

use super::job::{self, JobMeasurement};
use super::{Prober, Settings, Vars, provider};
use crate::controller::stored::StoredModel;

/// Finished results no reconcile asked for in this long are dropped (a
/// deleted model, a canary that ended).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Re-enqueue notifications buffered per subscriber.
const NOTIFY_BUFFER: usize = 1024;

/// The canary a model's measurements are taken for: a result for another
/// (the canary was replaced or retried meanwhile) is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    pub namespace: String,
    pub name: String,
    /// The model object's uid (a re-created model starts afresh).
    pub uid: String,
    /// The canary's revision.
    pub revision: String,
    /// When the canary started (a retried canary keeps its revision).
    pub started_at: Option<Timestamp>,
}

/// What a measurement is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Metric `name` of the analysis of `step` (None: background), due at `due_at`.
    Metric {
        name: String,
        step: Option<i32>,
        due_at: Timestamp,
    },
    /// The outcome counters of interleave step `step`, read after `after`
    /// (the previous reading).
    Interleave { step: i32, after: Option<Timestamp> },
}

/// The request behind a measurement.
#[derive(Debug, Clone)]
// A handful per model at a time, moved once: boxing the provider saves nothing.
#[allow(clippy::large_enum_variant)]
pub enum Task {
    /// A metric's provider.
    Metric(MetricProvider),
    /// An interleave step's outcome counters, by `winner`.
    Interleave {
        prometheus: InterleavePrometheus,
        query: String,
    },
    /// A Job provider's measurement: a Kubernetes Job, polled to its end
    /// (minutes), outside the request bounds.
    Job(Box<JobMeasurement>),
}

impl Task {
    /// The task of `metric`'s next measurement in analysis `step`, whose
    /// status (if any) is among `statuses`.
    /// Job metrics run with the model's `placement`.
    pub fn for_metric(
        metric: &AnalysisMetric,
        step: Option<i32>,
        statuses: &[MetricStatus],
        placement: &PodPlacement,
    ) -> Task {
        let Some(provider) = &metric.provider.job else {
            return Task::Metric(metric.provider.clone());
        };
        let ordinal = statuses
            .iter()
            .find(|s| s.name == metric.name && s.step == step)
            .map_or(0, |s| {
                s.successful
                    .saturating_add(s.failed)
                    .saturating_add(s.inconclusive)
                    .saturating_add(s.errors)
            });
        Task::Job(Box::new(JobMeasurement {
            metric: metric.name.clone(),
            step,
            ordinal,
            provider: provider.clone(),
            verdict_by_outcome: metric.success_condition.is_none()
                && metric.failure_condition.is_none(),
            placement: placement.clone(),
        }))
    }

    /// Address used for the per-host bound: `host:port` of the URL.
    fn host(&self, vars: &Vars) -> String {
        let url = match self {
            Task::Metric(p) => match (&p.prometheus, &p.web) {
                (Some(p), _) => p.address.clone(),
                (None, Some(w)) => provider::substitute(&w.url, vars, true),
                (None, None) => String::new(),
            },
            Task::Interleave { prometheus, .. } => prometheus.address.clone(),
            Task::Job(_) => String::new(),
        };
        Url::parse(&url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_default()
    }

    /// Changes when the request would (a provider edited mid-flight).
    fn fingerprint(&self) -> u64 {
        let text = match self {
            Task::Metric(p) => serde_json::to_string(p),
            Task::Interleave { prometheus, query } => {
                serde_json::to_string(&(prometheus, query.as_str()))
            }
            Task::Job(m) => serde_json::to_string(&(&m.provider, m.verdict_by_outcome)),
        };
        crate::controller::digest(text.unwrap_or_default())
    }
}

/// One measurement a reconcile wants.
#[derive(Debug, Clone)]
pub struct Job {
    pub subject: Subject,
    pub task: Task,
}

/// What a measurement read.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A metric's number (None: no data) or why there is none.
    Value(Result<Option<f64>, String>),
    /// Values by label (the interleave counters).
    ByLabel(Result<BTreeMap<String, f64>, String>),
}

/// A measurement that landed.
#[derive(Debug, Clone)]
pub struct Finished {
    pub subject: Subject,
    pub reading: Reading,
    /// When it was taken.
    pub at: Timestamp,
}

/// What [`Worker::poll`] found.
#[derive(Debug, Default)]
pub struct Polled {
    /// Results to fold into status.
    pub finished: Vec<Finished>,
    /// Subjects still being measured (their result re-enqueues the model).
    pub in_flight: HashSet<Subject>,
}

enum Entry {
    Running {
        id: u64,
        abort: AbortHandle,
        /// The Job it waits on, deleted when the measurement is dropped.
        job: Option<Box<JobMeasurement>>,
    },
    Done {
        reading: Reading,
        at: Timestamp,
    },
}

impl Entry {
    /// Stops a running measurement; its Job, if any, is deleted.
    fn stop(&self, model: &ModelKey, jobs: Option<&job::Runner>) {
        if let Entry::Running { abort, job, .. } = self {
            abort.abort();
            if let (Some(m), Some(runner)) = (job, jobs) {
                runner.abandon(model, m);
            }
        }
    }
}

type JobKey = (Subject, u64);

struct ModelJobs {
    key: ModelKey,
    jobs: HashMap<JobKey, Entry>,
    asked: Instant,
}

impl ModelJobs {
    fn abort_all(&self, jobs: Option<&job::Runner>) {
        for entry in self.jobs.values() {
            entry.stop(&self.key, jobs);
        }
    }
}

struct Shared {
    prober: Prober,
    per_host: usize,
    all: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    models: Mutex<HashMap<(String, String), ModelJobs>>,
    notify: broadcast::Sender<(String, String)>,
    next_id: AtomicU64,
    swept: Mutex<Instant>,
    recheck: Duration,
    /// Runs the Job provider's measurements (None: Job metrics are errors).
    jobs: Option<job::Runner>,
}

/// The measurement worker (one per operator, shared by the controllers).
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("prober", &self.shared.prober)
            .field("per_host", &self.shared.per_host)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker measuring with `prober`, bounded as `settings` say.
    pub fn new(prober: Prober, settings: &Settings) -> Self {
        let (notify, _) = broadcast::channel(NOTIFY_BUFFER);
        Worker {
            shared: Arc::new(Shared {
                prober,
                per_host: settings.per_host_concurrency.max(1),
                all: Arc::new(Semaphore::new(settings.concurrency.max(1))),
                hosts: Mutex::new(HashMap::new()),
                models: Mutex::new(HashMap::new()),
                notify,
                next_id: AtomicU64::new(0),
                swept: Mutex::new(Instant::now()),
                recheck: settings.timeout_max + Duration::from_secs(5),
                jobs: None,
            }),
        }
    }

    /// The worker, taking Job provider measurements with `runner`. Call
    /// right after [`Worker::new`], before the worker is cloned.
    #[must_use]
    pub fn with_jobs(mut self, runner: job::Runner) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.jobs = Some(runner);
        }
        self
    }

    /// The prober the worker measures with.
    pub fn prober(&self) -> &Prober {
        &self.shared.prober
    }

    /// How long after starting measurements a reconcile looks again even
    /// without being re-enqueued (a missed notification costs no more).
    pub fn recheck_after(&self) -> Duration {
        self.shared.recheck
    }

    /// Models with a measurement that landed, as `(namespace, name)`.
    pub fn subscribe(&self) -> broadcast::Receiver<(String, String)> {
        self.shared.notify.subscribe()
    }

    /// The RankingModels to reconcile because a measurement landed, for
    /// `Controller::reconcile_on` (one stream per controller).
    pub fn landed(&self) -> impl Stream<Item = ObjectRef<StoredModel>> + use<> {
        futures::stream::unfold(self.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok((ns, name)) => return Some((ObjectRef::new(&name).within(&ns), rx)),
                    // Missed some: the models' fallback requeue covers them.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Never waits on the network. Returns the results of `jobs` that have
    /// landed and starts those not yet running; drops (and stops) whatever
    /// this model had that `jobs` no longer names, or that was for another
    /// canary. `vars` are the jobs' placeholders.
    pub fn poll(&self, model: &ModelKey, vars: &Vars, jobs: Vec<Job>) -> Polled {
        self.sweep();
        let mut polled = Polled::default();
        let Ok(mut models) = self.shared.models.lock() else {
            return polled;
        };
        let id = (model.namespace.clone(), model.name.clone());
        if jobs.is_empty() {
            if let Some(old) = models.remove(&id) {
                old.abort_all(self.shared.jobs.as_ref());
            }
            return polled;
        }
        let entry = models.entry(id).or_insert_with(|| ModelJobs {
            key: model.clone(),
            jobs: HashMap::new(),
            asked: Instant::now(),
        });
        if entry.key != *model {
            entry.abort_all(self.shared.jobs.as_ref());
            entry.key = model.clone();
            entry.jobs.clear();
        }
        entry.asked = Instant::now();
        let wanted: Vec<(JobKey, Task)> = jobs
            .into_iter()
            .map(|j| ((j.subject, j.task.fingerprint()), j.task))
            .collect();
        let jobs = self.shared.jobs.as_ref();
        let key = entry.key.clone();
        entry.jobs.retain(|k, e| {
            let keep = wanted.iter().any(|(w, _)| w == k);
            if !keep {
                e.stop(&key, jobs);
            }
            keep
        });
        for (key, task) in wanted {
            match entry.jobs.get(&key) {
                Some(Entry::Done { reading, at }) => polled.finished.push(Finished {
                    subject: key.0.clone(),
                    reading: reading.clone(),
                    at: *at,
                }),
                Some(Entry::Running { .. }) => {
                    polled.in_flight.insert(key.0.clone());
                }
                None => {
                    polled.in_flight.insert(key.0.clone());
                    let running = self.start(model, vars, key.clone(), task);
                    entry.jobs.insert(key, running);
                }
            }
        }
        polled
    }

    /// Drops what `model` had (its canary ended, or it is being deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut models) = self.shared.models.lock()
            && let Some(old) = models.remove(&(namespace.to_string(), name.to_string()))
        {
            old.abort_all(self.shared.jobs.as_ref());
        }
    }

    fn host_permits(&self, host: String) -> Arc<Semaphore> {
        let Ok(mut hosts) = self.shared.hosts.lock() else {
            return Arc::new(Semaphore::new(self.shared.per_host));
        };
        // Hosts nobody waits on are dropped as the map is visited.
        hosts.retain(|_, s| Arc::strong_count(s) > 1);
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.shared.per_host)))
            .clone()
    }

    fn start(&self, model: &ModelKey, vars: &Vars, key: JobKey, task: Task) -> Entry {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let model = model.clone();
        let vars = vars.clone();
        if let Task::Job(m) = task {
            // Not bounded by the request permits: a Job takes minutes of
            // (cheap) polling and would starve the HTTP measurements.
            let job = Some(m.clone());
            let handle = tokio::spawn(async move {
                let result = match &shared.jobs {
                    Some(runner) => runner.measure(&model, &vars, &m).await,
                    None => Err("the operator runs no Job measurements here".into()),
                };
                shared.finish(&model, key, id, Reading::Value(result), Timestamp::now());
            });
            return Entry::Running {
                id,
                abort: handle.abort_handle(),
                job,
            };
        }
        let host = self.host_permits(task.host(&vars));
        let handle = tokio::spawn(async move {
            // The host's permit first: requests queued behind a black-holed
            // host must not hold the permits the other hosts need.
            let _host = host.acquire_owned().await;
            let _all = shared.all.clone().acquire_owned().await;
            let prober = &shared.prober;
            let reading = match &task {
                Task::Metric(p) => Reading::Value(prober.measure(p, &vars).await),
                Task::Interleave { prometheus, query } => Reading::ByLabel(
                    prober
                        .prometheus_by_label(prometheus, query, "winner", &vars)
                        .await,
                ),
                Task::Job(_) => Reading::Value(Err("a Job task runs apart".into())),
            };
            shared.finish(&model, key, id, reading, Timestamp::now());
        });
        Entry::Running {
            id,
            abort: handle.abort_handle(),
            job: None,
        }
    }

    /// Drops finished results of models no reconcile asked about lately.
    fn sweep(&self) {
        let due = self
            .shared
            .swept
            .lock()
            .map(|mut at| {
                let due = at.elapsed() > FORGET_AFTER / 10;
                if due {
                    *at = Instant::now();
                }
                due
            })
            .unwrap_or(false);
        if !due {
            return;
        }
        if let Ok(mut models) = self.shared.models.lock() {
            models.retain(|_, m| {
                m.asked.elapsed() < FORGET_AFTER
                    || m.jobs.values().any(|e| matches!(e, Entry::Running { .. }))
            });
        }
    }
}

impl Shared {
    /// Stores a result if its job is still the one wanted, then re-enqueues
    /// the model.
    fn finish(&self, model: &ModelKey, key: JobKey, id: u64, reading: Reading, at: Timestamp) {
        let stored = self.models.lock().is_ok_and(|mut models| {
            let Some(jobs) = models
                .get_mut(&(model.namespace.clone(), model.name.clone()))
                .filter(|m| m.key == *model)
            else {
                return false;
            };
            let current = matches!(jobs.jobs.get(&key), Some(Entry::Running { id: running, .. }) if *running == id);
            if current {
                // Whole seconds, as status stores them: the next due time
                // computed from status is then this one exactly.
                let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
                jobs.jobs.insert(key, Entry::Done { reading, at });
            }
            current
        });
        if stored {
            let _ = self
                .notify
                .send((model.namespace.clone(), model.name.clone()));
        }
    }
}

/// When the outcome counters of interleave step `step` were last read.
pub fn interleave_read_at(status: &RankingModelStatus, step: i32) -> Option<Timestamp> {
    let canary = status.canary.as_ref()?;
    let comparison = canary.comparisons.iter().find(|c| c.step == step)?;
    comparison.measured_at.as_ref().map(|t| t.0)
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
