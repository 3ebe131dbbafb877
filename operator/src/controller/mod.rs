//! Controllers, one per kind.

pub mod featurepipeline;
pub mod rankingmodel;

use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::render::FIELD_MANAGER;

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
    K: Clone + DeserializeOwned + std::fmt::Debug,
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
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
