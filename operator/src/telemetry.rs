//! Operability: Prometheus metrics, the `/healthz`, `/readyz` and `/metrics`
//! endpoints, and structured logging.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::pipeline::FreshnessReference;

pub mod prune;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

/// The operator's metrics, all prefixed `mlctl_`.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    managed: Family<KindLabels, Gauge>,
    outcomes: Family<OutcomeLabels, Counter>,
    rollout_duration: Family<OutcomeLabels, Histogram>,
    step_duration: Family<StepLabels, Histogram>,
    measurements: Family<OutcomeLabels, Counter>,
    notifications: Family<OutcomeLabels, Counter>,
    notification_retries: Counter,
    leader: Gauge,
    pipelines: PipelineMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mlctl");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let managed = Family::<KindLabels, Gauge>::default();
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        let leader = Gauge::default();
        let pipelines = PipelineMetrics::register(&mut registry);
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            duration.clone(),
        );
        registry.register(
            "managed_objects",
            "Objects of each kind the operator manages",
            managed.clone(),
        );
        registry.register(
            "rollout_outcomes",
            "Rollouts by outcome (promoted, aborted, superseded, rolled_back)",
            outcomes.clone(),
        );
        let rollout_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
            ])
        });
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
        });
        let measurements = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rollout_duration_seconds",
            "Time from the start of a canary to its outcome",
            rollout_duration.clone(),
        );
        registry.register(
            "rollout_step_duration_seconds",
            "Time canary steps took, by kind (setWeight, pause, analysis)",
            step_duration.clone(),
        );
        registry.register(
            "analysis_measurements",
            "Analysis measurements by outcome (Successful, Failed, Inconclusive, Error)",
            measurements.clone(),
        );
        // By outcome only: a label per object or subscription would grow
        // with the number of models.
        let notifications = Family::<OutcomeLabels, Counter>::default();
        let notification_retries = Counter::default();
        registry.register(
            "notifications",
            "Webhook notifications by outcome (sent, failed, dropped)",
            notifications.clone(),
        );
        registry.register(
            "notification_retries",
            "Webhook notification attempts that failed and were retried",
            notification_retries.clone(),
        );
        registry.register(
            "leader",
            "1 when this process holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            managed,
            outcomes,
            rollout_duration,
            step_duration,
            measurements,
            notifications,
            notification_retries,
            leader,
            pipelines,
        }
    }

    fn kind(kind: &str) -> KindLabels {
        KindLabels { kind: kind.into() }
    }

    /// Counts a reconcile.
    pub fn reconciles(&self, kind: &str) {
        self.reconciles.get_or_create(&Self::kind(kind)).inc();
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Records how long a reconcile took.
    pub fn reconcile_duration(&self, kind: &str, d: Duration) {
        self.duration
            .get_or_create(&Self::kind(kind))
            .observe(d.as_secs_f64());
    }

    /// Sets the number of managed objects of a kind.
    pub fn set_managed(&self, kind: &str, count: i64) {
        self.managed.get_or_create(&Self::kind(kind)).set(count);
    }

    /// Counts a rollout outcome.
    pub fn rollout_outcome(&self, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records how long a rollout took to its outcome.
    pub fn rollout_duration(&self, outcome: &str, seconds: f64) {
        self.rollout_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .observe(seconds);
    }

    /// Records how long a canary step took.
    pub fn step_duration(&self, step: &str, seconds: f64) {
        self.step_duration
            .get_or_create(&StepLabels { step: step.into() })
            .observe(seconds);
    }

    /// Counts an analysis measurement.
    pub fn analysis_measurement(&self, outcome: &str) {
        self.measurements
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a notification by outcome (`sent`, `failed`, `dropped`).
    pub fn notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a notification attempt that will be retried.
    pub fn notification_retry(&self) {
        self.notification_retries.inc();
    }

    /// Records leadership.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        self.pipelines.refresh_lag();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    namespace: String,
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineRunLabels {
    namespace: String,
    pipeline: String,
    outcome: String,
}

/// `(namespace, name)` of an object with series of its own.
type ObjectKey = (String, String);

/// FeaturePipeline metrics: runs by outcome and the freshness lag, computed
/// at scrape time from the reference (watermark or last success) so that it
/// grows between reconciles. Both are per pipeline: [`Metrics::forget_pipeline`]
/// drops them when the pipeline is deleted (see [`prune`]).
struct PipelineMetrics {
    runs: Family<PipelineRunLabels, Counter>,
    /// The `outcome` labels each pipeline's run counter has, so that all of
    /// its series can be removed (a Family cannot be listed).
    outcomes: std::sync::Mutex<BTreeMap<ObjectKey, BTreeSet<String>>>,
    lag: Family<PipelineLabels, Gauge>,
    references: std::sync::Mutex<BTreeMap<ObjectKey, FreshnessReference>>,
}

impl PipelineMetrics {
    fn register(registry: &mut Registry) -> Self {
        let runs = Family::<PipelineRunLabels, Counter>::default();
        let lag = Family::<PipelineLabels, Gauge>::default();
        registry.register(
            "pipeline_runs",
            "Finished FeaturePipeline runs by outcome (succeeded, failed)",
            runs.clone(),
        );
        registry.register(
            "pipeline_freshness_lag_seconds",
            "Seconds since the watermark (or the last successful run) of each FeaturePipeline",
            lag.clone(),
        );
        Self {
            runs,
            outcomes: std::sync::Mutex::new(BTreeMap::new()),
            lag,
            references: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn refresh_lag(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Ok(refs) = self.references.lock() {
            for ((namespace, pipeline), reference) in refs.iter() {
                let lag = match reference {
                    FreshnessReference::Current => 0,
                    FreshnessReference::Since(t) => (now - t.as_second()).max(0),
                };
                self.lag
                    .get_or_create(&PipelineLabels {
                        namespace: namespace.clone(),
                        pipeline: pipeline.clone(),
                    })
                    .set(lag);
            }
        }
    }
}

impl Metrics {
    /// Counts a finished pipeline run.
    pub fn pipeline_run(&self, namespace: &str, pipeline: &str, outcome: &str) {
        if let Ok(mut outcomes) = self.pipelines.outcomes.lock() {
            outcomes
                .entry((namespace.to_string(), pipeline.to_string()))
                .or_default()
                .insert(outcome.to_string());
        }
        self.pipelines
            .runs
            .get_or_create(&PipelineRunLabels {
                namespace: namespace.into(),
                pipeline: pipeline.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Sets the freshness reference of a pipeline (a running stream's lag is
    /// 0); `None` before its first success (no lag is exported then).
    pub fn set_pipeline_freshness(
        &self,
        namespace: &str,
        pipeline: &str,
        reference: Option<FreshnessReference>,
    ) {
        if let (Ok(mut refs), Some(reference)) = (self.pipelines.references.lock(), reference) {
            refs.insert((namespace.to_string(), pipeline.to_string()), reference);
        }
    }

    /// Drops every series of a deleted pipeline: its freshness lag and its
    /// run counters (a re-created pipeline of the same name starts at zero).
    pub fn forget_pipeline(&self, namespace: &str, pipeline: &str) {
        let key = (namespace.to_string(), pipeline.to_string());
        if let Ok(mut refs) = self.pipelines.references.lock() {
            refs.remove(&key);
        }
        self.pipelines.lag.remove(&PipelineLabels {
            namespace: namespace.into(),
            pipeline: pipeline.into(),
        });
        let outcomes = self
            .pipelines
            .outcomes
            .lock()
            .ok()
            .and_then(|mut o| o.remove(&key))
            .unwrap_or_default();
        for outcome in outcomes {
            self.pipelines.runs.remove(&PipelineRunLabels {
                namespace: namespace.into(),
                pipeline: pipeline.into(),
                outcome,
            });
        }
    }

    /// The pipelines that have series here (to prune those deleted while no
    /// watch saw it).
    pub fn known_pipelines(&self) -> Vec<(String, String)> {
        let mut known = BTreeSet::new();
        if let Ok(refs) = self.pipelines.references.lock() {
            known.extend(refs.keys().cloned());
        }
        if let Ok(outcomes) = self.pipelines.outcomes.lock() {
            known.extend(outcomes.keys().cloned());
        }
        known.into_iter().collect()
    }
}

/// Readiness and liveness. Ready once the CRDs are served and the process
/// either runs its controllers or waits as a standby (which can take over).
/// Live until a controller that should run has stopped or panicked: then
/// `/healthz` fails with the reason, so that the kubelet restarts the pod
/// instead of leaving a leader that reconciles nothing.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Health {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.failures().is_empty()
    }

    /// Records why the process is no longer live.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        warn!(%reason, "unhealthy");
        if let Ok(mut failures) = self.failures.lock() {
            failures.push(reason);
        }
    }

    /// Why the process is not live; empty when it is.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Waits for the controller task `name` to end; unless `stopping` was
    /// set before (a graceful shutdown), its end makes the process unhealthy.
    pub async fn supervise(
        self,
        name: String,
        task: tokio::task::JoinHandle<()>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        let result = task.await;
        if *stopping.borrow() {
            return;
        }
        match result {
            Ok(()) => self.fail(format!("controller {name} stopped while it should run")),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                self.fail(format!("controller {name} panicked: {message}"));
            }
            Err(_) => self.fail(format!("controller {name} was cancelled")),
        }
    }
}

impl Metrics {
    /// Registers the write fence's counter of refused writes, by method.
    pub fn register_fenced_writes(
        &mut self,
        refused: Family<crate::leader::MethodLabels, Counter>,
    ) {
        self.registry.register(
            "fenced_writes",
            "Writes refused because this process's leadership had lapsed, by HTTP method",
            refused,
        );
    }

    /// Registers the client's throttling counter
    /// (`mlctl_client_throttled_seconds_total{class}`).
    pub fn register_throttling(
        &mut self,
        waited: Family<crate::throttle::ClassLabels, Counter<f64>>,
    ) {
        self.registry.register(
            "client_throttled_seconds",
            "Seconds API requests waited for the client's rate limit, by class (status, events, other)",
            waited,
        );
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the task
/// is dropped. A deliberately tiny HTTP/1.1 responder: three GET endpoints do
/// not justify a web framework in the operator's memory budget.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Health) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, content_type, body) = match path {
                "/healthz" | "/livez" => match health.failures() {
                    failures if failures.is_empty() => ("200 OK", "text/plain", "ok\n".to_string()),
                    failures => (
                        "503 Service Unavailable",
                        "text/plain",
                        format!("unhealthy: {}\n", failures.join("; ")),
                    ),
                },
                "/readyz" if health.is_ready() => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready\n".to_string(),
                ),
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.encode(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics client went away");
            }
        });
    }
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber (`RUST_LOG` filters; default info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        // No colour codes when logs go to a file or a pipe.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_the_mlctl_prefix() {
        let m = Metrics::new();
        m.reconciles("rankingmodel");
        m.reconcile_error("rankingmodel", "api_conflict");
        m.reconcile_duration("rankingmodel", Duration::from_millis(20));
        m.rollout_outcome("promoted");
        m.set_managed("rankingmodel", 3);
        let text = m.encode();
        for needle in [
            "mlctl_reconciles_total{kind=\"rankingmodel\"} 1",
            "mlctl_reconcile_errors_total{kind=\"rankingmodel\",reason=\"api_conflict\"} 1",
            "mlctl_reconcile_duration_seconds_bucket",
            "mlctl_rollout_outcomes_total{outcome=\"promoted\"} 1",
            "mlctl_managed_objects{kind=\"rankingmodel\"} 3",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_endpoints_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Health::default();
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), health.clone()));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready();
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/metrics").await.contains("mlctl_leader"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        health.fail("controller rankingmodel panicked: boom");
        let healthz = get("/healthz").await;
        assert!(healthz.starts_with("HTTP/1.1 503"), "{healthz}");
        assert!(
            healthz.contains("controller rankingmodel panicked: boom"),
            "{healthz}"
        );
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        server.abort();
    }

    #[tokio::test]
    async fn a_controller_that_dies_makes_the_process_unhealthy() {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let health = Health::default();
        let panicked = tokio::spawn(async { panic!("reconciler bug") });
        health
            .clone()
            .supervise(
                "rankingmodel (all namespaces)".into(),
                panicked,
                stopping.clone(),
            )
            .await;
        assert_eq!(
            health.failures(),
            ["controller rankingmodel (all namespaces) panicked: reconciler bug"]
        );
        let health = Health::default();
        health
            .clone()
            .supervise("featurepipeline".into(), tokio::spawn(async {}), stopping)
            .await;
        assert_eq!(
            health.failures(),
            ["controller featurepipeline stopped while it should run"]
        );
    }

    #[tokio::test]
    async fn controllers_stopping_on_shutdown_stay_healthy() {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let health = Health::default();
        stop.send_replace(true);
        health
            .clone()
            .supervise("rankingmodel".into(), tokio::spawn(async {}), stopping)
            .await;
        assert!(health.failures().is_empty());
    }

    #[test]
    fn refused_writes_are_exported() {
        let mut m = Metrics::new();
        let fence = crate::leader::Fence::new();
        m.register_fenced_writes(fence.refused_writes());
        fence
            .refused_writes()
            .get_or_create(&crate::leader::MethodLabels {
                method: "PATCH".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("mlctl_fenced_writes_total{method=\"PATCH\"} 1"),
            "{text}"
        );
    }
}
