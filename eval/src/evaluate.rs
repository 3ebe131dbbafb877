//! Joins qrels with one or more runs under the query policies and computes every
//! requested metric per query. Pure: takes parsed input, returns per-query scores.

use std::cmp::Ordering;

use crate::metric::{self, Gain, MetricSpec, QueryJudgments};
use crate::parse::{FxHashMap, FxHashSet, Id, Judgment, Qrels, Retrieved, Run, trec_order};
use crate::threads;

/// What to do with a judged query (see the `--missing-queries` and `--no-relevant` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryPolicy {
    /// The query counts, with every metric 0.
    Zero,
    /// The query is left out of means and comparisons.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub gain: Gain,
    pub relevance_threshold: i32,
    /// A judged query absent from a run.
    pub missing_queries: QueryPolicy,
    /// A judged query with no document at or above the relevance threshold.
    pub no_relevant: QueryPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gain: Gain::Linear,
            relevance_threshold: 1,
            missing_queries: QueryPolicy::Zero,
            no_relevant: QueryPolicy::Zero,
        }
    }
}

/// Per-query scores of one run: `scores[m][q]` is metric `m` on query `qids[q]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub qids: Vec<String>,
    pub metrics: Vec<MetricSpec>,
    pub scores: Vec<Vec<f64>>,
}

impl Evaluation {
    pub fn mean(&self, metric: usize) -> f64 {
        let s = &self.scores[metric];
        if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        }
    }
}

/// Where a document occurs twice for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateIn {
    Qrels,
    /// Index into the `runs` given to [`evaluate`].
    Run(usize),
}

/// A document judged twice, or retrieved twice by a run, for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateDocument {
    pub file: DuplicateIn,
    pub qid: Vec<u8>,
    pub docid: Vec<u8>,
}

/// Orders query ids numerically when both are integers, else byte-wise, so that
/// "2" comes before "10" in tables and JSON.
pub fn compare_qids(a: &[u8], b: &[u8]) -> Ordering {
    let numeric = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if numeric(a) && numeric(b) {
        let trim = |s: &[u8]| {
            let zeros = s.iter().take_while(|&&c| c == b'0').count();
            s[zeros..].to_vec()
        };
        let (a2, b2) = (trim(a), trim(b));
        a2.len()
            .cmp(&b2.len())
            .then_with(|| a2.cmp(&b2))
            .then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// What one judged query yields: whether it has a relevant document, and per run
/// either `None` (absent from the run) or one score per metric.
struct QueryOutcome {
    has_relevant: bool,
    per_run: Vec<Option<Vec<f64>>>,
}

/// Evaluates `runs` (one, or baseline and candidate) on the same query set: the judged
/// queries that survive the policies for every run, so that scores can be paired.
/// Queries a run retrieves for but nobody judged are ignored.
pub fn evaluate(
    qrels: &Qrels<'_>,
    runs: &[Run<'_>],
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<Evaluation>, DuplicateDocument> {
    let outcomes = score_in_parallel(qrels, runs, metrics, settings)?;
    let mut selected: Vec<usize> = (0..qrels.queries.len())
        .filter(|&q| {
            let o = &outcomes[q];
            let in_all_runs = o.per_run.iter().all(Option::is_some);
            (o.has_relevant || settings.no_relevant == QueryPolicy::Zero)
                && (in_all_runs || settings.missing_queries == QueryPolicy::Zero)
        })
        .collect();
    selected.sort_by(|&a, &b| compare_qids(qrels.queries[a].0, qrels.queries[b].0));
    let qids: Vec<String> = selected
        .iter()
        .map(|&q| String::from_utf8_lossy(qrels.queries[q].0).into_owned())
        .collect();
    let evaluations = (0..runs.len())
        .map(|r| {
            let scores = (0..metrics.len())
                .map(|m| {
                    selected
                        .iter()
                        // A query missing from the run scores 0 (policy `zero`).
                        .map(|&q| outcomes[q].per_run[r].as_ref().map_or(0.0, |s| s[m]))
                        .collect()
                })
                .collect();
            Evaluation {
                qids: qids.clone(),
                metrics: metrics.to_vec(),
                scores,
            }
        })
        .collect();
    Ok(evaluations)
}

/// How deep the ranking must be sorted: the largest cutoff, or everything when a
/// metric has none.
fn ranking_depth(metrics: &[MetricSpec]) -> Option<usize> {
    metrics
        .iter()
        .try_fold(0, |depth, m| m.cutoff.map(|k| depth.max(k)))
}

/// Scores every judged query against every run, splitting the queries across the cores.
fn score_in_parallel(
    qrels: &Qrels<'_>,
    runs: &[Run<'_>],
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<QueryOutcome>, DuplicateDocument> {
    let depth = ranking_depth(metrics);
    let chunk = qrels.queries.len().div_ceil(threads::cores()).max(64);
    let chunks: Vec<_> = qrels.queries.chunks(chunk).collect();
    let results = threads::map_parallel(&chunks, |queries| {
        let mut scratch = Scratch::default();
        queries
            .iter()
            .map(|(qid, judged)| scratch.score_query(qid, judged, runs, metrics, settings, depth))
            .collect::<Result<Vec<_>, _>>()
    });
    let mut outcomes = Vec::with_capacity(qrels.queries.len());
    for result in results {
        outcomes.extend(result?);
    }
    Ok(outcomes)
}

/// Per-thread buffers reused across queries, so scoring does not allocate per query.
#[derive(Default)]
struct Scratch<'q, 'r> {
    judged: FxHashMap<Id<'q>, Judgment>,
    ranked: Vec<(Retrieved<'r>, i32)>,
    seen: Vec<bool>,
    unjudged: FxHashSet<Id<'r>>,
    labels: Vec<i32>,
}

impl<'q, 'r> Scratch<'q, 'r> {
    fn score_query(
        &mut self,
        qid: &[u8],
        judged: &[(&'q [u8], i32)],
        runs: &[Run<'r>],
        metrics: &[MetricSpec],
        settings: &Settings,
        depth: Option<usize>,
    ) -> Result<QueryOutcome, DuplicateDocument> {
        let duplicate = |file, docid: &[u8]| DuplicateDocument {
            file,
            qid: qid.to_vec(),
            docid: docid.to_vec(),
        };
        self.judged.clear();
        for (slot, &(docid, label)) in judged.iter().enumerate() {
            let judgment = Judgment {
                label,
                slot: slot as u32,
            };
            if self.judged.insert(Id(docid), judgment).is_some() {
                return Err(duplicate(DuplicateIn::Qrels, docid));
            }
        }
        let judgments = QueryJudgments::from_labels(
            judged.iter().map(|&(_, label)| label),
            settings.relevance_threshold,
            depth,
        );
        let mut per_run = Vec::with_capacity(runs.len());
        for (r, run) in runs.iter().enumerate() {
            let Some(docs) = run.get(qid) else {
                per_run.push(None);
                continue;
            };
            let labels = self
                .rank(docs, depth)
                .map_err(|docid| duplicate(DuplicateIn::Run(r), docid))?;
            let scores = metrics
                .iter()
                .map(|&spec| {
                    metric::compute(
                        spec,
                        settings.gain,
                        settings.relevance_threshold,
                        labels,
                        &judgments,
                    )
                })
                .collect();
            per_run.push(Some(scores));
        }
        Ok(QueryOutcome {
            has_relevant: judgments.num_relevant > 0,
            per_run,
        })
    }

    /// Labels of the top `depth` documents in trec_eval order (0 for unjudged ones), or
    /// the docid that the run retrieves twice. Needs `self.judged` filled for the query.
    fn rank(&mut self, docs: &[Retrieved<'r>], depth: Option<usize>) -> Result<&[i32], &'r [u8]> {
        self.ranked.clear();
        self.seen.clear();
        self.seen.resize(self.judged.len(), false);
        self.unjudged.clear();
        for doc in docs {
            // One lookup gives the label and, through the judged slot, duplicate detection;
            // only unjudged documents need a set of their own.
            let label = match self.judged.get(&Id(doc.docid)) {
                Some(j) => {
                    if std::mem::replace(&mut self.seen[j.slot as usize], true) {
                        return Err(doc.docid);
                    }
                    j.label
                }
                None => {
                    if !self.unjudged.insert(Id(doc.docid)) {
                        return Err(doc.docid);
                    }
                    // Unjudged documents are non-relevant, exactly like a label of 0.
                    0
                }
            };
            self.ranked.push((*doc, label));
        }
        let by_trec_order =
            |a: &(Retrieved<'_>, i32), b: &(Retrieved<'_>, i32)| trec_order(&a.0, &b.0);
        if let Some(depth) = depth.filter(|&d| d > 0 && d < self.ranked.len()) {
            // Only the top `depth` matter: select them in linear time, sort just those.
            self.ranked.select_nth_unstable_by(depth - 1, by_trec_order);
            self.ranked.truncate(depth);
        }
        self.ranked.sort_unstable_by(by_trec_order);
        self.labels.clear();
        self.labels
            .extend(self.ranked.iter().map(|(_, label)| *label));
        Ok(&self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_qrels, parse_run};

    const QRELS: &[u8] = b"1 0 a 1\n1 0 b 0\n2 0 a 0\n3 0 c 2\n10 0 x 1\n";
    const RUN: &[u8] = b"1 Q0 a 1 1 t\n1 Q0 b 2 2 t\n2 Q0 a 1 1 t\n10 Q0 x 1 1 t\n99 Q0 x 1 1 t\n";

    fn p10(settings: Settings) -> (Vec<String>, Vec<f64>) {
        let qrels = parse_qrels(QRELS).unwrap();
        let runs = vec![parse_run(RUN).unwrap()];
        let metrics = ["p@1".parse().unwrap()];
        let e = evaluate(&qrels, &runs, &metrics, &settings)
            .unwrap()
            .remove(0);
        (e.qids, e.scores[0].clone())
    }

    #[test]
    fn default_policies_score_missing_and_irrelevant_queries_zero() {
        let (qids, scores) = p10(Settings::default());
        assert_eq!(qids, ["1", "2", "3", "10"]);
        assert_eq!(scores, [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn skip_policies_leave_queries_out() {
        let s = Settings {
            missing_queries: QueryPolicy::Skip,
            no_relevant: QueryPolicy::Skip,
            ..Settings::default()
        };
        assert_eq!(p10(s).0, ["1", "10"]);
    }

    fn duplicate(qrels: &[u8], runs: &[&[u8]]) -> DuplicateDocument {
        let qrels = parse_qrels(qrels).unwrap();
        let runs: Vec<_> = runs.iter().map(|r| parse_run(r).unwrap()).collect();
        evaluate(
            &qrels,
            &runs,
            &["p@1".parse().unwrap()],
            &Settings::default(),
        )
        .unwrap_err()
    }

    #[test]
    fn duplicate_documents_are_reported() {
        let twice_unjudged = b"3 Q0 c 1 1 t\n3 Q0 u 2 0 t\n3 Q0 u 2 0 t\n";
        assert_eq!(
            duplicate(QRELS, &[RUN, twice_unjudged]),
            DuplicateDocument {
                file: DuplicateIn::Run(1),
                qid: b"3".to_vec(),
                docid: b"u".to_vec()
            }
        );
        // A judged document retrieved twice, with different scores.
        let twice_judged = b"3 Q0 c 1 1 t\n3 Q0 x 2 5 t\n3 Q0 c 2 0 t\n";
        assert_eq!(duplicate(QRELS, &[twice_judged]).docid, b"c");
        // A document judged twice.
        assert_eq!(
            duplicate(b"7 0 a 1\n7 0 b 1\n7 0 a 0\n", &[]).file,
            DuplicateIn::Qrels
        );
    }

    #[test]
    fn depth_is_the_largest_cutoff_unless_a_metric_is_uncut() {
        let m = |names: &[&str]| -> Vec<MetricSpec> {
            names.iter().map(|n| n.parse().unwrap()).collect()
        };
        assert_eq!(ranking_depth(&m(&["p@5", "ndcg@20"])), Some(20));
        assert_eq!(ranking_depth(&m(&["p@5", "rr"])), None);
    }

    #[test]
    fn qid_order_is_numeric_aware() {
        let mut ids: Vec<&[u8]> = vec![b"10", b"9", b"b", b"a", b"010", b"2"];
        ids.sort_by(|a, b| compare_qids(a, b));
        assert_eq!(ids, [&b"2"[..], b"9", b"010", b"10", b"a", b"b"]);
    }
}
