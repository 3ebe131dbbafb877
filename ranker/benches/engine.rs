//! Hot-path benchmarks of the scoring engine on synthetic LightGBM-shaped models
//! (leaf-wise grown trees over 136 features), so every change to the evaluator is
//! measured before and after. `ranker/bench/run` compares against the libraries on
//! real trained models; this one needs no Python.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlctl_ranker::engine::Scorer;
use mlctl_ranker::model::{
    Comparison, Ensemble, ModelInfo, Node, OutputTransform, Precision, SourceFormat, Test, Tree,
};
use std::hint::black_box;

const FEATURES: usize = 136;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A tree grown leaf-wise (as LightGBM does) by splitting a random leaf until it
/// has `leaves` leaves, so depths are uneven like a real model's.
fn tree(rng: &mut Rng, leaves: usize, precision: Precision) -> Tree {
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    let mut open = vec![0usize];
    while open.len() < leaves {
        let at = open.swap_remove((rng.next() % open.len() as u64) as usize);
        let left = nodes.len() as u32;
        nodes.push(Node::Leaf { value: 0.0 });
        nodes.push(Node::Leaf { value: 0.0 });
        let threshold = rng.unit();
        nodes[at] = Node::Split {
            feature: (rng.next() % FEATURES as u64) as u32,
            test: Test::Numeric {
                threshold: match precision {
                    Precision::F64 => threshold,
                    Precision::F32 => f64::from(threshold as f32),
                },
                comparison: Comparison::LessOrEqual,
                nan_left: rng.next().is_multiple_of(2),
                zero_missing_left: None,
            },
            left,
            right: left + 1,
        };
        open.extend([left as usize, left as usize + 1]);
    }
    for node in &mut nodes {
        if let Node::Leaf { value } = node {
            *value = f64::from((rng.unit() - 0.5) as f32);
        }
    }
    // Children must come after parents (they do: appended after the split).
    Tree { nodes }
}

fn ensemble(trees: usize, leaves: usize, precision: Precision) -> Ensemble {
    let mut rng = Rng(0x5EED ^ (trees * leaves) as u64);
    let e = Ensemble {
        precision,
        num_features: FEATURES,
        feature_names: vec![],
        base_score: 0.0,
        trees: (0..trees)
            .map(|_| tree(&mut rng, leaves, precision))
            .collect(),
        transform: OutputTransform::Identity,
        info: ModelInfo {
            format: SourceFormat::LightGbm,
            objective: "lambdarank".into(),
            trees_in_artifact: trees,
        },
    };
    e.validate().unwrap();
    e
}

fn rows(n: usize) -> Vec<f32> {
    let mut rng = Rng(42);
    (0..n * FEATURES)
        .map(|_| {
            if rng.next().is_multiple_of(50) {
                f32::NAN
            } else {
                rng.unit() as f32
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for (trees, leaves, precision) in [
        (100, 31, Precision::F64),
        (500, 63, Precision::F64),
        (500, 63, Precision::F32),
        (1000, 255, Precision::F64),
    ] {
        let scorer = Scorer::new(&ensemble(trees, leaves, precision));
        let mut group = c.benchmark_group(format!("{trees}x{leaves}-{precision:?}"));
        for batch in [1usize, 100, 1000] {
            let input = rows(batch);
            let mut out = vec![0.0; batch];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("score_f32", batch), &batch, |b, _| {
                b.iter(|| scorer.score_f32(black_box(&input), black_box(&mut out)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
