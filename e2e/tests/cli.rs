//! The built `mlctl` binary against the real local control plane, with an
//! operator process bound by the chart's RBAC: every verb, and every exit code
//! of the contract (0 success, 1 error, 2 usage, 10 failed, 11 paused, 12
//! timed out), the way a CI script uses them.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::operator::{Operator, free_port, service_account_kubeconfig, target_dir};
use mlctl_e2e::{TestNamespace, apply_yaml, client, install_crds, require_e2e, wait_for};

fn binary(env: &str, name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join(name));
    assert!(
        path.is_file(),
        "{} does not exist: build it first (`cargo build -p {package}`; make test does)",
        path.display()
    );
    path
}

fn admin_kubeconfig() -> Kubeconfig {
    let admin = std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set by e2e/run");
    Kubeconfig::read_from(PathBuf::from(admin)).expect("read kubeconfig")
}

/// A namespace with the CRDs, the chart's RBAC and an operator running.
async fn setup(prefix: &str) -> (Client, TestNamespace, Operator) {
    let (client, ns, operator, _) = mlctl_e2e::operator::setup(prefix).await;
    (client, ns, operator)
}

/// Runs the built `mlctl` (admin kubeconfig from KUBECONFIG) with `-n ns`.
async fn mlctl(ns: &str, args: &[&str]) -> Output {
    let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if !ns.is_empty() {
        full.extend(["-n".to_string(), ns.to_string()]);
    }
    let bin = binary("MLCTL_BIN", "mlctl", "mlctl");
    tokio::process::Command::new(bin)
        .args(&full)
        .output()
        .await
        .expect("run mlctl")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
}

const MODEL: &str = r#"
apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model: {version: "v1", uri: "s3://models/ranker/v1/model.txt", format: lightgbm}
  runtime: {image: "ghcr.io/mlctl/lightgbm-runtime:0.1.0"}
  replicas: 2
"#;

async fn healthy_at(api: &Api<RankingModel>, name: &str, version: &'static str) {
    wait_for(
        api,
        name,
        move |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
                s.phase == Some(Phase::Healthy)
                    && s.stable.as_ref().is_some_and(|st| st.version == version)
            })
        },
        Duration::from_secs(90),
    )
    .await;
}

/// The CI path on a model without rollout steps: status --wait, get, describe,
/// set-version --wait (0), rollback --wait (0), and the refusals (1).
#[tokio::test]
async fn cli_every_verb_on_a_model_that_replaces_when_available() {
    require_e2e!();
    let (client, ns, _operator) = setup("cli-verbs").await;
    let n = ns.name().to_string();
    apply_yaml(&client, &n, MODEL).await;
    let api: Api<RankingModel> = Api::namespaced(client.clone(), &n);

    // status --wait --until healthy: 0 once the first revision serves.
    let out = mlctl(
        &n,
        &[
            "status",
            "rm",
            "ranker",
            "--wait",
            "--until",
            "healthy",
            "--timeout",
            "90s",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("rankingmodel/ranker: Healthy: v1 serves all traffic"),
        "{}",
        show(&out)
    );
    // Progress went to stderr, the summary alone to stdout.
    assert_eq!(stdout(&out).lines().count(), 1, "{}", show(&out));
    // A one-shot status of a healthy model: 0.
    assert_code(&mlctl(&n, &["status", "rankingmodel", "ranker"]).await, 0);

    // get: a table with the CRD's columns, wide, json, yaml, name, -A.
    let out = mlctl(&n, &["get", "rm"]).await;
    assert_code(&out, 0);
    let table = stdout(&out);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "STABLE", "CANARY", "WEIGHT", "PHASE", "READY", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["ranker", "v1", "<none>", "<none>", "Healthy"],
        "{table}"
    );
    let out = mlctl(&n, &["get", "rankingmodels", "ranker", "-o", "wide"]).await;
    assert!(stdout(&out).contains("DESIRED"), "{}", show(&out));
    let out = mlctl(&n, &["get", "rm", "ranker", "-o", "json"]).await;
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["spec"]["model"]["version"], "v1");
    let out = mlctl(&n, &["get", "rm", "-o", "yaml"]).await;
    let yaml: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(
        yaml["items"][0]["metadata"]["name"],
        "ranker",
        "{}",
        show(&out)
    );
    let out = mlctl(&n, &["get", "rm", "-o", "name"]).await;
    assert_eq!(stdout(&out), "rankingmodel.mlctl.io/ranker\n");
    let out = mlctl("", &["get", "rm", "-A"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&n) && l.contains("ranker")),
        "{}",
        show(&out)
    );
    let out = mlctl(&n, &["get", "fp"]).await;
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("No featurepipelines found"),
        "{}",
        show(&out)
    );

    // describe: the versions, conditions and the operator's events.
    let out = mlctl(&n, &["describe", "rm", "ranker"]).await;
    assert_code(&out, 0);
    let page = stdout(&out);
    assert!(page.contains("Phase:       Healthy"), "{page}");
    assert!(
        page.contains("Stable:      v1 (s3://models/ranker/v1/model.txt)"),
        "{page}"
    );
    assert!(
        page.contains("Conditions:") && page.contains("Ready"),
        "{page}"
    );

    // Refusals: nothing to promote / abort / retry, unknown rollback target.
    for (verb, text) in [
        ("promote", "nothing to promote"),
        ("abort", "nothing to abort"),
        ("retry", "nothing to retry"),
    ] {
        let out = mlctl(&n, &[verb, "ranker"]).await;
        assert_code(&out, 1);
        assert!(stderr(&out).contains(text), "{}", show(&out));
    }
    let out = mlctl(&n, &["rollback", "ranker", "--to", "v0"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no such revision in status.history"),
        "{}",
        show(&out)
    );

    // set-version --wait: a new version that becomes available exits 0.
    let out = mlctl(
        &n,
        &[
            "set-version",
            "ranker",
            "--version",
            "v2",
            "--uri",
            "s3://models/ranker/v2/model.txt",
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("Healthy: v2 serves all traffic"),
        "{}",
        show(&out)
    );
    let model = api.get("ranker").await.unwrap();
    assert_eq!(model.status.unwrap().stable.unwrap().version, "v2");

    // rollback --wait: back to v1 from the history, with the annotation set.
    let out = mlctl(&n, &["rollback", "ranker", "--wait", "--timeout", "90s"]).await;
    assert_code(&out, 0);
    let model = api.get("ranker").await.unwrap();
    assert_eq!(model.spec.model.version, "v1");
    assert!(
        model
            .metadata
            .annotations
            .unwrap()
            .contains_key(mlctl_crds::requests::ROLLBACK)
    );
    healthy_at(&api, "ranker", "v1").await;

    // version: the client always; the operator is not deployed here.
    let out = mlctl(&n, &["version"]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("client: mlctl "), "{}", show(&out));
    assert!(
        stdout(&out).contains("operator: not found"),
        "{}",
        show(&out)
    );
    // completion
    let out = mlctl("", &["completion", "bash"]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("_mlctl"), "{}", show(&out));
    ns.finish().await;
}

/// 12 on a rollout still progressing at --timeout, then 10 once it hits the
/// progress deadline (Degraded); set-version --wait on such a version: 10.
#[tokio::test]
async fn cli_timeout_exits_12_and_a_missed_progress_deadline_exits_10() {
    require_e2e!();
    let (client, ns, _operator) = setup("cli-deadline").await;
    let n = ns.name().to_string();
    apply_yaml(&client, &n, MODEL).await;
    let api: Api<RankingModel> = Api::namespaced(client.clone(), &n);
    healthy_at(&api, "ranker", "v1").await;
    // A new version whose pods never become Ready (a kwok stage keeps pods
    // labelled mlctl.io/e2e-unready unready), with a short progress deadline.
    let patch = serde_json::json!({"spec": {
        "model": {"version": "v2", "uri": "s3://models/ranker/v2/model.txt"},
        "runtime": {"podMetadata": {"labels": {"mlctl.io/e2e-unready": "true"}}},
        "rollout": {"progressDeadlineSeconds": 20},
    }});
    api.patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let out = mlctl(
        &n,
        &[
            "status",
            "rm",
            "ranker",
            "--wait",
            "--until",
            "healthy",
            "--timeout",
            "5s",
        ],
    )
    .await;
    assert_code(&out, 12);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the timeout is honoured: {took:?}"
    );
    assert!(
        stdout(&out).contains("timed out after 5s"),
        "{}",
        show(&out)
    );
    // Following on: Degraded at the deadline, exit 10 with the reason.
    let out = mlctl(
        &n,
        &[
            "status",
            "rm",
            "ranker",
            "--wait",
            "--timeout",
            "90s",
            "--no-progress",
        ],
    )
    .await;
    assert_code(&out, 10);
    assert!(stdout(&out).contains("rollout failed"), "{}", show(&out));
    assert!(stderr(&out).is_empty(), "--no-progress: {}", show(&out));
    // One-shot status of a Degraded model: 10 too.
    assert_code(&mlctl(&n, &["status", "rm", "ranker"]).await, 10);
    // set-version --wait on another never-ready version: 10 at the deadline.
    let out = mlctl(
        &n,
        &[
            "set-version",
            "ranker",
            "--version",
            "v3",
            "--uri",
            "s3://models/ranker/v3/model.txt",
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await;
    assert_code(&out, 10);
    ns.finish().await;
}

/// Errors name their fix and exit 1; usage errors exit 2.
#[tokio::test]
async fn cli_errors_name_the_fix_and_usage_exits_2() {
    require_e2e!();
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "cli-errors").await;
    let n = ns.name().to_string();

    let out = mlctl(&n, &["status", "rm", "missing"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains(&format!("rankingmodel \"missing\" not found in namespace \"{n}\"; list them with mlctl get rm -n {n}")),
        "{}",
        show(&out)
    );
    // A ServiceAccount without any role: forbidden, naming verb and resource.
    apply_yaml(
        &client,
        &n,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: nobody}\n",
    )
    .await;
    let kubeconfig = service_account_kubeconfig(&client, &n, "nobody").await;
    let out = mlctl(
        &n,
        &["get", "rm", "--kubeconfig", kubeconfig.to_str().unwrap()],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains(&format!(
            "forbidden: you may not list rankingmodels.mlctl.io in namespace \"{n}\""
        )),
        "{}",
        show(&out)
    );
    // An unreachable API server.
    let mut config = admin_kubeconfig();
    for cluster in &mut config.clusters {
        if let Some(c) = cluster.cluster.as_mut() {
            c.server = Some(format!("https://127.0.0.1:{}", free_port()));
        }
    }
    let dead = target_dir()
        .join("e2e-cli")
        .join(format!("{n}-dead.kubeconfig"));
    std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
    std::fs::write(&dead, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let out = mlctl(&n, &["get", "rm", "--kubeconfig", dead.to_str().unwrap()]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("cannot reach the Kubernetes API server"),
        "{}",
        show(&out)
    );
    // An API server that does not serve the mlctl.io group (no CRDs) answers
    // a plain-text 404: a stand-in on 127.0.0.1 that answers only that.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let body = "404 page not found\n";
            let reply = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    let no_crds = target_dir()
        .join("e2e-cli")
        .join(format!("{n}-nocrds.kubeconfig"));
    std::fs::write(
        &no_crds,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    for args in [["get", "rm"], ["status", "rm"]] {
        let mut args = args.to_vec();
        args.extend(["ranker", "--kubeconfig", no_crds.to_str().unwrap()]);
        let out = mlctl(&n, &args).await;
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains(
                "the mlctl CRDs are not installed; install them with: kubectl apply -f crds/yaml/"
            ),
            "{}",
            show(&out)
        );
    }
    server.abort();
    // version still answers for the client, and says why the operator is unknown.
    let out = mlctl(&n, &["version", "--kubeconfig", dead.to_str().unwrap()]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("operator: unknown"), "{}", show(&out));
    // Usage: unknown flag, bad version, bad timeout, missing name.
    assert_code(&mlctl(&n, &["status", "rm", "x", "--bogus"]).await, 2);
    let out = mlctl(
        &n,
        &["set-version", "x", "--version", "V_1", "--uri", "s3://m/x"],
    )
    .await;
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--version \"V_1\""), "{}", show(&out));
    assert_code(
        &mlctl(&n, &["status", "rm", "x", "--wait", "--timeout", "soon"]).await,
        2,
    );
    assert_code(&mlctl(&n, &["promote"]).await, 2);
    let out = mlctl("", &["help", "exit-codes"]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("12  timed out"), "{}", show(&out));
    ns.finish().await;
}

/// A canary model: steps, analysis on a Prometheus query, a pause for a person.
fn canary_model(name: &str, query: &str, steps: &str) -> String {
    let address = std::env::var("MLCTL_E2E_PROMETHEUS_URL").unwrap_or_else(|_| {
        let base: u16 = std::env::var("MLCTL_E2E_PORT_BASE")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(26400);
        format!("http://127.0.0.1:{}", base + 90)
    });
    format!(
        r#"
apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model: {{version: "v1", uri: "s3://models/{name}/v1/model.txt", format: lightgbm}}
  runtime: {{image: "ghcr.io/mlctl/lightgbm-runtime:0.1.0"}}
  replicas: 2
  rollout:
    steps: {steps}
    analysis:
      templates:
        - name: check
          provider: {{prometheus: {{address: "{address}", query: "{query}"}}}}
          interval: 1s
          count: 1
          successCondition: "result >= 1"
          failureCondition: "result < 1"
"#
    )
}

/// Needs the operator's canary steps (issue #5). Analysis fails → 10; a good
/// canary → 0; a pause step → 11 at once; promote --wait → 0; abort --wait →
/// 10; retry.
#[tokio::test]
async fn cli_canary_outcomes_drive_the_exit_codes() {
    require_e2e!();
    let (client, ns, _operator) = setup("cli-canary").await;
    let n = ns.name().to_string();
    let api: Api<RankingModel> = Api::namespaced(client.clone(), &n);
    // `vector(1)` passes, `vector(0)` fails; both answer in any Prometheus.
    let steps = r#"[{setWeight: 20}, {analysis: {metrics: [check]}}, {setWeight: 50}]"#;
    apply_yaml(&client, &n, &canary_model("good", "vector(1)", steps)).await;
    apply_yaml(&client, &n, &canary_model("bad", "vector(0)", steps)).await;
    let paused = r#"[{setWeight: 20}, {pause: {}}, {setWeight: 60}]"#;
    apply_yaml(&client, &n, &canary_model("gated", "vector(1)", paused)).await;
    for name in ["good", "bad", "gated"] {
        healthy_at(&api, name, "v1").await;
    }

    let out = mlctl(
        &n,
        &[
            "set-version",
            "bad",
            "--version",
            "v2",
            "--uri",
            "s3://models/bad/v2/model.txt",
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .await;
    assert_code(&out, 10);
    assert!(
        stderr(&out).contains("analysis check"),
        "progress shows the analysis: {}",
        show(&out)
    );
    let out = mlctl(
        &n,
        &[
            "set-version",
            "good",
            "--version",
            "v2",
            "--uri",
            "s3://models/good/v2/model.txt",
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("weight 20%"),
        "progress shows the weights: {}",
        show(&out)
    );

    // A pause for a person ends `--until done` with 11 as soon as it pauses.
    let out = mlctl(
        &n,
        &[
            "set-version",
            "gated",
            "--version",
            "v2",
            "--uri",
            "s3://models/gated/v2/model.txt",
        ],
    )
    .await;
    assert_code(&out, 0);
    let out = mlctl(
        &n,
        &[
            "status",
            "rm",
            "gated",
            "--wait",
            "--until",
            "done",
            "--timeout",
            "120s",
        ],
    )
    .await;
    assert_code(&out, 11);
    assert!(
        stdout(&out).contains("mlctl promote gated"),
        "{}",
        show(&out)
    );
    assert_code(
        &mlctl(
            &n,
            &[
                "status",
                "rm",
                "gated",
                "--wait",
                "--until",
                "paused",
                "--timeout",
                "30s",
            ],
        )
        .await,
        0,
    );
    // abort --wait: the canary is aborted, the rollout failed: 10.
    let out = mlctl(&n, &["abort", "gated", "--wait", "--timeout", "60s"]).await;
    assert_code(&out, 10);
    // retry --wait: restarts from step 0 and pauses again: 11.
    let out = mlctl(&n, &["retry", "gated", "--wait", "--timeout", "120s"]).await;
    assert_code(&out, 11);
    // promote --wait: past the pause to the end: 0.
    let out = mlctl(&n, &["promote", "gated", "--wait", "--timeout", "120s"]).await;
    assert_code(&out, 0);
    let model = api.get("gated").await.unwrap();
    assert_eq!(model.status.unwrap().stable.unwrap().version, "v2");
    // promote --full --wait from the pause: the remaining steps are skipped: 0.
    let out = mlctl(
        &n,
        &[
            "set-version",
            "gated",
            "--version",
            "v3",
            "--uri",
            "s3://models/gated/v3/model.txt",
        ],
    )
    .await;
    assert_code(&out, 0);
    let out = mlctl(
        &n,
        &[
            "status",
            "rm",
            "gated",
            "--wait",
            "--until",
            "paused",
            "--timeout",
            "120s",
        ],
    )
    .await;
    assert_code(&out, 0);
    let out = mlctl(
        &n,
        &["promote", "gated", "--full", "--wait", "--timeout", "120s"],
    )
    .await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("Healthy: v3 serves all traffic"),
        "{}",
        show(&out)
    );
    ns.finish().await;
}
