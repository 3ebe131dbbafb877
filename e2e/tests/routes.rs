//! The operator owns only the weights of a user's traffic route: on a real
//! Gateway API HTTPRoute (the standard-channel CRDs `e2e/cluster` installs)
//! and an Istio VirtualService (a stand-in CRD with Istio's list semantics:
//! none declared, so atomic), a canary walks 20% → 60% → 100% while the
//! user's other rules, matches, filters and backends stay exactly as applied,
//! an edit of another rule mid-canary survives, and the weights are recorded
//! under the operator's field manager.
//!
//! Header routes (`setHeaderRoute`): the operator's one named rule appears
//! on the real HTTPRoute (accepted by the Gateway API CRD's own validation)
//! and the VirtualService when the step is done, follows a later step in
//! place (also after an operator restart), and is gone at promotion or
//! abort, leaving the user's route exactly as applied.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::audit::{Audit, describe};
use mlctl_e2e::operator::{setup, start_operator};
use mlctl_e2e::{TestNamespace, apply_yaml, phase_is, require_e2e, wait_for};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

/// A two-replica model on kwok pods whose canary pauses at 20% and 60%.
fn routed_model(version: &str, traffic_routing: &str) -> String {
    model_with_steps(
        version,
        "      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {}
",
        traffic_routing,
    )
}

/// A two-replica model on kwok pods with these `steps` (YAML list items).
fn model_with_steps(version: &str, steps: &str, traffic_routing: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: "{version}"
    uri: s3://models/ranker/{version}/model.onnx
    format: onnx
  runtime:
    image: ghcr.io/mlctl/onnx-runtime:0.1.0
  replicas: 2
  rollout:
    steps:
{steps}    trafficRouting:
{traffic_routing}"#
    )
}

/// Where the rollout is: `(stable version, canary weight)`, Healthy or Paused.
fn at(stable: &'static str, weight: Option<i32>) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        let Some(s) = m.and_then(|m| m.status.as_ref()) else {
            return false;
        };
        let stable_ok = s.stable.as_ref().is_some_and(|st| st.version == stable);
        match weight {
            None => stable_ok && s.canary.is_none() && s.phase == Some(Phase::Healthy),
            Some(w) => {
                stable_ok
                    && s.phase == Some(Phase::Paused)
                    && s.canary.as_ref().is_some_and(|c| c.weight == w)
            }
        }
    }
}

/// Requests the next step as `mlctl promote` does (the requestedAt annotation).
async fn promote(models: &Api<RankingModel>, at: &str) {
    request(models, "mlctl.io/promote", at).await;
}

/// Annotates the model with a request (`mlctl.io/promote`, `mlctl.io/abort`).
async fn request(models: &Api<RankingModel>, key: &str, at: &str) {
    let patch = json!({"metadata": {"annotations": {key: at}}});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn set_version(models: &Api<RankingModel>, version: &str) {
    let patch = json!({"spec": {"model": {
        "version": version,
        "uri": format!("s3://models/ranker/{version}/model.onnx"),
    }}});
    models
        .patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// How a route kind keeps its backends.
struct Shape {
    /// `spec.<rules>`: the rule list.
    rules: &'static str,
    /// `<rule>.<backends>`: the backend list of a rule.
    backends: &'static str,
    /// Whether a backend is one of the model's Services.
    is_model: fn(&Value) -> bool,
}

const GATEWAY: Shape = Shape {
    rules: "rules",
    backends: "backendRefs",
    is_model: |b| b["name"] == "ranker-stable" || b["name"] == "ranker-canary",
};

const ISTIO: Shape = Shape {
    rules: "http",
    backends: "route",
    is_model: |d| {
        d["destination"]["host"] == "ranker-stable" || d["destination"]["host"] == "ranker-canary"
    },
};

impl Shape {
    /// The spec without the weights of the model's backends: what the
    /// operator must never change.
    fn without_model_weights(&self, spec: &Value) -> Value {
        let mut out = spec.clone();
        for rule in out[self.rules].as_array_mut().unwrap() {
            for b in rule[self.backends].as_array_mut().unwrap() {
                if (self.is_model)(b) {
                    b.as_object_mut().unwrap().remove("weight");
                }
            }
        }
        out
    }

    /// `(backend, weight)` of the model's backends in rule `index`.
    fn weights(&self, spec: &Value, index: usize) -> Vec<i64> {
        spec[self.rules][index][self.backends]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| (self.is_model)(b))
            .map(|b| b["weight"].as_i64().unwrap())
            .collect()
    }
}

/// The route now, with the spec the user's fields must still equal.
struct Route {
    api: Api<DynamicObject>,
    name: &'static str,
    shape: Shape,
}

impl Route {
    async fn spec(&self) -> Value {
        self.api.get(self.name).await.unwrap().data["spec"].clone()
    }

    /// Only the model's weights differ from `expected` (the user's spec),
    /// and rule `index` carries `[stable, canary]`.
    async fn assert_only_weights(&self, expected: &Value, index: usize, weights: [i64; 2]) {
        let spec = self.spec().await;
        assert_eq!(
            self.shape.without_model_weights(&spec),
            self.shape.without_model_weights(expected),
            "the operator changed more than weights"
        );
        assert_eq!(self.shape.weights(&spec, index), weights, "{spec}");
    }

    /// The weights were written under the operator's field manager.
    async fn assert_written_by_the_operator(&self) {
        let route = self.api.get(self.name).await.unwrap();
        let managers: Vec<_> = route
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert!(
            managers.iter().any(|m| m == "mlctl-operator"),
            "{managers:?}"
        );
    }
}

/// Applies the route as its owner would (server-side apply, like Argo CD
/// with ServerSideApply) and returns it as the API server stored it.
async fn user_route(ns: &TestNamespace, yaml: &str, shape: Shape) -> (Route, Value) {
    let applied = apply_yaml(ns.client(), ns.name(), yaml).await;
    let api = mlctl_e2e::dynamic_api(ns.client(), &applied[0], ns.name()).await;
    let route = Route {
        api,
        name: "ranker",
        shape,
    };
    let spec = route.spec().await;
    (route, spec)
}

/// The canary runs 20% → 60% → 100%; at each step only the weights moved.
/// Mid-canary the user changes another rule (`edit`, on the live spec) and
/// applies the route again as Argo CD does with RespectIgnoreDifferences
/// (the atomic rule list whole, carrying the live weights): the edit stays
/// and the next weights still land.
async fn walk_the_canary(
    ns: &TestNamespace,
    route: &Route,
    mut user_spec: Value,
    edit: fn(&mut Value),
) {
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", at("v1", None), LONG).await;
    route.assert_only_weights(&user_spec, 0, [100, 0]).await;

    set_version(&models, "v2").await;
    wait_for(&models, "ranker", at("v1", Some(20)), LONG).await;
    route.assert_only_weights(&user_spec, 0, [80, 20]).await;
    route.assert_written_by_the_operator().await;

    let live = route.api.get(route.name).await.unwrap();
    let mut spec = live.data["spec"].clone();
    edit(&mut spec);
    let types = live.types.unwrap();
    let resync = json!({
        "apiVersion": types.api_version,
        "kind": types.kind,
        "metadata": {"name": route.name},
        "spec": spec,
    });
    apply_yaml(ns.client(), ns.name(), &resync.to_string()).await;
    user_spec = route.spec().await;
    assert_ne!(
        route.shape.without_model_weights(&user_spec),
        route.shape.without_model_weights(&live.data["spec"]),
        "the edit took effect"
    );

    promote(&models, "t1").await;
    wait_for(&models, "ranker", at("v1", Some(60)), LONG).await;
    route.assert_only_weights(&user_spec, 0, [40, 60]).await;

    promote(&models, "t2").await;
    wait_for(&models, "ranker", at("v2", None), LONG).await;
    route.assert_only_weights(&user_spec, 0, [100, 0]).await;
}

const HTTP_ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ranker
spec:
  parentRefs:
    - name: search-gateway
  rules:
    - matches:
        - path: {type: PathPrefix, value: /rank}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set:
              - {name: x-ranking-team, value: search}
      backendRefs:
        - {name: ranker-stable, port: 80, weight: 100}
        - {name: ranker-canary, port: 80, weight: 0}
        - {name: ranker-shadow, port: 80, weight: 0}
    - matches:
        - path: {type: PathPrefix, value: /suggest}
      backendRefs:
        - {name: suggest, port: 80}
    - matches:
        - headers:
            - {name: x-canary, value: "1"}
      backendRefs:
        - {name: ranker-canary, port: 80}
"#;

#[tokio::test]
async fn an_httproute_keeps_its_rules_filters_and_backends_through_a_canary() {
    require_e2e!();
    let (_client, ns, _operator, _) = setup("routes-gateway").await;
    let (route, user_spec) = user_route(&ns, HTTP_ROUTE, GATEWAY).await;
    apply_yaml(
        ns.client(),
        ns.name(),
        &routed_model("v1", "      gatewayAPI:\n        httpRoute: ranker\n"),
    )
    .await;
    walk_the_canary(&ns, &route, user_spec, |spec| {
        spec["rules"][1]["backendRefs"][0]["port"] = json!(8080);
    })
    .await;
    ns.finish().await;
}

/// A stand-in for Istio's VirtualService CRD (`networking.istio.io/v1`): the
/// spec is kept as written and, as in Istio's own CRD, its lists declare no
/// list type, so they are atomic. e2e/cluster installs no Istio; applying
/// this is idempotent (server-side apply), so tests may race on it.
const VIRTUAL_SERVICE_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: virtualservices.networking.istio.io
spec:
  group: networking.istio.io
  names: {kind: VirtualService, listKind: VirtualServiceList, plural: virtualservices, singular: virtualservice}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

const VIRTUAL_SERVICE: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ranker
spec:
  hosts: [ranker]
  http:
    - name: primary
      match:
        - uri: {prefix: /rank}
      retries: {attempts: 2, perTryTimeout: 200ms}
      route:
        - destination: {host: ranker-stable, port: {number: 80}}
          headers: {request: {set: {x-track: main}}}
          weight: 100
        - destination: {host: ranker-canary, port: {number: 80}}
          weight: 0
    - name: mirror
      route:
        - destination: {host: ranker-stable, port: {number: 80}}
      mirror: {host: ranker-shadow}
"#;

async fn install_virtual_service_crd(client: &Client) {
    apply_yaml(client, "default", VIRTUAL_SERVICE_CRD).await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    wait_for(
        &crds,
        "virtualservices.networking.istio.io",
        kube::runtime::wait::conditions::is_crd_established(),
        LONG,
    )
    .await;
    // Established is not yet served: another test may have just created
    // it, and discovery can lag the condition by a moment. Ask (≤ 30 s).
    let gvk = kube::api::GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = kube::discovery::pinned_kind(client, &gvk).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "VirtualService never served: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_virtualservice_keeps_its_routes_and_options_through_a_canary() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("routes-istio").await;
    install_virtual_service_crd(&client).await;
    let (route, user_spec) = user_route(&ns, VIRTUAL_SERVICE, ISTIO).await;
    apply_yaml(
        ns.client(),
        ns.name(),
        &routed_model(
            "v1",
            "      istio:\n        virtualService:\n          name: ranker\n          routes: [primary]\n",
        ),
    )
    .await;
    // The "mirror" route also reaches ranker-stable but is not named: its
    // single destination keeps having no weight.
    walk_the_canary(&ns, &route, user_spec, |spec| {
        spec["http"][1]["mirror"]["host"] = json!("ranker-shadow-2");
    })
    .await;
    let spec = route.spec().await;
    assert!(
        spec["http"][1]["route"][0].get("weight").is_none(),
        "{spec}"
    );
    ns.finish().await;
}

/// Paused at `step` (the index of the current step) with the canary at `weight`.
fn paused_at(step: i32, weight: i32) -> impl Fn(Option<&RankingModel>) -> bool {
    move |m| {
        m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
            s.phase == Some(Phase::Paused)
                && s.canary
                    .as_ref()
                    .is_some_and(|c| c.step_index == step && c.weight == weight)
        })
    }
}

/// The rules of `spec` (under `key`) named `mlctl-ranker-header`.
fn header_rules(spec: &Value, key: &str) -> Vec<Value> {
    spec[key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "mlctl-ranker-header")
        .cloned()
        .collect()
}

/// `spec` without the operator's header rule (under `key`).
fn without_header_rule(spec: &Value, key: &str) -> Value {
    let mut out = spec.clone();
    out[key]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["name"] != "mlctl-ranker-header");
    out
}

/// Model v1 with `steps` routed by `routing`, Healthy with the route as
/// the user applied it; then v2, paused after its first step (a header
/// route) at weight 0.
async fn header_rollout(
    ns: &TestNamespace,
    route: &Route,
    user_spec: &Value,
    steps: &str,
    routing: &str,
) -> Api<RankingModel> {
    apply_yaml(
        ns.client(),
        ns.name(),
        &model_with_steps("v1", steps, routing),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", at("v1", None), LONG).await;
    assert_eq!(&route.spec().await, user_spec, "no header rule yet");
    // The step is done once the canary's pod is Ready; the weight stays 0.
    set_version(&models, "v2").await;
    wait_for(&models, "ranker", paused_at(1, 0), LONG).await;
    models
}

#[tokio::test]
async fn a_header_route_on_an_httproute_lives_from_its_step_to_promotion() {
    require_e2e!();
    let (_client, ns, mut operator, kubeconfig) = setup("routes-header-gw").await;
    let (route, user_spec) = user_route(&ns, HTTP_ROUTE, GATEWAY).await;
    let steps = r#"      - setHeaderRoute:
          match: [{name: x-ranker, exact: canary}]
      - pause: {}
      - setWeight: 40
      - setHeaderRoute:
          match: [{name: x-ranker, regex: "canary|beta"}, {name: x-team, exact: search}]
      - pause: {}
"#;
    let routing = "      gatewayAPI:\n        httpRoute: ranker\n";
    let models = header_rollout(&ns, &route, &user_spec, steps, routing).await;
    let spec = route.spec().await;
    let ours = header_rules(&spec, "rules");
    assert_eq!(ours.len(), 1, "{spec}");
    assert_eq!(
        ours[0]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/rank"},
                "headers": [{"type": "Exact", "name": "x-ranker", "value": "canary"}]}]),
        "the stable rule's match plus the header"
    );
    assert_eq!(ours[0]["filters"], user_spec["rules"][0]["filters"]);
    let backends = ours[0]["backendRefs"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{spec}");
    assert_eq!(backends[0]["name"], "ranker-canary");
    assert_ne!(backends[0]["weight"], 0, "{spec}");
    assert_eq!(
        route
            .shape
            .without_model_weights(&without_header_rule(&spec, "rules")),
        route.shape.without_model_weights(&user_spec),
        "the user's rules are untouched"
    );
    assert_eq!(route.shape.weights(&spec, 0), [100, 0]);
    route.assert_written_by_the_operator().await;

    // As stored (with the API server's defaults) the rule is what the
    // operator wants: a later reconcile -- one that answers a request that
    // does not apply, so its end shows in the status -- sends the route no
    // request at all (the audit log counts no-op patches too).
    let audit = Audit::open();
    let mark = audit.mark();
    request(&models, "mlctl.io/retry", "noop").await;
    wait_for(
        &models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
                s.handled_requests.get("mlctl.io/retry").map(String::as_str) == Some("noop")
            })
        },
        LONG,
    )
    .await;
    let writes: Vec<_> = audit
        .operator_writes(mark, ns.name(), "")
        .into_iter()
        .filter(|w| w.resource() == "httproutes")
        .collect();
    assert!(writes.is_empty(), "{}", describe(&writes));

    // A new operator finds its rule by name: the next header step replaces
    // it in place.
    operator.kill();
    let restarted = start_operator(&ns, &kubeconfig, "b");
    let mut ns = ns;
    ns.dump_log_on_failure(restarted.log.clone());
    promote(&models, "t1").await;
    wait_for(&models, "ranker", paused_at(4, 40), LONG).await;
    let spec = route.spec().await;
    let ours = header_rules(&spec, "rules");
    assert_eq!(ours.len(), 1, "{spec}");
    assert_eq!(
        ours[0]["matches"][0]["headers"],
        json!([{"type": "RegularExpression", "name": "x-ranker", "value": "canary|beta"},
               {"type": "Exact", "name": "x-team", "value": "search"}])
    );
    assert_eq!(route.shape.weights(&spec, 0), [60, 40]);

    // Promoted: the route is the user's again, weights back at 100/0.
    promote(&models, "t2").await;
    wait_for(&models, "ranker", at("v2", None), LONG).await;
    route.assert_only_weights(&user_spec, 0, [100, 0]).await;
    ns.finish().await;
}

#[tokio::test]
async fn an_abort_removes_the_header_route_from_a_virtualservice() {
    require_e2e!();
    let (client, ns, _operator, _) = setup("routes-header-istio").await;
    install_virtual_service_crd(&client).await;
    let (route, user_spec) = user_route(&ns, VIRTUAL_SERVICE, ISTIO).await;
    let steps = "      - setHeaderRoute:\n          match: [{name: X-Ranker, exact: canary}]\n      - pause: {}\n      - setWeight: 50\n";
    let routing = "      istio:\n        virtualService:\n          name: ranker\n          routes: [primary]\n";
    let models = header_rollout(&ns, &route, &user_spec, steps, routing).await;
    let spec = route.spec().await;
    // First, where Istio looks first; lower-case, as Istio wants.
    assert_eq!(spec["http"][0]["name"], "mlctl-ranker-header", "{spec}");
    assert_eq!(
        spec["http"][0]["match"],
        json!([{"uri": {"prefix": "/rank"}, "headers": {"x-ranker": {"exact": "canary"}}}])
    );
    assert_eq!(
        spec["http"][0]["route"],
        json!([{"destination": {"host": "ranker-canary", "port": {"number": 80}},
                "headers": {"request": {"set": {"x-track": "main"}}}}])
    );
    assert_eq!(without_header_rule(&spec, "http"), user_spec);

    request(&models, "mlctl.io/abort", "t").await;
    wait_for(&models, "ranker", phase_is(Phase::Degraded), LONG).await;
    assert_eq!(route.spec().await, user_spec, "exactly the user's again");
    ns.finish().await;
}
