//! A byte-level fast path for the common `:rank` body: `{"query": ..., "documents":
//! [{"id": ..., "features": [numbers or null] | {name: number}}]}` with no escapes
//! and no unknown fields. It only ever accepts: on anything else (an error, an
//! escape, an extra field) it returns `None` and the serde parser, which names the
//! problem, decides. Numbers are parsed correctly rounded (exact fast path for
//! short decimals, the standard library otherwise), like the serde path.

use super::infer::InferParts;
use super::parse::{DocId, Feature, RankRequest, Schema};

/// Parses a well-formed body, or returns `None` to defer to the full parser.
pub fn parse_rank<T: Feature>(body: &[u8], schema: &Schema) -> Option<RankRequest<T>> {
    let mut p = Cursor { b: body, i: 0 };
    let mut out = RankRequest {
        query: None,
        ids: Vec::new(),
        rows: Vec::new(),
    };
    let mut seen_documents = false;
    p.ws();
    p.eat(b'{')?;
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key {
            "documents" if !seen_documents => {
                seen_documents = true;
                documents(&mut p, schema, &mut out)?;
            }
            "query" if out.query.is_none() => out.query = p.query()?,
            _ => return None,
        }
        if !p.more(b'}')? {
            break;
        }
    }
    p.ws();
    (p.i == body.len() && seen_documents).then_some(out)
}

fn documents<T: Feature>(
    p: &mut Cursor<'_>,
    schema: &Schema,
    out: &mut RankRequest<T>,
) -> Option<()> {
    let f = schema.num_features;
    p.eat(b'[')?;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
        return Some(());
    }
    // A document is at least ~20 bytes; reserve once instead of doubling.
    let guess = (p.b.len() / (20 + 2 * f)).min(schema.max_documents);
    out.ids.reserve(guess);
    out.rows.reserve(guess * f);
    loop {
        if out.ids.len() == schema.max_documents {
            return None;
        }
        p.ws();
        let start = out.rows.len();
        out.rows.resize(start + f, T::MISSING);
        let row = out.rows.get_mut(start..)?;
        let id = document(p, schema, row)?;
        out.ids.push(id);
        if !p.more(b']')? {
            return Some(());
        }
    }
}

fn document<T: Feature>(p: &mut Cursor<'_>, schema: &Schema, row: &mut [T]) -> Option<DocId> {
    p.eat(b'{')?;
    let mut id = None;
    let mut seen_features = false;
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key {
            "id" if id.is_none() => id = Some(p.id()?),
            "features" if !seen_features => {
                seen_features = true;
                match p.peek()? {
                    b'[' => feature_array(p, row)?,
                    b'{' => feature_object(p, schema, row)?,
                    _ => return None,
                }
            }
            _ => return None,
        }
        if !p.more(b'}')? {
            break;
        }
    }
    if seen_features { id } else { None }
}

fn feature_array<T: Feature>(p: &mut Cursor<'_>, row: &mut [T]) -> Option<()> {
    p.eat(b'[')?;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
        return row.is_empty().then_some(());
    }
    let mut k = 0usize;
    loop {
        p.ws();
        let v = p.value::<T>()?;
        *row.get_mut(k)? = v;
        k += 1;
        if !p.more(b']')? {
            break;
        }
    }
    (k == row.len()).then_some(())
}

fn feature_object<T: Feature>(p: &mut Cursor<'_>, schema: &Schema, row: &mut [T]) -> Option<()> {
    p.eat(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
        return Some(());
    }
    let mut seen = vec![false; row.len()];
    let mut next_expected = 0usize;
    loop {
        p.ws();
        let key = p.string()?;
        let column = if schema.names.get(next_expected).map(String::as_str) == Some(key) {
            next_expected
        } else {
            *schema.index.get(key)?
        };
        next_expected = column + 1;
        let slot = seen.get_mut(column)?;
        if *slot {
            return None;
        }
        *slot = true;
        p.ws();
        p.eat(b':')?;
        p.ws();
        *row.get_mut(column)? = p.value::<T>()?;
        if !p.more(b'}')? {
            return Some(());
        }
    }
}

/// Reads `{"id": ..., "inputs": [{"name", "shape", "datatype", "data"}]}` with one
/// tensor whose data is flat or nested one level; `None` defers to serde.
pub(super) fn parse_infer_parts<T: Feature>(body: &[u8], schema: &Schema) -> Option<InferParts<T>> {
    let mut p = Cursor { b: body, i: 0 };
    let mut parts = InferParts {
        id: None,
        shape: None,
        datatype: None,
        rows: Vec::new(),
    };
    let mut seen_inputs = false;
    p.ws();
    p.eat(b'{')?;
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key {
            "id" if parts.id.is_none() => parts.id = Some(p.string()?.to_owned()),
            "inputs" if !seen_inputs => {
                seen_inputs = true;
                p.eat(b'[')?;
                p.ws();
                tensor(&mut p, schema, &mut parts)?;
                p.ws();
                p.eat(b']')?;
            }
            _ => return None,
        }
        if !p.more(b'}')? {
            break;
        }
    }
    p.ws();
    (p.i == body.len() && seen_inputs).then_some(parts)
}

fn tensor<T: Feature>(
    p: &mut Cursor<'_>,
    schema: &Schema,
    parts: &mut InferParts<T>,
) -> Option<()> {
    let limit = schema
        .max_documents
        .saturating_mul(schema.num_features.max(1));
    let (mut name, mut data) = (false, false);
    p.eat(b'{')?;
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key {
            "name" if !name => {
                name = true;
                p.string()?;
            }
            "datatype" if parts.datatype.is_none() => {
                parts.datatype = Some(p.string()?.to_owned());
            }
            "shape" if parts.shape.is_none() => {
                let mut shape = Vec::with_capacity(2);
                p.eat(b'[')?;
                loop {
                    p.ws();
                    match p.integer()? {
                        DocId::UInt(v) => shape.push(v),
                        _ => return None,
                    }
                    if !p.more(b']')? {
                        break;
                    }
                }
                parts.shape = Some(shape);
            }
            "data" if !data => {
                data = true;
                p.eat(b'[')?;
                p.ws();
                if p.peek()? == b']' {
                    p.i += 1;
                } else {
                    loop {
                        p.ws();
                        if p.peek()? == b'[' {
                            // One row of a nested [N][F] array.
                            p.i += 1;
                            loop {
                                p.ws();
                                push_value(p, &mut parts.rows, limit)?;
                                if !p.more(b']')? {
                                    break;
                                }
                            }
                        } else {
                            push_value(p, &mut parts.rows, limit)?;
                        }
                        if !p.more(b']')? {
                            break;
                        }
                    }
                }
            }
            _ => return None,
        }
        if !p.more(b'}')? {
            return Some(());
        }
    }
}

fn push_value<T: Feature>(p: &mut Cursor<'_>, rows: &mut Vec<T>, limit: usize) -> Option<()> {
    if rows.len() == limit {
        return None;
    }
    rows.push(p.value::<T>()?);
    Some(())
}

/// Exact powers of ten as f64 (10^22 is the largest exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// After a member or element: skips whitespace, then `true` on a `,` (another
    /// one follows), `false` on `close` (the container ends), `None` otherwise.
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters (else `None`).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
        std::str::from_utf8(self.b.get(start..self.i - 1)?).ok()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A feature value: a number or `null` (missing).
    fn value<T: Feature>(&mut self) -> Option<T> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(T::MISSING);
        }
        Some(T::from_f64(self.number()?))
    }

    fn query(&mut self) -> Option<Option<String>> {
        match self.peek()? {
            b'"' => Some(Some(self.string()?.to_owned())),
            b'n' => self.literal(b"null").map(|()| None),
            _ => match self.integer()? {
                DocId::UInt(v) => Some(Some(v.to_string())),
                DocId::Int(v) => Some(Some(v.to_string())),
                DocId::Str(_) => None,
            },
        }
    }

    fn id(&mut self) -> Option<DocId> {
        if self.peek()? == b'"' {
            return Some(DocId::Str(self.string()?.to_owned()));
        }
        self.integer()
    }

    /// A JSON integer that fits u64 (or i64 when negative); anything else defers.
    fn integer(&mut self) -> Option<DocId> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        // Leading zeros, fractions and exponents are the serde path's to judge.
        if digits == 0
            || (digits > 1 && self.b.get(start) == Some(&b'0'))
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        if neg {
            // -0 is an unsigned 0 for serde_json too.
            if v == 0 {
                return Some(DocId::UInt(0));
            }
            let m = i64::try_from(v).ok()?;
            return Some(DocId::Int(-m));
        }
        Some(DocId::UInt(v))
    }

    /// A JSON number, correctly rounded to f64; `None` on bad syntax or overflow.
    fn number(&mut self) -> Option<f64> {
        // The hottest loop of the server: plain indexing after explicit bound checks.
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let int_start = i;
        let mut mant: u64 = 0;
        // Wrapping: a mantissa of more than 19 digits is re-parsed below anyway.
        while i < b.len() && b[i].is_ascii_digit() {
            mant = mant.wrapping_mul(10).wrapping_add(u64::from(b[i] - b'0'));
            i += 1;
        }
        let int_len = i - int_start;
        if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut digits = int_len;
        let mut exp10: i64 = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                mant = mant.wrapping_mul(10).wrapping_add(u64::from(b[i] - b'0'));
                i += 1;
            }
            let frac_len = i - frac_start;
            if frac_len == 0 {
                return None;
            }
            digits += frac_len;
            exp10 = -(frac_len as i64);
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let eneg = i < b.len() && b[i] == b'-';
            if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
                i += 1;
            }
            let e_start = i;
            let mut e: i64 = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                // Saturate: such exponents take the slow path anyway.
                e = (e * 10 + i64::from(b[i] - b'0')).min(1_000_000);
                i += 1;
            }
            if i == e_start {
                return None;
            }
            exp10 += if eneg { -e } else { e };
        }
        self.i = i;
        // Clinger's fast path: an exact mantissa times an exact power of ten is one
        // correctly rounded operation.
        let v = if digits <= 19 && mant < (1u64 << 53) && (-22..=22).contains(&exp10) {
            let m = mant as f64;
            let p = *POW10.get(exp10.unsigned_abs() as usize)?;
            let v = if exp10 < 0 { m / p } else { m * p };
            if neg { -v } else { v }
        } else {
            let text = std::str::from_utf8(b.get(start..i)?).ok()?;
            text.parse::<f64>().ok()?
        };
        // Out of range is an error for serde_json: let it say so.
        v.is_finite().then_some(v)
    }
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
