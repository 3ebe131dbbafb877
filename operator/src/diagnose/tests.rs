use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    ModelFormat, ModelSource, RankingModelStatus, Rollout, RolloutStep, Runtime,
};
use serde_json::{Value, json};

use super::*;
use crate::render::{self, deployment_name, revision_of};
use crate::rollout::{self, Requests};

const NOW: &str = "2026-11-25T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A pod of revision `abc` with the storage initializer and the ranker.
fn pod(name: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"mlctl.io/model": "ranker", "mlctl.io/revision": "abc", "mlctl.io/version": "v2"}},
        "spec": {
            "initContainers": [{"name": "storage-initializer", "image": "mlctl-ranker:1"}],
            "containers": [{"name": "ranker", "image": "mlctl-ranker:1",
                "resources": {"limits": {"memory": "64Mi"}}}]
        },
        "status": status
    }))
    .unwrap()
}

const SHA_MESSAGE: &str =
    "sha256 mismatch for s3://models/ranker/v2/model.txt: expected 93dc4438…, got f3f55c45…";

fn init_failed(state: Value, last: Value) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "False"}],
        "initContainerStatuses": [{"name": "storage-initializer", "image": "mlctl-ranker:1", "imageID": "",
            "ready": false, "restartCount": 2, "state": state, "lastState": last}],
        "containerStatuses": [{"name": "ranker", "image": "mlctl-ranker:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
    })
}

fn ranker_status(state: Value, last: Value, restarts: i32) -> Value {
    json!({
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
        "initContainerStatuses": [{"name": "storage-initializer", "image": "mlctl-ranker:1", "imageID": "",
            "ready": true, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        "containerStatuses": [{"name": "ranker", "image": "mlctl-ranker:1", "imageID": "", "ready": false,
            "restartCount": restarts, "state": state, "lastState": last}]
    })
}

fn sha_error() -> Pod {
    pod(
        "ranker-abc-1",
        init_failed(
            json!({"terminated": {"exitCode": 3, "reason": "Error", "message": SHA_MESSAGE}}),
            json!({}),
        ),
    )
}

#[test]
fn a_storage_initializer_sha256_mismatch_names_both_hashes() {
    let problems = diagnose(&[sha_error()], now());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.kind, ProblemKind::StorageInitializerFailed);
    assert_eq!(p.container.as_deref(), Some("storage-initializer"));
    assert!(p.init_container);
    assert_eq!(p.exit_code, Some(3));
    assert_eq!(p.reason.as_deref(), Some("Error"));
    assert_eq!(
        summary("canary v2", &problems).unwrap(),
        format!("canary v2: init container storage-initializer exited 3: {SHA_MESSAGE}")
    );
    assert_eq!(pod_status_text(&sha_error()), "Init:Error");
}

#[test]
fn init_crash_loop_reads_the_same_as_the_first_failure() {
    // Init:Error, then Init:CrashLoopBackOff, then running again: one detail
    // throughout, so the status is not rewritten at every restart.
    let crash_loop = pod(
        "ranker-abc-1",
        init_failed(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container"}}),
            json!({"terminated": {"exitCode": 3, "reason": "Error", "message": SHA_MESSAGE}}),
        ),
    );
    let retrying = pod(
        "ranker-abc-1",
        init_failed(
            json!({"running": {"startedAt": NOW}}),
            json!({"terminated": {"exitCode": 3, "reason": "Error", "message": SHA_MESSAGE}}),
        ),
    );
    let first = diagnose(&[sha_error()], now())[0].detail();
    assert_eq!(
        diagnose(std::slice::from_ref(&crash_loop), now())[0].detail(),
        first
    );
    assert_eq!(diagnose(&[retrying], now())[0].detail(), first);
    assert_eq!(pod_status_text(&crash_loop), "Init:CrashLoopBackOff");
}

#[test]
fn an_init_failure_without_a_message_says_what_the_exit_code_means() {
    let p = pod(
        "p",
        init_failed(
            json!({"terminated": {"exitCode": 4, "reason": "Error"}}),
            json!({}),
        ),
    );
    let problems = diagnose(&[p], now());
    assert_eq!(
        problems[0].detail(),
        "init container storage-initializer exited 4 (download timed out)"
    );
}

#[test]
fn an_oom_killed_ranker_names_its_memory_limit() {
    let p = pod(
        "ranker-abc-1",
        ranker_status(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=ranker"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            3,
        ),
    );
    let problems = diagnose(std::slice::from_ref(&p), now());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, ProblemKind::OOMKilled);
    assert_eq!(problems[0].memory_limit.as_deref(), Some("64Mi"));
    assert_eq!(
        summary("stable v1", &problems).unwrap(),
        "stable v1: container ranker was OOMKilled (exit 137, memory limit 64Mi)"
    );
    assert_eq!(pod_status_text(&p), "CrashLoopBackOff");
    // Caught at the moment it is terminated, too.
    let now_terminated = pod(
        "ranker-abc-1",
        ranker_status(
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            json!({}),
            0,
        ),
    );
    assert_eq!(
        diagnose(&[now_terminated], now())[0].detail(),
        problems[0].detail()
    );
}

#[test]
fn a_crash_loop_quotes_the_last_line_of_the_log_tail() {
    let log = "mlctl-ranker serve: listening on :8080\nmlctl-ranker serve: cannot load /mnt/models/model.txt: unexpected token at line 3\n";
    let p = pod(
        "ranker-abc-1",
        ranker_status(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}),
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": log}}),
            7,
        ),
    );
    let problems = diagnose(&[p], now());
    assert_eq!(problems[0].kind, ProblemKind::CrashLoopBackOff);
    assert_eq!(problems[0].exit_code, Some(1));
    assert!(problems[0].message.as_deref().unwrap().contains('\n'));
    assert_eq!(
        problems[0].detail(),
        "container ranker crashed: exited 1 (Error): mlctl-ranker serve: cannot load /mnt/models/model.txt: unexpected token at line 3"
    );
}

#[test]
fn image_pull_failures_read_the_same_in_every_back_off_state() {
    let waiting = |reason: &str, message: &str| {
        pod(
            "p",
            ranker_status(
                json!({"waiting": {"reason": reason, "message": message}}),
                json!({}),
                0,
            ),
        )
    };
    let pull = waiting(
        "ErrImagePull",
        "failed to pull and unpack image \"docker.io/library/mlctl-ranker:1\": not found",
    );
    let back_off = waiting(
        "ImagePullBackOff",
        "Back-off pulling image \"mlctl-ranker:1\": ErrImagePull: failed to pull and unpack image \"docker.io/library/mlctl-ranker:1\": not found",
    );
    let a = diagnose(&[pull], now());
    let b = diagnose(&[back_off], now());
    assert_eq!(a[0].kind, ProblemKind::ImagePullFailed);
    assert_eq!(a[0].detail(), b[0].detail());
    assert_eq!(
        a[0].detail(),
        "container ranker: image mlctl-ranker:1 cannot be pulled: failed to pull and unpack image \"docker.io/library/mlctl-ranker:1\": not found"
    );
    let bare = waiting(
        "ImagePullBackOff",
        "Back-off pulling image \"mlctl-ranker:1\"",
    );
    assert_eq!(
        diagnose(&[bare], now())[0].detail(),
        "container ranker: image mlctl-ranker:1 cannot be pulled (ImagePullBackOff)"
    );
    let never = waiting(
        "ErrImageNeverPull",
        "Container image \"mlctl-ranker:1\" is not present with pull policy of Never",
    );
    let p = &diagnose(std::slice::from_ref(&never), now())[0];
    assert_eq!(p.kind, ProblemKind::ImagePullFailed);
    assert_eq!(p.reason.as_deref(), Some("ErrImageNeverPull"));
    assert_eq!(pod_status_text(&never), "ErrImageNeverPull");
    let invalid = waiting("InvalidImageName", "couldn't parse image name \"UPPER:x\"");
    assert_eq!(
        diagnose(&[invalid], now())[0].kind,
        ProblemKind::ImagePullFailed
    );
}

#[test]
fn a_missing_secret_is_a_config_error() {
    let p = pod(
        "p",
        ranker_status(
            json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"model-creds\" not found"}}),
            json!({}),
            0,
        ),
    );
    let problems = diagnose(&[p], now());
    assert_eq!(problems[0].kind, ProblemKind::ConfigError);
    assert_eq!(
        problems[0].detail(),
        "container ranker cannot start (CreateContainerConfigError): secret \"model-creds\" not found"
    );
}

#[test]
fn unschedulable_pods_quote_the_scheduler() {
    let p = pod(
        "p",
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
    );
    let problems = diagnose(&[p], now());
    assert_eq!(problems[0].kind, ProblemKind::Unschedulable);
    assert_eq!(
        summary("version v1", &problems).unwrap(),
        "version v1: pods cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."
    );
}

#[test]
fn a_container_running_unready_for_long_is_reported_a_fresh_one_is_not() {
    let started = |at: &str| {
        pod(
            "p",
            ranker_status(json!({"running": {"startedAt": at}}), json!({}), 0),
        )
    };
    assert!(diagnose(&[started("2026-11-25T11:59:30Z")], now()).is_empty());
    let late = diagnose(&[started("2026-11-25T11:58:00Z")], now());
    assert_eq!(late[0].kind, ProblemKind::ContainerNotReady);
}

#[test]
fn evicted_pods_are_reported_with_the_kubelet_message() {
    let p = pod(
        "p",
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
    );
    let problems = diagnose(std::slice::from_ref(&p), now());
    assert_eq!(problems[0].kind, ProblemKind::Evicted);
    assert_eq!(pod_status_text(&p), "Evicted");
}

#[test]
fn healthy_starting_terminating_and_odd_pods_show_nothing() {
    let healthy = pod(
        "ok",
        json!({"phase": "Running",
            "initContainerStatuses": [{"name": "storage-initializer", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "ranker", "image": "", "imageID": "", "ready": true, "restartCount": 1,
                "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    );
    let initializing = pod(
        "init",
        init_failed(json!({"running": {"startedAt": NOW}}), json!({})),
    );
    let creating = pod(
        "creating",
        ranker_status(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
            0,
        ),
    );
    let pending = pod("pending", json!({"phase": "Pending"}));
    let mut terminating = sha_error();
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let bare: Pod = serde_json::from_value(json!({"metadata": {}})).unwrap();
    let empty: Pod = serde_json::from_value(
        json!({"metadata": {"name": "e"}, "spec": {"containers": []},
        "status": {"containerStatuses": [], "initContainerStatuses": [], "conditions": []}}),
    )
    .unwrap();
    let pods = [
        healthy.clone(),
        initializing.clone(),
        creating,
        pending,
        terminating.clone(),
        bare.clone(),
        empty,
    ];
    assert_eq!(diagnose(&pods, now()), vec![]);
    assert_eq!(diagnose(&[], now()), vec![]);
    assert_eq!(summary("x", &[]), None);
    assert_eq!(pod_status_text(&healthy), "Running");
    assert_eq!(pod_status_text(&initializing), "Init:0/1");
    assert_eq!(pod_status_text(&terminating), "Terminating");
    assert_eq!(pod_status_text(&bare), "Pending");
}

#[test]
fn the_most_telling_problem_comes_first() {
    let oom = pod(
        "b-oom",
        ranker_status(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            1,
        ),
    );
    let unschedulable = pod(
        "a-pending",
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "no nodes"}]}),
    );
    let problems = diagnose(&[unschedulable, oom, sha_error()], now());
    let kinds: Vec<_> = problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ProblemKind::StorageInitializerFailed,
            ProblemKind::OOMKilled,
            ProblemKind::Unschedulable
        ]
    );
}

#[test]
fn messages_are_cut_on_char_boundaries() {
    let long = "é".repeat(400); // 800 bytes
    let head = clean_message(&long);
    assert!(head.len() <= MESSAGE_LIMIT, "{}", head.len());
    assert!(head.ends_with('…'));
    let tail = clean_message(&format!("first line\n{long}"));
    assert!(tail.len() <= MESSAGE_LIMIT);
    assert!(tail.starts_with('…') && tail.ends_with('é'));
    assert_eq!(truncate_head("short", 10), "short");
    assert_eq!(truncate_head("abcdef", 0), "…");
    assert_eq!(one_line("\n  a\n b \n\n"), "b");
    let p = pod(
        "p",
        init_failed(
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": long}}),
            json!({}),
        ),
    );
    let detail = diagnose(&[p], now())[0].detail();
    assert!(detail.len() < SUMMARY_MESSAGE_LIMIT + 60, "{detail}");
}

#[test]
fn the_storage_initializer_name_is_the_rendered_one() {
    let model = render::ModelRef {
        name: "ranker".into(),
        namespace: "search".into(),
        owner: Default::default(),
    };
    let d = render::deployment(
        &model,
        &spec("v1", None),
        &render::RenderConfig {
            storage_initializer_image: "init:1".into(),
        },
        &render::RevisionPlan {
            revision: "abc".into(),
            track: render::Track::Stable,
            replicas: Some(1),
            initial_replicas: Some(1),
        },
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    let names: Vec<_> = pod
        .init_containers
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec![STORAGE_INITIALIZER.to_string()]);
}

// ---- folding findings into the decided status ----

fn spec(version: &str, rollout: Option<Rollout>) -> RankingModelSpec {
    RankingModelSpec {
        model: ModelSource {
            version: version.into(),
            uri: format!("s3://models/r/{version}/model.txt"),
            format: ModelFormat::Lightgbm,
            sha256: None,
            credentials_secret: None,
        },
        runtime: Runtime {
            image: "runtime:1".into(),
            ..Runtime::default()
        },
        replicas: Some(1),
        autoscaling: None,
        features: vec![],
        rollout,
        notifications: Vec::new(),
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn observed(spec: &RankingModelSpec, ready: i32) -> rollout::ObservedDeployment {
    let revision = revision_of(spec);
    rollout::ObservedDeployment {
        name: deployment_name("r", &revision),
        revision,
        track: Some("stable".into()),
        desired: 1,
        replicas: 1,
        ready,
        available: ready >= 1,
        version: Some(spec.model.version.clone()),
        uri: Some(spec.model.uri.clone()),
    }
}

fn decide(
    spec: &RankingModelSpec,
    status: &RankingModelStatus,
    observed: &[rollout::ObservedDeployment],
    now: Timestamp,
) -> rollout::Decision {
    rollout::decide(
        spec,
        status,
        &rollout::Context {
            name: "r",
            generation: Some(1),
            now,
            observed,
            requests: Requests::default(),
            features: None,
        },
    )
}

/// One reconcile as the controller runs it, with `pods` as the pods of every
/// revision it lists.
fn reconcile(
    spec: &RankingModelSpec,
    status: &RankingModelStatus,
    observed: &[rollout::ObservedDeployment],
    now: Timestamp,
    pods: &[Pod],
) -> (rollout::Decision, Vec<Suspect>, Option<std::time::Duration>) {
    let mut d = decide(spec, status, observed, now);
    let (suspects, recheck) = super::suspects(status, &d.status, observed, now);
    let findings: Vec<Finding> = suspects
        .iter()
        .filter_map(|s| Finding::new(s.clone(), diagnose(pods, now)))
        .collect();
    annotate(&mut d, status, &findings);
    (d, suspects, recheck)
}

fn condition<'a>(status: &'a RankingModelStatus, type_: &str) -> &'a str {
    status
        .conditions
        .0
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.as_str())
        .unwrap_or("")
}

#[test]
fn a_first_version_failing_its_download_says_so_once_and_then_stays_quiet() {
    let s = spec("v1", None);
    let d0 = decide(&s, &RankingModelStatus::default(), &[], at(0));
    let obs = [observed(&s, 0)];
    // Within the grace: nothing is listed, a look is scheduled.
    let (d1, suspects, recheck) = reconcile(&s, &d0.status, &obs, at(3), &[sha_error()]);
    assert!(suspects.is_empty());
    assert_eq!(recheck, Some(std::time::Duration::from_secs(8)));
    assert!(!d1.events.iter().any(|e| e.warning));
    // Past it: the summary is in Progressing, Ready and the message, with one Event.
    let (d2, suspects, recheck) = reconcile(&s, &d1.status, &obs, at(20), &[sha_error()]);
    assert_eq!(suspects.len(), 1);
    assert_eq!(suspects[0].label, "version v1");
    assert_eq!(recheck, Some(RECHECK));
    let summary = format!("version v1: init container storage-initializer exited 3: {SHA_MESSAGE}");
    assert!(
        condition(&d2.status, "Progressing").ends_with(&summary),
        "{:?}",
        d2.status
    );
    assert!(condition(&d2.status, "Ready").ends_with(&summary));
    assert!(d2.status.message.as_deref().unwrap().ends_with(&summary));
    let warnings: Vec<_> = d2.events.iter().filter(|e| e.warning).collect();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].reason, "StorageInitializerFailed");
    assert_eq!(warnings[0].message, summary);
    // The next look finds the same: no change to write, no new Event.
    let (d3, _, _) = reconcile(&s, &d2.status, &obs, at(35), &[sha_error()]);
    assert_eq!(d3.status, d2.status);
    assert!(d3.events.is_empty(), "{:?}", d3.events);
    // Past the progress deadline the Event says why, too.
    let (d4, _, _) = reconcile(&s, &d3.status, &obs, at(700), &[sha_error()]);
    let deadline = d4
        .events
        .iter()
        .find(|e| e.reason == "ProgressDeadlineExceeded")
        .unwrap();
    assert!(deadline.message.ends_with(&summary), "{}", deadline.message);
    assert!(condition(&d4.status, "Progressing").ends_with(&summary));
    // Fixed: the summary goes away with the problem.
    let (d5, suspects, recheck) = reconcile(&s, &d4.status, &[observed(&s, 1)], at(710), &[]);
    assert!(suspects.is_empty() && recheck.is_none());
    assert!(!condition(&d5.status, "Ready").contains("storage-initializer"));
}

fn healthy(s: &RankingModelSpec) -> RankingModelStatus {
    let d0 = decide(s, &RankingModelStatus::default(), &[], at(0));
    decide(s, &d0.status, &[observed(s, 1)], at(5)).status
}

#[test]
fn a_canary_aborted_at_its_deadline_says_why_in_the_abort_reason() {
    let rollout = Rollout {
        steps: vec![RolloutStep {
            set_weight: Some(10),
            ..RolloutStep::default()
        }],
        progress_deadline_seconds: Some(60),
        ..Rollout::default()
    };
    let v1 = spec("v1", Some(rollout.clone()));
    let v2 = spec("v2", Some(rollout));
    let stable = healthy(&v1);
    let obs = [observed(&v1, 1), observed(&v2, 0)];
    let d0 = decide(&v2, &stable, &[observed(&v1, 1)], at(10));
    let (d1, _, _) = reconcile(&v2, &d0.status, &obs, at(30), &[sha_error()]);
    let summary = format!("canary v2: init container storage-initializer exited 3: {SHA_MESSAGE}");
    assert!(condition(&d1.status, "Progressing").ends_with(&summary));
    // The serving revision is fine: Ready says nothing of the canary.
    assert!(!condition(&d1.status, "Ready").contains("canary"));
    assert_eq!(
        d1.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["StorageInitializerFailed"]
    );
    let (d2, _, _) = reconcile(&v2, &d1.status, &obs, at(80), &[sha_error()]);
    let c = d2.status.canary.as_ref().unwrap();
    assert!(c.aborted_at.is_some());
    let reason = c.abort_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("canary pods not Ready within progressDeadlineSeconds=60")
            && reason.ends_with(&format!(
                ": init container storage-initializer exited 3: {SHA_MESSAGE}"
            )),
        "{reason}"
    );
    assert!(condition(&d2.status, "Progressing").contains(reason));
    assert!(d2.status.message.as_deref().unwrap().contains(reason));
    let abort = d2
        .events
        .iter()
        .find(|e| e.reason == "ProgressDeadlineExceeded")
        .unwrap();
    assert!(abort.message.contains(reason), "{}", abort.message);
    // Told already (the previous status mentions it): no second Event.
    assert!(
        !d2.events
            .iter()
            .any(|e| e.reason == "StorageInitializerFailed")
    );
    // After the abort the canary's pods are not looked at any more.
    let (d3, suspects, recheck) = reconcile(&v2, &d2.status, &obs, at(90), &[sha_error()]);
    assert!(suspects.is_empty() && recheck.is_none());
    assert_eq!(d3.status.canary, d2.status.canary);
}

#[test]
fn a_stable_revision_losing_its_pods_says_why_in_ready() {
    let v1 = spec("v1", None);
    let stable = healthy(&v1);
    let oom = pod(
        "ranker-abc-1",
        ranker_status(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            2,
        ),
    );
    let obs = [observed(&v1, 0)];
    let (d1, suspects, recheck) =
        reconcile(&v1, &stable, &obs, at(100), std::slice::from_ref(&oom));
    assert!(suspects.is_empty(), "Ready just turned False: grace first");
    assert!(recheck.is_some());
    let (d2, suspects, _) = reconcile(&v1, &d1.status, &obs, at(120), &[oom]);
    assert_eq!(suspects[0].role, Role::Stable);
    let summary = "stable v1: container ranker was OOMKilled (exit 137, memory limit 64Mi)";
    assert!(
        condition(&d2.status, "Ready").ends_with(summary),
        "{:?}",
        d2.status.conditions
    );
    assert!(d2.status.message.as_deref().unwrap().ends_with(summary));
    assert_eq!(d2.events[0].reason, "OOMKilled");
}
