//! The RankingModels as the controller's own store holds them: packed.
//!
//! kube-runtime's `Store` keeps every object the controller watches for as
//! long as it exists. A `RankingModel` struct is 2.2 KB inline (its spec and
//! status hold every optional field in place) and about 4.8 KB with its heap:
//! at 1,000 models that was 4.8 MiB, the largest live item after the children
//! indexes were packed (heaptrack, docs/performance.md). A [`StoredModel`]
//! holds the object as LZ4-compressed JSON against a dictionary (the JSON of
//! the first model packed, see [`super::index`]), a small `ObjectMeta` with
//! what the controller's queue and logs read (name, namespace, uid,
//! resourceVersion, generation), and the names the trigger mappers look up
//! (the FeaturePipelines a model reads, the AnalysisTemplates it references),
//! so a changed pipeline or template finds its models without decoding any.
//! A reconcile decodes the one model it works on ([`StoredModel::unpack`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::reflector::ObjectRef;
use mlctl_crds::RankingModel;
use serde::{Deserialize, Deserializer};

use super::index::Codec;

/// One codec (and so one dictionary) for every model of the process.
static CODEC: LazyLock<Codec<RankingModel>> = LazyLock::new(Codec::json);

#[derive(Clone)]
enum Body {
    /// The whole model, LZ4-compressed JSON ([`CODEC`]).
    Packed(Box<[u8]>),
    /// As it came: an object that did not deserialize (rare, and the
    /// reconcile reports its error), or one that would not serialize.
    Whole(Arc<DeserializeGuard<RankingModel>>),
}

/// A RankingModel, packed, with the metadata and references the controller
/// reads without decoding it.
#[derive(Clone)]
pub struct StoredModel {
    meta: ObjectMeta,
    body: Body,
    /// `spec.features[].pipeline`.
    pipelines: Box<[Box<str>]>,
    /// `spec.rollout.analysis.templateRefs[].name`.
    templates: Box<[Box<str>]>,
}

impl StoredModel {
    /// Packs `guard` (a valid model; an invalid one is kept as it is).
    pub fn new(guard: DeserializeGuard<RankingModel>) -> Self {
        let full = guard.meta();
        let meta = ObjectMeta {
            name: full.name.clone(),
            namespace: full.namespace.clone(),
            uid: full.uid.clone(),
            resource_version: full.resource_version.clone(),
            generation: full.generation,
            ..ObjectMeta::default()
        };
        let Ok(model) = &guard.0 else {
            return StoredModel {
                meta,
                body: Body::Whole(Arc::new(guard)),
                pipelines: Box::default(),
                templates: Box::default(),
            };
        };
        let pipelines = model
            .spec
            .features
            .iter()
            .map(|f| f.pipeline.as_str().into())
            .collect();
        let templates = crate::analysis::templates::referenced(&model.spec)
            .map(Into::into)
            .collect();
        let body = match CODEC.pack(model) {
            Some(bytes) => Body::Packed(bytes),
            None => Body::Whole(Arc::new(guard)),
        };
        StoredModel {
            meta,
            body,
            pipelines,
            templates,
        }
    }

    /// The model as it was stored. A copy that cannot be decoded (which
    /// would be a bug) reads as an invalid object naming the model, so the
    /// reconcile reports it rather than panics.
    pub fn unpack(&self) -> DeserializeGuard<RankingModel> {
        match &self.body {
            Body::Whole(guard) => guard.as_ref().clone(),
            Body::Packed(bytes) => match CODEC.unpack(bytes) {
                Some(model) => DeserializeGuard(Ok(model)),
                None => DeserializeGuard(Err(InvalidObject {
                    error: "the operator could not decode its stored copy of this \
                            RankingModel; restart the operator to re-read it"
                        .into(),
                    metadata: self.meta.clone(),
                })),
            },
        }
    }

    /// The controller's reference to `model` (its queue, its backoff).
    pub fn reference(model: &DeserializeGuard<RankingModel>) -> ObjectRef<StoredModel> {
        let meta = model.meta();
        let r = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
        match &meta.namespace {
            Some(ns) => r.within(ns),
            None => r,
        }
    }

    /// Whether the model reads features from FeaturePipeline `name` (of its
    /// namespace).
    pub fn reads_pipeline(&self, name: &str) -> bool {
        self.pipelines.iter().any(|p| &**p == name)
    }

    /// Whether the model's analysis references AnalysisTemplate `name`.
    pub fn references_template(&self, name: &str) -> bool {
        self.templates.iter().any(|t| &**t == name)
    }

    /// The size of the packed model, when it is packed.
    pub fn packed_len(&self) -> Option<usize> {
        match &self.body {
            Body::Packed(bytes) => Some(bytes.len()),
            Body::Whole(_) => None,
        }
    }
}

impl fmt::Debug for StoredModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredModel")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("resource_version", &self.meta.resource_version)
            .field("packed_len", &self.packed_len())
            .finish_non_exhaustive()
    }
}

impl Resource for StoredModel {
    type DynamicType = ();
    type Scope = <RankingModel as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        RankingModel::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        RankingModel::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        RankingModel::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        RankingModel::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// The controller's bounds ask for it; the operator's own watch builds
/// stored models with [`StoredModel::new`] instead.
impl<'de> Deserialize<'de> for StoredModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DeserializeGuard::<RankingModel>::deserialize(deserializer).map(StoredModel::new)
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    fn model(name: &str, pipeline: &str, template: &str) -> RankingModel {
        serde_json::from_value(json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {
                "name": name, "namespace": "search", "uid": format!("uid-{name}"),
                "resourceVersion": "42", "generation": 3,
                "labels": {"team": "ranking"},
                "annotations": {"note": "kept in the packed copy"}
            },
            "spec": {
                "model": {"version": "v1", "uri": "s3://models/m/v1/model.txt", "format": "lightgbm"},
                "runtime": {"image": "ghcr.io/mlctl/mlctl-ranker:0.1.0"},
                "features": [{"pipeline": pipeline, "schemaVersion": 1}],
                "rollout": {
                    "steps": [{"setWeight": 20}, {"pause": {"duration": "10s"}}],
                    "analysis": {"templateRefs": [{"name": template}]}
                }
            },
            "status": {
                "phase": "Healthy", "observedGeneration": 3,
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Healthy",
                    "message": "1/1 replicas ready", "lastTransitionTime": "2026-12-03T10:00:00Z"
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_stored_model_reads_back_equal_and_packs_small() {
        let first = model("a", "clicks", "latency");
        let second = model("b", "clicks", "latency");
        let a = StoredModel::new(DeserializeGuard(Ok(first.clone())));
        let b = StoredModel::new(DeserializeGuard(Ok(second.clone())));
        assert_eq!(a.unpack().0.unwrap(), first);
        assert_eq!(b.unpack().0.unwrap(), second);
        // What the queue and the logs read, without decoding.
        assert_eq!(b.name_any(), "b");
        assert_eq!(b.namespace().as_deref(), Some("search"));
        assert_eq!(b.resource_version().as_deref(), Some("42"));
        assert_eq!(b.meta().generation, Some(3));
        assert!(b.labels().is_empty(), "the small meta keeps no labels");
        assert!(b.packed_len().is_some());
    }

    #[test]
    fn a_sibling_packs_to_a_fraction_of_its_json() {
        // The process' dictionary is whichever model a test packed first, so
        // the ratio is measured with a codec of its own: the first model is
        // the dictionary, as in the operator.
        let codec = Codec::<RankingModel>::json();
        let first = model("a", "clicks", "latency");
        let sibling = model("b-with-a-longer-name", "views", "errors");
        codec.pack(&first).unwrap();
        let packed = codec.pack(&sibling).unwrap().len();
        let json = serde_json::to_vec(&sibling).unwrap().len();
        assert!(packed * 5 < json, "{packed} bytes packed of {json} of JSON");
        assert_eq!(codec.unpack(&codec.pack(&sibling).unwrap()), Some(sibling));
    }

    #[test]
    fn the_mappers_find_a_model_by_its_pipelines_and_templates_without_decoding() {
        let m = StoredModel::new(DeserializeGuard(Ok(model("c", "clicks", "latency"))));
        assert!(m.reads_pipeline("clicks"));
        assert!(!m.reads_pipeline("views"));
        assert!(m.references_template("latency"));
        assert!(!m.references_template("errors"));
    }

    #[test]
    fn an_invalid_model_is_kept_whole_and_reads_back_invalid() {
        let guard: DeserializeGuard<RankingModel> = serde_json::from_value(json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "bad", "namespace": "search"},
            "spec": {"model": "not an object"}
        }))
        .unwrap();
        assert!(guard.0.is_err());
        let stored = StoredModel::new(guard);
        assert_eq!(stored.packed_len(), None);
        assert!(!stored.reads_pipeline("clicks"));
        let back = stored.unpack();
        let invalid = back.0.expect_err("still invalid");
        assert_eq!(invalid.metadata.name.as_deref(), Some("bad"));
        assert!(!invalid.error.is_empty());
    }

    #[test]
    fn the_controller_bound_deserializes_into_a_packed_model() {
        let m = model("d", "clicks", "latency");
        let stored: StoredModel =
            serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert!(stored.packed_len().is_some());
        assert_eq!(stored.unpack().0.unwrap(), m);
    }
}
