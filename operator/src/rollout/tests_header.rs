//! setHeaderRoute steps in the state machine: done once the canary has a
//! Ready pod (one is kept for it at any weight), in force from then until
//! a later step replaces or removes it or the rollout ends (promotion,
//! abort, a newer version).

use super::tests_canary::{Sim, at, dep, spec, weight};
use super::*;
use mlctl_crds::rankingmodel::{
    GatewayApiRouting, HeaderMatch, HeaderRouteStep, PauseStep, RolloutStep, TrafficRouting,
};

fn header_step(matches: &[HeaderMatch]) -> RolloutStep {
    RolloutStep {
        set_header_route: Some(HeaderRouteStep {
            match_: matches.to_vec(),
        }),
        ..RolloutStep::default()
    }
}

/// `pause: {}`: waits for a promote request.
fn pause_step() -> RolloutStep {
    RolloutStep {
        pause: Some(PauseStep { duration: None }),
        ..RolloutStep::default()
    }
}

fn exact(value: &str) -> HeaderMatch {
    HeaderMatch {
        name: "x-ranker".into(),
        exact: Some(value.into()),
        regex: None,
    }
}

/// A routed model (the schema requires a router for header routes).
fn routed(version: &str, steps: Vec<RolloutStep>) -> RankingModelSpec {
    let mut s = spec(version, steps);
    if let Some(r) = s.rollout.as_mut() {
        r.traffic_routing = Some(TrafficRouting {
            gateway_api: Some(GatewayApiRouting {
                http_route: "r".into(),
            }),
            ..TrafficRouting::default()
        });
        // Background analysis is not the point here.
        r.analysis = None;
    }
    s
}

fn steps() -> Vec<RolloutStep> {
    vec![
        header_step(&[exact("canary")]),
        pause_step(),
        weight(50),
        header_step(&[exact("beta")]),
        pause_step(),
        header_step(&[]),
        pause_step(),
    ]
}

fn canary_at(step_index: i32) -> CanaryRevision {
    CanaryRevision {
        step_index,
        ..CanaryRevision::default()
    }
}

#[test]
fn header_route_is_the_last_completed_header_step() {
    let s = routed("v2", steps());
    let route = |i: i32| header_route(&s, Some(&canary_at(i)));
    // Step 0 is current, not done: nothing yet.
    assert_eq!(route(0), None);
    for i in 1..=3 {
        assert_eq!(route(i), Some(vec![exact("canary")]), "step {i}");
    }
    assert_eq!(route(4), Some(vec![exact("beta")]));
    assert_eq!(route(5), Some(vec![exact("beta")]));
    // `match: []` removes it, to the end.
    assert_eq!(route(6), None);
    assert_eq!(route(7), None);
    // Without the removal it lasts until the canary is stable.
    let kept = routed("v2", steps()[..5].to_vec());
    assert_eq!(
        header_route(&kept, Some(&canary_at(5))),
        Some(vec![exact("beta")])
    );
    // No canary, an aborted one, a blue-green one: none.
    assert_eq!(header_route(&s, None), None);
    let aborted = CanaryRevision {
        aborted_at: Some(Time(at(0))),
        ..canary_at(3)
    };
    assert_eq!(header_route(&s, Some(&aborted)), None);
    let blue_green = CanaryRevision {
        strategy: Some("BlueGreen".into()),
        ..canary_at(3)
    };
    assert_eq!(header_route(&s, Some(&blue_green)), None);
}

#[test]
fn a_header_step_waits_for_a_ready_canary_pod_then_routes_until_promotion() {
    let v1 = routed("v1", steps());
    let v2 = routed("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");

    // The canary starts at weight 0 with one pod for the header route; the
    // route waits for it.
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(d.apply[0].replicas, Some(1));
    assert_eq!(sim.canary().step_index, 0);
    assert_eq!(d.header_route, None, "no Ready canary pod yet");
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 0, "canary")], at(105));
    assert_eq!(d.header_route, None);
    assert!(d.steps_completed.is_empty());

    // Ready: the step is done at once and the next one (a pause) holds.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(110));
    assert_eq!(d.steps_completed, vec![("setHeaderRoute", 10.0)]);
    assert_eq!(d.header_route, Some(vec![exact("canary")]));
    assert_eq!(d.canary_weight, 0, "the weight does not move");
    assert_eq!(sim.canary().step_index, 1);
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert_eq!(d.apply[0].replicas, Some(1), "the pod stays at weight 0");
    let message = &d
        .events
        .iter()
        .find(|e| e.reason == "StepCompleted")
        .unwrap()
        .message;
    assert!(
        message.contains("step 1/7 (setHeaderRoute x-ranker: canary) done"),
        "{message}"
    );

    // Promoted: setWeight 50 scales the canary; the route stays meanwhile.
    sim.requests.promote = Some("t1".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(120));
    assert_eq!(d.apply[0].replicas, Some(2));
    assert_eq!(d.header_route, Some(vec![exact("canary")]));
    // Ready at 50%: the next header step replaces the conditions at once
    // (the canary already has Ready pods), then the pause holds.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(130));
    assert_eq!(d.canary_weight, 50);
    assert_eq!(sim.canary().step_index, 4);
    assert_eq!(d.header_route, Some(vec![exact("beta")]));
    assert_eq!(
        d.steps_completed,
        vec![("setWeight", 10.0), ("setHeaderRoute", 0.0)]
    );

    // `match: []` removes it; the canary keeps its weight.
    sim.requests.promote = Some("t2".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(140));
    assert_eq!(sim.canary().step_index, 6);
    assert_eq!(d.header_route, None);
    assert_eq!(d.canary_weight, 50);

    // Promotion: no header route once the canary is stable.
    sim.requests.promote = Some("t3".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 2, 2, "canary")], at(150));
    assert_eq!(d.apply[0].replicas, Some(4));
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 4, 4, "canary")], at(160));
    assert!(sim.status.canary.is_none());
    assert_eq!(d.header_route, None);
}

#[test]
fn an_abort_or_a_newer_version_ends_the_header_route() {
    let v1 = routed("v1", steps());
    let v2 = routed("v2", steps());
    let v3 = routed("v3", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    sim.step(&v2, std::slice::from_ref(&stable), at(100));
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(110));
    assert_eq!(d.header_route, Some(vec![exact("canary")]));

    // A newer version supersedes the canary: it starts over from step 0,
    // whose header route is not done yet.
    let mut other = Sim {
        status: sim.status.clone(),
        requests: Requests::default(),
        features: None,
    };
    let d = other.step(&v3, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(120));
    assert_eq!(other.canary().version, "v3");
    assert_eq!(d.header_route, None);

    // An abort drops it in the same decision as the weight.
    sim.requests.abort = Some("t".into());
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 1, "canary")], at(120));
    assert!(sim.canary().aborted_at.is_some());
    assert_eq!(d.header_route, None);
    assert_eq!(d.canary_weight, 0);
}

#[test]
fn a_canary_pod_that_never_gets_ready_hits_the_progress_deadline() {
    let v1 = routed("v1", steps());
    let v2 = routed("v2", steps());
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");
    sim.step(&v2, std::slice::from_ref(&stable), at(100));
    // progressDeadlineSeconds is 120 in these specs.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 0, "canary")], at(221));
    assert!(sim.canary().aborted_at.is_some(), "{:?}", d.events);
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == "ProgressDeadlineExceeded")
    );
    assert_eq!(d.header_route, None);
}
