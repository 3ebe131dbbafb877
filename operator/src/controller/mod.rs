//! Controllers, one per kind.

mod backoff;
pub mod children;
pub mod events;
pub mod featurepipeline;
pub mod index;
pub mod owned;
pub mod pipeline_owned;
pub mod rankingmodel;
pub mod spark;
pub mod stored;

pub use backoff::{Backoff, backoff_ceiling, jittered};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType};

pub use events::Recorder;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::error::Result;
use crate::render::{FIELD_MANAGER, applied_hash, stamp_hash};
use crate::rollout::Transition;

/// The clock, truncated to seconds (status times have second precision).
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// A 64-bit digest of `value`, the same for the same value for the life of
/// the process (fixed keys): for in-memory maps that compare values they
/// need not keep.
pub fn digest(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// Whether `uid` is the controlling owner of the object.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Applies `desired` (stamped with its hash) unless the observed object
/// already carries that hash. Returns whether it wrote.
pub async fn apply_if_changed<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<&ObjectMeta>,
    meta: impl FnOnce(&mut K) -> &mut ObjectMeta,
) -> Result<bool>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let stamped = stamp_hash(desired, meta);
    let want = applied_hash(stamped.meta()).map(str::to_string);
    if observed.is_some_and(|o| applied_hash(o).map(str::to_string) == want) {
        return Ok(false);
    }
    let name = stamped.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&stamped),
    )
    .await
    .map_err(|e| crate::error::Error::child_write("object", &name, e))?;
    debug!(%name, "applied");
    Ok(true)
}

/// How often an object with nothing pending is reconciled anyway: a safety
/// net under the watches (a missed event, a child kind a watch cannot see),
/// never the way changes are noticed.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(600);

/// [`RESYNC`] spread by ±10% by the object's UID, so that the objects
/// created together (an apply of a thousand models) are not reconciled
/// together every ten minutes.
pub fn resync_after(uid: &str) -> std::time::Duration {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uid.as_bytes());
    let unit = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    RESYNC.mul_f64(0.9 + 0.2 * unit)
}

/// Publishes one transition as an Event: queued, never waited for (see
/// [`events`]). Events are best effort: losing one must not fail the
/// reconcile. (Async for its callers' sake: it awaits nothing.)
#[allow(clippy::unused_async)]
pub async fn publish(recorder: &Recorder, reference: &ObjectReference, t: &Transition) {
    let event = Event {
        type_: if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: t.reason.to_string(),
        note: Some(t.message.chars().take(1000).collect()),
        // Kubernetes folds Events with the same (reason, action) into one
        // series that keeps the first note; a per-note action keeps every
        // distinct transition (each step, each rollout, each run) visible
        // while identical repeats still fold.
        action: event_action(&t.message),
        secondary: None,
    };
    recorder.publish(event, reference.clone());
}

fn event_action(message: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("Reconcile-{hex}")
}

/// For an object of kind `K` that does not deserialize: a reference to it
/// (from the metadata that did) and the Warning to publish on it.
pub fn invalid_object<K>(invalid: &InvalidObject) -> (ObjectReference, Transition)
where
    K: Resource<DynamicType = ()>,
{
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let transition = Transition {
        warning: true,
        reason: "InvalidObject",
        message: format!("the operator cannot read this object: {}", invalid.error),
    };
    (reference, transition)
}
/// Writes `status` of the object `name` (server-side apply, the operator's
/// field manager) only if the object is still at `resource_version`, the
/// version the decision was made from: a reconcile that started from a
/// stale cached copy (the watch lags behind our own last write) gets a 409
/// Conflict instead of overwriting newer status — no step is recorded twice.
pub async fn write_status<K, S>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    resource_version: Option<&str>,
    status: &S,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    write_status_version(api, name, kind, resource_version, status)
        .await
        .map(|_| ())
}

/// [`write_status`], returning the resourceVersion the write produced.
pub async fn write_status_version<K, S>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    resource_version: Option<&str>,
    status: &S,
) -> Result<Option<String>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.into();
    }
    let patch = serde_json::json!({
        "apiVersion": mlctl_crds::API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.meta().resource_version.clone())
}
