use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

fn metric(name: &str) -> Value {
    json!({
        "name": name,
        "provider": {"web": {"url": "http://127.0.0.1:1/m", "jsonPath": "$.v"}},
        "successCondition": "result > 0"
    })
}

fn spec(analysis: Value, steps: Value) -> RankingModelSpec {
    serde_json::from_value(json!({
        "model": {"uri": "s3://m/1", "format": "lightgbm", "version": "1"},
        "runtime": {"image": "runtime:1"},
        "rollout": {"steps": steps, "analysis": analysis},
    }))
    .expect("a valid spec")
}

fn metrics(names: &[&str]) -> Vec<AnalysisMetric> {
    names
        .iter()
        .map(|n| serde_json::from_value(metric(n)).unwrap())
        .collect()
}

/// A namespace's templates by name.
struct Templates(BTreeMap<&'static str, Vec<AnalysisMetric>>);

impl Templates {
    fn lookup(&self) -> impl Fn(&str) -> Found + '_ {
        |name| match self.0.get(name) {
            Some(m) => Found::Metrics(m.clone()),
            None => Found::Missing,
        }
    }
}

fn names(metrics: &[AnalysisMetric]) -> Vec<&str> {
    metrics.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn without_references_the_spec_is_borrowed_unchanged() {
    let s = spec(
        json!({"templates": [metric("a")]}),
        json!([{"analysis": {"metrics": ["a"]}}]),
    );
    let none = Templates(BTreeMap::new());
    assert!(matches!(effective(&s, none.lookup()), Ok(Cow::Borrowed(_))));
}

#[test]
fn referenced_metrics_join_templates_or_background_metrics() {
    let s = spec(
        json!({
            "metrics": [metric("inline-bg")],
            "templates": [metric("inline")],
            "templateRefs": [{"name": "shared"}, {"name": "slo", "background": true}],
        }),
        json!([{"analysis": {"metrics": ["inline", "offline-ndcg"]}}]),
    );
    let t = Templates(BTreeMap::from([
        ("shared", metrics(&["offline-ndcg", "smoke"])),
        ("slo", metrics(&["latency-p99"])),
    ]));
    let resolved = effective(&s, t.lookup()).expect("resolves");
    let a = resolved
        .rollout
        .as_ref()
        .unwrap()
        .analysis
        .as_ref()
        .unwrap();
    assert_eq!(names(&a.metrics), ["inline-bg", "latency-p99"]);
    assert_eq!(names(&a.templates), ["inline", "offline-ndcg", "smoke"]);
    assert!(
        a.template_refs.is_empty(),
        "the state machine sees no references"
    );
    // Everything else is the model's own.
    assert_eq!(
        resolved.rollout.as_ref().unwrap().steps,
        s.rollout.as_ref().unwrap().steps
    );
    assert_eq!(resolved.model, s.model);
}

#[test]
fn a_missing_template_names_it_and_the_fix() {
    let s = spec(
        json!({"templateRefs": [{"name": "shared"}, {"name": "gone"}]}),
        json!([{"analysis": {"metrics": ["smoke"]}}]),
    );
    let t = Templates(BTreeMap::from([("shared", metrics(&["smoke"]))]));
    let problems = effective(&s, t.lookup()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].reason, reason::TEMPLATE_NOT_FOUND);
    assert!(
        problems[0].message.contains("\"gone\""),
        "{}",
        problems[0].message
    );
    assert!(problems[0].message.contains("create it"));
}

#[test]
fn an_unreadable_template_is_reported_with_its_error() {
    let s = spec(json!({"templateRefs": [{"name": "bad"}]}), json!([]));
    let problems =
        effective(&s, |_| Found::Unreadable("missing field `metrics`".into())).unwrap_err();
    assert_eq!(problems[0].reason, reason::TEMPLATE_INVALID);
    assert!(problems[0].message.contains("missing field `metrics`"));
}

#[test]
fn a_name_defined_twice_names_both_places() {
    // inline vs template
    let s = spec(
        json!({"templates": [metric("smoke")], "templateRefs": [{"name": "shared"}]}),
        json!([{"analysis": {"metrics": ["smoke"]}}]),
    );
    let t = Templates(BTreeMap::from([("shared", metrics(&["smoke"]))]));
    let problems = effective(&s, t.lookup()).unwrap_err();
    assert_eq!(problems[0].reason, reason::DEFINED_TWICE);
    let m = &problems[0].message;
    assert!(
        m.contains("\"smoke\"")
            && m.contains("spec.rollout.analysis.templates")
            && m.contains("AnalysisTemplate \"shared\""),
        "{m}"
    );
    // two templates
    let s = spec(
        json!({"templateRefs": [{"name": "one"}, {"name": "two", "background": true}]}),
        json!([]),
    );
    let t = Templates(BTreeMap::from([
        ("one", metrics(&["smoke"])),
        ("two", metrics(&["smoke"])),
    ]));
    let problems = effective(&s, t.lookup()).unwrap_err();
    let m = &problems[0].message;
    assert!(
        m.contains("AnalysisTemplate \"one\"") && m.contains("AnalysisTemplate \"two\""),
        "{m}"
    );
}

#[test]
fn an_analysis_naming_an_undefined_metric_is_held_not_skipped() {
    let s = spec(
        json!({"templateRefs": [{"name": "shared"}]}),
        json!([{"setWeight": 10}, {"analysis": {"metrics": ["smoke", "typo"]}}]),
    );
    let t = Templates(BTreeMap::from([("shared", metrics(&["smoke"]))]));
    let problems = effective(&s, t.lookup()).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, reason::NOT_DEFINED);
    let m = &problems[0].message;
    assert!(
        m.contains("spec.rollout.steps[1].analysis") && m.contains("\"typo\""),
        "{m}"
    );
}

#[test]
fn summary_keeps_the_first_reason_and_every_message() {
    let problems = vec![
        Problem {
            reason: reason::TEMPLATE_NOT_FOUND,
            message: "a".into(),
        },
        Problem {
            reason: reason::DEFINED_TWICE,
            message: "b".into(),
        },
    ];
    assert_eq!(
        summary(&problems),
        (reason::TEMPLATE_NOT_FOUND, "a; b".into())
    );
}

#[test]
fn referenced_lists_the_templates_by_name() {
    let s = spec(
        json!({"templateRefs": [{"name": "shared"}, {"name": "latency"}]}),
        json!([]),
    );
    assert_eq!(referenced(&s).collect::<Vec<_>>(), ["shared", "latency"]);
    let plain = spec(json!({"templates": [metric("a")]}), json!([]));
    assert_eq!(referenced(&plain).count(), 0);
}
