//! A metrics endpoint the test controls, scraped by the cluster's real
//! Prometheus (`e2e/cluster up --with-prometheus`): the test sets gauge
//! values per label set, Prometheus scrapes them through a file_sd target,
//! and the operator's analysis queries Prometheus as it would in production.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Series = BTreeMap<(String, String), f64>;

/// The Prometheus base URL of the local cluster, when it runs Prometheus.
pub fn prometheus_url() -> Option<String> {
    std::env::var("MLCTL_E2E_PROMETHEUS_URL").ok()
}

/// A test-owned `/metrics` endpoint on 127.0.0.1, registered with Prometheus
/// while it lives; the server and the registration end on drop.
pub struct MetricsEndpoint {
    series: Arc<Mutex<Series>>,
    /// `127.0.0.1:port`.
    pub address: String,
    /// The `e2e_test` label Prometheus attaches to every scraped series.
    pub id: String,
    target_file: PathBuf,
    server: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Starts the endpoint and registers it as a scrape target labelled
    /// `e2e_test="<id>"`.
    pub async fn start(id: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"))
            .to_string();
        let series: Arc<Mutex<Series>> = Arc::default();
        let shared = series.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let body = render(&shared);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        let dir = crate::cluster_dir().join("prometheus").join("targets");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let target_file = dir.join(format!("{id}.json"));
        let target = serde_json::json!([{"targets": [address], "labels": {"e2e_test": id}}]);
        // Written whole, then renamed: Prometheus never reads half a file.
        let tmp = dir.join(format!(".{id}.json.tmp"));
        std::fs::write(&tmp, target.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &target_file)
            .unwrap_or_else(|e| panic!("rename {}: {e}", target_file.display()));
        MetricsEndpoint {
            series,
            address,
            id: id.to_string(),
            target_file,
            server,
        }
    }

    /// Sets gauge `name` with the label `version="<version>"` to `value`.
    pub fn set(&self, name: &str, version: &str, value: f64) {
        if let Ok(mut s) = self.series.lock() {
            s.insert((name.to_string(), version.to_string()), value);
        }
    }

    /// Removes the series: the next scrapes have no sample for it.
    pub fn remove(&self, name: &str, version: &str) {
        if let Ok(mut s) = self.series.lock() {
            s.remove(&(name.to_string(), version.to_string()));
        }
    }

    /// Waits until Prometheus returns `want` for the instant `query`; see
    /// [`wait_for_value`].
    pub async fn wait_for_value(&self, query: &str, want: f64, timeout: Duration) {
        wait_for_value(query, want, timeout).await;
    }
}

/// The cluster Prometheus' answer to the instant `query` when it is one
/// number (None: no data, several series, or no Prometheus).
pub async fn query_value(query: &str) -> Option<f64> {
    let base = prometheus_url()?;
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// Waits until the cluster's Prometheus returns `want` for the instant `query`
/// (Prometheus has no watch API: this asks again every 500 ms until the
/// deadline, then fails with the last answer).
pub async fn wait_for_value(query: &str, want: f64, timeout: Duration) {
    let Some(base) = prometheus_url() else {
        panic!("MLCTL_E2E_PROMETHEUS_URL is not set: start the cluster with --with-prometheus");
    };
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let res = http
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await;
        if let Ok(r) = res
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            let value = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok());
            if value == Some(want) {
                return;
            }
            last = v.to_string();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "Prometheus never returned {want} for {query} within {timeout:?}; last answer: {last}"
            );
        }
        // Polling interval (not synchronisation: the loop ends on the
        // condition or the deadline).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.target_file);
        self.server.abort();
    }
}

fn render(series: &Mutex<Series>) -> String {
    let Ok(s) = series.lock() else {
        return String::new();
    };
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    for ((name, version), value) in s.iter() {
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} gauge\n"));
        }
        out.push_str(&format!("{name}{{version=\"{version}\"}} {value}\n"));
    }
    out
}
