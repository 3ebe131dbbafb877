//! The scoring engine: an [`Ensemble`] compiled into a layout that is fast to
//! evaluate. Owned by the engine work; this first version delegates to the
//! reference evaluator so that the server and `predict` can be built against the
//! final API. Every faster evaluator must give exactly the reference's scores.

use crate::model::Ensemble;

/// A compiled model, cheap to share between threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct Scorer {
    ensemble: Ensemble,
}

impl Scorer {
    /// Compiles a validated ensemble.
    pub fn new(ensemble: &Ensemble) -> Scorer {
        Scorer {
            ensemble: ensemble.clone(),
        }
    }

    /// Columns each row must have.
    pub fn num_features(&self) -> usize {
        self.ensemble.num_features
    }

    /// Scores row-major f32 rows (`rows.len() == out.len() * num_features`); NaN is
    /// missing. Single-threaded.
    pub fn score_f32(&self, rows: &[f32], out: &mut [f64]) {
        let f = self.ensemble.num_features.max(1);
        let mut row = vec![0.0f64; self.ensemble.num_features];
        for (chunk, o) in rows.chunks_exact(f).zip(out.iter_mut()) {
            for (r, v) in row.iter_mut().zip(chunk) {
                *r = f64::from(*v);
            }
            *o = self.ensemble.score_reference(&row);
        }
    }

    /// Scores row-major f64 rows; otherwise as [`Scorer::score_f32`].
    pub fn score_f64(&self, rows: &[f64], out: &mut [f64]) {
        let f = self.ensemble.num_features.max(1);
        for (chunk, o) in rows.chunks_exact(f).zip(out.iter_mut()) {
            *o = self.ensemble.score_reference(chunk);
        }
    }
}
