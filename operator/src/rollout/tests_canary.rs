//! The canary state machine, step by step, with the clock and the observed
//! Deployments as plain inputs.

use super::*;
use mlctl_crds::rankingmodel::{
    AnalysisMetric, AnalysisStatus, AnalysisStep, GatewayApiRouting, MetricProvider, MetricStatus,
    ModelFormat, ModelSource, PauseStep, PrometheusProvider, Rollout, RolloutAnalysis, RolloutStep,
    Runtime, TrafficRouting,
};

pub(super) fn metric(name: &str) -> AnalysisMetric {
    AnalysisMetric {
        name: name.into(),
        provider: MetricProvider {
            prometheus: Some(PrometheusProvider {
                address: "http://127.0.0.1:9090".into(),
                query: "q".into(),
                timeout: None,
                ..PrometheusProvider::default()
            }),
            web: None,
            job: None,
        },
        success_condition: Some("result < 0.05".into()),
        ..AnalysisMetric::default()
    }
}

pub(super) fn weight(w: i32) -> RolloutStep {
    RolloutStep {
        set_weight: Some(w),
        ..RolloutStep::default()
    }
}

fn pause_for(d: Option<&str>) -> RolloutStep {
    RolloutStep {
        pause: Some(PauseStep {
            duration: d.map(str::to_string),
        }),
        ..RolloutStep::default()
    }
}

pub(super) fn analysis_step(names: &[&str]) -> RolloutStep {
    RolloutStep {
        analysis: Some(AnalysisStep {
            metrics: names.iter().map(|n| n.to_string()).collect(),
        }),
        ..RolloutStep::default()
    }
}

pub(super) fn spec(version: &str, steps: Vec<RolloutStep>) -> RankingModelSpec {
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
        replicas: Some(4),
        autoscaling: None,
        features: vec![],
        rollout: Some(Rollout {
            steps,
            analysis: Some(RolloutAnalysis {
                metrics: vec![metric("errors")],
                templates: vec![metric("ndcg")],
                template_refs: Vec::new(),
            }),
            progress_deadline_seconds: Some(120),
            abort_scale_down_delay_seconds: Some(20),
            ..Rollout::default()
        }),
        notifications: Vec::new(),
    }
}

fn steps() -> Vec<RolloutStep> {
    vec![
        weight(25),
        pause_for(Some("30s")),
        analysis_step(&["ndcg"]),
        weight(50),
        pause_for(None),
    ]
}

pub(super) fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub(super) fn dep(
    spec: &RankingModelSpec,
    desired: i32,
    ready: i32,
    track: &str,
) -> ObservedDeployment {
    let revision = revision_of(spec);
    ObservedDeployment {
        name: deployment_name("r", &revision),
        revision,
        track: Some(track.into()),
        desired,
        replicas: desired,
        ready,
        available: ready >= desired,
        version: Some(spec.model.version.clone()),
        uri: Some(spec.model.uri.clone()),
    }
}

pub(super) struct Sim {
    pub(super) status: RankingModelStatus,
    pub(super) requests: Requests,
    pub(super) features: Option<FeatureGate>,
}

impl Sim {
    pub(super) fn healthy(v1: &RankingModelSpec) -> Self {
        let mut sim = Sim {
            status: RankingModelStatus::default(),
            requests: Requests::default(),
            features: None,
        };
        sim.step(v1, &[], at(0));
        sim.step(v1, &[dep(v1, 4, 4, "stable")], at(1));
        assert_eq!(sim.status.phase, Some(Phase::Healthy));
        sim
    }

    pub(super) fn step(
        &mut self,
        spec: &RankingModelSpec,
        observed: &[ObservedDeployment],
        now: Timestamp,
    ) -> Decision {
        let d = decide(
            spec,
            &self.status,
            &Context {
                name: "r",
                generation: Some(2),
                now,
                observed,
                requests: std::mem::take(&mut self.requests),
                features: self.features.clone(),
            },
        );
        self.status = d.status.clone();
        d
    }

    pub(super) fn canary(&self) -> &CanaryRevision {
        self.status.canary.as_ref().unwrap()
    }

    fn set_metric(&mut self, name: &str, step: Option<i32>, phase: &str, message: &str) {
        let a = self
            .status
            .analysis
            .get_or_insert_with(AnalysisStatus::default);
        a.metrics.retain(|m| !(m.name == name && m.step == step));
        a.metrics.push(MetricStatus {
            name: name.into(),
            step,
            phase: phase.into(),
            message: Some(message.into()),
            ..MetricStatus::default()
        });
    }
}

pub(super) fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

#[test]
fn canary_replicas_follow_the_weight() {
    // Replica ratio: stable keeps 4, canary gets 4·w/(100−w), capped at full.
    assert_eq!(canary_replicas(0, 4, 4, true), 0);
    assert_eq!(canary_replicas(10, 4, 4, true), 1);
    assert_eq!(canary_replicas(20, 4, 4, true), 1);
    assert_eq!(canary_replicas(25, 4, 4, true), 2);
    assert_eq!(canary_replicas(50, 4, 4, true), 4);
    assert_eq!(canary_replicas(80, 4, 4, true), 4);
    assert_eq!(canary_replicas(100, 4, 4, true), 4);
    // A router splits traffic itself: just enough pods for the share.
    assert_eq!(canary_replicas(10, 4, 4, false), 1);
    assert_eq!(canary_replicas(50, 4, 4, false), 2);
    assert_eq!(canary_replicas(75, 4, 4, false), 3);
    assert_eq!(canary_replicas(20, 0, 1, false), 1);
}

#[test]
fn a_canary_walks_its_steps_to_stable() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");

    // Start: the first setWeight scales the canary, weight stays 0 until Ready.
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(reasons(&d), vec!["CanaryStarted"]);
    assert_eq!(d.apply.len(), 1);
    assert_eq!(d.apply[0].replicas, Some(2), "25% of 4 stable by ratio");
    assert_eq!(d.apply[0].track, Track::Canary);
    assert_eq!(sim.canary().weight, 0);
    assert!(!d.services.split, "no canary pods take traffic yet");
    assert!(
        active_analysis(&v2, &sim.status).is_empty(),
        "nothing to measure at weight 0"
    );
    assert_eq!(sim.status.phase, Some(Phase::Progressing));

    // Ready: weight 25, the timed pause starts and wakes us at its end.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(110));
    assert_eq!(sim.canary().weight, 25);
    assert_eq!(sim.canary().step_index, 1);
    assert!(d.services.split, "<model> now selects canary pods too");
    assert_eq!(d.steps_completed, vec![("setWeight", 10.0)]);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(31)));
    let active = active_analysis(&v2, &sim.status);
    assert_eq!(
        active.len(),
        1,
        "background analysis runs once traffic flows"
    );
    assert_eq!(active[0].step, None);

    // During the pause nothing changes (and nothing is written again).
    let before = sim.status.clone();
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(125));
    assert_eq!(sim.status, before);
    assert!(d.events.is_empty());

    // Pause over: the analysis step starts; the reconciler will measure it.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(140));
    assert_eq!(sim.canary().step_index, 2);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    let active = active_analysis(&v2, &sim.status);
    assert_eq!(active.len(), 2);
    assert_eq!(active[1].step, Some(2));
    assert_eq!(active[1].metrics[0].name, "ndcg");

    // Still running: wait. Successful: next step scales to 50%.
    sim.set_metric("ndcg", Some(2), "Running", "");
    sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(150));
    assert_eq!(sim.canary().step_index, 2);
    sim.set_metric("ndcg", Some(2), "Successful", "");
    sim.set_metric("errors", None, "Running", "");
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(160));
    assert_eq!(sim.canary().step_index, 3);
    assert_eq!(d.apply[0].replicas, Some(4));
    assert_eq!(
        sim.canary().weight,
        25,
        "weight moves only when the pods are Ready"
    );

    // 50%, then the indefinite pause waits for a person.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(170));
    assert_eq!(sim.canary().weight, 50);
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert_eq!(sim.canary().pause_reason.as_deref(), Some(pause::STEP));
    assert!(reasons(&d).contains(&"Paused"));
    let progressing = sim.status.conditions.get("Progressing").unwrap();
    assert_eq!(progressing.status, "Unknown");

    // Promote by annotation: the last step completes, full size, stable.
    sim.requests.promote = Some("2026-11-25T10:00:00Z".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(200));
    assert_eq!(
        sim.status
            .handled_requests
            .get(mlctl_crds::requests::PROMOTE)
            .map(String::as_str),
        Some("2026-11-25T10:00:00Z")
    );
    assert!(reasons(&d).contains(&"Promoted"), "{:?}", reasons(&d));
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v2");
    assert!(sim.status.canary.is_none());
    assert_eq!(d.services.stable, revision_of(&v2));
    assert!(!d.services.split);
    assert_eq!(d.outcomes[0].outcome, "promoted");
    assert_eq!(d.outcomes[0].seconds, Some(100.0));
    assert_eq!(sim.status.retiring[0].version, "v1");
    assert_eq!(sim.status.history[0].outcome, "Promoted");
}

#[test]
fn a_failed_analysis_aborts_at_once_and_scales_down_later() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    sim.step(&v2, std::slice::from_ref(&stable), at(100));
    sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(110));
    assert_eq!(sim.canary().weight, 25);
    sim.set_metric("errors", None, "Running", "");
    sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(112));
    let analysis = sim.status.conditions.get("AnalysisHealthy").unwrap();
    assert_eq!(
        (analysis.status.as_str(), analysis.reason.as_str()),
        ("True", "Passing")
    );

    sim.set_metric(
        "errors",
        None,
        "Failed",
        "metric errors: result 0.12 broke successCondition \"result < 0.05\"",
    );
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(115));
    assert_eq!(reasons(&d), vec!["AnalysisFailed"]);
    assert!(d.events[0].warning);
    assert!(
        d.events[0]
            .message
            .contains("result 0.12 broke successCondition")
    );
    assert_eq!(sim.status.phase, Some(Phase::Degraded));
    assert_eq!(d.canary_weight, 0);
    assert!(!d.services.split, "all traffic back on stable at once");
    assert_eq!(d.services.canary, revision_of(&v1));
    assert!(
        d.delete.is_empty(),
        "canary pods stay for abortScaleDownDelaySeconds"
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(21)));
    assert_eq!(sim.status.history[0].outcome, "Aborted");
    assert_eq!(d.outcomes[0].outcome, "aborted");
    let cond = sim.status.conditions.get("Progressing").unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "RolloutAborted")
    );
    assert!(cond.message.contains("result 0.12"));
    assert!(active_analysis(&v2, &sim.status).is_empty());
    // The analysis verdict stays visible after the abort (Argo CD's health
    // message reads it).
    let analysis = sim.status.conditions.get("AnalysisHealthy").unwrap();
    assert_eq!(
        (analysis.status.as_str(), analysis.reason.as_str()),
        ("False", "Failed")
    );
    assert!(
        analysis.message.starts_with("metric errors: "),
        "{}",
        analysis.message
    );

    // Steady while aborted: no new events, no re-deploy.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(120));
    assert!(d.events.is_empty());
    assert!(d.apply.is_empty());
    // After the delay the canary Deployment goes; the abort stays in status.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(135));
    assert_eq!(d.delete, vec![dep(&v2, 2, 2, "canary").name]);
    assert!(sim.canary().aborted_at.is_some());

    // Retry restarts from step 1.
    sim.requests.retry = Some("2026-11-25T11:00:00Z".into());
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(200));
    assert_eq!(reasons(&d), vec!["Retrying"]);
    assert_eq!(sim.canary().step_index, 0);
    assert!(sim.canary().aborted_at.is_none());
    assert!(sim.status.analysis.is_none());
    assert!(sim.status.conditions.get("AnalysisHealthy").is_none());
    assert_eq!(d.apply[0].replicas, Some(2));
    assert_eq!(sim.status.phase, Some(Phase::Progressing));
}

#[test]
fn an_inconclusive_analysis_pauses_for_a_person() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let obs = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 2, "canary")];
    sim.step(&v2, &obs[..1], at(100));
    sim.step(&v2, &obs, at(110));
    sim.step(&v2, &obs, at(140));
    assert_eq!(sim.canary().step_index, 2);
    sim.set_metric("ndcg", Some(2), "Inconclusive", "metric ndcg: no data");
    let d = sim.step(&v2, &obs, at(150));
    assert_eq!(reasons(&d), vec!["AnalysisInconclusive"]);
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert_eq!(
        sim.canary().pause_reason.as_deref(),
        Some(pause::INCONCLUSIVE)
    );
    assert_eq!(sim.canary().weight, 25, "the weight stays");
    assert!(active_analysis(&v2, &sim.status).is_empty());
    // promote: the person accepts the evidence; the step is done.
    sim.requests.promote = Some("t1".into());
    sim.step(&v2, &obs, at(160));
    assert_eq!(sim.canary().step_index, 3);
    assert_eq!(sim.canary().pause_reason, None);
    assert_eq!(sim.status.phase, Some(Phase::Progressing));
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    sim.step(&v2, std::slice::from_ref(&stable), at(100));
    sim.requests.promote_full = Some("t".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(105));
    assert!(reasons(&d).contains(&"PromotingFully"));
    assert_eq!(d.apply[0].replicas, Some(4), "full size before taking over");
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(110));
    assert!(reasons(&d).contains(&"Promoted"));
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v2");
}

#[test]
fn canary_pods_that_never_get_ready_hit_the_progress_deadline() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(121)));
    let stuck = dep(&v2, 2, 0, "canary");
    let d = sim.step(&v2, &[stable.clone(), stuck.clone()], at(200));
    assert!(d.events.is_empty());
    let d = sim.step(&v2, &[stable.clone(), stuck.clone()], at(220));
    assert_eq!(reasons(&d), vec!["ProgressDeadlineExceeded"]);
    assert!(
        d.events[0].message.contains("0/2 ready"),
        "{}",
        d.events[0].message
    );
    assert_eq!(sim.status.phase, Some(Phase::Degraded));
    assert_eq!(sim.canary().weight, 0);
}

#[test]
fn a_restart_resumes_at_the_same_step_without_repeating_it() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let obs = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 2, "canary")];
    sim.step(&v2, &obs[..1], at(100));
    sim.step(&v2, &obs, at(110));
    // A fresh process decides from the status alone: same step, same
    // weight, no events (nothing is repeated), the same wake-up.
    let saved = sim.status.clone();
    for now in [at(111), at(120), at(139)] {
        let d = decide(
            &v2,
            &saved,
            &Context {
                name: "r",
                generation: Some(2),
                now,
                observed: &obs,
                requests: Requests::default(),
                features: None,
            },
        );
        assert!(d.events.is_empty(), "{:?}", d.events);
        assert_eq!(d.status.canary, saved.canary);
        assert_eq!(d.canary_weight, 25);
        assert_eq!(d.apply[0].replicas, Some(2));
    }
    // A restart while the canary's pods are not Ready never raises the weight.
    let mut sim2 = Sim {
        status: saved,
        requests: Requests::default(),
        features: None,
    };
    let unready = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 1, "canary")];
    sim2.step(&v2, &unready, at(140));
    sim2.step(&v2, &unready, at(150));
    sim2.set_metric("ndcg", Some(2), "Successful", "");
    sim2.step(&v2, &unready, at(160));
    assert_eq!(sim2.canary().step_index, 3);
    sim2.step(
        &v2,
        &[dep(&v1, 4, 4, "stable"), dep(&v2, 4, 3, "canary")],
        at(170),
    );
    assert_eq!(
        sim2.canary().weight,
        25,
        "50% waits for 4 Ready canary pods"
    );
}

#[test]
fn a_newer_version_supersedes_the_canary_and_starts_from_step_one() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let v3 = spec("v3", steps());
    let mut sim = Sim::healthy(&v1);
    let obs = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 2, "canary")];
    sim.step(&v2, &obs[..1], at(100));
    sim.step(&v2, &obs, at(110));
    sim.set_metric("errors", None, "Running", "");
    let d = sim.step(&v3, &obs, at(120));
    assert_eq!(reasons(&d), vec!["Superseded", "CanaryStarted"]);
    assert_eq!(d.delete, vec![obs[1].name.clone()]);
    assert_eq!(sim.canary().version, "v3");
    assert_eq!(sim.canary().step_index, 0);
    assert_eq!(sim.canary().weight, 0);
    assert!(
        sim.status.analysis.is_none(),
        "measurements of v2 are not v3's"
    );
    assert_eq!(sim.status.history[0].outcome, "Superseded");
    assert_eq!(d.outcomes[0].outcome, "superseded");
}

#[test]
fn features_not_ready_hold_a_canary_and_release_it_by_themselves() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    sim.features = Some(FeatureGate {
        ready: false,
        strict: false,
        reason: "PipelineNotFresh".into(),
        message: "pipeline ctr is stale".into(),
    });
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert!(reasons(&d).contains(&"FeaturesNotReady"));
    assert!(
        d.apply.is_empty(),
        "no canary pods while features are not ready"
    );
    assert_eq!(sim.canary().pause_reason.as_deref(), Some(pause::FEATURES));
    assert_eq!(sim.status.phase, Some(Phase::Progressing));
    let cond = sim.status.conditions.get("FeaturesReady").unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "PipelineNotFresh")
    );
    // Long waits do not hit the progress deadline.
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(1000));
    assert!(d.events.is_empty(), "{:?}", d.events);

    sim.features = Some(FeatureGate {
        ready: true,
        strict: false,
        reason: "FeaturesReady".into(),
        message: "ok".into(),
    });
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(1010));
    assert!(reasons(&d).contains(&"FeaturesReady"));
    assert_eq!(d.apply[0].replicas, Some(2));
    assert!(sim.status.conditions.is_true("FeaturesReady"));
}

#[test]
fn a_strict_gate_holds_even_the_first_deployment() {
    let v1 = spec("v1", steps());
    let mut sim = Sim {
        status: RankingModelStatus::default(),
        requests: Requests::default(),
        features: Some(FeatureGate {
            ready: false,
            strict: true,
            reason: "PipelineMissing".into(),
            message: "pipeline ctr not found".into(),
        }),
    };
    let d = sim.step(&v1, &[], at(0));
    assert!(d.apply.is_empty());
    assert_eq!(sim.status.phase, Some(Phase::Pending));
    // Rollouts gate (not strict): the first deployment goes ahead.
    sim.features.as_mut().unwrap().strict = false;
    let d = sim.step(&v1, &[], at(5));
    assert_eq!(d.apply.len(), 1);
}

#[test]
fn a_rollback_request_skips_the_steps_and_records_the_rollback() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v2);
    sim.requests.rollback = Some("t".into());
    let d = sim.step(&v1, &[dep(&v2, 4, 4, "stable")], at(50));
    assert!(reasons(&d).contains(&"RollingBack"));
    assert_eq!(d.apply[0].replicas, Some(4), "straight to full size");
    assert_eq!(sim.status.history[0].outcome, "RolledBack");
    assert_eq!(sim.status.history[0].version, "v2");
    assert_eq!(d.outcomes[0].outcome, "rolled_back");
    let d = sim.step(
        &v1,
        &[dep(&v2, 4, 4, "stable"), dep(&v1, 4, 4, "canary")],
        at(60),
    );
    assert!(reasons(&d).contains(&"Promoted"));
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v1");
}

/// `mlctl rollback` writes an entry's sha256 back into the spec: every
/// entry keeps the digest its revision had, not only Promoted ones.
#[test]
fn history_entries_keep_the_digest_of_their_revision() {
    let with_sha = |version: &str, digit: char| {
        let mut s = spec(version, steps());
        s.model.sha256 = Some(digit.to_string().repeat(64));
        s
    };
    let (v1, v2) = (with_sha("v1", 'a'), with_sha("v2", 'b'));
    let mut sim = Sim::healthy(&v1);
    let obs = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 2, "canary")];
    sim.step(&v2, &obs[..1], at(100));
    sim.step(&v2, &obs, at(110));
    sim.requests.abort = Some("t".into());
    sim.step(&v2, &obs, at(115));
    let aborted = &sim.status.history[0];
    assert_eq!(
        (aborted.outcome.as_str(), aborted.version.as_str()),
        ("Aborted", "v2")
    );
    assert_eq!(aborted.sha256, v2.model.sha256);

    // Rolling back from a stable v2 to v1: the RolledBack entry is v2's.
    let mut sim = Sim::healthy(&v2);
    sim.requests.rollback = Some("t".into());
    sim.step(&v1, &[dep(&v2, 4, 4, "stable")], at(50));
    let rolled_back = &sim.status.history[0];
    assert_eq!(rolled_back.outcome, "RolledBack");
    assert_eq!(rolled_back.sha256, v2.model.sha256);
}

#[test]
fn requests_without_a_canary_are_answered_and_not_kept() {
    let v1 = spec("v1", steps());
    let mut sim = Sim::healthy(&v1);
    sim.requests.abort = Some("t".into());
    let d = sim.step(&v1, &[dep(&v1, 4, 4, "stable")], at(50));
    assert_eq!(reasons(&d), vec!["RequestIgnored"]);
    assert_eq!(
        sim.status
            .handled_requests
            .get(mlctl_crds::requests::ABORT)
            .map(String::as_str),
        Some("t")
    );
    assert_eq!(sim.status.phase, Some(Phase::Healthy));
}

#[test]
fn an_abort_request_sends_traffic_back_to_stable() {
    let v1 = spec("v1", steps());
    let v2 = spec("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let obs = [dep(&v1, 4, 4, "stable"), dep(&v2, 2, 2, "canary")];
    sim.step(&v2, &obs[..1], at(100));
    sim.step(&v2, &obs, at(110));
    sim.requests.abort = Some("t".into());
    let d = sim.step(&v2, &obs, at(115));
    assert_eq!(reasons(&d), vec!["RolloutAborted"]);
    assert!(
        sim.canary()
            .abort_reason
            .as_deref()
            .unwrap()
            .contains("by request")
    );
    assert_eq!(d.canary_weight, 0);
    assert_eq!(sim.status.phase, Some(Phase::Degraded));
}

#[test]
fn with_a_router_the_weight_is_handed_over_and_stable_selects_stable_only() {
    let mut v1 = spec("v1", vec![weight(10), pause_for(None)]);
    let routing = Some(TrafficRouting {
        gateway_api: Some(GatewayApiRouting {
            http_route: "route".into(),
        }),
        ..TrafficRouting::default()
    });
    v1.rollout.as_mut().unwrap().traffic_routing = routing.clone();
    let mut v2 = spec("v2", vec![weight(10), pause_for(None)]);
    v2.rollout.as_mut().unwrap().traffic_routing = routing;
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(d.apply[0].replicas, Some(1));
    assert_eq!(d.canary_weight, 0, "no weight before the canary is Ready");
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(110));
    assert_eq!(d.canary_weight, 10);
    assert!(!d.services.split, "the router splits, not <model>");
    assert_eq!(d.services.canary, revision_of(&v2));
}

#[test]
fn an_analysis_step_naming_an_unknown_metric_aborts_with_the_fix() {
    let v1 = spec("v1", vec![analysis_step(&["nope"])]);
    let v2 = spec("v2", vec![analysis_step(&["nope"])]);
    let mut sim = Sim::healthy(&v1);
    let d = sim.step(&v2, &[dep(&v1, 4, 4, "stable")], at(100));
    assert_eq!(reasons(&d), vec!["CanaryStarted", "AnalysisFailed"]);
    assert!(
        d.events[1]
            .message
            .contains("spec.rollout.analysis.templates")
    );
}

#[test]
fn with_an_autoscaler_the_canary_is_sized_from_the_stable_current_replicas() {
    let autoscaled = |v: &str| {
        let mut s = spec(v, steps());
        s.replicas = None;
        s.autoscaling = Some(mlctl_crds::rankingmodel::Autoscaling {
            min_replicas: Some(2),
            max_replicas: 10,
            ..Default::default()
        });
        s
    };
    let (v1, v2) = (autoscaled("v1"), autoscaled("v2"));
    let mut sim = Sim::healthy(&spec("v1", steps()));
    // The HPA scaled stable to 6.
    let stable = dep(&v1, 6, 6, "stable");
    sim.status.stable.as_mut().unwrap().revision = revision_of(&v1);
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(
        d.apply[0].replicas, None,
        "the operator never owns replicas under an HPA"
    );
    assert_eq!(
        d.apply[0].initial_replicas,
        Some(2),
        "25%: 6×25/75 = 2 canary pods"
    );
    assert_eq!(d.autoscaler_target, Some(stable.name.clone()));
    sim.requests.promote_full = Some("t".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(110));
    assert_eq!(
        d.apply[0].initial_replicas,
        Some(6),
        "full size = the stable's current size"
    );
}
