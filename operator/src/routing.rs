//! Traffic routers: set the canary's weight on an object another tool owns
//! (a Gateway API HTTPRoute, an Istio VirtualService, usually synced from Git
//! by Argo CD). The operator owns only the weights of the model's two
//! backends; every other field stays the user's.
//!
//! Why a JSON Patch and not server-side apply: HTTPRoute `spec.rules` and each
//! rule's `backendRefs` are `x-kubernetes-list-type: atomic` (Gateway API
//! v1.x), and Istio's `http` / `route` lists have no list type, which for a
//! CRD means atomic too. Server-side apply cannot own one field inside an
//! atomic list: an apply would have to send, and would take ownership of, the
//! whole rule list. So [`weight_patch`] builds an RFC 6902 patch that `test`s
//! each rule it touches (exactly as read) and then `add`s only the `weight`
//! fields (plus the canary backend when the rule lacks one). A rule edited in
//! between fails the `test` and the patch is rebuilt from a fresh read; edits
//! anywhere else (other rules, status written by the gateway controller)
//! don't conflict. See docs/rollouts.md for the Argo CD side.
//!
//! A `setHeaderRoute` step adds one more rule, the operator's own, named
//! `mlctl-<model>-header` ([`header`]); it is written the same way.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use mlctl_crds::rankingmodel::{HeaderMatch, TrafficRouting};
use serde_json::{Value, json};

use crate::render::FIELD_MANAGER;

mod header;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_argocd;
#[cfg(test)]
mod tests_header;

pub use header::{HeaderPatch, header_patch, header_rule_name};

/// How often [`apply`] rebuilds its patch after a concurrent edit of a rule
/// it touches before giving up (the reconcile is then retried with back-off).
const PATCH_ATTEMPTS: usize = 3;

/// Why a route could not be updated; the message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The object does not exist.
    #[error("{kind} {namespace}/{name} not found: create it, or fix spec.rollout.trafficRouting")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The object has no route to the stable Service.
    #[error("{0}")]
    Shape(String),
    /// The rules kept changing under the patch.
    #[error(
        "{kind} {name}: the rules that route to the model changed during each of {PATCH_ATTEMPTS} attempts to set the weights; retrying"
    )]
    Contended {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The patch did not serialize (a bug).
    #[error("building the JSON patch: {0}")]
    Serialize(#[source] serde_json::Error),
}

/// One rule (Gateway API) or HTTP route (Istio) that sends traffic to the
/// model's stable Service: where it is and which of its backends are the
/// model's.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// JSON pointer of the rule from the object's root (`/spec/rules/0`).
    pub rule: String,
    /// The rule as read: the patch's `test` value.
    pub rule_value: Value,
    /// The key of the backend list inside the rule (`backendRefs`, `route`).
    pub backends: &'static str,
    /// Indices of the stable backends in that list.
    pub stable: Vec<usize>,
    /// Indices of the canary backends in that list.
    pub canary: Vec<usize>,
    /// The canary backend to append when the rule has none (without weight).
    pub new_canary: Value,
}

/// A traffic router: where the weights live.
pub trait TrafficRouter: Send + Sync {
    /// Kind, for messages.
    fn kind(&self) -> &'static str;
    /// The object's API group, version and kind.
    fn gvk(&self) -> GroupVersionKind;
    /// Plural resource name.
    fn plural(&self) -> &'static str;
    /// The object's name.
    fn name(&self) -> &str;
    /// The rules of `object` (the whole object as JSON) that route to the
    /// `stable` Service. An error when there are none.
    fn splits(&self, object: &Value, stable: &str, canary: &str) -> Result<Vec<Split>, RouteError>;
    /// The key of the rule list under `spec` (`rules`, `http`).
    fn rules_key(&self) -> &'static str;
    /// The header rule named `name`: the matches of the `splits` (never
    /// empty) with `headers` added, to the canary backend alone.
    fn header_rule(&self, splits: &[Split], name: &str, headers: &[HeaderMatch]) -> Value;
    /// Whether the header rule must come before the rules it narrows (the
    /// first matching rule wins) rather than anywhere (the most specific
    /// match wins).
    fn header_rule_first(&self) -> bool;
}

/// The router configured for a model, if any.
pub fn router_for(routing: Option<&TrafficRouting>) -> Option<Box<dyn TrafficRouter>> {
    let routing = routing?;
    if let Some(g) = &routing.gateway_api {
        return Some(Box::new(GatewayApi {
            route: g.http_route.clone(),
        }));
    }
    if let Some(i) = &routing.istio {
        return Some(Box::new(Istio {
            name: i.virtual_service.name.clone(),
            routes: i.virtual_service.routes.clone(),
        }));
    }
    None
}

/// The JSON Patch (RFC 6902 operations) that gives `canary_weight` percent to
/// the canary backends and the rest to the stable ones in every split of
/// `object`; empty when the weights are already right. Per changed rule: a
/// `test` of the whole rule as read, then `add` of each `weight` that differs
/// and of the canary backend when the rule has none. Nothing else is written.
pub fn weight_patch(
    router: &dyn TrafficRouter,
    object: &Value,
    stable: &str,
    canary: &str,
    canary_weight: i32,
) -> Result<Vec<Value>, RouteError> {
    let mut ops = Vec::new();
    for split in router.splits(object, stable, canary)? {
        let list = split
            .rule_value
            .get(split.backends)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut rule_ops = Vec::new();
        let wanted = |i: usize| {
            if split.stable.contains(&i) {
                Some(100 - canary_weight)
            } else if split.canary.contains(&i) {
                Some(canary_weight)
            } else {
                None
            }
        };
        for (i, backend) in list.iter().enumerate() {
            let Some(weight) = wanted(i) else { continue };
            if backend.get("weight").and_then(Value::as_i64) != Some(i64::from(weight)) {
                rule_ops.push(json!({
                    "op": "add",
                    "path": format!("{}/{}/{i}/weight", split.rule, split.backends),
                    "value": weight,
                }));
            }
        }
        if split.canary.is_empty() {
            let mut backend = split.new_canary.clone();
            if let Some(fields) = backend.as_object_mut() {
                fields.insert("weight".into(), json!(canary_weight));
            }
            rule_ops.push(json!({
                "op": "add",
                "path": format!("{}/{}/-", split.rule, split.backends),
                "value": backend,
            }));
        }
        if !rule_ops.is_empty() {
            ops.push(json!({"op": "test", "path": split.rule, "value": split.rule_value}));
            ops.extend(rule_ops);
        }
    }
    Ok(ops)
}

/// The splits among the rules `object.spec.<list>` (`layout`: the rule
/// list and, in a rule, its backend list): every `selected` rule with a
/// stable backend. `retarget` turns a copy of the first stable backend into
/// the canary one to append when the rule has none. `None` without a rule
/// list.
fn find_splits(
    object: &Value,
    (list, backends): (&'static str, &'static str),
    selected: impl Fn(&Value) -> bool,
    is_stable: impl Fn(&Value) -> bool,
    is_canary: impl Fn(&Value) -> bool,
    retarget: impl Fn(&mut Value),
) -> Option<Vec<Split>> {
    let rules = object.get("spec")?.get(list)?.as_array()?;
    let mut splits = Vec::new();
    for (i, rule) in rules.iter().enumerate().filter(|(_, r)| selected(r)) {
        let entries = rule
            .get(backends)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let stable = indices(entries, &is_stable);
        let Some(&first) = stable.first() else {
            continue;
        };
        let mut new_canary = entries[first].clone();
        retarget(&mut new_canary);
        if let Some(fields) = new_canary.as_object_mut() {
            fields.remove("weight");
        }
        splits.push(Split {
            rule: format!("/spec/{list}/{i}"),
            rule_value: rule.clone(),
            backends,
            canary: indices(entries, &is_canary),
            stable,
            new_canary,
        });
    }
    Some(splits)
}

/// Indices of the entries of `list` (a rule's backends) matching `is`.
fn indices(list: &[Value], is: impl Fn(&Value) -> bool) -> Vec<usize> {
    list.iter()
        .enumerate()
        .filter(|(_, b)| is(b))
        .map(|(i, _)| i)
        .collect()
}

/// Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`): every rule
/// with a backendRef to `<model>-stable` gets a `<model>-canary` backendRef
/// next to it, with the weights. Rules without a stable backendRef (another
/// service, or a rule that reaches only the canary, e.g. by a header match)
/// are not the operator's.
pub struct GatewayApi {
    /// HTTPRoute name.
    pub route: String,
}

impl TrafficRouter for GatewayApi {
    fn kind(&self) -> &'static str {
        "HTTPRoute"
    }
    fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute")
    }
    fn plural(&self) -> &'static str {
        "httproutes"
    }
    fn name(&self) -> &str {
        &self.route
    }
    fn splits(&self, object: &Value, stable: &str, canary: &str) -> Result<Vec<Split>, RouteError> {
        // A backendRef names a core Service unless it says otherwise.
        let is_service = |r: &Value, name: &str| {
            r.get("name").and_then(Value::as_str) == Some(name)
                && r.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service"
                && r.get("group")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
        };
        let splits = find_splits(
            object,
            ("rules", "backendRefs"),
            |_| true,
            |r| is_service(r, stable),
            |r| is_service(r, canary),
            // The canary backendRef copies the stable one (port, namespace,
            // filters) except its name.
            |r| {
                if let Some(fields) = r.as_object_mut() {
                    fields.insert("name".into(), json!(canary));
                }
            },
        )
        .ok_or_else(|| RouteError::Shape(format!("HTTPRoute {} has no spec.rules", self.route)))?;
        if splits.is_empty() {
            return Err(RouteError::Shape(format!(
                "HTTPRoute {} has no backendRef to Service {stable}: add one (port 80) to the rule that serves the model",
                self.route
            )));
        }
        Ok(splits)
    }
    fn rules_key(&self) -> &'static str {
        "rules"
    }
    /// Each match of each stable rule (a rule without matches matches
    /// `PathPrefix /`) with the header conditions appended: a header it
    /// already tests keeps the user's condition (the Gateway API considers
    /// only the first entry of a name). The rule's other fields (filters,
    /// timeouts) are the first stable rule's; its one backendRef is that
    /// rule's canary backendRef.
    fn header_rule(&self, splits: &[Split], name: &str, headers: &[HeaderMatch]) -> Value {
        let conditions: Vec<Value> = headers
            .iter()
            .map(|h| {
                let (exact, value) = header::condition(h);
                let kind = if exact { "Exact" } else { "RegularExpression" };
                json!({"type": kind, "name": h.name, "value": value})
            })
            .collect();
        let all = json!({"path": {"type": "PathPrefix", "value": "/"}});
        let matches = header::narrowed_matches(splits, ("matches", all), |m| {
            let mut tested: Vec<Value> = m
                .get("headers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in &conditions {
                let same_name = |t: &Value| {
                    t["name"]
                        .as_str()
                        .zip(c["name"].as_str())
                        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
                };
                if !tested.iter().any(same_name) {
                    tested.push(c.clone());
                }
            }
            m.insert("headers".into(), Value::Array(tested));
        });
        header::header_rule_from(splits, name, ("matches", matches), "backendRefs")
    }
    fn header_rule_first(&self) -> bool {
        false
    }
}

/// Istio `VirtualService` (`networking.istio.io/v1`): in the named HTTP
/// routes (all when none are named), the destinations `<model>-stable` and
/// `<model>-canary` get the weights.
pub struct Istio {
    /// VirtualService name.
    pub name: String,
    /// HTTP route names to update (all when empty).
    pub routes: Vec<String>,
}

impl TrafficRouter for Istio {
    fn kind(&self) -> &'static str {
        "VirtualService"
    }
    fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService")
    }
    fn plural(&self) -> &'static str {
        "virtualservices"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn splits(&self, object: &Value, stable: &str, canary: &str) -> Result<Vec<Split>, RouteError> {
        // `r-stable`, or a qualified `r-stable.ns.svc.cluster.local`.
        let host_is = |d: &Value, svc: &str| {
            d.pointer("/destination/host")
                .and_then(Value::as_str)
                .is_some_and(|h| h == svc || h.starts_with(&format!("{svc}.")))
        };
        let named = |route: &Value| {
            let name = route.get("name").and_then(Value::as_str).unwrap_or("");
            self.routes.is_empty() || self.routes.iter().any(|r| r == name)
        };
        let splits = find_splits(
            object,
            ("http", "route"),
            named,
            |d| host_is(d, stable),
            |d| host_is(d, canary),
            // The canary destination copies the stable one (port, subset,
            // headers) with the host's Service name swapped.
            |d| {
                let host = d
                    .pointer("/destination/host")
                    .and_then(Value::as_str)
                    .unwrap_or(stable)
                    .replacen(stable, canary, 1);
                if let Some(dest) = d.get_mut("destination").and_then(Value::as_object_mut) {
                    dest.insert("host".into(), json!(host));
                }
            },
        )
        .ok_or_else(|| {
            RouteError::Shape(format!("VirtualService {} has no spec.http", self.name))
        })?;
        if splits.is_empty() {
            return Err(RouteError::Shape(format!(
                "VirtualService {} has no HTTP route with destination host {stable}: add one",
                self.name
            )));
        }
        Ok(splits)
    }
    fn rules_key(&self) -> &'static str {
        "http"
    }
    /// Each match of each stable route (one empty match when it has none)
    /// with the header conditions set (Istio wants lower-case header names),
    /// to the canary destination alone; the other fields (retries, timeout)
    /// are the first stable route's. It goes first: Istio takes the first
    /// route that matches.
    fn header_rule(&self, splits: &[Split], name: &str, headers: &[HeaderMatch]) -> Value {
        let matches = header::narrowed_matches(splits, ("match", json!({})), |m| {
            let tested = m.entry("headers").or_insert_with(|| json!({}));
            if let Some(tested) = tested.as_object_mut() {
                for h in headers {
                    let (exact, value) = header::condition(h);
                    let how = if exact { "exact" } else { "regex" };
                    tested.insert(h.name.to_ascii_lowercase(), json!({how: value}));
                }
            }
        });
        header::header_rule_from(splits, name, ("match", matches), "route")
    }
    fn header_rule_first(&self) -> bool {
        true
    }
}

/// Whether the API server rejected a JSON Patch because a `test` failed
/// (422 with the json-patch library's "testing value … failed" / "test
/// operation does not apply"): a rule changed since it was read.
fn is_failed_test(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("test"))
}

/// Sets `model`'s weights on the router's object, then its header route
/// (`header`: the conditions in force; None removes it). Returns whether it
/// wrote.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    router: &dyn TrafficRouter,
    model: &str,
    canary_weight: i32,
    header: Option<&[HeaderMatch]>,
) -> Result<bool, RouteError> {
    let (stable, canary) = (format!("{model}-stable"), format!("{model}-canary"));
    let resource = ApiResource::from_gvk_with_plural(&router.gvk(), router.plural());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    // The patch is recorded under the operator's field manager, so
    // managedFields say who moved the weights.
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let send = |ops: Vec<Value>, dry_run: bool| {
        let api = api.clone();
        let params = PatchParams {
            dry_run,
            ..params.clone()
        };
        async move {
            let patch = serde_json::from_value(Value::Array(ops)).map_err(RouteError::Serialize)?;
            let object = api
                .patch(router.name(), &params, &Patch::Json::<()>(patch))
                .await?;
            serde_json::to_value(&object).map_err(RouteError::Serialize)
        }
    };
    let mut wrote = false;
    for _ in 0..PATCH_ATTEMPTS {
        let Some(object) = api.get_opt(router.name()).await? else {
            return Err(RouteError::NotFound {
                kind: router.kind(),
                namespace: namespace.to_string(),
                name: router.name().to_string(),
            });
        };
        let mut object = serde_json::to_value(&object).map_err(RouteError::Serialize)?;
        // The weights first and on their own: a header rule the API server
        // refuses must never hold back the weights (an abort drops them to
        // 0 at once).
        let ops = weight_patch(router, &object, &stable, &canary, canary_weight)?;
        if !ops.is_empty() {
            match send(ops, false).await {
                Ok(patched) => {
                    object = patched;
                    wrote = true;
                }
                Err(RouteError::Kube(e)) if is_failed_test(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        let HeaderPatch { ops, inserts } = header_patch(router, &object, model, header)?;
        if ops.is_empty() {
            return Ok(wrote);
        }
        // A CRD that does not know rule names (HTTPRoute before Gateway API
        // v1.4's standard channel) would drop the name silently, and the
        // operator would add a rule it can never find again at every
        // reconcile: try first.
        if inserts {
            match send(ops.clone(), true).await {
                Ok(tried) if !header::has_header_rule(router, &tried, model) => {
                    return Err(RouteError::Shape(format!(
                        "{} {}: the API server dropped the name of the header route's rule ({}): the installed {} CRD is too old to name rules (Gateway API: v1.4 or later; v1.2 or later in the experimental channel); upgrade it, or remove the setHeaderRoute steps",
                        router.kind(),
                        router.name(),
                        header_rule_name(model),
                        router.kind()
                    )));
                }
                Ok(_) => {}
                Err(RouteError::Kube(e)) if is_failed_test(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        match send(ops, false).await {
            Ok(_) => return Ok(true),
            Err(RouteError::Kube(e)) if is_failed_test(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(RouteError::Contended {
        kind: router.kind(),
        name: router.name().to_string(),
    })
}
