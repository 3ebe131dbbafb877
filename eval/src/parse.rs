//! Byte-level parsers for TREC qrels (`qid 0 docid rel`) and runs
//! (`qid Q0 docid rank score tag`). Identifiers borrow from the input buffer, so a
//! 10-million-line run is parsed without a per-line allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A parse failure at a 1-based line of the input; the caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// FxHash (as in rustc): identifiers are short, trusted-enough byte strings, and SipHash
/// would dominate the lookup of ten million judged documents.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The judgments of one query.
#[derive(Debug, Default, Clone)]
pub struct JudgedQuery<'a> {
    pub qid: &'a [u8],
    /// Relevance label of each judged document.
    pub rels: FxHashMap<&'a [u8], i32>,
}

/// Parsed qrels: judged queries in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct Qrels<'a> {
    pub queries: Vec<JudgedQuery<'a>>,
    pub index: FxHashMap<&'a [u8], usize>,
}

/// One retrieved document of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieved<'a> {
    pub score: f64,
    pub docid: &'a [u8],
}

/// A parsed run, restricted to the judged queries: `per_query[i]` holds the documents
/// retrieved for `qrels.queries[i]` in file order; `None` when the query is absent.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub per_query: Vec<Option<Vec<Retrieved<'a>>>>,
    /// Number of lines (and distinct queries) that were skipped because the query is
    /// not judged; they are still checked for format.
    pub unjudged_lines: usize,
}

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// Splits a line into at most `N` whitespace-separated fields; returns the number of
/// fields found (which may exceed `N`, meaning there are extra fields).
#[inline]
fn split_fields<'a, const N: usize>(line: &'a [u8], out: &mut [&'a [u8]; N]) -> usize {
    let mut count = 0;
    let mut i = 0;
    let len = line.len();
    while i < len {
        while i < len && is_space(line[i]) {
            i += 1;
        }
        if i == len {
            break;
        }
        let start = i;
        while i < len && !is_space(line[i]) {
            i += 1;
        }
        if count < N {
            out[count] = &line[start..i];
        }
        count += 1;
    }
    count
}

/// Iterates over `(1-based line number, line)` without the newline.
fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut body = buf;
    if body.last() == Some(&b'\n') {
        body = &body[..body.len() - 1];
    }
    let empty = buf.is_empty();
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, l)| (i + 1, l))
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_rel(field: &[u8]) -> Option<i32> {
    std::str::from_utf8(field).ok()?.parse::<i32>().ok()
}

fn parse_score(field: &[u8]) -> Option<f64> {
    let value = std::str::from_utf8(field).ok()?.parse::<f64>().ok()?;
    // -0.0 + 0.0 == +0.0: trec_eval compares scores with `>`, so the two zeros must tie.
    value.is_finite().then_some(value + 0.0)
}

/// The `N` fields of a line, `None` for a blank line, an error for any other count.
fn fields<'a, const N: usize>(
    line_no: usize,
    line: &'a [u8],
    layout: &str,
) -> Result<Option<[&'a [u8]; N]>, ParseError> {
    let mut f: [&[u8]; N] = [&[]; N];
    match split_fields(line, &mut f) {
        0 => Ok(None),
        n if n == N => Ok(Some(f)),
        n => Err(ParseError {
            line: line_no,
            reason: format!("expected {N} fields `{layout}`, found {n}"),
        }),
    }
}

/// Parses qrels. Blank lines are allowed; anything else that is not exactly four fields
/// with an integer label is an error, as is a document judged twice for one query.
pub fn parse_qrels(buf: &[u8]) -> Result<Qrels<'_>, ParseError> {
    let mut qrels = Qrels::default();
    let mut last: Option<(&[u8], usize)> = None;
    for (line_no, line) in lines(buf) {
        let Some(f) = fields::<4>(line_no, line, "qid iter docid rel")? else {
            continue;
        };
        let rel = parse_rel(f[3]).ok_or_else(|| ParseError {
            line: line_no,
            reason: format!("relevance `{}` is not an integer", show(f[3])),
        })?;
        let qidx = match last {
            Some((qid, idx)) if qid == f[0] => idx,
            _ => {
                let next = qrels.queries.len();
                let idx = *qrels.index.entry(f[0]).or_insert(next);
                if idx == next {
                    qrels.queries.push(JudgedQuery {
                        qid: f[0],
                        rels: FxHashMap::default(),
                    });
                }
                last = Some((f[0], idx));
                idx
            }
        };
        if qrels.queries[qidx].rels.insert(f[2], rel).is_some() {
            return Err(ParseError {
                line: line_no,
                reason: format!(
                    "document `{}` is judged twice for query `{}`",
                    show(f[2]),
                    show(f[0])
                ),
            });
        }
    }
    Ok(qrels)
}

/// Parses a run against `qrels`. Every line is checked (six fields, finite score); lines of
/// unjudged queries are then dropped. Duplicate documents are detected later, when each
/// query is sorted (see [`find_duplicate`]).
pub fn parse_run<'a>(buf: &'a [u8], qrels: &Qrels<'_>) -> Result<Run<'a>, ParseError> {
    let mut per_query: Vec<Option<Vec<Retrieved<'a>>>> = vec![None; qrels.queries.len()];
    let mut unjudged_lines = 0;
    // Runs are grouped by query in practice; remembering the last lookup avoids hashing
    // the qid on almost every line.
    let mut last: Option<(&[u8], Option<usize>)> = None;
    for (line_no, line) in lines(buf) {
        let Some(f) = fields::<6>(line_no, line, "qid Q0 docid rank score tag")? else {
            continue;
        };
        let score = parse_score(f[4]).ok_or_else(|| ParseError {
            line: line_no,
            reason: format!("score `{}` is not a finite number", show(f[4])),
        })?;
        let qidx = match last {
            Some((qid, idx)) if qid == f[0] => idx,
            _ => {
                let idx = qrels.index.get(f[0]).copied();
                last = Some((f[0], idx));
                idx
            }
        };
        match qidx {
            Some(i) => per_query[i]
                .get_or_insert_with(Vec::new)
                .push(Retrieved { score, docid: f[2] }),
            None => unjudged_lines += 1,
        }
    }
    Ok(Run {
        per_query,
        unjudged_lines,
    })
}

/// Returns the 1-based line numbers of the first two lines of `buf` that retrieve
/// `docid` for `qid`. Only used to explain a duplicate, so it rescans the file.
pub fn duplicate_lines(buf: &[u8], qid: &[u8], docid: &[u8]) -> Vec<usize> {
    lines(buf)
        .filter(|(_, line)| {
            let mut f: [&[u8]; 6] = [&[]; 6];
            split_fields(line, &mut f) == 6 && f[0] == qid && f[2] == docid
        })
        .map(|(n, _)| n)
        .take(2)
        .collect()
}

/// Sorts documents into trec_eval's order: score descending, then docid descending
/// (byte-wise, like `strcmp`). Returns a docid that occurs twice, if any.
pub fn rank_in_trec_order<'a>(docs: &mut [Retrieved<'a>]) -> Option<&'a [u8]> {
    // Docid order first (also exposes duplicates as neighbours), then a stable sort by
    // score keeps docid-descending order among equal scores.
    docs.sort_unstable_by(|a, b| b.docid.cmp(a.docid));
    let duplicate = find_duplicate(docs);
    docs.sort_by(|a, b| b.score.total_cmp(&a.score));
    duplicate
}

/// In a slice sorted by docid, the first docid that appears twice.
pub fn find_duplicate<'a>(sorted_by_docid: &[Retrieved<'a>]) -> Option<&'a [u8]> {
    sorted_by_docid
        .windows(2)
        .find(|w| w[0].docid == w[1].docid)
        .map(|w| w[0].docid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qrels_parse_and_errors() {
        let q = parse_qrels(b"1 0 a 2\n1 0 b 0\n\n2 0 a -1\r\n").unwrap();
        assert_eq!(q.queries.len(), 2);
        assert_eq!(q.queries[0].rels[&b"a"[..]], 2);
        assert_eq!(q.queries[1].rels[&b"a"[..]], -1);

        let e = parse_qrels(b"1 0 a 2\n1 0 b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("expected 4 fields"), "{e}");

        let e = parse_qrels(b"1 0 a x\n").unwrap_err();
        assert_eq!(e.to_string(), "1: relevance `x` is not an integer");

        let e = parse_qrels(b"1 0 a 1\n2 0 a 1\n1 0 a 0\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("judged twice"));
    }

    #[test]
    fn run_parse_and_errors() {
        let q = parse_qrels(b"1 0 a 1\n3 0 a 1\n").unwrap();
        let r = parse_run(b"1 Q0 a 1 0.5 t\n2 Q0 a 1 -0 t\n1 Q0 b 2 -0.0 t\n", &q).unwrap();
        let docs = r.per_query[0].as_ref().unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs[1].score.is_sign_positive());
        assert!(r.per_query[1].is_none());
        assert_eq!(r.unjudged_lines, 1);

        let e = parse_run(b"1 Q0 a 1 0.5 t\n1 Q0 b 1 nan t\n", &q).unwrap_err();
        assert_eq!(e.to_string(), "2: score `nan` is not a finite number");
        let e = parse_run(b"1 Q0 a 1 0.5\n", &q).unwrap_err();
        assert!(e.reason.contains("found 5"));
        // Unjudged queries are still validated.
        assert!(parse_run(b"9 Q0 a 1 zz t\n", &q).is_err());
    }

    #[test]
    fn trec_order_and_duplicates() {
        let d = |docid: &'static str, score| Retrieved {
            score,
            docid: docid.as_bytes(),
        };
        let mut docs = vec![d("d9", 1.0), d("d10", 1.0), d("a", 2.0), d("z", 0.5)];
        assert_eq!(rank_in_trec_order(&mut docs), None);
        let order: Vec<_> = docs.iter().map(|x| show(x.docid)).collect();
        assert_eq!(order, ["a", "d9", "d10", "z"]);

        let mut docs = vec![d("x", 1.0), d("y", 3.0), d("x", 2.0)];
        assert_eq!(rank_in_trec_order(&mut docs), Some(&b"x"[..]));
        assert_eq!(
            duplicate_lines(b"1 Q0 x 1 1 t\n1 Q0 y 1 3 t\n1 Q0 x 1 2 t\n", b"1", b"x"),
            [1, 3]
        );
    }
}
