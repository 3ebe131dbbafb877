//! The SparkApplication kind, which may be installed after the operator
//! starts (or never): discovered at most once per interval for the whole
//! controller, not per reconcile, and its applications indexed by a watch
//! that starts when the kind is found and stops when it goes.
//!
//! The watch is a stream the controller is given at start ([`triggers`]):
//! it idles until discovery publishes the kind, then watches it, and
//! switches when discovery publishes a change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use mlctl_crds::FeaturePipeline;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::index::{self, Index, OnDelete};
use crate::pipeline::naming::PIPELINE_LABEL;

/// How long a found kind is trusted before discovery is asked again (a
/// removed CRD is noticed sooner: its watch fails with 404).
pub const SERVED_RECHECK: Duration = Duration::from_secs(300);
/// How long "not installed" is trusted: a CRD installed later is picked up
/// within this plus the pipelines' own 30 s retry.
pub const ABSENT_RECHECK: Duration = Duration::from_secs(15);
/// After a failed discovery call (not an answer): retry soon, meanwhile
/// keep the last answer.
pub const FAILED_RECHECK: Duration = Duration::from_secs(5);

/// What one discovery call said.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The kind is served, as this resource.
    Served(ApiResource),
    /// The group or the kind is not served.
    Absent,
    /// The call failed (no answer either way).
    Failed,
}

/// The served SparkApplication kind and the index of the applications the
/// operator manages (by pipeline), fed by the watch [`triggers`] runs.
#[derive(Clone)]
pub struct SparkApps {
    /// The served kind.
    pub resource: ApiResource,
    /// Managed applications, stripped to what the decisions read.
    pub index: Index<DynamicObject>,
}

/// The cached answer of discovery, shared by every reconcile of one
/// controller; publishes each change to the watch in [`triggers`].
#[derive(Clone)]
pub struct SparkDiscovery {
    /// When discovery must be asked again (None: now).
    next_check: Arc<Mutex<Option<Instant>>>,
    /// Held during a discovery call, so that concurrent reconciles wait for
    /// one call instead of each making their own.
    probing: Arc<tokio::sync::Mutex<()>>,
    found: watch::Sender<Option<SparkApps>>,
    on_delete: OnDelete<DynamicObject>,
}

impl SparkDiscovery {
    /// Nothing known yet; `on_delete` is called for each application that
    /// leaves an index.
    pub fn new(on_delete: OnDelete<DynamicObject>) -> Self {
        SparkDiscovery {
            next_check: Arc::new(Mutex::new(None)),
            probing: Arc::new(tokio::sync::Mutex::new(())),
            found: watch::Sender::new(None),
            on_delete,
        }
    }

    /// The kind and its index, asking the API server only when the cached
    /// answer is older than its interval.
    pub async fn resolve(&self, client: &Client) -> Option<SparkApps> {
        self.resolve_with(|| probe(client)).await
    }

    /// [`Self::resolve`] with the discovery call given (tests).
    pub async fn resolve_with<F, Fut>(&self, probe: F) -> Option<SparkApps>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Probe>,
    {
        if self.fresh() {
            return self.found.borrow().clone();
        }
        let _one_at_a_time = self.probing.lock().await;
        // Another reconcile may have asked while this one waited.
        if self.fresh() {
            return self.found.borrow().clone();
        }
        let answer = probe().await;
        let recheck = match &answer {
            Probe::Served(_) => SERVED_RECHECK,
            Probe::Absent => ABSENT_RECHECK,
            Probe::Failed => FAILED_RECHECK,
        };
        match answer {
            Probe::Served(resource) => {
                self.found.send_if_modified(|current| {
                    if current.as_ref().is_some_and(|c| c.resource == resource) {
                        return false;
                    }
                    info!(api_version = %resource.api_version, "SparkApplication is served");
                    *current = Some(SparkApps {
                        resource,
                        index: Index::new(PIPELINE_LABEL).on_delete(self.on_delete.clone()),
                    });
                    true
                });
            }
            Probe::Absent => {
                self.found
                    .send_if_modified(|current| current.take().is_some());
            }
            Probe::Failed => {}
        }
        if let Ok(mut next) = self.next_check.lock() {
            *next = Some(Instant::now() + recheck);
        }
        self.found.borrow().clone()
    }

    /// Makes the next [`Self::resolve`] ask (the kind answered 404).
    pub fn invalidate(&self) {
        if let Ok(mut next) = self.next_check.lock() {
            *next = None;
        }
    }

    fn fresh(&self) -> bool {
        self.next_check
            .lock()
            .ok()
            .and_then(|next| *next)
            .is_some_and(|next| Instant::now() < next)
    }

    /// Follows what discovery publishes.
    pub fn subscribe(&self) -> watch::Receiver<Option<SparkApps>> {
        self.found.subscribe()
    }
}

/// One discovery call for `sparkoperator.k8s.io/v1beta2` SparkApplication
/// (one GET of the group version's resource list).
async fn probe(client: &Client) -> Probe {
    let gvk = GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication");
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Probe::Served(resource),
        Err(kube::Error::Api(s)) if s.code == 404 => Probe::Absent,
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_))) => Probe::Absent,
        Err(e) => {
            debug!(error = %e, "SparkApplication discovery failed");
            Probe::Failed
        }
    }
}

/// Keeps what `observe_spark`, the streaming check and the writes read:
/// metadata (labels, annotations, owner, times) and the status times and
/// state; the spec (the whole rendered application) is never read back.
fn trim(app: &mut DynamicObject) {
    let status = app.data.get("status").map(|s| {
        let mut kept = serde_json::Map::new();
        for field in [
            "applicationState",
            "submissionTime",
            "lastSubmissionAttemptTime",
            "terminationTime",
        ] {
            if let Some(v) = s.get(field) {
                kept.insert(field.to_string(), v.clone());
            }
        }
        serde_json::Value::Object(kept)
    });
    app.data = match status {
        Some(s) => serde_json::json!({ "status": s }),
        None => serde_json::json!({}),
    };
}

fn is_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 404,
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

/// The pipeline a changed application belongs to.
fn pipeline_of(app: &DynamicObject) -> Option<ObjectRef<DeserializeGuard<FeaturePipeline>>> {
    let name = app.metadata.labels.as_ref()?.get(PIPELINE_LABEL)?;
    let ns = app.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(name).within(ns))
}

/// Empties an index no watch feeds any more (its applications' per-object
/// state goes with them).
fn retire(index: &Index<DynamicObject>) {
    index.apply(&Event::Init);
    index.apply(&Event::InitDone);
}

/// The watch of the managed SparkApplications of `scope` (a namespace, or
/// all), started when `discovery` finds the kind and restarted when it
/// changes; yields the pipelines whose applications changed, for
/// `Controller::reconcile_on`. A 404 (the CRD was removed) makes discovery
/// ask again at once, which stops the watch.
pub fn triggers(
    client: Client,
    scope: Option<String>,
    config: watcher::Config,
    discovery: SparkDiscovery,
) -> impl Stream<Item = ObjectRef<DeserializeGuard<FeaturePipeline>>> + Send + 'static {
    let rx = discovery.subscribe();
    stream::unfold(
        (rx, None::<Index<DynamicObject>>),
        move |(mut rx, previous)| {
            let (client, scope, config, discovery) = (
                client.clone(),
                scope.clone(),
                config.clone(),
                discovery.clone(),
            );
            async move {
                if let Some(old) = previous {
                    retire(&old);
                }
                let apps = loop {
                    if let Some(apps) = rx.borrow_and_update().clone() {
                        break apps;
                    }
                    // The sender lives in the controller's Context: gone
                    // only at shutdown.
                    rx.changed().await.ok()?;
                };
                let api: Api<DynamicObject> = match &scope {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &apps.resource),
                    None => Api::all_with(client.clone(), &apps.resource),
                };
                let asker = client;
                let mut changed = rx.clone();
                let until = async move {
                    let _ = changed.changed().await;
                };
                let watch = index::watch(api, config, apps.index.clone(), trim)
                    .take_until(until)
                    .filter_map(move |item| {
                        let found = match item {
                            Ok(app) => pipeline_of(&app),
                            Err(e) => {
                                if is_not_found(&e) {
                                    // Ask now rather than at the next Spark
                                    // reconcile: "absent" stops this watch.
                                    discovery.invalidate();
                                    let (discovery, client) = (discovery.clone(), asker.clone());
                                    tokio::spawn(async move {
                                        discovery.resolve(&client).await;
                                    });
                                }
                                warn!(error = %e, "SparkApplication watch failed");
                                None
                            }
                        };
                        futures::future::ready(found)
                    });
                Some((watch, (rx, Some(apps.index))))
            }
        },
    )
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn resource(version: &str) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk(
            "sparkoperator.k8s.io",
            version,
            "SparkApplication",
        ))
    }

    fn discovery() -> SparkDiscovery {
        SparkDiscovery::new(Arc::new(|_| {}))
    }

    /// Resolves with a probe that answers `answer` and counts its calls.
    async fn resolve(d: &SparkDiscovery, calls: &AtomicU32, answer: Probe) -> Option<ApiResource> {
        d.resolve_with(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            answer
        })
        .await
        .map(|a| a.resource)
    }

    #[tokio::test(start_paused = true)]
    async fn a_found_kind_is_asked_for_once_per_interval() {
        let d = discovery();
        let calls = AtomicU32::new(0);
        let served = Probe::Served(resource("v1beta2"));
        for _ in 0..100 {
            assert_eq!(
                resolve(&d, &calls, served.clone()).await,
                Some(resource("v1beta2"))
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(SERVED_RECHECK - Duration::from_secs(1)).await;
        resolve(&d, &calls, served.clone()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        resolve(&d, &calls, served.clone()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A 404 elsewhere: the next reconcile asks at once.
        d.invalidate();
        assert_eq!(resolve(&d, &calls, Probe::Absent).await, None);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn absence_is_rechecked_sooner_and_a_failed_call_keeps_the_last_answer() {
        let d = discovery();
        let calls = AtomicU32::new(0);
        assert_eq!(resolve(&d, &calls, Probe::Absent).await, None);
        tokio::time::advance(ABSENT_RECHECK - Duration::from_secs(1)).await;
        assert_eq!(
            resolve(&d, &calls, Probe::Served(resource("v1beta2"))).await,
            None,
            "still trusted"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            resolve(&d, &calls, Probe::Served(resource("v1beta2"))).await,
            Some(resource("v1beta2")),
            "a CRD installed later is found"
        );
        tokio::time::advance(SERVED_RECHECK).await;
        assert_eq!(
            resolve(&d, &calls, Probe::Failed).await,
            Some(resource("v1beta2")),
            "an API hiccup does not hide the kind"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        tokio::time::advance(FAILED_RECHECK).await;
        resolve(&d, &calls, Probe::Served(resource("v1beta2"))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reconciles_share_one_call() {
        let d = discovery();
        let calls = AtomicU32::new(0);
        let slow = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(2)).await;
            Probe::Served(resource("v1beta2"))
        };
        let all = futures::future::join_all((0..16).map(|_| d.resolve_with(slow))).await;
        assert!(all.iter().all(Option::is_some));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn changes_are_published_once_and_a_new_kind_gets_a_new_index() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let d = discovery();
            let mut rx = d.subscribe();
            let calls = AtomicU32::new(0);
            resolve(&d, &calls, Probe::Served(resource("v1beta2"))).await;
            assert!(rx.has_changed().unwrap());
            let first = rx.borrow_and_update().clone().unwrap();
            first.index.apply(&Event::Init);
            first.index.apply(&Event::InitDone);
            tokio::time::advance(SERVED_RECHECK).await;
            resolve(&d, &calls, Probe::Served(resource("v1beta2"))).await;
            assert!(!rx.has_changed().unwrap(), "the same kind: no restart");
            assert!(rx.borrow().as_ref().unwrap().index.is_ready());
            d.invalidate();
            resolve(&d, &calls, Probe::Absent).await;
            assert!(rx.borrow_and_update().is_none());
            d.invalidate();
            resolve(&d, &calls, Probe::Served(resource("v1"))).await;
            let again = rx.borrow_and_update().clone().unwrap();
            assert_eq!(again.resource, resource("v1"));
            assert!(!again.index.is_ready(), "a fresh index waits for its list");
        });
    }

    #[test]
    fn trim_keeps_the_status_the_decision_reads() {
        let mut app: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"mlctl.io/pipeline": "p"}},
            "spec": {"image": "spark", "driver": {"env": []}},
            "status": {
                "applicationState": {"state": "RUNNING"},
                "submissionTime": "2026-11-01T00:00:00Z",
                "driverInfo": {"podName": "a-driver"},
                "executorState": {"a-exec-1": "RUNNING"}
            }
        }))
        .unwrap();
        trim(&mut app);
        assert_eq!(
            app.data,
            serde_json::json!({"status": {
                "applicationState": {"state": "RUNNING"},
                "submissionTime": "2026-11-01T00:00:00Z"
            }})
        );
        assert_eq!(pipeline_of(&app), Some(ObjectRef::new("p").within("ns")));
    }
}
