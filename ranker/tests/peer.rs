//! Peer mode end to end (docs/runtime-contract.md, "Comparing with the canary"):
//! a stable and a canary `mlctl-ranker serve` on 127.0.0.1 with the demo's
//! search rankers, the stable told by a `peer.json` file to shadow or interleave.
//! Every wait polls `/metrics` with a deadline; the servers are killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod http_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_support::{Launch, Server, TempDir, client, sample};
use serde_json::{Value, json};

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/models");
const QUERIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/queries.json");
const DOCS_PER_QUERY: usize = 10;
const STABLE_REV: &str = "rev-stable";

/// `serve` of a demo model as `search-ranker`, version `version`.
fn ranker(model: &str, version: &str, revision: &str) -> Launch<'static> {
    let path = format!("{MODELS}/{model}");
    Launch {
        args: [
            "--model-path",
            path.as_str(),
            "--model-name",
            "search-ranker",
            "--model-version",
            version,
            "--model-revision",
            revision,
        ]
        .map(String::from)
        .to_vec(),
        env: Vec::new(),
    }
}

fn stable(config: &Path) -> Server {
    ranker("search-ranker-v1.txt", "v1", STABLE_REV)
        .env("RANKER_PEER_CONFIG", &config.display().to_string())
        .start()
}

fn canary(config: &Path) -> Launch<'static> {
    // The canary mounts the same file; `from` names the stable, so it does nothing.
    ranker("search-ranker-v2.txt", "v2", "rev-canary")
        .env("RANKER_PEER_CONFIG", &config.display().to_string())
}

/// Writes `peer.json` as the kubelet does: a new file swapped in at once.
fn write_config(path: &Path, mode: &str, url: &str, timeout_ms: u64) {
    let config = json!({
        "mode": mode, "from": STABLE_REV, "stableVersion": "v1", "canaryVersion": "v2",
        "url": url, "sample": 100, "k": 10, "timeoutMs": timeout_ms,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, config.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn rank_url(server: &Server) -> String {
    server.url("/v1/models/search-ranker:rank")
}

/// A `:rank` body of 10 demo rows; integer ids when `int_ids`.
fn query(q: usize, int_ids: bool) -> String {
    let all: Value = serde_json::from_str(&std::fs::read_to_string(QUERIES).unwrap()).unwrap();
    let rows = &all["rows"].as_array().unwrap()[q * DOCS_PER_QUERY..(q + 1) * DOCS_PER_QUERY];
    let documents: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = if int_ids {
                json!(1000 * q + i)
            } else {
                json!(format!("q{q}-d{i}"))
            };
            json!({"id": id, "features": r})
        })
        .collect();
    json!({"query": format!("q{q}"), "documents": documents}).to_string()
}

/// A series of the configured pair, with more labels after the pair's.
fn pair(metric: &str, more: &str) -> String {
    format!(r#"{metric}{{model="search-ranker",version="v1",canary_version="v2"{more}}}"#)
}

async fn post(c: &reqwest::Client, url: &str, body: String) -> (u16, Value) {
    let r = c.post(url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// Polls `/metrics` until `ok` holds, failing after 20 s with the text and the log.
async fn wait_for(
    c: &reqwest::Client,
    server: &Server,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = server.metrics(c).await;
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "waited 20 s for {what}:\n{text}\n--- log ---\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_value(c: &reqwest::Client, server: &Server, series: &str, want: f64) -> String {
    wait_for(c, server, &format!("{series} = {want}"), |t| {
        sample(t, series) == want
    })
    .await
}

/// Starts `canary`, points a `mode` config at it, starts the stable and waits
/// until the stable applies the config.
async fn start_pair(
    c: &reqwest::Client,
    config: &Path,
    canary: Launch<'static>,
    mode: &str,
    timeout_ms: u64,
) -> (Server, Server) {
    let canary = canary.start();
    write_config(config, mode, &rank_url(&canary), timeout_ms);
    let stable = stable(config);
    canary.wait_ready(c).await;
    stable.wait_ready(c).await;
    let active = pair("ranker_peer_active", &format!(r#",mode="{mode}""#));
    wait_value(c, &stable, &active, 1.0).await;
    (stable, canary)
}

/// The pair's series of `metric` with `label` = each of `values` exist, at 0
/// (a series that is absent would also read as 0 through `sample`).
fn assert_at_zero(text: &str, metric: &str, label: &str, values: &[&str]) {
    for value in values {
        let series = pair(metric, &format!(r#",{label}="{value}""#));
        assert!(
            text.contains(&format!("{series} 0\n")),
            "{series} at 0 in\n{text}"
        );
    }
}

fn ids(ranking: &Value) -> Vec<Value> {
    ranking
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect()
}

fn config_path(dir: &TempDir) -> PathBuf {
    dir.0.join("peer.json")
}

#[tokio::test]
async fn shadow_compares_every_sampled_query_and_stops_when_switched_off() {
    let dir = TempDir::new("peer-shadow");
    let config = config_path(&dir);
    let c = client();
    let (stable, canary) = start_pair(&c, &config, canary(&config), "shadow", 5000).await;

    // A request from a peer is never shadowed again.
    let mut peer_call = c.post(rank_url(&stable)).header("x-mlctl-peer", "shadow");
    peer_call = peer_call.body(query(0, false));
    assert_eq!(peer_call.send().await.unwrap().status(), 200);
    const N: usize = 12;
    for q in 0..N {
        let (status, v) = post(&c, &rank_url(&stable), query(q, q % 2 == 1)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["version"], "v1");
        assert!(v.get("interleaving").is_none(), "{v}");
        assert_eq!(ids(&v["ranking"]).len(), DOCS_PER_QUERY);
    }
    let compared = pair("ranker_shadow_queries_total", r#",result="compared""#);
    let text = wait_value(&c, &stable, &compared, N as f64).await;
    for measure in ["ndcg@10", "overlap@10", "kendall_tau"] {
        let count = pair(
            "ranker_shadow_agreement_count",
            &format!(r#",measure="{measure}""#),
        );
        assert_eq!(sample(&text, &count), N as f64, "{count}\n{text}");
    }
    // Two different models agree, but not perfectly: the mean overlap@10 of all
    // 10 documents is 1, the mean tau below 1 and above -1.
    let overlap_sum = sample(
        &text,
        &pair("ranker_shadow_agreement_sum", r#",measure="overlap@10""#),
    );
    assert_eq!(overlap_sum, N as f64);
    let tau_sum = sample(
        &text,
        &pair("ranker_shadow_agreement_sum", r#",measure="kendall_tau""#),
    );
    assert!(tau_sum < N as f64 && tau_sum > -(N as f64), "{tau_sum}");
    assert_eq!(
        sample(&text, &pair("ranker_shadow_score_shift_count", "")),
        N as f64
    );
    assert_eq!(
        sample(
            &text,
            &pair("ranker_shadow_canary_duration_seconds_count", "")
        ),
        N as f64
    );
    assert_at_zero(
        &text,
        "ranker_shadow_queries_total",
        "result",
        &["canary_error", "timeout", "dropped"],
    );
    // The canary saw exactly the shadowed queries, and applies nothing itself.
    let canary_text = canary.metrics(&c).await;
    let canary_ok = r#"ranker_requests_total{model="search-ranker",version="v2",code="200"}"#;
    assert_eq!(sample(&canary_text, canary_ok), N as f64, "{canary_text}");
    assert!(
        !canary_text.contains("ranker_peer_active{"),
        "{canary_text}"
    );
    assert!(
        canary.log_text().contains("nothing to do"),
        "{}",
        canary.log_text()
    );

    write_config(&config, "off", &rank_url(&canary), 5000);
    wait_for(&c, &stable, "ranker_peer_active to disappear", |t| {
        !t.contains("ranker_peer_active{")
    })
    .await;
    for q in 0..5 {
        assert_eq!(post(&c, &rank_url(&stable), query(q, false)).await.0, 200);
    }
    let text = stable.metrics(&c).await;
    assert_eq!(sample(&text, &compared), N as f64, "{text}");
    let stable_ok = r#"ranker_requests_total{model="search-ranker",version="v1",code="200"}"#;
    assert_eq!(sample(&text, stable_ok), (N + 6) as f64);
    assert_eq!(sample(&canary.metrics(&c).await, canary_ok), N as f64);
}

#[tokio::test]
async fn interleave_merges_both_rankings_and_credits_feedback() {
    let dir = TempDir::new("peer-interleave");
    let config = config_path(&dir);
    let c = client();
    let (stable, canary) = start_pair(&c, &config, canary(&config), "interleave", 10_000).await;
    let text = stable.metrics(&c).await;
    assert_at_zero(
        &text,
        "ranker_interleave_outcomes_total",
        "winner",
        &["canary", "stable", "tie"],
    );

    for (q, int_ids) in [(3, false), (4, true)] {
        let body = query(q, int_ids);
        // Each side's own ranking: the canary directly, the stable as a peer call.
        let own = |server: &Server| {
            c.post(rank_url(server))
                .header("x-mlctl-peer", "interleave")
                .body(body.clone())
                .send()
        };
        let stable_own: Value = own(&stable).await.unwrap().json_text().await;
        let canary_own: Value = own(&canary).await.unwrap().json_text().await;
        assert!(stable_own.get("interleaving").is_none());
        let (status, v) = post(&c, &rank_url(&stable), body.clone()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["model"].as_str(), v["version"].as_str()),
            (Some("search-ranker"), Some("v1"))
        );
        let i = &v["interleaving"];
        assert_eq!(
            (i["stableVersion"].as_str(), i["canaryVersion"].as_str()),
            (Some("v1"), Some("v2")),
            "{v}"
        );
        let impression = i["impression"].as_str().unwrap();
        assert!(
            impression.starts_with("i1.") && impression.len() < 200,
            "{impression}"
        );
        let merged = v["ranking"].as_array().unwrap();
        let shown: HashSet<String> = merged.iter().map(|e| e["id"].to_string()).collect();
        let all: HashSet<String> = ids(&stable_own["ranking"])
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!((merged.len(), &shown), (DOCS_PER_QUERY, &all));
        // Each team's picks follow its own ranking; scores are the stable's.
        for (team, own) in [("stable", &stable_own), ("canary", &canary_own)] {
            let picks: Vec<Value> = merged
                .iter()
                .filter(|e| e["team"] == team)
                .map(|e| e["id"].clone())
                .collect();
            assert_eq!(picks.len(), DOCS_PER_QUERY / 2, "{team}: {v}");
            let order = ids(&own["ranking"]);
            let mut rest = order.iter();
            assert!(
                picks.iter().all(|p| rest.any(|o| o == p)),
                "{team} picks {picks:?} out of order {order:?}"
            );
        }
        for e in merged {
            let mine = stable_own["ranking"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == e["id"])
                .unwrap();
            assert_eq!(e["score"], mine["score"]);
        }
        // The same request gets the same interleaving.
        assert_eq!(post(&c, &rank_url(&stable), body).await.1, v);

        let team_ids = |team: &str| -> Vec<Value> {
            merged
                .iter()
                .filter(|e| e["team"] == team)
                .map(|e| e["id"].clone())
                .collect()
        };
        let (canary_ids, stable_ids) = (team_ids("canary"), team_ids("stable"));
        let feedback = |server: &Server, clicks: Vec<Value>| {
            let body = json!({"impression": impression, "clicks": clicks}).to_string();
            let url = server.url("/v1/feedback");
            let c = &c;
            async move { post(c, &url, body).await }
        };
        let clicks = vec![
            canary_ids[0].clone(),
            canary_ids[1].clone(),
            stable_ids[2].clone(),
        ];
        assert_eq!(
            feedback(&stable, clicks).await,
            (
                200,
                json!({"winner": "canary", "canaryClicks": 2, "stableClicks": 1})
            )
        );
        // Any pod of the model accepts it; ids as strings match integer ids.
        let as_text: Vec<Value> = stable_ids
            .iter()
            .map(|id| json!(id.to_string().trim_matches('"')))
            .collect();
        assert_eq!(
            feedback(&canary, as_text[..1].to_vec()).await,
            (
                200,
                json!({"winner": "stable", "canaryClicks": 0, "stableClicks": 1})
            )
        );
        assert_eq!(
            feedback(&stable, vec![]).await,
            (
                200,
                json!({"winner": "tie", "canaryClicks": 0, "stableClicks": 0})
            )
        );
    }

    for (body, want) in [
        (
            json!({"impression": "i1.bm90LWFuLWltcHJlc3Npb24", "clicks": []}),
            "impression",
        ),
        (
            json!({"impression": "hello", "clicks": []}),
            "not an impression id",
        ),
        (json!({"clicks": []}), "invalid feedback body"),
        (
            json!({"impression": 5, "clicks": []}),
            "invalid feedback body",
        ),
    ] {
        let (status, v) = post(&c, &stable.url("/v1/feedback"), body.to_string()).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
        assert_eq!(v["model"], "search-ranker");
    }
    let text = stable.metrics(&c).await;
    for (winner, n) in [("canary", 2.0), ("stable", 0.0), ("tie", 2.0)] {
        let series = pair(
            "ranker_interleave_outcomes_total",
            &format!(r#",winner="{winner}""#),
        );
        assert_eq!(sample(&text, &series), n, "{series}\n{text}");
    }
    let canary_outcome = pair("ranker_interleave_outcomes_total", r#",winner="stable""#);
    assert_eq!(sample(&canary.metrics(&c).await, &canary_outcome), 2.0);
    assert_eq!(
        sample(
            &text,
            &pair(
                "ranker_interleave_queries_total",
                r#",result="interleaved""#
            )
        ),
        4.0
    );
    // Feedback is not ranking traffic: 2 queries × (peer call + 2 interleaved).
    let code = |code: u16| {
        format!(r#"ranker_requests_total{{model="search-ranker",version="v1",code="{code}"}}"#)
    };
    assert_eq!(
        (sample(&text, &code(200)), sample(&text, &code(400))),
        (6.0, 0.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_or_slow_canary_leaves_the_stable_answer_alone() {
    let dir = TempDir::new("peer-failing");
    let config = config_path(&dir);
    let c = client();
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://{}/v1/models/search-ranker:rank",
            l.local_addr().unwrap()
        )
    };
    write_config(&config, "interleave", &dead, 2000);
    let stable = stable(&config);
    let slow = canary(&config).env("RANKER_INJECT_DELAY", "5s").start();
    stable.wait_ready(&c).await;
    slow.wait_ready(&c).await;
    // The stable's own answer: a request from a peer is never interleaved.
    let plain = |q: usize| {
        let r = c
            .post(rank_url(&stable))
            .header("x-mlctl-peer", "interleave");
        async move {
            r.body(query(q, false))
                .send()
                .await
                .unwrap()
                .json_text()
                .await
        }
    };

    let steps = [
        (
            "interleave",
            dead.clone(),
            "ranker_interleave_queries_total",
            "canary_error",
        ),
        (
            "shadow",
            dead.clone(),
            "ranker_shadow_queries_total",
            "canary_error",
        ),
        (
            "interleave",
            rank_url(&slow),
            "ranker_interleave_queries_total",
            "timeout",
        ),
        (
            "shadow",
            rank_url(&slow),
            "ranker_shadow_queries_total",
            "timeout",
        ),
    ];
    for (step, (mode, url, metric, result)) in steps.into_iter().enumerate() {
        write_config(&config, mode, &url, 300);
        let active = pair("ranker_peer_active", &format!(r#",mode="{mode}""#));
        let series = pair(metric, &format!(r#",result="{result}""#));
        let before = sample(&stable.metrics(&c).await, &series);
        // Wait until this step's config (timeout 300 ms) is the one applied.
        wait_for(&c, &stable, &format!("step {step}"), |t| {
            sample(t, &active) == 1.0 && stable.log_text().matches("applied").count() > step
        })
        .await;
        let started = Instant::now();
        let (status, v) = post(&c, &rank_url(&stable), query(step, false)).await;
        assert_eq!(status, 200, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{mode} {url}: {:?}",
            started.elapsed()
        );
        assert!(v.get("interleaving").is_none(), "{v}");
        assert_eq!(
            v,
            plain(step).await,
            "step {step}: the normal stable answer"
        );
        wait_value(&c, &stable, &series, before + 1.0).await;
    }
}

#[tokio::test]
async fn a_slow_canary_does_not_delay_the_shadowed_response() {
    let dir = TempDir::new("peer-slow");
    let config = config_path(&dir);
    let c = client();
    let slow = canary(&config).env("RANKER_INJECT_DELAY", "3s");
    let (stable, _slow) = start_pair(&c, &config, slow, "shadow", 20_000).await;

    let started = Instant::now();
    let (status, v) = post(&c, &rank_url(&stable), query(7, false)).await;
    let answered = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert!(
        answered < Duration::from_secs(2),
        "the user waited {answered:?}"
    );
    // The comparison still happens, after the canary's 3 s.
    let compared = pair("ranker_shadow_queries_total", r#",result="compared""#);
    let text = wait_value(&c, &stable, &compared, 1.0).await;
    let waited = sample(
        &text,
        &pair("ranker_shadow_canary_duration_seconds_sum", ""),
    );
    assert!(waited >= 3.0, "the canary answered in {waited} s");
    assert!(started.elapsed() >= Duration::from_secs(3));
}

/// Reads a response body as JSON, naming the text when it is not.
trait JsonText {
    async fn json_text(self) -> Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}
