//! The weight patches: built from the object as read, they touch only the
//! weights of the model's backends (and append a missing canary backend), and
//! their `test` ops make a concurrently edited rule fail the patch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;

/// The JSON Patch semantics the API server applies, for the operations
/// [`weight_patch`] and [`header_patch`] emit: `test` (deep equality),
/// `add` (object member, or an array index / `-` to insert or append),
/// `replace` and `remove`. `Err` when a test fails.
pub(super) fn apply_ops(object: &Value, ops: &[Value]) -> Result<Value, String> {
    let mut out = object.clone();
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let value = op["value"].clone();
        match op["op"].as_str().unwrap() {
            "test" => {
                if out.pointer(path) != Some(&value) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "add" => {
                let (parent, last) = path.rsplit_once('/').unwrap();
                let target = out.pointer_mut(parent).unwrap();
                match target {
                    Value::Array(items) if last == "-" => items.push(value),
                    Value::Array(items) => items.insert(last.parse().unwrap(), value),
                    Value::Object(fields) => {
                        fields.insert(last.to_string(), value);
                    }
                    other => panic!("add {path} into {other}"),
                }
            }
            "replace" => *out.pointer_mut(path).unwrap() = value,
            "remove" => {
                let (parent, last) = path.rsplit_once('/').unwrap();
                match out.pointer_mut(parent).unwrap() {
                    Value::Array(items) => {
                        items.remove(last.parse().unwrap());
                    }
                    Value::Object(fields) => {
                        fields.remove(last);
                    }
                    other => panic!("remove {path} from {other}"),
                }
            }
            other => panic!("unexpected op {other}"),
        }
    }
    Ok(out)
}

/// A user's HTTPRoute, as it sits in Git: the model's rule has matches, a
/// filter and a second backend of its own; a second rule serves another
/// Service; a third reaches the canary alone by a header.
pub(super) fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["search.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/rank"}}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": "x-team", "value": "search"}]}}],
                 "backendRefs": [
                     {"name": "r-stable", "port": 80},
                     {"name": "r-legacy", "port": 8080, "weight": 5}
                 ]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/suggest"}}],
                 "backendRefs": [{"name": "other", "port": 80}]},
                {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                 "backendRefs": [{"name": "r-canary", "port": 80}]}
            ]
        },
        "status": {"parents": []}
    })
}

pub(super) fn gateway() -> GatewayApi {
    GatewayApi { route: "r".into() }
}

/// An HTTPRoute with the weights of the model's backends removed.
fn without_model_weights(object: &Value, is_model: impl Fn(&Value) -> bool) -> Value {
    let mut out = object.clone();
    for rule in out["spec"]["rules"].as_array_mut().unwrap() {
        let Some(items) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
            continue;
        };
        for b in items.iter_mut() {
            if is_model(b) {
                b.as_object_mut().unwrap().remove("weight");
            }
        }
    }
    out
}

#[test]
fn gateway_api_patch_sets_only_the_weights_of_the_model_rule() {
    let route = http_route();
    let ops = weight_patch(&gateway(), &route, "r-stable", "r-canary", 20).unwrap();
    // One rule touched: a test of it as read, then weights and the new canary.
    assert_eq!(
        ops,
        vec![
            json!({"op": "test", "path": "/spec/rules/0", "value": route["spec"]["rules"][0]}),
            json!({"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 80}),
            json!({"op": "add", "path": "/spec/rules/0/backendRefs/-",
                   "value": {"name": "r-canary", "port": 80, "weight": 20}}),
        ]
    );
    let patched = apply_ops(&route, &ops).unwrap();
    let rule = &patched["spec"]["rules"][0];
    assert_eq!(rule["matches"], route["spec"]["rules"][0]["matches"]);
    assert_eq!(rule["filters"], route["spec"]["rules"][0]["filters"]);
    assert_eq!(
        rule["backendRefs"],
        json!([
            {"name": "r-stable", "port": 80, "weight": 80},
            {"name": "r-legacy", "port": 8080, "weight": 5},
            {"name": "r-canary", "port": 80, "weight": 20}
        ])
    );
    // The other rules, including the header rule to the canary alone, and
    // everything outside the rules are the user's.
    assert_eq!(patched["spec"]["rules"][1], route["spec"]["rules"][1]);
    assert_eq!(patched["spec"]["rules"][2], route["spec"]["rules"][2]);
    assert_eq!(patched["spec"]["hostnames"], route["spec"]["hostnames"]);
    assert_eq!(patched["metadata"], route["metadata"]);

    // Next step: only the two weights move, under a test of the rule.
    let ops = weight_patch(&gateway(), &patched, "r-stable", "r-canary", 60).unwrap();
    assert_eq!(
        ops[1..],
        [
            json!({"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 40}),
            json!({"op": "add", "path": "/spec/rules/0/backendRefs/2/weight", "value": 60}),
        ]
    );
    let patched = apply_ops(&patched, &ops).unwrap();
    assert!(
        weight_patch(&gateway(), &patched, "r-stable", "r-canary", 60)
            .unwrap()
            .is_empty(),
        "unchanged weights are not written again"
    );
}

#[test]
fn a_rule_edited_after_the_read_fails_the_patch() {
    let route = http_route();
    let ops = weight_patch(&gateway(), &route, "r-stable", "r-canary", 20).unwrap();
    // Argo CD syncs a new filter into the model's rule between read and patch.
    let mut edited = route.clone();
    edited["spec"]["rules"][0]["filters"] = json!([]);
    assert!(apply_ops(&edited, &ops).is_err());
    // A rule inserted before it shifts the indices: the test catches that too.
    let mut shifted = route.clone();
    shifted["spec"]["rules"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"backendRefs": [{"name": "new", "port": 80}]}));
    assert!(apply_ops(&shifted, &ops).is_err());
    // An edit elsewhere (another rule, the status) does not conflict.
    let mut elsewhere = route.clone();
    elsewhere["spec"]["rules"][1]["backendRefs"][0]["port"] = json!(81);
    elsewhere["status"] = json!({"parents": [{"controllerName": "x"}]});
    assert!(apply_ops(&elsewhere, &ops).is_ok());
}

#[test]
fn gateway_api_without_a_stable_backend_names_the_fix() {
    let route = json!({"spec": {"rules": [{"backendRefs": [{"name": "x"}]}]}});
    let err = weight_patch(&gateway(), &route, "r-stable", "r-canary", 10).unwrap_err();
    assert!(
        err.to_string()
            .contains("no backendRef to Service r-stable"),
        "{err}"
    );
    // A backendRef of another kind with the Service's name is not the Service.
    let route = json!({"spec": {"rules": [{"backendRefs": [
        {"name": "r-stable", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}
    ]}]}});
    assert!(weight_patch(&gateway(), &route, "r-stable", "r-canary", 10).is_err());
    assert!(weight_patch(&gateway(), &json!({}), "r-stable", "r-canary", 10).is_err());
}

#[test]
fn istio_patch_sets_weights_on_the_named_routes_only() {
    let istio = Istio {
        name: "vs".into(),
        routes: vec!["primary".into()],
    };
    let vs = json!({"spec": {"hosts": ["ranker"], "http": [
        {"name": "mirror", "route": [{"destination": {"host": "r-stable"}, "weight": 100}]},
        {"name": "primary",
         "match": [{"uri": {"prefix": "/rank"}}],
         "retries": {"attempts": 3},
         "route": [{"destination": {"host": "r-stable.ns.svc.cluster.local", "port": {"number": 80}},
                    "headers": {"request": {"set": {"x-track": "main"}}}}]}
    ]}});
    let ops = weight_patch(&istio, &vs, "r-stable", "r-canary", 30).unwrap();
    assert_eq!(ops[0]["op"], "test");
    assert_eq!(ops[0]["path"], "/spec/http/1");
    let patched = apply_ops(&vs, &ops).unwrap();
    let primary = &patched["spec"]["http"][1];
    assert_eq!(primary["route"][0]["weight"], 70);
    assert_eq!(
        primary["route"][1],
        json!({"destination": {"host": "r-canary.ns.svc.cluster.local", "port": {"number": 80}},
               "headers": {"request": {"set": {"x-track": "main"}}}, "weight": 30})
    );
    assert_eq!(primary["match"], vs["spec"]["http"][1]["match"]);
    assert_eq!(primary["retries"], vs["spec"]["http"][1]["retries"]);
    assert_eq!(patched["spec"]["http"][0], vs["spec"]["http"][0]);
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

/// A backendRef: the model's stable or canary Service, or someone else's.
fn backend_ref() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just("r-stable"),
            Just("r-canary"),
            Just("other"),
            Just("r-stable-x")
        ],
        prop::option::of(0..1000i64),
        prop::option::of(Just(json!([{"type": "RequestHeaderModifier"}]))),
    )
        .prop_map(|(name, weight, filters)| {
            let mut b = json!({"name": name, "port": 80});
            if let Some(w) = weight {
                b["weight"] = json!(w);
            }
            if let Some(f) = filters {
                b["filters"] = f;
            }
            b
        })
}

pub(super) fn rule() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(backend_ref(), 0..4),
        prop::option::of(Just(json!([{"path": {"type": "Exact", "value": "/x"}}]))),
    )
        .prop_map(|(refs, matches)| {
            let mut r = json!({"backendRefs": refs});
            if let Some(m) = matches {
                r["matches"] = m;
            }
            r
        })
}

proptest! {
    /// For any route: the patch applies to the object it was built from,
    /// the result differs from it only in the weights of the model's
    /// backends and appended canary backends, every model rule ends at
    /// exactly 100 − w / w, and a second patch is empty.
    #[test]
    fn only_model_weights_change(rules in prop::collection::vec(rule(), 1..5), w in 0..=100i32) {
        let route = json!({"metadata": {"name": "r"}, "spec": {"rules": rules}});
        let is_model = |b: &Value| b["name"] == "r-stable" || b["name"] == "r-canary";
        let Ok(ops) = weight_patch(&gateway(), &route, "r-stable", "r-canary", w) else {
            // Only when no rule has a stable backend.
            let has_stable = route["spec"]["rules"].as_array().unwrap().iter().any(|r| {
                r["backendRefs"].as_array().unwrap().iter().any(|b| b["name"] == "r-stable")
            });
            prop_assert!(!has_stable);
            return Ok(());
        };
        for op in &ops {
            let path = op["path"].as_str().unwrap();
            prop_assert!(
                op["op"] == "test" || path.ends_with("/weight") || path.ends_with("/backendRefs/-"),
                "{op}"
            );
        }
        let patched = apply_ops(&route, &ops).unwrap();
        let mut trimmed = patched.clone();
        for (rule, before) in trimmed["spec"]["rules"].as_array_mut().unwrap().iter_mut()
            .zip(route["spec"]["rules"].as_array().unwrap())
        {
            let n = before["backendRefs"].as_array().unwrap().len();
            rule["backendRefs"].as_array_mut().unwrap().truncate(n);
        }
        prop_assert_eq!(
            without_model_weights(&trimmed, is_model),
            without_model_weights(&route, is_model)
        );
        for rule in patched["spec"]["rules"].as_array().unwrap() {
            let refs = rule["backendRefs"].as_array().unwrap();
            if !refs.iter().any(|b| b["name"] == "r-stable") {
                continue;
            }
            for b in refs.iter().filter(|b| is_model(b)) {
                let want = if b["name"] == "r-stable" { 100 - w } else { w };
                prop_assert_eq!(b["weight"].as_i64(), Some(i64::from(want)));
            }
        }
        prop_assert!(weight_patch(&gateway(), &patched, "r-stable", "r-canary", w).unwrap().is_empty());
    }
}
