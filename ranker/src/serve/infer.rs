//! The Open Inference Protocol v2 `infer` body: one `[N, F]` FP32/FP64 tensor in,
//! one FP64 `[N]` score tensor out (so KServe and Triton clients work unchanged).
//!
//! Like the `:rank` parser, the tensor's `data` (flat or nested) is read straight
//! into the flat row buffer; `shape` and `datatype` are checked once it is read,
//! because JSON objects may list `data` before them.

use std::fmt;

use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::parse::{Feature, Reject, Schema};

/// The name of the single input tensor in the model metadata. Any name is accepted
/// on input, since there is exactly one.
pub const INPUT_NAME: &str = "features";
/// The name of the output tensor.
pub const OUTPUT_NAME: &str = "score";

/// A parsed infer request.
#[derive(Debug)]
pub struct InferRequest<T> {
    /// The request id, echoed in the response.
    pub id: Option<String>,
    /// Rows (`N`).
    pub num_rows: usize,
    /// `N * F` values, row-major.
    pub rows: Vec<T>,
}

/// The infer response body.
#[derive(Serialize)]
pub struct InferResponse<'a> {
    /// The served model's name.
    pub model_name: &'a str,
    /// The served model's version.
    pub model_version: &'a str,
    /// The request's id, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// One tensor: the scores.
    pub outputs: [OutputTensor<'a>; 1],
}

/// The score tensor.
#[derive(Serialize)]
pub struct OutputTensor<'a> {
    /// Always [`OUTPUT_NAME`].
    pub name: &'static str,
    /// Always FP64: LightGBM sums in f64 (FP32 would round its scores) and f32
    /// scores widen exactly, so FP64 is the library's exact value in every case.
    pub datatype: &'static str,
    /// `[N]`.
    pub shape: [usize; 1],
    /// The scores in row order.
    pub data: &'a [f64],
}

/// Parses an infer request for a model with `schema.num_features` columns.
pub fn parse_infer<T: Feature>(body: &[u8], schema: &Schema) -> Result<InferRequest<T>, Reject> {
    // The byte-level reader takes the common shape (one tensor, no extra fields);
    // the checks below are shared, so both paths refuse the same way.
    if let Some(parts) = super::fast::parse_infer_parts::<T>(body, schema) {
        return finish(schema, parts);
    }
    let mut state: State<'_, T> = State {
        schema,
        reject: None,
        id: None,
        inputs: 0,
        tensor: Tensor::default(),
        rows: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let outcome = RequestSeed(&mut state)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(reject) = state.reject {
        return Err(reject);
    }
    if let Err(e) = outcome {
        return Err(Reject::BadRequest(format!("invalid request body: {e}")));
    }
    if state.inputs == 0 {
        return Err(Reject::BadRequest(format!(
            "\"inputs\" must hold one tensor {{\"name\": \"{INPUT_NAME}\", \"datatype\": \"FP32\", \"shape\": [N, {}], \"data\": [...]}}",
            schema.num_features
        )));
    }
    finish(
        schema,
        InferParts {
            id: state.id,
            shape: state.tensor.shape,
            datatype: state.tensor.datatype,
            rows: state.rows,
        },
    )
}

/// What either reader collected from a request with one input tensor.
pub(super) struct InferParts<T> {
    pub id: Option<String>,
    pub shape: Option<Vec<u64>>,
    pub datatype: Option<String>,
    pub rows: Vec<T>,
}

/// Checks datatype and shape against the model and the data, then rounds FP32.
fn finish<T: Feature>(schema: &Schema, parts: InferParts<T>) -> Result<InferRequest<T>, Reject> {
    let bad = |m: String| Err(Reject::BadRequest(m));
    let t = &parts;
    let f = schema.num_features;
    let fp32 = match t.datatype.as_deref() {
        Some("FP32") => true,
        Some("FP64") => false,
        Some(other) => {
            return bad(format!(
                "inputs[0].datatype is {other:?}; send FP32 or FP64"
            ));
        }
        None => return bad("inputs[0].datatype is missing; send FP32 or FP64".into()),
    };
    let Some(shape) = &t.shape else {
        return bad(format!("inputs[0].shape is missing; send [N, {f}]"));
    };
    let num_rows = match shape.as_slice() {
        [n, cols] if *cols == f as u64 => *n,
        [_, cols] => {
            return bad(format!(
                "inputs[0].shape {shape:?}: {cols} features, the model has {f}"
            ));
        }
        _ => return bad(format!("inputs[0].shape {shape:?} is not [N, {f}]")),
    };
    if num_rows > schema.max_documents as u64 {
        return Err(Reject::TooLarge(format!(
            "inputs[0].shape {shape:?}: more than {} rows in one request (the server's --max-documents); split the request",
            schema.max_documents
        )));
    }
    let num_rows = num_rows as usize;
    let expected = num_rows.saturating_mul(f);
    if t.rows.len() != expected {
        return bad(format!(
            "inputs[0]: shape {shape:?} holds {expected} values but data has {}",
            t.rows.len()
        ));
    }
    let mut rows = parts.rows;
    if fp32 {
        // An FP32 tensor holds f32 values: a library fed the same tensor sees them
        // rounded to f32 (matters for models that compare in f64).
        for v in &mut rows {
            *v = v.round_to_f32();
        }
    }
    Ok(InferRequest {
        id: parts.id,
        num_rows,
        rows,
    })
}

#[derive(Default)]
struct Tensor {
    shape: Option<Vec<u64>>,
    datatype: Option<String>,
    seen_data: bool,
}

struct State<'s, T> {
    schema: &'s Schema,
    reject: Option<Reject>,
    id: Option<String>,
    inputs: usize,
    tensor: Tensor,
    rows: Vec<T>,
}

impl<T> State<'_, T> {
    fn fail<E: de::Error>(&mut self, reject: Reject) -> E {
        let msg = reject.to_string();
        self.reject = Some(reject);
        E::custom(msg)
    }
}

struct RequestSeed<'a, 's, T>(&'a mut State<'s, T>);

impl<'de, T: Feature> DeserializeSeed<'de> for RequestSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for RequestSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an inference request object with \"inputs\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => state.id = map.next_value::<Option<String>>()?,
                "inputs" => map.next_value_seed(InputsSeed(&mut *state))?,
                "outputs" => {
                    let outputs = map.next_value::<Vec<RequestedOutput>>()?;
                    if let Some(o) = outputs.iter().find(|o| o.name != OUTPUT_NAME) {
                        return Err(state.fail(Reject::BadRequest(format!(
                            "outputs: unknown output {:?}; the model has one output, {OUTPUT_NAME:?}",
                            o.name
                        ))));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct RequestedOutput {
    name: String,
}

struct InputsSeed<'a, 's, T>(&'a mut State<'s, T>);

impl<'de, T: Feature> DeserializeSeed<'de> for InputsSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for InputsSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"inputs\" as an array of tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        while seq.next_element_seed(TensorSeed(&mut *state))?.is_some() {}
        Ok(())
    }
}

struct TensorSeed<'a, 's, T>(&'a mut State<'s, T>);

impl<'de, T: Feature> DeserializeSeed<'de> for TensorSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for TensorSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor object with name, shape, datatype and data")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        state.inputs += 1;
        if state.inputs > 1 {
            return Err(state.fail(Reject::BadRequest(format!(
                "\"inputs\" holds more than one tensor; the model takes one, {INPUT_NAME:?} [N, {}]",
                state.schema.num_features
            ))));
        }
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "shape" => state.tensor.shape = Some(map.next_value()?),
                "datatype" => state.tensor.datatype = Some(map.next_value()?),
                "data" => {
                    if state.tensor.seen_data {
                        return Err(
                            state.fail(Reject::BadRequest("inputs[0].data is given twice".into()))
                        );
                    }
                    state.tensor.seen_data = true;
                    let limit = state
                        .schema
                        .max_documents
                        .saturating_mul(state.schema.num_features.max(1));
                    map.next_value_seed(DataSeed {
                        state: &mut *state,
                        limit,
                    })?;
                }
                // `name` (any name: there is one input) and `parameters`.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A number or a (nested) array of numbers, appended in row-major order.
struct DataSeed<'a, 's, T> {
    state: &'a mut State<'s, T>,
    limit: usize,
}

impl<T: Feature> DataSeed<'_, '_, T> {
    fn push<E: de::Error>(self, v: T) -> Result<(), E> {
        if self.state.rows.len() == self.limit {
            let max = self.state.schema.max_documents;
            return Err(self.state.fail(Reject::TooLarge(format!(
                "inputs[0].data: more than {max} rows in one request (the server's --max-documents); split the request"
            ))));
        }
        self.state.rows.push(v);
        Ok(())
    }
    fn bad<E: de::Error>(self, kind: &str) -> Result<(), E> {
        let at = self.state.rows.len();
        Err(self.state.fail(Reject::BadRequest(format!(
            "inputs[0].data: value {at} is {kind}, not a number"
        ))))
    }
}

impl<'de, T: Feature> DeserializeSeed<'de> for DataSeed<'_, '_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Feature> Visitor<'de> for DataSeed<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers, flat or nested in arrays")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let limit = self.limit;
        let state = self.state;
        while seq
            .next_element_seed(DataSeed {
                state: &mut *state,
                limit,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_f64(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_f64(v as f64))
    }
    // JSON has no NaN: null is accepted as a missing value.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(T::MISSING)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.bad("a string")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.bad("a boolean")
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.bad("an object")
    }
}
