//! The compiled scorer on every golden model: the libraries' own scores, bit for
//! bit, for f64 rows and (LightGBM cases) for rows cast to f32, single- and
//! multi-threaded. The property tests cover random models; these cover real ones.
//! A logistic output goes through `exp`, whose last bit differs between libms:
//! those scores are bit-exact against `score_reference` and within 1e-6 of the
//! library's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mlctl_ranker::engine::Scorer;
use mlctl_ranker::model::{Format, OutputTransform, load};
use std::path::Path;

#[test]
fn every_golden_model_scores_the_librarys_scores() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".case.json") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if v.get("refuse").is_some() {
            continue;
        }
        let model = dir.join(v["model"].as_str().unwrap());
        let ensemble = load(&std::fs::read(&model).unwrap(), Format::Auto)
            .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
        let scorer = Scorer::new(&ensemble);
        let rows: Vec<f64> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        let n = rows.len() / scorer.num_features();
        let floats = |key: &str| -> Option<Vec<f64>> {
            v.get(key).map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
        };
        let exact = ensemble.transform == OutputTransform::Identity;
        let f = scorer.num_features();
        let check = |got: &[f64], want: &[f64], what: &str, widened: &dyn Fn(usize) -> Vec<f64>| {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let reference = ensemble.score_reference(&widened(i));
                let name = model.display();
                assert_eq!(
                    g.to_bits(),
                    reference.to_bits(),
                    "{name} {what} row {i}: {g} vs reference {reference}"
                );
                if exact {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{name} {what} row {i}: {g} vs {w}"
                    );
                } else {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{name} {what} row {i}: {g} vs {w}"
                    );
                }
            }
        };
        let wide_row = |i: usize| rows[i * f..(i + 1) * f].to_vec();
        let narrow_row = |i: usize| {
            rows[i * f..(i + 1) * f]
                .iter()
                .map(|x| f64::from(*x as f32))
                .collect()
        };
        let mut out = vec![0.0; n];
        // f32-precision models take f64 rows cast to f32 (the library's own input).
        let narrow: Vec<f32> = rows.iter().map(|x| *x as f32).collect();
        let expected = floats("expected").unwrap();
        if v["precision"] == "f64" {
            scorer.score_f64(&rows, &mut out);
            check(&out, &expected, "f64", &wide_row);
            scorer.score_f64_parallel(&rows, &mut out, 2);
            check(&out, &expected, "f64 parallel", &wide_row);
            if let Some(want) = floats("expected_f32") {
                scorer.score_f32(&narrow, &mut out);
                check(&out, &want, "f32", &narrow_row);
            }
        } else {
            scorer.score_f32(&narrow, &mut out);
            check(&out, &expected, "f32", &narrow_row);
            scorer.score_f64(&rows, &mut out);
            check(&out, &expected, "f64 rows into an f32 model", &wide_row);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} golden models found");
}
