//! Notifications (after Argo Rollouts' and Flagger's): the Events of a
//! model's rollout or a pipeline's freshness POSTed to the webhooks in its
//! `spec.notifications`, with a Slack-compatible body (docs/notifications.md).
//!
//! A reconcile only queues ([`Notifier::notify`] never waits). Each
//! (object, subscription) has a lane: its notifications go out one at a
//! time in the order they were produced, a retry included, while other
//! lanes go on; at most `concurrency` requests are in flight at once, and a
//! lane waiting to retry holds none. A full queue drops and counts.

pub mod payload;
pub mod retry;
pub mod send;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

pub use payload::{Kind, Subject};
pub use retry::{Attempt, Policy};
pub use send::{Delivery, HttpTransport, Transport};

use crate::controller::{Recorder, publish};
use crate::rollout::Transition;
use crate::telemetry::Metrics;

/// Notifications waiting (all lanes together) before new ones are dropped.
pub const QUEUE: usize = 4096;

/// The notifier's settings (its `--notification-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub retry: Policy,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Notifications queued before new ones are dropped.
    pub queue: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry: Policy::default(),
            concurrency: 8,
            queue: QUEUE,
        }
    }
}

impl From<&crate::config::Config> for Settings {
    fn from(c: &crate::config::Config) -> Self {
        Settings {
            retry: Policy {
                attempts: c.notification_attempts,
                window: c.notification_retry_window,
                ..Policy::default()
            },
            concurrency: usize::from(c.notification_concurrency),
            queue: QUEUE,
        }
    }
}

/// Where webhooks may be: `--notification-allow`, else `--analysis-allow`.
pub fn allow_entries(c: &crate::config::Config) -> Vec<crate::analysis::guard::AllowEntry> {
    c.notification_allow
        .clone()
        .unwrap_or_else(|| c.analysis_allow.clone())
}

/// The notifier of a running operator: HTTP, Secrets read with `client`
/// (cached briefly), failures reported as Events through `recorder`.
pub fn from_config(
    c: &crate::config::Config,
    client: kube::Client,
    metrics: Arc<Metrics>,
    recorder: Recorder,
) -> Notifier {
    let allow =
        crate::analysis::guard::AllowList::new(allow_entries(c), &c.analysis_cluster_domain);
    let secrets = Arc::new(crate::analysis::secrets::KubeSource::new(client));
    Notifier::new(
        Settings::from(c),
        Arc::new(HttpTransport::new(allow, secrets)),
        metrics,
        Some(recorder),
    )
}

/// (namespace, object name, subscription name).
type Lane = (String, String, String);

/// A queued notification.
struct Queued {
    delivery: Delivery,
    subscription: String,
    kind: Kind,
    reason: String,
    reference: ObjectReference,
}

/// Queues notifications and sends them in the background. Cloning shares
/// the queue.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    transport: Arc<dyn Transport>,
    lanes: Mutex<HashMap<Lane, VecDeque<Queued>>>,
    pending: AtomicUsize,
    idle: Notify,
    permits: Semaphore,
    metrics: Arc<Metrics>,
    /// Where a notification that could not be delivered is reported (a
    /// Warning Event on its object, `NotificationFailed`).
    recorder: Option<Recorder>,
    sequence: AtomicU64,
}

impl Notifier {
    /// A notifier sending through `transport`, reporting failures through
    /// `recorder`.
    pub fn new(
        settings: Settings,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
        recorder: Option<Recorder>,
    ) -> Self {
        Notifier {
            inner: Arc::new(Inner {
                permits: Semaphore::new(settings.concurrency.max(1)),
                settings,
                transport,
                lanes: Mutex::new(HashMap::new()),
                pending: AtomicUsize::new(0),
                idle: Notify::new(),
                metrics,
                recorder,
                sequence: AtomicU64::new(0),
            }),
        }
    }

    /// Queues `t` for each subscription of `subject` that takes its
    /// reason; never waits. Must run inside the Tokio runtime.
    pub fn notify(&self, subject: &Subject, reference: &ObjectReference, t: &Transition) {
        let event = payload::Event {
            reason: t.reason,
            message: &t.message,
            warning: t.warning,
            time: jiff::Timestamp::now(),
        };
        for n in &subject.notifications {
            if !payload::wants(n, subject.kind, t.reason) {
                continue;
            }
            let seq = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
            let id = format!("{}-{seq}", subject.uid);
            let body = payload::body(subject, &n.name, &id, &event);
            let queued = Queued {
                delivery: Delivery {
                    namespace: subject.namespace.clone(),
                    webhook: n.webhook.clone(),
                    body: serde_json::to_vec(&body).unwrap_or_default(),
                },
                subscription: n.name.clone(),
                kind: subject.kind,
                reason: t.reason.to_string(),
                reference: reference.clone(),
            };
            let lane = (
                subject.namespace.clone(),
                subject.name.clone(),
                n.name.clone(),
            );
            self.enqueue(lane, queued);
        }
    }

    fn enqueue(&self, lane: Lane, queued: Queued) {
        let inner = &self.inner;
        if inner.pending.load(Ordering::Acquire) >= inner.settings.queue {
            inner.metrics.notification("dropped");
            warn!(
                subscription = %queued.subscription,
                kind = queued.kind.as_str(),
                namespace = %lane.0,
                name = %lane.1,
                reason = %queued.reason,
                "the notification queue is full; notification dropped"
            );
            return;
        }
        let Ok(mut lanes) = inner.lanes.lock() else {
            inner.metrics.notification("dropped");
            return;
        };
        inner.pending.fetch_add(1, Ordering::AcqRel);
        match lanes.get_mut(&lane) {
            // Its task is running and takes this one after those before it.
            Some(queue) => queue.push_back(queued),
            None => {
                lanes.insert(lane.clone(), VecDeque::from([queued]));
                tokio::spawn(run_lane(self.inner.clone(), lane));
            }
        }
    }

    /// Notifications queued or being sent.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// At shutdown: waits at most `within` for the queue to empty, then
    /// says how many notifications are dropped.
    pub async fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check, so that a lane emptying in
            // between still wakes this.
            let idle = self.inner.idle.notified();
            let pending = self.pending();
            if pending == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let pending = self.pending();
                if pending > 0 {
                    warn!(
                        pending,
                        "shutting down with notifications not sent; they are dropped"
                    );
                    for _ in 0..pending {
                        self.inner.metrics.notification("dropped");
                    }
                }
                return;
            }
        }
    }
}

/// Sends a lane's notifications in order until it is empty.
async fn run_lane(inner: Arc<Inner>, lane: Lane) {
    loop {
        let next = match inner.lanes.lock() {
            Ok(mut lanes) => match lanes.get_mut(&lane).and_then(VecDeque::pop_front) {
                Some(q) => Some(q),
                None => {
                    lanes.remove(&lane);
                    None
                }
            },
            Err(_) => None,
        };
        let Some(queued) = next else {
            return;
        };
        // Every line logged about this notification names it; never the URL.
        let span = tracing::info_span!(
            "notification",
            subscription = %queued.subscription,
            kind = queued.kind.as_str(),
            namespace = %lane.0,
            name = %lane.1,
            reason = %queued.reason,
        );
        deliver(&inner, queued).instrument(span).await;
        if inner.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.idle.notify_waiters();
        }
    }
}

/// Attempts until sent, a permanent failure, or the retry limits.
async fn deliver(inner: &Inner, q: Queued) {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let attempt = {
            let Ok(_permit) = inner.permits.acquire().await else {
                return;
            };
            inner.transport.post(&q.delivery).await
        };
        let why = match attempt {
            Attempt::Sent => {
                inner.metrics.notification("sent");
                debug!(attempts = failed + 1, "notification sent");
                return;
            }
            Attempt::Permanent(why) => why,
            Attempt::Retry { why, after } => {
                failed += 1;
                let jitter = rand::random::<f64>();
                match inner
                    .settings
                    .retry
                    .next_delay(failed, after, started.elapsed(), jitter)
                {
                    Some(delay) => {
                        inner.metrics.notification_retry();
                        info!(error = %why, retry_in = ?delay, "notification not delivered; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    None => format!("{why} (gave up after {failed} attempt(s))"),
                }
            }
        };
        inner.metrics.notification("failed");
        warn!(error = %why, "notification failed");
        if let Some(recorder) = &inner.recorder {
            let t = Transition {
                warning: true,
                reason: "NotificationFailed",
                message: format!(
                    "notification {:?} of {} was not delivered: {why}",
                    q.subscription, q.reason
                ),
            };
            publish(recorder, &q.reference, &t).await;
        }
        return;
    }
}

#[cfg(test)]
mod tests;
