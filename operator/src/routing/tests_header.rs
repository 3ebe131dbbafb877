//! The header rule: built from the rules that reach the stable Service,
//! added, replaced and removed by test-guarded patches that touch no other
//! rule, found again by its name, and equal to what the API server stores
//! (with its defaults) without being written again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mlctl_crds::rankingmodel::HeaderMatch;
use proptest::prelude::*;

use super::tests::{apply_ops, gateway, http_route, rule};
use super::*;

fn exact(name: &str, value: &str) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        exact: Some(value.into()),
        regex: None,
    }
}

fn regex(name: &str, value: &str) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        exact: None,
        regex: Some(value.into()),
    }
}

/// Applies `model` r's header patch for `headers` to `object`.
fn patched(router: &dyn TrafficRouter, object: &Value, headers: Option<&[HeaderMatch]>) -> Value {
    let p = header_patch(router, object, "r", headers).unwrap();
    apply_ops(object, &p.ops).unwrap()
}

#[test]
fn gateway_api_header_rule_narrows_the_stable_rule_to_the_canary() {
    let route = http_route();
    let headers = [exact("x-ranker", "canary")];
    let p = header_patch(&gateway(), &route, "r", Some(&headers)).unwrap();
    assert!(p.inserts);
    // A test of the stable rule as read (its matches are copied), then the
    // rule appended; nothing else.
    assert_eq!(
        p.ops[0],
        json!({"op": "test", "path": "/spec/rules/0", "value": route["spec"]["rules"][0]})
    );
    assert_eq!(p.ops.len(), 2);
    assert_eq!(p.ops[1]["op"], "add");
    assert_eq!(p.ops[1]["path"], "/spec/rules/-");
    let live = apply_ops(&route, &p.ops).unwrap();
    let rules = live["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(rules[..3], route["spec"]["rules"].as_array().unwrap()[..]);
    assert_eq!(
        rules[3],
        json!({
            "name": "mlctl-r-header",
            "matches": [{"path": {"type": "PathPrefix", "value": "/rank"},
                         "headers": [{"type": "Exact", "name": "x-ranker", "value": "canary"}]}],
            "filters": route["spec"]["rules"][0]["filters"],
            "backendRefs": [{"name": "r-canary", "port": 80}]
        })
    );
    assert_eq!(live["metadata"], route["metadata"]);
    assert!(header::has_header_rule(&gateway(), &live, "r"));

    // Idempotent, also after the API server filled in its defaults.
    assert!(
        header_patch(&gateway(), &live, "r", Some(&headers))
            .unwrap()
            .ops
            .is_empty()
    );
    let mut stored = live.clone();
    stored["spec"]["rules"][3]["backendRefs"][0]["group"] = json!("");
    stored["spec"]["rules"][3]["backendRefs"][0]["kind"] = json!("Service");
    stored["spec"]["rules"][3]["backendRefs"][0]["weight"] = json!(1);
    assert_eq!(
        header_patch(&gateway(), &stored, "r", Some(&headers)).unwrap(),
        HeaderPatch::default()
    );

    // A later step's other conditions replace the rule in place, under a
    // test of it as stored.
    let other = [regex("x-ranker", "canary|beta"), exact("x-team", "search")];
    let p = header_patch(&gateway(), &stored, "r", Some(&other)).unwrap();
    assert!(!p.inserts);
    assert!(p.ops.contains(
        &json!({"op": "test", "path": "/spec/rules/3", "value": stored["spec"]["rules"][3]})
    ));
    let live = apply_ops(&stored, &p.ops).unwrap();
    assert_eq!(live["spec"]["rules"].as_array().unwrap().len(), 4);
    assert_eq!(
        live["spec"]["rules"][3]["matches"][0]["headers"],
        json!([{"type": "RegularExpression", "name": "x-ranker", "value": "canary|beta"},
               {"type": "Exact", "name": "x-team", "value": "search"}])
    );

    // The end of the rollout (or `match: []`) removes it: the route is the
    // user's again, exactly.
    for gone in [None, Some(&[][..])] {
        let p = header_patch(&gateway(), &live, "r", gone).unwrap();
        assert_eq!(p.ops[0]["op"], "test");
        assert_eq!(p.ops[1], json!({"op": "remove", "path": "/spec/rules/3"}));
        assert_eq!(apply_ops(&live, &p.ops).unwrap(), route);
    }
    assert!(
        header_patch(&gateway(), &route, "r", None)
            .unwrap()
            .ops
            .is_empty(),
        "nothing to remove, nothing written"
    );
}

#[test]
fn the_header_rule_follows_the_stable_rules() {
    let headers = [exact("x-ranker", "canary")];
    // Two rules reach the stable Service, one without matches (PathPrefix
    // /), one that already tests x-ranker: the user's condition stays (the
    // Gateway API considers only the first entry of a name).
    let route = json!({"spec": {"rules": [
        {"backendRefs": [{"name": "r-stable", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/v2"}, "method": "POST",
                      "headers": [{"type": "Exact", "name": "X-Ranker", "value": "prod"}]}],
         "backendRefs": [{"name": "r-stable", "port": 80, "weight": 90},
                         {"name": "r-canary", "port": 80, "weight": 10}]}
    ]}});
    let live = patched(&gateway(), &route, Some(&headers));
    assert_eq!(
        live["spec"]["rules"][2]["matches"],
        json!([
            {"path": {"type": "PathPrefix", "value": "/"},
             "headers": [{"type": "Exact", "name": "x-ranker", "value": "canary"}]},
            {"path": {"type": "Exact", "value": "/v2"}, "method": "POST",
             "headers": [{"type": "Exact", "name": "X-Ranker", "value": "prod"}]}
        ])
    );
    // The user edits the stable rule's matches (Git): the header rule
    // follows at the next reconcile.
    let mut edited = live.clone();
    edited["spec"]["rules"][0]["matches"] =
        json!([{"path": {"type": "PathPrefix", "value": "/rank"}}]);
    let p = header_patch(&gateway(), &edited, "r", Some(&headers)).unwrap();
    let again = apply_ops(&edited, &p.ops).unwrap();
    assert_eq!(
        again["spec"]["rules"][2]["matches"][0]["path"],
        json!({"type": "PathPrefix", "value": "/rank"})
    );
    // A patch built before an edit of a stable rule fails its test.
    let stale = header_patch(&gateway(), &route, "r", Some(&headers)).unwrap();
    let mut moved = route.clone();
    moved["spec"]["rules"][0]["backendRefs"][0]["port"] = json!(81);
    assert!(apply_ops(&moved, &stale.ops).is_err());
    // Without a stable backend there is nothing to narrow: the fix is named.
    let none = json!({"spec": {"rules": [{"backendRefs": [{"name": "x"}]}]}});
    let err = header_patch(&gateway(), &none, "r", Some(&headers)).unwrap_err();
    assert!(
        err.to_string()
            .contains("no backendRef to Service r-stable"),
        "{err}"
    );
    // ... but removing needs none.
    assert!(header_patch(&gateway(), &none, "r", None).is_ok());
}

fn virtual_service() -> Value {
    json!({"spec": {"hosts": ["ranker"], "http": [
        {"name": "mirror", "route": [{"destination": {"host": "other"}}]},
        {"name": "primary",
         "match": [{"uri": {"prefix": "/rank"}}, {"uri": {"prefix": "/v2"}, "headers": {"x-team": {"exact": "search"}}}],
         "retries": {"attempts": 3},
         "route": [{"destination": {"host": "r-stable.ns.svc.cluster.local", "port": {"number": 80}}, "weight": 100},
                   {"destination": {"host": "r-canary.ns.svc.cluster.local", "port": {"number": 80}}, "weight": 0}]}
    ]}})
}

#[test]
fn istio_header_route_goes_first_and_leaves_the_others() {
    let istio = Istio {
        name: "vs".into(),
        routes: vec!["primary".into()],
    };
    let vs = virtual_service();
    let headers = [exact("X-Ranker", "canary")];
    let p = header_patch(&istio, &vs, "r", Some(&headers)).unwrap();
    assert!(p.inserts);
    assert_eq!(p.ops.last().unwrap()["path"], "/spec/http/0");
    let live = apply_ops(&vs, &p.ops).unwrap();
    let http = live["spec"]["http"].as_array().unwrap();
    assert_eq!(http[1..], vs["spec"]["http"].as_array().unwrap()[..]);
    assert_eq!(
        http[0],
        json!({
            "name": "mlctl-r-header",
            "match": [
                {"uri": {"prefix": "/rank"}, "headers": {"x-ranker": {"exact": "canary"}}},
                {"uri": {"prefix": "/v2"},
                 "headers": {"x-team": {"exact": "search"}, "x-ranker": {"exact": "canary"}}}
            ],
            "retries": {"attempts": 3},
            "route": [{"destination": {"host": "r-canary.ns.svc.cluster.local", "port": {"number": 80}}}]
        })
    );
    assert!(
        header_patch(&istio, &live, "r", Some(&headers))
            .unwrap()
            .ops
            .is_empty()
    );
    // Weights still land on the stable route (now at index 2).
    let ops = weight_patch(&istio, &live, "r-stable", "r-canary", 30).unwrap();
    assert_eq!(ops[0]["path"], "/spec/http/2");

    // Moved behind the route it narrows (a sync reordered the list), it
    // would never match: it is put back first.
    let mut moved = live.clone();
    let ours = moved["spec"]["http"].as_array_mut().unwrap().remove(0);
    moved["spec"]["http"].as_array_mut().unwrap().push(ours);
    let again = patched(&istio, &moved, Some(&headers));
    assert_eq!(again, live);

    // Removed at the end: the VirtualService is the user's again.
    assert_eq!(patched(&istio, &live, None), vs);
}

#[test]
fn each_model_finds_only_its_own_rule() {
    let headers = [exact("x-ranker", "canary")];
    let mut route = http_route();
    // Another model's header rule on the same route is not ours.
    route["spec"]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mlctl-other-header", "backendRefs": [{"name": "other-canary"}]}));
    let live = patched(&gateway(), &route, Some(&headers));
    assert_eq!(live["spec"]["rules"][3], route["spec"]["rules"][3]);
    assert_eq!(live["spec"]["rules"][4]["name"], "mlctl-r-header");
    assert_eq!(patched(&gateway(), &live, None), route);
}

proptest! {
    /// For any route with a stable backend: the header rule is appended and
    /// every other rule is untouched, a second patch is empty, other
    /// headers replace it in place, and removing it gives back the route.
    #[test]
    fn the_header_rule_touches_no_other_rule(
        rules in prop::collection::vec(rule(), 1..5),
        value in "[a-z]{1,8}",
        regex_value in prop::option::of("[a-z.*|]{1,8}"),
    ) {
        let route = json!({"metadata": {"name": "r"}, "spec": {"rules": rules}});
        let headers = [exact("x-ranker", &value)];
        let Ok(p) = header_patch(&gateway(), &route, "r", Some(&headers)) else {
            let has_stable = route["spec"]["rules"].as_array().unwrap().iter().any(|r| {
                r["backendRefs"].as_array().unwrap().iter().any(|b| b["name"] == "r-stable")
            });
            prop_assert!(!has_stable);
            return Ok(());
        };
        for op in &p.ops {
            prop_assert!(op["op"] == "test" || op["path"] == "/spec/rules/-", "{op}");
        }
        let live = apply_ops(&route, &p.ops).unwrap();
        let n = route["spec"]["rules"].as_array().unwrap().len();
        prop_assert_eq!(&live["spec"]["rules"].as_array().unwrap()[..n], &route["spec"]["rules"].as_array().unwrap()[..]);
        let ours = &live["spec"]["rules"][n];
        prop_assert_eq!(ours["backendRefs"].as_array().unwrap().len(), 1);
        prop_assert_eq!(&ours["backendRefs"][0]["name"], "r-canary");
        for m in ours["matches"].as_array().unwrap() {
            prop_assert!(m["headers"].as_array().unwrap().iter().any(|h| h["name"] == "x-ranker"));
        }
        prop_assert!(header_patch(&gateway(), &live, "r", Some(&headers)).unwrap().ops.is_empty());
        let live = match regex_value {
            Some(r) => {
                let p = header_patch(&gateway(), &live, "r", Some(&[regex("x-ranker", &r)])).unwrap();
                prop_assert!(!p.inserts);
                let replaced = apply_ops(&live, &p.ops).unwrap();
                prop_assert_eq!(replaced["spec"]["rules"].as_array().unwrap().len(), n + 1);
                replaced
            }
            None => live,
        };
        prop_assert_eq!(patched(&gateway(), &live, None), route);
    }
}
