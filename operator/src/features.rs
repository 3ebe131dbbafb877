//! The features gate: is every FeaturePipeline a RankingModel reads from
//! present, on the schema the model was trained on, carrying the features it
//! reads, and fresh enough?
//!
//! [`evaluate`] is pure: the RankingModel reconciler feeds it the model's
//! `spec.features` and the pipelines of the model's namespace, and turns the
//! [`FeaturesVerdict`] into the `FeaturesReady` condition and the rollout
//! pause. [`dependents`] is the other direction, for the watch: which models
//! must be reconciled again when a pipeline changes.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use mlctl_crds::rankingmodel::{FeatureDependency, FeatureGate};
use mlctl_crds::{FeaturePipeline, parse_duration};

use crate::controller::stored::StoredModel;
use crate::pipeline::{FreshnessReference, freshness_reference};

/// Condition type written on the RankingModel.
pub const CONDITION: &str = "FeaturesReady";

/// Reasons of the `FeaturesReady` condition.
pub mod reason {
    /// Every dependency is satisfied.
    pub const READY: &str = "FeaturesReady";
    /// No FeaturePipeline of that name in the model's namespace.
    pub const PIPELINE_MISSING: &str = "PipelineMissing";
    /// The pipeline has never completed a successful run.
    pub const NEVER_SUCCEEDED: &str = "PipelineNeverSucceeded";
    /// The features are older than allowed.
    pub const NOT_FRESH: &str = "PipelineNotFresh";
    /// The pipeline declares or writes another schema version.
    pub const SCHEMA_MISMATCH: &str = "SchemaVersionMismatch";
    /// A feature the model reads is not in the pipeline's schema.
    pub const FEATURE_MISSING: &str = "FeatureMissing";
    /// `spec.features[].maxStaleness` of the model does not parse.
    pub const INVALID_MAX_STALENESS: &str = "InvalidMaxStaleness";
}

/// The verdict on a model's feature dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesVerdict {
    /// Every dependency is satisfied.
    pub ready: bool,
    /// CamelCase reason for the FeaturesReady condition (see [`reason`]); the
    /// reason of the first failing dependency when several fail.
    pub reason: String,
    /// For people: names the pipeline, what is wrong and the fix. Every
    /// failing dependency is listed, separated by `"; "`.
    pub message: String,
    /// Some dependency has `gate: Strict` (then even the first deployment waits).
    pub strict: bool,
    /// When the verdict changes by itself with time (a fresh pipeline going
    /// stale under the allowed staleness): requeue at this time.
    pub wake_at: Option<Timestamp>,
}

/// One thing wrong with one dependency.
struct Problem {
    reason: &'static str,
    message: String,
}

/// Evaluates a model's feature dependencies at `now`. `pipelines` are the
/// FeaturePipelines of the model's namespace (others must not be passed).
/// `None` when the model has no feature dependencies.
pub fn evaluate(
    deps: &[FeatureDependency],
    pipelines: &[FeaturePipeline],
    now: Timestamp,
) -> Option<FeaturesVerdict> {
    if deps.is_empty() {
        return None;
    }
    let strict = deps.iter().any(|d| d.gate == Some(FeatureGate::Strict));
    let mut problems = Vec::new();
    let mut wake_at: Option<Timestamp> = None;
    let mut fresh_notes = Vec::new();
    for dep in deps {
        let Some(pipeline) = pipelines.iter().find(|p| p.name_any() == dep.pipeline) else {
            problems.push(Problem {
                reason: reason::PIPELINE_MISSING,
                message: format!(
                    "FeaturePipeline {:?} does not exist in this namespace: create it, or fix spec.features[].pipeline",
                    dep.pipeline
                ),
            });
            continue;
        };
        problems.extend(schema_problem(dep, pipeline));
        problems.extend(feature_problem(dep, pipeline));
        match freshness(dep, pipeline, now) {
            Ok(fresh) => {
                if let Some(stale_at) = fresh.stale_at {
                    wake_at = Some(wake_at.map_or(stale_at, |w| w.min(stale_at)));
                }
                fresh_notes.push(fresh.note);
            }
            Err(problem) => problems.push(problem),
        }
    }
    let verdict = match problems.first() {
        None => FeaturesVerdict {
            ready: true,
            reason: reason::READY.into(),
            message: format!(
                "all {} feature pipeline(s) are fresh and on the expected schema: {}",
                deps.len(),
                fresh_notes.join(", ")
            ),
            strict,
            wake_at,
        },
        Some(first) => FeaturesVerdict {
            ready: false,
            reason: first.reason.into(),
            message: problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            strict,
            wake_at,
        },
    };
    Some(verdict)
}

/// The schema that counts is the one written (`status.schema`, the version of
/// the last successful run) and the one the next run writes
/// (`spec.features.schemaVersion`): both must be the model's. A spec change
/// that has not run yet does not unblock a model waiting for it, and a
/// pending change away from the model's version blocks it before the run.
fn schema_problem(dep: &FeatureDependency, pipeline: &FeaturePipeline) -> Option<Problem> {
    let name = &dep.pipeline;
    let want = dep.schema_version;
    let declared = pipeline.spec.features.schema_version;
    let written = pipeline
        .status
        .as_ref()
        .and_then(|s| s.schema.as_ref())
        .map(|s| s.version);
    let message = match written {
        Some(written) if written != want && declared == want => format!(
            "FeaturePipeline {name:?} declares schema version {want} but its last successful run wrote version {written}: \
             run it (mlctl pipeline run {name}) and wait for it to succeed"
        ),
        Some(written) if written == want && declared != want => format!(
            "FeaturePipeline {name:?} writes schema version {written} but its spec now declares {declared}, which the model \
             (schemaVersion {want}) cannot read: roll out a model trained on version {declared}, or revert the pipeline's spec.features.schemaVersion"
        ),
        Some(written) if written != want => format!(
            "FeaturePipeline {name:?} writes schema version {written} (spec declares {declared}) but the model was trained on \
             version {want}: roll out a model trained on version {declared}, or set spec.features[].schemaVersion to match"
        ),
        None if declared != want => format!(
            "FeaturePipeline {name:?} declares schema version {declared} but the model was trained on version {want}: \
             roll out a model trained on version {declared}, or set spec.features[].schemaVersion to match"
        ),
        _ => return None,
    };
    Some(Problem {
        reason: reason::SCHEMA_MISMATCH,
        message,
    })
}

/// Feature names the model reads that the pipeline's schema lacks. The model
/// side carries names only, so types are not compared.
fn feature_problem(dep: &FeatureDependency, pipeline: &FeaturePipeline) -> Option<Problem> {
    let fields = &pipeline.spec.features.fields;
    let missing: Vec<&str> = dep
        .features
        .iter()
        .filter(|f| !fields.iter().any(|field| &field.name == *f))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(Problem {
        reason: reason::FEATURE_MISSING,
        message: format!(
            "FeaturePipeline {:?} has no feature(s) {}: add them to its spec.features.fields, or remove them from the model's spec.features[].features",
            dep.pipeline,
            missing.join(", ")
        ),
    })
}

/// A dependency that is fresh now.
struct Fresh {
    /// When it goes stale by itself, if a staleness limit applies.
    stale_at: Option<Timestamp>,
    /// `name (age 5m of 2h)` for the Ready message.
    note: String,
}

/// Freshness: the pipeline's own `Fresh` condition, and the allowed
/// staleness (the model's `maxStaleness`, else the pipeline's
/// `spec.freshness.maxStaleness`) measured from the pipeline's freshness
/// reference ([`freshness_reference`]: the watermark, else the last
/// successful run; for a streaming pipeline "current" while it runs, else
/// when it stopped).
fn freshness(
    dep: &FeatureDependency,
    pipeline: &FeaturePipeline,
    now: Timestamp,
) -> Result<Fresh, Problem> {
    let name = &dep.pipeline;
    let status = pipeline.status.as_ref();
    let reference = match status.and_then(freshness_reference) {
        // The pipeline's status changes when the stream stops, which
        // re-enqueues this model: no wake-up time.
        Some(FreshnessReference::Current) => {
            return Ok(Fresh {
                stale_at: None,
                note: format!("{name} (streaming)"),
            });
        }
        Some(FreshnessReference::Since(t)) => t,
        None if pipeline.spec.trigger.streaming.is_some() => {
            return Err(Problem {
                reason: reason::NEVER_SUCCEEDED,
                message: format!(
                    "streaming FeaturePipeline {name:?} has not run yet (its workload has no Ready pod): \
                     see mlctl pipeline status {name}"
                ),
            });
        }
        None => {
            return Err(Problem {
                reason: reason::NEVER_SUCCEEDED,
                message: format!(
                    "FeaturePipeline {name:?} has not completed a successful run yet (no watermark or lastSuccessfulTime): \
                     start one with mlctl pipeline run {name} --wait"
                ),
            });
        }
    };
    let max = match &dep.max_staleness {
        Some(text) => match parse_duration(text) {
            Ok(max) => Some((max, "the model's maxStaleness")),
            Err(e) => {
                return Err(Problem {
                    reason: reason::INVALID_MAX_STALENESS,
                    message: format!("spec.features[pipeline={name}].maxStaleness: {e}"),
                });
            }
        },
        None => pipeline
            .spec
            .freshness
            .as_ref()
            .and_then(|f| parse_duration(&f.max_staleness).ok())
            .map(|max| (max, "the pipeline's freshness objective")),
    };
    let age = now.duration_since(reference);
    let age_text = human(age);
    if let Some(fresh) = status.and_then(|s| s.conditions.get("Fresh"))
        && fresh.status == "False"
    {
        return Err(Problem {
            reason: reason::NOT_FRESH,
            message: format!(
                "FeaturePipeline {name:?} is not fresh ({}: {}; features are {age_text} old): \
                 fix the pipeline or run it (mlctl pipeline status {name}; mlctl pipeline run {name})",
                fresh.reason, fresh.message
            ),
        });
    }
    let Some((max, source)) = max else {
        return Ok(Fresh {
            stale_at: None,
            note: format!("{name} (age {age_text})"),
        });
    };
    let stale_at = SignedDuration::try_from(max)
        .ok()
        .and_then(|max| reference.checked_add(max).ok());
    let max_text = human(SignedDuration::try_from(max).unwrap_or(SignedDuration::MAX));
    match stale_at {
        Some(stale_at) if stale_at > now => Ok(Fresh {
            stale_at: Some(stale_at),
            note: format!("{name} (age {age_text} of {max_text})"),
        }),
        // Past the limit, or a limit so large that it never expires.
        Some(_) => Err(Problem {
            reason: reason::NOT_FRESH,
            message: format!(
                "FeaturePipeline {name:?} has features {age_text} old (watermark {reference}), more than {source} of {max_text}: \
                 run the pipeline (mlctl pipeline run {name}) or raise spec.features[].maxStaleness"
            ),
        }),
        None => Ok(Fresh {
            stale_at: None,
            note: format!("{name} (age {age_text})"),
        }),
    }
}

/// A duration for people, to the second: `1h2m3s`, `45s`, `-5s`.
fn human(d: SignedDuration) -> String {
    let secs = d.as_secs();
    let (sign, secs) = if secs < 0 {
        ("-", secs.unsigned_abs())
    } else {
        ("", secs.unsigned_abs())
    };
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.len() == sign.len() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// `(namespace, name)` of the models in `namespace` that read from the
/// pipeline `pipeline`: the mapper of the FeaturePipeline watch.
pub fn dependents<'a>(
    models: impl IntoIterator<Item = &'a StoredModel>,
    namespace: &str,
    pipeline: &str,
) -> Vec<(String, String)> {
    models
        .into_iter()
        .filter(|m| m.namespace().as_deref() == Some(namespace))
        .filter(|m| m.reads_pipeline(pipeline))
        .map(|m| (namespace.to_string(), m.name_any()))
        .collect()
}

/// Adds the FeaturePipeline watch of one scope (`pipelines`, which also
/// keeps the scope's pipeline store current) to the RankingModel controller:
/// a changed pipeline re-enqueues
/// the models of its namespace that read from it, found in the controller's
/// own cache of models (no API calls, no polling). Pipelines are read
/// through `DeserializeGuard`, so one that does not deserialize still
/// re-enqueues its dependents (which then see it as missing) and never
/// breaks the watch.
pub fn watch_pipelines(
    controller: Controller<StoredModel>,
    pipelines: impl futures::Stream<Item = Result<DeserializeGuard<FeaturePipeline>, watcher::Error>>
    + Send
    + 'static,
) -> Controller<StoredModel> {
    let models = controller.store();
    controller.watches_stream(pipelines, move |pipeline| {
        let Some(namespace) = pipeline.namespace() else {
            return Vec::new();
        };
        let name = pipeline.name_any();
        let state = models.state();
        let found = dependents(state.iter().map(|m| &**m), &namespace, &name);
        found
            .into_iter()
            .map(|(ns, model)| ObjectRef::new(&model).within(&ns))
            .collect::<Vec<_>>()
    })
}

/// How long until `at`, for a requeue (zero when it is past).
pub fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_crds::rankingmodel::FeatureGate;
    use serde_json::json;

    const NOW: &str = "2026-11-25T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A pipeline with schema version 3 and features a, b; `status` merged in.
    fn pipeline(name: &str, status: serde_json::Value) -> FeaturePipeline {
        serde_json::from_value(json!({
            "apiVersion": "mlctl.io/v1alpha1",
            "kind": "FeaturePipeline",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "trigger": {"schedule": {"cron": "@hourly"}},
                "engine": {"container": {"image": "busybox"}},
                "features": {
                    "entityKeys": ["doc_id"],
                    "schemaVersion": 3,
                    "fields": [{"name": "a", "dtype": "float32"}, {"name": "b", "dtype": "int64"}]
                },
                "freshness": {"maxStaleness": "2h"}
            },
            "status": status
        }))
        .unwrap()
    }

    /// Fresh, written schema 3, watermark 30 minutes before NOW.
    fn healthy(name: &str) -> FeaturePipeline {
        pipeline(
            name,
            json!({
                "watermark": "2026-11-25T11:30:00Z",
                "lastSuccessfulTime": "2026-11-25T11:40:00Z",
                "schema": {"version": 3, "hash": "x"},
                "conditions": [{"type": "Fresh", "status": "True", "reason": "WithinObjective",
                    "message": "ok", "lastTransitionTime": "2026-11-25T11:40:00Z"}]
            }),
        )
    }

    fn dep(name: &str) -> FeatureDependency {
        FeatureDependency {
            pipeline: name.into(),
            schema_version: 3,
            max_staleness: None,
            features: vec!["a".into(), "b".into()],
            gate: None,
        }
    }

    fn verdict(deps: &[FeatureDependency], pipelines: &[FeaturePipeline]) -> FeaturesVerdict {
        evaluate(deps, pipelines, now()).unwrap()
    }

    #[test]
    fn no_dependencies_no_verdict() {
        assert_eq!(evaluate(&[], &[healthy("p")], now()), None);
    }

    #[test]
    fn ready_wakes_when_the_pipeline_objective_runs_out() {
        let v = verdict(&[dep("p")], &[healthy("p")]);
        assert!(v.ready, "{v:?}");
        assert_eq!(v.reason, "FeaturesReady");
        assert!(!v.strict);
        // watermark 11:30 + the pipeline's 2h
        assert_eq!(v.wake_at, Some(at("2026-11-25T13:30:00Z")));
        assert!(v.message.contains("p (age 30m of 2h)"), "{}", v.message);
    }

    #[test]
    fn the_model_max_staleness_is_stricter_and_sets_the_wake_time() {
        let mut d = dep("p");
        d.max_staleness = Some("45m".into());
        let v = verdict(&[d], &[healthy("p")]);
        assert!(v.ready);
        assert_eq!(v.wake_at, Some(at("2026-11-25T12:15:00Z")));
    }

    #[test]
    fn wake_time_is_the_earliest_of_all_fresh_dependencies() {
        let mut d1 = dep("p");
        d1.max_staleness = Some("1h".into());
        let mut d2 = dep("q");
        d2.max_staleness = Some("40m".into());
        let v = verdict(&[d1, d2], &[healthy("p"), healthy("q")]);
        assert!(v.ready);
        assert_eq!(v.wake_at, Some(at("2026-11-25T12:10:00Z")));
    }

    #[test]
    fn stale_under_the_model_max_staleness_although_the_pipeline_says_fresh() {
        let mut d = dep("p");
        d.max_staleness = Some("20m".into());
        let v = verdict(&[d], &[healthy("p")]);
        assert!(!v.ready);
        assert_eq!(v.reason, "PipelineNotFresh");
        assert!(v.message.contains("30m old"), "{}", v.message);
        assert!(
            v.message.contains("the model's maxStaleness of 20m"),
            "{}",
            v.message
        );
        assert_eq!(
            v.wake_at, None,
            "a stale dependency does not become fresh by itself"
        );
    }

    #[test]
    fn the_pipeline_fresh_condition_false_blocks() {
        let p = pipeline(
            "p",
            json!({
                "watermark": "2026-11-25T11:50:00Z",
                "schema": {"version": 3, "hash": "x"},
                "conditions": [{"type": "Fresh", "status": "False", "reason": "WatermarkBehind",
                    "message": "watermark 3h behind", "lastTransitionTime": "2026-11-25T11:40:00Z"}]
            }),
        );
        let v = verdict(&[dep("p")], &[p]);
        assert!(!v.ready);
        assert_eq!(v.reason, "PipelineNotFresh");
        assert!(
            v.message.contains("WatermarkBehind: watermark 3h behind"),
            "{}",
            v.message
        );
        assert!(v.message.contains("mlctl pipeline run p"), "{}", v.message);
    }

    /// A streaming pipeline as the operator writes it: no watermark, ever.
    fn streaming(name: &str, status: serde_json::Value) -> FeaturePipeline {
        let mut p = pipeline(name, status);
        p.spec.trigger.schedule = None;
        p.spec.trigger.streaming = Some(Default::default());
        p.status.as_mut().unwrap().trigger = Some("streaming".into());
        p
    }

    #[test]
    fn a_running_stream_is_current_and_a_stopped_one_ages_from_its_stop() {
        let running = streaming(
            "p",
            json!({
                "lastSuccessfulTime": "2026-11-24T08:00:00Z",
                "schema": {"version": 3, "hash": "x"},
                "conditions": [{"type": "Fresh", "status": "True", "reason": "Streaming",
                    "message": "runs", "lastTransitionTime": "2026-11-24T08:00:00Z"}]
            }),
        );
        let mut d = dep("p");
        d.max_staleness = Some("10m".into());
        let v = verdict(std::slice::from_ref(&d), &[running]);
        assert!(v.ready, "{v:?}");
        assert_eq!(v.wake_at, None);
        assert!(v.message.contains("p (streaming)"), "{}", v.message);

        let stopped = streaming(
            "p",
            json!({
                "lastSuccessfulTime": "2026-11-25T11:55:00Z",
                "schema": {"version": 3, "hash": "x"},
                "conditions": [{"type": "Fresh", "status": "True", "reason": "StreamStopped",
                    "message": "stopped", "lastTransitionTime": "2026-11-25T11:55:00Z"}]
            }),
        );
        let v = verdict(std::slice::from_ref(&d), std::slice::from_ref(&stopped));
        assert!(v.ready, "5m of 10m: {v:?}");
        assert_eq!(v.wake_at, Some(at("2026-11-25T12:05:00Z")));
        d.max_staleness = Some("2m".into());
        let v = verdict(&[d], &[stopped]);
        assert_eq!(v.reason, "PipelineNotFresh", "{v:?}");

        let never = streaming("p", json!({"schema": {"version": 3, "hash": "x"}}));
        let v = verdict(&[dep("p")], &[never]);
        assert_eq!(v.reason, "PipelineNeverSucceeded");
        assert!(v.message.contains("has not run yet"), "{}", v.message);
    }

    #[test]
    fn last_successful_time_counts_without_a_watermark() {
        let p = pipeline(
            "p",
            json!({"lastSuccessfulTime": "2026-11-25T11:00:00Z", "schema": {"version": 3, "hash": "x"}}),
        );
        let v = verdict(&[dep("p")], &[p]);
        assert!(v.ready, "{v:?}");
        assert_eq!(v.wake_at, Some(at("2026-11-25T13:00:00Z")));
    }

    #[test]
    fn missing_pipeline() {
        let v = verdict(&[dep("nope")], &[healthy("p")]);
        assert!(!v.ready);
        assert_eq!(v.reason, "PipelineMissing");
        assert!(
            v.message.contains("\"nope\" does not exist"),
            "{}",
            v.message
        );
    }

    #[test]
    fn never_succeeded() {
        let v = verdict(&[dep("p")], &[pipeline("p", json!({}))]);
        assert_eq!(v.reason, "PipelineNeverSucceeded");
        assert!(
            v.message.contains("mlctl pipeline run p --wait"),
            "{}",
            v.message
        );
    }

    #[test]
    fn schema_version_of_the_model_differs() {
        let mut d = dep("p");
        d.schema_version = 2;
        let v = verdict(&[d], &[healthy("p")]);
        assert_eq!(v.reason, "SchemaVersionMismatch");
        assert!(
            v.message.contains("writes schema version 3"),
            "{}",
            v.message
        );
        assert!(v.message.contains("trained on version 2"), "{}", v.message);
    }

    #[test]
    fn a_spec_change_that_has_not_run_does_not_unblock() {
        let mut d = dep("p");
        d.schema_version = 3;
        let mut p = healthy("p");
        p.status.as_mut().unwrap().schema.as_mut().unwrap().version = 2;
        let v = verdict(&[d], &[p]);
        assert_eq!(v.reason, "SchemaVersionMismatch");
        assert!(
            v.message.contains("last successful run wrote version 2"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_pending_spec_change_away_from_the_model_blocks() {
        let mut p = healthy("p");
        p.spec.features.schema_version = 4;
        let v = verdict(&[dep("p")], &[p]);
        assert_eq!(v.reason, "SchemaVersionMismatch");
        assert!(v.message.contains("spec now declares 4"), "{}", v.message);
    }

    #[test]
    fn without_a_written_schema_the_spec_counts() {
        let p = pipeline("p", json!({"watermark": "2026-11-25T11:30:00Z"}));
        assert!(verdict(&[dep("p")], std::slice::from_ref(&p)).ready);
        let mut d = dep("p");
        d.schema_version = 1;
        assert_eq!(verdict(&[d], &[p]).reason, "SchemaVersionMismatch");
    }

    #[test]
    fn feature_missing_names_every_missing_feature() {
        let mut d = dep("p");
        d.features = vec!["a".into(), "c".into(), "d".into()];
        let v = verdict(&[d], &[healthy("p")]);
        assert_eq!(v.reason, "FeatureMissing");
        assert!(v.message.contains("no feature(s) c, d"), "{}", v.message);
    }

    #[test]
    fn invalid_max_staleness_names_the_field() {
        let mut d = dep("p");
        d.max_staleness = Some("2 days".into());
        let v = verdict(&[d], &[healthy("p")]);
        assert_eq!(v.reason, "InvalidMaxStaleness");
        assert!(
            v.message.contains("spec.features[pipeline=p].maxStaleness"),
            "{}",
            v.message
        );
    }

    #[test]
    fn every_failure_is_reported_with_the_first_reason() {
        let mut stale = dep("p");
        stale.max_staleness = Some("10m".into());
        let v = verdict(&[dep("gone"), stale], &[healthy("p")]);
        assert!(!v.ready);
        assert_eq!(v.reason, "PipelineMissing");
        let parts: Vec<&str> = v.message.split("; ").collect();
        assert_eq!(parts.len(), 2, "{}", v.message);
        assert!(
            parts[1].contains("\"p\" has features 30m old"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_fresh_dependency_still_sets_the_wake_time_when_another_fails() {
        let v = verdict(&[dep("gone"), dep("p")], &[healthy("p")]);
        assert!(!v.ready);
        assert_eq!(v.wake_at, Some(at("2026-11-25T13:30:00Z")));
    }

    #[test]
    fn strict_when_any_dependency_is_strict() {
        let mut d = dep("p");
        d.gate = Some(FeatureGate::Strict);
        let v = verdict(&[dep("p"), d], &[healthy("p")]);
        assert!(v.strict);
        let mut r = dep("p");
        r.gate = Some(FeatureGate::Rollouts);
        assert!(!verdict(&[r], &[healthy("p")]).strict);
    }

    #[test]
    fn without_any_staleness_limit_only_the_condition_counts() {
        let mut p = healthy("p");
        p.spec.freshness = None;
        let v = verdict(&[dep("p")], &[p]);
        assert!(v.ready);
        assert_eq!(v.wake_at, None);
    }

    #[test]
    fn dependents_are_models_of_the_namespace_reading_the_pipeline() {
        let model = |ns: &str, name: &str, pipeline: &str| -> mlctl_crds::RankingModel {
            serde_json::from_value(json!({
                "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "model": {"version": "1", "uri": "s3://m/1", "format": "lightgbm"},
                    "runtime": {"image": "r"},
                    "features": [{"pipeline": pipeline, "schemaVersion": 1}]
                }
            }))
            .unwrap()
        };
        let models = [
            model("ns", "m1", "p"),
            model("ns", "m2", "q"),
            model("other", "m3", "p"),
        ]
        .map(|m| StoredModel::new(DeserializeGuard(Ok(m))));
        assert_eq!(
            dependents(&models, "ns", "p"),
            vec![("ns".to_string(), "m1".to_string())]
        );
    }

    #[test]
    fn until_is_zero_in_the_past() {
        assert_eq!(until(at("2026-11-25T11:00:00Z"), now()), Duration::ZERO);
        assert_eq!(
            until(at("2026-11-25T12:01:00Z"), now()),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(SignedDuration::from_secs(0)), "0s");
        assert_eq!(human(SignedDuration::from_secs(3723)), "1h2m3s");
        assert_eq!(human(SignedDuration::from_secs(-5)), "-5s");
    }
}
