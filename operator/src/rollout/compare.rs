//! Shadow and interleave steps: the canary takes no user traffic while the
//! stable pods compare it with themselves (docs/rollouts.md, "Comparing
//! rankings"). The state machine starts a comparison once the canary's pods
//! are Ready, tells the stable pods through [`PeerPlan`] (rendered into the
//! `<model>-peer` ConfigMap), and ends it by the step's clock (shadow) or by a
//! sign test on the interleaving outcome counts the reconciler reads from
//! Prometheus (interleave).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mlctl_crds::RankingModelSpec;
use mlctl_crds::rankingmodel::{
    CanaryRevision, ComparisonStatus, InterleaveCounts, InterleaveStep, NoPreference,
    RankingModelStatus, RolloutStep,
};

use super::time;

/// `mode` of a shadow comparison (status and `peer.json`).
pub const SHADOW: &str = "shadow";
/// `mode` of an interleave comparison.
pub const INTERLEAVE: &str = "interleave";
/// Default percent of requests compared.
pub const DEFAULT_SAMPLE: i32 = 10;
/// Default cut-off of the `@k` measures.
pub const DEFAULT_K: i32 = 10;
/// Default significance level of the sign test.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Bound on one shadow call to the canary (off the user's path).
pub const SHADOW_TIMEOUT_MS: i32 = 2000;
/// Bound on one interleave call to the canary (on the user's path).
pub const INTERLEAVE_TIMEOUT_MS: i32 = 500;
/// Seconds between readings of the interleaving counters.
pub const READ_INTERVAL: i64 = 10;

/// What the stable pods are told to do while a comparison runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPlan {
    /// [`SHADOW`] or [`INTERLEAVE`].
    pub mode: &'static str,
    /// Percent of `:rank` requests compared.
    pub sample: i32,
    /// Cut-off of the `@k` measures.
    pub k: i32,
    /// Bound on one call to the canary.
    pub timeout_ms: i32,
}

/// The sample percent of a comparison step; None for other steps.
pub fn sample(step: &RolloutStep) -> Option<i32> {
    if let Some(s) = &step.shadow {
        Some(s.sample.unwrap_or(DEFAULT_SAMPLE))
    } else {
        step.interleave
            .as_ref()
            .map(|i| i.sample.unwrap_or(DEFAULT_SAMPLE))
    }
}

/// The peer plan of a comparison step.
fn plan(step: &RolloutStep) -> Option<PeerPlan> {
    let sample = sample(step)?;
    Some(match &step.shadow {
        Some(s) => PeerPlan {
            mode: SHADOW,
            sample,
            k: s.k.unwrap_or(DEFAULT_K),
            timeout_ms: SHADOW_TIMEOUT_MS,
        },
        None => PeerPlan {
            mode: INTERLEAVE,
            sample,
            k: DEFAULT_K,
            timeout_ms: INTERLEAVE_TIMEOUT_MS,
        },
    })
}

/// The comparison of step `i` in the canary's status.
pub fn find(c: &CanaryRevision, i: i32) -> Option<&ComparisonStatus> {
    c.comparisons.iter().find(|x| x.step == i)
}

fn find_mut(c: &mut CanaryRevision, i: i32) -> Option<&mut ComparisonStatus> {
    c.comparisons.iter_mut().find(|x| x.step == i)
}

/// The current step's comparison is running (started, not ended): the
/// canary serves compared traffic, so background analysis measures it.
pub fn running(spec: &RankingModelSpec, c: &CanaryRevision) -> bool {
    let is_comparison = spec
        .rollout
        .as_ref()
        .and_then(|r| r.steps.get(c.step_index as usize))
        .is_some_and(|s| sample(s).is_some());
    is_comparison
        && find(c, c.step_index).is_some_and(|x| x.started_at.is_some() && x.ended_at.is_none())
}

/// The interleave step whose counters the reconciler reads now: the current
/// step, prepared or running, not decided, not paused. Returns its index.
pub fn due_interleave<'a>(
    spec: &'a RankingModelSpec,
    status: &RankingModelStatus,
) -> Option<(i32, &'a InterleaveStep)> {
    status.stable.as_ref()?;
    let c = status.canary.as_ref().filter(|c| c.aborted_at.is_none())?;
    if c.pause_reason.is_some() || c.revision != crate::render::revision_of(spec) {
        return None;
    }
    let step = spec.rollout.as_ref()?.steps.get(c.step_index as usize)?;
    let il = step.interleave.as_ref()?;
    let cmp = find(c, c.step_index)?;
    (cmp.ended_at.is_none() && cmp.verdict.is_none()).then_some((c.step_index, il))
}

/// Records one reading of the (cumulative) outcome counters: the first is the
/// baseline, later ones are counted from it. A counter that went down (a
/// stable pod restarted) counts from zero again rather than going negative.
pub fn record_reading(
    status: &mut RankingModelStatus,
    step: i32,
    reading: Result<InterleaveCounts, String>,
    now: Timestamp,
) {
    let Some(cmp) = status.canary.as_mut().and_then(|c| find_mut(c, step)) else {
        return;
    };
    cmp.measured_at = Some(time(now));
    match reading {
        Err(why) => cmp.message = Some(format!("cannot read the outcome counters: {why}")),
        Ok(total) => match cmp.baseline {
            None => {
                cmp.baseline = Some(total);
                cmp.message = Some(format!(
                    "baseline: {} canary, {} stable, {} ties before the step",
                    total.canary, total.stable, total.ties
                ));
            }
            Some(base) => {
                let since = InterleaveCounts {
                    canary: (total.canary - base.canary).max(0),
                    stable: (total.stable - base.stable).max(0),
                    ties: (total.ties - base.ties).max(0),
                };
                cmp.message = Some(format!(
                    "{} judged queries: canary won {}, stable won {}, {} ties",
                    since.canary + since.stable + since.ties,
                    since.canary,
                    since.stable,
                    since.ties
                ));
                cmp.counts = Some(since);
            }
        },
    }
}

/// The two-sided exact sign test: the probability, with no preference, of a
/// split at least as uneven as `a` wins against `b` (ties are left out).
pub fn sign_test_p(a: i64, b: i64) -> f64 {
    let n = a + b;
    if n <= 0 {
        return 1.0;
    }
    let k = a.min(b);
    // log C(n, i) / 2^n, summed for i = 0..=k in log space.
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0_f64;
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        if i > 0 {
            ln_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_c - ln2n);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// An interleave step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Users preferred the canary's documents (p < alpha).
    CanaryPreferred,
    /// Users preferred the stable's documents (p < alpha).
    StablePreferred,
    /// No significant preference within the budget.
    NoPreference,
}

impl Verdict {
    /// The name in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::CanaryPreferred => "CanaryPreferred",
            Verdict::StablePreferred => "StablePreferred",
            Verdict::NoPreference => "NoPreference",
        }
    }
}

fn alpha(il: &InterleaveStep) -> f64 {
    il.alpha
        .as_deref()
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|a| *a > 0.0 && *a <= 0.5)
        .unwrap_or(DEFAULT_ALPHA)
}

/// What a comparison step asks of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Keep comparing (the stable pods get `plan`); look again at `wake`.
    Running {
        /// The peer plan to render.
        plan: PeerPlan,
        /// When to look again (None: a measurement or a pod change wakes it).
        wake: Option<Timestamp>,
    },
    /// Prepared but not started (interleave: waiting for the baseline).
    Preparing,
    /// Done: go on to the next step.
    Next(String),
    /// Abort the canary with this reason.
    Abort(&'static str, String),
    /// Pause for a person (reason `Inconclusive`).
    Pause(String),
}

/// Runs comparison step `i` of canary `c` whose pods are Ready.
pub fn step(step: &RolloutStep, i: i32, c: &mut CanaryRevision, now: Timestamp) -> Flow {
    let Some(plan) = plan(step) else {
        return Flow::Next("done".into());
    };
    if find(c, i).is_none() {
        c.comparisons.push(ComparisonStatus {
            step: i,
            mode: plan.mode.into(),
            ..ComparisonStatus::default()
        });
    }
    let interleave = step.interleave.as_ref();
    let Some(cmp) = find_mut(c, i) else {
        return Flow::Preparing;
    };
    if let Some(verdict) = &cmp.verdict {
        // Decided earlier (a paused step that a person promotes moves on by
        // the promote request, not here).
        return Flow::Next(format!("verdict {verdict}"));
    }
    if cmp.started_at.is_none() {
        if interleave.is_some() && cmp.baseline.is_none() {
            return Flow::Preparing;
        }
        cmp.started_at = Some(time(now));
    }
    let started = cmp.started_at.as_ref().map_or(now, |t| t.0);
    if let Some(sh) = &step.shadow {
        let d = mlctl_crds::parse_duration(&sh.duration).unwrap_or_default();
        let end = started + SignedDuration::from_secs(d.as_secs() as i64);
        if now >= end {
            cmp.ended_at = Some(time(now));
            return Flow::Next(format!("compared for {}", sh.duration));
        }
        return Flow::Running {
            plan,
            wake: Some(end),
        };
    }
    let Some(il) = interleave else {
        return Flow::Next("done".into());
    };
    let counts = cmp.counts.unwrap_or_default();
    let judged = counts.canary + counts.stable + counts.ties;
    let end = il
        .until
        .duration
        .as_deref()
        .and_then(|d| mlctl_crds::parse_duration(d).ok())
        .map(|d| started + SignedDuration::from_secs(d.as_secs() as i64));
    let budget_met = il.until.queries.is_some_and(|q| judged >= q);
    let time_up = end.is_some_and(|e| now >= e);
    if !budget_met && !time_up {
        return Flow::Running { plan, wake: end };
    }
    let a = alpha(il);
    let p = sign_test_p(counts.canary, counts.stable);
    let verdict = if p < a && counts.canary > counts.stable {
        Verdict::CanaryPreferred
    } else if p < a && counts.stable > counts.canary {
        Verdict::StablePreferred
    } else {
        Verdict::NoPreference
    };
    cmp.p_value = Some(format!("{p:.4}"));
    cmp.verdict = Some(verdict.as_str().into());
    cmp.ended_at = Some(time(now));
    let summary = format!(
        "{judged} judged queries, canary won {}, stable won {}, {} ties: sign test p = {p:.4} (alpha {a})",
        counts.canary, counts.stable, counts.ties
    );
    match verdict {
        Verdict::CanaryPreferred => Flow::Next(format!("canary preferred: {summary}")),
        Verdict::StablePreferred => Flow::Abort(
            "InterleavingLost",
            format!("interleaving: users preferred the stable ranker: {summary}"),
        ),
        Verdict::NoPreference => {
            let why = format!("interleaving found no preference: {summary}");
            match il.on_no_preference.unwrap_or(NoPreference::Pause) {
                NoPreference::Continue => Flow::Next(why),
                NoPreference::Abort => Flow::Abort("InterleavingInconclusive", why),
                NoPreference::Pause => Flow::Pause(why),
            }
        }
    }
}

/// Marks the comparison of step `i` ended (the step completed some other way:
/// a promote request).
pub fn end(c: &mut CanaryRevision, i: i32, now: Timestamp) {
    if let Some(cmp) = find_mut(c, i)
        && cmp.ended_at.is_none()
    {
        cmp.ended_at = Some(time(now));
    }
}
