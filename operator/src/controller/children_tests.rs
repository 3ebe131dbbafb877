use serde_json::json;

use super::*;

fn deployment(image: &str, replicas: i64, cpu: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "r-abc", "labels": {"mlctl.io/model": "r"},
                     "ownerReferences": [{"apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel", "name": "r", "uid": "u1", "controller": true}]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"mlctl.io/model": "r"}},
            "template": {"spec": {"containers": [{
                "name": "ranker", "image": image, "args": ["--port", "8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "A", "value": "1"}],
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}
            }]}}
        }
    })
}

/// What the API server returns for `deployment(...)`: defaults added, keys
/// reordered, quantities canonical, other owners' fields present.
fn as_stored(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "r-abc", "namespace": "shop", "uid": "d1", "resourceVersion": "42",
                     "labels": {"mlctl.io/model": "r", "team": "search"},
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "managedFields": [{"manager": "kube-controller-manager"}],
                     "ownerReferences": [{"apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel", "name": "r", "uid": "u1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"mlctl.io/model": "r"}},
            "template": {"metadata": {"creationTimestamp": null}, "spec": {
                "restartPolicy": "Always",
                "containers": [
                    {"name": "istio-proxy", "image": "proxy:1"},
                    {"name": "ranker", "image": image, "args": ["--port", "8080"],
                     "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                     "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                     "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
                ]}}
        },
        "status": {"replicas": 3}
    })
}

#[test]
fn an_object_as_the_api_server_stores_it_has_no_drift() {
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &as_stored("ranker:1", 3)),
        None
    );
}

#[test]
fn kubectl_scale_and_set_image_are_drift_of_the_field_they_changed() {
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &as_stored("ranker:1", 1)),
        Some(".spec.replicas".into())
    );
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &as_stored("evil:1", 3)),
        Some(".spec.template.spec.containers[name=ranker].image".into())
    );
}

#[test]
fn a_removed_list_item_label_or_changed_argument_is_drift() {
    let mut stored = as_stored("ranker:1", 3);
    stored["spec"]["template"]["spec"]["containers"][1]["env"] =
        json!([{"name": "B", "value": "2"}]);
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &stored),
        Some(".spec.template.spec.containers[name=ranker].env[name=A]".into())
    );
    let mut stored = as_stored("ranker:1", 3);
    stored["metadata"]["labels"] = json!({"team": "search"});
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &stored),
        Some(".metadata.labels.mlctl.io/model".into())
    );
    let mut stored = as_stored("ranker:1", 3);
    stored["spec"]["template"]["spec"]["containers"][1]["args"] = json!(["--port", "9090"]);
    assert_eq!(
        drift(&deployment("ranker:1", 3, "0.5"), &stored),
        Some(".spec.template.spec.containers[name=ranker].args".into())
    );
}

#[test]
fn zero_values_the_api_server_omits_are_not_drift() {
    let desired = json!({"spec": {"readinessProbe": {"initialDelaySeconds": 0, "httpGet": {"path": "/ready", "port": 8080}},
                                  "hostNetwork": false, "subdomain": ""}});
    let stored = json!({"spec": {"readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10}}});
    assert_eq!(drift(&desired, &stored), None);
    let edited = json!({"spec": {"readinessProbe": {"initialDelaySeconds": 30, "httpGet": {"path": "/ready", "port": 8080}}}});
    assert_eq!(
        drift(&desired, &edited),
        Some(".spec.readinessProbe.initialDelaySeconds".into())
    );
}

#[test]
fn a_field_the_operator_does_not_set_is_never_compared() {
    // An autoscaled Deployment: the rendered form has no replicas.
    let mut desired = deployment("ranker:1", 3, "0.5");
    desired["spec"].as_object_mut().unwrap().remove("replicas");
    assert_eq!(drift(&desired, &as_stored("ranker:1", 7)), None);
}

#[test]
fn an_edited_service_selector_and_port_are_drift() {
    let desired = json!({"spec": {"selector": {"mlctl.io/model": "r", "mlctl.io/revision": "abc"},
                                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let stored = json!({"spec": {"clusterIP": "10.96.0.10", "type": "ClusterIP",
                                 "selector": {"mlctl.io/model": "r", "mlctl.io/revision": "abc"},
                                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}});
    assert_eq!(drift(&desired, &stored), None);
    let mut edited = stored.clone();
    edited["spec"]["selector"]["mlctl.io/revision"] = json!("other");
    assert_eq!(
        drift(&desired, &edited),
        Some(".spec.selector.mlctl.io/revision".into())
    );
    let mut edited = stored;
    edited["spec"]["ports"][0]["targetPort"] = json!(9090);
    assert_eq!(
        drift(&desired, &edited),
        Some(".spec.ports[name=http].targetPort".into())
    );
}

#[test]
fn quantities_compare_by_value() {
    for (a, b) in [
        ("0.5", "500m"),
        ("1Gi", "1024Mi"),
        ("1", "1000m"),
        ("2", "2"),
        ("1e3", "1k"),
    ] {
        assert!(same_scalar(&json!(a), &json!(b)), "{a} = {b}");
    }
    for (a, b) in [
        ("0.5", "600m"),
        ("1Gi", "1G"),
        ("v1", "v2"),
        ("1.0.0", "1.0"),
    ] {
        assert!(!same_scalar(&json!(a), &json!(b)), "{a} != {b}");
    }
}

#[test]
fn resyncs_are_spread_around_ten_minutes() {
    let times: Vec<_> = (0..200)
        .map(|i| crate::controller::resync_after(&format!("uid-{i}")))
        .collect();
    assert!(
        times
            .iter()
            .all(|t| t.as_secs() >= 540 && t.as_secs() <= 660),
        "{times:?}"
    );
    let spread = times.iter().max().unwrap().as_secs() - times.iter().min().unwrap().as_secs();
    assert!(spread > 90, "spread {spread}s");
    assert_eq!(
        crate::controller::resync_after("a"),
        crate::controller::resync_after("a")
    );
}

fn hashed(hash: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    let mut c = k8s_openapi::api::core::v1::ConfigMap::default();
    c.metadata.name = Some("m-peer".into());
    c.metadata.namespace = Some("ns".into());
    c.metadata.annotations =
        Some([(crate::render::APPLIED_HASH.to_string(), hash.to_string())].into());
    c
}

#[test]
fn an_index_behind_the_operators_own_write_is_not_trusted() {
    let checked = Checked::default();
    // Nothing written yet: whatever the index shows is trusted.
    assert!(!checked.is_behind(&hashed("a")));
    // Written as "b"; the index still shows "a" (the form before last,
    // which may equal the desired one): read afresh.
    checked.wrote(&hashed("b"));
    assert!(checked.is_behind(&hashed("a")));
    assert!(!checked.is_behind(&hashed("b")));
    // Deleted: forgotten.
    checked.forget(&hashed("b"));
    assert!(!checked.is_behind(&hashed("a")));
}
