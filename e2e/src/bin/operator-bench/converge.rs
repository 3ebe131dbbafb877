//! Creating many objects with parallel clients and waiting, on a watch, until
//! every one of a kind is in the state a predicate asks for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// The field manager of everything the bench writes.
pub const MANAGER: &str = "mlctl-bench";

/// Server-side applies every object (what `kubectl apply --server-side`
/// sends) with `clients` requests in flight.
pub async fn create_all(
    client: &Client,
    ns: &str,
    objects: Vec<(ApiResource, Value)>,
    clients: usize,
) {
    let total = objects.len();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures::stream::iter(objects)
        .for_each_concurrent(clients, |(ar, value)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let done = done.clone();
            async move {
                let object = crate::objects::dynamic(value);
                let name = object.name_any();
                // A slow API server is what we measure: retry the odd timeout.
                let mut attempt = 0;
                loop {
                    match api
                        .patch(
                            &name,
                            &PatchParams::apply(MANAGER).force(),
                            &Patch::Apply(&object),
                        )
                        .await
                    {
                        Ok(_) => break,
                        // Only what a retry can fix: the server's trouble, not a refusal.
                        Err(e) if attempt < 5 && retryable(&e) => {
                            attempt += 1;
                            eprintln!("    create {} {name}: {e}; retrying", ar.kind);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => panic!("create {} {ns}/{name}: {e}", ar.kind),
                    }
                }
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(2000) {
                    eprintln!("    created {n}/{total} objects");
                }
            }
        })
        .await;
}

fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Watches `ar` in `ns` until `expected` objects satisfy `ready` at once;
/// returns when that happened. Panics with `what` and the count after `timeout`.
pub async fn all_ready(
    client: Client,
    ns: String,
    ar: ApiResource,
    expected: usize,
    ready: fn(&DynamicObject) -> bool,
    timeout: Duration,
    what: String,
) -> Instant {
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut ready_names = HashSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let event = tokio::select! {
            e = stream.try_next() => e,
            _ = tokio::time::sleep_until(deadline) => panic!(
                "timed out after {timeout:?} waiting for {what}: {} of {expected} ready",
                ready_names.len()
            ),
        };
        match event {
            Ok(Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                if ready(&o) {
                    ready_names.insert(o.name_any());
                } else {
                    ready_names.remove(&o.name_any());
                }
            }
            Ok(Some(watcher::Event::Delete(o))) => {
                ready_names.remove(&o.name_any());
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watch of {what} ended"),
            Err(e) => eprintln!("    watch of {what}: {e}"),
        }
        if ready_names.len() >= expected {
            return Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!("    {what}: {}/{expected}", ready_names.len());
        }
    }
}

/// `status.observedGeneration` as a number (Argo writes it as a string).
pub fn observed_generation(o: &DynamicObject) -> Option<i64> {
    let v = o.data.get("status")?.get("observedGeneration")?;
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// `status.phase == Healthy` for the current generation (mlctl, Argo).
pub fn healthy(o: &DynamicObject) -> bool {
    o.data
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        == Some("Healthy")
        && observed_generation(o) == o.metadata.generation
}

/// A Deployment whose current generation has all its replicas available.
pub fn deployment_available(o: &DynamicObject) -> bool {
    let want = o.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &o.data["status"];
    status["availableReplicas"].as_i64().unwrap_or(0) >= want
        && status["updatedReplicas"].as_i64().unwrap_or(0) >= want
        && observed_generation(o) >= o.metadata.generation
}

/// When each object's `status.observedGeneration` first reached each value,
/// recorded by a watch, so an edit's latency is read off after the fact.
#[derive(Clone, Default)]
pub struct Observations {
    seen: Arc<Mutex<HashMap<String, BTreeMap<i64, Instant>>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Observations {
    /// Starts the watch; it runs until the returned handle is aborted.
    pub fn watch(&self, client: Client, ns: &str, ar: &ApiResource) -> tokio::task::JoinHandle<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(client, ns, ar);
        let this = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                let objects = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                let now = Instant::now();
                for o in objects {
                    if let Some(g) = observed_generation(&o) {
                        this.seen
                            .lock()
                            .expect("observations lock")
                            .entry(o.name_any())
                            .or_default()
                            .entry(g)
                            .or_insert(now);
                    }
                }
                this.changed.notify_waiters();
            }
        })
    }

    /// When `name` was first seen with an observedGeneration of at least `generation`.
    pub fn observed_at(&self, name: &str, generation: i64) -> Option<Instant> {
        let seen = self.seen.lock().expect("observations lock");
        seen.get(name)?.range(generation..).map(|(_, t)| *t).min()
    }

    /// Waits until every (name, generation) is observed or `timeout` passed;
    /// returns how many were not.
    pub async fn wait_all(&self, edits: &[(String, i64)], timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let missing = edits
                .iter()
                .filter(|(n, g)| self.observed_at(n, *g).is_none())
                .count();
            if missing == 0 {
                return 0;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return missing,
            }
        }
    }
}
