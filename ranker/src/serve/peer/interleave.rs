//! Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008): the
//! stable and canary rankings merged into one list, each document credited to
//! the team that picked it. The coin flips come from a seed derived from the
//! request body, so the same request always gets the same merged list.

/// Which ranking placed a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Team {
    /// The stable version.
    Stable,
    /// The canary version.
    Canary,
}

impl Team {
    /// The `team` value of a response entry (and the `winner` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Team::Stable => "stable",
            Team::Canary => "canary",
        }
    }
}

/// Merges two rankings of the same documents `0..n` (each a permutation, best
/// first). Whenever both teams have picked equally often a coin decides who picks
/// next; otherwise the team with fewer picks does. A team picks its best document
/// not yet in the list. Returns `n` entries, every document exactly once.
pub fn team_draft(stable: &[usize], canary: &[usize], seed: u64) -> Vec<(usize, Team)> {
    let n = stable.len();
    let mut placed = vec![false; n];
    let mut merged = Vec::with_capacity(n);
    let mut coins = SplitMix64(seed);
    let (mut next_stable, mut next_canary) = (0usize, 0usize);
    let (mut stable_picks, mut canary_picks) = (0usize, 0usize);
    loop {
        // Each team's best document not yet placed.
        while next_stable < n && placed[stable[next_stable]] {
            next_stable += 1;
        }
        while next_canary < canary.len() && placed.get(canary[next_canary]).is_none_or(|&p| p) {
            next_canary += 1;
        }
        let (stable_left, canary_left) = (next_stable < n, next_canary < canary.len());
        let team = match (stable_left, canary_left) {
            (false, false) => break,
            (true, false) => Team::Stable,
            (false, true) => Team::Canary,
            (true, true) if stable_picks < canary_picks => Team::Stable,
            (true, true) if canary_picks < stable_picks => Team::Canary,
            (true, true) if coins.next() & 1 == 0 => Team::Stable,
            (true, true) => Team::Canary,
        };
        let doc = match team {
            Team::Stable => {
                stable_picks += 1;
                stable[next_stable]
            }
            Team::Canary => {
                canary_picks += 1;
                canary[next_canary]
            }
        };
        placed[doc] = true;
        merged.push((doc, team));
    }
    merged
}

/// A seed from the request body: FNV-1a over 8-byte words (a 1 MB body in well
/// under a millisecond), then splitmix64's finaliser to spread the bits. Only
/// determinism matters here, not resistance to chosen inputs.
pub fn body_seed(body: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = body.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(PRIME);
    }
    for &byte in words.remainder() {
        h = (h ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    mix(h ^ body.len() as u64)
}

/// splitmix64 (Steele, Lea and Flood 2014): a tiny, well-mixed generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// True when `picks` appear in `ranking` in the same relative order.
    fn in_own_order(picks: &[usize], ranking: &[usize]) -> bool {
        let mut rest = ranking.iter();
        picks.iter().all(|p| rest.any(|r| r == p))
    }

    fn team_picks(merged: &[(usize, Team)], team: Team) -> Vec<usize> {
        merged.iter().filter(|e| e.1 == team).map(|e| e.0).collect()
    }

    #[test]
    fn identical_rankings_split_every_round_between_the_teams() {
        let order: Vec<usize> = (0..9).collect();
        for seed in 0..50 {
            let merged = team_draft(&order, &order, seed);
            // The merged order is the common order itself.
            assert_eq!(merged.iter().map(|e| e.0).collect::<Vec<_>>(), order);
            for pair in merged.chunks_exact(2) {
                assert_ne!(pair[0].1, pair[1].1, "seed {seed}: {merged:?}");
            }
        }
    }

    #[test]
    fn both_teams_pick_first_for_some_seeds() {
        let order = [0, 1];
        let firsts: std::collections::HashSet<Team> = (0..64)
            .map(|s| team_draft(&order, &order, s)[0].1)
            .collect();
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn hand_checked_rounds() {
        // Stable 0 1 2 3, canary 3 2 1 0. Whoever picks first takes its best; the
        // other team then takes its own best.
        let merged = team_draft(&[0, 1, 2, 3], &[3, 2, 1, 0], 7);
        let (a, b) = (merged[0], merged[1]);
        assert_ne!(a.1, b.1);
        let firsts: Vec<usize> = vec![a.0, b.0];
        assert!(firsts.contains(&0) && firsts.contains(&3), "{merged:?}");
        assert_eq!(merged.len(), 4);
    }

    #[test]
    fn the_seed_follows_the_body() {
        assert_eq!(
            body_seed(b"{\"documents\":[]}"),
            body_seed(b"{\"documents\":[]}")
        );
        assert_ne!(
            body_seed(b"{\"documents\":[]}"),
            body_seed(b"{\"documents\":[] }")
        );
        assert_ne!(body_seed(b""), body_seed(b"\0"));
        // Pinned: the interleaving of a request must not change between builds.
        assert_eq!(body_seed(b""), mix(0xcbf2_9ce4_8422_2325));
    }

    fn two_permutations() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (0usize..40).prop_flat_map(|n| {
            let ids: Vec<usize> = (0..n).collect();
            (Just(ids.clone()).prop_shuffle(), Just(ids).prop_shuffle())
        })
    }

    proptest! {
        #[test]
        fn every_document_once_and_each_team_in_its_own_order(
            (stable, canary) in two_permutations(),
            seed in any::<u64>(),
        ) {
            let merged = team_draft(&stable, &canary, seed);
            let mut docs: Vec<usize> = merged.iter().map(|e| e.0).collect();
            docs.sort_unstable();
            prop_assert_eq!(docs, (0..stable.len()).collect::<Vec<_>>());
            prop_assert!(in_own_order(&team_picks(&merged, Team::Stable), &stable));
            prop_assert!(in_own_order(&team_picks(&merged, Team::Canary), &canary));
            // Teams never differ by more than one pick in any prefix.
            let mut balance = 0i64;
            for e in &merged {
                balance += if e.1 == Team::Stable { 1 } else { -1 };
                prop_assert!(balance.abs() <= 1);
            }
            prop_assert_eq!(team_draft(&stable, &canary, seed), merged);
        }
    }
}
