//! Request bodies parsed straight into one flat, row-major feature buffer.
//!
//! No `serde_json::Value` tree is built: the visitors below write each number into
//! its row as it is read, which is what makes a 1,000 × 136 body cheap to parse.
//! Problems inside a document are remembered and reported when the document ends,
//! so the message can name the document's id even when `id` follows `features`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub use super::request::{DocId, Feature, RankRequest, Reject, Schema};

/// Parses `{"query": ..., "documents": [{"id": ..., "features": [...] | {...}}]}`.
pub fn parse_rank<T: Feature>(body: &[u8], schema: &Schema) -> Result<RankRequest<T>, Reject> {
    // The byte-level parser takes well-formed bodies about twice as fast; it gives
    // up on anything else, and this parser then accepts it or names the problem.
    if let Some(req) = super::fast::parse_rank(body, schema) {
        return Ok(req);
    }
    parse_rank_serde(body, schema)
}

/// The serde parser alone: every accepted shape, and the error messages.
pub(super) fn parse_rank_serde<T: Feature>(
    body: &[u8],
    schema: &Schema,
) -> Result<RankRequest<T>, Reject> {
    let mut state = State {
        schema,
        reject: None,
        query: None,
        ids: Vec::new(),
        rows: Vec::new(),
        seen_documents: false,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let outcome = RankSeed(&mut state)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(reject) = state.reject {
        return Err(reject);
    }
    if let Err(e) = outcome {
        return Err(Reject::BadRequest(format!("invalid request body: {e}")));
    }
    if !state.seen_documents {
        return Err(Reject::BadRequest(
            "missing field \"documents\": send {\"documents\": [{\"id\": ..., \"features\": [...]}]}"
                .into(),
        ));
    }
    Ok(RankRequest {
        query: state.query,
        ids: state.ids,
        rows: state.rows,
    })
}

struct State<'s, T> {
    schema: &'s Schema,
    /// Set when the error is ours (it then replaces serde's message).
    reject: Option<Reject>,
    query: Option<String>,
    ids: Vec<DocId>,
    rows: Vec<T>,
    seen_documents: bool,
}

impl<T> State<'_, T> {
    fn fail<E: de::Error>(&mut self, reject: Reject) -> E {
        let msg = reject.to_string();
        self.reject = Some(reject);
        E::custom(msg)
    }
}

struct RankSeed<'a, 's, T>(&'a mut State<'s, T>);

impl<'de, T: Feature> DeserializeSeed<'de> for RankSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for RankSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with \"documents\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key.0.as_str() {
                "documents" => {
                    if state.seen_documents {
                        return Err(
                            state.fail(Reject::BadRequest("\"documents\" is given twice".into()))
                        );
                    }
                    state.seen_documents = true;
                    map.next_value_seed(DocumentsSeed(&mut *state))?;
                }
                "query" => {
                    state.query = map.next_value::<Option<QueryId>>()?.map(|q| q.0);
                }
                // Unknown fields are ignored so that clients can send more than we read.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A map key, borrowed when the input allows (no escapes) but owned here for
/// simplicity: top-level and document keys are few per document.
struct KeyName(String);

impl<'de> serde::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyName, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                // Short keys ("id", "features") are the common case; this allocation
                // is per document, not per feature.
                Ok(KeyName(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The query id: a string or a number (kept as its decimal text).
struct QueryId(String);

impl<'de> serde::Deserialize<'de> for QueryId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<QueryId, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = QueryId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"query\" as a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QueryId, E> {
                Ok(QueryId(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QueryId, E> {
                Ok(QueryId(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QueryId, E> {
                Ok(QueryId(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

struct DocumentsSeed<'a, 's, T>(&'a mut State<'s, T>);

impl<'de, T: Feature> DeserializeSeed<'de> for DocumentsSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for DocumentsSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"documents\" as an array of {\"id\", \"features\"} objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        loop {
            let index = state.ids.len();
            if index == state.schema.max_documents {
                // One more element means the limit is exceeded; an end is fine.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    let max = state.schema.max_documents;
                    return Err(state.fail(Reject::TooLarge(format!(
                        "more than {max} documents in one request (the server's --max-documents); split the request"
                    ))));
                }
                return Ok(());
            }
            let start = state.rows.len();
            state
                .rows
                .resize(start + state.schema.num_features, T::MISSING);
            let doc = DocumentSeed {
                state: &mut *state,
                index,
                start,
            };
            if seq.next_element_seed(doc)?.is_none() {
                state.rows.truncate(start);
                return Ok(());
            }
        }
    }
}

/// What went wrong inside one document, reported when the document ends.
enum DocProblem {
    Count(usize),
    NotANumber { column: usize, kind: &'static str },
    UnknownName(String),
    Duplicate(String),
    Unnamed,
    NotAList(&'static str),
}

struct DocumentSeed<'a, 's, T> {
    state: &'a mut State<'s, T>,
    index: usize,
    start: usize,
}

impl<'de, T: Feature> DeserializeSeed<'de> for DocumentSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for DocumentSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "document {} as an object {{\"id\": ..., \"features\": [...]}}",
            self.index
        )
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let DocumentSeed {
            state,
            index,
            start,
        } = self;
        let mut id: Option<DocId> = None;
        let mut bad_id: Option<&'static str> = None;
        let mut seen_features = false;
        let mut problem: Option<DocProblem> = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key.0.as_str() {
                "id" => match map.next_value::<IdValue>()? {
                    IdValue::Ok(v) => id = Some(v),
                    IdValue::Bad(kind) => bad_id = Some(kind),
                },
                "features" => {
                    if seen_features {
                        return Err(state.fail(Reject::BadRequest(format!(
                            "document {index}: \"features\" is given twice"
                        ))));
                    }
                    seen_features = true;
                    let schema = state.schema;
                    let row = &mut state.rows[start..start + schema.num_features];
                    problem = map.next_value_seed(FeaturesSeed { schema, row })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = match &id {
            Some(id) => format!("document {index} (id {id})"),
            None => format!("document {index}"),
        };
        let message = if let Some(kind) = bad_id {
            Some(format!(
                "{name}: \"id\" is {kind}; send a string or an integer"
            ))
        } else if id.is_none() {
            Some(format!("{name}: no \"id\""))
        } else if !seen_features {
            Some(format!("{name}: no \"features\""))
        } else {
            problem.map(|p| describe(&name, p, state.schema))
        };
        if let Some(message) = message {
            return Err(state.fail(Reject::BadRequest(message)));
        }
        if let Some(id) = id {
            state.ids.push(id);
        }
        Ok(())
    }
}

fn describe(name: &str, problem: DocProblem, schema: &Schema) -> String {
    let f = schema.num_features;
    match problem {
        DocProblem::Count(n) => format!("{name}: {n} features, the model has {f}"),
        DocProblem::NotANumber { column, kind } => match schema.names.get(column) {
            Some(feature) => format!(
                "{name}: feature {column} ({feature}) is {kind}, not a number (null means missing)"
            ),
            None => {
                format!("{name}: feature {column} is {kind}, not a number (null means missing)")
            }
        },
        DocProblem::UnknownName(n) => {
            let shown: Vec<&str> = schema.names.iter().take(8).map(String::as_str).collect();
            let more = if schema.names.len() > 8 { ", ..." } else { "" };
            format!(
                "{name}: unknown feature {n:?}; the model's features are {}{more}",
                shown.join(", ")
            )
        }
        DocProblem::Duplicate(n) => format!("{name}: feature {n:?} is given twice"),
        DocProblem::Unnamed => format!(
            "{name}: features are given by name but the model does not name its features; send an array of {f} numbers in column order"
        ),
        DocProblem::NotAList(kind) => format!(
            "{name}: \"features\" is {kind}; send an array of {f} numbers or an object of feature names to numbers"
        ),
    }
}

enum IdValue {
    Ok(DocId),
    Bad(&'static str),
}

impl<'de> serde::Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdValue, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = IdValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<IdValue, E> {
        Ok(IdValue::Ok(DocId::Str(v.to_owned())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdValue, E> {
        Ok(IdValue::Ok(DocId::UInt(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdValue, E> {
        Ok(IdValue::Ok(DocId::Int(v)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<IdValue, E> {
        Ok(IdValue::Bad("a fractional number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<IdValue, E> {
        Ok(IdValue::Bad("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<IdValue, E> {
        Ok(IdValue::Bad("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IdValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(IdValue::Bad("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(IdValue::Bad("an object"))
    }
}

/// One feature value: a number, `null` (missing), or something else (reported).
enum Value {
    Num(f64),
    Missing,
    Bad(&'static str),
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Num(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Missing)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Missing)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Bad("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Bad("a boolean"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Bad("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Bad("an object"))
    }
}

/// Writes one document's features into its (NaN-filled) row.
struct FeaturesSeed<'a, T> {
    schema: &'a Schema,
    row: &'a mut [T],
}

impl<'de, T: Feature> DeserializeSeed<'de> for FeaturesSeed<'_, T> {
    type Value = Option<DocProblem>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<DocProblem>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for FeaturesSeed<'_, T> {
    type Value = Option<DocProblem>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("features as an array of numbers or an object of names to numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<DocProblem>, A::Error> {
        let mut problem = None;
        let mut count = 0usize;
        while let Some(v) = seq.next_element::<Value>()? {
            // Keep reading past a problem so the count in the message is the real one.
            if let Some(slot) = self.row.get_mut(count) {
                match v {
                    Value::Num(x) => *slot = T::from_f64(x),
                    Value::Missing => {}
                    Value::Bad(kind) => {
                        problem.get_or_insert(DocProblem::NotANumber {
                            column: count,
                            kind,
                        });
                    }
                }
            }
            count += 1;
        }
        if count != self.row.len() {
            return Ok(Some(DocProblem::Count(count)));
        }
        Ok(problem)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<DocProblem>, A::Error> {
        let schema = self.schema;
        let mut problem = None;
        if schema.names.is_empty() {
            problem = Some(DocProblem::Unnamed);
        }
        let mut seen = vec![false; self.row.len()];
        let mut next_expected = 0usize;
        while let Some(key) = map.next_key::<KeyName>()? {
            let v = map.next_value::<Value>()?;
            if problem.is_some() {
                continue;
            }
            // Clients usually send names in column order: try the next column before
            // hashing.
            let column = if schema.names.get(next_expected) == Some(&key.0) {
                Some(next_expected)
            } else {
                schema.index.get(&key.0).copied()
            };
            let Some(column) = column else {
                problem = Some(DocProblem::UnknownName(key.0));
                continue;
            };
            next_expected = column + 1;
            if seen[column] {
                problem = Some(DocProblem::Duplicate(key.0));
                continue;
            }
            seen[column] = true;
            match v {
                Value::Num(x) => self.row[column] = T::from_f64(x),
                Value::Missing => {}
                Value::Bad(kind) => problem = Some(DocProblem::NotANumber { column, kind }),
            }
        }
        Ok(problem)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("a string")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("a number")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("a number")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("a number")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("a boolean")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<DocProblem>, E> {
        Ok(Some(DocProblem::NotAList("null")))
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
