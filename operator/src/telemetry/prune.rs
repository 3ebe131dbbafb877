//! Series labelled with one object's namespace and name end with the object.
//! Without this, a deleted FeaturePipeline kept exporting its freshness lag,
//! growing forever (and alerting), and its run counters stayed until restart.
//!
//! A metadata-only watch of the kind sees deletions; no finalizer is needed,
//! as nothing outside this process must be cleaned up. [`Deletions`] is the
//! pure part: which objects lost their series after a watch event, including
//! after a re-list, which catches deletions the watch missed while it was down.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use mlctl_crds::FeaturePipeline;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::{Metrics, ObjectKey};

/// Follows one watch (one namespace, or all) and says which objects are gone.
#[derive(Debug, Default)]
pub struct Deletions {
    /// The watched namespace; `None` for all.
    scope: Option<String>,
    /// Objects listed since the last `Init` of a (re-)list.
    listed: BTreeSet<ObjectKey>,
}

impl Deletions {
    /// For a watch of `scope` (a namespace, or all when `None`).
    pub fn new(scope: Option<&str>) -> Self {
        Deletions {
            scope: scope.map(str::to_string),
            listed: BTreeSet::new(),
        }
    }

    /// The objects whose series must go after `event`: a deleted object; at
    /// the end of a (re-)list, every object of the watched scope among
    /// `known` (those with series) that the list did not have.
    pub fn on_event<K: Resource>(
        &mut self,
        event: Event<K>,
        known: impl FnOnce() -> Vec<ObjectKey>,
    ) -> Vec<ObjectKey> {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Delete(o) => vec![key(&o)],
            Event::Apply(_) => Vec::new(),
            Event::Init => {
                self.listed.clear();
                Vec::new()
            }
            Event::InitApply(o) => {
                self.listed.insert(key(&o));
                Vec::new()
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.listed);
                known()
                    .into_iter()
                    .filter(|(ns, _)| self.scope.as_ref().is_none_or(|s| s == ns))
                    .filter(|k| !listed.contains(k))
                    .collect()
            }
        }
    }
}

/// Watches the metadata of kind `K` in `api`'s scope (metadata only: the
/// objects' specs are neither fetched nor deserialized) until the task is
/// dropped, calling `forget(namespace, name)` for each deleted object that
/// `known` lists (or that a deletion event names).
pub async fn prune_deleted<K>(
    api: Api<PartialObjectMeta<K>>,
    scope: Option<String>,
    known: impl Fn() -> Vec<ObjectKey>,
    forget: impl Fn(&str, &str),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut deletions = Deletions::new(scope.as_deref());
    let mut events =
        std::pin::pin!(watcher(api, crate::controller::index::list_config()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                for (namespace, name) in deletions.on_event(event, &known) {
                    debug!(%namespace, %name, "dropping the metric series of a deleted object");
                    forget(&namespace, &name);
                }
            }
            // The backoff retries; the re-list that follows catches up.
            Err(e) => warn!(error = %e, "watch for deleted objects failed"),
        }
    }
}

/// Drops the series of FeaturePipelines deleted in `scope` (a namespace, or
/// all when `None`); runs until dropped. The FeaturePipeline controller
/// spawns it next to itself.
pub async fn prune_deleted_pipelines(
    client: kube::Client,
    scope: Option<String>,
    metrics: Arc<Metrics>,
) {
    let api: Api<PartialObjectMeta<FeaturePipeline>> = match &scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    prune_deleted(
        api,
        scope,
        || metrics.known_pipelines(),
        |ns, name| metrics.forget_pipeline(ns, name),
    )
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kube::api::ObjectMeta;

    use crate::pipeline::FreshnessReference;

    use super::*;

    fn meta(ns: &str, name: &str) -> PartialObjectMeta<FeaturePipeline> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    /// An event of the metadata watch.
    type Meta = Event<PartialObjectMeta<FeaturePipeline>>;

    fn key(ns: &str, name: &str) -> ObjectKey {
        (ns.to_string(), name.to_string())
    }

    /// Two pipelines with series; one is deleted: its lag and run counters
    /// leave /metrics, the other's stay.
    #[test]
    fn a_deleted_pipeline_leaves_metrics() {
        let m = Metrics::new();
        for name in ["ctr", "views"] {
            m.pipeline_run("ml", name, "succeeded");
            m.pipeline_run("ml", name, "failed");
            m.set_pipeline_freshness("ml", name, Some(FreshnessReference::Current));
        }
        let mut d = Deletions::new(None);
        let gone = d.on_event(Event::Delete(meta("ml", "ctr")), || m.known_pipelines());
        for (ns, name) in &gone {
            m.forget_pipeline(ns, name);
        }
        let text = m.encode();
        assert!(!text.contains(r#"pipeline="ctr""#), "{text}");
        for family in [
            "mlctl_pipeline_freshness_lag_seconds{",
            "mlctl_pipeline_runs_total{",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains(r#"pipeline="views""#)),
                "{family} of views is missing in\n{text}"
            );
        }
        assert_eq!(m.known_pipelines(), vec![key("ml", "views")]);
    }

    /// Deleted while the watch was down: the re-list no longer has it.
    /// Pipelines of other namespaces (watched by another scope) stay.
    #[test]
    fn a_relist_forgets_what_it_no_longer_lists_in_its_scope() {
        let mut d = Deletions::new(Some("ml"));
        let known = || vec![key("ml", "ctr"), key("ml", "views"), key("ads", "bids")];
        assert!(d.on_event(Meta::Init, known).is_empty());
        assert!(
            d.on_event(Event::InitApply(meta("ml", "views")), known)
                .is_empty()
        );
        assert_eq!(d.on_event(Meta::InitDone, known), vec![key("ml", "ctr")]);
        // An update is not a deletion; a second re-list starts afresh.
        assert!(
            d.on_event(Event::Apply(meta("ml", "views")), known)
                .is_empty()
        );
        d.on_event(Meta::Init, known);
        assert_eq!(
            d.on_event(Meta::InitDone, known),
            vec![key("ml", "ctr"), key("ml", "views")]
        );
        let mut all = Deletions::new(None);
        all.on_event(Meta::Init, known);
        assert_eq!(all.on_event(Meta::InitDone, known).len(), 3);
    }
}
