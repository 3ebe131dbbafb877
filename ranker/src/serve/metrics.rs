//! Prometheus metrics served at `GET /metrics`: ranking/infer request counts and
//! latency labelled with the model and version (what canary analysis queries),
//! the model's identity, and process metrics read from /proc at scrape time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::peer::PeerMetrics;

/// Buckets from 0.5 ms to 2.5 s: dense in the milliseconds, where a ranking p99 lives.
pub(super) const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    version: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    model: String,
    version: String,
    revision: String,
    format: String,
    trees: usize,
    features: usize,
}

/// The identity of the loaded model, for `ranker_model_info`.
#[derive(Debug, Clone)]
pub struct ModelIdentity {
    /// `MODEL_REVISION`.
    pub revision: String,
    /// `lightgbm`, `xgboost` or `onnx`.
    pub format: String,
    /// Trees scored.
    pub trees: usize,
    /// Input columns.
    pub features: usize,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    model: String,
    version: String,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    documents: Counter,
    info: Family<InfoLabels, Gauge>,
    /// The shadow and interleave families (docs/runtime-contract.md).
    pub peer: PeerMetrics,
}

impl Metrics {
    /// Registers every metric for one served model.
    pub fn new(model: &str, version: &str) -> Metrics {
        let mut registry = Registry::default();
        let labels = ModelLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ranker_requests",
            "Ranking and infer requests by HTTP status (probes and /metrics are not counted)",
            requests.clone(),
        );
        let duration_family =
            Family::<ModelLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(DURATION_BUCKETS)
            });
        registry.register(
            "ranker_request_duration_seconds",
            "Time from a ranking or infer request's headers to its response body, in seconds",
            duration_family.clone(),
        );
        let documents_family = Family::<ModelLabels, Counter>::default();
        registry.register(
            "ranker_documents_scored",
            "Documents (rows) scored by successful ranking and infer requests",
            documents_family.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "ranker_model_info",
            "The loaded model (value 1), with its revision, format, trees and features",
            info.clone(),
        );
        let peer = PeerMetrics::register(&mut registry, model);
        registry.register_collector(Box::new(ProcessCollector {
            start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        }));
        // The handles share the families' atomics, so no lookup per request.
        let duration = duration_family.get_or_create(&labels).clone();
        let documents = documents_family.get_or_create(&labels).clone();
        Metrics {
            registry,
            model: model.to_owned(),
            version: version.to_owned(),
            requests,
            duration,
            documents,
            info,
            peer,
        }
    }

    /// Records the loaded model (`ranker_model_info` = 1).
    pub fn set_model(&self, m: &ModelIdentity) {
        self.info
            .get_or_create(&InfoLabels {
                model: self.model.clone(),
                version: self.version.clone(),
                revision: m.revision.clone(),
                format: m.format.clone(),
                trees: m.trees,
                features: m.features,
            })
            .set(1);
    }

    /// Records one ranking or infer request.
    pub fn observe(&self, code: u16, elapsed: Duration, documents: usize) {
        self.requests
            .get_or_create(&RequestLabels {
                model: self.model.clone(),
                version: self.version.clone(),
                code,
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
        if documents > 0 {
            self.documents.inc_by(documents as u64);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `process_*` metrics from /proc/self, read on each scrape (zero where /proc is
/// unreadable, e.g. on macOS during development).
#[derive(Debug)]
struct ProcessCollector {
    start: Duration,
}

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every architecture
/// the kernel's user ABI supports (sysconf would need libc and `unsafe`).
const USER_HZ: f64 = 100.0;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cpu = ConstCounter::new(cpu_seconds().unwrap_or(0.0));
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let rss = ConstGauge::new(resident_bytes().unwrap_or(0) as i64);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let start = ConstGauge::new(self.start.as_secs_f64());
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            None,
            start.metric_type(),
        )?)?;
        let fds = ConstGauge::new(open_fds().unwrap_or(0) as i64);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_with_labels() {
        let m = Metrics::new("m", "v1");
        m.set_model(&ModelIdentity {
            revision: "abc".into(),
            format: "lightgbm".into(),
            trees: 3,
            features: 4,
        });
        m.observe(200, Duration::from_micros(700), 10);
        m.observe(400, Duration::from_millis(3), 0);
        let text = m.encode().unwrap();
        for want in [
            r#"ranker_requests_total{model="m",version="v1",code="200"} 1"#,
            r#"ranker_requests_total{model="m",version="v1",code="400"} 1"#,
            r#"ranker_request_duration_seconds_bucket{le="0.001",model="m",version="v1"} 1"#,
            r#"ranker_request_duration_seconds_count{model="m",version="v1"} 2"#,
            r#"ranker_documents_scored_total{model="m",version="v1"} 10"#,
            r#"ranker_model_info{model="m",version="v1",revision="abc",format="lightgbm",trees="3",features="4"} 1"#,
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(resident_bytes().unwrap_or(0) > 0);
        assert!(open_fds().unwrap_or(0) > 0);
    }
}
