//! Header routes (`setHeaderRoute` steps): one rule (Gateway API) or HTTP
//! route (Istio) of the user's route object, named `mlctl-<model>-header`,
//! that sends requests carrying the step's headers to `<model>-canary`
//! alone. It is built from the rules that reach `<model>-stable` (their
//! matches with the headers added), so it narrows exactly the traffic the
//! model serves. It is added, replaced and removed by the same test-guarded
//! JSON Patch as the weights and found again by its name, so a restarted
//! operator needs nothing but the object, the spec and the status.

use mlctl_crds::rankingmodel::HeaderMatch;
use serde_json::{Value, json};

use super::{RouteError, Split, TrafficRouter};

/// The name of the rule the operator manages for `model`'s header route.
pub fn header_rule_name(model: &str) -> String {
    format!("mlctl-{model}-header")
}

/// The JSON Patch that makes the object's managed header rule what
/// `headers` asks (None or empty: no such rule).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderPatch {
    /// RFC 6902 operations; empty when the rule is already right.
    pub ops: Vec<Value>,
    /// Whether the patch inserts the rule (rather than replacing or
    /// removing it): then [`super::apply`] first checks with a dry run that
    /// the API server keeps the rule's name.
    pub inserts: bool,
}

/// `(exact, value)` of one header condition: the exact value, else the
/// regular expression (the schema requires exactly one; neither would mean
/// "any value", which is what `.*` says).
pub(super) fn condition(h: &HeaderMatch) -> (bool, &str) {
    match (&h.exact, &h.regex) {
        (Some(v), _) => (true, v),
        (None, Some(r)) => (false, r),
        (None, None) => (false, ".*"),
    }
}

/// Whether `stored` holds every field of `built` with the same value:
/// objects may have more (the defaults the API server filled in, such as a
/// backendRef's `kind: Service` and `weight: 1`), lists are equal in length.
pub(super) fn covers(stored: &Value, built: &Value) -> bool {
    match (stored, built) {
        (Value::Object(s), Value::Object(b)) => b
            .iter()
            .all(|(k, v)| s.get(k).is_some_and(|sv| covers(sv, v))),
        (Value::Array(s), Value::Array(b)) => {
            s.len() == b.len() && s.iter().zip(b).all(|(sv, bv)| covers(sv, bv))
        }
        _ => stored == built,
    }
}

fn test(path: &str, value: &Value) -> Value {
    json!({"op": "test", "path": path, "value": value})
}

/// The patch for `model`'s header rule on `object`. With headers: the rule
/// built by the router from the rules that reach `<model>-stable`, added
/// (after `test`s of those rules as read, so a concurrent edit of them
/// fails the patch), or replaced in place (after a `test` of it) when it
/// differs or sits where it does not take effect. Without: every rule of
/// that name removed, each after a `test`. Nothing else is written.
pub fn header_patch(
    router: &dyn TrafficRouter,
    object: &Value,
    model: &str,
    headers: Option<&[HeaderMatch]>,
) -> Result<HeaderPatch, RouteError> {
    let name = header_rule_name(model);
    let key = router.rules_key();
    let rules = object
        .get("spec")
        .and_then(|s| s.get(key))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let path = |i: usize| format!("/spec/{key}/{i}");
    let ours: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .map(|(i, _)| i)
        .collect();
    // Removed from the back, so each index is still right when reached.
    let remove_ours = |ops: &mut Vec<Value>| {
        for &i in ours.iter().rev() {
            ops.push(test(&path(i), &rules[i]));
            ops.push(json!({"op": "remove", "path": path(i)}));
        }
    };
    let Some(headers) = headers.filter(|h| !h.is_empty()) else {
        let mut ops = Vec::new();
        remove_ours(&mut ops);
        return Ok(HeaderPatch {
            ops,
            inserts: false,
        });
    };
    let splits = router.splits(
        object,
        &format!("{model}-stable"),
        &format!("{model}-canary"),
    )?;
    let wanted = router.header_rule(&splits, &name, headers);
    let first_split = splits
        .iter()
        .filter_map(|s| s.rule.rsplit('/').next()?.parse::<usize>().ok())
        .min()
        .unwrap_or(0);
    // Istio takes the first route that matches: the header route must come
    // before the routes it narrows. The Gateway API picks the most specific
    // match wherever it is.
    let placed = |i: usize| !router.header_rule_first() || i < first_split;
    if let [i] = ours[..]
        && placed(i)
        && covers(&rules[i], &wanted)
    {
        return Ok(HeaderPatch::default());
    }
    let mut ops: Vec<Value> = splits
        .iter()
        .map(|s| test(&s.rule, &s.rule_value))
        .collect();
    let inserts = match ours[..] {
        [i] if placed(i) => {
            ops.push(test(&path(i), &rules[i]));
            ops.push(json!({"op": "replace", "path": path(i), "value": wanted}));
            false
        }
        _ => {
            remove_ours(&mut ops);
            let at = if router.header_rule_first() {
                path(0)
            } else {
                format!("/spec/{key}/-")
            };
            ops.push(json!({"op": "add", "path": at, "value": wanted}));
            true
        }
    };
    Ok(HeaderPatch { ops, inserts })
}

/// Whether the object (as the API server returned it) has `model`'s header
/// rule, by name.
pub(super) fn has_header_rule(router: &dyn TrafficRouter, object: &Value, model: &str) -> bool {
    let name = header_rule_name(model);
    object
        .get("spec")
        .and_then(|s| s.get(router.rules_key()))
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()))
        })
}

/// Every match (under `key`) of the splits' rules, `all` for a rule without
/// any, each narrowed by `narrow`; without repeats.
pub(super) fn narrowed_matches(
    splits: &[Split],
    (key, all): (&str, Value),
    narrow: impl Fn(&mut serde_json::Map<String, Value>),
) -> Vec<Value> {
    let mut matches: Vec<Value> = Vec::new();
    for split in splits {
        let source = split
            .rule_value
            .get(key)
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| vec![all.clone()]);
        for mut m in source {
            if let Some(fields) = m.as_object_mut() {
                narrow(fields);
            }
            if !matches.contains(&m) {
                matches.push(m);
            }
        }
    }
    matches
}

/// The first split's rule renamed `name`, with `(key, matches)` and, as its
/// only backend (under `backends`), the split's canary backend.
pub(super) fn header_rule_from(
    splits: &[Split],
    name: &str,
    (key, matches): (&str, Vec<Value>),
    backends: &str,
) -> Value {
    let Some(first) = splits.first() else {
        return Value::Null;
    };
    let mut rule = first.rule_value.clone();
    if let Some(fields) = rule.as_object_mut() {
        fields.insert("name".into(), json!(name));
        fields.insert(key.into(), Value::Array(matches));
        fields.insert(backends.into(), json!([first.new_canary]));
    }
    rule
}
