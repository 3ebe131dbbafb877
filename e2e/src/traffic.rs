//! Real traffic for canary tests: the records `rank-traffic` (e2e/src/bin) writes,
//! one per `:rank` request, and the figures a test asserts on: how many requests
//! were sent and failed in a time window, and which model version answered them.
//!
//! ```ignore
//! let run = TrafficRun::start("traffic", &rank_url, 50, &rows);
//! // ... the rollout ...
//! let records = run.stop();
//! let all = window(&records, 0, u64::MAX);
//! assert_eq!(all.failed, 0, "{all}");
//! ```

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::node::NodeProcess;

/// How many failed records a [`Window`] keeps for assertion messages.
const FAILURES_KEPT: usize = 5;

/// One request as `rank-traffic --out` records it (one JSON line each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the request was sent, Unix milliseconds.
    pub t: u64,
    /// Latency until the whole response was read (or the failure), milliseconds.
    pub ms: f64,
    /// The HTTP status; 0 when no response came (refused, reset, timeout).
    pub status: u16,
    /// The `"version"` of the response body: the model version that answered.
    pub version: Option<String>,
    /// The transport error, or the body's `"error"` text of a non-200 answer.
    pub error: Option<String>,
}

impl Record {
    /// Anything but a well-formed 200 answer: no response, an error status, or a
    /// 200 whose body was not a ranking (then `error` says why).
    pub fn failed(&self) -> bool {
        self.status != 200 || self.error.is_some()
    }
}

/// Reads a `--out` file, also while rank-traffic still writes it: a last line
/// without its newline is still being written and is left out. Panics, naming
/// the line, when a complete line is not a record.
pub fn read_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read rank-traffic records {}: {e}", path.display()));
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{}:{}: not a rank-traffic record ({e}): {line}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// The requests sent in a time window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub sent: u64,
    pub failed: u64,
    /// Answers per model version (whatever their status: a version that answers
    /// with errors still counts as answering).
    pub by_version: BTreeMap<String, u64>,
    /// The first few failed records, for assertion messages.
    pub failures: Vec<Record>,
}

impl Window {
    /// The fraction of all requests sent in the window that `version` answered.
    pub fn share(&self, version: &str) -> f64 {
        match (self.by_version.get(version), self.sent) {
            (Some(&n), sent) if sent > 0 => n as f64 / sent as f64,
            _ => 0.0,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sent {}, failed {}", self.sent, self.failed)?;
        for (version, n) in &self.by_version {
            write!(f, ", {version} {n} ({:.1}%)", self.share(version) * 100.0)?;
        }
        if let Some(first) = self.failures.first() {
            write!(
                f,
                "; first failure: status {} {}",
                first.status,
                first.error.as_deref().unwrap_or("(no error text)")
            )?;
        }
        Ok(())
    }
}

/// The requests SENT in `[from_ms, to_ms)` (Unix milliseconds).
pub fn window(records: &[Record], from_ms: u64, to_ms: u64) -> Window {
    let mut w = Window::default();
    for record in records.iter().filter(|r| (from_ms..to_ms).contains(&r.t)) {
        w.sent += 1;
        if record.failed() {
            w.failed += 1;
            if w.failures.len() < FAILURES_KEPT {
                w.failures.push(record.clone());
            }
        }
        if let Some(version) = &record.version {
            *w.by_version.entry(version.clone()).or_default() += 1;
        }
    }
    w
}

/// The built `rank-traffic` binary.
pub fn binary() -> PathBuf {
    let path = crate::operator::target_dir().join("debug/rank-traffic");
    assert!(
        path.is_file(),
        "{} does not exist: build it first (`cargo build -p mlctl-e2e --bins`; make test does)",
        path.display()
    );
    path
}

/// `rank-traffic` running in the real node's network namespace, so a Service
/// ClusterIP goes through kube-proxy as from a pod.
pub struct TrafficRun {
    process: NodeProcess,
    out: PathBuf,
}

impl TrafficRun {
    /// Starts sending `rate` queries per second to `url` (a `:rank` URL) with
    /// documents from `rows` (e.g. examples/demo/queries.json). Returns once it
    /// sends.
    pub fn start(label: &str, url: &str, rate: u32, rows: &Path) -> Self {
        let dir = crate::operator::target_dir().join("e2e-node");
        std::fs::create_dir_all(&dir).expect("create target/e2e-node");
        let out = dir.join(format!("{label}-{}.jsonl", crate::unique_suffix()));
        let (binary, rate, rows, out_arg) = (
            binary(),
            rate.to_string(),
            rows.display().to_string(),
            out.display().to_string(),
        );
        let args = [
            "--url", url, "--rate", &rate, "--rows", &rows, "--out", &out_arg,
        ];
        let process = NodeProcess::start(
            label,
            &binary.display().to_string(),
            &args,
            "rank-traffic: sending",
            Duration::from_secs(30),
        );
        Self { process, out }
    }

    /// Its `--out` file (under target/e2e-node/): [`read_records`] reads it while
    /// it runs, up to the last flush (every second).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Its log (progress lines and the final summary).
    pub fn log(&self) -> &Path {
        &self.process.log
    }

    /// Stops sending (SIGTERM), waits for the answers still in flight, asserts
    /// a clean exit and returns every record.
    pub fn stop(mut self) -> Vec<Record> {
        let status = self.process.terminate(Duration::from_secs(10));
        let log = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "rank-traffic did not exit 0 within 10 s of SIGTERM ({status:?}):\n{log}"
        );
        read_records(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(t: u64, status: u16, version: Option<&str>, error: Option<&str>) -> Record {
        Record {
            t,
            ms: 1.5,
            status,
            version: version.map(str::to_string),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn window_counts_requests_sent_in_the_half_open_interval() {
        let records = [
            record(999, 200, Some("v1"), None),
            record(1000, 200, Some("v1"), None),
            record(1500, 200, Some("v2"), None),
            record(1999, 0, None, Some("connect: connection refused")),
            record(2000, 200, Some("v2"), None),
        ];
        let w = window(&records, 1000, 2000);
        assert_eq!(w.sent, 3);
        assert_eq!(w.failed, 1);
        assert_eq!(
            w.by_version,
            BTreeMap::from([("v1".to_string(), 1), ("v2".to_string(), 1)])
        );
        assert_eq!(w.failures, vec![records[3].clone()]);
    }

    #[test]
    fn failed_means_anything_but_a_well_formed_200() {
        let cases = [
            (record(0, 200, Some("v1"), None), false),
            (record(0, 0, None, Some("timeout after 2s")), true),
            (
                record(0, 400, None, Some("8 features, the model has 7")),
                true,
            ),
            (record(0, 503, Some("v1"), None), true),
            (record(0, 200, None, Some("malformed response")), true),
        ];
        for (r, failed) in cases {
            assert_eq!(r.failed(), failed, "{r:?}");
        }
    }

    #[test]
    fn share_is_a_fraction_of_all_sent_and_zero_when_nothing_was_sent() {
        let mut records: Vec<Record> = (0..8).map(|t| record(t, 200, Some("v1"), None)).collect();
        records.push(record(8, 200, Some("v2"), None));
        records.push(record(9, 0, None, Some("reset")));
        let w = window(&records, 0, 10);
        assert_eq!(w.share("v1"), 0.8);
        assert_eq!(w.share("v2"), 0.1);
        assert_eq!(w.share("v3"), 0.0);
        assert_eq!(window(&records, 100, 200).share("v1"), 0.0);
    }

    #[test]
    fn a_window_keeps_only_the_first_failures() {
        let records: Vec<Record> = (0..20).map(|t| record(t, 0, None, Some("x"))).collect();
        let w = window(&records, 0, 20);
        assert_eq!(w.failed, 20);
        assert_eq!(w.failures.len(), FAILURES_KEPT);
        assert_eq!(w.failures[0].t, 0);
    }

    #[test]
    fn display_shows_counts_shares_and_the_first_failure() {
        let records = [
            record(0, 200, Some("v1"), None),
            record(1, 200, Some("v1"), None),
            record(2, 200, Some("v1"), None),
            record(3, 400, Some("v2"), Some("bad features")),
        ];
        assert_eq!(
            window(&records, 0, 10).to_string(),
            "sent 4, failed 1, v1 3 (75.0%), v2 1 (25.0%); first failure: status 400 bad features"
        );
    }

    #[test]
    fn a_line_still_being_written_is_left_out() {
        let path =
            std::env::temp_dir().join(format!("rank-traffic-{}.jsonl", crate::unique_suffix()));
        let line = serde_json::to_string(&record(1, 200, Some("v1"), None)).unwrap();
        std::fs::write(&path, format!("{line}\n{}", &line[..10])).unwrap();
        let read = read_records(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(read, vec![record(1, 200, Some("v1"), None)]);
    }

    #[test]
    fn records_round_trip_through_a_jsonl_file() {
        let path =
            std::env::temp_dir().join(format!("rank-traffic-{}.jsonl", crate::unique_suffix()));
        let records = [
            record(1_700_000_000_000, 200, Some("2026-11-25.1"), None),
            record(1_700_000_000_010, 0, None, Some("timeout after 2s")),
        ];
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
        let read = read_records(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(read, records);
    }
}
