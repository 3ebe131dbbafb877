//! What rank-traffic counts: every answer and those since the last progress
//! tick, as the progress line, the `--stats` file and the summary at exit show
//! them.

use std::collections::BTreeMap;
use std::time::Duration;

use mlctl_e2e::traffic::Record;
use serde::Serialize;

use super::show_duration;

/// What the progress line and the stats file describe.
pub struct Progress {
    pub elapsed: Duration,
    pub sent: u64,
    pub rate: f64,
    pub window: Duration,
}

/// Every answer so far, and those since the last tick.
#[derive(Default)]
pub struct Tally {
    ok: u64,
    failed: u64,
    by_version: BTreeMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
    latencies_ms: Vec<f64>,
    last: Last,
}

/// The answers since the last progress tick.
#[derive(Default)]
struct Last {
    failed: u64,
    by_version: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
}

impl Tally {
    /// Starts counting a new progress interval (after its line was shown).
    pub fn start_interval(&mut self) {
        self.last = Last::default();
    }

    /// Counts one answer.
    pub fn add(&mut self, record: Record) {
        if record.failed() {
            self.failed += 1;
            self.last.failed += 1;
        } else {
            self.ok += 1;
        }
        *self.by_status.entry(record.status).or_default() += 1;
        if let Some(version) = record.version {
            *self.last.by_version.entry(version.clone()).or_default() += 1;
            *self.by_version.entry(version).or_default() += 1;
        }
        self.latencies_ms.push(record.ms);
        self.last.latencies_ms.push(record.ms);
    }

    /// `rank-traffic:   12s  50/s | last 1s: v1 40 (80%)  v2 10 (20%)  failed 0  p99 3.1 ms | total 600 sent, 0 failed`
    pub fn progress_line(&self, p: &Progress) -> String {
        let answers = self.last.latencies_ms.len() as f64;
        let mut line = format!(
            "rank-traffic: {:>4}s  {}/s | last {}:",
            p.elapsed.as_secs(),
            p.rate,
            show_duration(p.window)
        );
        for (version, n) in &self.last.by_version {
            line += &format!(" {version} {n} ({:.0}%) ", *n as f64 * 100.0 / answers);
        }
        if self.last.latencies_ms.is_empty() {
            line += " no answers ";
        }
        line += &format!(" failed {}", self.last.failed);
        match percentile(&self.last.latencies_ms, 0.99) {
            Some(p99) => line += &format!("  p99 {p99:.1} ms"),
            None => line += "  p99 -",
        }
        line + &format!(" | total {} sent, {} failed", p.sent, self.failed)
    }

    pub fn stats(&self, p: &Progress) -> Stats<'_> {
        Stats {
            elapsed_s: (p.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            sent: p.sent,
            ok: self.ok,
            failed: self.failed,
            by_version: &self.by_version,
            last: LastStats {
                by_version: &self.last.by_version,
                failed: self.last.failed,
                p99_ms: percentile(&self.last.latencies_ms, 0.99),
            },
        }
    }

    pub fn summary(&self, sent: u64) -> Summary<'_> {
        Summary {
            sent,
            ok: self.ok,
            failed: self.failed,
            by_version: &self.by_version,
            by_status: &self.by_status,
            p50_ms: percentile(&self.latencies_ms, 0.50),
            p99_ms: percentile(&self.latencies_ms, 0.99),
            max_ms: percentile(&self.latencies_ms, 1.0),
        }
    }
}

/// The `--stats` file (structs, not `json!`, to keep this field order).
#[derive(Serialize)]
pub struct Stats<'a> {
    elapsed_s: f64,
    sent: u64,
    ok: u64,
    failed: u64,
    by_version: &'a BTreeMap<String, u64>,
    last: LastStats<'a>,
}

#[derive(Serialize)]
pub struct LastStats<'a> {
    by_version: &'a BTreeMap<String, u64>,
    failed: u64,
    p99_ms: Option<f64>,
}

/// The summary line printed at exit. Latencies are of every request, failed
/// ones included (as the ranker's own duration histogram counts them).
#[derive(Serialize)]
pub struct Summary<'a> {
    sent: u64,
    ok: u64,
    failed: u64,
    by_version: &'a BTreeMap<String, u64>,
    /// Status codes as keys ("200", "0"): serde_json writes integer keys as strings.
    by_status: &'a BTreeMap<u16, u64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// The nearest-rank percentile (as `ranker-load` computes it), rounded to µs.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted
        .get(rank - 1)
        .map(|ms| (ms * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.99), None);
    }

    #[test]
    fn summary_and_stats_are_one_json_line_in_the_documented_order() {
        let mut tally = Tally::default();
        for (ms, status, version) in [(2.0, 200, Some("v1")), (4.0, 0, None)] {
            tally.add(Record {
                t: 0,
                ms,
                status,
                version: version.map(str::to_string),
                error: (status != 200).then(|| "connect: refused".to_string()),
            });
        }
        assert_eq!(
            serde_json::to_string(&tally.summary(2)).unwrap(),
            r#"{"sent":2,"ok":1,"failed":1,"by_version":{"v1":1},"by_status":{"0":1,"200":1},"p50_ms":2.0,"p99_ms":4.0,"max_ms":4.0}"#
        );
        let progress = Progress {
            elapsed: Duration::from_millis(1234),
            sent: 3,
            rate: 2.0,
            window: Duration::from_secs(1),
        };
        assert_eq!(
            serde_json::to_string(&tally.stats(&progress)).unwrap(),
            r#"{"elapsed_s":1.2,"sent":3,"ok":1,"failed":1,"by_version":{"v1":1},"last":{"by_version":{"v1":1},"failed":1,"p99_ms":4.0}}"#
        );
    }

    #[test]
    fn the_progress_line_shows_versions_in_name_order() {
        let mut tally = Tally::default();
        for (version, n) in [("v2", 1), ("v1", 4)] {
            for _ in 0..n {
                tally.add(Record {
                    t: 0,
                    ms: 3.1,
                    status: 200,
                    version: Some(version.into()),
                    error: None,
                });
            }
        }
        let progress = Progress {
            elapsed: Duration::from_secs(12),
            sent: 5,
            rate: 50.0,
            window: Duration::from_secs(1),
        };
        assert_eq!(
            tally.progress_line(&progress),
            "rank-traffic:   12s  50/s | last 1s: v1 4 (80%)  v2 1 (20%)  failed 0  p99 3.1 ms | total 5 sent, 0 failed"
        );
    }
}
