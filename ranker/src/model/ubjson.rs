//! A small UBJSON reader (<https://ubjson.org>, draft 12) producing a
//! `serde_json::Value`, so XGBoost's UBJSON and JSON models share one loader.
//! It handles the optimised containers XGBoost writes (`[$d#L…` float arrays,
//! `[$U#…` byte arrays, `{` objects with `L`-counted keys). Numbers become f64,
//! which holds every f32 and every integer XGBoost writes exactly enough.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is not a model; refusing it bounds the recursion.
const MAX_DEPTH: usize = 64;

/// Parses one UBJSON value filling `bytes`. Errors name the byte offset.
pub(super) fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { bytes, pos: 0 };
    let marker = r.byte()?;
    let v = r.value(marker, 0)?;
    if r.pos != bytes.len() {
        return Err(format!(
            "offset {}: {} bytes after the top-level value",
            r.pos,
            bytes.len() - r.pos
        ));
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

fn float(v: f64) -> Value {
    // JSON has no NaN or infinity; a model using them as a value is refused later
    // by the field that needs a number.
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl Reader<'_> {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("offset {}: {what}", self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.err(format!("{n} bytes needed, the artifact ends first")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    /// An integer of the type `marker` (used for lengths and counts too).
    fn integer(&mut self, marker: u8) -> Result<i64, String> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            m => return Err(self.err(format!("expected an integer marker, found {:?}", m as char))),
        })
    }

    /// A length or count: an integer marker then the value, never negative.
    fn length(&mut self) -> Result<usize, String> {
        let marker = self.byte()?;
        let n = self.integer(marker)?;
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.length()?;
        let start = self.pos;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_string)
            .map_err(|_| format!("offset {start}: string is not UTF-8"))
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Value, String> {
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.integer(marker)?),
            b'd' => float(f64::from(f32::from_be_bytes(self.array()?))),
            b'D' => float(f64::from_be_bytes(self.array()?)),
            b'C' => Value::String(char::from(self.byte()?).to_string()),
            b'S' => Value::String(self.string()?),
            b'H' => {
                let s = self.string()?;
                float(
                    s.parse::<f64>()
                        .map_err(|_| self.err(format!("high-precision number {s:?}")))?,
                )
            }
            b'[' | b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("containers nested too deeply"));
                }
                self.container(marker == b'{', depth + 1)?
            }
            m => return Err(self.err(format!("unknown UBJSON marker {:?} (0x{m:02x})", m as char))),
        })
    }

    /// The body of an array or object after its opening marker: optionally typed
    /// (`$t`) and counted (`#n`), otherwise closed by `]`/`}`.
    fn container(&mut self, object: bool, depth: usize) -> Result<Value, String> {
        let mut elem_type = None;
        let mut count = None;
        if self.bytes.get(self.pos) == Some(&b'$') {
            self.pos += 1;
            elem_type = Some(self.byte()?);
            if self.bytes.get(self.pos) != Some(&b'#') {
                return Err(self.err("a typed container ($) must be counted (#)"));
            }
        }
        if self.bytes.get(self.pos) == Some(&b'#') {
            self.pos += 1;
            let n = self.length()?;
            // Every element takes at least one byte unless its type has no payload;
            // a count beyond the artifact is a corrupt length, not a huge model.
            let remaining = self.bytes.len() - self.pos;
            let payload_free = matches!(elem_type, Some(b'Z' | b'T' | b'F' | b'N'));
            if n > remaining && !(payload_free && n <= 1 << 20) {
                return Err(self.err(format!("count {n} exceeds the {remaining} bytes left")));
            }
            count = Some(n);
        }
        let mut items = Vec::new();
        let mut map = Map::new();
        let mut i = 0usize;
        loop {
            match count {
                Some(n) if i == n => break,
                Some(_) => {}
                None => {
                    let close = if object { b'}' } else { b']' };
                    while self.bytes.get(self.pos) == Some(&b'N') {
                        self.pos += 1;
                    }
                    if self.bytes.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        break;
                    }
                }
            }
            let key = if object { Some(self.string()?) } else { None };
            let marker = match elem_type {
                Some(t) => t,
                None => self.byte()?,
            };
            let v = self.value(marker, depth)?;
            match key {
                Some(k) => {
                    map.insert(k, v);
                }
                None => items.push(v),
            }
            i += 1;
        }
        Ok(if object {
            Value::Object(map)
        } else {
            Value::Array(items)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_counted_arrays_and_objects() {
        // {"a": [1.5f32, -2f32], "b": "x", "c": [1, 0] as uint8}
        let mut b = vec![
            b'{', b'L', 0, 0, 0, 0, 0, 0, 0, 1, b'a', b'[', b'$', b'd', b'#', b'i', 2,
        ];
        b.extend(1.5f32.to_be_bytes());
        b.extend((-2f32).to_be_bytes());
        b.extend([b'i', 1, b'b', b'S', b'i', 1, b'x']);
        b.extend([b'i', 1, b'c', b'[', b'$', b'U', b'#', b'U', 2, 1, 0]);
        b.push(b'}');
        let v = parse(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1.5, -2.0], "b": "x", "c": [1, 0]})
        );
    }

    #[test]
    fn errors_name_the_offset_and_never_panic() {
        let err = parse(b"[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff").unwrap_err();
        assert!(err.contains("offset") && err.contains("count"), "{err}");
        assert!(parse(b"{").unwrap_err().contains("offset 1"));
        assert!(parse(b"[i").unwrap_err().contains("ends first"));
        assert!(parse(b"q").unwrap_err().contains("unknown UBJSON marker"));
        let deep = vec![b'['; 200];
        assert!(parse(&deep).unwrap_err().contains("nested"));
    }
}
