//! Traffic routers: set the canary's weight on an object another tool owns
//! (a Gateway API HTTPRoute, an Istio VirtualService). Each router is a pure
//! transformation of that object's JSON behind one trait; [`apply`] reads
//! the object, transforms it and writes back only the changed list with an
//! optimistic-concurrency merge patch, so fields owned by others (Argo CD,
//! Helm) are left alone.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use mlctl_crds::rankingmodel::TrafficRouting;
use serde_json::{Value, json};

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
    /// The API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// A traffic router: where the weights live and how to set them.
pub trait TrafficRouter: Send + Sync {
    /// Kind, for messages.
    fn kind(&self) -> &'static str;
    /// The object's API group, version and kind.
    fn gvk(&self) -> GroupVersionKind;
    /// Plural resource name.
    fn plural(&self) -> &'static str;
    /// The object's name.
    fn name(&self) -> &str;
    /// The top-level `spec` field holding the routes (written back whole).
    fn routes_field(&self) -> &'static str;
    /// Sets `canary_weight` percent on the canary backend and the rest on the
    /// stable one, in `spec` (the object's spec). Returns whether it changed.
    fn set_weights(
        &self,
        spec: &mut Value,
        stable: &str,
        canary: &str,
        canary_weight: i32,
    ) -> Result<bool, RouteError>;
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

/// In one list of backends: adds a canary backend (made from the stable
/// one) when missing and sets both weights. None when the list has no
/// stable backend; otherwise whether anything changed.
fn split(
    backends: &mut Vec<Value>,
    is_stable: impl Fn(&Value) -> bool,
    is_canary: impl Fn(&Value) -> bool,
    make_canary: impl FnOnce(&Value) -> Value,
    canary_weight: i32,
) -> Option<bool> {
    let stable = backends.iter().find(|b| is_stable(b))?.clone();
    let mut changed = false;
    if !backends.iter().any(&is_canary) {
        backends.push(make_canary(&stable));
        changed = true;
    }
    for b in backends.iter_mut() {
        if is_stable(b) {
            changed |= set_weight(b, 100 - canary_weight);
        } else if is_canary(b) {
            changed |= set_weight(b, canary_weight);
        }
    }
    Some(changed)
}

fn set_weight(entry: &mut Value, weight: i32) -> bool {
    if entry.get("weight").and_then(Value::as_i64) == Some(i64::from(weight)) {
        return false;
    }
    if let Some(obj) = entry.as_object_mut() {
        obj.insert("weight".into(), json!(weight));
    }
    true
}

/// Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`): every rule
/// with a backendRef to `<model>-stable` gets a `<model>-canary` backendRef
/// next to it, with the weights.
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
    fn routes_field(&self) -> &'static str {
        "rules"
    }
    fn set_weights(
        &self,
        spec: &mut Value,
        stable: &str,
        canary: &str,
        canary_weight: i32,
    ) -> Result<bool, RouteError> {
        let is_service = |r: &Value, name: &str| {
            r.get("name").and_then(Value::as_str) == Some(name)
                && r.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service"
                && r.get("group")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
        };
        let mut changed = false;
        let mut found = false;
        let rules = spec
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                RouteError::Shape(format!("HTTPRoute {} has no spec.rules", self.route))
            })?;
        for rule in rules {
            let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
                continue;
            };
            let outcome = split(
                refs,
                |r| is_service(r, stable),
                |r| is_service(r, canary),
                |stable_ref| {
                    let mut canary_ref = stable_ref.clone();
                    if let Some(obj) = canary_ref.as_object_mut() {
                        obj.insert("name".into(), json!(canary));
                    }
                    canary_ref
                },
                canary_weight,
            );
            if let Some(c) = outcome {
                found = true;
                changed |= c;
            }
        }
        if !found {
            return Err(RouteError::Shape(format!(
                "HTTPRoute {} has no backendRef to Service {stable}: add one (port 80) to the rule that serves the model",
                self.route
            )));
        }
        Ok(changed)
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
    fn routes_field(&self) -> &'static str {
        "http"
    }
    fn set_weights(
        &self,
        spec: &mut Value,
        stable: &str,
        canary: &str,
        canary_weight: i32,
    ) -> Result<bool, RouteError> {
        let host_is = |d: &Value, svc: &str| {
            d.pointer("/destination/host")
                .and_then(Value::as_str)
                .is_some_and(|h| h == svc || h.starts_with(&format!("{svc}.")))
        };
        let mut changed = false;
        let mut found = false;
        let http = spec
            .get_mut("http")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                RouteError::Shape(format!("VirtualService {} has no spec.http", self.name))
            })?;
        for route in http {
            let name = route.get("name").and_then(Value::as_str).unwrap_or("");
            if !self.routes.is_empty() && !self.routes.iter().any(|r| r == name) {
                continue;
            }
            let Some(dests) = route.get_mut("route").and_then(Value::as_array_mut) else {
                continue;
            };
            let outcome = split(
                dests,
                |d| host_is(d, stable),
                |d| host_is(d, canary),
                |stable_dest| {
                    let mut c = stable_dest.clone();
                    let host = stable_dest
                        .pointer("/destination/host")
                        .and_then(Value::as_str)
                        .unwrap_or(stable)
                        .replacen(stable, canary, 1);
                    if let Some(d) = c.get_mut("destination").and_then(Value::as_object_mut) {
                        d.insert("host".into(), json!(host));
                    }
                    c
                },
                canary_weight,
            );
            if let Some(c) = outcome {
                found = true;
                changed |= c;
            }
        }
        if !found {
            return Err(RouteError::Shape(format!(
                "VirtualService {} has no HTTP route with destination host {stable}: add one",
                self.name
            )));
        }
        Ok(changed)
    }
}

/// Sets the weights on the router's object. Returns whether it wrote.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    router: &dyn TrafficRouter,
    stable: &str,
    canary: &str,
    canary_weight: i32,
) -> Result<bool, RouteError> {
    let resource = ApiResource::from_gvk_with_plural(&router.gvk(), router.plural());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let Some(object) = api.get_opt(router.name()).await? else {
        return Err(RouteError::NotFound {
            kind: router.kind(),
            namespace: namespace.to_string(),
            name: router.name().to_string(),
        });
    };
    let mut spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
    if !router.set_weights(&mut spec, stable, canary, canary_weight)? {
        return Ok(false);
    }
    let field = router.routes_field();
    let patch = json!({
        "metadata": {"resourceVersion": object.metadata.resource_version},
        "spec": {field: spec.get(field).cloned().unwrap_or(Value::Null)},
    });
    api.patch(
        router.name(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route() -> Value {
        json!({
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/rank"}}],
                 "backendRefs": [{"name": "r-stable", "port": 80}]},
                {"backendRefs": [{"name": "other", "port": 80}]}
            ]
        })
    }

    #[test]
    fn gateway_api_adds_the_canary_backend_and_sets_weights() {
        let g = GatewayApi { route: "r".into() };
        let mut spec = route();
        assert!(
            g.set_weights(&mut spec, "r-stable", "r-canary", 20)
                .unwrap()
        );
        let refs = &spec["rules"][0]["backendRefs"];
        assert_eq!(
            refs[0],
            json!({"name": "r-stable", "port": 80, "weight": 80})
        );
        assert_eq!(
            refs[1],
            json!({"name": "r-canary", "port": 80, "weight": 20})
        );
        assert_eq!(
            spec["rules"][1]["backendRefs"][0],
            json!({"name": "other", "port": 80})
        );
        assert!(
            !g.set_weights(&mut spec, "r-stable", "r-canary", 20)
                .unwrap(),
            "unchanged weights are not written again"
        );
        assert!(g.set_weights(&mut spec, "r-stable", "r-canary", 0).unwrap());
        assert_eq!(spec["rules"][0]["backendRefs"][0]["weight"], 100);
        assert_eq!(spec["rules"][0]["backendRefs"][1]["weight"], 0);
    }

    #[test]
    fn gateway_api_without_a_stable_backend_names_the_fix() {
        let g = GatewayApi { route: "r".into() };
        let mut spec = json!({"rules": [{"backendRefs": [{"name": "x"}]}]});
        let err = g
            .set_weights(&mut spec, "r-stable", "r-canary", 10)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no backendRef to Service r-stable"),
            "{err}"
        );
        let mut empty = json!({});
        assert!(
            g.set_weights(&mut empty, "r-stable", "r-canary", 10)
                .is_err()
        );
    }

    #[test]
    fn istio_sets_weights_on_the_named_routes_only() {
        let i = Istio {
            name: "vs".into(),
            routes: vec!["primary".into()],
        };
        let mut spec = json!({"http": [
            {"name": "primary", "route": [{"destination": {"host": "r-stable.ns.svc.cluster.local"}}]},
            {"name": "mirror", "route": [{"destination": {"host": "r-stable"}, "weight": 100}]}
        ]});
        assert!(
            i.set_weights(&mut spec, "r-stable", "r-canary", 30)
                .unwrap()
        );
        let primary = &spec["http"][0]["route"];
        assert_eq!(primary[0]["weight"], 70);
        assert_eq!(
            primary[1]["destination"]["host"],
            "r-canary.ns.svc.cluster.local"
        );
        assert_eq!(primary[1]["weight"], 30);
        assert_eq!(spec["http"][1]["route"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn router_for_picks_the_configured_kind() {
        use mlctl_crds::rankingmodel::GatewayApiRouting;
        assert!(router_for(None).is_none());
        let t = TrafficRouting {
            gateway_api: Some(GatewayApiRouting {
                http_route: "r".into(),
            }),
            ..TrafficRouting::default()
        };
        let r = router_for(Some(&t)).unwrap();
        assert_eq!((r.kind(), r.name()), ("HTTPRoute", "r"));
    }
}
