use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use mlctl_crds::http::HttpHeader;

use super::super::guard::AllowEntry;
use super::super::secrets::StaticSource;
use super::*;

/// A prober that may reach 127.0.0.1 (the test servers), reading Secrets
/// from `secrets`.
pub(crate) fn prober_with(secrets: StaticSource) -> Prober {
    let allow = vec![AllowEntry::Network("127.0.0.1/32".parse().unwrap())];
    Prober::new(
        AllowList::new(allow, "cluster.local"),
        Duration::from_secs(30),
        Arc::new(secrets),
    )
}

pub(crate) fn prober() -> Prober {
    prober_with(StaticSource::default())
}

/// A one-connection-at-a-time HTTP/1.1 server on 127.0.0.1 that answers every
/// request with the same canned response (or never, when `status` is None).
/// It stops when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
    /// The number of requests received so far.
    received: tokio::sync::watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start(status: Option<u16>, body: &str) -> Server {
        Server::start_with(status, "", body).await
    }

    /// `extra_headers`: lines such as `Location: http://x/\r\n`.
    pub(crate) async fn start_with(status: Option<u16>, extra_headers: &str, body: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let (count, received) = tokio::sync::watch::channel(0);
        let extra_headers = extra_headers.to_string();
        let body = body.to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(String::from_utf8_lossy(&head).into_owned());
                    seen.len()
                };
                count.send_replace(n);
                let Some(status) = status else {
                    held.push(socket); // never answer
                    continue;
                };
                let response = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\n\
                     {extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Server {
            addr,
            requests,
            received,
            task,
        }
    }

    /// Waits until `n` requests have arrived.
    pub(crate) async fn wait_for_requests(&self, n: usize) {
        let mut received = self.received.clone();
        received.wait_for(|seen| *seen >= n).await.unwrap();
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn request(&self, i: usize) -> String {
        self.requests.lock().unwrap()[i].clone()
    }
}

pub(crate) fn vars() -> Vars {
    Vars {
        model: "ranker".into(),
        namespace: "shop".into(),
        version: "1.0 beta/x".into(),
        track: "canary".into(),
        stable_version: "0.9".into(),
        canary_version: "1.0 beta/x".into(),
    }
}

pub(crate) fn prometheus(address: &str, timeout: Option<&str>) -> MetricProvider {
    MetricProvider {
        prometheus: Some(PrometheusProvider {
            address: address.into(),
            query: r#"sum(rate(errors{model="{{model}}",track="{{track}}"}[1m]))"#.into(),
            timeout: timeout.map(Into::into),
            ..PrometheusProvider::default()
        }),
        web: None,
        job: None,
    }
}

pub(crate) fn web(url: &str, json_path: &str) -> MetricProvider {
    MetricProvider {
        prometheus: None,
        web: Some(WebProvider {
            url: url.into(),
            json_path: json_path.into(),
            headers: vec![HttpHeader {
                name: "X-Scope".into(),
                value: Some("ns {{namespace}}".into()),
                value_from: None,
            }],
            timeout: None,
            tls_config: None,
        }),
        job: None,
    }
}

pub(crate) fn interleave(address: &str) -> InterleavePrometheus {
    InterleavePrometheus {
        address: address.into(),
        ..InterleavePrometheus::default()
    }
}

pub(crate) fn vector(values: &[&str]) -> String {
    let result: Vec<_> = values
        .iter()
        .map(|v| json!({"metric": {"pod": "p"}, "value": [1_700_000_000.5, v]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
}

async fn prom(status: u16, body: &str) -> Result<Option<f64>, String> {
    let server = Server::start(Some(status), body).await;
    prober()
        .measure(&prometheus(&server.url(), None), &vars())
        .await
}

#[tokio::test]
async fn prometheus_one_sample_and_the_query_sent() {
    let server = Server::start(Some(200), &vector(&["0.0123"])).await;
    let provider = prometheus(&format!("{}/", server.url()), None);
    let got = prober().measure(&provider, &vars()).await;
    assert_eq!(got, Ok(Some(0.0123)));
    let head = server.request(0);
    let path = head.split_whitespace().nth(1).unwrap();
    let url = Url::parse(&format!("http://x{path}")).unwrap();
    assert_eq!(url.path(), "/api/v1/query");
    let query: Vec<_> = url.query_pairs().collect();
    assert_eq!(query.len(), 1);
    assert_eq!(query[0].0, "query");
    assert_eq!(
        query[0].1,
        r#"sum(rate(errors{model="ranker",track="canary"}[1m]))"#
    );
}

#[tokio::test]
async fn prometheus_results() {
    assert_eq!(prom(200, &vector(&[])).await, Ok(None));
    assert!(
        prom(200, &vector(&["NaN"]))
            .await
            .unwrap()
            .unwrap()
            .is_nan()
    );
    assert_eq!(prom(200, &vector(&["+Inf"])).await, Ok(Some(f64::INFINITY)));
    let scalar =
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "42"]}});
    assert_eq!(prom(200, &scalar.to_string()).await, Ok(Some(42.0)));

    let many = prom(200, &vector(&["1", "2"])).await.unwrap_err();
    assert!(
        many.ends_with("query returned 2 series; aggregate it to one, e.g. with sum(...)"),
        "{many}"
    );
    assert!(many.starts_with("prometheus http://127.0.0.1:"), "{many}");

    let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
    let e = prom(200, &matrix.to_string()).await.unwrap_err();
    assert!(e.contains("returned a matrix"), "{e}");

    let garbage = prom(200, &vector(&["abc"])).await.unwrap_err();
    assert!(
        garbage.ends_with("the sample value is not a number"),
        "{garbage}"
    );
    assert!(!garbage.contains("abc"), "{garbage}");
}

#[tokio::test]
async fn prometheus_errors() {
    let bad = json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"});
    let e = prom(400, &bad.to_string()).await.unwrap_err();
    assert!(e.contains("(HTTP 400 Bad Request: bad_data;"), "{e}");
    assert!(!e.contains("parse error"), "the body's text stays out: {e}");
    // An errorType Prometheus does not define is not repeated either.
    let odd = json!({"status": "error", "errorType": "s3cr3t", "error": "x"});
    let e = prom(422, &odd.to_string()).await.unwrap_err();
    assert!(
        e.contains("(HTTP 422 Unprocessable Entity;") && !e.contains("s3cr3t"),
        "{e}"
    );

    let e = prom(500, "oops, internal").await.unwrap_err();
    assert_eq!(
        e,
        format!(
            "prometheus {}: HTTP 500 Internal Server Error",
            e.split(' ').nth(1).unwrap().trim_end_matches(':')
        )
    );

    let e = prom(200, "<html>not json</html>").await.unwrap_err();
    assert!(e.ends_with(": response is not JSON"), "{e}");

    let e = prober()
        .measure(
            &prometheus("http://127.0.0.1:1", Some("ten seconds")),
            &vars(),
        )
        .await
        .unwrap_err();
    assert!(e.starts_with("prometheus.timeout: invalid duration"), "{e}");
}

#[tokio::test]
async fn connection_refused_names_the_address() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let e = prober()
        .measure(&prometheus(&address, None), &vars())
        .await
        .unwrap_err();
    assert!(
        e.starts_with(&format!("prometheus {address}: cannot connect")),
        "{e}"
    );
}

#[tokio::test]
async fn timeout() {
    let server = Server::start(None, "").await;
    let started = Instant::now();
    let e = prober()
        .measure(&prometheus(&server.url(), Some("200ms")), &vars())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        e,
        format!("prometheus {}: no answer within 200ms", server.url())
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn web_substitutes_sends_headers_and_follows_the_path() {
    let body = json!({"data": {"ndcg": 0.71}, "items": [{"value": "0.5"}]}).to_string();
    let server = Server::start(Some(200), &body).await;
    let url = format!("{}/metrics/{{{{model}}}}?v={{{{version}}}}", server.url());
    let prober = prober();
    assert_eq!(
        prober.measure(&web(&url, "$.data.ndcg"), &vars()).await,
        Ok(Some(0.71))
    );
    let head = server.request(0).to_lowercase();
    assert!(
        head.starts_with("get /metrics/ranker?v=1.0%20beta%2fx http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-scope: ns shop\r\n"), "{head}");
    assert_eq!(
        prober
            .measure(&web(&url, "$.items[0].value"), &vars())
            .await,
        Ok(Some(0.5))
    );
    let e = prober
        .measure(&web(&url, "$.data.recall"), &vars())
        .await
        .unwrap_err();
    assert!(
        e.ends_with(r#"jsonPath "$.data.recall": no key "recall" in the object at $["data"]"#),
        "{e}"
    );
}

#[tokio::test]
async fn web_errors() {
    let server = Server::start(Some(503), "busy").await;
    let e = prober()
        .measure(&web(&server.url(), "$.x"), &vars())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        format!("web {}: HTTP 503 Service Unavailable", server.url())
    );
    let server = Server::start(Some(200), "not json").await;
    let e = prober()
        .measure(&web(&server.url(), "$.x"), &vars())
        .await
        .unwrap_err();
    assert_eq!(e, format!("web {}: response is not JSON", server.url()));
    let e = prober()
        .measure(&web("not a url", "$.x"), &vars())
        .await
        .unwrap_err();
    assert!(
        e.starts_with("web.url \"not a url\" is not a valid URL"),
        "{e}"
    );
    let e = prober()
        .measure(&MetricProvider::default(), &vars())
        .await
        .unwrap_err();
    assert!(e.contains("exactly one of prometheus, web or job"), "{e}");
}

#[test]
fn json_paths() {
    let doc = json!({
        "data": {"ndcg": 0.71, "text": "0.25", "word": "high", "none": null, "flag": true},
        "items": [{"value": 3}, {"value": "1e-3"}],
        "a key": {"x": 7},
        "nested": [[1, 2], [3, 4]]
    });
    let ok = [
        ("$.data.ndcg", Some(0.71)),
        ("data.ndcg", Some(0.71)),
        ("$.data.text", Some(0.25)),
        ("$.data.none", None),
        ("$.items[0].value", Some(3.0)),
        ("$.items[1].value", Some(0.001)),
        ("$['a key'].x", Some(7.0)),
        ("$[\"a key\"][\"x\"]", Some(7.0)),
        ("$.nested[1][0]", Some(3.0)),
        ("items[0].value", Some(3.0)),
    ];
    for (path, want) in ok {
        let got = json_path(&doc, path).and_then(|v| number_at(v, path));
        assert_eq!(got, Ok(want), "{path}");
    }
    let bad = [
        ("$.data.word", "points at a string that is not a number"),
        ("$.data.flag", "points at a boolean, not a number"),
        ("$.data", "points at an object"),
        (
            "$.items[5].value",
            "no index 5 in the array at $[\"items\"]",
        ),
        (
            "$.data.ndcg.x",
            "no key \"x\" in the number at $[\"data\"][\"ndcg\"]",
        ),
        ("$..data", "a `.` needs a key after it"),
        ("$.items[x]", "brackets hold an index"),
        ("$.items[0", "`[` is not closed"),
        ("$data", "at position 2: expected `.` or `[`"),
    ];
    for (path, fragment) in bad {
        let e = json_path(&doc, path)
            .and_then(|v| number_at(v, path))
            .unwrap_err();
        assert!(e.contains(fragment), "{path}: {e}");
        assert!(
            e.contains(&format!("{path:?}")),
            "{path}: {e} must name the path"
        );
    }
    // The whole document.
    assert_eq!(
        json_path(&json!(5), "$").and_then(|v| number_at(v, "$")),
        Ok(Some(5.0))
    );
}

#[test]
fn substitution_and_numbers() {
    let v = vars();
    assert_eq!(
        substitute(
            "{{model}}/{{namespace}}/{{version}}/{{track}}/{{other}}",
            &v,
            false
        ),
        "ranker/shop/1.0 beta/x/canary/{{other}}"
    );
    assert_eq!(
        substitute("http://h/{{version}}", &v, true),
        "http://h/1.0%20beta%2Fx"
    );
    assert_eq!(
        substitute("{{stable_version}}->{{canary_version}}", &v, false),
        "0.9->1.0 beta/x"
    );
    assert_eq!(parse_number(" 12 "), Some(12.0));
    assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
    assert_eq!(parse_number("1e3"), Some(1000.0));
    assert_eq!(parse_number("infinity"), None);
    assert_eq!(parse_number(""), None);
    assert_eq!(parse_number("0x10"), None);
}

#[tokio::test]
async fn vectors_by_label_sum_series_and_refuse_other_shapes() {
    let body = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"winner": "canary"}, "value": [1.0, "12"]},
        {"metric": {"winner": "stable"}, "value": [1.0, "3"]},
        {"metric": {"winner": "stable"}, "value": [1.0, "2"]},
        {"metric": {}, "value": [1.0, "1"]}
    ]}})
    .to_string();
    let server = Server::start(Some(200), &body).await;
    let got = prober()
        .prometheus_by_label(&interleave(&server.url()), "q", "winner", &vars())
        .await
        .unwrap();
    assert_eq!(
        got,
        BTreeMap::from([
            (String::new(), 1.0),
            ("canary".to_string(), 12.0),
            ("stable".to_string(), 5.0)
        ])
    );
    let scalar =
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "2"]}})
            .to_string();
    let server = Server::start(Some(200), &scalar).await;
    let err = prober()
        .prometheus_by_label(&interleave(&server.url()), "q", "winner", &vars())
        .await
        .unwrap_err();
    assert!(err.contains("instant vector by \"winner\""), "{err}");
    let failed =
        json!({"status": "error", "errorType": "bad_data", "error": "parse error"}).to_string();
    let server = Server::start(Some(400), &failed).await;
    let err = prober()
        .prometheus_by_label(&interleave(&server.url()), "q", "winner", &vars())
        .await
        .unwrap_err();
    assert!(
        err.contains("bad_data") && !err.contains("parse error"),
        "{err}"
    );
}
