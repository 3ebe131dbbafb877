//! Shared AnalysisTemplates: a model's `spec.rollout.analysis.templateRefs`
//! resolved, before the rollout state machine runs, into the effective
//! spec it decides from (the templates' metrics added to
//! `analysis.templates`, or `analysis.metrics` for `background: true`).
//! [`effective`] is pure; the templates come from a watch-fed index, so an
//! edited template applies from the next reconcile (the next measurement).

use std::borrow::Cow;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use mlctl_crds::rankingmodel::{AnalysisMetric, RolloutAnalysis};
use mlctl_crds::{AnalysisTemplate, RankingModelSpec};

use crate::controller::stored::StoredModel;

/// What looking a template up found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// No AnalysisTemplate of that name in the model's namespace.
    Missing,
    /// It exists but does not deserialize (the error).
    Unreadable(String),
    /// Its metrics.
    Metrics(Vec<AnalysisMetric>),
}

/// Why a model's templates cannot be resolved: its rollout is held until
/// fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason for the `AnalysisHealthy` condition and the Event.
    pub reason: &'static str,
    /// Names the template or metric and the fix.
    pub message: String,
}

/// Reasons of [`Problem`].
pub mod reason {
    pub const TEMPLATE_NOT_FOUND: &str = "AnalysisTemplateNotFound";
    pub const TEMPLATE_INVALID: &str = "AnalysisTemplateInvalid";
    pub const DEFINED_TWICE: &str = "MetricDefinedTwice";
    pub const NOT_DEFINED: &str = "MetricNotDefined";
}

/// Pure. The spec the state machine decides from: `spec` unchanged
/// (borrowed) when it references no template; otherwise a copy whose
/// analysis holds the referenced templates' metrics and no references.
/// Err lists every problem (missing or unreadable template, a metric name
/// defined twice, an analysis naming a metric nothing defines), first one
/// first.
pub fn effective<'s>(
    spec: &'s RankingModelSpec,
    lookup: impl Fn(&str) -> Found,
) -> Result<Cow<'s, RankingModelSpec>, Vec<Problem>> {
    let Some(rollout) = spec.rollout.as_ref() else {
        return Ok(Cow::Borrowed(spec));
    };
    let Some(analysis) = rollout.analysis.as_ref() else {
        return Ok(Cow::Borrowed(spec));
    };
    if analysis.template_refs.is_empty() {
        return Ok(Cow::Borrowed(spec));
    }
    let mut problems = Vec::new();
    // Where each metric name was defined first, for the clash message.
    let mut defined: Vec<(String, String)> = Vec::new();
    let mut define = |name: &str, origin: String, problems: &mut Vec<Problem>| -> bool {
        if let Some((_, first)) = defined.iter().find(|(n, _)| n == name) {
            problems.push(Problem {
                reason: reason::DEFINED_TWICE,
                message: format!(
                    "metric {name:?} is defined twice, in {first} and in {origin}: rename one of them, or drop the templateRef"
                ),
            });
            return false;
        }
        defined.push((name.to_string(), origin));
        true
    };
    for m in &analysis.metrics {
        define(
            &m.name,
            "spec.rollout.analysis.metrics".into(),
            &mut problems,
        );
    }
    for m in &analysis.templates {
        define(
            &m.name,
            "spec.rollout.analysis.templates".into(),
            &mut problems,
        );
    }
    let mut resolved = RolloutAnalysis {
        metrics: analysis.metrics.clone(),
        templates: analysis.templates.clone(),
        template_refs: Vec::new(),
    };
    for r in &analysis.template_refs {
        let metrics = match lookup(&r.name) {
            Found::Metrics(metrics) => metrics,
            Found::Missing => {
                problems.push(Problem {
                    reason: reason::TEMPLATE_NOT_FOUND,
                    message: format!(
                        "AnalysisTemplate {:?} (spec.rollout.analysis.templateRefs) does not exist in this namespace: create it, or remove the reference",
                        r.name
                    ),
                });
                continue;
            }
            Found::Unreadable(error) => {
                problems.push(Problem {
                    reason: reason::TEMPLATE_INVALID,
                    message: format!(
                        "AnalysisTemplate {:?} cannot be read ({error}): fix or re-create it",
                        r.name
                    ),
                });
                continue;
            }
        };
        let into = if r.background == Some(true) {
            &mut resolved.metrics
        } else {
            &mut resolved.templates
        };
        for m in metrics {
            if define(
                &m.name,
                format!("AnalysisTemplate {:?}", r.name),
                &mut problems,
            ) {
                into.push(m);
            }
        }
    }
    // Names an analysis uses that nothing defines (the CRD cannot check
    // them once templates are referenced). Only meaningful when every
    // template was found: a missing one is the problem to report then.
    if problems.is_empty() {
        let known = |n: &String| defined.iter().any(|(d, _)| d == n);
        let steps = rollout.steps.iter().enumerate().filter_map(|(i, s)| {
            s.analysis
                .as_ref()
                .map(|a| (format!("spec.rollout.steps[{i}].analysis"), &a.metrics))
        });
        let blue_green = rollout.blue_green.iter().flat_map(|b| {
            [
                ("prePromotionAnalysis", &b.pre_promotion_analysis),
                ("postPromotionAnalysis", &b.post_promotion_analysis),
            ]
            .into_iter()
            .filter_map(|(field, a)| {
                a.as_ref()
                    .map(|a| (format!("spec.rollout.blueGreen.{field}"), &a.metrics))
            })
        });
        for (field, names) in steps.chain(blue_green) {
            for name in names.iter().filter(|n| !known(n)) {
                problems.push(Problem {
                    reason: reason::NOT_DEFINED,
                    message: format!(
                        "{field} names metric {name:?}, which neither spec.rollout.analysis nor the referenced AnalysisTemplates ({}) define: add it to one of them, or reference the template that has it",
                        analysis
                            .template_refs
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut spec = spec.clone();
    if let Some(r) = spec.rollout.as_mut() {
        r.analysis = Some(resolved);
    }
    Ok(Cow::Owned(spec))
}

/// The problems as one condition: the first one's reason, every message.
pub fn summary(problems: &[Problem]) -> (&'static str, String) {
    let reason = problems.first().map_or(reason::NOT_DEFINED, |p| p.reason);
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    (reason, message)
}

/// The names of the templates `spec` references.
pub fn referenced(spec: &RankingModelSpec) -> impl Iterator<Item = &str> {
    spec.rollout
        .as_ref()
        .and_then(|r| r.analysis.as_ref())
        .into_iter()
        .flat_map(|a| a.template_refs.iter().map(|r| r.name.as_str()))
}

/// What the index holds for template `name`, as [`effective`] needs it.
pub fn found(template: Option<&DeserializeGuard<AnalysisTemplate>>) -> Found {
    match template.map(|t| &t.0) {
        None => Found::Missing,
        Some(Ok(t)) => Found::Metrics(t.spec.metrics.clone()),
        Some(Err(invalid)) => Found::Unreadable(invalid.error.clone()),
    }
}

/// Makes the AnalysisTemplates' watch a trigger of `controller`: a created,
/// edited or deleted template reconciles the models of its namespace that
/// reference it (read from the controller's own store: no API call).
pub fn watch_templates(
    controller: Controller<StoredModel>,
    templates: impl futures::Stream<Item = Result<DeserializeGuard<AnalysisTemplate>, watcher::Error>>
    + Send
    + 'static,
) -> Controller<StoredModel> {
    let models = controller.store();
    controller.watches_stream(templates, move |template| {
        let (Some(namespace), name) = (template.namespace(), template.name_any()) else {
            return Vec::new();
        };
        models
            .state()
            .iter()
            .filter(|m| m.namespace().as_deref() == Some(&namespace))
            .filter(|m| m.references_template(&name))
            .map(|m| ObjectRef::new(&m.name_any()).within(&namespace))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
#[path = "templates_tests.rs"]
mod tests;
