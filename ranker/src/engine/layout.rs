//! The compiled layout: every tree's nodes in one flat array of small fixed-size
//! records, with each numeric split normalised to a single `x < T` on a prepared
//! row, so the hot loop is one load, one compare and one select per node.
//!
//! Rows are prepared once per call ([`prepare_row`]): each feature is stored twice,
//! once with NaN replaced by +inf (so NaN goes right of every `x < T`) and once with
//! NaN replaced by -inf (so it goes left). A node reads the copy matching its
//! missing-value direction, so missing values cost nothing in the loop. Internal
//! nodes come first in the array and leaves after them, each leaf pointing at itself:
//! a walk is finished when its index reaches the leaves, and a finished walk can take
//! extra steps without moving, which lets several walks advance in lockstep.

use crate::model::{Comparison, Ensemble, Node, Test};

/// A value the hot loop compares: f32 (XGBoost/ONNX models, and LightGBM models fed
/// f32 rows) or f64 (LightGBM models fed f64 rows).
pub(crate) trait Value: Copy + PartialOrd + Default + Send + Sync + 'static {
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
    fn widen(self) -> f64;
}

impl Value for f32 {
    const INFINITY: f32 = f32::INFINITY;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    #[inline(always)]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Value for f64 {
    const INFINITY: f64 = f64::INFINITY;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    #[inline(always)]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
}

/// Writes the prepared form of `row` (already in the comparison type) into `out`
/// (`2 * row.len()` values): `[x or +inf, x or -inf]` per feature.
#[inline]
pub(crate) fn prepare_row<T: Value>(row: impl Iterator<Item = T>, out: &mut [T]) {
    for (x, pair) in row.zip(out.chunks_exact_mut(2)) {
        if x.is_nan() {
            pair[0] = T::INFINITY;
            pair[1] = T::NEG_INFINITY;
        } else {
            pair[0] = x;
            pair[1] = x;
        }
    }
}

/// The original value of feature `f` of a prepared row: NaN when its two copies
/// are +inf and -inf (no real value is both).
#[inline]
fn original<T: Value>(row: &[T], f: usize) -> f64 {
    let (a, b) = (row[2 * f], row[2 * f + 1]);
    if a != b { f64::NAN } else { a.widen() }
}

/// One node: 16 bytes for f32 thresholds, 24 for f64, so a node is one cache-line
/// access and a tree of 63 leaves fits in 2 KB.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct FastNode<T> {
    /// `x < threshold` goes left.
    threshold: T,
    /// Index into the prepared row: `2 * feature + nan_goes_left`.
    column: u32,
    /// Left and right child.
    children: [u32; 2],
}

/// All trees of an ensemble in one layout, for one comparison type.
#[derive(Clone, Debug)]
pub(crate) struct Forest<T> {
    nodes: Vec<FastNode<T>>,
    /// Nodes at this index and above are leaves.
    first_leaf: u32,
    /// Root of each tree, in model order.
    pub(crate) roots: Vec<u32>,
    /// Leaf values, indexed by `node - first_leaf`.
    leaf_values: Vec<f64>,
    /// The original tests of nodes that are not a plain `x < T` (zero-as-missing,
    /// categorical, `x <= +inf`, `x < -inf` with NaN left), whose `column` is
    /// `GENERAL | index`. Empty for most models, and then the hot loop never looks.
    general: Vec<(u32, Test)>,
}

/// In `FastNode::column`: the node is general; the low bits index `Forest::general`.
const GENERAL: u32 = 1 << 31;

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

/// The fast form of a split, or `None` when it must be evaluated from its test.
fn fast_split<T: Value>(
    test: &Test,
    threshold: &impl Fn(f64, Comparison) -> Option<T>,
) -> Option<(T, bool)> {
    let Test::Numeric {
        threshold: t,
        comparison,
        nan_left,
        zero_missing_left: None,
    } = test
    else {
        return None;
    };
    let t = threshold(*t, *comparison)?;
    // NaN is read as -inf for NaN-left nodes: that goes left unless T is -inf.
    if *nan_left && t == T::NEG_INFINITY {
        return None;
    }
    Some((t, *nan_left))
}

impl<T: Value> Forest<T> {
    /// Lays out every tree; `threshold` normalises one numeric split (`None` makes it
    /// a general node).
    pub(crate) fn new(
        ensemble: &Ensemble,
        threshold: impl Fn(f64, Comparison) -> Option<T>,
    ) -> Forest<T> {
        // Number every node: internal nodes from 0, leaves from `first_leaf`.
        let internal: usize = ensemble
            .trees
            .iter()
            .map(|t| {
                t.nodes
                    .iter()
                    .filter(|n| matches!(n, Node::Split { .. }))
                    .count()
            })
            .sum();
        let first_leaf = internal as u32;
        let (mut next_internal, mut next_leaf) = (0u32, first_leaf);
        let ids: Vec<Vec<u32>> = ensemble
            .trees
            .iter()
            .map(|tree| {
                tree.nodes
                    .iter()
                    .map(|n| {
                        let counter = match n {
                            Node::Split { .. } => &mut next_internal,
                            Node::Leaf { .. } => &mut next_leaf,
                        };
                        *counter += 1;
                        *counter - 1
                    })
                    .collect()
            })
            .collect();
        let placeholder = FastNode {
            threshold: T::default(),
            column: 0,
            children: [0; 2],
        };
        let mut forest = Forest {
            nodes: vec![placeholder; next_leaf as usize],
            first_leaf,
            roots: ids
                .iter()
                .map(|t| t.first().copied().unwrap_or(0))
                .collect(),
            leaf_values: vec![0.0; (next_leaf - first_leaf) as usize],
            general: Vec::new(),
        };
        for (tree, ids) in ensemble.trees.iter().zip(&ids) {
            for (node, &id) in tree.nodes.iter().zip(ids) {
                match node {
                    Node::Leaf { value } => {
                        forest.leaf_values[(id - first_leaf) as usize] = *value;
                        forest.nodes[id as usize].children = [id; 2];
                    }
                    Node::Split {
                        feature,
                        test,
                        left,
                        right,
                    } => {
                        let children = [ids[*left as usize], ids[*right as usize]];
                        let (threshold, column) = match fast_split(test, &threshold) {
                            Some((t, nan_left)) => (t, 2 * feature + u32::from(nan_left)),
                            None => {
                                forest.general.push((*feature, test.clone()));
                                (T::default(), GENERAL | (forest.general.len() as u32 - 1))
                            }
                        };
                        forest.nodes[id as usize] = FastNode {
                            threshold,
                            column,
                            children,
                        };
                    }
                }
            }
        }
        forest
    }

    /// Whether some node needs its original test (then the slower walk is used).
    pub(crate) fn has_general(&self) -> bool {
        !self.general.is_empty()
    }

    /// The value of the leaf a walk ended on.
    #[inline(always)]
    pub(crate) fn leaf_value(&self, at: u32) -> f64 {
        self.leaf_values[(at - self.first_leaf) as usize]
    }

    /// One step of a walk over a prepared row: the child of `at` the row goes to (a
    /// leaf stays put).
    #[inline(always)]
    fn step<const G: bool>(&self, at: u32, row: &[T]) -> u32 {
        let node = &self.nodes[at as usize];
        if G && node.column & GENERAL != 0 {
            return self.general_step(node, row);
        }
        let x = row[node.column as usize];
        // An index, not a branch: the direction is data-dependent, so a branch would
        // be mispredicted about as often as it is taken. Prepared rows and thresholds
        // hold no NaN, so `x >= T` is exactly "not `x < T`": right.
        node.children[usize::from(x >= node.threshold)]
    }

    #[cold]
    #[inline(never)]
    fn general_step(&self, node: &FastNode<T>, row: &[T]) -> u32 {
        let (feature, test) = &self.general[(node.column & !GENERAL) as usize];
        let x = original(row, *feature as usize);
        node.children[usize::from(!crate::model::goes_left(test, x))]
    }

    /// Walks `L` (root, prepared row) pairs in lockstep until every walk is at a leaf;
    /// returns the leaves. Interleaving independent walks lets the CPU overlap their
    /// memory loads instead of waiting on one dependent chain at a time.
    #[inline(always)]
    pub(crate) fn walk<const L: usize, const G: bool>(
        &self,
        mut at: [u32; L],
        rows: [&[T]; L],
    ) -> [u32; L] {
        // A branch-free reduction: `any` would branch once per lane, unpredictably.
        while at.iter().fold(u32::MAX, |m, &a| m.min(a)) < self.first_leaf {
            for k in 0..L {
                at[k] = self.step::<G>(at[k], rows[k]);
            }
        }
        at
    }
}
