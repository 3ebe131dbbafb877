//! The mlctl-ranker side of `ranker/bench/run`: loads a model and a float32 `.npy`
//! matrix, then times `Scorer::score_f32` (one thread) with the same protocol the
//! Python peers use, so per-document times exclude loading and parsing.
//!
//! `cargo bench -p mlctl-ranker --bench peer -- MODEL ROWS.npy SCORES_OUT BATCH...`
//! prints `batch ns_per_doc` lines and writes the scores of the first 1,000 rows
//! (one per line) so the script can check them against LightGBM's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mlctl_ranker::engine::Scorer;
use mlctl_ranker::model::{Format, load};
use mlctl_ranker::predict::{Matrix, parse_npy};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

/// Documents scored per timed repetition: batch 1 makes 2,000 calls on different
/// rows, larger batches at least one call.
const DOCS_PER_REPETITION: usize = 2000;

fn main() {
    // `cargo bench` appends `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [model, rows, scores_out, batches @ ..] = &args[..] else {
        panic!("usage: peer MODEL ROWS.npy SCORES_OUT BATCH...");
    };
    let ensemble = load(&std::fs::read(model).unwrap(), Format::Auto).unwrap();
    let scorer = Scorer::new(&ensemble);
    let Matrix::F32 { values, columns } = parse_npy(&std::fs::read(rows).unwrap()).unwrap() else {
        panic!("{rows}: expected float32");
    };
    assert_eq!(columns, scorer.num_features());
    let n = values.len() / columns;

    let check = n.min(1000);
    let mut out = vec![0.0; check];
    scorer.score_f32(&values[..check * columns], &mut out);
    let mut file = std::io::BufWriter::new(std::fs::File::create(scores_out).unwrap());
    for s in &out {
        writeln!(file, "{s}").unwrap();
    }
    file.flush().unwrap();

    for batch in batches {
        let batch: usize = batch.parse().unwrap();
        assert!(batch <= n, "batch {batch} is larger than the {n} rows");
        let calls = DOCS_PER_REPETITION.div_ceil(batch);
        let repetitions = if batch >= 100_000 { 1 } else { 3 };
        let mut out = vec![0.0; batch];
        let mut best = f64::INFINITY;
        for _ in 0..repetitions {
            let started = Instant::now();
            for call in 0..calls {
                let first = (call * batch) % (n - batch + 1);
                let rows = &values[first * columns..(first + batch) * columns];
                scorer.score_f32(black_box(rows), black_box(&mut out));
            }
            let ns = started.elapsed().as_nanos() as f64 / (calls * batch) as f64;
            best = best.min(ns);
        }
        println!("{batch} {best:.1}");
    }
}
