//! How far the canary's ranking is from the stable's (the shadow step's measures,
//! docs/runtime-contract.md): pure functions over two rankings of document keys.
//!
//! Documents are matched by key (a hash of the id). An id given twice is matched
//! occurrence by occurrence (the stable's second "d3" with the canary's second
//! "d3"); documents only one side returned are left out, so every measure is over
//! the documents both returned, in each side's order.

use std::collections::HashMap;

/// Kendall's tau is computed over this many documents of the stable order at most.
pub const TAU_DOCUMENTS: usize = 1000;

/// The measures of one compared query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// NDCG@k of the canary's order, graded by the stable order.
    pub ndcg: f64,
    /// |top-k stable ∩ top-k canary| / min(k, documents).
    pub overlap: f64,
    /// Kendall's tau-a over the first [`TAU_DOCUMENTS`] documents of the stable order.
    pub kendall_tau: f64,
    /// Mean |canary score − stable score| over documents with two finite scores;
    /// None when there is none.
    pub score_shift: Option<f64>,
    /// Documents both returned.
    pub common: usize,
}

/// Compares two rankings (best first) of `(key, score)`. None when they have no
/// document in common: there is nothing to compare.
pub fn compare(stable: &[(u64, f64)], canary: &[(u64, f64)], k: usize) -> Option<Agreement> {
    let (stable_scores, canary_order) = common_documents(stable, canary);
    let n = stable_scores.len();
    if n == 0 {
        return None;
    }
    // Documents are now named by their rank in the stable order (0..n), and
    // `canary_order` lists those names in the canary's order.
    let mut shift_sum = 0.0;
    let mut shift_count = 0usize;
    for &(doc, canary_score) in &canary_order {
        let diff = (canary_score - stable_scores[doc]).abs();
        if diff.is_finite() {
            shift_sum += diff;
            shift_count += 1;
        }
    }
    let order: Vec<usize> = canary_order.iter().map(|&(doc, _)| doc).collect();
    Some(Agreement {
        ndcg: ndcg_at(&order, k),
        overlap: overlap_at(&order, k),
        kendall_tau: kendall_tau_a(&order),
        score_shift: (shift_count > 0).then(|| shift_sum / shift_count as f64),
        common: n,
    })
}

/// The stable scores of the common documents in stable order, and the canary's
/// order of the same documents as `(stable rank, canary score)`.
fn common_documents(stable: &[(u64, f64)], canary: &[(u64, f64)]) -> (Vec<f64>, Vec<(usize, f64)>) {
    // (key, occurrence) → position in `stable`.
    let mut stable_at: HashMap<(u64, u32), usize> = HashMap::with_capacity(stable.len());
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(stable.len());
    for (i, &(key, _)) in stable.iter().enumerate() {
        let n = seen.entry(key).or_insert(0);
        stable_at.insert((key, *n), i);
        *n += 1;
    }
    seen.clear();
    let mut in_canary = vec![None; stable.len()];
    for &(key, score) in canary {
        let n = seen.entry(key).or_insert(0);
        if let Some(&i) = stable_at.get(&(key, *n)) {
            in_canary[i] = Some(score);
        }
        *n += 1;
    }
    // Rank among the common documents, by stable position.
    let mut rank = vec![usize::MAX; stable.len()];
    let mut stable_scores = Vec::new();
    for (i, score) in in_canary.iter().enumerate() {
        if score.is_some() {
            rank[i] = stable_scores.len();
            stable_scores.push(stable[i].1);
        }
    }
    seen.clear();
    let mut canary_order = Vec::with_capacity(stable_scores.len());
    for &(key, score) in canary {
        let n = seen.entry(key).or_insert(0);
        if let Some(&i) = stable_at.get(&(key, *n)) {
            canary_order.push((rank[i], score));
        }
        *n += 1;
    }
    (stable_scores, canary_order)
}

/// NDCG@k of `order` (a permutation of 0..n, 0 being the stable's best): the
/// stable's i-th document (i < k) has gain k − i, position p is discounted by
/// 1/log2(p + 2).
pub fn ndcg_at(order: &[usize], k: usize) -> f64 {
    let cut = k.min(order.len());
    let gain = |doc: usize| if doc < k { (k - doc) as f64 } else { 0.0 };
    let discount = |p: usize| 1.0 / ((p + 2) as f64).log2();
    let dcg: f64 = order[..cut]
        .iter()
        .enumerate()
        .map(|(p, &doc)| gain(doc) * discount(p))
        .sum();
    let ideal: f64 = (0..cut).map(|p| gain(p) * discount(p)).sum();
    // A permutation cannot beat the ideal order; the clamp only removes rounding.
    if ideal > 0.0 {
        (dcg / ideal).min(1.0)
    } else {
        1.0
    }
}

/// |top-k of the stable ∩ top-k of `order`| / min(k, n).
pub fn overlap_at(order: &[usize], k: usize) -> f64 {
    let cut = k.min(order.len());
    if cut == 0 {
        return 1.0;
    }
    let shared = order[..cut].iter().filter(|&&doc| doc < cut).count();
    shared as f64 / cut as f64
}

/// Kendall's tau-a between the stable order (0, 1, 2, …) and `order`, over the
/// first [`TAU_DOCUMENTS`] documents of the stable order; 1 with fewer than two.
pub fn kendall_tau_a(order: &[usize]) -> f64 {
    // The canary positions of stable documents 0, 1, …: a pair is discordant when
    // the canary puts the later stable document first (an inversion).
    let mut position = vec![usize::MAX; order.len()];
    for (p, &doc) in order.iter().enumerate() {
        position[doc] = p;
    }
    position.truncate(TAU_DOCUMENTS);
    let n = position.len();
    if n < 2 {
        return 1.0;
    }
    let pairs = (n * (n - 1) / 2) as f64;
    let discordant = inversions(&mut position) as f64;
    (pairs - 2.0 * discordant) / pairs
}

/// Counts pairs i < j with v[i] > v[j] by merge sort (sorts `v`).
fn inversions(v: &mut [usize]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = inversions(&mut v[..mid]) + inversions(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[i] <= v[j] {
            merged.push(v[i]);
            i += 1;
        } else {
            // v[j] is smaller than every remaining element of the left half.
            count += (mid - i) as u64;
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..]);
    v.copy_from_slice(&merged);
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranking(keys: &[u64]) -> Vec<(u64, f64)> {
        keys.iter().map(|&k| (k, k as f64)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_rankings_agree_fully() {
        let r = ranking(&[5, 3, 9, 1, 7]);
        let a = compare(&r, &r, 10).unwrap();
        assert_eq!((a.ndcg, a.overlap, a.kendall_tau), (1.0, 1.0, 1.0));
        assert_eq!((a.score_shift, a.common), (Some(0.0), 5));
    }

    #[test]
    fn reversed_ranking_has_tau_minus_one() {
        let s = ranking(&[1, 2, 3, 4, 5, 6]);
        let c: Vec<_> = s.iter().rev().copied().collect();
        let a = compare(&s, &c, 3).unwrap();
        assert_eq!(a.kendall_tau, -1.0);
        // The top 3 are disjoint: overlap 0, and the canary's top 3 have gain 0.
        assert_eq!((a.overlap, a.ndcg), (0.0, 0.0));
    }

    #[test]
    fn hand_computed_small_case() {
        // Stable a b c d, canary b a d c, k = 2.
        let s = [(10, 1.0), (20, 0.8), (30, 0.5), (40, 0.1)];
        let c = [(20, 1.1), (10, 0.7), (40, 0.6), (30, 0.4)];
        let a = compare(&s, &c, 2).unwrap();
        // Gains a=2, b=1. DCG = 1/log2 2 + 2/log2 3; IDCG = 2 + 1/log2 3.
        let dcg = 1.0 + 2.0 / 3f64.log2();
        let idcg = 2.0 + 1.0 / 3f64.log2();
        assert!(close(a.ndcg, dcg / idcg), "{}", a.ndcg);
        assert_eq!(a.overlap, 1.0);
        // 6 pairs, 2 discordant (a-b, c-d): (4 − 2) / 6.
        assert!(close(a.kendall_tau, 2.0 / 6.0));
        // |0.7−1.0| + |1.1−0.8| + |0.4−0.5| + |0.6−0.1| = 1.2 → mean 0.3.
        assert!(close(a.score_shift.unwrap(), 0.3));
    }

    #[test]
    fn overlap_caps_k_at_the_number_of_documents() {
        assert_eq!(overlap_at(&[1, 0, 2], 10), 1.0);
        assert_eq!(overlap_at(&[3, 0, 1, 2], 2), 0.5);
        assert_eq!(ndcg_at(&[0], 10), 1.0);
    }

    #[test]
    fn only_common_documents_count() {
        // The canary drops 2 and adds 99: compared over 1, 3, 4 in each order.
        let s = ranking(&[1, 2, 3, 4]);
        let c = ranking(&[99, 1, 4, 3]);
        let a = compare(&s, &c, 10).unwrap();
        assert_eq!(a.common, 3);
        assert!(close(a.kendall_tau, 1.0 / 3.0));
        assert_eq!(a.overlap, 1.0);
        assert!(compare(&s, &ranking(&[7, 8]), 10).is_none());
        assert!(compare(&[], &[], 10).is_none());
    }

    #[test]
    fn duplicate_ids_match_occurrence_by_occurrence() {
        // Stable d5 d5 d6; the canary returns the same with the scores swapped.
        let s = [(5, 2.0), (5, 1.0), (6, 0.0)];
        let c = [(5, 2.5), (6, 1.0), (5, 0.5)];
        let a = compare(&s, &c, 10).unwrap();
        assert_eq!(a.common, 3);
        // The second d5 and d6 swapped places: 1 discordant pair of 3.
        assert!(close(a.kendall_tau, 1.0 / 3.0));
        // |2.5−2| + |1−0| + |0.5−1| = 2 → 2/3.
        assert!(close(a.score_shift.unwrap(), 2.0 / 3.0));
        // A third d5 from the canary matches nothing.
        let c = [(5, 2.5), (5, 1.0), (5, 0.1), (6, 0.0)];
        assert_eq!(compare(&s, &c, 10).unwrap().common, 3);
    }

    #[test]
    fn non_finite_scores_are_left_out_of_the_shift() {
        let s = [(1, 1.0), (2, f64::NAN)];
        let c = [(1, 1.5), (2, 0.0)];
        assert_eq!(compare(&s, &c, 10).unwrap().score_shift, Some(0.5));
        let c = [(1, f64::NAN), (2, 0.0)];
        assert_eq!(compare(&s, &c, 10).unwrap().score_shift, None);
    }

    #[test]
    fn tau_uses_the_first_1000_stable_documents() {
        // The canary reverses only the documents after the first 1000.
        let mut order: Vec<usize> = (0..1000).collect();
        order.extend((1000..1200).rev());
        assert_eq!(kendall_tau_a(&order), 1.0);
    }

    fn naive_tau(order: &[usize]) -> f64 {
        let mut position = vec![0; order.len()];
        for (p, &d) in order.iter().enumerate() {
            position[d] = p;
        }
        let n = position.len().min(TAU_DOCUMENTS);
        if n < 2 {
            return 1.0;
        }
        let mut sum = 0i64;
        for i in 0..n {
            for j in i + 1..n {
                sum += if position[i] < position[j] { 1 } else { -1 };
            }
        }
        sum as f64 / (n * (n - 1) / 2) as f64
    }

    fn permutation() -> impl Strategy<Value = Vec<usize>> {
        (0usize..60).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    }

    proptest! {
        #[test]
        fn measures_stay_in_bounds(order in permutation(), k in 1usize..20) {
            let n = ndcg_at(&order, k);
            let o = overlap_at(&order, k);
            let t = kendall_tau_a(&order);
            prop_assert!((0.0..=1.0 + 1e-12).contains(&n), "ndcg {n}");
            prop_assert!((0.0..=1.0).contains(&o), "overlap {o}");
            prop_assert!((-1.0..=1.0).contains(&t), "tau {t}");
            prop_assert!((t - naive_tau(&order)).abs() < 1e-12);
        }

        #[test]
        fn rankings_with_extra_and_missing_documents_stay_in_bounds(
            stable in proptest::collection::vec((0u64..30, -5.0f64..5.0), 0..40),
            canary in proptest::collection::vec((0u64..30, -5.0f64..5.0), 0..40),
            k in 1usize..15,
        ) {
            if let Some(a) = compare(&stable, &canary, k) {
                prop_assert!(a.common <= stable.len().min(canary.len()));
                prop_assert!((0.0..=1.0 + 1e-12).contains(&a.ndcg));
                prop_assert!((0.0..=1.0).contains(&a.overlap));
                prop_assert!((-1.0..=1.0).contains(&a.kendall_tau));
                prop_assert!(a.score_shift.unwrap_or(0.0) >= 0.0);
            }
            let same = compare(&stable, &stable, k);
            if let Some(a) = same {
                prop_assert_eq!((a.ndcg, a.overlap, a.kendall_tau), (1.0, 1.0, 1.0));
            }
        }
    }
}
