//! `mlctl-ranker serve` end to end: the real binary on 127.0.0.1:0 with a LightGBM
//! model, exercised with a real HTTP client — ranking, the v2 protocol, every error
//! case and limit, metrics, configuration from env, loading and the SIGTERM drain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod http_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use http_support::{EXPECTED, Launch, ROWS, TempDir, client, rank_body, sample};
use serde_json::{Value, json};

async fn post(c: &reqwest::Client, url: String, body: String) -> (u16, Value) {
    let r = c.post(url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

#[tokio::test]
async fn rank_scores_like_lightgbm_highest_first_ties_in_input_order() {
    let dir = TempDir::new("rank");
    let server = Launch::new(&dir.model()).start();
    let c = client();
    server.wait_ready(&c).await;

    let (status, v) = post(&c, server.url("/v1/models/m:rank"), rank_body(&ROWS)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["model"].as_str(), v["version"].as_str()),
        (Some("m"), Some("v1"))
    );
    let ranking = v["ranking"].as_array().unwrap();
    let ids: Vec<&str> = ranking.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // Scores 1 > 0 > 2 = 3 > 4; the tie keeps input order.
    assert_eq!(ids, ["d1", "d0", "d2", "d3", "d4"]);
    for e in ranking {
        let i: usize = e["id"].as_str().unwrap()[1..].parse().unwrap();
        // Exactly LightGBM's score: shortest round-trip decimals on both sides.
        assert_eq!(e["score"].as_f64().unwrap(), EXPECTED[i], "document {i}");
    }

    // Features by name, in any order, absent = missing; integer ids come back as integers.
    let body = json!({"documents": [
        {"id": 7, "features": {"age": 40.0, "ctr_7d": 0.03, "bm25": 12.1}},
        {"id": 8, "features": {"ctr_7d": 0.0, "age": 50.0}},
    ]});
    let (status, v) = post(&c, server.url("/v1/models/m:rank"), body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["ranking"],
        json!([{"id": 7, "score": EXPECTED[0]}, {"id": 8, "score": EXPECTED[2]}])
    );
}

#[tokio::test]
async fn open_inference_protocol_v2() {
    let dir = TempDir::new("v2");
    let server = Launch::new(&dir.model()).start();
    let c = client();
    server.wait_ready(&c).await;

    assert_eq!(
        get(&c, server.url("/v2/health/live")).await,
        (200, json!({"live": true}))
    );
    assert_eq!(
        get(&c, server.url("/v2/health/ready")).await,
        (200, json!({"ready": true}))
    );
    assert_eq!(
        get(&c, server.url("/v2/models/m/ready")).await,
        (200, json!({"ready": true}))
    );
    let (status, v) = get(&c, server.url("/v2")).await;
    assert_eq!((status, v["name"].as_str()), (200, Some("mlctl-ranker")));
    let (status, meta) = get(&c, server.url("/v2/models/m")).await;
    assert_eq!(status, 200);
    assert_eq!(
        meta,
        json!({
            "name": "m", "versions": ["v1"], "platform": "lightgbm",
            "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 3]}],
            "outputs": [{"name": "score", "datatype": "FP64", "shape": [-1]}],
        })
    );
    assert_eq!(get(&c, server.url("/v2/models/m/versions/v1")).await.0, 200);
    let (status, v) = get(&c, server.url("/v2/models/m/versions/v2")).await;
    assert_eq!(status, 404);
    assert!(error_of(&v).contains("version \"v2\""), "{v}");

    // Nested FP64 data, the way tritonclient and the KServe SDK send a 2-D array.
    let data: Vec<Vec<Value>> = ROWS
        .iter()
        .map(|r| {
            r.iter()
                .map(|x| if x.is_nan() { Value::Null } else { json!(x) })
                .collect()
        })
        .collect();
    let body = json!({"id": "r1", "inputs": [{"name": "features", "shape": [5, 3], "datatype": "FP64", "data": data}]});
    let (status, v) = post(&c, server.url("/v2/models/m/infer"), body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"model_name": "m", "model_version": "v1", "id": "r1",
               "outputs": [{"name": "score", "datatype": "FP64", "shape": [5], "data": EXPECTED}]})
    );
    // Flat FP32 data through the versioned path.
    let body = json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [30.0, 0.1, 10.0]}]});
    let (status, v) = post(
        &c,
        server.url("/v2/models/m/versions/v1/infer"),
        body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outputs"][0]["data"], json!([EXPECTED[1]]));
    assert!(v.get("id").is_none());
}

#[tokio::test]
async fn every_error_is_json_naming_the_problem() {
    let dir = TempDir::new("errors");
    let server = Launch::new(&dir.model())
        .arg("--max-documents", "3")
        .arg("--max-body-bytes", "2000")
        .start();
    let c = client();
    server.wait_ready(&c).await;
    let rank = server.url("/v1/models/m:rank");

    let cases: Vec<(String, String, u16, &str)> = vec![
        (rank.clone(), r#"{"documents":[{"id":"a","features":[1,2,3]},{"id":"b","features":[1,2,3]},{"id":"c","features":[1,2,3]},{"id":"d4","features":[1,2]}]}"#.into(), 413, "more than 3 documents"),
        (rank.clone(), r#"{"documents":[{"id":"a","features":[1,2,3]},{"id":"d4","features":[1,2]}]}"#.into(), 400, "document 1 (id d4): 2 features, the model has 3"),
        (rank.clone(), r#"{"documents":[{"id":"a","features":[1,"2",3]}]}"#.into(), 400, "feature 1 (ctr_7d) is a string, not a number"),
        (rank.clone(), r#"{"documents":[{"id":"a","features":{"bm25":1,"clicks":2}}]}"#.into(), 400, "unknown feature \"clicks\""),
        (rank.clone(), r#"{"documents":[{"id":"a","features":[1,2,3]}"#.into(), 400, "invalid request body"),
        (rank.clone(), "not json".into(), 400, "invalid request body"),
        (rank.clone(), format!(r#"{{"documents":[],"pad":"{}"}}"#, "x".repeat(3000)), 413, "over 2000 bytes"),
        (server.url("/v1/models/other:rank"), rank_body(&ROWS[..1]), 404, "model \"other\" is not served here; this server serves \"m\""),
        (server.url("/v2/models/other/infer"), "{}".into(), 404, "this server serves \"m\""),
        (server.url("/v2/models/m/infer"), r#"{"inputs":[{"shape":[2,3],"datatype":"FP32","data":[1,2,3]}]}"#.into(), 400, "holds 6 values but data has 3"),
        (server.url("/v2/models/m/infer"), r#"{"inputs":[{"shape":[1,3],"datatype":"BYTES","data":[1,2,3]}]}"#.into(), 400, "send FP32 or FP64"),
        (server.url("/v2/models/m/infer"), r#"{"inputs":[{"shape":[4,3],"datatype":"FP32","data":[]}]}"#.into(), 413, "more than 3 rows"),
        (server.url("/v1/nothing"), "{}".into(), 404, "no route /v1/nothing"),
        (server.url("/v2/models/m"), "{}".into(), 405, "use GET"),
    ];
    for (url, body, want_status, want) in cases {
        let (status, v) = post(&c, url.clone(), body).await;
        assert_eq!(status, want_status, "{url}: {v}");
        assert!(error_of(&v).contains(want), "{url}: {v}");
        // Which model and version refused: a Service may front several.
        assert_eq!(
            (&v["model"], &v["version"]),
            (&json!("m"), &json!("v1")),
            "{url}: {v}"
        );
    }
    // A body streamed without Content-Length (chunked) is cut at the limit too.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(stream, "POST /v1/models/m:rank HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
    for _ in 0..10 {
        // The server may answer and close before every chunk is sent.
        if write!(stream, "1f4\r\n{}\r\n", " ".repeat(500)).is_err() {
            break;
        }
    }
    let _ = write!(stream, "0\r\n\r\n");
    let (status, v) = read_response(&mut stream);
    assert_eq!(status, 413, "{v}");
    let r = c.get(rank.clone()).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["allow"].to_str().unwrap()),
        (405, "POST")
    );
    let (status, _) = get(&c, server.url("/nope")).await;
    assert_eq!(status, 404);
    // The server is still fine after all that.
    let (status, _) = post(&c, rank, rank_body(&ROWS[..2])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_count_ranking_requests_by_code_and_not_probes() {
    let dir = TempDir::new("metrics");
    let server = Launch::new(&dir.model()).start();
    let c = client();
    server.wait_ready(&c).await;
    let metrics = || server.metrics(&c);
    let before = metrics().await;
    let ok = r#"ranker_requests_total{model="m",version="v1",code="200"}"#;
    let bad = r#"ranker_requests_total{model="m",version="v1",code="400"}"#;
    let missing = r#"ranker_requests_total{model="m",version="v1",code="404"}"#;
    let count = r#"ranker_request_duration_seconds_count{model="m",version="v1"}"#;
    let docs = r#"ranker_documents_scored_total{model="m",version="v1"}"#;

    for _ in 0..3 {
        assert_eq!(
            post(&c, server.url("/v1/models/m:rank"), rank_body(&ROWS))
                .await
                .0,
            200
        );
    }
    let infer = json!({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]});
    assert_eq!(
        post(&c, server.url("/v2/models/m/infer"), infer.to_string())
            .await
            .0,
        200
    );
    assert_eq!(
        post(&c, server.url("/v1/models/m:rank"), "{".into())
            .await
            .0,
        400
    );
    assert_eq!(
        post(&c, server.url("/v1/models/x:rank"), "{}".into())
            .await
            .0,
        404
    );
    for path in [
        "/ready",
        "/healthz",
        "/v2/health/live",
        "/v2/models/m",
        "/metrics",
    ] {
        assert_eq!(get(&c, server.url(path)).await.0, 200, "{path}");
    }
    let after = metrics().await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta(ok), 4.0, "{after}");
    assert_eq!(delta(bad), 1.0);
    assert_eq!(delta(missing), 1.0);
    // Probes, metadata and scrapes are not ranking requests.
    assert_eq!(delta(count), 6.0);
    assert_eq!(delta(docs), 17.0);
    assert_eq!(
        sample(
            &after,
            r#"ranker_model_info{model="m",version="v1",revision="rev1",format="lightgbm",trees="3",features="3"}"#
        ),
        1.0,
        "{after}"
    );
    assert!(sample(&after, "process_resident_memory_bytes") > 1e6);
    assert!(sample(&after, "process_open_fds") >= 3.0);
    assert!(sample(&after, "process_start_time_seconds") > 1.7e9);
    assert!(after.contains("# TYPE process_cpu_seconds counter"));
    assert!(
        after.contains(
            r#"ranker_request_duration_seconds_bucket{le="0.0005",model="m",version="v1"}"#
        )
    );
}

#[tokio::test]
async fn an_injected_delay_slows_ranking_responses_and_shows_in_the_latency_histogram() {
    let dir = TempDir::new("delay");
    let server = Launch::new(&dir.model())
        .env("RANKER_INJECT_DELAY", "1s")
        .start();
    let c = client();
    server.wait_ready(&c).await;
    // Probes are not delayed: readiness must stay cheap.
    let t = Instant::now();
    assert_eq!(get(&c, server.url("/ready")).await.0, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let t = Instant::now();
    let (code, _) = post(&c, server.url("/v1/models/m:rank"), rank_body(&ROWS)).await;
    assert_eq!(code, 200);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    let (_, metrics) = get(&c, server.url("/metrics")).await;
    let text = metrics.as_str().expect("the metrics text").to_string();
    let le = |b: &str| {
        sample(
            &text,
            &format!(
                r#"ranker_request_duration_seconds_bucket{{le="{b}",model="m",version="v1"}}"#
            ),
        )
    };
    assert_eq!(le("0.5"), 0.0, "{text}");
    assert_eq!(le("2.5"), 1.0, "{text}");
    assert!(server.log_text().contains("fault-injection testing only"));
}

#[tokio::test]
async fn configuration_from_env_with_flags_winning_and_a_model_directory() {
    let dir = TempDir::new("env");
    dir.model();
    // MODEL_PATH is the directory the storage initializer wrote one file into.
    let server = Launch {
        args: vec!["--model-version".into(), "from-flag".into()],
        env: Vec::new(),
    }
    .env("MODEL_PATH", &dir.0.display().to_string())
    .env("MODEL_NAME", "ranker-a")
    .env("MODEL_VERSION", "from-env")
    .env("MODEL_FORMAT", "lightgbm")
    .env("MODEL_REVISION", "abc123")
    .start();
    let c = client();
    server.wait_ready(&c).await;
    let (status, v) = post(
        &c,
        server.url("/v1/models/ranker-a:rank"),
        rank_body(&ROWS[..1]),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], "from-flag");
    let text = server.metrics(&c).await;
    assert!(
        text.contains(r#"revision="abc123",format="lightgbm""#),
        "{text}"
    );
}

#[tokio::test]
async fn liveness_answers_while_loading_and_readiness_waits_for_the_model() {
    let dir = TempDir::new("loading");
    // A FIFO blocks the loader's read until the test writes the model: loading is
    // as slow as the test wants, without sleeping.
    let fifo = dir.0.join("model.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let server = Launch::new(&fifo).start();
    let c = client();
    assert_eq!(get(&c, server.url("/healthz")).await.0, 200);
    let (status, v) = get(&c, server.url("/ready")).await;
    assert_eq!(status, 503);
    assert!(error_of(&v).contains("loading"), "{v}");
    let (status, v) = post(&c, server.url("/v1/models/m:rank"), rank_body(&ROWS)).await;
    assert_eq!(status, 503);
    assert!(error_of(&v).contains("still loading"), "{v}");
    assert_eq!(get(&c, server.url("/v2/models/m")).await.0, 503);
    let writer = std::thread::spawn(move || std::fs::write(&fifo, http_support::MODEL).unwrap());
    server.wait_ready(&c).await;
    writer.join().unwrap();
    assert_eq!(
        post(&c, server.url("/v1/models/m:rank"), rank_body(&ROWS))
            .await
            .0,
        200
    );
    let log = server.log_text();
    assert!(
        log.contains("model loaded") && log.contains("\"trees\":3"),
        "{log}"
    );
}

#[tokio::test]
async fn a_model_that_cannot_load_exits_non_zero_naming_the_path() {
    let dir = TempDir::new("bad");
    let path = dir.0.join("model.txt");
    std::fs::write(&path, "tree\nversion=v4\nthis is not a model\n").unwrap();
    let mut server = Launch::new(&path).start();
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let log = server.log_text();
    assert!(
        log.contains("MODEL_PATH") && log.contains("model.txt"),
        "{log}"
    );
}

/// Reads an HTTP/1.1 response until the server closes the connection.
fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    let dir = TempDir::new("drain");
    let mut server = Launch::new(&dir.model())
        .arg("--shutdown-grace", "3s")
        .start();
    let c = client();
    server.wait_ready(&c).await;

    // A deliberately large request whose body is only half sent: it is in flight
    // for as long as the test wants.
    let rows: Vec<[f64; 3]> = (0..1000).map(|i| ROWS[i % 5]).collect();
    let body = rank_body(&rows);
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "POST /v1/models/m:rank HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();

    server.sigterm();
    // Readiness goes false at once (1.5 s leaves room for a loaded CI machine and
    // still lands inside the 3 s grace period), while requests are still served.
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        let (status, _) = get(&c, server.url("/ready")).await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still {status} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = client();
    let r = fresh
        .post(server.url("/v1/models/m:rank"))
        .body(rank_body(&ROWS))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a new request during the grace period is served"
    );
    assert_eq!(r.headers()["connection"], "close");
    drop(fresh);

    // After the grace period the listener is closed...
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&server.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 10 s after SIGTERM:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...yet the request in flight completes.
    stream.write_all(second).unwrap();
    let (status, v) = read_response(&mut stream);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ranking"].as_array().unwrap().len(), 1000);
    assert_eq!(v["ranking"][0], json!({"id": "d1", "score": EXPECTED[1]}));
    let exit = server.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{}", server.log_text());
}

#[tokio::test]
async fn a_second_signal_while_draining_exits_at_once() {
    let dir = TempDir::new("forced");
    let mut server = Launch::new(&dir.model())
        .arg("--shutdown-grace", "60s")
        .start();
    let c = client();
    server.wait_ready(&c).await;
    server.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&c, server.url("/ready")).await.0 != 503 {
        assert!(Instant::now() < deadline, "/ready never went 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.sigterm();
    // Well before the 60 s grace period would have ended.
    let exit = server.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(1), "{}", server.log_text());
    assert!(server.log_text().contains("second signal"));
}
