//! The fast path against JSON number syntax and against the serde parsers.
use super::*;
use proptest::prelude::*;

fn schema() -> Schema {
    Schema::new(3, vec!["a".into(), "b".into(), "c".into()], 100)
}

fn number(text: &str) -> Option<f64> {
    let mut c = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let v = c.number()?;
    (c.i == text.len()).then_some(v)
}

#[test]
fn numbers_follow_json_syntax() {
    for (t, v) in [
        ("0", 0.0),
        ("-0.5", -0.5),
        ("12.25", 12.25),
        ("1e3", 1000.0),
        ("1E-2", 0.01),
        ("2.5e+2", 250.0),
        ("0.30000000000000004", 0.30000000000000004),
        ("123456789012345678901234", 1.2345678901234568e23),
        ("4.9e-324", 4.9e-324),
    ] {
        assert_eq!(number(t), Some(v), "{t}");
    }
    for t in [
        "01", "1.", ".5", "+1", "1e", "-", "NaN", "1e400", "0x10", "--1",
    ] {
        assert_eq!(number(t), None, "{t}");
    }
}

#[test]
fn defers_on_anything_unusual() {
    for body in [
        r#"{"documents":[{"id":"a\n","features":[1,2,3]}]}"#,
        r#"{"documents":[{"id":"a","features":[1,2,3],"x":1}]}"#,
        r#"{"documents":[{"id":"a","features":[1,2]}]}"#,
        r#"{"documents":[{"id":1.5,"features":[1,2,3]}]}"#,
        r#"{"documents":[{"id":"a","features":{"z":1}}]}"#,
        r#"{"documents":[{"id":"a","features":{"a":1,"a":1}}]}"#,
        r#"{"documents":[{"id":"a","features":[1,2,3]}]} x"#,
        r#"{"documents":[],"documents":[]}"#,
        r#"{"other":1,"documents":[]}"#,
        r#"{"query":"q"}"#,
    ] {
        assert!(
            parse_rank::<f64>(body.as_bytes(), &schema()).is_none(),
            "{body}"
        );
    }
}

fn render(v: Option<f64>, style: u8) -> String {
    match v {
        None => "null".into(),
        Some(x) if style == 0 => format!("{x:?}"),
        Some(x) if style == 1 => format!("{x:e}"),
        Some(x) => format!("{x:.3}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the fast path accepts, the serde path accepts identically (ids,
    /// query and bit-identical rows), so the fast path changes nothing but speed.
    #[test]
    fn agrees_with_the_serde_parser(
        docs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), proptest::collection::vec(
                proptest::option::weighted(0.9, any::<f64>().prop_filter("finite", |x| x.is_finite())), 3)),
            0..6),
        style in 0u8..3,
        named in any::<bool>(),
        spaced in any::<bool>(),
    ) {
        let sep = if spaced { " \n" } else { "" };
        let parts: Vec<String> = docs.iter().map(|(str_id, id, f)| {
            let id = if *str_id { format!("\"d{id}\"") } else { id.to_string() };
            let feats = if named {
                let kv: Vec<String> = f.iter().enumerate().filter(|(_, v)| v.is_some())
                    .map(|(i, v)| format!("\"{}\":{sep}{}", ["a", "b", "c"][i], render(*v, style))).collect();
                format!("{{{}}}", kv.join(","))
            } else {
                let vs: Vec<String> = f.iter().map(|v| render(*v, style)).collect();
                format!("[{}]", vs.join(&format!(",{sep}")))
            };
            format!("{{{sep}\"features\":{sep}{feats},\"id\":{id}}}")
        }).collect();
        let body = format!("{{\"query\":\"q\",{sep}\"documents\":[{}]}}{sep}", parts.join(","));
        let fast = parse_rank::<f64>(body.as_bytes(), &schema());
        prop_assert!(fast.is_some(), "the fast path deferred on {}", body);
        let slow = super::super::parse::parse_rank_serde::<f64>(body.as_bytes(), &schema()).unwrap();
        let fast = fast.unwrap();
        prop_assert_eq!(&fast.ids, &slow.ids);
        prop_assert_eq!(&fast.query, &slow.query);
        let bits = |r: &[f64]| r.iter().map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() }).collect::<Vec<_>>();
        prop_assert_eq!(bits(&fast.rows), bits(&slow.rows), "{}", body);
    }

    /// Mutated bodies: whenever the fast path still accepts, the serde parser
    /// accepts too, with the same result.
    #[test]
    fn mutations_never_make_the_parsers_disagree(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)
    ) {
        let valid = r#"{"query":"q","documents":[{"id":"d1","features":[1.5,null,-3e2]},{"id":20,"features":{"a":1,"c":0.25}}]}"#;
        let mut body = valid.as_bytes().to_vec();
        for (at, byte, op) in &edits {
            if body.is_empty() {
                break;
            }
            let i = at.index(body.len());
            match op {
                0 => body[i] = *byte,
                1 => {
                    body.remove(i);
                }
                _ => body.insert(i, *byte),
            }
        }
        if let Some(fast) = parse_rank::<f64>(&body, &schema()) {
            let slow = super::super::parse::parse_rank_serde::<f64>(&body, &schema());
            prop_assert!(slow.is_ok(), "fast accepted, serde refused {:?}: {}", slow, String::from_utf8_lossy(&body));
            let slow = slow.unwrap();
            prop_assert_eq!(&fast.ids, &slow.ids);
            prop_assert_eq!(&fast.query, &slow.query);
            let bits = |r: &[f64]| r.iter().map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() }).collect::<Vec<_>>();
            prop_assert_eq!(bits(&fast.rows), bits(&slow.rows));
        }
    }

    /// The infer reader accepts only what serde accepts, with the same values.
    #[test]
    fn infer_readers_agree(
        rows in proptest::collection::vec(proptest::collection::vec(
            proptest::option::weighted(0.9, any::<f64>().prop_filter("finite", |x| x.is_finite())), 3), 0..5),
        nested in any::<bool>(),
        fp32 in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let cell = |v: &Option<f64>| v.map_or("null".to_string(), |x| format!("{x:?}"));
        let data = if nested {
            let r: Vec<String> = rows.iter().map(|r| format!("[{}]", r.iter().map(cell).collect::<Vec<_>>().join(","))).collect();
            format!("[{}]", r.join(","))
        } else {
            format!("[{}]", rows.iter().flatten().map(cell).collect::<Vec<_>>().join(","))
        };
        let body = format!(
            r#"{{"id":"r","inputs":[{{"name":"features","shape":[{},3],"datatype":"{}","data":{data}}}]}}"#,
            rows.len(), if fp32 { "FP32" } else { "FP64" });
        let mut body = body.into_bytes();
        for (at, byte) in &edits {
            let i = at.index(body.len());
            body[i] = *byte;
        }
        let serde_only = |b: &[u8]| {
            // Same as parse_infer with the fast reader switched off: break the
            // fast path with a field it does not know.
            let mut with_extra = b"{\"parameters\":{},".to_vec();
            with_extra.extend_from_slice(b.get(1..).unwrap_or_default());
            super::super::infer::parse_infer::<f64>(&with_extra, &schema())
        };
        if parse_infer_parts::<f64>(&body, &schema()).is_some() {
            let fast = super::super::infer::parse_infer::<f64>(&body, &schema());
            let slow = serde_only(&body);
            match (fast, slow) {
                (Ok(f), Ok(s)) => {
                    prop_assert_eq!(&f.id, &s.id);
                    prop_assert_eq!(f.num_rows, s.num_rows);
                    let bits = |r: &[f64]| r.iter().map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() }).collect::<Vec<_>>();
                    prop_assert_eq!(bits(&f.rows), bits(&s.rows));
                }
                (Err(f), Err(s)) => prop_assert_eq!(f, s),
                (f, s) => prop_assert!(false, "disagree on {}: {:?} vs {:?}", String::from_utf8_lossy(&body), f, s),
            }
        }
    }
}
