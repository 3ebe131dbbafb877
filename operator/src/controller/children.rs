//! Writing the objects a model or pipeline owns: never taking over an object
//! that is not ours, and repairing hand edits of the fields we set.
//!
//! A child is applied when its rendered form changed (the applied-hash
//! annotation differs) — or when someone changed a field the operator sets
//! (`kubectl scale`, `kubectl set image`, an edited Service selector): the
//! hash cannot see that, so the observed object is compared with the rendered
//! one on exactly the fields the rendered one sets ([`drift`]). Defaults the
//! API server adds and fields other controllers own (an autoscaler's
//! `replicas`, a Service's `clusterIP`) are not compared, so a steady child
//! is never written.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, info, warn};

use k8s_openapi::jiff::Timestamp;

use super::{digest, owned_by};
use mlctl_crds::Conditions;

use crate::error::{Error, Result};
use crate::render::{FIELD_MANAGER, applied_hash, stamp_hash};
use crate::rollout::{Decision, Transition, set_condition};

/// What [`apply_child`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildWrite {
    /// The child is as rendered; nothing was written.
    Unchanged,
    /// Created, or updated to a new rendered form.
    Applied,
    /// A field the operator sets had been changed by someone else (the path
    /// of the first one found); written back.
    Repaired(String),
    /// An object with the child's name exists and is not owned by the
    /// parent: nothing was written. The message names it.
    Conflict(String),
}

/// The resourceVersion each child had right after the operator's own last
/// write or check, so that a child nobody touched since is not compared
/// again, and the applied hash of the operator's last write of it. An
/// optimisation only: a missing entry costs one comparison. Keys and values
/// are 64-bit digests (of kind/namespace/name, of the resourceVersion or
/// hash): two entries per child, at thousands of children, as strings were
/// 1.3 KB per model.
#[derive(Default)]
pub struct Checked(Mutex<HashMap<u64, u64>>, Mutex<HashMap<u64, u64>>);

/// Entries kept before the map is cleared (bounds memory at any scale; the
/// cost of clearing is one comparison per child).
const CHECKED_MAX: usize = 100_000;

impl Checked {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> u64 {
        digest((
            K::kind(&()),
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        ))
    }

    fn unchanged_since<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        let Some(rv) = obj.meta().resource_version.as_deref() else {
            return false;
        };
        self.0
            .lock()
            .map(|m| m.get(&Self::key(obj)) == Some(&digest(rv)))
            .unwrap_or(false)
    }

    fn remember<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let Some(rv) = obj.meta().resource_version.as_deref() else {
            return;
        };
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= CHECKED_MAX {
                m.clear();
            }
            m.insert(Self::key(obj), digest(rv));
        }
    }

    /// Records the applied hash of what the operator just wrote.
    fn wrote<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let Some(hash) = applied_hash(obj.meta()) else {
            return;
        };
        if let Ok(mut m) = self.1.lock() {
            if m.len() >= CHECKED_MAX {
                m.clear();
            }
            m.insert(Self::key(obj), digest(hash));
        }
    }

    /// Whether `observed` (from a watch's index) predates the operator's own
    /// last write of it: it carries another applied hash than the one last
    /// written. Deciding from it could skip a write that is needed (the
    /// index still shows the form before last, which may equal the desired
    /// one) — the caller reads the object afresh instead.
    pub fn is_behind<K: Resource<DynamicType = ()>>(&self, observed: &K) -> bool {
        let Ok(m) = self.1.lock() else {
            return false;
        };
        m.get(&Self::key(observed))
            .is_some_and(|written| applied_hash(observed.meta()).map(digest) != Some(*written))
    }

    /// Drops the entry of `obj` (deleted: its name may come back as a
    /// different object).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let key = Self::key(obj);
        if let Ok(mut m) = self.0.lock() {
            m.remove(&key);
        }
        if let Ok(mut m) = self.1.lock() {
            m.remove(&key);
        }
    }
}

/// The message of a name conflict with an object we do not own.
pub fn conflict_message<K: Resource<DynamicType = ()>>(obj: &K, owner: &str) -> String {
    format!(
        "{} {}/{} already exists and is not owned by {owner}: the operator never takes over an object it did not create; delete or rename it",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Applies `desired` (server-side, stamped with its hash) unless `observed`
/// — the object of that name as it exists, owned or not — already matches it.
/// `owner_uid` is the parent's UID; `owner` names it in a conflict message.
pub async fn apply_child<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<&K>,
    owner_uid: &str,
    owner: &str,
    checked: &Checked,
) -> Result<ChildWrite>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let stamped = stamp_hash(desired, |k| k.meta_mut());
    let mut repaired = None;
    // An index that has not yet delivered the operator's own last write of
    // this child: read it afresh (one GET, only then).
    let fresh;
    let observed = match observed {
        Some(o) if checked.is_behind(o) => {
            fresh = api
                .get_opt(&o.name_any())
                .await
                .map_err(|e| Error::child_write(&K::kind(&()), &o.name_any(), e))?;
            fresh.as_ref()
        }
        other => other,
    };
    if let Some(o) = observed {
        if !owned_by(o.meta(), owner_uid) {
            return Ok(ChildWrite::Conflict(conflict_message(o, owner)));
        }
        if applied_hash(o.meta()) == applied_hash(stamped.meta()) {
            if checked.unchanged_since(o) {
                return Ok(ChildWrite::Unchanged);
            }
            match drift(&to_value(&stamped), &to_value(o)) {
                None => {
                    checked.remember(o);
                    return Ok(ChildWrite::Unchanged);
                }
                Some(path) => repaired = Some(path),
            }
        }
    }
    let name = stamped.name_any();
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&stamped),
        )
        .await
        .map_err(|e| Error::child_write(&K::kind(&()), &name, e))?;
    checked.remember(&written);
    checked.wrote(&written);
    Ok(match repaired {
        Some(path) => {
            info!(kind = %K::kind(&()), %name, field = %path, "repaired a hand edit");
            ChildWrite::Repaired(format!("{} {name}: field {path}", K::kind(&())))
        }
        None => {
            debug!(kind = %K::kind(&()), %name, "applied");
            ChildWrite::Applied
        }
    })
}

/// Deletes `obj` in the background, only if it is still the object observed
/// (UID precondition): an object recreated under the same name by someone
/// else in the meantime is left alone. Already gone is fine.
pub async fn delete_child<K>(api: &Api<K>, obj: &K, checked: &Checked) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    checked.forget(obj);
    delete_observed(api, obj).await
}

/// [`delete_child`] for any kind (dynamic ones too), without the check cache.
pub async fn delete_observed<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            warn!(%name, "not deleted: the object was replaced since it was observed");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The outcome of one reconcile's child writes, folded into the status it
/// writes: condition `ChildConflict` (and Ready False) while an object the
/// operator needs exists and is not its own, and an Event for each conflict
/// (once per new message) and each repaired hand edit.
#[derive(Default)]
pub struct ChildLog {
    conflicts: Vec<String>,
    repaired: Vec<String>,
}

/// Condition type set while a child's name is taken by another object.
pub const CHILD_CONFLICT: &str = "ChildConflict";

/// How often a model in conflict with an object it does not own looks again.
pub const CONFLICT_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

impl ChildLog {
    /// Records one write's outcome; returns whether it wrote.
    pub fn note(&mut self, w: ChildWrite) -> bool {
        match w {
            ChildWrite::Unchanged => false,
            ChildWrite::Applied => true,
            ChildWrite::Repaired(path) => {
                self.repaired.push(path);
                true
            }
            ChildWrite::Conflict(message) => {
                self.conflicts.push(message);
                false
            }
        }
    }

    /// Records a conflict found outside [`apply_child`] (dynamic kinds).
    pub fn conflict(&mut self, message: String) {
        self.conflicts.push(message);
    }

    /// Folds the outcomes into a model's decision (its status and events).
    /// While a conflict lasts the model is looked at again every
    /// [`CONFLICT_RECHECK`] (±10%): the object in the way is not the
    /// operator's, so no watch says when it goes.
    pub fn report(self, decision: &mut Decision, generation: Option<i64>, now: Timestamp) {
        if !self.conflicts.is_empty() {
            let again = super::jittered(CONFLICT_RECHECK);
            decision.requeue_after = Some(decision.requeue_after.map_or(again, |r| r.min(again)));
        }
        let (conditions, events) = (&mut decision.status.conditions, &mut decision.events);
        self.report_into(conditions, events, Some("Ready"), generation, now);
    }

    /// Folds the outcomes into `conditions` (`ChildConflict`, and the
    /// condition `ready` names False while there is one) and `events`.
    pub fn report_into(
        self,
        conditions: &mut Conditions,
        events: &mut Vec<Transition>,
        ready: Option<&str>,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        if self.conflicts.is_empty() {
            conditions.0.retain(|c| c.type_ != CHILD_CONFLICT);
        } else {
            let message = self.conflicts.join("; ");
            let known = conditions
                .get(CHILD_CONFLICT)
                .is_some_and(|c| c.status == "True" && c.message == message);
            set_condition(
                conditions,
                CHILD_CONFLICT,
                "True",
                "NotOwned",
                &message,
                generation,
                now,
            );
            if let Some(ready) = ready {
                set_condition(
                    conditions,
                    ready,
                    "False",
                    CHILD_CONFLICT,
                    &message,
                    generation,
                    now,
                );
            }
            if !known {
                events.push(Transition {
                    warning: true,
                    reason: CHILD_CONFLICT,
                    message,
                });
            }
        }
        for what in self.repaired {
            events.push(Transition {
                warning: true,
                reason: "DriftRepaired",
                message: format!("{what} had been changed by hand; set back to what the spec renders (edit the RankingModel or FeaturePipeline instead)"),
            });
        }
    }
}

fn to_value<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// The first field (a path) whose value in `desired` the `observed` object
/// does not have; None when every field `desired` sets is as set. Maps may
/// have more keys in `observed` (defaults, other owners' fields); lists of
/// objects are matched by their key (`name`, a port, `mountPath`, `uid`) when
/// they have one, else by position; lists of scalars must be equal; strings
/// that are equal Kubernetes quantities (`0.5` and `500m`) are equal.
pub fn drift(desired: &Value, observed: &Value) -> Option<String> {
    walk(desired, observed, String::new())
}

fn walk(d: &Value, o: &Value, path: String) -> Option<String> {
    match (d, o) {
        (Value::Object(dm), Value::Object(om)) => {
            for (k, dv) in dm {
                if path.is_empty() && k == "status" {
                    continue;
                }
                if path == ".metadata" && (k == "managedFields" || k == "resourceVersion") {
                    continue;
                }
                let sub = format!("{path}.{k}");
                match om.get(k) {
                    Some(ov) => {
                        if let Some(p) = walk(dv, ov, sub) {
                            return Some(p);
                        }
                    }
                    None if is_empty(dv) => {}
                    None => return Some(sub),
                }
            }
            None
        }
        (Value::Array(da), Value::Array(oa)) => {
            if da.iter().all(|v| v.is_object()) {
                for (i, dv) in da.iter().enumerate() {
                    let (label, found) = match list_key(dv) {
                        Some(key) => (key.label(), oa.iter().find(|ov| key.matches(ov))),
                        None => (i.to_string(), oa.get(i)),
                    };
                    let sub = format!("{path}[{label}]");
                    match found {
                        Some(ov) => {
                            if let Some(p) = walk(dv, ov, sub) {
                                return Some(p);
                            }
                        }
                        None => return Some(sub),
                    }
                }
                None
            } else if da.len() == oa.len() && da.iter().zip(oa).all(|(a, b)| same_scalar(a, b)) {
                None
            } else {
                Some(path)
            }
        }
        (Value::Array(da), Value::Null) if da.is_empty() => None,
        (Value::Object(dm), Value::Null) if dm.is_empty() => None,
        _ if same_scalar(d, o) => None,
        _ => Some(path),
    }
}

/// Absent, empty, or a zero value: the API server omits fields with Go's
/// zero value (`omitempty`), so a rendered `0`, `false` or `""` is stored
/// as no field at all.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!((quantity(x), quantity(y)), (Some(p), Some(q)) if (p - q).abs() <= p.abs().max(q.abs()) * 1e-9)
        }
        _ => a == b,
    }
}

/// A Kubernetes quantity (`500m`, `1.5`, `2Gi`, `1e3`) as a number.
fn quantity(s: &str) -> Option<f64> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty()
        || !number.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
    {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    Some(n * scale)
}

/// How items of a list of objects are identified, as the API server's
/// strategic merge keys them.
enum ListKey<'a> {
    Fields(Vec<(&'static str, &'a Value)>),
}

impl ListKey<'_> {
    fn matches(&self, o: &Value) -> bool {
        let ListKey::Fields(fields) = self;
        fields.iter().all(|(k, v)| match o.get(*k) {
            Some(ov) => same_scalar(v, ov),
            // `protocol` defaults to TCP.
            None => *k == "protocol" && v.as_str() == Some("TCP"),
        })
    }

    fn label(&self) -> String {
        let ListKey::Fields(fields) = self;
        fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn list_key(item: &Value) -> Option<ListKey<'_>> {
    for keys in [
        &["name"][..],
        &["containerPort", "protocol"][..],
        &["port", "protocol"][..],
        &["mountPath"][..],
        &["uid"][..],
        &["devicePath"][..],
        &["ip"][..],
    ] {
        let primary = keys[0];
        if let Some(v) = item.get(primary) {
            let mut fields = vec![(primary, v)];
            for k in &keys[1..] {
                if let Some(v) = item.get(*k) {
                    fields.push((*k, v));
                }
            }
            return Some(ListKey::Fields(fields));
        }
    }
    None
}

#[cfg(test)]
#[path = "children_tests.rs"]
mod tests;
