//! The Helm chart: `helm lint`, `helm package` and `helm template` with the
//! built helm, and what the rendered manifests must contain for each value.
//! (Its CRDs are checked against the Rust types by crds/tests/generated.rs;
//! its RBAC is what the operator e2e tests run under.)

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use mlctl_e2e::{helm, require_e2e, unique_suffix, workspace_root};
use serde::Deserialize;
use serde_json::{Value, json};

fn chart() -> String {
    workspace_root()
        .join("charts/mlctl-operator")
        .display()
        .to_string()
}

fn run_template(args: &[&str]) -> std::process::Output {
    Command::new(helm())
        .args(["template", "mlctl", &chart(), "--namespace", "mlctl-system"])
        .args(args)
        .output()
        .expect("run helm")
}

fn template(args: &[&str]) -> Vec<serde_json::Value> {
    let out = run_template(args);
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objects: &[serde_json::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The one object of `kind` (panics when there is none or several).
fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected: {:?}", kinds(objects));
    found[0]
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(key, value)| labels[key] == *value)
}

fn chart_version() -> String {
    let text = std::fs::read_to_string(workspace_root().join("charts/mlctl-operator/Chart.yaml"))
        .expect("read Chart.yaml");
    let chart: Value = serde_yaml_ng::from_str(&text).expect("Chart.yaml is YAML");
    chart["version"].as_str().unwrap().to_string()
}

#[test]
fn helm_lint_passes() {
    require_e2e!();
    // Defaults, and with every optional object rendered.
    for extra in [
        &[][..],
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "rankerPodMonitor.enabled=true",
            "--set",
            "replicas=2",
            "--set-json",
            r#"imagePullSecrets=[{"name":"regcred"}]"#,
        ][..],
    ] {
        let out = Command::new(helm())
            .args(["lint", "--strict", &chart()])
            .args(extra)
            .output()
            .expect("run helm lint");
        assert!(
            out.status.success(),
            "helm lint {extra:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn helm_package_writes_an_archive_named_after_the_chart_version() {
    require_e2e!();
    let dir = std::env::temp_dir().join(format!("mlctl-chart-package-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(helm())
        .args(["package", &chart(), "--destination"])
        .arg(&dir)
        .output()
        .expect("run helm package");
    let archive = dir.join(format!("mlctl-operator-{}.tgz", chart_version()));
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let size = std::fs::metadata(&archive).map(|m| m.len());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "helm package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        size.as_ref().is_ok_and(|&n| n > 0),
        "{} expected, found {written:?}",
        archive.display()
    );
}

#[test]
fn default_values_render_cluster_wide_least_privilege_rbac() {
    require_e2e!();
    let objects = template(&["--include-crds"]);
    let kinds = kinds(&objects);
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    let crds: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        crds,
        [
            "analysistemplates.mlctl.io",
            "featurepipelines.mlctl.io",
            "rankingmodels.mlctl.io"
        ],
        "{crds:?}"
    );
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    let rules = role["rules"].as_array().unwrap();
    for rule in rules {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!verbs.contains(&"*"), "no wildcard verbs: {rule}");
        let resources = rule["resources"].as_array().unwrap();
        assert!(
            !resources.iter().any(|r| r == "*" || r == "secrets"),
            "no wildcard resources or secrets: {rule}"
        );
    }
    // The models themselves are read-only for the operator; only status is written.
    let model_rule = rules
        .iter()
        .find(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "rankingmodels")
        })
        .unwrap();
    assert_eq!(
        model_rule["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    // Analysis credentials: a role of its own that can only get Secrets (no
    // list or watch: the operator reads the ones a model names), and the
    // main role reads none.
    let credentials: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .filter(|o| {
            o["rules"].as_array().unwrap().iter().any(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == "secrets")
            })
        })
        .collect();
    assert_eq!(
        credentials.len(),
        1,
        "one role reads Secrets: {credentials:?}"
    );
    assert!(
        credentials[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .ends_with("-analysis-credentials")
    );
    assert_eq!(
        credentials[0]["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    );

    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["limits"]["memory"].is_string());
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect=true"), "{args:?}");
    assert!(
        args.contains(&"--storage-initializer-image=ghcr.io/mlctl/mlctl-ranker:0.1.0"),
        "the storage initializer defaults to the mlctl-ranker image at the appVersion: {args:?}"
    );
}

#[test]
fn watch_namespaces_render_namespaced_rbac_only() {
    require_e2e!();
    let objects = template(&[
        "--set",
        "watchNamespaces={search,ads}",
        "--set",
        "replicas=2",
        "--set",
        "logFormat=text",
    ]);
    let kinds = kinds(&objects);
    assert!(
        !kinds
            .iter()
            .any(|k| k == "ClusterRole" || k == "ClusterRoleBinding"),
        "{kinds:?}"
    );
    let role_namespaces: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "Role")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert!(role_namespaces.contains(&"search") && role_namespaces.contains(&"ads"));
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--namespaces=search,ads"), "{args}");
    assert!(args.contains("--log-format=text"), "{args}");
}

#[test]
fn security_contexts_default_to_restricted_and_merge_overrides() {
    require_e2e!();
    let objects = template(&[]);
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert_eq!(
        pod["containers"][0]["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        })
    );
    assert!(pod.get("imagePullSecrets").is_none(), "{pod}");

    // An override adds to the defaults rather than replacing them.
    let objects = template(&["--set", "podSecurityContext.fsGroup=65532"]);
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
}

#[test]
fn image_pull_secrets_extra_args_and_extra_env_land_in_the_deployment() {
    require_e2e!();
    let default_args = template(&[]);
    let default_args = strings(
        &only(&default_args, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"],
    )
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();

    let objects = template(&[
        "--set-json",
        r#"imagePullSecrets=[{"name":"regcred"},{"name":"mirror"}]"#,
        "--set-json",
        r#"extraArgs=["--lease-namespace=ops","--identity=operator-a"]"#,
        "--set-json",
        r#"extraEnv=[{"name":"RUST_BACKTRACE","value":"1"},{"name":"TOKEN","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]"#,
    ]);
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "mirror"}])
    );
    let container = &pod["containers"][0];
    // Appended after the chart's own arguments, which stay as they were.
    let args = strings(&container["args"]);
    assert_eq!(args.len(), default_args.len() + 2, "{args:?}");
    assert_eq!(&args[..default_args.len()], &default_args[..]);
    assert_eq!(
        &args[default_args.len()..],
        ["--lease-namespace=ops", "--identity=operator-a"]
    );
    let env = container["env"].as_array().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "RUST_LOG",
            "POD_NAME",
            "POD_NAMESPACE",
            "RUST_BACKTRACE",
            "TOKEN"
        ]
    );
    assert_eq!(env[3]["value"], "1");
    assert_eq!(env[4]["valueFrom"]["secretKeyRef"]["name"], "s");
}

#[test]
fn service_monitor_is_opt_in_and_scrapes_the_metrics_service_port() {
    require_e2e!();
    let objects = template(&[]);
    assert!(
        !kinds(&objects).iter().any(|k| k == "ServiceMonitor"),
        "{:?}",
        kinds(&objects)
    );

    let objects = template(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.interval=15s",
        "--set",
        "serviceMonitor.scrapeTimeout=5s",
        "--set",
        "serviceMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "serviceMonitor.namespace=monitoring",
    ]);
    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "monitoring");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // From another namespace it still looks in the release's.
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["mlctl-system"])
    );
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["interval"], "15s");
    assert_eq!(endpoints[0]["scrapeTimeout"], "5s");

    // It selects the metrics Service, by a label the operator pods lack: the
    // pod selector labels alone would also match any other Service that
    // fronts the operator pods.
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    let service = only(&objects, "Service");
    assert!(
        selects(selector, &service["metadata"]["labels"]),
        "{selector} does not select {}",
        service["metadata"]["labels"]
    );
    assert_eq!(service["metadata"]["namespace"], "mlctl-system");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics"),
        "{service}"
    );
    let pod_labels = &only(&objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
    assert!(!selects(selector, pod_labels), "{selector} {pod_labels}");

    // Defaults when enabled: in the release namespace, 30s / 10s.
    let objects = template(&["--set", "serviceMonitor.enabled=true"]);
    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["namespace"], "mlctl-system");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
}

#[test]
fn ranker_pod_monitor_is_opt_in_and_selects_the_ranking_model_pods_of_the_watched_namespaces() {
    require_e2e!();
    assert!(
        !kinds(&template(&[])).iter().any(|k| k == "PodMonitor"),
        "a PodMonitor by default"
    );
    let objects = template(&[
        "--set",
        "rankerPodMonitor.enabled=true",
        "--set",
        "rankerPodMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "rankerPodMonitor.interval=5s",
        "--set",
        "watchNamespaces={search,ads}",
    ]);
    let monitor = only(&objects, "PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "mlctl-system");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["search", "ads"])
    );
    // The labels the operator puts on every ranking-model pod
    // (operator/src/render: app.kubernetes.io/component and managed-by).
    let pod = json!({
        "app.kubernetes.io/component": "ranking-model",
        "app.kubernetes.io/managed-by": "mlctl-operator",
        "app.kubernetes.io/name": "ranker",
        "mlctl.io/model": "ranker",
    });
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, &pod), "{selector}");
    // Not the operator's own pods.
    let operator_pod = &only(&objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
    assert!(
        !selects(selector, operator_pod),
        "{selector} {operator_pod}"
    );
    let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["port"], "http");
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["interval"], "5s");

    // Watching every namespace: any namespace.
    let objects = template(&["--set", "rankerPodMonitor.enabled=true"]);
    let monitor = only(&objects, "PodMonitor");
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"any": true}));
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["interval"], "10s");
}

#[test]
fn service_monitor_without_the_metrics_service_is_refused() {
    require_e2e!();
    let out = run_template(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rendered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("metrics.service.enabled"), "{stderr}");
}

#[test]
fn pod_disruption_budget_only_with_more_than_one_replica() {
    require_e2e!();
    let objects = template(&[]);
    assert!(
        !kinds(&objects).iter().any(|k| k == "PodDisruptionBudget"),
        "one replica must not get a budget that blocks drains: {:?}",
        kinds(&objects)
    );

    let objects = template(&["--set", "replicas=2"]);
    let pdb = only(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["metadata"]["namespace"], "mlctl-system");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none(), "{pdb}");
    let deployment = only(&objects, "Deployment");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert!(selects(
        &pdb["spec"]["selector"]["matchLabels"],
        &deployment["spec"]["template"]["metadata"]["labels"]
    ));

    // minAvailable replaces maxUnavailable; a percentage stays a string.
    let objects = template(&[
        "--set",
        "replicas=3",
        "--set",
        "podDisruptionBudget.minAvailable=50%",
    ]);
    let pdb = only(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], "50%");
    assert!(pdb["spec"].get("maxUnavailable").is_none(), "{pdb}");

    let objects = template(&[
        "--set",
        "replicas=2",
        "--set",
        "podDisruptionBudget.enabled=false",
    ]);
    assert!(
        !kinds(&objects).iter().any(|k| k == "PodDisruptionBudget"),
        "{:?}",
        kinds(&objects)
    );
}

#[test]
fn scheduling_and_pod_metadata_values_render() {
    require_e2e!();
    let objects = template(&[]);
    let template_default = &only(&objects, "Deployment")["spec"]["template"];
    for key in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
    ] {
        assert!(
            template_default["spec"].get(key).is_none(),
            "{key} by default: {template_default}"
        );
    }
    assert!(template_default["metadata"].get("annotations").is_none());

    let affinity = json!({
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
        ]}}
    });
    let tolerations =
        json!([{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}]);
    let objects = template(&[
        "--set",
        "nodeSelector.kubernetes\\.io/os=linux",
        "--set-json",
        &format!("tolerations={tolerations}"),
        "--set-json",
        &format!("affinity={affinity}"),
        "--set",
        "podAnnotations.example\\.com/team=search",
        "--set",
        "podLabels.team=search",
        "--set",
        "priorityClassName=system-cluster-critical",
    ]);
    let deployment = only(&objects, "Deployment");
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"], tolerations);
    assert_eq!(pod["affinity"], affinity);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        template["metadata"]["annotations"],
        json!({"example.com/team": "search"})
    );
    assert_eq!(template["metadata"]["labels"]["team"], "search");
    // Extra pod labels never leak into the (immutable) Deployment selector.
    assert!(
        deployment["spec"]["selector"]["matchLabels"]
            .get("team")
            .is_none(),
        "{deployment}"
    );
}
