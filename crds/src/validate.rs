//! Offline validation of manifests against the generated CRD schemas: the
//! OpenAPI structure (types, required fields, enums, bounds, unknown fields)
//! and the CEL `x-kubernetes-validations` rules, evaluated locally. It lets
//! `mlctl lint` refuse what `kubectl apply` would refuse, with the same field
//! paths, before anything reaches a cluster.

use kube::CustomResourceExt;
use serde_json::{Map, Value};

use crate::{AnalysisTemplate, FeaturePipeline, RankingModel};

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending field, e.g. `spec.model.version` (empty for the
    /// whole object).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The outcome of validating one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An mlctl object; the list holds its problems (empty when valid).
    Checked {
        /// `RankingModel`, `FeaturePipeline` or `AnalysisTemplate`.
        kind: String,
        /// `metadata.name`, when present.
        name: Option<String>,
        /// Problems found.
        problems: Vec<Problem>,
    },
    /// Not an mlctl kind (another apiVersion): nothing to check.
    NotOurs {
        /// The document's `kind`, when present.
        kind: Option<String>,
    },
}

fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem {
        field: field.to_string(),
        message: message.into(),
    }
}

fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// Validates one parsed document (a YAML or JSON object).
pub fn validate_document(doc: &Value) -> Outcome {
    let Some(obj) = doc.as_object() else {
        return Outcome::Checked {
            kind: String::new(),
            name: None,
            problems: vec![problem(
                "",
                "the document is not a mapping: expected a Kubernetes object with apiVersion, kind and metadata",
            )],
        };
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str).map(str::to_string);
    let group = api_version.and_then(|a| a.split_once('/')).map(|(g, _)| g);
    if group != Some(crate::GROUP) {
        if api_version.is_none() {
            return Outcome::Checked {
                kind: kind.unwrap_or_default(),
                name: None,
                problems: vec![problem(
                    "apiVersion",
                    "Required value: set apiVersion: mlctl.io/v1alpha1",
                )],
            };
        }
        return Outcome::NotOurs { kind };
    }
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let kind_name = kind.clone().unwrap_or_default();
    if api_version != Some(crate::API_VERSION) {
        return Outcome::Checked {
            kind: kind_name,
            name,
            problems: vec![problem(
                "apiVersion",
                format!(
                    "Unsupported value: {:?}: supported values: \"{}\"",
                    api_version.unwrap_or_default(),
                    crate::API_VERSION
                ),
            )],
        };
    }
    let schema = match kind.as_deref() {
        Some("RankingModel") => schema_of::<RankingModel>(),
        Some("FeaturePipeline") => schema_of::<FeaturePipeline>(),
        Some("AnalysisTemplate") => schema_of::<AnalysisTemplate>(),
        other => {
            return Outcome::Checked {
                kind: kind_name,
                name,
                problems: vec![problem(
                    "kind",
                    format!(
                        "Unsupported value: {:?}: supported values: \"RankingModel\", \"FeaturePipeline\", \"AnalysisTemplate\"",
                        other.unwrap_or_default()
                    ),
                )],
            };
        }
    };
    let mut problems = Vec::new();
    check_metadata(obj.get("metadata"), &mut problems);
    if obj.get("spec").is_none() {
        problems.push(problem("spec", "Required value"));
    }
    // The API server prunes unknown fields before CEL runs; do the same, but
    // report them, because silent pruning is what makes typos dangerous.
    let mut pruned = doc.clone();
    let mut structural = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object)
        && let Some(pruned_obj) = pruned.as_object_mut()
    {
        for (key, value) in pruned_obj.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.get(key) {
                Some(sub) => check(sub, value, key, &mut structural),
                None => structural.push(unknown_field(key)),
            }
        }
        pruned_obj.retain(|k, _| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.contains_key(k)
        });
    }
    let blocking = structural
        .iter()
        .any(|p| !p.message.starts_with("unknown field"));
    problems.extend(structural);
    // CEL rules only make sense on a structurally valid object (the API
    // server also refuses such objects before their rules could matter).
    if !blocking
        && obj.get("spec").is_some()
        && let Err(errors) = kube::core::cel::Validator::new().validate(&schema, &pruned, None)
    {
        for e in errors.into_vec() {
            problems.push(problem(&normalize_path(&e.field_path), e.message));
        }
    }
    Outcome::Checked {
        kind: kind_name,
        name,
        problems,
    }
}

fn unknown_field(path: &str) -> Problem {
    problem(
        path,
        "unknown field: the API server would drop it silently; check its spelling (kubectl explain shows the valid fields)",
    )
}

/// kube-cel reports list items as `a.b[0].c` or `a.b.0.c` depending on the
/// rule; the API server always uses brackets.
fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('.').enumerate() {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn check_metadata(metadata: Option<&Value>, problems: &mut Vec<Problem>) {
    let Some(meta) = metadata.and_then(Value::as_object) else {
        problems.push(problem("metadata", "Required value: set metadata.name"));
        return;
    };
    if meta.get("name").is_none() && meta.get("generateName").is_none() {
        problems.push(problem("metadata.name", "Required value"));
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against the structural schema `schema`, in the words of
/// the API server's field errors, and prunes unknown fields from `value`.
fn check(schema: &Value, value: &mut Value, path: &str, problems: &mut Vec<Problem>) {
    let Some(s) = schema.as_object() else { return };
    if value.is_null() {
        if s.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        problems.push(problem(path, "Invalid value: \"null\": must not be null"));
        return;
    }
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            problems.push(problem(
                path,
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer or string",
                    type_name(value)
                ),
            ));
        }
        return;
    }
    let expected = s.get("type").and_then(Value::as_str);
    let actual = type_name(value);
    let type_ok = match expected {
        None => true,
        Some("number") => value.is_number(),
        Some(t) => t == actual,
    };
    if !type_ok {
        problems.push(problem(
            path,
            format!(
                "Invalid value: \"{actual}\": {path} in body must be of type {}: \"{actual}\"",
                expected.unwrap_or_default()
            ),
        ));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        problems.push(problem(
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                value,
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::String(text) => check_string(s, text, path, problems),
        Value::Number(n) => check_number(s, n, path, problems),
        Value::Array(items) => {
            check_array_bounds(s, items.len(), path, problems);
            check_list_map_keys(s, items, path, problems);
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        Value::Object(map) => check_object(s, map, path, problems),
        _ => {}
    }
}

fn check_string(s: &Map<String, Value>, text: &str, path: &str, problems: &mut Vec<Problem>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        problems.push(problem(
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        problems.push(problem(
            path,
            format!("Invalid value: {text:?}: {path} in body should be at least {min} chars long"),
        ));
    }
}

fn check_number(
    s: &Map<String, Value>,
    n: &serde_json::Number,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let Some(x) = n.as_f64() else { return };
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && x < min
    {
        problems.push(problem(
            path,
            format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}"),
        ));
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64)
        && x > max
    {
        problems.push(problem(
            path,
            format!("Invalid value: {n}: {path} in body should be less than or equal to {max}"),
        ));
    }
}

fn check_array_bounds(s: &Map<String, Value>, len: usize, path: &str, problems: &mut Vec<Problem>) {
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && len as u64 > max
    {
        problems.push(problem(
            path,
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (len as u64) < min
    {
        problems.push(problem(
            path,
            format!("Invalid value: {len}: {path} in body should have at least {min} items"),
        ));
    }
}

/// `x-kubernetes-list-type: map` lists: the key fields identify an item, and
/// the API server refuses a second item with the same keys.
fn check_list_map_keys(
    s: &Map<String, Value>,
    items: &[Value],
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if s.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return;
    }
    let Some(keys) = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
    else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let key: Map<String, Value> = keys
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|k| item.get(k).map(|v| (k.to_string(), v.clone())))
            .collect();
        let key = Value::Object(key).to_string();
        if !seen.insert(key.clone()) {
            problems.push(problem(
                &format!("{path}[{i}]"),
                format!("Duplicate value: {key}"),
            ));
        }
    }
}

fn check_object(
    s: &Map<String, Value>,
    map: &mut Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                problems.push(problem(&format!("{path}.{key}"), "Required value"));
            }
        }
    }
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let mut unknown = Vec::new();
        for (key, child) in map.iter_mut() {
            let child_path = format!("{path}.{key}");
            match props.get(key) {
                Some(sub) => check(sub, child, &child_path, problems),
                None if preserve => {}
                None => unknown.push(key.clone()),
            }
        }
        for key in unknown {
            problems.push(unknown_field(&format!("{path}.{key}")));
            map.remove(&key);
        }
    } else if let Some(additional) = s.get("additionalProperties") {
        if additional.is_object() {
            for (key, child) in map.iter_mut() {
                check(additional, child, &format!("{path}[{key}]"), problems);
            }
        }
    } else if !preserve
        && !map.is_empty()
        && s.get("type").and_then(Value::as_str) == Some("object")
    {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            problems.push(unknown_field(&format!("{path}.{key}")));
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn basic() -> Value {
        json!({
            "apiVersion": "mlctl.io/v1alpha1",
            "kind": "RankingModel",
            "metadata": {"name": "ranker"},
            "spec": {
                "model": {"version": "2026-11-20.3", "uri": "s3://m/r/model.txt", "format": "lightgbm"},
                "runtime": {"image": "ghcr.io/mlctl/runtime:1"},
                "replicas": 2
            }
        })
    }

    fn problems(doc: &Value) -> Vec<Problem> {
        match validate_document(doc) {
            Outcome::Checked { problems, .. } => problems,
            Outcome::NotOurs { .. } => panic!("expected an mlctl object"),
        }
    }

    #[test]
    fn a_valid_model_has_no_problems() {
        assert_eq!(problems(&basic()), vec![]);
    }

    #[test]
    fn other_kinds_are_not_checked() {
        let doc = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(
            validate_document(&doc),
            Outcome::NotOurs {
                kind: Some("ConfigMap".into())
            }
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let mut doc = basic();
        doc["spec"]["model"]["verison"] = json!("x");
        let p = problems(&doc);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "spec.model.verison");
        assert!(p[0].message.starts_with("unknown field"));
    }

    #[test]
    fn type_errors_use_the_api_server_wording() {
        let mut doc = basic();
        doc["spec"]["replicas"] = json!("three");
        let p = problems(&doc);
        assert_eq!(p[0].field, "spec.replicas");
        assert!(p[0].message.contains("must be of type integer"), "{p:?}");
    }

    #[test]
    fn enums_list_the_supported_values() {
        let mut doc = basic();
        doc["spec"]["model"]["format"] = json!("sklearn");
        let p = problems(&doc);
        assert_eq!(p[0].field, "spec.model.format");
        assert!(
            p[0].message.contains("supported values: \"lightgbm\""),
            "{p:?}"
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        let mut doc = basic();
        doc["spec"]["model"].as_object_mut().unwrap().remove("uri");
        let p = problems(&doc);
        assert_eq!(p[0].field, "spec.model.uri");
        assert_eq!(p[0].message, "Required value");
    }

    #[test]
    fn cel_rules_run_locally() {
        let mut doc = basic();
        doc["spec"]["model"]["version"] = json!("Not_Valid");
        let p = problems(&doc);
        assert!(
            p.iter().any(|p| p
                .message
                .contains("spec.model.version must be 1-63 characters")),
            "{p:?}"
        );
    }

    #[test]
    fn names_must_fit_the_derived_service_names() {
        let mut doc = basic();
        doc["metadata"]["name"] = json!("a".repeat(53));
        let p = problems(&doc);
        assert!(
            p[0].message.starts_with("metadata.name must be at most 52"),
            "{p:?}"
        );
    }

    #[test]
    fn paths_use_brackets_for_list_items() {
        assert_eq!(
            normalize_path("spec.rollout.steps.1"),
            "spec.rollout.steps[1]"
        );
        assert_eq!(normalize_path("spec.model"), "spec.model");
        assert_eq!(normalize_path(""), "");
    }
}
