use super::*;
use mlctl_crds::rankingmodel::{Autoscaling, ModelFormat, ModelSource, Rollout, Runtime};

fn spec(version: &str) -> RankingModelSpec {
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
        replicas: Some(3),
        autoscaling: None,
        features: vec![],
        rollout: None,
        notifications: Vec::new(),
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn deployment(spec: &RankingModelSpec, ready: i32, track: &str) -> ObservedDeployment {
    let revision = revision_of(spec);
    ObservedDeployment {
        name: deployment_name("r", &revision),
        revision,
        track: Some(track.into()),
        desired: 3,
        replicas: 3,
        ready,
        available: ready >= 3,
        version: Some(spec.model.version.clone()),
        uri: Some(spec.model.uri.clone()),
    }
}

fn run(
    spec: &RankingModelSpec,
    status: &RankingModelStatus,
    observed: &[ObservedDeployment],
    now: Timestamp,
) -> Decision {
    decide(
        spec,
        status,
        &Context {
            name: "r",
            generation: Some(1),
            now,
            observed,
            requests: Requests::default(),
            features: None,
        },
    )
}

/// Drives a first deployment to Healthy and returns its status.
fn healthy(spec: &RankingModelSpec) -> RankingModelStatus {
    let d0 = run(spec, &RankingModelStatus::default(), &[], at(0));
    run(spec, &d0.status, &[deployment(spec, 3, "stable")], at(5)).status
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

#[test]
fn first_deployment_creates_the_revision_at_full_size() {
    let s = spec("v1");
    let d = run(&s, &RankingModelStatus::default(), &[], at(0));
    assert_eq!(d.apply.len(), 1);
    assert_eq!(d.apply[0].revision, revision_of(&s));
    assert_eq!(d.apply[0].replicas, Some(3));
    assert_eq!(d.apply[0].track, Track::Stable);
    assert_eq!(d.status.phase, Some(Phase::Progressing));
    assert_eq!(reasons(&d), vec!["Deploying"]);
    assert_eq!(d.services.stable, revision_of(&s));
    assert!(!d.status.conditions.is_true("Ready"));
}

#[test]
fn available_first_revision_becomes_stable_and_healthy() {
    let s = spec("v1");
    let status = healthy(&s);
    assert_eq!(status.phase, Some(Phase::Healthy));
    assert_eq!(status.stable.as_ref().unwrap().version, "v1");
    assert!(status.canary.is_none());
    assert!(status.conditions.is_true("Ready"));
    assert_eq!(status.history[0].outcome, "Promoted");
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(
        status.selector.as_deref(),
        Some(format!("mlctl.io/model=r,mlctl.io/revision={}", revision_of(&s)).as_str())
    );
}

#[test]
fn a_steady_model_decides_the_same_status_again() {
    let s = spec("v1");
    let status = healthy(&s);
    let observed = [deployment(&s, 3, "stable")];
    let again = run(&s, &status, &observed, at(500));
    assert_eq!(again.status, status, "no status churn in steady state");
    assert!(again.events.is_empty());
    assert!(again.delete.is_empty());
    assert!(again.relabel.is_empty());
    assert_eq!(again.requeue_after, None, "nothing to wait for: no polling");
}

#[test]
fn a_version_change_deploys_next_to_stable_and_switches_when_available() {
    let v1 = spec("v1");
    let v2 = spec("v2");
    let status = healthy(&v1);
    let old = deployment(&v1, 3, "stable");

    let d = run(&v2, &status, std::slice::from_ref(&old), at(100));
    assert_eq!(d.apply.len(), 1);
    assert_eq!(d.apply[0].revision, revision_of(&v2));
    assert_eq!(d.apply[0].track, Track::Canary);
    assert_eq!(
        d.services.stable,
        revision_of(&v1),
        "traffic stays until v2 is available"
    );
    assert_eq!(d.status.phase, Some(Phase::Progressing));
    assert_eq!(d.status.canary.as_ref().unwrap().version, "v2");
    assert_eq!(reasons(&d), vec!["Deploying"]);

    let new_unready = deployment(&v2, 1, "canary");
    let d2 = run(&v2, &d.status, &[old.clone(), new_unready], at(110));
    assert_eq!(d2.services.stable, revision_of(&v1));
    assert!(d2.events.is_empty());

    let new_ready = deployment(&v2, 3, "canary");
    let d3 = run(&v2, &d2.status, &[old.clone(), new_ready.clone()], at(120));
    assert_eq!(d3.services.stable, revision_of(&v2));
    assert_eq!(d3.status.stable.as_ref().unwrap().version, "v2");
    assert_eq!(d3.status.retiring.len(), 1);
    assert_eq!(d3.status.retiring[0].scale_down_at, Time(at(150)));
    assert_eq!(reasons(&d3), vec!["Promoted"]);
    assert!(d3.relabel.contains(&(old.name.clone(), Track::Retiring)));
    assert!(
        d3.delete.is_empty(),
        "the old revision stays warm during the delay"
    );
    assert_eq!(d3.requeue_after, Some(Duration::from_secs(31)));
    assert_eq!(d3.status.history[0].version, "v2");
    assert_eq!(d3.status.history[1].version, "v1");

    let d4 = run(&v2, &d3.status, &[old.clone(), new_ready.clone()], at(150));
    assert_eq!(d4.delete, vec![old.name.clone()]);
    assert!(d4.status.retiring.is_empty());
    assert_eq!(reasons(&d4), vec!["ScaledDown"]);
    assert_eq!(d4.status.phase, Some(Phase::Healthy));
}

#[test]
fn a_rollback_within_the_delay_reuses_the_warm_revision() {
    let v1 = spec("v1");
    let v2 = spec("v2");
    let status = healthy(&v1);
    let old = deployment(&v1, 3, "retiring");
    let d = run(&v2, &status, &[deployment(&v1, 3, "stable")], at(100));
    let promoted = run(
        &v2,
        &d.status,
        &[old.clone(), deployment(&v2, 3, "canary")],
        at(101),
    );
    assert_eq!(promoted.status.stable.as_ref().unwrap().version, "v2");

    let back = run(
        &v1,
        &promoted.status,
        &[old, deployment(&v2, 3, "stable")],
        at(110),
    );
    assert_eq!(
        back.status.stable.as_ref().unwrap().version,
        "v1",
        "switch at once"
    );
    assert_eq!(back.services.stable, revision_of(&v1));
    assert_eq!(back.status.retiring.len(), 1);
    assert_eq!(back.status.retiring[0].revision, revision_of(&v2));
}

#[test]
fn a_newer_version_supersedes_a_pending_one() {
    let v1 = spec("v1");
    let status = healthy(&v1);
    let d = run(
        &spec("v2"),
        &status,
        &[deployment(&v1, 3, "stable")],
        at(100),
    );
    let pending = deployment(&spec("v2"), 0, "canary");
    let d2 = run(
        &spec("v3"),
        &d.status,
        &[deployment(&v1, 3, "stable"), pending.clone()],
        at(105),
    );
    assert_eq!(reasons(&d2), vec!["Superseded", "Deploying"]);
    assert_eq!(d2.delete, vec![pending.name]);
    assert_eq!(d2.status.canary.as_ref().unwrap().version, "v3");
    assert_eq!(d2.status.history[0].outcome, "Superseded");
}

#[test]
fn a_revision_that_never_becomes_available_hits_the_progress_deadline() {
    let v1 = spec("v1");
    let mut v2 = spec("v2");
    v2.rollout = Some(Rollout {
        progress_deadline_seconds: Some(60),
        ..Rollout::default()
    });
    let status = healthy(&v1);
    let stuck = deployment(&v2, 0, "canary");
    let d = run(&v2, &status, &[deployment(&v1, 3, "stable")], at(100));
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(61)),
        "wake at the deadline"
    );
    let d2 = run(
        &v2,
        &d.status,
        &[deployment(&v1, 3, "stable"), stuck.clone()],
        at(160),
    );
    assert_eq!(d2.status.phase, Some(Phase::Degraded));
    assert_eq!(reasons(&d2), vec!["ProgressDeadlineExceeded"]);
    assert!(d2.events[0].warning);
    assert_eq!(d2.services.stable, revision_of(&v1), "traffic never moved");
    let progressing = d2.status.conditions.get("Progressing").unwrap();
    assert_eq!(progressing.status, "False");
    assert_eq!(progressing.reason, "RolloutAborted");
    assert!(
        progressing.message.contains("progressDeadlineSeconds=60"),
        "{}",
        progressing.message
    );
    assert_eq!(d2.status.history[0].outcome, "Aborted");
    let d3 = run(
        &v2,
        &d2.status,
        &[deployment(&v1, 3, "stable"), stuck],
        at(170),
    );
    assert!(d3.events.is_empty(), "the warning is published once");
}

#[test]
fn with_an_autoscaler_the_new_revision_is_sized_from_the_stable_one() {
    let mut v1 = spec("v1");
    v1.replicas = None;
    v1.autoscaling = Some(Autoscaling {
        min_replicas: Some(2),
        max_replicas: 10,
        ..Autoscaling::default()
    });
    let mut v2 = v1.clone();
    v2.model.version = "v2".into();
    let status = healthy(&v1);
    let mut scaled = deployment(&v1, 3, "stable");
    scaled.desired = 7;
    let steady = run(&v1, &status, &[scaled.clone()], at(50));
    assert_eq!(
        steady.apply[0].replicas, None,
        "the HPA owns the stable replica count"
    );
    assert_eq!(steady.autoscaler_target, Some(scaled.name.clone()));
    let d = run(&v2, &status, &[scaled], at(100));
    assert_eq!(d.apply[0].replicas, None, "never owned by the operator");
    assert_eq!(
        d.apply[0].initial_replicas,
        Some(7),
        "created as large as the stable"
    );
    let first = run(&v1, &RankingModelStatus::default(), &[], at(0));
    assert_eq!(first.apply[0].replicas, None);
    assert_eq!(first.apply[0].initial_replicas, Some(2));
}

#[test]
fn the_disruption_budget_exists_only_with_more_than_one_replica() {
    let mut s = spec("v1");
    let status = healthy(&s);
    assert!(
        run(&s, &status, &[deployment(&s, 3, "stable")], at(10))
            .disruption_budget
            .is_some()
    );
    s.replicas = Some(1);
    assert!(run(&s, &status, &[], at(10)).disruption_budget.is_none());
}

#[test]
fn leftover_deployments_are_deleted() {
    let s = spec("v1");
    let status = healthy(&s);
    let stray = deployment(&spec("v0"), 3, "stable");
    let d = run(
        &s,
        &status,
        &[deployment(&s, 3, "stable"), stray.clone()],
        at(10),
    );
    assert_eq!(d.delete, vec![stray.name]);
}

#[test]
fn the_revision_changes_with_what_is_served_only() {
    let base = spec("v1");
    let mut other = base.clone();
    other.replicas = Some(9);
    other.runtime.readiness_path = Some("/r".into());
    assert_eq!(revision_of(&base), revision_of(&other));
    let mut image = base.clone();
    image.runtime.image = "runtime:2".into();
    assert_ne!(revision_of(&base), revision_of(&image));
    let mut args = base.clone();
    args.runtime.args = vec!["--threads=4".into()];
    assert_ne!(revision_of(&base), revision_of(&args));
    assert_ne!(revision_of(&base), revision_of(&spec("v2")));
    assert_eq!(revision_of(&base).len(), 10);
}

#[test]
fn reverting_the_spec_mid_rollout_abandons_the_pending_revision() {
    let v1 = spec("v1");
    let status = healthy(&v1);
    let d = run(
        &spec("v2"),
        &status,
        &[deployment(&v1, 3, "stable")],
        at(100),
    );
    let pending = deployment(&spec("v2"), 1, "canary");
    let back = run(
        &v1,
        &d.status,
        &[deployment(&v1, 3, "stable"), pending.clone()],
        at(105),
    );
    assert_eq!(reasons(&back), vec!["Superseded"]);
    assert!(back.status.canary.is_none());
    assert_eq!(back.delete, vec![pending.name]);
    assert_eq!(back.status.phase, Some(Phase::Healthy));
    assert_eq!(back.status.history[0].outcome, "Superseded");
}

#[test]
fn a_lost_status_is_rebuilt_from_the_serving_deployment_and_nothing_is_deleted() {
    // Healthy on v1, then the status is lost (deleted subresource, restore
    // of an old backup): the Deployment that serves is still there.
    let s = spec("v1");
    let observed = [deployment(&s, 3, "stable")];
    let d = run(&s, &RankingModelStatus::default(), &observed, at(500));
    assert!(d.delete.is_empty(), "{:?}", d.delete);
    assert_eq!(d.services.stable, revision_of(&s));
    let stable = d.status.stable.as_ref().expect("stable rebuilt");
    assert_eq!(stable.revision, revision_of(&s));
    assert_eq!(stable.version, "v1");
    assert_eq!(stable.uri, s.model.uri);
    assert_eq!(d.status.phase, Some(Phase::Healthy));
    assert!(
        reasons(&d).contains(&"StatusRecovered"),
        "{:?}",
        reasons(&d)
    );
}

#[test]
fn a_lost_status_mid_rollout_keeps_the_serving_revision_and_restarts_the_canary() {
    // Stable v1 serves, the spec asks for v2 and its Deployment is starting
    // (not Ready): the Services must stay on v1 and v1 must not be deleted.
    let v1 = spec("v1");
    let v2 = spec("v2");
    let observed = [deployment(&v1, 3, "stable"), deployment(&v2, 0, "canary")];
    let d = run(&v2, &RankingModelStatus::default(), &observed, at(500));
    assert!(d.delete.is_empty(), "{:?}", d.delete);
    assert_eq!(d.services.stable, revision_of(&v1));
    assert_eq!(
        d.status.stable.as_ref().map(|s| s.revision.clone()),
        Some(revision_of(&v1))
    );
    assert_eq!(
        d.status.canary.as_ref().map(|c| c.revision.clone()),
        Some(revision_of(&v2))
    );
    assert!(
        d.apply
            .iter()
            .all(|p| p.revision != revision_of(&v2) || p.track == Track::Canary),
        "{:?}",
        d.apply
    );
}

#[test]
fn without_a_serving_deployment_a_lost_status_is_a_first_deployment() {
    // A stable-track Deployment with no ready pod serves nothing: adopting
    // it would hide a model that never came up.
    let s = spec("v1");
    let old = spec("v0");
    let observed = [deployment(&old, 0, "stable")];
    let d = run(&s, &RankingModelStatus::default(), &observed, at(500));
    assert!(d.status.stable.is_none());
    assert!(!reasons(&d).contains(&"StatusRecovered"));
    assert_eq!(d.apply[0].revision, revision_of(&s));
}
