//! In-memory indexes of the objects the controllers own, fed by the watches
//! the controllers already run: a reconcile reads its children here, never
//! with a LIST (a LIST per reconcile is etcd load that grows with every
//! object and every event; at 10,000 models it is most of the API server's
//! work).
//!
//! Unlike kube-runtime's `Store`, an [`Index`] also groups objects by the
//! value of one label (`mlctl.io/model`, `mlctl.io/pipeline`), so a reconcile
//! finds a parent's children in O(its children), not O(all objects).
//! Objects are stored stripped ([`strip`]): managed fields and
//! `last-applied-configuration` are most of a small object's size and no
//! decision reads them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_fn};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// `kubectl apply`'s copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

type Key = (String, String);

struct State<K> {
    objects: HashMap<Key, Arc<K>>,
    /// (namespace, label value) → names.
    groups: HashMap<Key, BTreeSet<String>>,
    /// The objects of a (re)list in progress; the old state serves reads
    /// until it is complete.
    pending: Option<HashMap<Key, Arc<K>>>,
}

/// Called with an object that left the index (deleted, or gone at a relist).
pub type OnDelete<K> = Arc<dyn Fn(&K) + Send + Sync>;

/// The objects of one kind the operator owns, by name and by parent label.
pub struct Index<K> {
    state: Arc<RwLock<State<K>>>,
    label: &'static str,
    ready: watch::Sender<bool>,
    on_delete: Option<OnDelete<K>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            state: self.state.clone(),
            label: self.label,
            ready: self.ready.clone(),
            on_delete: self.on_delete.clone(),
        }
    }
}

fn key_of(meta: &ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone()?,
    ))
}

impl<K: Resource> Index<K> {
    /// An empty index grouping by `label`; not ready until its first list.
    pub fn new(label: &'static str) -> Self {
        Index {
            state: Arc::new(RwLock::new(State {
                objects: HashMap::new(),
                groups: HashMap::new(),
                pending: None,
            })),
            label,
            ready: watch::Sender::new(false),
            on_delete: None,
        }
    }

    /// An index by name only (no grouping label).
    pub fn by_name() -> Self {
        Self::new("")
    }

    /// Calls `f` for every object that leaves the index (to prune per-object
    /// caches kept elsewhere).
    #[must_use]
    pub fn on_delete(mut self, f: OnDelete<K>) -> Self {
        self.on_delete = Some(f);
        self
    }

    fn group_of(&self, meta: &ObjectMeta) -> Option<String> {
        if self.label.is_empty() {
            return None;
        }
        meta.labels.as_ref()?.get(self.label).cloned()
    }

    /// Folds one watch event in.
    pub fn apply(&self, event: &Event<K>)
    where
        K: Clone,
    {
        let mut gone = Vec::new();
        {
            let Ok(mut state) = self.state.write() else {
                return;
            };
            match event {
                Event::Init => state.pending = Some(HashMap::new()),
                Event::InitApply(o) => {
                    if let (Some(pending), Some(key)) = (state.pending.as_mut(), key_of(o.meta())) {
                        pending.insert(key, Arc::new(o.clone()));
                    }
                }
                Event::InitDone => {
                    let fresh = state.pending.take().unwrap_or_default();
                    for (key, old) in &state.objects {
                        if !fresh.contains_key(key) {
                            gone.push(old.clone());
                        }
                    }
                    let mut groups: HashMap<Key, BTreeSet<String>> = HashMap::new();
                    for ((ns, name), o) in &fresh {
                        if let Some(value) = self.group_of(o.meta()) {
                            groups
                                .entry((ns.clone(), value))
                                .or_default()
                                .insert(name.clone());
                        }
                    }
                    state.objects = fresh;
                    state.groups = groups;
                }
                Event::Apply(o) => {
                    if let Some(key) = key_of(o.meta()) {
                        let new = Arc::new(o.clone());
                        let old = state.objects.insert(key.clone(), new);
                        let old_group = old.as_ref().and_then(|o| self.group_of(o.meta()));
                        let new_group = self.group_of(o.meta());
                        if old_group != new_group
                            && let Some(g) = old_group
                        {
                            remove_from_group(&mut state.groups, &key.0, g, &key.1);
                        }
                        if let Some(g) = new_group {
                            state
                                .groups
                                .entry((key.0.clone(), g))
                                .or_default()
                                .insert(key.1);
                        }
                    }
                }
                Event::Delete(o) => {
                    if let Some(key) = key_of(o.meta())
                        && let Some(old) = state.objects.remove(&key)
                    {
                        if let Some(g) = self.group_of(old.meta()) {
                            remove_from_group(&mut state.groups, &key.0, g, &key.1);
                        }
                        gone.push(old);
                    }
                }
            }
        }
        if matches!(event, Event::InitDone) {
            self.ready.send_replace(true);
        }
        if let Some(f) = &self.on_delete {
            for o in gone {
                f(&o);
            }
        }
    }

    /// The object `namespace/name`, if the operator owns one by that name
    /// (objects of that name it does not own are not watched: look them up
    /// before creating one).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let state = self.state.read().ok()?;
        state
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The objects of `namespace` whose grouping label is `value`, by name.
    pub fn group(&self, namespace: &str, value: &str) -> Vec<Arc<K>> {
        let Ok(state) = self.state.read() else {
            return Vec::new();
        };
        state
            .groups
            .get(&(namespace.to_string(), value.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|name| {
                state
                    .objects
                    .get(&(namespace.to_string(), name.clone()))
                    .cloned()
            })
            .collect()
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.state.read().map_or(0, |s| s.objects.len())
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has completed: before that, a missing
    /// child only means "not listed yet".
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

fn remove_from_group(
    groups: &mut HashMap<Key, BTreeSet<String>>,
    ns: &str,
    value: String,
    name: &str,
) {
    let key = (ns.to_string(), value);
    if let Some(names) = groups.get_mut(&key) {
        names.remove(name);
        if names.is_empty() {
            groups.remove(&key);
        }
    }
}

/// Drops what no decision reads from an object's metadata: managed fields
/// (kept only as a marker where a manager owns `spec.replicas`, which the
/// autoscaled-Deployment sizing reads) and `kubectl apply`'s copy of the
/// object.
pub fn strip(meta: &mut ObjectMeta) {
    if let Some(fields) = meta.managed_fields.take() {
        let replicas: Vec<ManagedFieldsEntry> = fields
            .into_iter()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .and_then(|f| f.0.get("f:spec"))
                    .is_some_and(|spec| spec.get("f:replicas").is_some())
            })
            .map(|m| ManagedFieldsEntry {
                manager: m.manager,
                operation: m.operation,
                subresource: m.subresource,
                fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
                ..ManagedFieldsEntry::default()
            })
            .collect();
        if !replicas.is_empty() {
            meta.managed_fields = Some(replicas);
        }
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A watch of `api` that keeps `index` current and yields the objects it
/// saw change, for `Controller::owns_stream`/`watches_stream`. `trim` drops
/// what the controller never reads (e.g. an autoscaler's status) after
/// [`strip`].
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    index: Index<K>,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watch_fn(api, config)
        .default_backoff()
        .modify(move |o: &mut K| {
            strip(o.meta_mut());
            trim(o);
        })
        .map_ok(move |event| {
            index.apply(&event);
            event
        })
        .touched_objects()
}

/// The watch of a controller's own kind (read through `DeserializeGuard`):
/// objects stored stripped of managed fields, `forget` called with each
/// deleted one (to drop its per-object state), the controller's store and
/// trigger for `Controller::for_stream`.
pub fn parents<K>(
    api: Api<DeserializeGuard<K>>,
    config: watcher::Config,
    seen: Arc<Seen>,
    forget: impl Fn(&DeserializeGuard<K>) + Send + 'static,
) -> (
    Store<DeserializeGuard<K>>,
    impl Stream<Item = Result<DeserializeGuard<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let trigger = watch_fn(api, config)
        .default_backoff()
        .modify(|o: &mut DeserializeGuard<K>| {
            if let Ok(o) = o.0.as_mut() {
                strip(o.meta_mut());
            }
        })
        .map_ok(move |event| {
            match &event {
                Event::Apply(o) | Event::InitApply(o) => seen.observe(o.meta()),
                Event::Delete(o) => {
                    seen.forget(o.meta());
                    forget(o);
                }
                Event::Init | Event::InitDone => {}
            }
            event
        })
        .reflect(writer)
        .applied_objects();
    (store, trigger)
}

/// The backoff a `Controller` applies to its merged trigger streams: none
/// (`Controller::trigger_backoff`). Each watch already backs off on its own
/// errors ([`watch`], [`parents`]: `default_backoff`). kube's default here
/// is one more backoff, shared by all the triggers of a controller and
/// grown by every error of any of them without a success in between: after
/// an API server restart each watch fails once or twice (a refused
/// connection, then 410 Gone), and the shared pause — during which no
/// watch is read — grew past a minute; measured: 2.5 minutes without a
/// single watch event after a 5-second restart, a canary stuck meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerWatchBackoff;

impl Iterator for PerWatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        // `None` would end the trigger stream: pause for nothing instead.
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for PerWatchBackoff {
    fn reset(&mut self) {}
}

/// The resourceVersion of each object as the controller's own watch last
/// delivered it, so that a reconcile that has just written an object's
/// status can wait until its watch — and so the store the next reconcile
/// reads — has caught up. Without that, the next reconcile (triggered by the
/// reconcile's own child writes) can decide from the status before the
/// write and undo what the write recorded: after a promotion, put the
/// canary back into the Service for a moment.
#[derive(Default)]
pub struct Seen {
    versions: std::sync::Mutex<HashMap<Key, String>>,
    changed: tokio::sync::Notify,
}

impl Seen {
    /// Records what the watch delivered.
    pub fn observe(&self, meta: &ObjectMeta) {
        let (Some(key), Some(rv)) = (key_of(meta), meta.resource_version.clone()) else {
            return;
        };
        if let Ok(mut versions) = self.versions.lock() {
            versions.insert(key, rv);
        }
        self.changed.notify_waiters();
    }

    /// Drops a deleted object.
    pub fn forget(&self, meta: &ObjectMeta) {
        if let (Some(key), Ok(mut versions)) = (key_of(meta), self.versions.lock()) {
            versions.remove(&key);
        }
    }

    fn is(&self, key: &Key, rv: &str) -> bool {
        self.versions
            .lock()
            .is_ok_and(|v| v.get(key).map(String::as_str) == Some(rv))
    }

    /// Waits until the watch has delivered `namespace/name` at `rv`, at most
    /// `timeout`; returns whether it has.
    pub async fn wait_for(
        &self,
        namespace: &str,
        name: &str,
        rv: &str,
        timeout: std::time::Duration,
    ) -> bool {
        let key = (namespace.to_string(), name.to_string());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is(&key, rv) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is(&key, rv);
            }
        }
    }
}

/// Keeps everything (after [`strip`]).
pub fn keep<K>(_: &mut K) {}

/// One value per watch scope: a namespace the operator watches, or `None`
/// for all of them. A scope's indexes must be fed by that scope's watches
/// only (a relist replaces the whole index).
pub struct Scopes<T>(Vec<(Option<String>, T)>);

impl<T> Default for Scopes<T> {
    fn default() -> Self {
        Scopes(Vec::new())
    }
}

impl<T> Scopes<T> {
    /// Adds the value of `scope`.
    pub fn push(&mut self, scope: Option<String>, value: T) {
        self.0.push((scope, value));
    }

    /// The value whose scope holds `namespace`.
    pub fn for_namespace(&self, namespace: &str) -> Option<&T> {
        self.0
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::ResourceExt;

    use super::*;

    fn cm(name: &str, model: Option<&str>) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        if let Some(m) = model {
            c.metadata.labels = Some([("mlctl.io/model".to_string(), m.to_string())].into());
        }
        c
    }

    fn names(v: &[Arc<ConfigMap>]) -> Vec<String> {
        v.iter().map(|o| o.name_any()).collect()
    }

    /// What a controller's merged triggers go through after an API server
    /// restart: one error from each of `watches` watches, then each one's
    /// relist. Returns the items seen and the (virtual) time it took.
    async fn through(
        backoff: impl kube::runtime::utils::Backoff + 'static,
        watches: usize,
    ) -> (usize, Duration) {
        use futures::StreamExt;
        let mut items: Vec<Result<u32, &str>> = vec![Err("410 Gone"); watches];
        items.extend((0..watches as u32).map(Ok));
        let merged = futures::stream::iter(items);
        let start = tokio::time::Instant::now();
        let seen = kube::runtime::utils::StreamBackoff::new(merged, backoff)
            .count()
            .await;
        (seen, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_are_not_held_back_by_the_errors_of_other_watches() {
        let (seen, took) = through(PerWatchBackoff, 9).await;
        assert_eq!(seen, 18, "nothing dropped, the stream never ends");
        assert_eq!(took, Duration::ZERO);
        // kube's default, for contrast: one pause grown by all nine errors.
        let (seen, took) = through(kube::runtime::watcher::DefaultBackoff::default(), 9).await;
        assert_eq!(seen, 18);
        assert!(took > Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn groups_follow_applies_relabels_and_deletes() {
        let index = Index::<ConfigMap>::new("mlctl.io/model");
        assert!(!index.is_ready());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(cm("a-1", Some("a"))));
        index.apply(&Event::InitApply(cm("b-1", Some("b"))));
        // A relist in progress does not hide the old state.
        assert!(index.group("ns", "a").is_empty());
        index.apply(&Event::InitDone);
        assert!(index.is_ready());
        assert_eq!(names(&index.group("ns", "a")), ["a-1"]);
        index.apply(&Event::Apply(cm("a-2", Some("a"))));
        assert_eq!(names(&index.group("ns", "a")), ["a-1", "a-2"]);
        // Relabelled to another parent: moves group.
        index.apply(&Event::Apply(cm("a-2", Some("b"))));
        assert_eq!(names(&index.group("ns", "a")), ["a-1"]);
        assert_eq!(names(&index.group("ns", "b")), ["a-2", "b-1"]);
        index.apply(&Event::Delete(cm("b-1", Some("b"))));
        assert_eq!(names(&index.group("ns", "b")), ["a-2"]);
        assert!(index.get("ns", "b-1").is_none());
        assert!(index.get("ns", "a-1").is_some());
        assert!(index.group("other", "a").is_empty());
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_relist_replaces_the_state_and_reports_what_vanished() {
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let seen = deleted.clone();
        let index = Index::<ConfigMap>::new("mlctl.io/model").on_delete(Arc::new(move |o| {
            seen.lock().unwrap().push(o.name_any());
        }));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(cm("a-1", Some("a"))));
        index.apply(&Event::InitApply(cm("a-2", Some("a"))));
        index.apply(&Event::InitDone);
        index.apply(&Event::Delete(cm("a-1", Some("a"))));
        // A watch gap: a-2 was deleted while disconnected; the relist says so.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(cm("c-1", Some("c"))));
        index.apply(&Event::InitDone);
        assert_eq!(*deleted.lock().unwrap(), ["a-1", "a-2"]);
        assert!(index.group("ns", "a").is_empty());
        assert_eq!(names(&index.group("ns", "c")), ["c-1"]);
    }

    fn meta(name: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_waits_until_the_watch_delivers_its_write() {
        let seen = Arc::new(Seen::default());
        seen.observe(&meta("m", "5"));
        assert!(seen.wait_for("ns", "m", "5", Duration::from_secs(2)).await);
        // Written as 7; the watch delivers 6, then 7.
        let watch = seen.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            watch.observe(&meta("m", "6"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            watch.observe(&meta("m", "7"));
        });
        let start = tokio::time::Instant::now();
        assert!(seen.wait_for("ns", "m", "7", Duration::from_secs(2)).await);
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        // Never delivered (a watch that is down): the wait is bounded.
        assert!(!seen.wait_for("ns", "m", "8", Duration::from_secs(2)).await);
        assert_eq!(start.elapsed(), Duration::from_millis(2020));
        seen.forget(&meta("m", "7"));
        assert!(!seen.wait_for("ns", "m", "7", Duration::ZERO).await);
    }

    #[test]
    fn strip_keeps_only_the_replicas_marker() {
        let mut meta = ObjectMeta {
            annotations: Some(
                [
                    (LAST_APPLIED.to_string(), "{...}".to_string()),
                    ("keep".to_string(), "me".to_string()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![
                ManagedFieldsEntry {
                    manager: Some("mlctl-operator".into()),
                    fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:template": {}}}))),
                    ..Default::default()
                },
                ManagedFieldsEntry {
                    manager: Some("kube-controller-manager".into()),
                    subresource: Some("scale".into()),
                    fields_v1: Some(FieldsV1(
                        serde_json::json!({"f:spec": {"f:replicas": {}, "f:other": {}}}),
                    )),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        strip(&mut meta);
        let kept = meta.managed_fields.expect("the replicas marker");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].manager.as_deref(), Some("kube-controller-manager"));
        assert_eq!(
            kept[0].fields_v1.as_ref().map(|f| f.0.clone()),
            Some(serde_json::json!({"f:spec": {"f:replicas": {}}}))
        );
        let annotations = meta.annotations.expect("other annotations stay");
        assert_eq!(annotations.len(), 1);

        let mut bare = ObjectMeta {
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            annotations: Some([(LAST_APPLIED.to_string(), String::new())].into()),
            ..Default::default()
        };
        strip(&mut bare);
        assert!(bare.managed_fields.is_none());
        assert!(bare.annotations.is_none());
    }
}
