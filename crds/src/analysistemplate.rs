//! `AnalysisTemplate`: analysis metrics shared by many RankingModels of a
//! namespace (one latency SLO, one error-rate check, one offline eval Job),
//! referenced from `spec.rollout.analysis.templateRefs` instead of copied
//! into every model (docs/analysis.md, "Shared templates").

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::rankingmodel::AnalysisMetric;

/// Metrics that models of the same namespace use by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mlctl.io",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    plural = "analysistemplates",
    singular = "analysistemplate",
    shortname = "mat",
    category = "mlctl",
    namespaced,
    derive = "PartialEq",
    cel,
    doc = "AnalysisTemplate holds analysis metrics (Prometheus, web, Job) that RankingModels of the same namespace reference by name from spec.rollout.analysis.templateRefs. Short name: mat (with Argo Rollouts installed too, `kubectl get analysistemplates` may resolve to argoproj.io's kind: use `mat` or analysistemplates.mlctl.io).",
    printcolumn(
        name = "Metrics",
        type_ = "string",
        json_path = ".spec.metrics[*].name",
        description = "Metric names models can use"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// The metrics. A model that references this template can name each in
    /// an analysis step or a blue-green pre/post-promotion analysis, or run
    /// them all in the background (`templateRefs[].background`). Names must
    /// not clash with the model's own metrics or another referenced
    /// template's (the operator reports a clash on the model).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(m, self.filter(n, n.name == m.name).size() == 1)").message("spec.metrics names must be unique within the template"))]
    pub metrics: Vec<AnalysisMetric>,
}
