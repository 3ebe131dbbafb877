//! The blue-green state machine, stage by stage, with the clock and the
//! observed Deployments as plain inputs.

use super::bluegreen::{PREVIEW_READY, STRATEGY, stage};
use super::tests_canary::{Sim, at, dep, reasons, spec};
use super::*;
use crate::analysis::{POST_PROMOTION_STEP, PRE_PROMOTION_STEP};
use mlctl_crds::rankingmodel::{
    AnalysisStatus, AnalysisStep, BlueGreen, GatewayApiRouting, MetricStatus, Rollout,
    TrafficRouting,
};

fn names(list: &[&str]) -> Option<AnalysisStep> {
    (!list.is_empty()).then(|| AnalysisStep {
        metrics: list.iter().map(|n| n.to_string()).collect(),
    })
}

/// A model (4 replicas) whose rollout is blue-green.
fn bg_spec(version: &str, bg: BlueGreen) -> RankingModelSpec {
    let mut s = spec(version, Vec::new());
    let r = s.rollout.as_mut().unwrap();
    r.blue_green = Some(bg);
    r.scale_down_delay_seconds = Some(60);
    s
}

fn analysed(pre: &[&str], post: &[&str]) -> BlueGreen {
    BlueGreen {
        pre_promotion_analysis: names(pre),
        post_promotion_analysis: names(post),
        ..BlueGreen::default()
    }
}

/// Records a metric's verdict as the analysis would: a stage's
/// (`PrePromotion`, `PostPromotion`) or, with None, a background one.
fn set_metric(sim: &mut Sim, name: &str, stage: Option<&str>, phase: &str) {
    let a = sim
        .status
        .analysis
        .get_or_insert_with(AnalysisStatus::default);
    a.metrics
        .retain(|m| !(m.name == name && m.step.is_none() && m.stage.as_deref() == stage));
    a.metrics.push(MetricStatus {
        name: name.into(),
        stage: stage.map(str::to_string),
        phase: phase.into(),
        message: Some(format!("metric {name}: {phase}")),
        ..MetricStatus::default()
    });
}

fn set_stage_metric(sim: &mut Sim, name: &str, stage: &str, phase: &str) {
    set_metric(sim, name, Some(stage), phase);
}

/// v1 healthy, then v2 (both with `bg`) started at t=100 next to it: the
/// sim, v2's spec, and the stable and a ready full-size preview.
fn started(bg: BlueGreen) -> (Sim, RankingModelSpec, [ObservedDeployment; 2]) {
    let v1 = bg_spec("v1", bg.clone());
    let v2 = bg_spec("v2", bg);
    let mut sim = Sim::healthy(&v1);
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    sim.step(&v2, &both[..1], at(100));
    (sim, v2, both)
}

#[test]
fn a_preview_passes_its_analyses_switches_at_once_and_becomes_stable() {
    let v1 = bg_spec("v1", analysed(&["ndcg"], &["ndcg"]));
    let v2 = bg_spec("v2", analysed(&["ndcg"], &["ndcg"]));
    let rev2 = revision_of(&v2);
    let rev1 = revision_of(&v1);
    let mut sim = Sim::healthy(&v1);
    assert_eq!(
        sim.step(&v1, &[dep(&v1, 4, 4, "stable")], at(2))
            .services
            .preview,
        Some(rev1.clone()),
        "without a rollout the preview Service selects the stable revision"
    );
    let stable = dep(&v1, 4, 4, "stable");

    // Start: the preview at full size, no user traffic.
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(reasons(&d), vec!["BlueGreenStarted"]);
    assert_eq!(d.apply.len(), 1);
    assert_eq!(
        d.apply[0].replicas,
        Some(4),
        "full size, not a canary share"
    );
    assert_eq!(d.apply[0].track, Track::Canary);
    assert_eq!(sim.canary().strategy.as_deref(), Some(STRATEGY));
    assert_eq!(sim.canary().weight, 0);
    assert_eq!(d.canary_weight, 0);
    assert!(!d.services.split && !d.services.switched);
    assert_eq!(d.services.stable, rev1, "<model> keeps selecting stable");
    assert_eq!(d.services.preview, Some(rev2.clone()));
    assert!(active_analysis(&v2, &sim.status).is_empty());
    assert_eq!(sim.status.phase, Some(Phase::Progressing));
    assert!(
        sim.status
            .message
            .as_deref()
            .unwrap()
            .contains("preview coming up behind r-preview: 0/4 ready"),
        "{:?}",
        sim.status.message
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(121)));

    // Half ready: nothing moves.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 2, "canary")], at(110));
    assert!(d.events.is_empty());
    assert_eq!(sim.canary().step_index, stage::PREVIEW);

    // Available: previewReadyAt, the pre-promotion analysis starts.
    let preview = dep(&v2, 4, 4, "canary");
    let d = sim.step(&v2, &[stable.clone(), preview.clone()], at(120));
    assert_eq!(reasons(&d), vec!["PreviewReady"]);
    assert_eq!(sim.canary().preview_ready_at, Some(time(at(120))));
    assert_eq!(sim.canary().step_index, stage::PRE_PROMOTION);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)), "measure now");
    assert_eq!(d.canary_weight, 0, "the analysis sees no user traffic");
    let active = active_analysis(&v2, &sim.status);
    assert_eq!(active.len(), 2, "background and pre-promotion: {active:?}");
    assert_eq!(active[0].step, None);
    assert_eq!(active[1].step, Some(PRE_PROMOTION_STEP));
    assert_eq!(active[1].metrics[0].name, "ndcg");

    // Running: wait. Passed: the switch, in the same decision.
    set_stage_metric(&mut sim, "ndcg", "PrePromotion", "Running");
    let d = sim.step(&v2, &[stable.clone(), preview.clone()], at(125));
    assert!(d.events.is_empty());
    set_stage_metric(&mut sim, "ndcg", "PrePromotion", "Successful");
    let d = sim.step(&v2, &[stable.clone(), preview.clone()], at(130));
    assert_eq!(reasons(&d), vec!["StepCompleted", "TrafficSwitched"]);
    assert_eq!(d.steps_completed, vec![("prePromotionAnalysis", 10.0)]);
    assert_eq!(sim.canary().switched_at, Some(time(at(130))));
    assert_eq!(sim.canary().step_index, stage::POST_PROMOTION);
    assert_eq!(
        d.canary_weight, 100,
        "a router sends everything to the canary"
    );
    assert!(d.services.switched, "<model> selects only the new revision");
    assert_eq!(d.services.stable, rev1, "<model>-stable keeps the old one");
    assert!(
        d.delete.is_empty(),
        "the previous revision stays at full size"
    );
    let active = active_analysis(&v2, &sim.status);
    assert_eq!(active[1].step, Some(POST_PROMOTION_STEP));
    assert!(
        sim.status
            .message
            .as_deref()
            .unwrap()
            .contains("postPromotionAnalysis running, v1 kept at full size")
    );

    // Post-promotion passes: stable, the old one retires after the delay.
    set_stage_metric(&mut sim, "ndcg", "PostPromotion", "Successful");
    let d = sim.step(&v2, &[stable.clone(), preview.clone()], at(150));
    assert_eq!(reasons(&d), vec!["StepCompleted", "Promoted"]);
    assert_eq!(d.steps_completed, vec![("postPromotionAnalysis", 20.0)]);
    assert_eq!(d.outcomes[0].outcome, "promoted");
    assert_eq!(d.outcomes[0].seconds, Some(50.0));
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v2");
    assert!(sim.status.canary.is_none());
    assert_eq!(sim.status.history[0].outcome, "Promoted");
    assert_eq!(sim.status.retiring[0].revision, rev1);
    assert_eq!(sim.status.retiring[0].scale_down_at, time(at(210)));
    assert_eq!(d.services.stable, rev2);
    assert_eq!(d.services.preview, Some(rev2));
    assert!(!d.services.switched);
    assert_eq!(d.canary_weight, 0);
    assert_eq!(sim.status.phase, Some(Phase::Healthy));
}

#[test]
fn manual_promotion_pauses_a_ready_preview_until_promoted() {
    let bg = BlueGreen {
        auto_promotion_enabled: Some(false),
        ..BlueGreen::default()
    };
    let (mut sim, v2, both) = started(bg);
    // An early promote is answered, not kept: nothing is paused yet.
    sim.requests.promote = Some("early".into());
    let d = sim.step(&v2, &both[..1], at(101));
    assert_eq!(reasons(&d), vec!["RequestIgnored"]);

    let d = sim.step(&v2, &both, at(110));
    assert_eq!(reasons(&d), vec!["PreviewReady", "Paused"]);
    assert_eq!(sim.canary().pause_reason.as_deref(), Some(PREVIEW_READY));
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert_eq!(
        sim.status.message.as_deref(),
        Some("preview of v2 ready at full size behind r-preview; waiting for mlctl promote")
    );
    let progressing = sim
        .status
        .conditions
        .0
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "RolloutPaused");
    assert!(
        d.requeue_after.is_none(),
        "a paused preview waits for a person"
    );
    // Still paused later, and no user traffic.
    let d = sim.step(&v2, &both, at(500));
    assert!(d.events.is_empty());
    assert_eq!(d.canary_weight, 0);

    sim.requests.promote = Some("t1".into());
    let d = sim.step(&v2, &both, at(510));
    assert_eq!(reasons(&d), vec!["TrafficSwitched", "Promoted"]);
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v2");
    assert_eq!(sim.status.handled_requests["mlctl.io/promote"], "t1");
}

#[test]
fn auto_promotion_waits_its_seconds_after_the_preview_is_ready() {
    let bg = BlueGreen {
        auto_promotion_seconds: Some(30),
        ..BlueGreen::default()
    };
    let (mut sim, v2, both) = started(bg);
    let d = sim.step(&v2, &both, at(110));
    assert_eq!(reasons(&d), vec!["PreviewReady"]);
    assert_eq!(sim.canary().step_index, stage::PROMOTION);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(31)));
    assert_eq!(sim.status.phase, Some(Phase::Progressing));
    let message = sim.status.message.clone().unwrap();
    assert!(
        message.contains("all traffic switches at 2027-01-15T08:02:20Z (autoPromotionSeconds=30)"),
        "{message}"
    );
    let d = sim.step(&v2, &both, at(139));
    assert!(d.events.is_empty() && d.canary_weight == 0);
    let d = sim.step(&v2, &both, at(140));
    assert_eq!(reasons(&d), vec!["TrafficSwitched", "Promoted"]);
}

#[test]
fn a_failed_post_promotion_analysis_switches_back_to_the_full_size_stable() {
    let v1 = bg_spec("v1", analysed(&[], &["ndcg"]));
    let v2 = bg_spec("v2", analysed(&[], &["ndcg"]));
    let rev1 = revision_of(&v1);
    let mut sim = Sim::healthy(&v1);
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    sim.step(&v2, &both[..1], at(100));
    let d = sim.step(&v2, &both, at(110));
    assert_eq!(reasons(&d), vec!["PreviewReady", "TrafficSwitched"]);
    assert!(d.services.switched);
    set_stage_metric(&mut sim, "ndcg", "PostPromotion", "Failed");
    let d = sim.step(&v2, &both, at(120));
    assert_eq!(reasons(&d), vec!["AnalysisFailed"]);
    assert!(
        d.events[0].message.contains("switched back"),
        "{:?}",
        d.events
    );
    assert!(!d.services.switched, "<model> is back on stable");
    assert_eq!(d.services.stable, rev1);
    assert_eq!(d.canary_weight, 0);
    assert_eq!(d.outcomes[0].outcome, "aborted");
    let c = sim.canary();
    assert!(c.aborted_at.is_some());
    assert_eq!(
        c.scale_down_at,
        Some(time(at(140))),
        "abortScaleDownDelay 20s"
    );
    assert_eq!(sim.status.stable.as_ref().unwrap().version, "v1");
    assert_eq!(sim.status.history[0].outcome, "Aborted");
    assert_eq!(sim.status.phase, Some(Phase::Degraded));
    assert!(d.delete.is_empty(), "the preview stays until its delay");
    let d = sim.step(&v2, &both, at(140));
    assert_eq!(d.delete, vec![both[1].name.clone()]);
}

#[test]
fn pre_promotion_failure_aborts_and_inconclusive_pauses_until_accepted() {
    let v1 = bg_spec("v1", analysed(&["ndcg"], &[]));
    let v2 = bg_spec("v2", analysed(&["ndcg"], &[]));
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];

    let mut sim = Sim::healthy(&v1);
    sim.step(&v2, &both[..1], at(100));
    sim.step(&v2, &both, at(110));
    set_stage_metric(&mut sim, "ndcg", "PrePromotion", "Failed");
    let d = sim.step(&v2, &both, at(120));
    assert_eq!(reasons(&d), vec!["AnalysisFailed"]);
    assert!(sim.canary().switched_at.is_none(), "traffic never moved");
    assert!(d.events[0].message.contains("prePromotionAnalysis"));

    let mut sim = Sim::healthy(&v1);
    sim.step(&v2, &both[..1], at(100));
    sim.step(&v2, &both, at(110));
    set_stage_metric(&mut sim, "ndcg", "PrePromotion", "Inconclusive");
    let d = sim.step(&v2, &both, at(120));
    assert_eq!(reasons(&d), vec!["AnalysisInconclusive"]);
    assert_eq!(
        sim.canary().pause_reason.as_deref(),
        Some(pause::INCONCLUSIVE)
    );
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert!(
        active_analysis(&v2, &sim.status).is_empty(),
        "nothing is measured while a person decides"
    );
    sim.requests.promote = Some("accept".into());
    let d = sim.step(&v2, &both, at(130));
    assert_eq!(
        reasons(&d),
        vec![
            "InconclusiveAccepted",
            "StepCompleted",
            "TrafficSwitched",
            "Promoted"
        ]
    );
}

#[test]
fn background_analysis_runs_from_the_ready_preview_and_its_failure_aborts() {
    let v1 = bg_spec("v1", BlueGreen::default());
    let v2 = bg_spec("v2", analysed(&[], &[]));
    let v2 = RankingModelSpec {
        rollout: v2.rollout.map(|r| Rollout {
            blue_green: Some(BlueGreen {
                auto_promotion_enabled: Some(false),
                ..BlueGreen::default()
            }),
            ..r
        }),
        ..v2
    };
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    let mut sim = Sim::healthy(&v1);
    sim.step(&v2, &both[..1], at(100));
    sim.step(&v2, &both, at(110));
    let active = active_analysis(&v2, &sim.status);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].metrics[0].name, "errors");
    set_metric(&mut sim, "errors", None, "Failed");
    let d = sim.step(&v2, &both, at(120));
    assert_eq!(reasons(&d), vec!["AnalysisFailed"]);
    assert!(sim.canary().aborted_at.is_some());
}

#[test]
fn the_progress_deadline_covers_the_preview_becoming_available() {
    let v1 = bg_spec("v1", BlueGreen::default());
    let v2 = bg_spec("v2", BlueGreen::default());
    let mut sim = Sim::healthy(&v1);
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 3, "canary")];
    sim.step(&v2, &both[..1], at(100));
    let d = sim.step(&v2, &both, at(219));
    assert!(d.events.is_empty());
    let d = sim.step(&v2, &both, at(220));
    assert_eq!(reasons(&d), vec!["ProgressDeadlineExceeded"]);
    assert!(d.events[0].message.contains("3/4 ready"), "{:?}", d.events);
    assert!(sim.canary().aborted_at.is_some());
}

#[test]
fn abort_retry_promote_full_and_supersede_work_at_any_stage() {
    let bg = BlueGreen {
        auto_promotion_enabled: Some(false),
        post_promotion_analysis: names(&["ndcg"]),
        ..BlueGreen::default()
    };
    let v1 = bg_spec("v1", bg.clone());
    let v2 = bg_spec("v2", bg.clone());
    let v3 = bg_spec("v3", bg);
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    let mut sim = Sim::healthy(&v1);
    sim.step(&v2, &both[..1], at(100));
    sim.requests.abort = Some("a1".into());
    let d = sim.step(&v2, &both[..1], at(101));
    assert_eq!(reasons(&d), vec!["RolloutAborted"]);
    assert_eq!(sim.status.phase, Some(Phase::Degraded));

    sim.requests.retry = Some("r1".into());
    let d = sim.step(&v2, &both, at(102));
    assert_eq!(reasons(&d), vec!["Retrying", "PreviewReady", "Paused"]);
    assert_eq!(sim.canary().strategy.as_deref(), Some(STRATEGY));

    // promote-full skips the post-promotion analysis.
    sim.requests.promote_full = Some("f1".into());
    let d = sim.step(&v2, &both, at(103));
    assert_eq!(
        reasons(&d),
        vec!["PromotingFully", "TrafficSwitched", "Promoted"]
    );

    // A newer revision supersedes a preview under way.
    sim.step(&v3, &[dep(&v2, 4, 4, "stable")], at(200));
    let d = sim.step(
        &bg_spec("v4", BlueGreen::default()),
        &[dep(&v2, 4, 4, "stable")],
        at(201),
    );
    assert_eq!(reasons(&d), vec!["Superseded", "BlueGreenStarted"]);
    assert_eq!(sim.status.history[0].outcome, "Superseded");
    assert_eq!(d.outcomes[0].outcome, "superseded");
}

#[test]
fn a_router_gets_all_or_nothing_and_no_header_route() {
    let routing = Some(TrafficRouting {
        gateway_api: Some(GatewayApiRouting {
            http_route: "route".into(),
        }),
        ..TrafficRouting::default()
    });
    let mut v1 = bg_spec("v1", analysed(&[], &["ndcg"]));
    v1.rollout.as_mut().unwrap().traffic_routing = routing.clone();
    let mut v2 = bg_spec("v2", analysed(&[], &["ndcg"]));
    v2.rollout.as_mut().unwrap().traffic_routing = routing;
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    let mut sim = Sim::healthy(&v1);
    let d = sim.step(&v2, &both[..1], at(100));
    assert_eq!(d.canary_weight, 0);
    assert_eq!(d.apply[0].replicas, Some(4), "full size with a router too");
    let d = sim.step(&v2, &both, at(110));
    assert_eq!(d.canary_weight, 100);
    assert_eq!(d.header_route, None);
    set_stage_metric(&mut sim, "ndcg", "PostPromotion", "Failed");
    let d = sim.step(&v2, &both, at(120));
    assert_eq!(d.canary_weight, 0, "switched back");
}

#[test]
fn the_state_lives_in_status_a_restart_resumes_where_it_was() {
    let v1 = bg_spec("v1", analysed(&["ndcg"], &["ndcg"]));
    let v2 = bg_spec("v2", analysed(&["ndcg"], &["ndcg"]));
    let both = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    let mut sim = Sim::healthy(&v1);
    sim.step(&v2, &both[..1], at(100));
    sim.step(&v2, &both, at(110));
    set_stage_metric(&mut sim, "ndcg", "PrePromotion", "Successful");
    sim.step(&v2, &both, at(120));
    // A new operator reads the status back from the API server.
    let json = serde_json::to_string(&sim.status).unwrap();
    let mut restarted = Sim::healthy(&v1);
    restarted.status = serde_json::from_str(&json).unwrap();
    let again = restarted.step(&v2, &both, at(121));
    let carried_on = sim.step(&v2, &both, at(121));
    assert_eq!(again, carried_on);
    assert!(
        again.events.is_empty(),
        "nothing is repeated: {:?}",
        again.events
    );
    assert!(again.services.switched);
}

#[test]
fn stage_metrics_are_keyed_by_stage_not_step() {
    let v2 = bg_spec("v2", analysed(&["ndcg"], &["ndcg"]));
    let metric = super::canary::find_metric(&v2, "ndcg").unwrap();
    let mut statuses = Vec::new();
    let due = crate::analysis::due(&[metric], Some(PRE_PROMOTION_STEP), &mut statuses, at(0));
    assert_eq!(due.len(), 1);
    assert_eq!(statuses[0].step, None);
    assert_eq!(statuses[0].stage.as_deref(), Some("PrePromotion"));
    // The post-promotion run of the same metric is a separate record.
    crate::analysis::due(&[metric], Some(POST_PROMOTION_STEP), &mut statuses, at(0));
    crate::analysis::due(&[metric], None, &mut statuses, at(0));
    assert_eq!(statuses.len(), 3);
    assert_eq!(statuses[1].stage.as_deref(), Some("PostPromotion"));
    assert_eq!(statuses[2].stage, None);
}

#[test]
fn after_the_switch_the_autoscaler_follows_the_traffic() {
    let autoscaled = |version: &str| {
        let mut s = bg_spec(version, analysed(&[], &["ndcg"]));
        s.replicas = None;
        s.autoscaling = Some(mlctl_crds::rankingmodel::Autoscaling {
            min_replicas: Some(2),
            max_replicas: 10,
            ..Default::default()
        });
        s
    };
    let (v1, v2) = (autoscaled("v1"), autoscaled("v2"));
    let mut sim = Sim::healthy(&v1);
    // The stable was scaled out to 6 by its autoscaler: the preview matches.
    let stable = dep(&v1, 6, 6, "stable");
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(d.apply[0].initial_replicas, Some(6));
    assert_eq!(d.autoscaler_target, Some(stable.name.clone()));
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 6, 6, "canary")], at(110));
    assert!(d.services.switched);
    let preview = deployment_name("r", &revision_of(&v2));
    assert_eq!(d.autoscaler_target, Some(preview.clone()));
    // The autoscaler now sizes the new revision; the operator leaves it.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(111));
    assert_eq!(d.apply[0].initial_replicas, Some(4));
    // A failed post-promotion analysis hands the autoscaler back.
    set_stage_metric(&mut sim, "ndcg", "PostPromotion", "Failed");
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(112));
    assert_eq!(d.autoscaler_target, Some(stable.name.clone()));
}
