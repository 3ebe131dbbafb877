//! Exactness: the compiled scorer against `Ensemble::score_reference`, bit for bit,
//! on random ensembles (both precisions, every test kind, shallow and deep trees,
//! thresholds taken from the row values and their neighbours) and random rows
//! (NaN, ±0, tiny, huge, infinite, equal to a threshold), in batches that exercise
//! every path (single rows, partial lanes, several blocks, several threads).

use super::layout::{f32_threshold, f64_threshold};
use super::*;
use crate::model::{Comparison, ModelInfo, Node, SourceFormat, Test, Tree};
use proptest::prelude::*;

/// A small deterministic generator (splitmix64): proptest picks the seed, the seed
/// picks the whole case, so a failure is reproduced by its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Values rows are made of: a few random ones at several scales, their f32
/// roundings and f64 neighbours, and the special values.
fn value_pool(g: &mut Gen) -> Vec<f64> {
    let mut pool = vec![
        0.0,
        -0.0,
        1e-36,
        -1e-36,
        1e-35,
        crate::model::ZERO_THRESHOLD,
        crate::model::ZERO_THRESHOLD.next_up(),
        crate::model::ZERO_THRESHOLD.next_down(),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        1e300,
        -1e300,
        f64::from(f32::MAX),
        0.5,
        -0.5,
        1.0,
        2.0,
        31.9,
        33.0,
    ];
    for _ in 0..6 {
        let scale = g.pick(&[1.0, 10.0, 1000.0, 1e7]);
        let v = (g.unit() - 0.3) * scale;
        let narrow = f64::from(v as f32);
        pool.extend([v, narrow, narrow.next_up(), narrow.next_down(), v.trunc()]);
    }
    pool
}

fn random_test(g: &mut Gen, precision: Precision, pool: &[f64]) -> Test {
    if g.chance(15) {
        let words = 1 + g.below(2);
        return Test::Categorical {
            bits: (0..words).map(|_| g.next() as u32).collect(),
            set_left: g.chance(50),
            nan_left: g.chance(50),
            negative_before_trunc: g.chance(50),
        };
    }
    let mut threshold = g.pick(pool);
    if precision == Precision::F32 {
        threshold = f64::from(threshold as f32);
    }
    Test::Numeric {
        threshold,
        comparison: if g.chance(50) {
            Comparison::LessOrEqual
        } else {
            Comparison::Less
        },
        nan_left: g.chance(50),
        zero_missing_left: match g.below(5) {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        },
    }
}

fn leaf(g: &mut Gen, precision: Precision) -> Node {
    let v = (g.unit() - 0.5) * 4.0;
    Node::Leaf {
        value: match precision {
            Precision::F64 => v,
            Precision::F32 => f64::from(v as f32),
        },
    }
}

/// A tree in pre-order (children after parents), lopsided or bushy at random.
fn random_tree(g: &mut Gen, e: &Ensemble, pool: &[f64], max_depth: usize) -> Tree {
    fn grow(g: &mut Gen, e: &Ensemble, pool: &[f64], depth: usize, nodes: &mut Vec<Node>) {
        let me = nodes.len();
        if depth == 0 || g.chance(20) {
            nodes.push(leaf(g, e.precision));
            return;
        }
        nodes.push(Node::Leaf { value: 0.0 });
        let feature = g.below(e.num_features) as u32;
        let test = random_test(g, e.precision, pool);
        let left = nodes.len() as u32;
        grow(g, e, pool, depth - 1, nodes);
        let right = nodes.len() as u32;
        grow(g, e, pool, depth - 1, nodes);
        nodes[me] = Node::Split {
            feature,
            test,
            left,
            right,
        };
    }
    let mut nodes = Vec::new();
    grow(g, e, pool, max_depth, &mut nodes);
    Tree { nodes }
}

fn random_case(seed: u64) -> (Ensemble, Vec<f64>, usize) {
    let mut g = Gen(seed);
    let precision = if g.chance(50) {
        Precision::F64
    } else {
        Precision::F32
    };
    let pool = value_pool(&mut g);
    let mut e = Ensemble {
        precision,
        num_features: 1 + g.below(6),
        feature_names: vec![],
        base_score: if g.chance(50) { 0.0 } else { g.unit() - 0.5 },
        trees: vec![],
        transform: if g.chance(25) {
            OutputTransform::Logistic
        } else {
            OutputTransform::Identity
        },
        info: ModelInfo {
            format: SourceFormat::LightGbm,
            objective: "test".into(),
            trees_in_artifact: 0,
        },
    };
    let max_depth = g.pick(&[1, 3, 6, 12]);
    let trees = g.below(20);
    e.trees = (0..trees)
        .map(|_| random_tree(&mut g, &e, &pool, max_depth))
        .collect();
    e.info.trees_in_artifact = trees;
    let num_rows = g.pick(&[0, 1, 3, 8, 9, 63, 64, 65, 150]);
    let rows = (0..num_rows * e.num_features)
        .map(|_| {
            if g.chance(10) {
                f64::NAN
            } else {
                g.pick(&pool)
            }
        })
        .collect();
    (e, rows, num_rows)
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let (e, rows, n) = random_case(seed);
    prop_assert_eq!(e.validate(), Ok(()));
    let scorer = Scorer::new(&e);
    let f = e.num_features;

    let mut out = vec![f64::NAN; n];
    scorer.score_f64(&rows, &mut out);
    let mut parallel = vec![f64::NAN; n];
    scorer.score_f64_parallel(&rows, &mut parallel, 3);
    for k in 0..n {
        let want = e.score_reference(&rows[k * f..(k + 1) * f]);
        prop_assert_eq!(
            out[k].to_bits(),
            want.to_bits(),
            "f64 row {}: {} vs {}",
            k,
            out[k],
            want
        );
        prop_assert_eq!(
            parallel[k].to_bits(),
            want.to_bits(),
            "f64 parallel row {}",
            k
        );
    }

    let narrow: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
    scorer.score_f32(&narrow, &mut out);
    scorer.score_f32_parallel(&narrow, &mut parallel, 2);
    for k in 0..n {
        let widened: Vec<f64> = narrow[k * f..(k + 1) * f]
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let want = e.score_reference(&widened);
        prop_assert_eq!(
            out[k].to_bits(),
            want.to_bits(),
            "f32 row {}: {} vs {}",
            k,
            out[k],
            want
        );
        prop_assert_eq!(
            parallel[k].to_bits(),
            want.to_bits(),
            "f32 parallel row {}",
            k
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn compiled_scores_are_the_reference_scores(seed in any::<u64>()) {
        check(seed)?;
    }

    /// The normalised f32 threshold decides exactly like the original comparison
    /// for every f32 (checked on the threshold's neighbours, where it matters).
    #[test]
    fn f32_thresholds_are_exact(t in any::<f64>().prop_filter("NaN", |t| !t.is_nan()), le in any::<bool>()) {
        let comparison = if le { Comparison::LessOrEqual } else { Comparison::Less };
        let near = t as f32;
        let xs = [near, near.next_up(), near.next_down(), f32::INFINITY, f32::NEG_INFINITY, 0.0, f32::MAX, -f32::MAX];
        match f32_threshold(t, comparison) {
            Some(n) => for x in xs {
                let want = if le { f64::from(x) <= t } else { f64::from(x) < t };
                prop_assert_eq!(x < n, want, "x={} t={} T={}", x, t, n);
            },
            None => prop_assert!(le && t == f64::INFINITY),
        }
        match f64_threshold(t, comparison) {
            Some(n) => for x in [t, t.next_up(), t.next_down(), f64::INFINITY, f64::NEG_INFINITY] {
                let want = if le { x <= t } else { x < t };
                prop_assert_eq!(x < n, want, "x={} t={} T={}", x, t, n);
            },
            None => prop_assert!(le && t == f64::INFINITY),
        }
    }
}

#[test]
fn a_model_without_features_scores_its_constant() {
    let e = Ensemble {
        precision: Precision::F64,
        num_features: 0,
        feature_names: vec![],
        base_score: 0.25,
        trees: vec![Tree {
            nodes: vec![Node::Leaf { value: 1.5 }],
        }],
        transform: OutputTransform::Identity,
        info: ModelInfo {
            format: SourceFormat::LightGbm,
            objective: "test".into(),
            trees_in_artifact: 1,
        },
    };
    let scorer = Scorer::new(&e);
    let mut out = [0.0; 3];
    scorer.score_f32(&[], &mut out);
    assert_eq!(out, [1.75; 3]);
}
