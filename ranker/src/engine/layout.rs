//! The compiled layout: every tree's nodes in one flat array of small fixed-size
//! records, with comparisons normalised to a single `x < T` so the hot loop has one
//! compare and no per-kind dispatch for ordinary numeric splits.
//!
//! A node is reached through a `u32` reference whose top bit says "this is a leaf".
//! Leaves are stored as nodes too, pointing at themselves: a walk can then take any
//! number of extra steps without leaving its leaf, which lets several walks advance
//! in lockstep without a per-walk "am I done" branch.

use crate::model::{Comparison, Ensemble, Node, Test};

/// Set in a node reference when the node is a leaf.
pub(crate) const LEAF: u32 = 1 << 31;
/// In `FastNode::feature`: a missing (NaN) value goes left.
const NAN_LEFT: u32 = 1 << 31;
/// In `FastNode::feature`: the test is not a plain `x < T`; evaluate the original
/// [`Test`] (zero-as-missing, categorical, `x <= +inf`).
const GENERAL: u32 = 1 << 30;
const FEATURE_MASK: u32 = GENERAL - 1;

/// A value the hot loop compares: f32 (XGBoost/ONNX models, and LightGBM models fed
/// f32 rows) or f64 (LightGBM models fed f64 rows).
pub(crate) trait Value: Copy + PartialOrd + Default + Send + Sync + 'static {
    fn is_missing(self) -> bool;
    fn widen(self) -> f64;
}

impl Value for f32 {
    #[inline(always)]
    fn is_missing(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Value for f64 {
    #[inline(always)]
    fn is_missing(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
}

/// One node: 16 bytes for f32 thresholds, 24 for f64, so a node is one load and a
/// tree of 63 leaves fits in a few cache lines.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct FastNode<T> {
    /// `x < threshold` goes left (for non-NaN `x`).
    threshold: T,
    /// Feature index in the low 30 bits, `NAN_LEFT` and `GENERAL` flags above.
    feature: u32,
    /// References of the left and right child (`LEAF` bit for leaves).
    children: [u32; 2],
}

/// All trees of an ensemble in one layout, for one comparison type.
#[derive(Clone, Debug)]
pub(crate) struct Forest<T> {
    nodes: Vec<FastNode<T>>,
    /// Per node: index into `tests` for `GENERAL` nodes (unused otherwise). Kept out
    /// of `FastNode` so ordinary nodes stay small.
    general_index: Vec<u32>,
    tests: Vec<Test>,
}

/// What both layouts share: tree roots and leaf values, indexed like the nodes.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    pub(crate) roots: Vec<u32>,
    pub(crate) leaf_values: Vec<f64>,
}

/// The largest f32 that is `<= t` (`-inf` when none is finite).
fn round_down_f32(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) > t { c.next_down() } else { c }
}

/// `T` such that, for every non-NaN f32 `x`, `x < T` ⟺ the original comparison
/// with the f64 threshold `t` holds (`x` widened exactly). `None` when no f32 works
/// (only `x <= +inf`, which must also take `x = +inf`).
///
/// `x <= t` ⟺ `x <= rd(t)` (`x` is an f32, `rd(t)` the largest f32 not above `t`)
/// ⟺ `x < next_up(rd(t))`. `x < t` is `x < t` when `t` is an f32, else `x <= rd(t)`.
pub(crate) fn f32_threshold(t: f64, comparison: Comparison) -> Option<f32> {
    let rd = round_down_f32(t);
    match comparison {
        Comparison::Less if f64::from(rd) == t => Some(rd),
        _ if rd == f32::INFINITY => None,
        _ => Some(rd.next_up()),
    }
}

/// As [`f32_threshold`] for f64 rows compared in f64.
pub(crate) fn f64_threshold(t: f64, comparison: Comparison) -> Option<f64> {
    match comparison {
        Comparison::Less => Some(t),
        Comparison::LessOrEqual if t == f64::INFINITY => None,
        Comparison::LessOrEqual => Some(t.next_up()),
    }
}

impl Shape {
    pub(crate) fn new(ensemble: &Ensemble) -> Shape {
        let mut roots = Vec::with_capacity(ensemble.trees.len());
        let mut leaf_values = Vec::new();
        for tree in &ensemble.trees {
            let base = leaf_values.len() as u32;
            roots.push(reference(&tree.nodes, base, 0));
            for node in &tree.nodes {
                leaf_values.push(match node {
                    Node::Leaf { value } => *value,
                    Node::Split { .. } => 0.0,
                });
            }
        }
        Shape { roots, leaf_values }
    }
}

/// The reference of node `i` of a tree whose first node is at `base`.
fn reference(nodes: &[Node], base: u32, i: u32) -> u32 {
    match nodes.get(i as usize) {
        Some(Node::Leaf { .. }) | None => (base + i) | LEAF,
        Some(Node::Split { .. }) => base + i,
    }
}

impl<T: Value> Forest<T> {
    /// Lays out every tree; `threshold` normalises one numeric split, `None` making
    /// it a general node.
    pub(crate) fn new(
        ensemble: &Ensemble,
        threshold: impl Fn(f64, Comparison) -> Option<T>,
    ) -> Forest<T> {
        let mut forest = Forest {
            nodes: Vec::new(),
            general_index: Vec::new(),
            tests: Vec::new(),
        };
        for tree in &ensemble.trees {
            let base = forest.nodes.len() as u32;
            for (i, node) in tree.nodes.iter().enumerate() {
                let own = base + i as u32;
                let (node, general) = match node {
                    Node::Leaf { .. } => (
                        FastNode {
                            threshold: T::default(),
                            feature: 0,
                            children: [own | LEAF; 2],
                        },
                        0,
                    ),
                    Node::Split {
                        feature,
                        test,
                        left,
                        right,
                    } => {
                        let children = [
                            reference(&tree.nodes, base, *left),
                            reference(&tree.nodes, base, *right),
                        ];
                        let fast = match test {
                            Test::Numeric {
                                threshold: t,
                                comparison,
                                nan_left,
                                zero_missing_left: None,
                            } => threshold(*t, *comparison).map(|t| (t, *nan_left)),
                            _ => None,
                        };
                        match fast {
                            Some((t, nan_left)) => (
                                FastNode {
                                    threshold: t,
                                    feature: *feature | if nan_left { NAN_LEFT } else { 0 },
                                    children,
                                },
                                0,
                            ),
                            None => {
                                forest.tests.push(test.clone());
                                (
                                    FastNode {
                                        threshold: T::default(),
                                        feature: *feature | GENERAL,
                                        children,
                                    },
                                    forest.tests.len() as u32 - 1,
                                )
                            }
                        }
                    }
                };
                forest.nodes.push(node);
                forest.general_index.push(general);
            }
        }
        forest
    }

    /// One step of a walk: the child of `at` that `row` goes to (a leaf stays put).
    #[inline(always)]
    pub(crate) fn step(&self, at: u32, row: &[T]) -> u32 {
        let i = (at & !LEAF) as usize;
        let node = &self.nodes[i];
        let x = row[(node.feature & FEATURE_MASK) as usize];
        if node.feature & GENERAL != 0 {
            return self.general_step(i, x);
        }
        // Bitwise `|` on bools: both sides are cheap, and a branch here would be
        // mispredicted as often as the data decides.
        let left = (x < node.threshold) | ((node.feature & NAN_LEFT != 0) & x.is_missing());
        node.children[usize::from(!left)]
    }

    #[cold]
    #[inline(never)]
    fn general_step(&self, i: usize, x: T) -> u32 {
        let node = &self.nodes[i];
        let test = &self.tests[self.general_index[i] as usize];
        let left = crate::model::goes_left(test, x.widen());
        node.children[usize::from(!left)]
    }

    /// Walks `L` (root, row) pairs in lockstep until every walk is at a leaf; returns
    /// the leaf references. Interleaving independent walks lets the CPU overlap their
    /// memory loads instead of waiting on one dependent chain at a time.
    #[inline(always)]
    pub(crate) fn walk<const L: usize>(&self, mut at: [u32; L], rows: [&[T]; L]) -> [u32; L] {
        loop {
            if at.iter().fold(LEAF, |all, r| all & r) != 0 {
                return at;
            }
            for k in 0..L {
                at[k] = self.step(at[k], rows[k]);
            }
        }
    }
}
