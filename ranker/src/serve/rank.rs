//! Turning scores into the `:rank` response: highest score first, ties in input
//! order (a stable sort), so the same request always gets the same ranking.

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use super::parse::DocId;

/// Document indices from the highest score to the lowest. Equal scores keep input
/// order; a NaN score (never produced by a valid model) sorts last.
pub fn order(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (false, false) => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
            (nan_x, nan_y) => nan_x.cmp(&nan_y),
        }
    });
    idx
}

/// The `:rank` response body.
#[derive(Serialize)]
pub struct RankResponse<'a> {
    /// The served model's name.
    pub model: &'a str,
    /// The served model's version.
    pub version: &'a str,
    /// Documents in ranked order.
    pub ranking: Ranking<'a>,
}

/// The ranked documents, serialized without building an intermediate list.
pub struct Ranking<'a> {
    /// Ids in input order.
    pub ids: &'a [DocId],
    /// Scores in input order.
    pub scores: &'a [f64],
    /// Indices in ranked order.
    pub order: &'a [usize],
}

/// The stable's answer to a sampled request, kept for the peer comparison
/// (moved out of the scorer's buffers, not copied).
#[derive(Debug, Default)]
pub struct StableRanking {
    /// Ids in input order.
    pub ids: Vec<DocId>,
    /// Scores in input order.
    pub scores: Vec<f64>,
    /// Indices in ranked order.
    pub order: Vec<usize>,
}

#[derive(Serialize)]
struct Entry<'a> {
    id: &'a DocId,
    score: f64,
}

impl Serialize for Ranking<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for &i in self.order {
            if let (Some(id), Some(&score)) = (self.ids.get(i), self.scores.get(i)) {
                seq.serialize_element(&Entry { id, score })?;
            }
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_first_and_ties_keep_input_order() {
        let scores = [0.5, 2.0, 0.5, -1.0, 2.0, 0.5];
        assert_eq!(order(&scores), vec![1, 4, 0, 2, 5, 3]);
    }

    #[test]
    fn nan_sorts_last_and_empty_is_empty() {
        assert_eq!(order(&[f64::NAN, 1.0, f64::NAN, 3.0]), vec![3, 1, 0, 2]);
        assert!(order(&[]).is_empty());
    }

    #[test]
    fn response_lists_ids_with_scores_in_ranked_order() {
        let ids = [DocId::Str("a".into()), DocId::UInt(7), DocId::Int(-2)];
        let scores = [0.25, 1.5, 1.5];
        let order = order(&scores);
        let body = RankResponse {
            model: "m",
            version: "v1",
            ranking: Ranking {
                ids: &ids,
                scores: &scores,
                order: &order,
            },
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"model":"m","version":"v1","ranking":[{"id":7,"score":1.5},{"id":-2,"score":1.5},{"id":"a","score":0.25}]}"#
        );
    }
}
