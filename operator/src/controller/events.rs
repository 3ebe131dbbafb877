//! Publishing Events off the reconcile path.
//!
//! kube-runtime's `Recorder` is awaited in the reconcile (a throttled or slow
//! Events API holds a reconcile slot) and keeps every Event it sent for six
//! minutes to fold repeats into a series (tens of MiB after 10,000 models
//! converge, and it is only pruned at the next publish). This one queues the
//! Event (bounded; a full queue drops it and says so) and one task per
//! recorder creates them in order. The controllers only publish transitions,
//! so repeats are rare and not folded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting to be sent before new ones are dropped.
const QUEUE: usize = 4096;

/// Queues Events for one reporter. Cloning shares the queue.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Event, ObjectReference)>,
    dropped: Arc<AtomicU64>,
    /// Sends the transitions to the objects' webhooks too (crate::notify).
    notifier: Option<crate::notify::Notifier>,
}

impl Recorder {
    /// A recorder sending as `reporter` with `client`; starts its sender
    /// task (which ends when the last clone is dropped).
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            while let Some((event, reference)) = rx.recv().await {
                let namespace = reference
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string());
                let api: Api<K8sEvent> = Api::namespaced(client.clone(), &namespace);
                let object = render(&event, &reference, &reporter, Timestamp::now());
                if let Err(e) = api.create(&PostParams::default(), &object).await {
                    warn!(error = %e, reason = %event.reason, "could not publish event");
                }
            }
        });
        Recorder {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            notifier: None,
        }
    }

    /// This recorder, also queueing notifications with `notifier`.
    #[must_use]
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Queues `t` for the webhooks of `subject` (None: it has none); never
    /// waits.
    pub fn notify(
        &self,
        subject: Option<&crate::notify::Subject>,
        reference: &ObjectReference,
        t: &crate::rollout::Transition,
    ) {
        if let (Some(notifier), Some(subject)) = (&self.notifier, subject) {
            notifier.notify(subject, reference, t);
        }
    }

    /// Queues `event` about `reference`; never waits.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if self.tx.try_send((event, reference)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    dropped = n,
                    "the Event queue is full; Events are being dropped"
                );
            }
        }
    }
}

/// The events.k8s.io/v1 Event for `event` about `regarding`, at `now`.
pub fn render(
    event: &Event,
    regarding: &ObjectReference,
    reporter: &Reporter,
    now: Timestamp,
) -> K8sEvent {
    let object = regarding.name.as_deref().unwrap_or("object");
    // Unique within the namespace: the regarded object, then the time in
    // nanoseconds (as kubectl's and client-go's Event names are) and a
    // random suffix for Events in the same nanosecond.
    let name = format!(
        "{object}.{:x}{:04x}",
        now.as_nanosecond(),
        rand::random::<u16>()
    );
    K8sEvent {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_reporter_and_reason() {
        let regarding = ObjectReference {
            kind: Some("RankingModel".into()),
            name: Some("search".into()),
            namespace: Some("shop".into()),
            ..ObjectReference::default()
        };
        let reporter = Reporter {
            controller: "mlctl-operator".into(),
            instance: Some("pod-a".into()),
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "Aborted".into(),
            note: Some("analysis failed".into()),
            action: "Reconcile-abcd".into(),
            secondary: None,
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let a = render(&event, &regarding, &reporter, now);
        let b = render(&event, &regarding, &reporter, now);
        let name = a.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("search."), "{name}");
        // The name is a valid DNS subdomain (lowercase hex after the dot).
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'),
            "{name}"
        );
        assert_eq!(a.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(a.reason.as_deref(), Some("Aborted"));
        assert_eq!(a.note.as_deref(), Some("analysis failed"));
        assert_eq!(a.action.as_deref(), Some("Reconcile-abcd"));
        assert_eq!(a.reporting_controller.as_deref(), Some("mlctl-operator"));
        assert_eq!(a.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(a.event_time.map(|t| t.0), Some(now));
        assert_eq!(a.regarding, Some(regarding));
        // Same instant, same object: the random suffix keeps them apart.
        let hex = |n: &str| n.rsplit('.').next().unwrap_or("").len();
        assert_eq!(hex(&name), hex(&b.metadata.name.unwrap_or_default()));
    }
}
