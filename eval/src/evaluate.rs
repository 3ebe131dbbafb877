//! Joins qrels with one or more runs under the query policies and computes every
//! requested metric per query. Pure: takes parsed input, returns per-query scores.

use std::cmp::Ordering;

use crate::metric::{self, Gain, MetricSpec, QueryJudgments};
use crate::parse::{JudgedQuery, Qrels, Retrieved, Run, rank_in_trec_order};

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

/// A run retrieved the same document twice for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateDocument {
    pub run: usize,
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

/// Evaluates `runs` (one, or baseline and candidate) on the same query set: the judged
/// queries that survive the policies for every run, so that scores can be paired.
pub fn evaluate(
    qrels: &Qrels<'_>,
    runs: &mut [Run<'_>],
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<Evaluation>, DuplicateDocument> {
    let judgments: Vec<QueryJudgments> = qrels
        .queries
        .iter()
        .map(|q| {
            QueryJudgments::from_labels(q.rels.values().copied(), settings.relevance_threshold)
        })
        .collect();
    let mut selected: Vec<usize> = (0..qrels.queries.len())
        .filter(|&q| {
            let has_relevant = judgments[q].num_relevant > 0;
            let in_all_runs = runs.iter().all(|r| r.per_query[q].is_some());
            (has_relevant || settings.no_relevant == QueryPolicy::Zero)
                && (in_all_runs || settings.missing_queries == QueryPolicy::Zero)
        })
        .collect();
    selected.sort_by(|&a, &b| compare_qids(qrels.queries[a].qid, qrels.queries[b].qid));
    let qids: Vec<String> = selected
        .iter()
        .map(|&q| String::from_utf8_lossy(qrels.queries[q].qid).into_owned())
        .collect();

    let mut evaluations = Vec::with_capacity(runs.len());
    for (run_index, run) in runs.iter_mut().enumerate() {
        let flat = score_all(qrels, &judgments, run, metrics, settings).map_err(|(q, docid)| {
            DuplicateDocument {
                run: run_index,
                qid: qrels.queries[q].qid.to_vec(),
                docid: docid.to_vec(),
            }
        })?;
        let n = metrics.len();
        let scores = (0..n)
            .map(|m| selected.iter().map(|&q| flat[q * n + m]).collect())
            .collect();
        evaluations.push(Evaluation {
            qids: qids.clone(),
            metrics: metrics.to_vec(),
            scores,
        });
    }
    Ok(evaluations)
}

/// Scores every judged query of one run into a flat `query * metrics + metric` array,
/// splitting the queries across the available cores.
fn score_all<'a>(
    qrels: &Qrels<'_>,
    judgments: &[QueryJudgments],
    run: &mut Run<'a>,
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<f64>, (usize, &'a [u8])> {
    let n_metrics = metrics.len();
    let n_queries = run.per_query.len();
    let mut flat = vec![0.0; n_queries * n_metrics];
    if n_queries == 0 || n_metrics == 0 {
        return Ok(flat);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = n_queries.div_ceil(threads).max(64);
    std::thread::scope(|scope| {
        let handles: Vec<_> = run
            .per_query
            .chunks_mut(chunk)
            .zip(flat.chunks_mut(chunk * n_metrics))
            .enumerate()
            .map(|(c, (docs, out))| {
                let first = c * chunk;
                scope.spawn(move || {
                    let mut labels = Vec::new();
                    for (i, docs) in docs.iter_mut().enumerate() {
                        let q = first + i;
                        let Some(docs) = docs else { continue };
                        let row = &mut out[i * n_metrics..(i + 1) * n_metrics];
                        score_query(
                            docs,
                            &qrels.queries[q],
                            &judgments[q],
                            metrics,
                            settings,
                            &mut labels,
                            row,
                        )
                        .map_err(|docid| (q, docid))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| match h.join() {
            Ok(result) => result,
            // A panic in a worker is a bug; re-raise it rather than hide it.
            Err(payload) => std::panic::resume_unwind(payload),
        })
    })?;
    Ok(flat)
}

fn score_query<'a>(
    docs: &mut [Retrieved<'a>],
    judged: &JudgedQuery<'_>,
    judgments: &QueryJudgments,
    metrics: &[MetricSpec],
    settings: &Settings,
    labels: &mut Vec<i32>,
    out: &mut [f64],
) -> Result<(), &'a [u8]> {
    if let Some(docid) = rank_in_trec_order(docs) {
        return Err(docid);
    }
    labels.clear();
    // Unjudged documents are non-relevant, exactly like a label of 0.
    labels.extend(
        docs.iter()
            .map(|d| judged.rels.get(d.docid).copied().unwrap_or(0)),
    );
    for (slot, &spec) in out.iter_mut().zip(metrics) {
        *slot = metric::compute(
            spec,
            settings.gain,
            settings.relevance_threshold,
            labels,
            judgments,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_qrels, parse_run};

    const QRELS: &[u8] = b"1 0 a 1\n1 0 b 0\n2 0 a 0\n3 0 c 2\n10 0 x 1\n";
    const RUN: &[u8] = b"1 Q0 a 1 1 t\n1 Q0 b 2 2 t\n2 Q0 a 1 1 t\n10 Q0 x 1 1 t\n99 Q0 x 1 1 t\n";

    fn p10(settings: Settings) -> (Vec<String>, Vec<f64>) {
        let qrels = parse_qrels(QRELS).unwrap();
        let mut runs = vec![parse_run(RUN, &qrels).unwrap()];
        let metrics = ["p@1".parse().unwrap()];
        let e = evaluate(&qrels, &mut runs, &metrics, &settings)
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

    #[test]
    fn duplicate_documents_are_reported() {
        let qrels = parse_qrels(QRELS).unwrap();
        let mut runs = vec![
            parse_run(RUN, &qrels).unwrap(),
            parse_run(b"3 Q0 c 1 1 t\n3 Q0 c 2 0 t\n", &qrels).unwrap(),
        ];
        let err = evaluate(
            &qrels,
            &mut runs,
            &["p@1".parse().unwrap()],
            &Settings::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DuplicateDocument {
                run: 1,
                qid: b"3".to_vec(),
                docid: b"c".to_vec()
            }
        );
    }

    #[test]
    fn qid_order_is_numeric_aware() {
        let mut ids: Vec<&[u8]> = vec![b"10", b"9", b"b", b"a", b"010", b"2"];
        ids.sort_by(|a, b| compare_qids(a, b));
        assert_eq!(ids, [&b"2"[..], b"9", b"010", b"10", b"a", b"b"]);
    }
}
