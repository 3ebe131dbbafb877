//! The real node (`e2e/cluster up --with-node`): real containers from the
//! images `make images` built, the operator installed in the cluster with
//! `helm install`, models fetched by the storage initializer from servers the
//! test starts inside the node's network, scored through the `<model>`
//! Service by kube-proxy, and the failures a real kubelet reports.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use kube::{Api, ResourceExt, api::ListParams};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::node::{self, NODE_IP, NodeProcess};
use mlctl_e2e::operator::target_dir;
use mlctl_e2e::{
    TestNamespace, apply_yaml, client, install_crds, phase_is, require_node, wait_for,
    workspace_root,
};

const LONG: Duration = Duration::from_secs(180);

fn ranker_binary() -> PathBuf {
    let path = target_dir().join("debug/mlctl-ranker");
    assert!(
        path.is_file(),
        "{} missing: `cargo build -p mlctl-ranker` (make test does)",
        path.display()
    );
    path
}

/// A golden LightGBM ranker and rows without missing values.
struct Golden {
    model: PathBuf,
    rows: Vec<Vec<f64>>,
}

fn golden() -> Golden {
    let dir = workspace_root().join("ranker/golden");
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("lgb_lambdarank.case.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<Vec<f64>> = case["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64())
                .collect::<Option<Vec<f64>>>()
        })
        .take(40)
        .collect();
    assert!(
        rows.len() >= 20,
        "the golden case has too few complete rows"
    );
    Golden {
        model: dir.join("lgb_lambdarank.txt"),
        rows,
    }
}

/// What `mlctl-ranker predict` scores offline for `rows`.
fn predict_offline(model: &Path, rows: &[Vec<f64>]) -> Vec<f64> {
    let dir = node::scratch_dir("predict");
    let csv = dir.join("rows.csv");
    let text: String = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    std::fs::write(&csv, text).unwrap();
    let out = Command::new(ranker_binary())
        .args(["predict", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&csv)
        .output()
        .expect("run mlctl-ranker predict");
    assert!(
        out.status.success(),
        "predict: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse::<f64>().expect("a score per line"))
        .collect()
}

/// POSTs `:rank` to the `<model>` Service's ClusterIP (through kube-proxy) and
/// returns (version, id → score).
async fn rank_through_service(
    ns: &TestNamespace,
    model: &str,
    rows: &[Vec<f64>],
) -> (String, BTreeMap<u64, f64>) {
    let services: Api<Service> = ns.api();
    let svc = services.get(model).await.unwrap();
    let ip = svc.spec.unwrap().cluster_ip.expect("a ClusterIP");
    let documents: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| serde_json::json!({"id": i, "features": r}))
        .collect();
    let body = serde_json::json!({"query": "e2e", "documents": documents});
    let url = format!("http://{ip}:80/v1/models/{model}:rank");
    let text = node::wait_for_answer(|c| c.post(&url).json(&body), LONG).await;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<u64> = value["ranking"]
        .as_array()
        .expect("a ranking")
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    // serde_json (without float_roundtrip) may round a float one ULP off: the
    // scores are read from the text with Rust's correctly rounded parser.
    let scores: Vec<f64> = text
        .split("\"score\":")
        .skip(1)
        .map(|rest| {
            let end = rest.find(['}', ',']).expect("a number");
            rest[..end].trim().parse().expect("a score")
        })
        .collect();
    assert_eq!(ids.len(), scores.len(), "{text}");
    (
        value["version"].as_str().unwrap_or_default().to_string(),
        ids.into_iter().zip(scores).collect(),
    )
}

fn assert_scores_match(offline: &[f64], served: &BTreeMap<u64, f64>) {
    assert_eq!(served.len(), offline.len(), "every document is ranked");
    for (i, want) in offline.iter().enumerate() {
        let got = served[&(i as u64)];
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "document {i}: served {got}, offline {want}"
        );
    }
}

/// The YAML of a RankingModel on the real node.
fn model_yaml(
    name: &str,
    version: &str,
    uri: &str,
    sha256: &str,
    extra_model: &str,
    extra_spec: &str,
) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model:
    version: "{version}"
    uri: {uri}
    format: lightgbm
    sha256: {sha256}
{extra_model}  runtime:
{placement}    resources:
      requests: {{cpu: 50m, memory: 64Mi}}
      limits: {{memory: 256Mi}}
  replicas: 1
{extra_spec}"#,
        placement = node::placement_yaml(4),
    )
}

async fn pods_of(ns: &TestNamespace, model: &str) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    pods.list(&ListParams::default().labels(&format!("mlctl.io/model={model}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn the_real_node_runs_pods_and_its_services_answer_through_kube_proxy() {
    require_node!();
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes.get(&node::name()).await.unwrap();
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == node::NODE_TAINT && t.effect == "NoSchedule"),
        "the real node is tainted so only pods that ask land there: {taints:?}"
    );
    let ns = TestNamespace::with_pod_security(&client, "node-svc", "restricted").await;
    let busybox = node::busybox_image();
    let placement = node::placement_yaml(6);
    apply_yaml(
        &client,
        ns.name(),
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
{placement}      containers:
      - name: httpd
        image: {busybox}
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /tmp/www && echo "served-by-$HOSTNAME" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{tcpSocket: {{port: http}}, periodSeconds: 1}}
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"#
        ),
    )
    .await;
    let pods: Api<Pod> = ns.api();
    let ready = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let web = mlctl_e2e::wait_for_list(
        &pods,
        kube::runtime::watcher::Config::default().labels("app=web"),
        |ps: &[Pod]| ps.len() == 1 && ready(ps.first()),
        LONG,
    )
    .await;
    let web = &web[0];
    assert_eq!(
        web.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node::name().as_str())
    );
    let ip = Api::<Service>::namespaced(client.clone(), ns.name())
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    // From the test process: the proxy opens the connection inside the node's
    // network, kube-proxy's rules take the ClusterIP to the pod.
    let body = node::wait_for_answer(|c| c.get(format!("http://{ip}/index.html")), LONG).await;
    assert_eq!(body.trim(), format!("served-by-{}", web.name_any()));
    // From a pod: a client on the same bridge reaches the Service (hairpin
    // through iptables), and its output comes back through `kubectl logs`
    // (the API server reaches the kubelet through its egress selector).
    apply_yaml(
        &client,
        ns.name(),
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
{placement}  containers:
  - name: nc
    image: {busybox}
    imagePullPolicy: Never
    command: [sh, -c, 'printf "GET /index.html HTTP/1.0\r\n\r\n" | nc -w 5 {ip} 80']
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
            placement = node::placement_yaml(2)
        ),
    )
    .await;
    let done = wait_for(
        &pods,
        "client",
        |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
        },
        LONG,
    )
    .await;
    let logs = pods.logs("client", &Default::default()).await.unwrap();
    assert_eq!(
        done.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "the client pod failed: {logs}"
    );
    assert!(
        logs.contains(&format!("served-by-{}", web.name_any())),
        "client output: {logs}"
    );
    ns.finish().await;
}

#[tokio::test]
async fn the_operator_from_its_image_serves_models_fetched_over_http_and_s3_with_offline_scores() {
    require_node!();
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::with_pod_security(&client, "node-serve", "restricted").await;
    node::helm_install_operator(&ns, &[]);

    let golden = golden();
    let offline = predict_offline(&golden.model, &golden.rows);
    let sha = node::sha256_hex(&golden.model);

    // HTTP: a plain file server inside the node's network.
    let www = node::scratch_dir("www");
    std::fs::copy(&golden.model, www.join("model.txt")).unwrap();
    let _http = node::file_server(&www, 18080);
    // S3: moto's S3 server, seeded through the node proxy.
    let venv = String::from_utf8(
        Command::new(workspace_root().join("ranker/tools/pyenv"))
            .arg("s3")
            .output()
            .expect("ranker/tools/pyenv s3")
            .stdout,
    )
    .unwrap();
    let moto_bin = format!("{}/bin/moto_server", venv.trim());
    let _moto = NodeProcess::start(
        "moto",
        &moto_bin,
        &["-H", NODE_IP, "-p", "19000"],
        "Running on",
        Duration::from_secs(60),
    );
    let s3 = format!("http://{NODE_IP}:19000");
    let http = node::http_client();
    assert!(
        http.put(format!("{s3}/models"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let put = http
        .put(format!("{s3}/models/ranker/v1/model.txt"))
        .body(std::fs::read(&golden.model).unwrap())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "seeding moto: {}", put.status());

    apply_yaml(
        &client,
        ns.name(),
        &format!(
            "{}---\n{}---\n{}",
            model_yaml(
                "over-http",
                "v1",
                &format!("http://{NODE_IP}:18080/model.txt"),
                &sha,
                "",
                ""
            ),
            r#"apiVersion: v1
kind: Secret
metadata:
  name: s3-credentials
stringData:
  AWS_ACCESS_KEY_ID: testing
  AWS_SECRET_ACCESS_KEY: testing
  AWS_REGION: us-east-1
  AWS_ENDPOINT_URL: http://10.250.0.2:19000
"#,
            model_yaml(
                "over-s3",
                "v1",
                "s3://models/ranker/v1/model.txt",
                &sha,
                "    credentialsSecret: s3-credentials\n",
                ""
            ),
        ),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    for name in ["over-http", "over-s3"] {
        wait_for(&models, name, phase_is(Phase::Healthy), LONG).await;
        let pods = pods_of(&ns, name).await;
        assert!(!pods.is_empty());
        for pod in &pods {
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(
                spec.node_name.as_deref(),
                Some(node::name().as_str()),
                "{name} runs on the real node"
            );
            let status = pod.status.as_ref().unwrap();
            let init = &status.init_container_statuses.as_ref().unwrap()[0];
            let terminated = init
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .expect("the initializer ran");
            assert_eq!(terminated.exit_code, 0, "{name}: {terminated:?}");
            // Readiness came after the artifact was fetched and loaded.
            let ready_at = status
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "True")
                .and_then(|c| c.last_transition_time.clone())
                .expect("Ready");
            assert!(ready_at.0 >= terminated.finished_at.clone().unwrap().0);
        }
        let (version, served) = rank_through_service(&ns, name, &golden.rows).await;
        assert_eq!(version, "v1");
        assert_scores_match(&offline, &served);
    }
    ns.finish().await;
}

#[tokio::test]
async fn a_wrong_sha256_aborts_at_the_progress_deadline_while_stable_keeps_serving() {
    require_node!();
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "node-sha").await;
    node::helm_install_operator(&ns, &[]);
    let golden = golden();
    let www = node::scratch_dir("www-sha");
    std::fs::copy(&golden.model, www.join("model.txt")).unwrap();
    let _http = node::file_server(&www, 18081);
    let uri = format!("http://{NODE_IP}:18081/model.txt");
    let good = node::sha256_hex(&golden.model);
    let wrong = "0".repeat(64);
    let rollout = "  rollout:\n    progressDeadlineSeconds: 25\n    steps:\n      - setWeight: 50\n      - pause: {duration: 5s}\n";
    apply_yaml(
        &client,
        ns.name(),
        &model_yaml("ranker", "v1", &uri, &good, "", rollout),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "ranker", phase_is(Phase::Healthy), LONG).await;

    apply_yaml(
        &client,
        ns.name(),
        &model_yaml("ranker", "v2", &uri, &wrong, "", rollout),
    )
    .await;
    let aborted = wait_for(&models, "ranker", phase_is(Phase::Degraded), LONG).await;
    let status = aborted.status.as_ref().unwrap();
    assert_eq!(
        status.stable.as_ref().unwrap().version,
        "v1",
        "stable stays v1"
    );
    // The initializer's own words reach the pod status: both hashes.
    let pods = pods_of(&ns, "ranker").await;
    let messages: Vec<String> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.init_container_statuses.as_ref())
        .flatten()
        .filter_map(|s| {
            let t = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .or_else(|| s.state.as_ref().and_then(|l| l.terminated.as_ref()))?;
            (t.exit_code != 0).then(|| {
                format!(
                    "exit {}: {}",
                    t.exit_code,
                    t.message.clone().unwrap_or_default()
                )
            })
        })
        .collect();
    let wrong_msg = messages
        .iter()
        .find(|m| m.contains(&wrong))
        .unwrap_or_else(|| panic!("no failed initializer names the expected hash: {messages:?}"));
    assert!(
        wrong_msg.contains(&good),
        "the message names the actual hash too: {wrong_msg}"
    );
    assert!(
        wrong_msg.starts_with("exit 3"),
        "a mismatch exits 3: {wrong_msg}"
    );
    // Stable keeps serving through the Service, at v1.
    let (version, served) = rank_through_service(&ns, "ranker", &golden.rows).await;
    assert_eq!(version, "v1");
    assert_eq!(served.len(), golden.rows.len());
    // `mlctl describe` says why.
    let out = Command::new(target_dir().join("debug/mlctl"))
        .args(["-n", ns.name(), "describe", "rankingmodel", "ranker"])
        .env(
            "KUBECONFIG",
            std::env::var("KUBECONFIG").unwrap_or_default(),
        )
        .output()
        .expect("run mlctl describe");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mlctl describe: {text}");
    assert!(
        text.contains("sha256") && text.contains(&wrong) && text.contains(&good),
        "describe: {text}"
    );
    ns.finish().await;
}

/// The PIDs (host view) of a container's processes, from containerd.
fn container_pids(container_id: &str) -> Vec<u32> {
    let id = container_id.rsplit("://").next().unwrap();
    let socket = mlctl_e2e::cluster_dir().join("node/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io", "tasks", "ps", id])
        .output()
        .expect("ctr tasks ps");
    assert!(
        out.status.success(),
        "ctr tasks ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn the_restricted_security_context_holds_and_a_small_memory_limit_is_reported_as_oomkilled() {
    require_node!();
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::with_pod_security(&client, "node-sec", "restricted").await;
    node::helm_install_operator(&ns, &[]);
    let golden = golden();
    let www = node::scratch_dir("www-sec");
    std::fs::copy(&golden.model, www.join("model.txt")).unwrap();
    // 64 MiB that the ranker reads whole before parsing: far above a 24 MiB limit.
    let big: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("big.txt"), &big).unwrap();
    let _http = node::file_server(&www, 18082);
    apply_yaml(
        &client,
        ns.name(),
        &model_yaml(
            "secure",
            "v1",
            &format!("http://{NODE_IP}:18082/model.txt"),
            &node::sha256_hex(&golden.model),
            "",
            "",
        ),
    )
    .await;
    let models: Api<RankingModel> = ns.api();
    wait_for(&models, "secure", phase_is(Phase::Healthy), LONG).await;
    let pod = pods_of(&ns, "secure").await.remove(0);
    let status = pod.status.as_ref().unwrap();
    let ranker = status
        .container_statuses
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.name == "ranker")
        .unwrap();
    let pids = container_pids(ranker.container_id.as_deref().unwrap());
    assert!(!pids.is_empty());
    for pid in &pids {
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace().skip(1).all(|u| u == "65532"),
            "the ranker runs as 65532 (real, effective, saved, fs): {uid}"
        );
        let root = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap()
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .unwrap()
            .to_string();
        assert!(
            root.split_whitespace()
                .nth(5)
                .unwrap()
                .split(',')
                .any(|o| o == "ro"),
            "read-only root: {root}"
        );
    }
    // A write outside /tmp fails, inside /tmp works (the image has no shell:
    // the ranker's own fetch writes the file).
    let exec = |dir: &str| {
        Command::new(mlctl_e2e::kubectl())
            .args([
                "-n",
                ns.name(),
                "exec",
                &pod.name_any(),
                "-c",
                "ranker",
                "--",
                "mlctl-ranker",
                "fetch",
            ])
            .arg(format!("--uri=http://{NODE_IP}:18082/model.txt"))
            .arg(format!("--dir={dir}"))
            .output()
            .expect("kubectl exec")
    };
    let denied = exec("/opt/written-by-test");
    let text = String::from_utf8_lossy(&denied.stderr).to_string()
        + &String::from_utf8_lossy(&denied.stdout);
    assert!(
        !denied.status.success(),
        "a write outside /tmp must fail: {text}"
    );
    assert!(text.to_lowercase().contains("read-only"), "{text}");
    let allowed = exec("/tmp/written-by-test");
    assert!(
        allowed.status.success(),
        "/tmp is writable: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    // Too little memory: the ranker reads 64 MiB under a 24 MiB limit.
    apply_yaml(
        &client,
        ns.name(),
        &model_yaml(
            "tight",
            "v1",
            &format!("http://{NODE_IP}:18082/big.txt"),
            &node::sha256_hex(&www.join("big.txt")),
            "",
            "",
        )
        .replace("limits: {memory: 256Mi}", "limits: {memory: 24Mi}")
        .replace("memory: 64Mi}", "memory: 24Mi}"),
    )
    .await;
    let events: Api<Event> = ns.api();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let pods = pods_of(&ns, "tight").await;
        let oom = pods.iter().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .any(|c| {
                    [c.last_state.as_ref(), c.state.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(|s| {
                            s.terminated
                                .as_ref()
                                .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
                        })
                })
        });
        let model = models.get("tight").await.unwrap();
        let said = serde_json::to_string(&model.status)
            .unwrap_or_default()
            .contains("OOMKilled");
        let evented = events
            .list(
                &ListParams::default()
                    .fields("involvedObject.kind=RankingModel,involvedObject.name=tight"),
            )
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("OOMKilled")
                    || e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("OOMKilled"))
            });
        if oom && said && evented {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "OOMKilled not reported (pod {oom}, status {said}, event {evented}): {:?}",
            model.status
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ns.finish().await;
}

#[tokio::test]
async fn a_feature_pipeline_job_runs_on_the_real_node_and_its_termination_message_sets_the_watermark()
 {
    require_node!();
    let client = client().await;
    install_crds(&client).await;
    // Restricted: the operator's default security context must be enough.
    let ns = TestNamespace::with_pod_security(&client, "node-fp", "restricted").await;
    node::helm_install_operator(&ns, &[]);
    let busybox = node::busybox_image();
    let report = r#"{"watermark":"2026-12-01T06:00:00Z","rowsRead":1200,"rowsWritten":1180}"#;
    apply_yaml(
        &client,
        ns.name(),
        &format!(
            r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: pop
spec:
  trigger:
    schedule: {{cron: "0 3 * * *"}}
  engine:
    container:
      image: {busybox}
      command: [sh, -c, 'test "$(id -u)" != 0 && test -r "$MLCTL_PIPELINE_CONFIG" && echo ''{report}'' > /dev/termination-log']
{placement}  features:
    entityKeys: [doc_id]
    schemaVersion: 2
    fields: [{{name: orders_7d, dtype: int64}}]
  retries: {{backoffLimit: 0}}
"#,
            placement = node::placement_yaml(6),
        ),
    )
    .await;
    let pipelines: Api<mlctl_crds::FeaturePipeline> = ns.api();
    wait_for(
        &pipelines,
        "pop",
        |p: Option<&mlctl_crds::FeaturePipeline>| p.is_some(),
        LONG,
    )
    .await;
    let requested = "2026-12-02T08:00:00Z";
    let patch = serde_json::json!({"metadata": {"annotations": {"mlctl.io/run": requested}}});
    pipelines
        .patch(
            "pop",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let done = wait_for(
        &pipelines,
        "pop",
        |p: Option<&mlctl_crds::FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                s.watermark.is_some() || s.last_run.as_ref().is_some_and(|r| r.phase == "Failed")
            })
        },
        LONG,
    )
    .await;
    let status = done.status.unwrap();
    let last = status.last_run.clone().unwrap();
    assert_eq!(last.phase, "Succeeded", "the run failed: {status:?}");
    assert_eq!(
        status.watermark.unwrap().0.to_string(),
        "2026-12-01T06:00:00Z"
    );
    assert_eq!(
        (last.rows_read, last.rows_written),
        (Some(1200), Some(1180))
    );
    // It really ran on the real node: its pod was scheduled there and exited 0.
    let pods: Api<Pod> = ns.api();
    let run_pods = pods
        .list(&ListParams::default().labels("mlctl.io/pipeline=pop"))
        .await
        .unwrap()
        .items;
    assert!(!run_pods.is_empty());
    for pod in &run_pods {
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some(node::name().as_str())
        );
        let terminated = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.message.as_deref().map(str::trim), Some(report));
    }
    ns.finish().await;
}
