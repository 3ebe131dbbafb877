use super::*;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{ModelFormat, ModelSource, Runtime};

fn model() -> ModelRef {
    ModelRef {
        name: "ranker".into(),
        namespace: "search".into(),
        owner: OwnerReference {
            api_version: "mlctl.io/v1alpha1".into(),
            kind: "RankingModel".into(),
            name: "ranker".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

fn spec(uri: &str) -> RankingModelSpec {
    RankingModelSpec {
        model: ModelSource {
            version: "2026-11-20.3".into(),
            uri: uri.into(),
            format: ModelFormat::Xgboost,
            sha256: Some("AB".repeat(32)),
            credentials_secret: None,
        },
        runtime: Runtime {
            image: "runtime:1".into(),
            port: Some(9000),
            ..Runtime::default()
        },
        replicas: Some(2),
        autoscaling: None,
        features: vec![],
        rollout: None,
        notifications: Vec::new(),
    }
}

fn config() -> RenderConfig {
    RenderConfig {
        storage_initializer_image: "init:1".into(),
    }
}

fn plan(replicas: Option<i32>) -> RevisionPlan {
    RevisionPlan {
        revision: "abc123def0".into(),
        track: Track::Canary,
        replicas,
        initial_replicas: replicas,
    }
}

#[test]
fn the_deployment_carries_identity_labels_and_model_env() {
    let d = deployment(
        &model(),
        &spec("s3://b/m/model.json"),
        &config(),
        &plan(Some(2)),
    );
    assert_eq!(d.metadata.name.as_deref(), Some("ranker-abc123def0"));
    let labels = d.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[TRACK_LABEL], "canary");
    assert_eq!(labels[VERSION_LABEL], "2026-11-20.3");
    for key in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
        MODEL_LABEL,
    ] {
        assert!(labels.contains_key(key), "missing label {key}");
    }
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(
        !pod_labels.contains_key(TRACK_LABEL),
        "a track change must not restart pods"
    );
    let c = &pod.containers[0];
    let env: BTreeMap<_, _> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["MODEL_PATH"], "/mnt/models/model.json");
    assert_eq!(env["MODEL_VERSION"], "2026-11-20.3");
    assert_eq!(env["MODEL_FORMAT"], "xgboost");
    assert_eq!(env["MODEL_NAME"], "ranker");
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9000);
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("init:1"));
    let init_env: Vec<_> = init
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(init_env.contains(&"MODEL_SHA256"));
    let sha = &init
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "MODEL_SHA256")
        .unwrap();
    assert_eq!(sha.value.as_deref(), Some("ab".repeat(32).as_str()));
}

#[test]
fn pods_meet_the_restricted_pod_security_level() {
    let d = deployment(
        &model(),
        &spec("s3://b/m/model.txt"),
        &config(),
        &plan(Some(1)),
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let all = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for c in all {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{}",
            c.name
        );
    }
}

#[test]
fn autoscaled_deployments_carry_no_replicas() {
    let d = deployment(
        &model(),
        &spec("s3://b/m/model.txt"),
        &config(),
        &plan(None),
    );
    assert_eq!(d.spec.unwrap().replicas, None);
}

#[test]
fn pvc_artifacts_are_mounted_not_downloaded() {
    let d = deployment(
        &model(),
        &spec("pvc://models/ranker/v3/model.txt"),
        &config(),
        &plan(Some(1)),
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert!(pod.init_containers.is_none());
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "model")
        .unwrap();
    let claim = vol.persistent_volume_claim.unwrap();
    assert_eq!(claim.claim_name, "models");
    assert_eq!(claim.read_only, Some(true));
    assert_eq!(
        artifact_source("pvc://models/ranker/v3/model.txt"),
        ArtifactSource::Claim {
            claim: "models".into(),
            model_path: "/mnt/models/ranker/v3/model.txt".into()
        }
    );
}

#[test]
fn artifact_paths_follow_the_uri() {
    let path = |uri| match artifact_source(uri) {
        ArtifactSource::Download { model_path } => model_path,
        ArtifactSource::Claim { model_path, .. } => model_path,
    };
    assert_eq!(
        path("https://h/x/model.onnx?sig=1"),
        "/mnt/models/model.onnx"
    );
    assert_eq!(path("s3://bucket/dir/"), "/mnt/models");
    assert_eq!(path("gs://bucket"), "/mnt/models");
}

#[test]
fn services_select_by_revision() {
    let s = services(
        &model(),
        &ServiceTargets {
            stable: "s1".into(),
            canary: "c1".into(),
            split: false,
            switched: false,
            preview: None,
        },
    );
    let names: Vec<_> = s.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["ranker", "ranker-stable", "ranker-canary"]);
    let sel = |i: usize| s[i].spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(sel(0)[REVISION_LABEL], "s1");
    assert_eq!(sel(1)[REVISION_LABEL], "s1");
    assert_eq!(sel(2)[REVISION_LABEL], "c1");
    let split = services(
        &model(),
        &ServiceTargets {
            stable: "s1".into(),
            canary: "c1".into(),
            split: true,
            switched: false,
            preview: None,
        },
    );
    let main = split[0].spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(
        main.len(),
        1,
        "a split <model> selects every revision: {main:?}"
    );
    assert_eq!(main[MODEL_LABEL], "ranker");
    assert_eq!(
        split[1].spec.as_ref().unwrap().selector.clone().unwrap()[REVISION_LABEL],
        "s1"
    );
    assert!(
        s.iter()
            .all(|s| s.metadata.owner_references.as_ref().unwrap()[0].controller == Some(true))
    );
}

#[test]
fn a_blue_green_model_has_a_preview_service_and_switches_main_at_once() {
    let targets = |switched: bool| ServiceTargets {
        stable: "s1".into(),
        canary: "c1".into(),
        split: false,
        switched,
        preview: Some("c1".into()),
    };
    let before = services(&model(), &targets(false));
    let names: Vec<_> = before
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ranker", "ranker-stable", "ranker-canary", "ranker-preview"]
    );
    let sel = |s: &[Service], i: usize| {
        s[i].spec.as_ref().unwrap().selector.clone().unwrap()[REVISION_LABEL].clone()
    };
    assert_eq!(sel(&before, 0), "s1", "no user traffic on the preview");
    assert_eq!(sel(&before, 3), "c1");
    let after = services(&model(), &targets(true));
    assert_eq!(sel(&after, 0), "c1", "<model> switched to the new revision");
    assert_eq!(
        sel(&after, 1),
        "s1",
        "the previous revision stays reachable"
    );
}

#[test]
fn the_autoscaler_defaults_to_cpu_and_targets_the_given_deployment() {
    let a = mlctl_crds::rankingmodel::Autoscaling {
        min_replicas: None,
        max_replicas: 5,
        ..Default::default()
    };
    let hpa = autoscaler(&model(), &a, "ranker-abc");
    let spec = hpa.spec.unwrap();
    assert_eq!(spec.scale_target_ref.name, "ranker-abc");
    assert_eq!(spec.min_replicas, Some(1));
    let m = &spec.metrics.unwrap()[0];
    assert_eq!(
        m.resource.as_ref().unwrap().target.average_utilization,
        Some(DEFAULT_CPU_TARGET)
    );
}

#[test]
fn content_hash_is_stable_and_sensitive() {
    let a = content_hash(&("x", 1));
    assert_eq!(a, content_hash(&("x", 1)));
    assert_ne!(a, content_hash(&("x", 2)));
    assert_eq!(a.len(), 16);
}

#[test]
fn credentials_reach_only_the_storage_initializer() {
    let mut s = spec("s3://b/m/model.json");
    s.model.credentials_secret = Some("model-reader".into());
    s.runtime.service_account_name = Some("ranker-irsa".into());
    let d = deployment(&model(), &s, &config(), &plan(Some(1)));
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("ranker-irsa"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.args.as_deref(), Some(&["fetch".to_string()][..]));
    let env_from = init.env_from.as_ref().unwrap();
    assert_eq!(
        env_from[0].secret_ref.as_ref().map(|r| r.name.as_str()),
        Some("model-reader")
    );
    let mount = init
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "model-credentials")
        .unwrap();
    assert_eq!(mount.mount_path, CREDENTIALS_DIR);
    assert_eq!(mount.read_only, Some(true));
    let ranker = &pod.containers[0];
    assert!(ranker.env_from.is_none());
    assert!(
        ranker
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.name != "model-credentials"),
        "the serving container must not see the credentials"
    );
    // Credentials and the account are not part of what is served.
    assert_eq!(revision_of(&s), revision_of(&spec("s3://b/m/model.json")));
}

#[test]
fn without_credentials_nothing_extra_is_mounted() {
    let d = deployment(
        &model(),
        &spec("s3://b/m/model.json"),
        &config(),
        &plan(Some(1)),
    );
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(pod.service_account_name.is_none());
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert!(init.env_from.is_none());
    assert_eq!(
        init.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert!(
        pod.volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.name != "model-credentials")
    );
}

#[test]
fn readiness_is_probed_every_two_seconds() {
    let d = deployment(
        &model(),
        &spec("s3://b/m/model.json"),
        &config(),
        &plan(Some(1)),
    );
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    let readiness = c.readiness_probe.as_ref().unwrap();
    assert_eq!(readiness.period_seconds, Some(2));
    assert_eq!(
        readiness.http_get.as_ref().unwrap().path.as_deref(),
        Some("/ready")
    );
    assert_eq!(c.liveness_probe.as_ref().unwrap().period_seconds, Some(10));
}

fn rendered_pod(s: &RankingModelSpec, track: Track) -> k8s_openapi::api::core::v1::PodSpec {
    let d = deployment(
        &model(),
        s,
        &config(),
        &RevisionPlan {
            track,
            ..plan(Some(2))
        },
    );
    d.spec.unwrap().template.spec.unwrap()
}

#[test]
fn placement_lands_on_stable_and_canary_pod_templates() {
    let mut s = spec("s3://b/m/model.json");
    s.runtime.placement = sample_placement();
    for track in [Track::Stable, Track::Canary, Track::Retiring] {
        assert_sample_placement(&rendered_pod(&s, track), track.as_str());
    }
}

#[test]
fn without_placement_the_pod_template_has_no_placement_fields() {
    let pod =
        serde_json::to_value(rendered_pod(&spec("s3://b/m/model.json"), Track::Stable)).unwrap();
    for key in PLACEMENT_FIELDS {
        assert!(pod.get(key).is_none(), "{key} rendered without being set");
    }
}

#[test]
fn a_placement_change_updates_the_revision_in_place() {
    // Same revision (no canary, same Deployment name), different applied hash:
    // the operator applies the Deployment again and it rolls its pods.
    let before = spec("s3://b/m/model.json");
    let mut after = before.clone();
    after.runtime.placement.node_selector = [("node-pool".into(), "gpu".into())].into();
    assert_eq!(revision_of(&before), revision_of(&after));
    let render = |s: &RankingModelSpec| deployment(&model(), s, &config(), &plan(Some(2)));
    assert_eq!(render(&before).metadata.name, render(&after).metadata.name);
    assert_ne!(
        content_hash(&render(&before)),
        content_hash(&render(&after))
    );
}

#[test]
fn the_serving_security_context_is_unchanged_by_the_shared_baseline() {
    // Built from the restricted baseline now; an identical rendering keeps the
    // applied hash of every existing Deployment (no rollout on upgrade).
    let pod =
        serde_json::to_value(rendered_pod(&spec("s3://b/m/model.json"), Track::Stable)).unwrap();
    assert_eq!(
        pod["securityContext"],
        serde_json::json!({
            "fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true,
            "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    for c in [&pod["containers"][0], &pod["initContainers"][0]] {
        assert_eq!(
            c["securityContext"],
            serde_json::json!({
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true, "runAsGroup": 65532, "runAsNonRoot": true,
                "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}
            })
        );
    }
}

#[test]
fn pods_carry_prometheus_scrape_annotations_that_pod_metadata_can_override() {
    let annotations = |s: &RankingModelSpec| {
        deployment(&model(), s, &config(), &plan(Some(1)))
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()
    };
    let a = annotations(&spec("s3://b/m/model.json"));
    assert_eq!(a["prometheus.io/scrape"], "true");
    assert_eq!(a["prometheus.io/port"], "9000");
    assert_eq!(a["prometheus.io/path"], "/metrics");

    let mut s = spec("s3://b/m/model.json");
    s.runtime.pod_metadata = Some(mlctl_crds::rankingmodel::PodMetadata {
        annotations: BTreeMap::from([
            ("prometheus.io/scrape".to_string(), "false".to_string()),
            ("team".to_string(), "search".to_string()),
        ]),
        ..Default::default()
    });
    let a = annotations(&s);
    assert_eq!(a["prometheus.io/scrape"], "false");
    assert_eq!(a["team"], "search");
    assert_eq!(a["prometheus.io/port"], "9000");
}

/// The operator's indexes hold thousands of these (controller/index.rs):
/// packed against the first one, a sibling serving Deployment (another
/// model, version and URI) must stay a few hundred bytes (as a struct it is
/// 24 KB), and both read back exactly as they went in.
#[test]
fn a_sibling_serving_deployment_packs_to_a_few_hundred_bytes() {
    use crate::controller::index::Index;
    use kube::runtime::watcher::Event;
    let first = deployment(
        &model(),
        &spec("s3://models/ranker/v3/model.json"),
        &config(),
        &plan(Some(2)),
    );
    let mut other = model();
    other.name = "ranker-de-web".into();
    other.owner.name = "ranker-de-web".into();
    other.owner.uid = "uid-2".into();
    let mut other_spec = spec("s3://models/ranker-de-web/v7/model.json");
    other_spec.model.version = "2026-12-01.1".into();
    other_spec.model.sha256 = Some("3f9a".repeat(16));
    let mut other_plan = plan(Some(1));
    other_plan.revision = "0f1e2d3c4b".into();
    let sibling = deployment(&other, &other_spec, &config(), &other_plan);
    let index = Index::<k8s_openapi::api::apps::v1::Deployment>::new(MODEL_LABEL).packed();
    index.apply(&Event::Apply(first.clone()));
    let dictionary = index.packed_bytes();
    index.apply(&Event::Apply(sibling.clone()));
    let packed = index.packed_bytes() - dictionary;
    for d in [&first, &sibling] {
        let (ns, name) = (d.metadata.namespace.clone(), d.metadata.name.clone());
        let back = index.get(&ns.unwrap_or_default(), &name.unwrap_or_default());
        assert_eq!(back.as_deref(), Some(d));
    }
    let json = serde_json::to_vec(&sibling)
        .map(|v| v.len())
        .unwrap_or_default();
    assert!(
        packed <= 600,
        "packed {packed} bytes (JSON {json}): the 1,000-model memory budget (docs/performance.md) assumes a few hundred"
    );
}
