//! Waiting on watches with a deadline — never a fixed sleep. On timeout the
//! panic message shows the last state seen, which is usually the diagnosis.

use std::{fmt::Debug, pin::pin, time::Duration};

use futures::TryStreamExt;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt, reflector,
        wait::Condition,
        watcher::{self, Event, watch_object, watcher},
    },
};
use serde::{Serialize, de::DeserializeOwned};

/// Waits until the object `name` satisfies `condition` (any
/// `Fn(Option<&K>) -> bool`, e.g. `kube::runtime::wait::conditions::is_job_completed()`)
/// and returns it. Panics after `timeout`, showing the object as last seen.
/// For waiting until an object is gone use [`wait_for_deletion`].
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    condition: impl Condition<K>,
    timeout: Duration,
) -> K
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
    K::DynamicType: Default,
{
    let found = watch_until(api, name, timeout, |object| {
        condition.matches_object(object)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "the condition matched a missing {} {name}; use wait_for_deletion",
            kind::<K>()
        )
    })
}

/// Waits until the object `name` does not exist (any more).
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
    K::DynamicType: Default,
{
    watch_until(api, name, timeout, |object| object.is_none()).await;
}

async fn watch_until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
    K::DynamicType: Default,
{
    let mut stream = pin!(watch_object(api.clone(), name).default_backoff());
    let mut last_seen: Option<Option<K>> = None;
    let mut last_error = None;
    let deadline = tokio::time::sleep(timeout);
    let mut deadline = pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => panic!(
                "timed out after {timeout:?} waiting for {} {name}; last seen: {}{}",
                kind::<K>(),
                match &last_seen {
                    None => "nothing yet".to_owned(),
                    Some(None) => "(absent)".to_owned(),
                    Some(Some(object)) => format!("\n{}", to_yaml(object)),
                },
                last_error.map(|e| format!("\nlast watch error: {e}")).unwrap_or_default(),
            ),
            item = stream.try_next() => match item {
                Ok(Some(object)) => {
                    if done(object.as_ref()) {
                        return object;
                    }
                    last_seen = Some(object);
                }
                Ok(None) => panic!("the watch of {} {name} ended", kind::<K>()),
                // Transient (the backoff retries); reported if the wait times out.
                Err(e) => last_error = Some(e),
            },
        }
    }
}

/// Waits until the set of objects selected by `config` (e.g.
/// `watcher::Config::default().labels("app=web")`) satisfies `predicate`, and
/// returns that set sorted by name. Panics after `timeout`, listing what it saw.
pub async fn wait_for_list<K>(
    api: &Api<K>,
    config: watcher::Config,
    predicate: impl Fn(&[K]) -> bool,
    timeout: Duration,
) -> Vec<K>
where
    K: Clone + Debug + Send + Sync + DeserializeOwned + Serialize + Resource + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let mut stream = pin!(
        watcher(api.clone(), config)
            .default_backoff()
            .reflect(writer)
    );
    let snapshot = || {
        let mut objects: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
        objects.sort_by_key(|o| o.name_any());
        objects
    };
    let mut last_error = None;
    let mut listed = false;
    let deadline = tokio::time::sleep(timeout);
    let mut deadline = pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => {
                let seen = snapshot();
                panic!(
                    "timed out after {timeout:?} waiting for a list of {} to satisfy the predicate; {} seen{}:\n{}{}",
                    kind::<K>(),
                    seen.len(),
                    if listed { "" } else { " (initial list not complete)" },
                    seen.iter().map(to_yaml).collect::<Vec<_>>().join("---\n"),
                    last_error.map(|e| format!("\nlast watch error: {e}")).unwrap_or_default(),
                )
            }
            event = stream.try_next() => match event {
                Ok(Some(Event::Init | Event::InitApply(_))) => {}
                Ok(Some(Event::InitDone | Event::Apply(_) | Event::Delete(_))) => {
                    listed = true;
                    let objects = snapshot();
                    if predicate(&objects) {
                        return objects;
                    }
                }
                Ok(None) => panic!("the watch of {} ended", kind::<K>()),
                Err(e) => last_error = Some(e),
            },
        }
    }
}

fn kind<K: Resource>() -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

/// An object as YAML without the managed fields noise, for failure messages.
fn to_yaml<K: Serialize>(object: &K) -> String {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        metadata.remove("managedFields");
    }
    serde_yaml_ng::to_string(&value).unwrap_or_else(|e| format!("<unprintable: {e}>"))
}

/// A predicate for [`wait_for`]: the RankingModel is in `phase` for its
/// current generation (the operator has seen the latest spec).
pub fn phase_is(
    phase: mlctl_crds::rankingmodel::Phase,
) -> impl Fn(Option<&mlctl_crds::RankingModel>) -> bool {
    move |m: Option<&mlctl_crds::RankingModel>| {
        m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
            s.phase == Some(phase) && s.observed_generation == m.and_then(|m| m.metadata.generation)
        })
    }
}
