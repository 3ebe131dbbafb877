//! The scoring engine: an [`Ensemble`] compiled into flat node arrays
//! ([`layout`]) and evaluated in blocks of rows per tree, several walks in
//! lockstep. Every score is bit-identical to [`Ensemble::score_reference`]
//! (checked by the property tests in `tests.rs`).

mod layout;
#[cfg(test)]
mod tests;

use crate::model::{Ensemble, OutputTransform, Precision};
use layout::{Forest, LEAF, Shape, Value, f32_threshold, f64_threshold};

/// Rows evaluated together against one tree before moving to the next: the tree
/// stays in L1 while the block's rows (64 × 136 f32 features = 35 KB) stay in L2.
const BLOCK_ROWS: usize = 64;
/// Walks advanced in lockstep (rows of one tree, or trees of one row).
const LANES: usize = 8;

/// A compiled model, cheap to share between threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct Scorer {
    num_features: usize,
    precision: Precision,
    transform: OutputTransform,
    base_score: f64,
    shape: Shape,
    /// f32 comparisons: every F32 model, and F64 models fed f32 rows (an f32 `x`
    /// compares with an f64 `t` exactly as with the f32 threshold derived from it).
    narrow: Forest<f32>,
    /// f64 comparisons: F64 models fed f64 rows.
    wide: Option<Forest<f64>>,
}

/// How tree outputs are accumulated: in f64 (LightGBM) or in f32 (XGBoost, ONNX).
trait Sum: Copy {
    fn start(base: f64) -> Self;
    fn add(self, leaf: f64) -> Self;
    fn finish(self, transform: OutputTransform) -> f64;
}

impl Sum for f64 {
    #[inline(always)]
    fn start(base: f64) -> f64 {
        base
    }
    #[inline(always)]
    fn add(self, leaf: f64) -> f64 {
        self + leaf
    }
    fn finish(self, transform: OutputTransform) -> f64 {
        match transform {
            OutputTransform::Identity => self,
            OutputTransform::Logistic => 1.0 / (1.0 + (-self).exp()),
        }
    }
}

impl Sum for f32 {
    #[inline(always)]
    fn start(base: f64) -> f32 {
        base as f32
    }
    #[inline(always)]
    fn add(self, leaf: f64) -> f32 {
        // Leaves of F32 models are f32-exact, so this cast is exact.
        self + leaf as f32
    }
    fn finish(self, transform: OutputTransform) -> f64 {
        f64::from(match transform {
            OutputTransform::Identity => self,
            OutputTransform::Logistic => 1.0 / (1.0 + (-self).exp()),
        })
    }
}

impl Scorer {
    /// Compiles a validated ensemble ([`Ensemble::validate`]).
    pub fn new(ensemble: &Ensemble) -> Scorer {
        Scorer {
            num_features: ensemble.num_features,
            precision: ensemble.precision,
            transform: ensemble.transform,
            base_score: ensemble.base_score,
            shape: Shape::new(ensemble),
            narrow: Forest::new(ensemble, f32_threshold),
            wide: match ensemble.precision {
                Precision::F64 => Some(Forest::new(ensemble, f64_threshold)),
                Precision::F32 => None,
            },
        }
    }

    /// Columns each row must have.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Scores row-major f32 rows (`rows.len() == out.len() * num_features`); NaN is
    /// missing. Single-threaded.
    pub fn score_f32(&self, rows: &[f32], out: &mut [f64]) {
        debug_assert_eq!(rows.len(), out.len() * self.num_features);
        match self.precision {
            Precision::F64 => self.score_with::<f32, f64>(&self.narrow, rows, out),
            Precision::F32 => self.score_with::<f32, f32>(&self.narrow, rows, out),
        }
    }

    /// Scores row-major f64 rows; otherwise as [`Scorer::score_f32`].
    pub fn score_f64(&self, rows: &[f64], out: &mut [f64]) {
        debug_assert_eq!(rows.len(), out.len() * self.num_features);
        match (&self.wide, self.precision) {
            (Some(wide), _) => self.score_with::<f64, f64>(wide, rows, out),
            (None, _) => {
                // F32 models cast each feature to f32 first (as XGBoost does); do it
                // a block at a time so the narrow layout can be used.
                let f = self.num_features;
                let mut narrow = vec![0.0f32; BLOCK_ROWS * f];
                let rows_in = rows.len().checked_div(f).unwrap_or(out.len());
                let n = out.len().min(rows_in);
                for (b, out) in out[..n].chunks_mut(BLOCK_ROWS).enumerate() {
                    let src = &rows[b * BLOCK_ROWS * f..(b * BLOCK_ROWS + out.len()) * f];
                    let dst = &mut narrow[..src.len()];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = *s as f32;
                    }
                    self.score_with::<f32, f32>(&self.narrow, dst, out);
                }
            }
        }
    }

    /// [`Scorer::score_f32`] split over up to `threads` threads (contiguous ranges of
    /// rows, each scored exactly as single-threaded). Small batches stay on the
    /// calling thread: starting a thread costs more than scoring a few rows.
    pub fn score_f32_parallel(&self, rows: &[f32], out: &mut [f64], threads: usize) {
        self.parallel(rows, out, threads, Scorer::score_f32);
    }

    /// [`Scorer::score_f64`] over up to `threads` threads.
    pub fn score_f64_parallel(&self, rows: &[f64], out: &mut [f64], threads: usize) {
        self.parallel(rows, out, threads, Scorer::score_f64);
    }

    fn parallel<T: Sync>(
        &self,
        rows: &[T],
        out: &mut [f64],
        threads: usize,
        score: fn(&Scorer, &[T], &mut [f64]),
    ) {
        let f = self.num_features;
        let threads = threads.clamp(1, out.len().div_ceil(BLOCK_ROWS).max(1));
        if threads == 1 {
            return score(self, rows, out);
        }
        let per = out.len().div_ceil(threads).next_multiple_of(BLOCK_ROWS);
        std::thread::scope(|s| {
            for (i, out) in out.chunks_mut(per).enumerate() {
                let start = (i * per * f).min(rows.len());
                let end = ((i * per + out.len()) * f).min(rows.len());
                let rows = &rows[start..end];
                s.spawn(move || score(self, rows, out));
            }
        });
    }

    /// Scores rows of comparison type `T` with accumulator `S`, a block at a time.
    fn score_with<T: Value, S: Sum>(&self, forest: &Forest<T>, rows: &[T], out: &mut [f64]) {
        let f = self.num_features;
        let rows_in = rows.len().checked_div(f).unwrap_or(out.len());
        let n = out.len().min(rows_in);
        let row = |k: usize| &rows[k * f..(k + 1) * f];
        let mut sums = [S::start(self.base_score); BLOCK_ROWS];
        let mut start = 0;
        while start < n {
            let len = BLOCK_ROWS.min(n - start);
            if len < LANES {
                // Too few rows to interleave: interleave trees of each row instead.
                for (k, sum) in sums[..len].iter_mut().enumerate() {
                    *sum = self.row_by_trees(forest, row(start + k));
                }
            } else {
                self.block(forest, &row, start, &mut sums[..len]);
            }
            for (o, s) in out[start..start + len].iter_mut().zip(&sums) {
                *o = s.finish(self.transform);
            }
            start += len;
        }
    }

    /// One row: `LANES` trees at a time in lockstep, summed in tree order.
    fn row_by_trees<T: Value, S: Sum>(&self, forest: &Forest<T>, row: &[T]) -> S {
        let leaves = &self.shape.leaf_values;
        let mut sum = S::start(self.base_score);
        let mut roots = self.shape.roots.chunks_exact(LANES);
        for group in &mut roots {
            let mut at = [0u32; LANES];
            at.copy_from_slice(group);
            for leaf in forest.walk(at, [row; LANES]) {
                sum = sum.add(leaves[(leaf & !LEAF) as usize]);
            }
        }
        for &root in roots.remainder() {
            let [leaf] = forest.walk([root], [row]);
            sum = sum.add(leaves[(leaf & !LEAF) as usize]);
        }
        sum
    }

    /// Rows `start..start + sums.len()`: each tree over the whole block, `LANES` rows
    /// in lockstep. Each row still receives its trees in order.
    fn block<'r, T: Value, S: Sum>(
        &self,
        forest: &Forest<T>,
        row: &impl Fn(usize) -> &'r [T],
        start: usize,
        sums: &mut [S],
    ) {
        let leaves = &self.shape.leaf_values;
        sums.fill(S::start(self.base_score));
        let len = sums.len();
        let full = len - len % LANES;
        for &root in &self.shape.roots {
            for g in (0..full).step_by(LANES) {
                let rows: [&[T]; LANES] = std::array::from_fn(|k| row(start + g + k));
                let at = forest.walk([root; LANES], rows);
                for (s, leaf) in sums[g..g + LANES].iter_mut().zip(at) {
                    *s = s.add(leaves[(leaf & !LEAF) as usize]);
                }
            }
            for (k, s) in sums.iter_mut().enumerate().skip(full) {
                let [leaf] = forest.walk([root], [row(start + k)]);
                *s = s.add(leaves[(leaf & !LEAF) as usize]);
            }
        }
    }
}
