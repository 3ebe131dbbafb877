//! Byte-level parsers for TREC qrels (`qid 0 docid rel`) and runs
//! (`qid Q0 docid rank score tag`). Identifiers borrow from the input buffer, so a
//! 10-million-line run is parsed without a per-line allocation.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::threads;

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
    /// Whole words, the tail as an overlapping word: no variable-length copy (a `memcpy`
    /// call) per hashed id. Equality is checked separately, so overlap is harmless.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        match n {
            0..=3 => self.add(bytes.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b))),
            4..=7 => {
                self.add((u64::from(load_u32(bytes, 0)) << 32) | u64::from(load_u32(bytes, n - 4)))
            }
            _ => {
                let mut at = 0;
                while at + 8 <= n {
                    self.add(load_u64(bytes, at));
                    at += 8;
                }
                if at < n {
                    self.add(load_u64(bytes, n - 8));
                }
            }
        }
        self.add(n as u64);
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
pub type FxHashSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// An identifier (qid or docid) as a hash key. Equality is inlined for the short ids
/// that TREC files are made of: `==` on byte slices calls `memcmp`, and that call was a
/// visible share of the time spent matching ten million documents to their labels.
#[derive(Debug, Clone, Copy)]
pub struct Id<'a>(pub &'a [u8]);

impl PartialEq for Id<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        same_id(self.0, other.0)
    }
}

impl Eq for Id<'_> {}

impl std::hash::Hash for Id<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

#[inline]
fn load_u64(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline]
fn load_u32(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Byte equality with overlapping word loads for ids of up to 16 bytes.
#[inline]
pub fn same_id(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => load_u32(a, 0) == load_u32(b, 0) && load_u32(a, n - 4) == load_u32(b, n - 4),
        8..=16 => load_u64(a, 0) == load_u64(b, 0) && load_u64(a, n - 8) == load_u64(b, n - 8),
        _ => a == b,
    }
}

/// One judged document: its label and its position among the query's judgments (used
/// to notice a document retrieved twice without a second hash lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgment {
    pub label: i32,
    pub slot: u32,
}

/// Parsed qrels: `(docid, label)` per query, queries in order of first appearance.
/// The per-query lookup maps are built later, by the thread that scores the query, so
/// they stay in cache and no memory is held for ten thousand of them at once.
pub type Qrels<'a> = Grouped<'a, (&'a [u8], i32)>;

/// One retrieved document of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieved<'a> {
    pub score: f64,
    pub docid: &'a [u8],
}

/// A parsed run: every query with its documents in file order.
pub type Run<'a> = Grouped<'a, Retrieved<'a>>;

/// Items grouped by query id, groups in order of first appearance.
#[derive(Debug, Clone)]
pub struct Grouped<'a, T> {
    pub queries: Vec<(&'a [u8], Vec<T>)>,
    pub index: FxHashMap<&'a [u8], usize>,
}

impl<T> Default for Grouped<'_, T> {
    fn default() -> Self {
        Grouped {
            queries: Vec::new(),
            index: FxHashMap::default(),
        }
    }
}

impl<'a, T> Grouped<'a, T> {
    pub fn get(&self, qid: &[u8]) -> Option<&[T]> {
        self.index.get(qid).map(|&i| self.queries[i].1.as_slice())
    }

    /// Appends `items` to the group `qid`. Files are grouped by query in practice, so
    /// the caller remembers the last group (`last`) and most lines skip the hash.
    #[inline]
    fn group_of(&mut self, qid: &'a [u8], last: &mut Option<(&'a [u8], usize)>) -> usize {
        match *last {
            Some((prev, idx)) if same_id(prev, qid) => idx,
            _ => {
                let next = self.queries.len();
                let idx = *self.index.entry(qid).or_insert(next);
                if idx == next {
                    // Queries tend to have similar sizes: start where the last one ended.
                    let hint = self.queries.last().map_or(0, |q| q.1.len()).min(1 << 16);
                    self.queries.push((qid, Vec::with_capacity(hint)));
                }
                *last = Some((qid, idx));
                idx
            }
        }
    }

    /// Appends another chunk's groups (the chunk follows this one in the file).
    fn merge(&mut self, other: Grouped<'a, T>) {
        for (qid, items) in other.queries {
            match self.index.get(qid) {
                Some(&i) => self.queries[i].1.extend(items),
                None => {
                    self.index.insert(qid, self.queries.len());
                    self.queries.push((qid, items));
                }
            }
        }
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[inline]
fn parse_rel(field: &[u8]) -> Option<i32> {
    // Labels are small integers; the fast path avoids UTF-8 validation per line.
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, field),
    };
    if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
        let value = digits
            .iter()
            .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
        return Some(if negative { -value } else { value });
    }
    std::str::from_utf8(field).ok()?.parse::<i32>().ok()
}

/// Exact powers of ten representable in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Plain decimals (`-12.345`) of at most 15 digits: the mantissa and the power of ten are
/// both exact in an f64, so one division gives the correctly rounded value (Clinger's
/// fast path), identical to `str::parse`. Anything else returns `None`.
#[inline]
fn parse_plain_decimal(field: &[u8]) -> Option<f64> {
    let (negative, body) = match field.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, field),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut fraction_digits = 0usize;
    let mut seen_point = false;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
                fraction_digits += usize::from(seen_point);
                if digits > 15 {
                    return None;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let value = mantissa as f64 / POW10[fraction_digits];
    Some(if negative { -value } else { value })
}

#[inline]
fn parse_score(field: &[u8]) -> Option<f64> {
    let value = match parse_plain_decimal(field) {
        Some(v) => v,
        None => std::str::from_utf8(field).ok()?.parse::<f64>().ok()?,
    };
    // -0.0 + 0.0 == +0.0: trec_eval compares scores with `>`, so the two zeros must tie.
    value.is_finite().then_some(value + 0.0)
}

/// Chunks of at least this many bytes are parsed by threads of their own.
const MIN_CHUNK: usize = 8 << 20;

/// Byte classes for the scanner: 1 separates fields, 2 ends a line, 0 is part of a field.
const BYTE_CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    class[b' ' as usize] = 1;
    class[b'\t' as usize] = 1;
    class[b'\r' as usize] = 1;
    class[0x0b] = 1;
    class[0x0c] = 1;
    class[b'\n' as usize] = 2;
    class
};

/// One pass over `buf` that finds lines and their fields together (no second scan per
/// line) and calls `on_line(line_no, fields, count)` for every non-blank line; `count`
/// may exceed `N` (extra fields are counted, not kept).
#[inline]
fn scan_lines<'a, const N: usize, E>(
    buf: &'a [u8],
    mut on_line: impl FnMut(usize, &[&'a [u8]; N], usize) -> Result<(), E>,
) -> Result<(), E> {
    let mut fields: [&'a [u8]; N] = [&[]; N];
    let mut count = 0;
    let mut line_no = 1;
    let mut i = 0;
    let n = buf.len();
    while i < n {
        match BYTE_CLASS[usize::from(buf[i])] {
            2 => {
                if count > 0 {
                    on_line(line_no, &fields, count)?;
                }
                count = 0;
                line_no += 1;
                i += 1;
            }
            1 => i += 1,
            _ => {
                let start = i;
                while i < n && BYTE_CLASS[usize::from(buf[i])] == 0 {
                    i += 1;
                }
                if count < N {
                    fields[count] = &buf[start..i];
                }
                count += 1;
            }
        }
    }
    if count > 0 {
        on_line(line_no, &fields, count)?;
    }
    Ok(())
}

/// Parses a file of `N`-field lines in parallel chunks (split at newlines) and groups
/// the items by query (field 0). `parse_fields` gets the chunk-relative line number;
/// errors are renumbered to file lines here.
fn parse_grouped<'a, const N: usize, T, F>(
    buf: &'a [u8],
    layout: &str,
    parse_fields: F,
) -> Result<Grouped<'a, T>, ParseError>
where
    T: Send,
    F: Fn(usize, &[&'a [u8]; N]) -> Result<T, ParseError> + Sync,
{
    let parse_chunk = |chunk: &'a [u8]| -> Result<Grouped<'a, T>, ParseError> {
        let mut grouped = Grouped::default();
        let mut last = None;
        scan_lines::<N, ParseError>(chunk, |line_no, f, count| {
            if count != N {
                return Err(ParseError {
                    line: line_no,
                    reason: format!("expected {N} fields `{layout}`, found {count}"),
                });
            }
            let item = parse_fields(line_no, f)?;
            let g = grouped.group_of(f[0], &mut last);
            grouped.queries[g].1.push(item);
            Ok(())
        })?;
        Ok(grouped)
    };
    let chunks = chunk_at_newlines(buf, MIN_CHUNK.max(buf.len().div_ceil(2 * threads::cores())));
    if chunks.len() <= 1 {
        return parse_chunk(buf);
    }
    let results = threads::map_parallel(&chunks, |&(start, end)| parse_chunk(&buf[start..end]));
    let mut merged = Grouped::default();
    for (result, &(start, _)) in results.into_iter().zip(&chunks) {
        match result {
            Ok(grouped) => merged.merge(grouped),
            Err(mut e) => {
                e.line += memchr::memchr_iter(b'\n', &buf[..start]).count();
                return Err(e);
            }
        }
    }
    Ok(merged)
}

/// Splits `buf` into `(start, end)` ranges of about `size` bytes that end at a newline.
fn chunk_at_newlines(buf: &[u8], size: usize) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        let target = (start + size.max(1)).min(buf.len());
        let end = match memchr::memchr(b'\n', &buf[target..]) {
            Some(i) => target + i + 1,
            None => buf.len(),
        };
        chunks.push((start, end));
        start = end;
    }
    chunks
}

/// Parses qrels: exactly four fields with an integer label on every non-blank line.
/// A document judged twice is detected when its query is scored (see `evaluate`).
pub fn parse_qrels(buf: &[u8]) -> Result<Qrels<'_>, ParseError> {
    parse_grouped::<4, _, _>(buf, "qid iter docid rel", |line_no, f| {
        let rel = parse_rel(f[3]).ok_or_else(|| ParseError {
            line: line_no,
            reason: format!("relevance `{}` is not an integer", show(f[3])),
        })?;
        Ok((f[2], rel))
    })
}

/// Parses a run: six fields and a finite score on every non-blank line. A document
/// retrieved twice is detected when its query is scored (see `evaluate`).
pub fn parse_run(buf: &[u8]) -> Result<Run<'_>, ParseError> {
    parse_grouped::<6, _, _>(buf, "qid Q0 docid rank score tag", |line_no, f| {
        let score = parse_score(f[4]).ok_or_else(|| ParseError {
            line: line_no,
            reason: format!("score `{}` is not a finite number", show(f[4])),
        })?;
        Ok(Retrieved { score, docid: f[2] })
    })
}

/// The 1-based numbers of the first two lines of an `N`-field file that name `docid`
/// for `qid`. Only used to explain a duplicate, so it rescans the file.
pub fn duplicate_lines<const N: usize>(buf: &[u8], qid: &[u8], docid: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let _ = scan_lines::<N, ()>(buf, |line_no, f, count| {
        if count == N && f[0] == qid && f[2] == docid {
            found.push(line_no);
        }
        if found.len() == 2 { Err(()) } else { Ok(()) }
    });
    found
}

/// trec_eval's ranking order: score descending, then docid descending (byte-wise, like
/// `strcmp`). A total order within a query, since docids are unique there.
#[inline]
pub fn trec_order(a: &Retrieved<'_>, b: &Retrieved<'_>) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| b.docid.cmp(a.docid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qrels_parse_and_errors() {
        let q = parse_qrels(b"1 0 a 2\n1 0 b 0\n\n2 0 a -1\r\n").unwrap();
        assert_eq!(q.queries.len(), 2);
        assert_eq!(q.get(b"1").unwrap(), [(&b"a"[..], 2), (&b"b"[..], 0)]);
        assert_eq!(q.get(b"2").unwrap(), [(&b"a"[..], -1)]);

        let e = parse_qrels(b"1 0 a 2\n1 0 b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("expected 4 fields"), "{e}");

        let e = parse_qrels(b"1 0 a x\n").unwrap_err();
        assert_eq!(e.to_string(), "1: relevance `x` is not an integer");
    }

    #[test]
    fn run_parse_and_errors() {
        let r = parse_run(b"1 Q0 a 1 0.5 t\n2 Q0 a 1 -0 t\n1 Q0 b 2 -0.0 t").unwrap();
        let docs = r.get(b"1").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs[1].score.is_sign_positive());
        assert!(r.get(b"3").is_none());

        let e = parse_run(b"1 Q0 a 1 0.5 t\n1 Q0 b 1 nan t\n").unwrap_err();
        assert_eq!(e.to_string(), "2: score `nan` is not a finite number");
        let e = parse_run(b"1 Q0 a 1 0.5\n").unwrap_err();
        assert!(e.reason.contains("found 5"));
    }

    #[test]
    fn chunked_parsing_merges_groups_and_numbers_lines_globally() {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("q{} Q0 d{i} 1 {i}.5 t\n", i % 7));
        }
        let whole = parse_run(text.as_bytes()).unwrap();
        let chunks = chunk_at_newlines(text.as_bytes(), 1000);
        assert!(chunks.len() > 50);
        let mut merged = Grouped::default();
        for &(a, b) in &chunks {
            merged.merge(parse_run(&text.as_bytes()[a..b]).unwrap());
        }
        assert_eq!(merged.queries, whole.queries);
        assert_eq!(merged.get(b"q3").unwrap().len(), 429);
        // A bad line far into a large file is reported with its line in the file.
        let big = "1 Q0 d 1 0.5 t\n".repeat(MIN_CHUNK / 15 * 3) + "1 Q0 d 1 x t\n";
        let lines = big.lines().count();
        assert_eq!(parse_run(big.as_bytes()).unwrap_err().line, lines);
    }

    #[test]
    fn number_fast_paths_agree_with_std() {
        for s in [
            "0",
            "-0",
            "+1.5",
            "12.",
            ".5",
            "3.14159",
            "-2.000001",
            "123456789012345",
            "0.1",
        ] {
            assert_eq!(
                parse_plain_decimal(s.as_bytes()),
                Some(s.parse::<f64>().unwrap()),
                "{s}"
            );
        }
        for s in ["1e5", "1234567890123456", "inf", "-", ".", "1.2.3", ""] {
            assert_eq!(parse_plain_decimal(s.as_bytes()), None, "{s}");
        }
        assert_eq!(parse_score(b"1e-3"), Some(0.001));
        assert_eq!(parse_score(b"inf"), None);
        assert_eq!(parse_rel(b"-2"), Some(-2));
        assert_eq!(parse_rel(b"+4"), Some(4));
        assert_eq!(parse_rel(b"1234567890"), Some(1_234_567_890));
        assert_eq!(parse_rel(b"1.0"), None);
    }

    proptest::proptest! {
        #[test]
        fn plain_decimals_parse_exactly_like_std(int in 0u64..10_000_000, frac in 0u64..100_000_000, neg: bool, width in 0usize..9) {
            let text = format!("{}{int}.{frac:0width$}", if neg { "-" } else { "" });
            if let Some(fast) = parse_plain_decimal(text.as_bytes()) {
                proptest::prop_assert_eq!(fast.to_bits(), text.parse::<f64>().unwrap().to_bits());
            }
        }
    }

    #[test]
    fn hashing_tells_short_ids_apart() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let build = BuildHasherDefault::<FxHasher>::default();
        let ids = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "abcd",
            "abce",
            "doc0000001",
            "doc0000002",
            "doc00000010",
        ];
        let hashes: std::collections::HashSet<u64> = ids
            .iter()
            .map(|i| build.hash_one(Id(i.as_bytes())))
            .collect();
        assert_eq!(hashes.len(), ids.len());
    }

    #[test]
    fn id_equality_matches_slice_equality() {
        let ids: Vec<String> = (0..40)
            .map(|n| "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..n].to_string())
            .collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(same_id(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
                let mut c = b.clone().into_bytes();
                if let Some(last) = c.last_mut() {
                    *last ^= 1;
                    assert_eq!(same_id(a.as_bytes(), &c), a.as_bytes() == c.as_slice());
                }
                if let Some(first) = c.first_mut() {
                    *first ^= 1;
                    assert_eq!(same_id(a.as_bytes(), &c), a.as_bytes() == c.as_slice());
                }
            }
        }
    }

    #[test]
    fn trec_order_breaks_ties_by_descending_docid() {
        let d = |docid: &'static str, score| Retrieved {
            score,
            docid: docid.as_bytes(),
        };
        let mut docs = [
            d("d9", 1.0),
            d("d10", 1.0),
            d("a", 2.0),
            d("z", 0.5),
            d("d1", 1.0),
        ];
        docs.sort_by(trec_order);
        let order: Vec<_> = docs.iter().map(|x| show(x.docid)).collect();
        assert_eq!(order, ["a", "d9", "d10", "d1", "z"]);
        assert_eq!(
            duplicate_lines::<6>(b"1 Q0 x 1 1 t\n1 Q0 y 1 3 t\n1 Q0 x 1 2 t\n", b"1", b"x"),
            [1, 3]
        );
    }
}
