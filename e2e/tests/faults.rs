//! What mlctl survives: fault injection on a real control plane. Each test
//! runs the operator from its Helm chart on the real node, brings a model to
//! the middle of a canary (steps, timed pauses, a background analysis on the
//! cluster's Prometheus), injects one fault, and then checks that
//! - no step was skipped or repeated (each StepCompleted Event once, in order),
//! - no traffic goes to an aborted version (the model's Service selects the
//!   stable revision),
//! - the rollout ends where the spec and the analysis say (promoted while the
//!   analysis passes; never promoted without it),
//! - the audit log shows no accepted write from an operator process that was
//!   not the leader at that moment.
//!
//! The figures go to docs/operator.md ("What mlctl survives").
//!
//! The slow-provider test runs the operator as a process instead (it needs
//! 127.0.0.1 test endpoints on the host).

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::audit::{Audit, Mark, Write, describe};
use mlctl_e2e::metrics::MetricsEndpoint;
use mlctl_e2e::scene::record_figures;
use mlctl_e2e::web::{Answer, ValueServer};
use mlctl_e2e::{
    DEFAULT_TIMEOUT, TestNamespace, apply_yaml, client, install_crds, node, phase_is, require_e2e,
    wait_for, wait_for_events, workspace_root,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const LONG: Duration = Duration::from_secs(180);

/// The faults hit the whole cluster (an API server restart cuts every test's
/// watches): the tests of this file run one at a time. (cargo runs the test
/// binaries one after another, so no other file's tests run meanwhile.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The chart's election timing in these tests (lease, renew deadline, retry).
const LEASE: (u64, u64, u64) = (6, 4, 1);

fn cluster(args: &[&str]) {
    let out = Command::new(workspace_root().join("e2e/cluster"))
        .args(args)
        .output()
        .expect("run e2e/cluster");
    assert!(
        out.status.success(),
        "e2e/cluster {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The model of every fault test: four replicas on kwok nodes, six steps
/// with timed pauses (about 25 s in all), the error rate read from the
/// cluster's Prometheus every 2 s; `extra` adds metrics.
fn model(version: &str, id: &str, extra: &str) -> String {
    let prometheus = mlctl_e2e::scene::prometheus_in_cluster();
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: "{version}"
    uri: s3://models/ranker/{version}/model.txt
    format: lightgbm
  runtime:
    image: ghcr.io/mlctl/lightgbm-runtime:0.1.0
    port: 8080
  replicas: 4
  rollout:
    steps:
    - setWeight: 25
    - pause: {{duration: 6s}}
    - setWeight: 50
    - pause: {{duration: 6s}}
    - setWeight: 75
    - pause: {{duration: 6s}}
    progressDeadlineSeconds: 120
    analysis:
      metrics:
      - name: error-rate
        provider:
          prometheus:
            address: {prometheus}
            query: 'e2e_error_rate{{e2e_test="{id}", version="{{{{version}}}}"}}'
            timeout: 2s
        interval: 2s
        successCondition: result < 0.05
        consecutiveErrorLimit: 3
{extra}"#
    )
}

/// A test: its namespace, the chart-installed operator and the metrics the
/// analysis reads.
struct Scene {
    ns: TestNamespace,
    models: Api<RankingModel>,
    endpoint: MetricsEndpoint,
    audit: Audit,
    mark: Mark,
}

async fn scene(prefix: &str, replicas: u32, extra_metrics: &str) -> Scene {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let endpoint = MetricsEndpoint::start(&format!("faults-{}", ns.name())).await;
    for v in ["v1", "v2"] {
        endpoint.set("e2e_error_rate", v, 0.0);
    }
    endpoint
        .wait_for_value(
            &format!(
                "e2e_error_rate{{e2e_test=\"{}\",version=\"v2\"}}",
                endpoint.id
            ),
            0.0,
            LONG,
        )
        .await;
    let audit = Audit::open();
    let mark = audit.mark();
    node::helm_install_operator(
        &ns,
        &[
            "--set",
            &format!("replicas={replicas}"),
            "--set",
            &format!("leaderElection.leaseDurationSeconds={}", LEASE.0),
            "--set",
            &format!("leaderElection.renewDeadlineSeconds={}", LEASE.1),
            "--set",
            &format!("leaderElection.retryPeriodSeconds={}", LEASE.2),
        ],
    );
    let models: Api<RankingModel> = ns.api();
    apply_yaml(
        &client,
        ns.name(),
        &model("v1", &endpoint.id, extra_metrics),
    )
    .await;
    wait_for(&models, "ranker", phase_is(Phase::Healthy), LONG).await;
    Scene {
        ns,
        models,
        endpoint,
        audit,
        mark,
    }
}

impl Scene {
    /// Starts the canary of v2 and waits until it is past its first step.
    async fn mid_canary(&self, extra_metrics: &str) {
        apply_yaml(
            self.ns.client(),
            self.ns.name(),
            &model("v2", &self.endpoint.id, extra_metrics),
        )
        .await;
        wait_for(
            &self.models,
            "ranker",
            |m: Option<&RankingModel>| {
                m.and_then(|m| m.status.as_ref())
                    .and_then(|s| s.canary.as_ref())
                    .is_some_and(|c| c.version == "v2" && c.step_index >= 1)
            },
            LONG,
        )
        .await;
    }

    /// Waits for the promotion, then checks what every fault must leave
    /// intact: each step once, traffic on stable, writes only by the
    /// leader. Returns the number of the operator's writes.
    async fn promoted_soundly(&self) -> usize {
        let m = self.promoted().await;
        self.steps_once_in_order(6).await;
        self.traffic_on_stable(&m).await;
        self.only_leaders_wrote()
    }

    async fn promoted(&self) -> RankingModel {
        wait_for(
            &self.models,
            "ranker",
            |m: Option<&RankingModel>| {
                m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
                    s.stable.as_ref().is_some_and(|st| st.version == "v2")
                        && s.phase == Some(Phase::Healthy)
                })
            },
            LONG,
        )
        .await
    }

    /// Each step completed exactly once and in order.
    async fn steps_once_in_order(&self, expected: usize) {
        let events: Api<Event> = self.ns.api();
        // Events are queued after the status write: wait for the last one.
        let of_v2 = |l: &[Event]| {
            l.iter()
                .filter(|e| {
                    e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("canary v2"))
                })
                .count()
        };
        let mut steps: Vec<(usize, i32, String)> =
            wait_for_events(&events, "StepCompleted", |l| of_v2(l) >= expected, LONG)
                .await
                .into_iter()
                .filter_map(|e| {
                    let m = e.message.clone()?;
                    if !m.contains("canary v2") {
                        return None;
                    }
                    let n: usize = m.split("step ").nth(1)?.split('/').next()?.parse().ok()?;
                    let count =
                        e.count.unwrap_or(1) + e.series.as_ref().and_then(|s| s.count).unwrap_or(0);
                    Some((n, count, m))
                })
                .collect();
        steps.sort();
        let numbers: Vec<usize> = steps.iter().map(|s| s.0).collect();
        assert_eq!(
            numbers,
            (1..=expected).collect::<Vec<_>>(),
            "each step once: {steps:?}"
        );
        assert!(
            steps.iter().all(|s| s.1 == 1),
            "a step was recorded more than once: {steps:?}"
        );
    }

    /// The model's Service selects the stable revision only.
    async fn traffic_on_stable(&self, m: &RankingModel) {
        let revision = m
            .status
            .as_ref()
            .unwrap()
            .stable
            .as_ref()
            .unwrap()
            .revision
            .clone();
        let services: Api<Service> = self.ns.api();
        let svc = services.get("ranker").await.unwrap();
        let selector = svc.spec.unwrap().selector.unwrap();
        assert_eq!(
            selector.get("mlctl.io/revision"),
            Some(&revision),
            "the model Service must select the stable revision"
        );
    }

    /// No accepted write of an operator process that did not hold the
    /// lease at that moment: each write's last preceding successful lease
    /// write is its own.
    fn only_leaders_wrote(&self) -> usize {
        let writes: Vec<Write> = self
            .audit
            .since(self.mark)
            .into_iter()
            .filter(|w| {
                w.user
                    .username
                    .starts_with(&format!("system:serviceaccount:{}:", self.ns.name()))
            })
            .filter(|w| w.user_agent.starts_with("mlctl-operator/"))
            .filter(|w| w.response_status.as_ref().is_some_and(|s| s.code < 300))
            .collect();
        let mut holder: Option<String> = None;
        let mut bad = Vec::new();
        for w in &writes {
            let who = w.user_agent.clone();
            if w.resource() == "leases" {
                holder = Some(who);
            } else if holder.as_deref() != Some(who.as_str()) {
                bad.push(w.clone());
            }
        }
        assert!(
            bad.is_empty(),
            "writes from a process that was not the leader:\n{}",
            describe(&bad)
        );
        writes.len()
    }

    /// The operator pods, and their containers' host PIDs (the real node's
    /// containers run on this machine).
    async fn operator_pids(&self) -> Vec<(String, u32)> {
        let pods: Api<Pod> = self.ns.api();
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=mlctl-operator"))
            .await
            .unwrap();
        let mut out = Vec::new();
        for pod in list.items {
            let uid = pod.uid().unwrap();
            let needles = [uid.clone(), uid.replace('-', "_")];
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != "mlctl-operator" {
                    continue;
                }
                let cgroup =
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                if needles.iter().any(|n| cgroup.contains(n.as_str())) {
                    out.push((pod.name_any(), pid));
                }
            }
        }
        out
    }

    async fn leader_pod(&self) -> String {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = self.ns.api();
        let lease = leases.list(&ListParams::default()).await.unwrap().items;
        let holder = lease
            .iter()
            .find_map(|l| l.spec.as_ref()?.holder_identity.clone())
            .expect("a lease holder");
        // The chart sets the identity to the pod name.
        holder
    }

    async fn finish(self) {
        self.ns.finish().await;
    }
}

#[tokio::test]
async fn the_api_server_restarting_mid_canary() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let s = scene("fault-apiserver", 1, "").await;
    s.mid_canary("").await;
    let t = Instant::now();
    cluster(&["kill", "kube-apiserver"]);
    cluster(&["start", "kube-apiserver"]);
    let down = t.elapsed();
    let writes = s.promoted_soundly().await;
    record_figures(&format!(
        "fault kube-apiserver killed mid-canary ({:.1}s down): promoted after {:.1}s, each step once, {writes} writes all by the leader",
        down.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
    s.finish().await;
}

#[tokio::test]
async fn etcd_restarting_mid_canary() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let s = scene("fault-etcd", 1, "").await;
    s.mid_canary("").await;
    let t = Instant::now();
    cluster(&["restart", "etcd"]);
    let down = t.elapsed();
    let writes = s.promoted_soundly().await;
    record_figures(&format!(
        "fault etcd restarted mid-canary ({:.1}s): promoted after {:.1}s, each step once, {writes} writes all by the leader",
        down.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
    s.finish().await;
}

#[tokio::test]
async fn prometheus_down_longer_than_the_error_limit_never_promotes() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let s = scene("fault-prometheus", 1, "").await;
    s.mid_canary("").await;
    let t = Instant::now();
    cluster(&["kill", "prometheus"]);
    // consecutiveErrorLimit 3 at 2 s: the analysis errs within seconds.
    let m = wait_for(
        &s.models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.aborted_at.is_some() || c.pause_reason.is_some())
        },
        LONG,
    )
    .await;
    let decided = t.elapsed();
    cluster(&["start", "prometheus"]);
    let status = m.status.clone().unwrap();
    assert_eq!(
        status.stable.as_ref().unwrap().version,
        "v1",
        "never promoted"
    );
    let canary = status.canary.clone().unwrap();
    let why = canary
        .abort_reason
        .clone()
        .or(canary.pause_reason.clone())
        .unwrap_or_default();
    assert!(why.contains("error-rate"), "{why}");
    s.traffic_on_stable(&m).await;
    // Prometheus back: still not promoted (an abort waits for a retry).
    let again = s.models.get("ranker").await.unwrap();
    assert_eq!(again.status.unwrap().stable.unwrap().version, "v1");
    let writes = s.only_leaders_wrote();
    record_figures(&format!(
        "fault Prometheus killed mid-canary: {} after {:.1}s ({why}), never promoted, {writes} writes all by the leader",
        if canary.aborted_at.is_some() {
            "aborted"
        } else {
            "paused"
        },
        decided.as_secs_f64()
    ));
    s.finish().await;
}

/// A metric endpoint on the node test port (pods reach it at the node's
/// address) answering `{"value": 0.01}`.
fn test_server(answer: Answer) -> impl Future<Output = ValueServer> {
    let port: u16 = std::env::var("MLCTL_E2E_NODE_TEST_PORT")
        .expect("MLCTL_E2E_NODE_TEST_PORT (e2e/cluster env with the node)")
        .parse()
        .unwrap();
    let ip = std::env::var("MLCTL_E2E_NODE_IP").expect("MLCTL_E2E_NODE_IP");
    async move { ValueServer::bind(port, &ip, 0.01, answer).await }
}

fn web_metric(name: &str, url: &str) -> String {
    format!(
        r#"      - name: {name}
        provider:
          web: {{url: "{url}", jsonPath: $.value, timeout: 2s}}
        interval: 2s
        successCondition: result < 0.05
        consecutiveErrorLimit: 2
"#
    )
}

#[tokio::test]
async fn a_hanging_analysis_endpoint_aborts_the_canary_on_its_error_limit() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let server = test_server(Answer::Never).await;
    let url = server.url.clone();
    let extra = web_metric("ndcg", &url);
    let s = scene("fault-hang", 1, "").await;
    let t = Instant::now();
    s.mid_canary(&extra).await;
    let m = wait_for(
        &s.models,
        "ranker",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.aborted_at.is_some())
        },
        LONG,
    )
    .await;
    let status = m.status.clone().unwrap();
    assert_eq!(
        status.stable.as_ref().unwrap().version,
        "v1",
        "never promoted"
    );
    let why = status.canary.unwrap().abort_reason.unwrap_or_default();
    assert!(why.contains("ndcg"), "{why}");
    assert!(server.hits() >= 1, "the endpoint was asked");
    s.traffic_on_stable(&m).await;
    let writes = s.only_leaders_wrote();
    record_figures(&format!(
        "fault analysis endpoint hanging: aborted {:.1}s after the canary started ({why}); {} connections held; {writes} writes all by the leader",
        t.elapsed().as_secs_f64(),
        server.hits()
    ));
    drop(server);
    s.finish().await;
}

#[tokio::test]
async fn the_operator_killed_during_a_measurement_resumes_without_repeating_a_step() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    // A slow metric (1.5 s per answer): the kill lands while one is in flight.
    let server = test_server(Answer::After(Duration::from_millis(1500))).await;
    let url = server.url.clone();
    let extra = web_metric("ndcg", &url);
    let s = scene("fault-sigkill", 1, &extra).await;
    s.mid_canary(&extra).await;
    let before = server.hits();
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    while server.hits() == before {
        assert!(Instant::now() < deadline, "no measurement request arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids = s.operator_pids().await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    let t = Instant::now();
    mlctl_e2e::signal(pids[0].1, "KILL");
    let writes = s.promoted_soundly().await;
    record_figures(&format!(
        "fault operator SIGKILLed during a measurement: restarted and promoted {:.1}s later, each step once, {writes} writes all by the leader",
        t.elapsed().as_secs_f64()
    ));
    drop(server);
    s.finish().await;
}

#[tokio::test]
async fn a_leader_cut_off_longer_than_its_lease_is_replaced_and_writes_nothing_after() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let s = scene("fault-partition", 2, "").await;
    s.mid_canary("").await;
    let leader = s.leader_pod().await;
    let pids = s.operator_pids().await;
    let (_, pid) = pids
        .iter()
        .find(|(pod, _)| *pod == leader)
        .cloned()
        .unwrap_or_else(|| panic!("no host pid for the leader {leader}: {pids:?}"));
    let stopped = Timestamp::now();
    let t = Instant::now();
    mlctl_e2e::signal(pid, "STOP");
    // Longer than the lease: the other replica takes over and goes on.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = s.ns.api();
    let lease_name = leases.list(&ListParams::default()).await.unwrap().items[0].name_any();
    let other = wait_for(
        &leases,
        &lease_name,
        |l: Option<&k8s_openapi::api::coordination::v1::Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                .is_some_and(|h| h != leader)
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let takeover = t.elapsed();
    tokio::time::sleep(Duration::from_secs(LEASE.0)).await; // stays cut off past a whole further lease
    mlctl_e2e::signal(pid, "CONT");
    let writes = s.promoted_soundly().await;
    let late: Vec<_> = s
        .audit
        .since(s.mark)
        .into_iter()
        .filter(|w| w.user_agent.contains(&format!("({leader})")))
        .filter(|w| w.response_status.as_ref().is_some_and(|st| st.code < 300))
        .filter(|w| {
            w.request_received_timestamp
                .parse::<Timestamp>()
                .is_ok_and(|at| at >= stopped)
        })
        .collect();
    assert!(
        late.is_empty(),
        "the cut-off leader wrote:\n{}",
        describe(&late)
    );
    let _ = other;
    record_figures(&format!(
        "fault leader SIGSTOPped past its lease ({}s): the standby led after {:.1}s, the old leader made 0 accepted writes after the stop, promoted, each step once, {writes} writes all by the leader",
        LEASE.0,
        takeover.as_secs_f64()
    ));
    s.finish().await;
}

/// Item 3 of #16: 50 models measuring an address that never answers do not
/// delay another model's canary. (Operator as a process: the black hole and
/// the healthy model's metrics are on 127.0.0.1.)
#[tokio::test]
async fn fifty_black_holed_models_do_not_delay_another_canary() {
    require_e2e!();
    let _serial = SERIAL.lock().await;
    let (client, ns, _operator, _) = mlctl_e2e::operator::setup("fault-blackhole").await;
    // The black hole: accepts, never answers; counts open connections.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (o, p) = (open.clone(), peak.clone());
    let hole_task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = hole.accept().await else {
                return;
            };
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Read until the client gives up; never write.
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let endpoint = MetricsEndpoint::start(&format!("blackhole-{}", ns.name())).await;
    endpoint.set("e2e_error_rate", "v2", 0.0);
    let prometheus = mlctl_e2e::metrics::prometheus_url().expect("the cluster's Prometheus");
    endpoint
        .wait_for_value(
            &format!(
                "e2e_error_rate{{e2e_test=\"{}\",version=\"v2\"}}",
                endpoint.id
            ),
            0.0,
            LONG,
        )
        .await;
    let stuck = |name: &str, version: &str| {
        format!(
            r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: {name}
spec:
  model: {{version: "{version}", uri: "s3://models/{name}/{version}/model.txt", format: lightgbm}}
  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}
  replicas: 1
  rollout:
    steps: [{{setWeight: 10}}, {{pause: {{}}}}]
    analysis:
      metrics:
      - name: hole
        provider: {{web: {{url: "http://{hole_addr}/m", jsonPath: $.v, timeout: 10s}}}}
        interval: 1s
        successCondition: result < 1
        consecutiveErrorLimit: 1000
"#
        )
    };
    let docs: String = (0..50)
        .map(|i| stuck(&format!("stuck-{i:02}"), "v1") + "---\n")
        .collect();
    apply_yaml(&client, ns.name(), &docs).await;
    let models: Api<RankingModel> = ns.api();
    for i in 0..50 {
        wait_for(
            &models,
            &format!("stuck-{i:02}"),
            phase_is(Phase::Healthy),
            LONG,
        )
        .await;
    }
    let healthy = |version: &str| {
        format!(
            r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: fine
spec:
  model: {{version: "{version}", uri: "s3://models/fine/{version}/model.txt", format: lightgbm}}
  runtime: {{image: ghcr.io/mlctl/lightgbm-runtime:0.1.0, port: 8080}}
  replicas: 1
  rollout:
    steps: [{{setWeight: 50}}, {{analysis: {{metrics: [error-rate]}}}}]
    analysis:
      templates:
      - name: error-rate
        provider:
          prometheus: {{address: "{prometheus}", query: 'e2e_error_rate{{e2e_test="{id}", version="{{{{version}}}}"}}'}}
        interval: 1s
        count: 2
        successCondition: result < 0.05
"#,
            id = endpoint.id
        )
    };
    apply_yaml(&client, ns.name(), &healthy("v1")).await;
    wait_for(&models, "fine", phase_is(Phase::Healthy), LONG).await;
    // All 50 start measuring the black hole.
    let docs: String = (0..50)
        .map(|i| stuck(&format!("stuck-{i:02}"), "v2") + "---\n")
        .collect();
    apply_yaml(&client, ns.name(), &docs).await;
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    while open.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the black hole was never saturated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other model's canary: two measurements and a promotion.
    let t = Instant::now();
    apply_yaml(&client, ns.name(), &healthy("v2")).await;
    wait_for(
        &models,
        "fine",
        |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref())
                .and_then(|s| s.stable.as_ref())
                .is_some_and(|s| s.version == "v2")
        },
        DEFAULT_TIMEOUT,
    )
    .await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the healthy canary took {took:?}"
    );
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= 4,
        "{peak} connections at once to one host (bound: 4)"
    );
    // The stuck ones stay stuck, with a fixed-form reason.
    let one = models.get("stuck-07").await.unwrap();
    let metric = one
        .status
        .unwrap()
        .analysis
        .unwrap()
        .metrics
        .into_iter()
        .next()
        .unwrap();
    assert!(
        metric.errors >= 1 || metric.phase == "Running",
        "{metric:?}"
    );
    record_figures(&format!(
        "50 models measuring a black hole: another canary promoted in {:.1}s; at most {peak} connections to the black hole at once",
        took.as_secs_f64()
    ));
    hole_task.abort();
    ns.finish().await;
}
