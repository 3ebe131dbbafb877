use super::*;
use mlctl_crds::rankingmodel::{MetricProvider, PrometheusProvider};

type Measured = Result<Option<f64>, String>;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn metric(success: Option<&str>, failure: Option<&str>) -> AnalysisMetric {
    AnalysisMetric {
        name: "error-rate".into(),
        provider: MetricProvider {
            prometheus: Some(PrometheusProvider {
                address: "http://prometheus:9090".into(),
                query: "sum(rate(errors[1m]))".into(),
                timeout: None,
                ..PrometheusProvider::default()
            }),
            web: None,
            job: None,
        },
        success_condition: success.map(Into::into),
        failure_condition: failure.map(Into::into),
        ..AnalysisMetric::default()
    }
}

fn running(started: i64) -> MetricStatus {
    MetricStatus {
        name: "error-rate".into(),
        phase: "Running".into(),
        started_at: Some(Time(at(started))),
        ..MetricStatus::default()
    }
}

fn classify_one(
    m: &AnalysisMetric,
    result: Result<Option<f64>, String>,
) -> (Outcome, MetricStatus) {
    let mut s = running(0);
    let outcome = record(m, &mut s, true, result, at(1));
    (outcome, s)
}

#[test]
fn classification_table() {
    let both = metric(Some("result < 0.05"), Some("result > 0.1"));
    let success_only = metric(Some("result < 0.05"), None);
    let failure_only = metric(None, Some("result > 0.1"));
    let broken_syntax = metric(Some("result <"), None);
    let not_boolean = metric(None, Some("result + 1"));
    let no_condition = metric(None, None);
    let table: Vec<(&AnalysisMetric, Measured, Outcome)> = vec![
        (&both, Ok(Some(0.01)), Outcome::Successful),
        (&both, Ok(Some(0.2)), Outcome::Failed),
        (&both, Ok(Some(0.07)), Outcome::Inconclusive),
        (&success_only, Ok(Some(0.01)), Outcome::Successful),
        (&success_only, Ok(Some(0.07)), Outcome::Failed),
        (&failure_only, Ok(Some(0.07)), Outcome::Successful),
        (&failure_only, Ok(Some(0.2)), Outcome::Failed),
        (&both, Ok(None), Outcome::Inconclusive),
        (&success_only, Ok(Some(f64::NAN)), Outcome::Inconclusive),
        (&failure_only, Ok(Some(f64::NAN)), Outcome::Inconclusive),
        (
            &failure_only,
            Ok(Some(f64::INFINITY)),
            Outcome::Inconclusive,
        ),
        (
            &success_only,
            Ok(Some(f64::NEG_INFINITY)),
            Outcome::Inconclusive,
        ),
        (
            &both,
            Err("prometheus http://p: cannot connect".into()),
            Outcome::Error,
        ),
        (&broken_syntax, Ok(Some(1.0)), Outcome::Error),
        (&not_boolean, Ok(Some(1.0)), Outcome::Error),
        (&no_condition, Ok(Some(1.0)), Outcome::Error),
    ];
    for (m, result, want) in table {
        let shown = format!("{result:?}");
        let (got, s) = classify_one(m, result);
        assert_eq!(
            got, want,
            "{shown} with {:?}/{:?}",
            m.success_condition, m.failure_condition
        );
        assert_eq!(s.measurements.len(), 1);
        assert_eq!(s.measurements[0].outcome, want.as_str());
    }
}

#[test]
fn failed_message_names_metric_value_condition_and_limit() {
    let mut m = metric(None, Some("result > 0.05"));
    m.failure_limit = Some(1);
    let mut s = running(0);
    record(&m, &mut s, true, Ok(Some(0.12)), at(60));
    assert_eq!(Verdict::of(&s), Verdict::Running);
    assert_eq!(s.consecutive_failures, 1);
    record(&m, &mut s, true, Ok(Some(0.12)), at(120));
    assert_eq!(Verdict::of(&s), Verdict::Failed);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "metric error-rate: result 0.12 broke failureCondition \"result > 0.05\" \
             (2 failed > failureLimit 1)"
        )
    );
    assert_eq!(s.measurements[1].value.as_deref(), Some("0.12"));
    assert_eq!(
        s.measurements[1].message.as_deref(),
        Some("result 0.12 broke failureCondition \"result > 0.05\"")
    );
}

#[test]
fn a_final_verdict_never_changes() {
    let m = metric(Some("result < 1"), None);
    let mut s = running(0);
    assert_eq!(
        record(&m, &mut s, true, Ok(Some(5.0)), at(1)),
        Outcome::Failed
    );
    assert_eq!(Verdict::of(&s), Verdict::Failed);
    let before = s.clone();
    assert_eq!(
        record(&m, &mut s, true, Ok(Some(0.0)), at(2)),
        Outcome::Successful
    );
    assert_eq!(s, before, "record on a final status is a no-op");
    assert_eq!(next_due(&m, &s, true), None);
}

#[test]
fn errors_count_consecutively_up_to_the_limit() {
    let m = metric(Some("result < 1"), None);
    let mut s = running(0);
    for i in 0..4 {
        record(&m, &mut s, true, Err(format!("boom {i}")), at(i));
        assert_eq!(Verdict::of(&s), Verdict::Running, "after {} errors", i + 1);
    }
    // A success resets the streak.
    record(&m, &mut s, true, Ok(Some(0.5)), at(10));
    assert_eq!(s.consecutive_errors, 0);
    assert_eq!(s.errors, 4);
    for i in 0..5 {
        record(&m, &mut s, true, Err(format!("boom {i}")), at(20 + i));
    }
    assert_eq!(Verdict::of(&s), Verdict::Error);
    assert_eq!(
        s.message.as_deref(),
        Some("metric error-rate: boom 4 (5 consecutive errors > consecutiveErrorLimit 4)")
    );

    let mut strict = m.clone();
    strict.consecutive_error_limit = Some(0);
    let mut s = running(0);
    record(&strict, &mut s, true, Err("down".into()), at(1));
    assert_eq!(Verdict::of(&s), Verdict::Error);
}

#[test]
fn consecutive_failure_limit() {
    let mut m = metric(Some("result < 1"), None);
    m.failure_limit = Some(10);
    m.consecutive_failure_limit = Some(1);
    let mut s = running(0);
    record(&m, &mut s, true, Ok(Some(2.0)), at(1));
    record(&m, &mut s, true, Ok(Some(0.0)), at(2));
    assert_eq!(s.consecutive_failures, 0, "a success resets the streak");
    record(&m, &mut s, true, Ok(Some(2.0)), at(3));
    assert_eq!(Verdict::of(&s), Verdict::Running);
    record(&m, &mut s, true, Ok(Some(3.0)), at(4));
    assert_eq!(Verdict::of(&s), Verdict::Failed);
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .ends_with("(2 consecutive failed > consecutiveFailureLimit 1)"),
        "{:?}",
        s.message
    );
}

#[test]
fn inconclusive_limit_and_no_data_message() {
    let mut m = metric(Some("result < 1"), None);
    m.inconclusive_limit = Some(1);
    let mut s = running(0);
    record(&m, &mut s, true, Ok(None), at(1));
    assert_eq!(Verdict::of(&s), Verdict::Running);
    record(&m, &mut s, true, Ok(Some(f64::NAN)), at(2));
    assert_eq!(Verdict::of(&s), Verdict::Inconclusive);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "metric error-rate: result NaN is not a finite number \
             (2 inconclusive > inconclusiveLimit 1)"
        )
    );
    assert_eq!(s.measurements[0].message.as_deref(), Some("no data"));
    assert_eq!(s.measurements[1].value.as_deref(), Some("NaN"));
}

#[test]
fn count_decides_success_for_steps_and_not_for_background() {
    let m = metric(Some("result < 1"), None);
    // A step analysis takes one measurement by default.
    let mut s = running(0);
    record(&m, &mut s, false, Ok(Some(0.5)), at(1));
    assert_eq!(Verdict::of(&s), Verdict::Successful);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "metric error-rate: 1 of 1 measurements taken: 1 successful, 0 failed, \
             0 inconclusive, 0 errors"
        )
    );
    assert_eq!(next_due(&m, &s, false), None);
    // Background analysis runs until the canary ends.
    let mut s = running(0);
    for i in 0..20 {
        record(&m, &mut s, true, Ok(Some(0.5)), at(i * 60));
    }
    assert_eq!(Verdict::of(&s), Verdict::Running);
    assert_eq!(s.successful, 20);
    assert_eq!(s.measurements.len(), MEASUREMENTS_KEPT);
    assert_eq!(s.measurements.last().unwrap().at, Time(at(19 * 60)));
    assert_eq!(
        s.measurements[0].at,
        Time(at(10 * 60)),
        "oldest dropped first"
    );
    // Errors do not count towards `count`.
    let mut m3 = m.clone();
    m3.count = Some(2);
    let mut s = running(0);
    record(&m3, &mut s, false, Ok(Some(0.5)), at(1));
    record(&m3, &mut s, false, Err("x".into()), at(2));
    assert_eq!(Verdict::of(&s), Verdict::Running);
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("1 measurements of 2 taken")
    );
    record(&m3, &mut s, false, Ok(Some(0.5)), at(3));
    assert_eq!(Verdict::of(&s), Verdict::Successful);
}

#[test]
fn failure_wins_over_count() {
    let mut m = metric(Some("result < 1"), None);
    m.count = Some(1);
    let mut s = running(0);
    record(&m, &mut s, false, Ok(Some(2.0)), at(1));
    assert_eq!(Verdict::of(&s), Verdict::Failed);
}

#[test]
fn schedule() {
    let mut m = metric(Some("result < 1"), None);
    let s = running(100);
    assert_eq!(
        next_due(&m, &s, true),
        Some(at(100)),
        "no initialDelay: at once"
    );
    m.initial_delay = Some("30s".into());
    m.interval = Some("5m".into());
    assert_eq!(next_due(&m, &s, true), Some(at(130)));
    let mut s = s;
    record(&m, &mut s, true, Ok(Some(0.0)), at(131));
    assert_eq!(next_due(&m, &s, true), Some(at(131 + 300)));
    m.interval = None;
    assert_eq!(
        next_due(&m, &s, true),
        Some(at(131 + 60)),
        "default interval 1m"
    );
    // Without startedAt the first measurement is due at once.
    let fresh = MetricStatus {
        started_at: None,
        ..running(0)
    };
    assert!(next_due(&m, &fresh, true).is_some_and(|t| t <= at(0)));
    // Unknown phase counts as Running.
    let odd = MetricStatus {
        phase: String::new(),
        ..running(0)
    };
    assert_eq!(Verdict::of(&odd), Verdict::Running);
    assert!(next_due(&m, &odd, true).is_some());
}

#[test]
fn values_are_formatted_compactly() {
    let table = [
        (0.0123, "0.0123"),
        (12.0, "12"),
        (-3.5, "-3.5"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (1e-9, "1e-9"),
        (1.5e21, "1.5e21"),
        (123456.789, "123456.789"),
    ];
    for (v, want) in table {
        assert_eq!(format_value(v), want);
    }
}

#[test]
fn verdict_and_outcome_names_round_trip() {
    for v in [
        Verdict::Running,
        Verdict::Successful,
        Verdict::Failed,
        Verdict::Inconclusive,
        Verdict::Error,
    ] {
        let s = MetricStatus {
            phase: v.as_str().into(),
            ..MetricStatus::default()
        };
        assert_eq!(Verdict::of(&s), v);
    }
    assert_eq!(Outcome::Inconclusive.as_str(), "Inconclusive");
}

#[test]
fn condition_errors_are_explained() {
    let m = metric(Some("result = 1"), None);
    let (_, s) = classify_one(&m, Ok(Some(1.0)));
    assert_eq!(
        s.measurements[0].message.as_deref(),
        Some(
            "successCondition \"result = 1\" cannot be evaluated: at position 8: \
             `=` is not an operator; compare with `==`"
        )
    );
}

#[test]
fn due_measurements_are_recorded_and_the_wake_is_the_next_one() {
    let mut fast = metric(Some("result < 0.05"), None);
    fast.interval = Some("30s".into());
    let mut late = fast.clone();
    late.name = "late".into();
    late.initial_delay = Some("5m".into());
    // A background status of the same name must not be mistaken for the step's.
    let mut statuses = vec![running(0)];
    let metrics = [&fast, &late];
    let nothing_in_flight = |_: &str, _| false;

    let first = due(&metrics, Some(2), &mut statuses, at(100));
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].0.name.as_str(), first[0].1),
        ("error-rate", at(100))
    );
    assert_eq!(statuses.len(), 3, "one new status per metric of step 2");
    let step = &statuses[1];
    assert_eq!((step.name.as_str(), step.step), ("error-rate", Some(2)));
    assert_eq!(step.started_at, Some(Time(at(100))));
    // While it is being measured, it is not a reason to wake.
    let in_flight = |name: &str, due_at| name == "error-rate" && due_at == at(100);
    assert_eq!(
        next_wake(&metrics, Some(2), &statuses, in_flight),
        Some(at(400))
    );

    let outcome = record_in(&fast, Some(2), &mut statuses, Ok(Some(0.01)), at(101));
    assert_eq!(outcome, Some(Outcome::Successful));
    assert_eq!(
        statuses[0].measurements.len(),
        0,
        "the background status is untouched"
    );
    // A step analysis takes one measurement by default: done.
    assert_eq!(Verdict::of(&statuses[1]), Verdict::Successful);
    assert_eq!(statuses[1].measurements[0].value.as_deref(), Some("0.01"));
    assert_eq!(statuses[1].measurements[0].at, Time(at(101)));
    assert_eq!(Verdict::of(&statuses[2]), Verdict::Running);
    assert_eq!(
        next_wake(&metrics, Some(2), &statuses, nothing_in_flight),
        Some(at(400)),
        "the late metric's initialDelay"
    );

    assert!(due(&metrics, Some(2), &mut statuses, at(399)).is_empty());
    let late_due = due(&metrics, Some(2), &mut statuses, at(400));
    assert_eq!(
        (late_due[0].0.name.as_str(), late_due[0].1),
        ("late", at(400))
    );
    record_in(&late, Some(2), &mut statuses, Ok(Some(0.0)), at(400));
    assert_eq!(
        next_wake(&metrics, Some(2), &statuses, nothing_in_flight),
        None,
        "nothing more to measure"
    );
    assert_eq!(
        record_in(&late, None, &mut statuses, Ok(None), at(400)),
        None,
        "no such status"
    );

    // Background: unlimited count, next one an interval after the last.
    let mut background = Vec::new();
    assert_eq!(due(&[&fast], None, &mut background, at(0)).len(), 1);
    record_in(&fast, None, &mut background, Ok(Some(0.01)), at(2));
    assert_eq!(
        next_wake(&[&fast], None, &background, nothing_in_flight),
        Some(at(32))
    );
    assert_eq!(Verdict::of(&background[0]), Verdict::Running);
}
