//! Parser tests: every accepted shape, every refusal's message, and property tests
//! that arbitrary or mutated bodies give a 4xx-class `Reject`, never a panic.

use proptest::prelude::*;

use super::super::infer::parse_infer;
use super::*;

fn schema() -> Schema {
    Schema::new(3, vec!["bm25".into(), "ctr_7d".into(), "age".into()], 5)
}

fn rank(body: &str) -> Result<RankRequest<f64>, Reject> {
    parse_rank::<f64>(body.as_bytes(), &schema())
}

fn bad(body: &str) -> String {
    match rank(body) {
        Err(Reject::BadRequest(m)) => m,
        other => panic!("expected a 400 for {body}, got {other:?}"),
    }
}

#[test]
fn arrays_objects_nulls_and_ids() {
    let r = rank(
        r#"{"query": "q1", "extra": {"ignored": [1]}, "documents": [
            {"id": "d1", "features": [1.5, null, -3]},
            {"features": {"age": 7, "bm25": 12.25, "ctr_7d": null}, "id": 42},
            {"id": -1, "features": {}}
        ]}"#,
    )
    .unwrap();
    assert_eq!(r.query.as_deref(), Some("q1"));
    assert_eq!(
        r.ids,
        vec![DocId::Str("d1".into()), DocId::UInt(42), DocId::Int(-1)]
    );
    let want = [1.5, f64::NAN, -3.0, 12.25, f64::NAN, 7.0];
    for (g, w) in r.rows.iter().zip(want) {
        assert!(g == &w || (g.is_nan() && w.is_nan()), "{:?}", r.rows);
    }
    assert!(r.rows[6..].iter().all(|v| v.is_nan()));
}

#[test]
fn f32_rows_hold_the_cast_value() {
    let r = parse_rank::<f32>(
        br#"{"documents":[{"id":"a","features":[0.1,1e300,3]}]}"#,
        &schema(),
    )
    .unwrap();
    assert_eq!(r.rows, vec![0.1f32, f32::INFINITY, 3.0]);
}

#[test]
fn wrong_count_names_the_document_and_id_even_when_id_comes_last() {
    let m = bad(r#"{"documents":[{"id":"a","features":[1,2,3]},{"features":[1,2],"id":"d4"}]}"#);
    assert_eq!(m, "document 1 (id d4): 2 features, the model has 3");
    let m = bad(r#"{"documents":[{"id":"a","features":[1,2,3,4]}]}"#);
    assert_eq!(m, "document 0 (id a): 4 features, the model has 3");
}

#[test]
fn refusals_name_the_field_and_the_fix() {
    let cases = [
        (
            r#"{"documents":[{"id":"a","features":[1,"x",3]}]}"#,
            "document 0 (id a): feature 1 (ctr_7d) is a string, not a number",
        ),
        (
            r#"{"documents":[{"id":"a","features":{"bm25x":1}}]}"#,
            "unknown feature \"bm25x\"; the model's features are bm25, ctr_7d, age",
        ),
        (
            r#"{"documents":[{"id":"a","features":{"age":1,"age":2}}]}"#,
            "feature \"age\" is given twice",
        ),
        (
            r#"{"documents":[{"id":"a","features":"1,2,3"}]}"#,
            "\"features\" is a string; send an array of 3 numbers",
        ),
        (
            r#"{"documents":[{"features":[1,2,3]}]}"#,
            "document 0: no \"id\"",
        ),
        (
            r#"{"documents":[{"id":true,"features":[1,2,3]}]}"#,
            "\"id\" is a boolean; send a string or an integer",
        ),
        (
            r#"{"documents":[{"id":"a"}]}"#,
            "document 0 (id a): no \"features\"",
        ),
        (r#"{"query":"q"}"#, "missing field \"documents\""),
        (r#"{"documents":{}}"#, "invalid request body"),
        (r#"[1,2]"#, "invalid request body"),
        (r#"{"documents":[]} x"#, "invalid request body"),
        (r#"{"documents":[],"documents":[]}"#, "given twice"),
    ];
    for (body, want) in cases {
        let m = bad(body);
        assert!(m.contains(want), "{body}: {m}");
    }
}

#[test]
fn named_features_need_a_model_with_names() {
    let unnamed = Schema::new(2, vec![], 5);
    let r = parse_rank::<f32>(
        br#"{"documents":[{"id":"a","features":{"x":1}}]}"#,
        &unnamed,
    );
    match r {
        Err(Reject::BadRequest(m)) => assert!(m.contains("does not name its features"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn document_limit_is_413_and_the_limit_itself_is_fine() {
    let doc = r#"{"id":"a","features":[1,2,3]}"#;
    let five = format!(r#"{{"documents":[{}]}}"#, [doc; 5].join(","));
    assert_eq!(rank(&five).unwrap().ids.len(), 5);
    let six = format!(r#"{{"documents":[{}]}}"#, [doc; 6].join(","));
    match rank(&six) {
        Err(Reject::TooLarge(m)) => assert!(m.contains("more than 5 documents"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn infer_flat_and_nested_with_shape_checks() {
    let s = schema();
    let flat = br#"{"id":"r1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,null]}]}"#;
    let r = parse_infer::<f64>(flat, &s).unwrap();
    assert_eq!((r.id.as_deref(), r.num_rows), (Some("r1"), 2));
    assert!(r.rows[5].is_nan());
    let nested = br#"{"inputs":[{"data":[[0.1,2,3],[4,5,6]],"datatype":"FP32","shape":[2,3]}]}"#;
    let r = parse_infer::<f64>(nested, &s).unwrap();
    // FP32 tensors hold f32 values: 0.1 becomes the f32 nearest to 0.1.
    assert_eq!(r.rows[0], f64::from(0.1f32));
    let refusals: [(&[u8], &str); 7] = [
        (br#"{"inputs":[{"shape":[2,3],"datatype":"FP32","data":[1,2,3]}]}"#, "holds 6 values but data has 3"),
        (br#"{"inputs":[{"shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#, "4 features, the model has 3"),
        (br#"{"inputs":[{"shape":[1,3],"datatype":"INT64","data":[1,2,3]}]}"#, "send FP32 or FP64"),
        (br#"{"inputs":[{"shape":[1,3],"datatype":"FP32","data":[1,"a",3]}]}"#, "value 1 is a string"),
        (br#"{"inputs":[]}"#, "must hold one tensor"),
        (br#"{"inputs":[{"shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"prob"}]}"#, "unknown output \"prob\""),
        (br#"{"inputs":[{"shape":[1,3],"datatype":"FP32","data":[1,2,3]},{"shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#, "more than one tensor"),
    ];
    for (body, want) in refusals {
        match parse_infer::<f32>(body, &s) {
            Err(Reject::BadRequest(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    let big = format!(
        r#"{{"inputs":[{{"shape":[6,3],"datatype":"FP32","data":[{}]}}]}}"#,
        vec!["1"; 18].join(",")
    );
    assert!(matches!(
        parse_infer::<f32>(big.as_bytes(), &s),
        Err(Reject::TooLarge(_))
    ));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(r#"{{"documents":[{{"id":"a","features":{deep}}}]}}"#);
    assert!(matches!(rank(&body), Err(Reject::BadRequest(_))));
    let body = format!(r#"{{"inputs":[{{"data":{deep}}}]}}"#);
    assert!(parse_infer::<f32>(body.as_bytes(), &schema()).is_err());
}

const VALID: &str = r#"{"query":"q","documents":[{"id":"d1","features":[1.5,null,-3]},{"id":2,"features":{"bm25":1,"age":2e3}}]}"#;
const VALID_INFER: &str = r#"{"id":"r","inputs":[{"name":"features","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_rank::<f32>(&body, &schema());
        let _ = parse_rank::<f64>(&body, &schema());
        let _ = parse_infer::<f32>(&body, &schema());
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        for valid in [VALID, VALID_INFER] {
            let mut body = valid.as_bytes().to_vec();
            for (at, byte, op) in &edits {
                if body.is_empty() { break; }
                let i = at.index(body.len());
                match op {
                    0 => body[i] = *byte,
                    1 => { body.remove(i); }
                    _ => body.insert(i, *byte),
                }
            }
            // Either accepted (the mutation kept it valid) or refused; any refusal
            // is a Reject, which the server maps to 400 or 413.
            let _ = parse_rank::<f64>(&body, &schema());
            let _ = parse_infer::<f64>(&body, &schema());
        }
    }

    #[test]
    fn accepted_rows_always_have_the_model_width(n in 0usize..6, width in 0usize..6) {
        let doc = format!(r#"{{"id":"a","features":[{}]}}"#, vec!["1"; width].join(","));
        let body = format!(r#"{{"documents":[{}]}}"#, vec![doc.as_str(); n].join(","));
        match parse_rank::<f32>(body.as_bytes(), &schema()) {
            Ok(r) => {
                prop_assert!(width == 3 || n == 0);
                prop_assert_eq!(r.rows.len(), r.ids.len() * 3);
            }
            Err(Reject::TooLarge(_)) => prop_assert!(n > 5),
            Err(Reject::BadRequest(m)) => prop_assert!(width != 3 && m.contains("features, the model has 3"), "{}", m),
        }
    }
}
