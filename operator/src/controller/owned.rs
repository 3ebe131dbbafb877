//! What the RankingModel controller owns, indexed by model: the watches of
//! its child kinds (each both a trigger of the controller and the index a
//! reconcile reads), and the FeaturePipelines models read their feature
//! gates from, and the AnalysisTemplates they reference.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DeserializeGuard;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use mlctl_crds::{AnalysisTemplate, FeaturePipeline};

use super::children::Checked;
use super::index::{self, Index};
use super::stored::StoredModel;
use crate::render::MODEL_LABEL;

/// The objects one scope's models own, grouped by model, and that scope's
/// FeaturePipelines.
pub struct ModelChildren {
    /// Serving Deployments (status conditions dropped: never read).
    pub deployments: Index<Deployment>,
    /// `<model>`, `<model>-stable`, `<model>-canary`.
    pub services: Index<Service>,
    /// Autoscalers (status dropped: never read).
    pub autoscalers: Index<HorizontalPodAutoscaler>,
    /// Disruption budgets (status dropped).
    pub budgets: Index<PodDisruptionBudget>,
    /// `<model>-peer`.
    pub config_maps: Index<ConfigMap>,
    /// The scope's FeaturePipelines, for feature gates.
    pub pipelines: Index<DeserializeGuard<FeaturePipeline>>,
    /// The scope's AnalysisTemplates, for `templateRefs`.
    pub templates: Index<DeserializeGuard<AnalysisTemplate>>,
}

impl ModelChildren {
    /// Waits until every index has its first list: before that, a missing
    /// child means only "not listed yet".
    pub async fn ready(&self) {
        self.deployments.ready().await;
        self.services.ready().await;
        self.autoscalers.ready().await;
        self.budgets.ready().await;
        self.config_maps.ready().await;
        self.pipelines.ready().await;
        self.templates.ready().await;
    }
}

type Watch<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The watches that feed one scope's [`ModelChildren`]; handed to that
/// scope's controller by [`ChildWatches::attach`].
pub struct ChildWatches {
    deployments: Watch<Deployment>,
    services: Watch<Service>,
    autoscalers: Watch<HorizontalPodAutoscaler>,
    budgets: Watch<PodDisruptionBudget>,
    config_maps: Watch<ConfigMap>,
    pipelines: Watch<DeserializeGuard<FeaturePipeline>>,
    templates: Watch<DeserializeGuard<AnalysisTemplate>>,
}

/// A Deployment's conditions (long messages) are never read: availability
/// is decided from the replica counts.
fn no_conditions(d: &mut Deployment) {
    if let Some(status) = d.status.as_mut() {
        status.conditions = None;
    }
}

fn no_status_hpa(h: &mut HorizontalPodAutoscaler) {
    h.status = None;
}

fn no_status_pdb(p: &mut PodDisruptionBudget) {
    p.status = None;
}

/// Builds the indexes of one scope and the watches that feed them. `apis`
/// makes an `Api` of the scope; `children` selects the objects the
/// operator manages; deleted objects are forgotten by `checked`.
pub fn model_children(
    client: &Client,
    scope: Option<&str>,
    children: &watcher::Config,
    checked: &Arc<Checked>,
) -> (ModelChildren, ChildWatches) {
    fn api<K>(client: &Client, scope: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    fn indexed<K>(
        client: &Client,
        scope: Option<&str>,
        config: &watcher::Config,
        checked: &Arc<Checked>,
        trim: fn(&mut K),
    ) -> (Index<K>, Watch<K>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let checked = checked.clone();
        let index = Index::new(MODEL_LABEL)
            .packed()
            .on_delete(Arc::new(move |o: &K| checked.forget(o)));
        let watch = index::watch(api(client, scope), config.clone(), index.clone(), trim).boxed();
        (index, watch)
    }
    let (deployments, d) = indexed(client, scope, children, checked, no_conditions);
    let (services, s) = indexed(client, scope, children, checked, index::keep);
    let (autoscalers, h) = indexed(client, scope, children, checked, no_status_hpa);
    let (budgets, p) = indexed(client, scope, children, checked, no_status_pdb);
    let (config_maps, c) = indexed(client, scope, children, checked, index::keep);
    let pipelines = Index::by_name();
    let pipelines_watch = index::watch(
        api(client, scope),
        index::list_config(),
        pipelines.clone(),
        index::keep,
    )
    .boxed();
    let templates = Index::by_name();
    let templates_watch = index::watch(
        api(client, scope),
        index::list_config(),
        templates.clone(),
        index::keep,
    )
    .boxed();
    (
        ModelChildren {
            deployments,
            services,
            autoscalers,
            budgets,
            config_maps,
            pipelines,
            templates,
        },
        ChildWatches {
            deployments: d,
            services: s,
            autoscalers: h,
            budgets: p,
            config_maps: c,
            pipelines: pipelines_watch,
            templates: templates_watch,
        },
    )
}

impl ChildWatches {
    /// Makes every watch a trigger of `controller` (a changed child
    /// reconciles its model; a changed FeaturePipeline the models that read
    /// from it).
    pub fn attach(self, controller: Controller<StoredModel>) -> Controller<StoredModel> {
        let controller = controller
            .owns_stream(self.deployments)
            .owns_stream(self.services)
            .owns_stream(self.autoscalers)
            .owns_stream(self.budgets)
            .owns_stream(self.config_maps);
        let controller = crate::features::watch_pipelines(controller, self.pipelines);
        crate::analysis::templates::watch_templates(controller, self.templates)
    }
}
