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
//!
//! An index of a kind the operator has thousands of ([`Index::packed`]:
//! Deployments, Services, …) holds each object as JSON compressed with LZ4
//! against a dictionary — the JSON of the first object of the kind it saw,
//! which its siblings mostly repeat — and decodes it on read.
//! k8s-openapi's structs hold every optional field inline: a serving
//! Deployment measured 24 KB on the heap (its `PodSpec` alone 19 KB), and
//! the indexes were 37 of the operator's 46 MiB of live heap at 1,000
//! models (heaptrack, docs/performance.md). Packed, a sibling Deployment is
//! a few hundred bytes; a reconcile decodes the few objects it reads. (Deflate
//! without a dictionary was tried first: 1.3 KB, and 6 s more CPU while
//! 1,000 models converged.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use futures::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_fn};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

/// `kubectl apply`'s copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

type Key = (String, String);

/// How an index holds one object.
enum Slot<K> {
    /// As it is.
    Whole(Arc<K>),
    /// LZ4-compressed JSON ([`Codec`]).
    Packed(Box<[u8]>),
}

impl<K> Clone for Slot<K> {
    fn clone(&self) -> Self {
        match self {
            Slot::Whole(o) => Slot::Whole(o.clone()),
            Slot::Packed(bytes) => Slot::Packed(bytes.clone()),
        }
    }
}

/// One indexed object and the value of its grouping label (kept beside it:
/// regrouping must not need to decode the old object).
struct Entry<K> {
    slot: Slot<K>,
    group: Option<String>,
}

/// An object's JSON and back, LZ4-compressed against a dictionary: for a
/// packed index, and the RankingModels' own store ([`super::stored`]).
pub(super) struct Codec<K> {
    to_json: fn(&K) -> Option<Vec<u8>>,
    from_json: fn(&[u8]) -> Option<K>,
    /// The JSON of the first object packed: what the others are compressed
    /// against (set once, kept as long as the index).
    dictionary: Arc<OnceLock<Box<[u8]>>>,
}

impl<K> Clone for Codec<K> {
    fn clone(&self) -> Self {
        Codec {
            to_json: self.to_json,
            from_json: self.from_json,
            dictionary: self.dictionary.clone(),
        }
    }
}

impl<K: Serialize + DeserializeOwned> Codec<K> {
    /// Packs `K` as its serde JSON.
    pub(super) fn json() -> Self {
        Codec {
            to_json: |o| serde_json::to_vec(o).ok(),
            from_json: |json| serde_json::from_slice(json).ok(),
            dictionary: Arc::default(),
        }
    }
}

impl<K> Codec<K> {
    pub(super) fn pack(&self, o: &K) -> Option<Box<[u8]>> {
        let json = (self.to_json)(o)?;
        let dictionary = self
            .dictionary
            .get_or_init(|| json.clone().into_boxed_slice());
        Some(lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary).into_boxed_slice())
    }

    pub(super) fn unpack(&self, bytes: &[u8]) -> Option<K> {
        let dictionary = self.dictionary.get()?;
        let json = lz4_flex::block::decompress_size_prepended_with_dict(bytes, dictionary).ok()?;
        (self.from_json)(&json)
    }
}

struct State<K> {
    objects: HashMap<Key, Entry<K>>,
    /// (namespace, label value) → names.
    groups: HashMap<Key, BTreeSet<String>>,
    /// The objects of a (re)list in progress; the old state serves reads
    /// until it is complete.
    pending: Option<HashMap<Key, Entry<K>>>,
}

/// Called with an object that left the index (deleted, or gone at a relist).
pub type OnDelete<K> = Arc<dyn Fn(&K) + Send + Sync>;

/// The objects of one kind the operator owns, by name and by parent label.
pub struct Index<K> {
    state: Arc<RwLock<State<K>>>,
    label: &'static str,
    ready: watch::Sender<bool>,
    on_delete: Option<OnDelete<K>>,
    codec: Option<Codec<K>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            state: self.state.clone(),
            label: self.label,
            ready: self.ready.clone(),
            on_delete: self.on_delete.clone(),
            codec: self.codec.clone(),
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
            codec: None,
        }
    }

    /// Holds the objects packed (LZ4-compressed JSON), decoding them on read: for
    /// kinds with an object or more per model, whose structs are mostly
    /// empty optional fields held inline.
    #[must_use]
    pub fn packed(mut self) -> Self
    where
        K: Serialize + DeserializeOwned,
    {
        self.codec = Some(Codec::json());
        self
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

    fn entry(&self, o: &K) -> Entry<K>
    where
        K: Clone,
    {
        let slot = match self.codec.as_ref().and_then(|c| c.pack(o)) {
            Some(bytes) => Slot::Packed(bytes),
            None => Slot::Whole(Arc::new(o.clone())),
        };
        Entry {
            slot,
            group: self.group_of(o.meta()),
        }
    }

    fn read(&self, (namespace, name): &Key, slot: Slot<K>) -> Option<Arc<K>> {
        match slot {
            Slot::Whole(o) => Some(o),
            Slot::Packed(bytes) => {
                let o = self.codec.as_ref().and_then(|c| c.unpack(&bytes));
                if o.is_none() {
                    // Cannot happen (it was packed from this type); reads as
                    // absent, which costs one GET.
                    warn!(%namespace, %name, "an indexed object did not decode");
                }
                o.map(Arc::new)
            }
        }
    }

    /// Folds one watch event in.
    pub fn apply(&self, event: &Event<K>)
    where
        K: Clone,
    {
        let mut gone = Vec::new();
        // Packed before the lock is taken: reconciles read meanwhile.
        let mut entry = match event {
            Event::InitApply(o) | Event::Apply(o) => Some(self.entry(o)),
            _ => None,
        };
        let mut released = Vec::new();
        {
            let Ok(mut state) = self.state.write() else {
                return;
            };
            match event {
                Event::Init => state.pending = Some(HashMap::new()),
                Event::InitApply(o) => {
                    if let (Some(key), Some(entry)) = (key_of(o.meta()), entry.take())
                        && let Some(pending) = state.pending.as_mut()
                    {
                        pending.insert(key, entry);
                    }
                }
                Event::InitDone => {
                    let fresh = state.pending.take().unwrap_or_default();
                    let mut groups: HashMap<Key, BTreeSet<String>> = HashMap::new();
                    for ((ns, name), entry) in &fresh {
                        if let Some(value) = &entry.group {
                            groups
                                .entry((ns.clone(), value.clone()))
                                .or_default()
                                .insert(name.clone());
                        }
                    }
                    let old = std::mem::replace(&mut state.objects, fresh);
                    state.groups = groups;
                    if self.on_delete.is_some() {
                        released = old
                            .into_iter()
                            .filter(|(key, _)| !state.objects.contains_key(key))
                            .collect();
                    }
                }
                Event::Apply(o) => {
                    if let (Some(key), Some(new)) = (key_of(o.meta()), entry.take()) {
                        let new_group = new.group.clone();
                        let old_group = state
                            .objects
                            .insert(key.clone(), new)
                            .and_then(|old| old.group);
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
                        if let Some(g) = old.group {
                            remove_from_group(&mut state.groups, &key.0, g, &key.1);
                        }
                        if self.on_delete.is_some() {
                            gone.push(Arc::new(o.clone()));
                        }
                    }
                }
            }
        }
        // Objects gone at a relist, decoded outside the lock.
        for (key, entry) in released {
            gone.extend(self.read(&key, entry.slot));
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
        let key = (namespace.to_string(), name.to_string());
        let slot = self.state.read().ok()?.objects.get(&key)?.slot.clone();
        self.read(&key, slot)
    }

    /// The objects of `namespace` whose grouping label is `value`, by name.
    pub fn group(&self, namespace: &str, value: &str) -> Vec<Arc<K>> {
        // Copied out under the lock (a few hundred bytes each), decoded
        // after it.
        let slots: Vec<(Key, Slot<K>)> = {
            let Ok(state) = self.state.read() else {
                return Vec::new();
            };
            state
                .groups
                .get(&(namespace.to_string(), value.to_string()))
                .into_iter()
                .flatten()
                .filter_map(|name| {
                    let key = (namespace.to_string(), name.clone());
                    let slot = state.objects.get(&key)?.slot.clone();
                    Some((key, slot))
                })
                .collect()
        };
        slots
            .into_iter()
            .filter_map(|(key, slot)| self.read(&key, slot))
            .collect()
    }

    /// The bytes the packed objects take (0 for an index holding them
    /// whole): what [`Index::packed`] keeps per object.
    pub fn packed_bytes(&self) -> usize {
        self.state.read().map_or(0, |s| {
            s.objects
                .values()
                .map(|e| match &e.slot {
                    Slot::Packed(bytes) => bytes.len(),
                    Slot::Whole(_) => 0,
                })
                .sum()
        })
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

/// Objects per page of a watch's initial list (and of a relist).
pub const LIST_PAGE: u32 = 100;

/// The watch configuration of every watch of the operator: initial lists of
/// the most recent state, in pages of [`LIST_PAGE`]. A list "from any
/// resourceVersion" (`resourceVersion=0`) is served by the API server's
/// watch cache without pages: measured on 1.34, `limit=50` returned all 69
/// Deployments of a namespace in one response. At a restart that was every
/// object of a kind decoded at once — 1,000 models in one body, and a
/// Deployment is about 10 KB of JSON and 24 KB as a struct. A most-recent
/// list honours the limit (from the watch cache too, on 1.34); the peak is a
/// page per watch, whatever N is (restart RSS peak at 1,000 models: 85-111
/// MiB before, 45 MiB paged; docs/performance.md).
pub fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE)
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
/// deleted one (to drop its per-object state), then turned into what the
/// store holds by `store_as` (the RankingModels: [`super::stored::StoredModel`],
/// packed; the FeaturePipelines: as they are). Returns the controller's store
/// and trigger for `Controller::for_stream`.
pub fn parents<K, P>(
    api: Api<DeserializeGuard<K>>,
    config: watcher::Config,
    seen: Arc<Seen>,
    forget: impl Fn(&DeserializeGuard<K>) + Send + 'static,
    store_as: fn(DeserializeGuard<K>) -> P,
) -> (
    Store<P>,
    impl Stream<Item = Result<P, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    P: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
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
            match event {
                Event::Apply(o) => Event::Apply(store_as(o)),
                Event::InitApply(o) => Event::InitApply(store_as(o)),
                Event::Delete(o) => Event::Delete(store_as(o)),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            }
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
    fn a_packed_index_reads_back_what_it_was_given() {
        let index = Index::<ConfigMap>::new("mlctl.io/model").packed();
        let mut a = cm("a-1", Some("a"));
        a.data = Some([("peers.json".to_string(), "{\"canary\":\"x\"}".to_string())].into());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(a.clone()));
        index.apply(&Event::InitDone);
        assert_eq!(index.get("ns", "a-1").as_deref(), Some(&a));
        assert_eq!(
            index
                .group("ns", "a")
                .iter()
                .map(|o| (**o).clone())
                .collect::<Vec<_>>(),
            [a.clone()]
        );
        assert!(index.packed_bytes() > 0);
        // Regrouped without decoding the old object.
        index.apply(&Event::Apply(cm("a-1", Some("b"))));
        assert!(index.group("ns", "a").is_empty());
        assert_eq!(names(&index.group("ns", "b")), ["a-1"]);
        // An index of whole objects holds no packed bytes.
        let whole = Index::<ConfigMap>::new("mlctl.io/model");
        whole.apply(&Event::Apply(a.clone()));
        assert_eq!(whole.packed_bytes(), 0);
        assert_eq!(whole.get("ns", "a-1").as_deref(), Some(&a));
    }

    #[test]
    fn a_relist_replaces_the_state_and_reports_what_vanished() {
        for packed in [false, true] {
            a_relist_reports_what_vanished(packed);
        }
    }

    fn a_relist_reports_what_vanished(packed: bool) {
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let seen = deleted.clone();
        let index = Index::<ConfigMap>::new("mlctl.io/model");
        let index = if packed { index.packed() } else { index };
        let index = index.on_delete(Arc::new(move |o| {
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
        assert_eq!(*deleted.lock().unwrap(), ["a-1", "a-2"], "packed: {packed}");
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
