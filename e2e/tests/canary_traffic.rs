//! Canary rollouts on real traffic (the real node, the ranker image, the real
//! Prometheus): `rank-traffic` sends `:rank` queries through the `<model>`
//! Service at a fixed rate for the whole rollout and records every answer,
//! Prometheus finds the ranker pods by their `prometheus.io/*` annotations,
//! and the canary analysis asks it the PromQL a user would write against
//! `ranker_requests_total` and `ranker_request_duration_seconds`.
//!
//! 1. a good version goes 20% → pause → analysis → 50% → promotion with zero
//!    failed requests, and the canary's share of answers follows the weights;
//! 2. a version that answers 400 to every request is aborted by the error-rate
//!    analysis in time, and then answers nothing more;
//! 3. a slow version fails the p99 analysis and is rolled back;
//! 4. `mlctl rollback --wait` under load drops nothing.
//!
//! The figures (requests, failures, shares, time to abort) are printed; the
//! numbers of a run are in docs/rollouts.md.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::watch_object;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::Phase;
use mlctl_e2e::figures;
use mlctl_e2e::operator::target_dir;
use mlctl_e2e::scene::{Scene, V1, V2, Version, now_ms, prometheus_in_cluster, scene, serving};
use mlctl_e2e::traffic::{Record, TrafficRun, window};
use mlctl_e2e::{phase_is, require_node, wait_for, workspace_root};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(240);
/// Requests per second the load generator offers, whatever the answers.
const RATE: u32 = 40;
/// How long after a change of the Service's endpoints (a weight, a promotion,
/// an abort) answers may still come from the previous set: kube-proxy writes
/// its rules after the EndpointSlice changes, and requests already sent finish.
const PROPAGATION_MS: u64 = 3_000;
/// Allowed distance between the canary's share of answers and its weight.
/// kube-proxy picks an endpoint at random per connection: over the ≥ 600
/// requests of a step the share's standard deviation is under 0.021, so 0.08
/// is almost four of them.
const SHARE_TOLERANCE: f64 = 0.08;

/// The background analysis of examples/demo/rankingmodel.yaml (error-rate and
/// latency-p99 over the ranker's metrics, split by the canary's version): the
/// tests run the very queries the demo and docs/rollouts.md show.
fn demo_analysis() -> Value {
    let path = workspace_root().join("examples/demo/rankingmodel.yaml");
    let demo: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut analysis = demo["spec"]["rollout"]["analysis"].clone();
    let metrics = analysis["metrics"]
        .as_array_mut()
        .expect("analysis.metrics");
    let names: Vec<&str> = metrics
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["error-rate", "latency-p99"], "{}", path.display());
    for m in metrics.iter_mut() {
        m["provider"]["prometheus"]["address"] = prometheus_in_cluster().into();
    }
    analysis
}

/// `spec.rollout`: `steps`, the demo's background analysis, and short delays.
fn rollout(steps: Value) -> Value {
    json!({
        "steps": steps,
        "scaleDownDelaySeconds": 5,
        "abortScaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 180,
        "analysis": demo_analysis(),
    })
}

/// What the model's status said, and when (milliseconds since the epoch, the
/// same clock as the load generator's records).
#[derive(Debug, Clone)]
struct Point {
    t: u64,
    phase: Option<Phase>,
    stable: Option<String>,
    canary: Option<String>,
    weight: i32,
}

/// Records every change of the model's status seen on a watch.
struct Timeline {
    points: Arc<Mutex<Vec<Point>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Timeline {
    fn start(models: &Api<RankingModel>, name: &str) -> Timeline {
        let points: Arc<Mutex<Vec<Point>>> = Arc::default();
        let shared = points.clone();
        let stream = watch_object(models.clone(), name);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(Some(rm)) = event else { continue };
                let Some(status) = rm.status else { continue };
                let point = Point {
                    t: now_ms(),
                    phase: status.phase,
                    stable: status.stable.map(|s| s.version),
                    canary: status.canary.as_ref().map(|c| c.version.clone()),
                    weight: status.canary.as_ref().map_or(0, |c| c.weight),
                };
                let mut points = shared.lock().unwrap();
                let changed = points.last().is_none_or(|p: &Point| {
                    (&p.phase, &p.stable, &p.canary, p.weight)
                        != (&point.phase, &point.stable, &point.canary, point.weight)
                });
                if changed {
                    points.push(point);
                }
            }
        });
        Timeline { points, task }
    }

    fn stop(self) -> Vec<Point> {
        self.task.abort();
        let points = self.points.lock().unwrap().clone();
        for p in &points {
            eprintln!(
                "  status at {}: {:?} stable {:?} canary {:?} weight {}",
                p.t, p.phase, p.stable, p.canary, p.weight
            );
        }
        points
    }
}

/// The time the status first satisfied `what`.
fn first(points: &[Point], what: impl Fn(&Point) -> bool) -> u64 {
    points
        .iter()
        .find(|p| what(p))
        .unwrap_or_else(|| panic!("the status never got there: {points:#?}"))
        .t
}

/// Every record that failed, for messages.
fn failures(records: &[Record]) -> Vec<&Record> {
    records.iter().filter(|r| r.failed()).collect()
}

fn assert_no_failures(records: &[Record]) {
    let failed = failures(records);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        records.len(),
        &failed[..failed.len().min(5)]
    );
}

fn print_figures(label: &str, records: &[Record]) {
    let all = window(records, 0, u64::MAX);
    figures!("FIGURES {label}: {all}");
}

#[tokio::test]
async fn a_good_version_is_promoted_through_its_steps_under_load_with_zero_failed_requests() {
    require_node!();
    let s = scene("traffic-good", 18181).await;
    let v1 = V1;
    let v2 = V2;
    let steps = json!([
        {"setWeight": 20},
        {"pause": {"duration": "20s"}},
        {"analysis": {"metrics": ["error-rate", "latency-p99"]}},
        {"setWeight": 50},
        {"pause": {"duration": "20s"}},
    ]);
    s.apply("ranker", &v1, 4, rollout(steps)).await;
    wait_for(&s.models, "ranker", phase_is(Phase::Healthy), LONG).await;

    // Prometheus found the four pods by their annotations (pod discovery).
    mlctl_e2e::metrics::wait_for_value(
        &format!(
            r#"count(ranker_model_info{{job="kubernetes-pods",namespace="{}",model="ranker"}})"#,
            s.ns.name()
        ),
        4.0,
        Duration::from_secs(60),
    )
    .await;

    let timeline = Timeline::start(&s.models, "ranker");
    let traffic = s.start_traffic("ranker", RATE).await;
    s.set_version("ranker", &v2).await;
    let rm = wait_for(
        &s.models,
        "ranker",
        |rm: Option<&RankingModel>| {
            serving(v2.version)(rm)
                || rm
                    .and_then(|rm| rm.status.as_ref())
                    .is_some_and(|st| st.phase == Some(Phase::Degraded))
        },
        LONG,
    )
    .await;
    assert_eq!(
        rm.status.as_ref().unwrap().phase,
        Some(Phase::Healthy),
        "the good version was not promoted: {:?}",
        rm.status
    );
    // The old version drains and goes (scaleDownDelaySeconds 5): requests
    // keep flowing through its termination.
    s.wait_until_no_pods_of("ranker", v1.version).await;
    let drained = now_ms();
    // A little traffic after the last old pod is gone.
    wait_for_records_after(&traffic, drained + PROPAGATION_MS).await;
    let records = traffic.stop();
    let points = timeline.stop();
    print_figures("good version", &records);

    assert_no_failures(&records);

    // Each weight held long enough is met by the share of answers.
    let promoted = first(&points, |p| {
        p.stable.as_deref() == Some(v2.version) && p.phase == Some(Phase::Healthy)
    });
    let mut checked = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(promoted, |n| n.t).min(promoted);
        if p.canary.as_deref() != Some(v2.version) || p.weight == 0 {
            continue;
        }
        let from = p.t + PROPAGATION_MS;
        if end <= from + 10_000 {
            continue; // too short to measure a share
        }
        let w = window(&records, from, end);
        let share = w.share(v2.version);
        let want = f64::from(p.weight) / 100.0;
        figures!(
            "FIGURES weight {}%: {w}; canary share {share:.3} (want {want:.2} ± {SHARE_TOLERANCE})",
            p.weight
        );
        assert!(
            (share - want).abs() <= SHARE_TOLERANCE,
            "at weight {}% the canary answered {share:.3} of {} requests",
            p.weight,
            w.sent
        );
        checked.push(p.weight);
    }
    assert!(
        checked.contains(&20) && checked.contains(&50),
        "the shares at 20% and 50% were not both measured: {checked:?} {points:#?}"
    );
    // After the promotion only the new version answers.
    let after = window(&records, promoted + PROPAGATION_MS, u64::MAX);
    assert!(after.sent > 0);
    assert_eq!(after.share(v2.version), 1.0, "after promotion: {after}");
    s.ns.finish().await;
}

/// Waits until the load generator has recorded a request sent at or after
/// `t` (it flushes its records every second; its rate is fixed).
async fn wait_for_records_after(traffic: &TrafficRun, t: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records = mlctl_e2e::traffic::read_records(traffic.out());
        if records.iter().any(|r| r.t >= t) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rank-traffic recorded nothing sent after {t} within 30 s ({} records)",
            records.len()
        );
        // Polling interval; the loop ends on the condition or the deadline.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Steps a bad version never gets through by itself: only the background
/// analysis can end its canary.
fn hold_at_20() -> Value {
    json!([{"setWeight": 20}, {"pause": {"duration": "5m"}}, {"setWeight": 50}])
}

/// Rolls `bad` out over `good` under load and waits until the analysis
/// aborted it and its pods are gone. Returns the records, and when the
/// canary took traffic and when it was aborted.
async fn abort_under_load(
    s: &Scene,
    good: &Version<'_>,
    bad: &Version<'_>,
) -> (Vec<Record>, u64, u64) {
    s.apply("ranker", good, 2, rollout(hold_at_20())).await;
    wait_for(&s.models, "ranker", phase_is(Phase::Healthy), LONG).await;
    let timeline = Timeline::start(&s.models, "ranker");
    let traffic = s.start_traffic("ranker", RATE).await;
    s.set_version("ranker", bad).await;
    wait_for(&s.models, "ranker", phase_is(Phase::Degraded), LONG).await;
    s.wait_until_no_pods_of("ranker", bad.version).await;
    let gone = now_ms();
    wait_for_records_after(&traffic, gone + PROPAGATION_MS).await;
    let records = traffic.stop();
    let points = timeline.stop();
    let took_traffic = first(&points, |p| {
        p.canary.as_deref() == Some(bad.version) && p.weight > 0
    });
    let aborted = first(&points, |p| p.phase == Some(Phase::Degraded));
    (records, took_traffic, aborted)
}

/// The abort came within `interval × (failureLimit + 1)` = 20 s of the
/// canary taking traffic, plus one reconcile and one 2 s scrape (10 s slack
/// on a loaded 2-core machine), and traffic went back to the stable version.
fn assert_aborted_in_time_and_back_on_stable(
    label: &str,
    records: &[Record],
    good: &Version,
    took_traffic: u64,
    aborted: u64,
) {
    let to_abort = aborted - took_traffic;
    figures!(
        "FIGURES {label}: aborted {:.1} s after the canary took traffic (bound 20 s + 10 s)",
        to_abort as f64 / 1e3
    );
    assert!(
        to_abort <= 30_000,
        "{label}: aborted only {to_abort} ms after the canary took traffic"
    );
    let after = window(records, aborted + PROPAGATION_MS, u64::MAX);
    figures!("FIGURES {label} after the abort: {after}");
    assert!(after.sent > 0, "no traffic after the abort was recorded");
    assert_eq!(
        after.failed, 0,
        "{label}: failures after the abort: {after}"
    );
    assert_eq!(
        after.share(good.version),
        1.0,
        "{label}: after the abort only the stable version answers: {after}"
    );
}

#[tokio::test]
async fn a_version_answering_400_is_aborted_by_the_error_rate_analysis_and_answers_no_more() {
    require_node!();
    let s = scene("traffic-errors", 18182).await;
    let good = V1;
    // Trained without one of the eight features the traffic sends: every
    // request is a 400 naming the feature count.
    let bad = Version {
        version: "2026-11-27.1",
        file: "search-ranker-v3-missing-feature.txt",
        env: &[],
    };
    let (records, took_traffic, aborted) = abort_under_load(&s, &good, &bad).await;
    print_figures("400s", &records);

    // The bad version did get its share, and every failure is its 400.
    let during = window(&records, took_traffic + PROPAGATION_MS, aborted);
    figures!("FIGURES 400s while the canary took traffic: {during}");
    assert!(
        during.failed > 0,
        "the bad version never answered: {during}"
    );
    for r in failures(&records) {
        assert_eq!(
            (r.status, r.version.as_deref()),
            (400, Some(bad.version)),
            "only the bad version fails, with a 400 naming it: {r:?}"
        );
        assert!(
            r.error.as_deref().is_some_and(|e| e.contains("features")),
            "the 400 names the feature count: {r:?}"
        );
    }
    assert_eq!(
        during.by_version.get(bad.version).copied(),
        Some(during.failed),
        "{during}"
    );
    assert_aborted_in_time_and_back_on_stable("400s", &records, &good, took_traffic, aborted);

    let reason = s.abort_reason("ranker").await;
    assert!(reason.contains("error-rate"), "{reason}");
    let events = s.warning_events("AnalysisFailed").await;
    assert!(
        events.iter().any(|m| m.contains("error-rate")),
        "{events:?}"
    );
    s.ns.finish().await;
}

#[tokio::test]
async fn a_slow_version_fails_the_p99_analysis_and_is_rolled_back_without_a_failed_request() {
    require_node!();
    let s = scene("traffic-slow", 18183).await;
    let good = V1;
    // The same good model, made slow by the ranker's fault-injection flag
    // (docs/ranker.md: --inject-delay, for tests only).
    let slow = Version {
        version: "2026-11-26.1",
        file: "search-ranker-v2.txt",
        env: &[("RANKER_INJECT_DELAY", "400ms")],
    };
    let (records, took_traffic, aborted) = abort_under_load(&s, &good, &slow).await;
    print_figures("slow", &records);

    assert_no_failures(&records);
    let slow_answers: Vec<&Record> = records
        .iter()
        .filter(|r| r.version.as_deref() == Some(slow.version))
        .collect();
    assert!(!slow_answers.is_empty(), "the slow version never answered");
    assert!(
        slow_answers.iter().all(|r| r.ms >= 400.0),
        "every answer of the slow version took 400 ms or more"
    );
    assert_aborted_in_time_and_back_on_stable("slow", &records, &good, took_traffic, aborted);

    let reason = s.abort_reason("ranker").await;
    assert!(reason.contains("latency-p99"), "{reason}");
    s.ns.finish().await;
}

#[tokio::test]
async fn mlctl_rollback_under_load_drops_no_request() {
    require_node!();
    let s = scene("traffic-rollback", 18184).await;
    let v1 = V1;
    let v2 = V2;
    // No steps: a new version replaces the stable one once Available.
    s.apply(
        "ranker",
        &v1,
        2,
        json!({"steps": [], "scaleDownDelaySeconds": 5}),
    )
    .await;
    wait_for(&s.models, "ranker", phase_is(Phase::Healthy), LONG).await;
    s.set_version("ranker", &v2).await;
    wait_for(&s.models, "ranker", serving(v2.version), LONG).await;
    s.wait_until_no_pods_of("ranker", v1.version).await;

    let traffic = s.start_traffic("ranker", RATE).await;
    let started = now_ms();
    let out = tokio::process::Command::new(target_dir().join("debug/mlctl"))
        .args([
            "rollback",
            "ranker",
            "-n",
            s.ns.name(),
            "--wait",
            "--timeout",
            "3m",
        ])
        .output()
        .await
        .expect("run mlctl");
    assert!(
        out.status.success(),
        "mlctl rollback --wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rolled_back = now_ms();
    let rm = s.models.get("ranker").await.unwrap();
    assert_eq!(rm.status.unwrap().stable.unwrap().version, v1.version);
    s.wait_until_no_pods_of("ranker", v2.version).await;
    let gone = now_ms();
    wait_for_records_after(&traffic, gone + PROPAGATION_MS).await;
    let records = traffic.stop();
    print_figures("rollback", &records);

    assert_no_failures(&records);
    // New pods take seconds to start: the first second after the command is
    // still the replaced version's.
    let before = window(&records, 0, started + 1_000);
    let after = window(&records, rolled_back + PROPAGATION_MS, u64::MAX);
    figures!(
        "FIGURES rollback took {:.1} s; before: {before}; after: {after}",
        (rolled_back - started) as f64 / 1e3
    );
    assert!(before.sent > 0);
    assert_eq!(before.share(v2.version), 1.0, "{before}");
    assert!(after.sent > 0);
    assert_eq!(after.share(v1.version), 1.0, "{after}");
    s.ns.finish().await;
}
