//! The peer metrics of docs/runtime-contract.md ("Metrics"), registered in the
//! server's registry. Label values come from the config (the operator) or from
//! impression ids (clients), so the version pairs a client can create are capped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::config::{Mode, PeerConfig};
use crate::serve::metrics::DURATION_BUCKETS;

/// `ranker_shadow_agreement` buckets: −1, −0.5, 0, 0.1 … 0.9, 0.95, 0.99, 1.
const AGREEMENT_BUCKETS: [f64; 15] = [
    -1.0, -0.5, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
];

/// `ranker_shadow_score_shift` buckets: 0.001 … 100, about ×3 apart.
const SHIFT_BUCKETS: [f64; 11] = [
    0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0,
];

/// Version pairs `ranker_interleave_outcomes_total` holds at most: feedback
/// names its pair through the impression, and a client must not be able to grow
/// the exposition without bound.
const MAX_OUTCOME_PAIRS: usize = 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    model: String,
    version: String,
    canary_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    model: String,
    version: String,
    canary_version: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    model: String,
    version: String,
    canary_version: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MeasureLabels {
    model: String,
    version: String,
    canary_version: String,
    measure: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WinnerLabels {
    model: String,
    version: String,
    canary_version: String,
    winner: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The peer metric families (cloning shares them).
#[derive(Clone, Debug)]
pub struct PeerMetrics {
    model: String,
    active: Family<ActiveLabels, Gauge>,
    shadow_queries: Family<ResultLabels, Counter>,
    agreement: Histograms<MeasureLabels>,
    score_shift: Histograms<PairLabels>,
    canary_duration: Histograms<PairLabels>,
    interleave_queries: Family<ResultLabels, Counter>,
    outcomes: Family<WinnerLabels, Counter>,
    outcome_pairs: Arc<Mutex<HashSet<(String, String)>>>,
}

/// The series one shadow config writes, looked up once when it applies.
#[derive(Debug)]
pub struct ShadowSeries {
    pub compared: Counter,
    pub canary_error: Counter,
    pub timeout: Counter,
    pub dropped: Counter,
    pub ndcg: Histogram,
    pub overlap: Histogram,
    pub kendall_tau: Histogram,
    pub score_shift: Histogram,
    pub canary_duration: Histogram,
}

/// The series one interleave config writes.
#[derive(Debug)]
pub struct InterleaveSeries {
    pub interleaved: Counter,
    pub canary_error: Counter,
    pub timeout: Counter,
}

/// The series of the active mode.
#[derive(Debug)]
pub enum Series {
    Shadow(ShadowSeries),
    Interleave(InterleaveSeries),
}

impl PeerMetrics {
    /// Registers the peer families (all empty until a config applies).
    pub fn register(registry: &mut Registry, model: &str) -> PeerMetrics {
        let m = PeerMetrics {
            model: model.to_owned(),
            active: Family::default(),
            shadow_queries: Family::default(),
            agreement: Family::new_with_constructor(|| Histogram::new(AGREEMENT_BUCKETS)),
            score_shift: Family::new_with_constructor(|| Histogram::new(SHIFT_BUCKETS)),
            canary_duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            interleave_queries: Family::default(),
            outcomes: Family::default(),
            outcome_pairs: Arc::default(),
        };
        registry.register(
            "ranker_peer_active",
            "1 while this pod applies a shadow or interleave config (absent otherwise)",
            m.active.clone(),
        );
        registry.register(
            "ranker_shadow_queries",
            "Shadowed queries by result: compared, canary_error, timeout, dropped (queue full)",
            m.shadow_queries.clone(),
        );
        registry.register(
            "ranker_shadow_agreement",
            "Agreement of the canary's ranking with the stable's per compared query (ndcg@k, overlap@k, kendall_tau)",
            m.agreement.clone(),
        );
        registry.register(
            "ranker_shadow_score_shift",
            "Mean absolute difference of the canary's and the stable's scores per compared query",
            m.score_shift.clone(),
        );
        registry.register(
            "ranker_shadow_canary_duration_seconds",
            "The canary's answer time to a shadowed query as the stable pod saw it, in seconds",
            m.canary_duration.clone(),
        );
        registry.register(
            "ranker_interleave_queries",
            "Interleaved queries by result: interleaved, canary_error, timeout",
            m.interleave_queries.clone(),
        );
        registry.register(
            "ranker_interleave_outcomes",
            "Interleaving feedback by winner (canary, stable, tie), for the version pair of the impression",
            m.outcomes.clone(),
        );
        m
    }

    fn pair(&self, config: &PeerConfig) -> PairLabels {
        PairLabels {
            model: self.model.clone(),
            version: config.stable_version.clone(),
            canary_version: config.canary_version.clone(),
        }
    }

    fn active_labels(&self, config: &PeerConfig) -> ActiveLabels {
        let p = self.pair(config);
        ActiveLabels {
            model: p.model,
            version: p.version,
            canary_version: p.canary_version,
            mode: config.mode.as_str().to_owned(),
        }
    }

    /// Marks `config` active and creates its series at 0.
    pub fn activate(&self, config: &PeerConfig) -> Series {
        self.active
            .get_or_create(&self.active_labels(config))
            .set(1);
        let p = self.pair(config);
        let result = |family: &Family<ResultLabels, Counter>, result: &str| {
            family
                .get_or_create(&ResultLabels {
                    model: p.model.clone(),
                    version: p.version.clone(),
                    canary_version: p.canary_version.clone(),
                    result: result.to_owned(),
                })
                .clone()
        };
        match config.mode {
            Mode::Shadow => {
                let measure = |measure: String| {
                    self.agreement
                        .get_or_create(&MeasureLabels {
                            model: p.model.clone(),
                            version: p.version.clone(),
                            canary_version: p.canary_version.clone(),
                            measure,
                        })
                        .clone()
                };
                Series::Shadow(ShadowSeries {
                    compared: result(&self.shadow_queries, "compared"),
                    canary_error: result(&self.shadow_queries, "canary_error"),
                    timeout: result(&self.shadow_queries, "timeout"),
                    dropped: result(&self.shadow_queries, "dropped"),
                    ndcg: measure(format!("ndcg@{}", config.k)),
                    overlap: measure(format!("overlap@{}", config.k)),
                    kendall_tau: measure("kendall_tau".to_owned()),
                    score_shift: self.score_shift.get_or_create(&p).clone(),
                    canary_duration: self.canary_duration.get_or_create(&p).clone(),
                })
            }
            Mode::Interleave => {
                for winner in ["canary", "stable", "tie"] {
                    self.outcome(&config.stable_version, &config.canary_version, winner, 0);
                }
                Series::Interleave(InterleaveSeries {
                    interleaved: result(&self.interleave_queries, "interleaved"),
                    canary_error: result(&self.interleave_queries, "canary_error"),
                    timeout: result(&self.interleave_queries, "timeout"),
                })
            }
        }
    }

    /// Removes `config`'s `ranker_peer_active` series; the counters stay.
    pub fn deactivate(&self, config: &PeerConfig) {
        self.active.remove(&self.active_labels(config));
    }

    /// Adds `by` to a pair's outcome counter; false (nothing counted) when the
    /// pair is new and [`MAX_OUTCOME_PAIRS`] pairs are already counted.
    pub fn outcome(&self, stable: &str, canary: &str, winner: &str, by: u64) -> bool {
        {
            let Ok(mut pairs) = self.outcome_pairs.lock() else {
                return false;
            };
            let key = (stable.to_owned(), canary.to_owned());
            if !pairs.contains(&key) {
                if pairs.len() >= MAX_OUTCOME_PAIRS {
                    return false;
                }
                pairs.insert(key);
            }
        }
        self.outcomes
            .get_or_create(&WinnerLabels {
                model: self.model.clone(),
                version: stable.to_owned(),
                canary_version: canary.to_owned(),
                winner: winner.to_owned(),
            })
            .inc_by(by);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::peer::config::{Decision, decide};

    fn config(mode: &str) -> PeerConfig {
        let text = format!(
            r#"{{"mode":"{mode}","from":"r","stableVersion":"s1","canaryVersion":"c1","url":"http://127.0.0.1:1/v1/models/m:rank","sample":100,"k":5,"timeoutMs":100}}"#
        );
        match decide(Some(text.as_bytes()), "r") {
            Decision::Active(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn exposition(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn activation_creates_the_series_at_zero_and_deactivation_removes_the_gauge() {
        let mut registry = Registry::default();
        let m = PeerMetrics::register(&mut registry, "m");
        let shadow = config("shadow");
        let Series::Shadow(s) = m.activate(&shadow) else {
            panic!("shadow series")
        };
        s.compared.inc();
        s.ndcg.observe(0.97);
        s.score_shift.observe(0.02);
        let text = exposition(&registry);
        for want in [
            r#"ranker_peer_active{model="m",version="s1",canary_version="c1",mode="shadow"} 1"#,
            r#"ranker_shadow_queries_total{model="m",version="s1",canary_version="c1",result="compared"} 1"#,
            r#"ranker_shadow_queries_total{model="m",version="s1",canary_version="c1",result="dropped"} 0"#,
            r#"ranker_shadow_agreement_bucket{le="0.99",model="m",version="s1",canary_version="c1",measure="ndcg@5"} 1"#,
            r#"ranker_shadow_agreement_count{model="m",version="s1",canary_version="c1",measure="overlap@5"} 0"#,
            r#"ranker_shadow_agreement_bucket{le="-1.0",model="m",version="s1",canary_version="c1",measure="kendall_tau"} 0"#,
            r#"ranker_shadow_score_shift_bucket{le="0.03",model="m",version="s1",canary_version="c1"} 1"#,
            r#"ranker_shadow_canary_duration_seconds_count{model="m",version="s1",canary_version="c1"} 0"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        m.deactivate(&shadow);
        let interleave = config("interleave");
        let Series::Interleave(_) = m.activate(&interleave) else {
            panic!("interleave series")
        };
        let text = exposition(&registry);
        assert!(!text.contains(r#"mode="shadow""#), "{text}");
        for want in [
            r#"ranker_peer_active{model="m",version="s1",canary_version="c1",mode="interleave"} 1"#,
            r#"ranker_interleave_queries_total{model="m",version="s1",canary_version="c1",result="timeout"} 0"#,
            r#"ranker_interleave_outcomes_total{model="m",version="s1",canary_version="c1",winner="tie"} 0"#,
            r#"ranker_interleave_outcomes_total{model="m",version="s1",canary_version="c1",winner="canary"} 0"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn clients_cannot_create_unbounded_version_pairs() {
        let mut registry = Registry::default();
        let m = PeerMetrics::register(&mut registry, "m");
        for i in 0..MAX_OUTCOME_PAIRS {
            assert!(m.outcome("s", &format!("c{i}"), "tie", 1));
        }
        assert!(!m.outcome("s", "one-too-many", "tie", 1));
        // A known pair still counts.
        assert!(m.outcome("s", "c0", "canary", 1));
        assert!(!exposition(&registry).contains("one-too-many"));
    }
}
