//! Shadow and interleave steps on the real node: real ranker pods (the
//! image), the operator from its image, the real Prometheus, and users.
//!
//! 1. shadow: while user traffic goes to the stable version only, the stable
//!    pods copy every query to the canary and export how the rankings agree;
//!    an analysis step on `ranker_shadow_*` promotes a canary that ranks like
//!    the stable (the demo's v2) and aborts one that ranks the other way
//!    round (v1 with every leaf value negated);
//! 2. interleave: simulated users click the documents they like best (by the
//!    demo's v1 scores) in interleaved lists and send feedback; the step
//!    promotes the better ranker when it is the canary, aborts when it is the
//!    stable, and finds no preference between two copies of the same model.
//!
//! The figures (queries compared, agreement, judged queries, p-values, time
//! to decide, queries a sign test needed) are printed and in docs/rollouts.md.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Api;
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::{ComparisonStatus, Phase};
use mlctl_e2e::figures;
use mlctl_e2e::metrics::query_value;
use mlctl_e2e::node;
use mlctl_e2e::scene::{
    Scene, V1, V2, Version, models_dir, now_ms, prometheus_in_cluster, rows_file, scene_serving,
    serving,
};
use mlctl_e2e::traffic::{Record, window};
use mlctl_e2e::{events_with_reason, phase_is, require_node, wait_for};
use mlctl_operator::rollout::compare::sign_test_p;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(300);
/// User queries per second through the `<model>` Service during a shadow step.
const RATE: u32 = 20;

/// v1 with every leaf value negated: exactly the reverse ranking.
const INVERTED: Version<'static> = Version {
    version: "2026-11-24.9",
    file: "search-ranker-inverted.txt",
    env: &[],
};
/// v1's file under another version: a new revision that ranks identically.
const V1_COPY: Version<'static> = Version {
    version: "2026-11-25.2",
    file: "search-ranker-v1.txt",
    env: &[],
};

/// A LightGBM text model whose scores are the negation of `text`'s: every
/// `leaf_value` negated (`tree_sizes`, the byte sizes of the trees, no longer
/// holds and is dropped; LightGBM reads the trees without it).
fn negated(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1024);
    for line in text.lines() {
        if line.starts_with("tree_sizes=") {
            continue;
        }
        match line.strip_prefix("leaf_value=") {
            Some(values) => {
                let flipped: Vec<String> = values
                    .split(' ')
                    .map(|v| match v.strip_prefix('-') {
                        Some(pos) => pos.to_string(),
                        None if v.parse::<f64>().is_ok_and(|x| x == 0.0) => v.to_string(),
                        None => format!("-{v}"),
                    })
                    .collect();
                out.push_str("leaf_value=");
                out.push_str(&flipped.join(" "));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The demo's v1 and v2, and v1 inverted, in a directory of the test's own.
fn model_files() -> PathBuf {
    let dir = node::scratch_dir("compare-models");
    for f in [V1.file, V2.file] {
        std::fs::copy(models_dir().join(f), dir.join(f)).unwrap();
    }
    let v1 = std::fs::read_to_string(models_dir().join(V1.file)).unwrap();
    let inverted = negated(&v1);
    assert_eq!(
        inverted.matches("leaf_value=").count(),
        v1.matches("leaf_value=").count()
    );
    std::fs::write(dir.join(INVERTED.file), inverted).unwrap();
    dir
}

fn selector(measure_or_result: &str) -> String {
    format!(
        "namespace=\"{{{{namespace}}}}\",model=\"{{{{model}}}}\",version=\"{{{{stable_version}}}}\",canary_version=\"{{{{canary_version}}}}\",{measure_or_result}"
    )
}

/// A shadow step at 100% for 30 s, then an analysis step that wants at
/// least 100 compared queries and a median overlap@10 of 0.6 or more.
fn shadow_rollout() -> Value {
    let prom = prometheus_in_cluster();
    json!({
        "steps": [
            {"shadow": {"duration": "30s", "sample": 100}},
            {"analysis": {"metrics": ["shadow-compared", "shadow-overlap"]}},
        ],
        "scaleDownDelaySeconds": 5,
        "abortScaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 180,
        "analysis": {"templates": [
            {
                "name": "shadow-compared",
                "provider": {"prometheus": {"address": prom, "query": format!(
                    "sum(increase(ranker_shadow_queries_total{{{}}}[2m]))",
                    selector("result=\"compared\"")
                )}},
                "successCondition": "result >= 100",
            },
            {
                "name": "shadow-overlap",
                "provider": {"prometheus": {"address": prom, "query": format!(
                    "histogram_quantile(0.5, sum by (le) (rate(ranker_shadow_agreement_bucket{{{}}}[2m])))",
                    selector("measure=\"overlap@10\"")
                )}},
                "successCondition": "result >= 0.6",
            },
        ]},
    })
}

/// What Prometheus says of the shadow comparison of `stable` → `canary`.
async fn shadow_figures(ns: &str, model: &str, stable: &str, canary: &str) -> String {
    let sel = |extra: &str| {
        format!(
            "namespace=\"{ns}\",model=\"{model}\",version=\"{stable}\",canary_version=\"{canary}\",{extra}"
        )
    };
    let compared = query_value(&format!(
        "sum(ranker_shadow_queries_total{{{}}})",
        sel("result=\"compared\"")
    ))
    .await;
    let mut out = format!("compared {}", compared.unwrap_or(f64::NAN));
    for measure in ["ndcg@10", "overlap@10", "kendall_tau"] {
        let q = format!(
            "sum(ranker_shadow_agreement_sum{{{s}}}) / sum(ranker_shadow_agreement_count{{{s}}})",
            s = sel(&format!("measure=\"{measure}\""))
        );
        let mean = query_value(&q).await.unwrap_or(f64::NAN);
        out.push_str(&format!(", mean {measure} {mean:.3}"));
    }
    out
}

/// The records the users got before `until` (ms): all from `version`, none failed.
fn assert_only(records: &[Record], until: u64, version: &str) {
    let before = window(records, 0, until);
    assert!(before.sent > 0, "no user requests recorded");
    assert_eq!(before.failed, 0, "failed user requests: {before}");
    assert_eq!(
        before.share(version),
        1.0,
        "user traffic reached another version while the canary was compared: {before}"
    );
}

async fn shadow_case(prefix: &str, port: u16, canary: &Version<'_>, promote: bool) {
    let s = scene_serving(prefix, port, &model_files()).await;
    s.apply("ranker", &V1, 2, shadow_rollout()).await;
    wait_for(&s.models, "ranker", phase_is(Phase::Healthy), LONG).await;
    let traffic = s.start_traffic("ranker", RATE).await;
    let started = now_ms();
    s.set_version("ranker", canary).await;
    let ended = if promote {
        wait_for(&s.models, "ranker", serving(canary.version), LONG).await;
        now_ms()
    } else {
        wait_for(&s.models, "ranker", phase_is(Phase::Degraded), LONG).await;
        let reason = s.abort_reason("ranker").await;
        assert!(
            reason.contains("shadow-overlap"),
            "the overlap analysis aborts it: {reason}"
        );
        now_ms()
    };
    let records = traffic.stop();
    // Until the promotion the users saw only the stable version; after an
    // abort, only the stable version ever.
    assert_only(&records, if promote { ended } else { u64::MAX }, V1.version);
    let prom = shadow_figures(s.ns.name(), "ranker", V1.version, canary.version).await;
    figures!(
        "FIGURES compare shadow {} → {} ({}): {prom}; user requests {} (all answered by {}), {:.1} s from the version change to the {}",
        V1.version,
        canary.version,
        if promote { "agrees" } else { "inverted" },
        window(&records, started, ended).sent,
        V1.version,
        (ended - started) as f64 / 1000.0,
        if promote { "promotion" } else { "abort" }
    );
}

#[tokio::test]
async fn a_shadow_step_promotes_a_canary_that_ranks_like_the_stable() {
    require_node!();
    shadow_case("shadow-agree", 18191, &V2, true).await;
}

#[tokio::test]
async fn a_shadow_step_aborts_a_canary_that_ranks_the_other_way_round() {
    require_node!();
    shadow_case("shadow-inverted", 18192, &INVERTED, false).await;
}

/// splitmix64: the simulated users' dice, seeded per model and query.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64) -> f64 {
    (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// Users who like what the demo's v1 ranks high: they look at the first ten
/// results and click one of their own top three with probability 0.9, any
/// other with 0.1, and stop after a click with probability 0.3. `sign` turns
/// the stable's scores (in every answer) into v1's: -1 when the stable is
/// the inverted model.
fn clicks(ranking: &[Value], sign: f64, dice: &mut u64) -> Vec<Value> {
    let mut utility: Vec<(f64, usize)> = ranking
        .iter()
        .enumerate()
        .map(|(i, d)| (sign * d["score"].as_f64().unwrap(), i))
        .collect();
    utility.sort_by(|a, b| b.0.total_cmp(&a.0));
    let liked: Vec<usize> = utility.iter().take(3).map(|u| u.1).collect();
    let mut out = Vec::new();
    for (i, doc) in ranking.iter().enumerate().take(10) {
        let p = if liked.contains(&i) { 0.9 } else { 0.1 };
        if uniform(dice) < p {
            out.push(doc["id"].clone());
            if uniform(dice) < 0.3 {
                break;
            }
        }
    }
    out
}

/// One simulated user session per model: queries of 20 documents drawn from
/// the demo's held-out rows, feedback for every interleaved answer. Returns
/// the winners in the order the feedback was given.
async fn users(url: String, seed: u64, sign: f64, stop: Arc<AtomicBool>) -> Vec<String> {
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(rows_file()).unwrap()).unwrap();
    let rows = rows["rows"].as_array().unwrap().clone();
    let feedback_url = url
        .rsplit_once("/v1/models/")
        .map(|(base, _)| format!("{base}/v1/feedback"))
        .unwrap();
    let http = node::http_client();
    let mut winners = Vec::new();
    let mut query = 0u64;
    while !stop.load(Ordering::Relaxed) {
        query += 1;
        let mut dice = seed ^ query.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let documents: Vec<Value> = (0..20)
            .map(|i| {
                let row = &rows[(splitmix(&mut dice) % rows.len() as u64) as usize];
                json!({"id": format!("q{query}-d{i}"), "features": row})
            })
            .collect();
        let Ok(resp) = http
            .post(&url)
            .json(&json!({"query": format!("q{query}"), "documents": documents}))
            .send()
            .await
        else {
            continue;
        };
        let Ok(body) = resp.json::<Value>().await else {
            continue;
        };
        let Some(impression) = body["interleaving"]["impression"].as_str() else {
            // Not interleaved (before the config arrived, after the verdict,
            // or the canary was too slow): nothing to judge. Pace the loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let clicked = clicks(body["ranking"].as_array().unwrap(), sign, &mut dice);
        let answer: Value = http
            .post(&feedback_url)
            .json(&json!({"impression": impression, "clicks": clicked}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        winners.push(answer["winner"].as_str().unwrap().to_string());
        // About 20 queries a second per model: traffic, not a flood (load
        // shaping, not synchronisation).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    winners
}

/// The first n at which the sign test on the first n judged queries is below
/// `alpha`: how many a fixed-horizon test would have needed.
fn needed(winners: &[String], alpha: f64) -> Option<usize> {
    let (mut c, mut s) = (0i64, 0i64);
    for (n, w) in winners.iter().enumerate() {
        match w.as_str() {
            "canary" => c += 1,
            "stable" => s += 1,
            _ => {}
        }
        if sign_test_p(c, s) < alpha {
            return Some(n + 1);
        }
    }
    None
}

fn interleave_rollout(queries: i64) -> Value {
    json!({
        "steps": [{"interleave": {
            "sample": 100,
            "until": {"queries": queries, "duration": "4m"},
            "alpha": "0.01",
            "prometheus": {"address": prometheus_in_cluster()},
        }}],
        "scaleDownDelaySeconds": 5,
        "abortScaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 180,
    })
}

async fn comparison(models: &Api<RankingModel>, name: &str) -> ComparisonStatus {
    let rm = models.get(name).await.unwrap();
    let status = rm.status.unwrap();
    status
        .canary
        .and_then(|c| c.comparisons.into_iter().next())
        .unwrap_or_else(|| panic!("{name}: no comparison in status"))
}

struct Case {
    name: &'static str,
    stable: Version<'static>,
    canary: Version<'static>,
    /// -1 when the stable is the inverted model (its scores are v1's negated).
    sign: f64,
}

#[tokio::test]
async fn interleaving_decides_for_the_ranker_users_prefer_and_for_neither_of_equals() {
    require_node!();
    const BUDGET: i64 = 150;
    let s: Scene = scene_serving("interleave", 18193, &model_files()).await;
    let cases = [
        Case {
            name: "better",
            stable: INVERTED,
            canary: V1,
            sign: -1.0,
        },
        Case {
            name: "worse",
            stable: V1,
            canary: INVERTED,
            sign: 1.0,
        },
        Case {
            name: "same",
            stable: V1,
            canary: V1_COPY,
            sign: 1.0,
        },
    ];
    for c in &cases {
        s.apply(c.name, &c.stable, 1, interleave_rollout(BUDGET))
            .await;
    }
    for c in &cases {
        wait_for(&s.models, c.name, phase_is(Phase::Healthy), LONG).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut sessions = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let url = s.rank_url(c.name).await;
        sessions.push(tokio::spawn(users(
            url,
            1000 + i as u64,
            c.sign,
            stop.clone(),
        )));
        s.set_version(c.name, &c.canary).await;
    }
    let started = now_ms();

    // The better canary is promoted; the worse one aborted; equals pause.
    wait_for(&s.models, "worse", phase_is(Phase::Degraded), LONG).await;
    let worse = comparison(&s.models, "worse").await;
    wait_for(
        &s.models,
        "same",
        |rm: Option<&RankingModel>| {
            rm.and_then(|rm| rm.status.as_ref())
                .and_then(|st| st.canary.as_ref())
                .is_some_and(|c| c.pause_reason.as_deref() == Some("Inconclusive"))
        },
        LONG,
    )
    .await;
    let same = comparison(&s.models, "same").await;
    // The better canary's verdict and its promotion come in one decision
    // (its one pod is already full size), which clears status.canary: the
    // StepCompleted event tells the verdict ...
    wait_for(&s.models, "better", serving(V1.version), LONG).await;
    // Events are queued after the status write: give it a moment to land.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let better = loop {
        let found = events_with_reason(&s.ns.api(), "StepCompleted")
            .await
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("better"))
            .filter_map(|e| e.message)
            .find(|m| m.contains("interleave"));
        if let Some(m) = found {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a StepCompleted event for the better canary's interleave step"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(better.contains("canary preferred"), "{better}");
    // ... and so does the history entry of the promotion.
    let promoted = s
        .models
        .get("better")
        .await
        .unwrap()
        .status
        .unwrap()
        .history;
    let kept = promoted
        .first()
        .filter(|h| h.outcome == "Promoted")
        .and_then(|h| h.comparisons.first())
        .cloned()
        .unwrap_or_else(|| panic!("no comparison in the Promoted history entry: {promoted:?}"));
    assert_eq!(kept.verdict.as_deref(), Some("CanaryPreferred"));
    stop.store(true, Ordering::Relaxed);
    let mut winners = Vec::new();
    for session in sessions {
        winners.push(session.await.unwrap());
    }

    let worse_reason = s.abort_reason("worse").await;
    assert!(
        worse_reason.contains("preferred the stable"),
        "{worse_reason}"
    );
    assert_eq!(worse.verdict.as_deref(), Some("StablePreferred"));
    assert_eq!(same.verdict.as_deref(), Some("NoPreference"), "{same:?}");
    for (c, x, w) in [
        ("better", &kept, &winners[0]),
        ("worse", &worse, &winners[1]),
        ("same", &same, &winners[2]),
    ] {
        let counts = x.counts.unwrap_or_default();
        let judged = counts.canary + counts.stable + counts.ties;
        assert!(
            judged >= BUDGET,
            "{c}: decided at {judged} judged queries, budget {BUDGET}"
        );
        let took = x
            .ended_at
            .as_ref()
            .zip(x.started_at.as_ref())
            .map(|(e, s)| (e.0.as_second() - s.0.as_second()) as f64);
        figures!(
            "FIGURES compare interleave {c}: {judged} judged (canary {}, stable {}, ties {}), p {}, verdict {}, {:.0} s from start to verdict, {} feedback sent; a sign test at alpha 0.01 needed {} judged queries",
            counts.canary,
            counts.stable,
            counts.ties,
            x.p_value.as_deref().unwrap_or("-"),
            x.verdict.as_deref().unwrap_or("-"),
            took.unwrap_or(f64::NAN),
            w.len(),
            needed(w, 0.01).map_or("- (none)".to_string(), |n| n.to_string())
        );
    }
    figures!(
        "FIGURES compare interleave: all three decided {:.1} s after the version changes",
        (now_ms() - started) as f64 / 1000.0
    );
}
