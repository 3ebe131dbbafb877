//! Shadow and interleave steps in the state machine: the canary takes no
//! user traffic, the stable pods are told to compare, and interleaving ends
//! in a sign-test verdict.

use super::compare::{self, INTERLEAVE, SHADOW, sign_test_p};
use super::tests_canary::{Sim, at, dep, reasons, spec, weight};
use super::*;
use mlctl_crds::rankingmodel::{
    InterleaveCounts, InterleavePrometheus, InterleaveStep, InterleaveUntil, NoPreference,
    RolloutStep, ShadowStep,
};

fn shadow(duration: &str, sample: i32) -> RolloutStep {
    RolloutStep {
        shadow: Some(ShadowStep {
            duration: duration.into(),
            sample: Some(sample),
            k: None,
        }),
        ..RolloutStep::default()
    }
}

fn interleave(queries: i64, on_no_preference: Option<NoPreference>) -> RolloutStep {
    RolloutStep {
        interleave: Some(InterleaveStep {
            sample: Some(10),
            until: InterleaveUntil {
                queries: Some(queries),
                duration: None,
            },
            alpha: Some("0.05".into()),
            on_no_preference,
            prometheus: InterleavePrometheus {
                address: "http://127.0.0.1:9090".into(),
                ..InterleavePrometheus::default()
            },
        }),
        ..RolloutStep::default()
    }
}

fn counts(canary: i64, stable: i64, ties: i64) -> Result<InterleaveCounts, String> {
    Ok(InterleaveCounts {
        canary,
        stable,
        ties,
    })
}

#[test]
fn sign_test_matches_the_binomial_tail() {
    assert_eq!(sign_test_p(0, 0), 1.0);
    assert_eq!(sign_test_p(5, 5), 1.0);
    // 10 of 10: 2 · 2^-10.
    assert!((sign_test_p(10, 0) - 2.0 / 1024.0).abs() < 1e-12);
    assert_eq!(sign_test_p(10, 0), sign_test_p(0, 10), "two-sided");
    // 15 against 5: 2 · (1+20+190+1140+4845+15504) / 2^20.
    assert!((sign_test_p(15, 5) - 2.0 * 21700.0 / 1_048_576.0).abs() < 1e-12);
    // Large counts stay finite and ordered.
    let p = sign_test_p(5_500, 4_500);
    assert!(p > 0.0 && p < 1e-20, "{p}");
    assert!(sign_test_p(50_000, 50_010) > 0.9);
}

#[test]
fn a_shadow_step_compares_without_user_traffic_then_moves_on() {
    let v1 = spec("v1", vec![shadow("60s", 25), weight(50)]);
    let v2 = spec("v2", vec![shadow("60s", 25), weight(50)]);
    let mut sim = Sim::healthy(&v1);
    let stable = dep(&v1, 4, 4, "stable");

    // The canary gets pods for a quarter of the stable's load, no traffic.
    let d = sim.step(&v2, std::slice::from_ref(&stable), at(100));
    assert_eq!(d.apply[0].replicas, Some(1));
    assert_eq!(d.peer, None, "not before the canary is Ready");
    assert!(!d.services.split);
    assert_eq!(sim.canary().weight, 0);

    // Ready: the comparison starts, the stable pods are told, the canary
    // still takes no user traffic, and background analysis measures it.
    let observed = [stable.clone(), dep(&v2, 1, 1, "canary")];
    let d = sim.step(&v2, &observed, at(110));
    let plan = d.peer.expect("the stable pods compare");
    assert_eq!((plan.mode, plan.sample, plan.k), (SHADOW, 25, 10));
    assert!(!d.services.split, "<model> still selects stable only");
    assert_eq!(d.canary_weight, 0);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(61)));
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(cmp.started_at.as_ref().map(|t| t.0), Some(at(110)));
    assert_eq!(
        active_analysis(&v2, &sim.status).len(),
        1,
        "background metrics run"
    );

    // Before the end nothing changes; a pod restart does not stop it.
    let d = sim.step(&v2, &[stable.clone(), dep(&v2, 1, 0, "canary")], at(150));
    assert!(d.peer.is_some());
    assert_eq!(sim.canary().step_index, 0);

    // An abort request ends the comparison at once.
    let mut aborted = Sim {
        status: sim.status.clone(),
        requests: Requests {
            abort: Some("1".into()),
            ..Requests::default()
        },
        ..Sim::healthy(&v1)
    };
    let d = aborted.step(&v2, &observed, at(155));
    assert_eq!(d.peer, None);
    let cmp = compare::find(aborted.canary(), 0).unwrap();
    assert_eq!(cmp.ended_at.as_ref().map(|t| t.0), Some(at(155)));

    // After its duration: the comparison ends, setWeight 50 scales the canary.
    let d = sim.step(&v2, &observed, at(170));
    assert_eq!(d.peer, None);
    assert_eq!(sim.canary().step_index, 1);
    assert_eq!(
        d.steps_completed,
        vec![("shadow", 70.0)],
        "a step's time counts from its start, pod start-up included"
    );
    assert_eq!(d.apply[0].replicas, Some(4), "50% by replica ratio");
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(cmp.ended_at.as_ref().map(|t| t.0), Some(at(170)));
}

/// Walks an interleave step to its first reading and returns the sim.
fn interleaving(v2: &RankingModelSpec, v1: &RankingModelSpec) -> (Sim, Vec<ObservedDeployment>) {
    let mut sim = Sim::healthy(v1);
    let observed = vec![dep(v1, 4, 4, "stable"), dep(v2, 1, 1, "canary")];
    sim.step(v2, &observed[..1], at(100));
    // Ready, but the baseline is not read yet: nothing is interleaved.
    let d = sim.step(v2, &observed, at(110));
    assert_eq!(d.peer, None, "no interleaving before the baseline");
    assert_eq!(
        compare::due_interleave(v2, &sim.status).map(|x| x.0),
        Some(0)
    );
    compare::record_reading(&mut sim.status, 0, counts(7, 3, 1), at(111));
    let d = sim.step(v2, &observed, at(111));
    let plan = d.peer.expect("interleaving starts after the baseline");
    assert_eq!((plan.mode, plan.sample), (INTERLEAVE, 10));
    assert!(
        d.requeue_after <= Some(Duration::from_secs(11)),
        "the counters are read again"
    );
    (sim, observed)
}

#[test]
fn interleaving_promotes_a_preferred_canary_at_its_budget() {
    let v1 = spec("v1", vec![interleave(100, None), weight(50)]);
    let v2 = spec("v2", vec![interleave(100, None), weight(50)]);
    let (mut sim, observed) = interleaving(&v2, &v1);

    // 50 judged since the baseline: below the budget, no verdict yet.
    compare::record_reading(&mut sim.status, 0, counts(42, 8, 11), at(120));
    let d = sim.step(&v2, &observed, at(120));
    assert!(d.peer.is_some());
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(
        cmp.counts,
        Some(InterleaveCounts {
            canary: 35,
            stable: 5,
            ties: 10
        })
    );
    assert_eq!(cmp.verdict, None);

    // 100 judged: the sign test decides once.
    compare::record_reading(&mut sim.status, 0, counts(77, 13, 21), at(130));
    let d = sim.step(&v2, &observed, at(130));
    assert_eq!(d.peer, None);
    assert_eq!(sim.canary().step_index, 1);
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(cmp.verdict.as_deref(), Some("CanaryPreferred"));
    assert_eq!(cmp.p_value.as_deref(), Some("0.0000"));
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == "StepCompleted" && e.message.contains("canary preferred")),
        "{:?}",
        d.events
    );
    assert_eq!(compare::due_interleave(&v2, &sim.status), None);

    // Promoted: status.canary goes, the history entry keeps the verdict.
    let full = [dep(&v1, 4, 4, "stable"), dep(&v2, 4, 4, "canary")];
    sim.step(&v2, &full, at(140));
    sim.step(&v2, &full, at(150));
    assert_eq!(sim.status.canary, None);
    let h = &sim.status.history[0];
    assert_eq!(h.outcome, "Promoted");
    assert_eq!(
        h.comparisons.first().and_then(|x| x.verdict.as_deref()),
        Some("CanaryPreferred")
    );
}

#[test]
fn interleaving_aborts_when_users_prefer_the_stable() {
    let v1 = spec("v1", vec![interleave(40, None), weight(50)]);
    let v2 = spec("v2", vec![interleave(40, None), weight(50)]);
    let (mut sim, observed) = interleaving(&v2, &v1);
    compare::record_reading(&mut sim.status, 0, counts(12, 43, 1), at(125));
    let d = sim.step(&v2, &observed, at(125));
    assert_eq!(reasons(&d), vec!["InterleavingLost"]);
    assert!(sim.canary().aborted_at.is_some());
    assert!(
        sim.canary()
            .abort_reason
            .as_deref()
            .is_some_and(|r| r.contains("preferred the stable") && r.contains("stable won 40")),
        "{:?}",
        sim.canary().abort_reason
    );
    assert_eq!(d.peer, None);
    assert_eq!(sim.canary().weight, 0);
    assert_eq!(sim.status.history[0].outcome, "Aborted");
    assert_eq!(
        sim.status.history[0].comparisons[0].verdict.as_deref(),
        Some("StablePreferred")
    );
}

#[test]
fn interleaving_without_a_preference_pauses_continues_or_aborts_as_asked() {
    // Default: pause; a promote request accepts it.
    let v1 = spec("v1", vec![interleave(40, None), weight(50)]);
    let v2 = spec("v2", vec![interleave(40, None), weight(50)]);
    let (mut sim, observed) = interleaving(&v2, &v1);
    compare::record_reading(&mut sim.status, 0, counts(27, 23, 6), at(125));
    let d = sim.step(&v2, &observed, at(125));
    assert_eq!(reasons(&d), vec!["InterleavingInconclusive"]);
    assert_eq!(sim.status.phase, Some(Phase::Paused));
    assert_eq!(
        sim.canary().pause_reason.as_deref(),
        Some(pause::INCONCLUSIVE)
    );
    assert_eq!(
        compare::find(sim.canary(), 0).unwrap().verdict.as_deref(),
        Some("NoPreference")
    );
    assert_eq!(
        d.apply[0].replicas,
        Some(1),
        "the canary's pods stay for a person to look"
    );
    sim.requests = Requests {
        promote: Some("1".into()),
        ..Requests::default()
    };
    sim.step(&v2, &observed, at(130));
    assert_eq!(sim.canary().step_index, 1);
    assert_eq!(sim.canary().pause_reason, None);

    // Continue and Abort.
    for (choice, expect_abort) in [(NoPreference::Continue, false), (NoPreference::Abort, true)] {
        let v1 = spec("v1", vec![interleave(40, Some(choice)), weight(50)]);
        let v2 = spec("v2", vec![interleave(40, Some(choice)), weight(50)]);
        let (mut sim, observed) = interleaving(&v2, &v1);
        compare::record_reading(&mut sim.status, 0, counts(27, 23, 6), at(125));
        sim.step(&v2, &observed, at(125));
        assert_eq!(
            sim.canary().aborted_at.is_some(),
            expect_abort,
            "{choice:?}"
        );
        if !expect_abort {
            assert_eq!(sim.canary().step_index, 1);
        }
    }
}

#[test]
fn an_interleave_step_whose_counters_cannot_be_read_aborts_at_the_progress_deadline() {
    let v1 = spec("v1", vec![interleave(100, None), weight(50)]);
    let v2 = spec("v2", vec![interleave(100, None), weight(50)]);
    let mut sim = Sim::healthy(&v1);
    let observed = vec![dep(&v1, 4, 4, "stable"), dep(&v2, 1, 1, "canary")];
    sim.step(&v2, &observed[..1], at(100));
    sim.step(&v2, &observed, at(110));
    compare::record_reading(&mut sim.status, 0, Err("prometheus down".into()), at(111));
    // Within the deadline (120 s from the step's start) it keeps trying.
    let d = sim.step(&v2, &observed, at(200));
    assert_eq!(d.peer, None);
    assert!(sim.canary().aborted_at.is_none());
    let d = sim.step(&v2, &observed, at(221));
    assert_eq!(reasons(&d), vec!["ProgressDeadlineExceeded"]);
    let why = sim.canary().abort_reason.clone().unwrap_or_default();
    assert!(
        why.contains("did not start") && why.contains("prometheus down"),
        "{why}"
    );
}

#[test]
fn a_counter_reset_counts_from_zero_and_a_failed_read_keeps_the_counts() {
    let v1 = spec("v1", vec![interleave(1000, None)]);
    let v2 = spec("v2", vec![interleave(1000, None)]);
    let (mut sim, _) = interleaving(&v2, &v1);
    compare::record_reading(&mut sim.status, 0, counts(17, 8, 1), at(120));
    compare::record_reading(
        &mut sim.status,
        0,
        Err("connection refused".into()),
        at(130),
    );
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(
        cmp.counts,
        Some(InterleaveCounts {
            canary: 10,
            stable: 5,
            ties: 0
        })
    );
    assert!(
        cmp.message
            .as_deref()
            .is_some_and(|m| m.contains("connection refused"))
    );
    // A stable pod restarted: its counters start at zero again.
    compare::record_reading(&mut sim.status, 0, counts(2, 1, 0), at(140));
    let cmp = compare::find(sim.canary(), 0).unwrap();
    assert_eq!(
        cmp.counts,
        Some(InterleaveCounts {
            canary: 0,
            stable: 0,
            ties: 0
        })
    );
}
