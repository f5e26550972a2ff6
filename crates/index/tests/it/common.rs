//! Shared helpers: a deterministic generator and the brute-force oracle.

use std::collections::HashMap;

use takedown_index::{EntryId, Hit, Query, Radius};
use takedown_pdq::{PdqHash, Transform};

/// SplitMix64: small, deterministic and good enough for test data.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn hash(&mut self) -> PdqHash {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        PdqHash(b)
    }
}

/// `h` with exactly `d` distinct bits flipped, chosen at random.
pub(crate) fn flip_random(rng: &mut Rng, h: PdqHash, d: usize) -> PdqHash {
    let mut bits: Vec<usize> = (0..256).collect();
    let mut out = h;
    for i in 0..d {
        let j = i + rng.below((256 - i) as u64) as usize;
        bits.swap(i, j);
        out.0[bits[i] / 8] ^= 1 << (bits[i] % 8);
    }
    out
}

/// `h` with `d` bits flipped spread evenly over `parts` equal runs of the
/// 256 bits: the adversarial case for pigeonhole indexes, where every slot
/// differs by nearly the same amount.
pub(crate) fn flip_spread(rng: &mut Rng, h: PdqHash, d: usize, parts: usize) -> PdqHash {
    let mut out = h;
    let per = 256 / parts;
    let mut flipped = std::collections::HashSet::new();
    let mut i = 0;
    while flipped.len() < d {
        let part = i % parts;
        let bit = part * per + rng.below(per as u64) as usize;
        if flipped.insert(bit) {
            out.0[bit / 8] ^= 1 << (bit % 8);
            i += 1;
        }
    }
    out
}

/// Brute force: per entry, the best transform within `r`, sorted like
/// `Search::search`.
pub(crate) fn oracle(
    entries: &[(EntryId, PdqHash)],
    query: &[(Transform, PdqHash)],
    r: Radius,
) -> Vec<Hit> {
    let mut best: HashMap<EntryId, Hit> = HashMap::new();
    for (id, h) in entries {
        for (t, q) in query {
            let d: u32 =
                h.0.iter()
                    .zip(q.0.iter())
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
            if d > r.get() {
                continue;
            }
            let hit = Hit {
                id: *id,
                transform: *t,
                distance: d,
            };
            best.entry(*id)
                .and_modify(|b| {
                    if (d, *t) < (b.distance, b.transform) {
                        *b = hit;
                    }
                })
                .or_insert(hit);
        }
    }
    let mut v: Vec<Hit> = best.into_values().collect();
    takedown_index::sort_hits(&mut v);
    v
}

pub(crate) fn query_of(q: &[(Transform, PdqHash)]) -> Query {
    Query::with_transforms(q.iter().copied())
}

/// A random "dihedral" query: eight unrelated hashes, some planted near
/// entries so that several transforms hit.
pub(crate) fn dihedral_query(
    rng: &mut Rng,
    near: &[PdqHash],
    r: usize,
) -> Vec<(Transform, PdqHash)> {
    Transform::ALL
        .iter()
        .map(|&t| {
            let h = if !near.is_empty() && rng.below(2) == 0 {
                let base = near[rng.below(near.len() as u64) as usize];
                let d = (r as i64 + rng.below(5) as i64 - 3).max(0) as usize;
                flip_random(rng, base, d)
            } else {
                rng.hash()
            };
            (t, h)
        })
        .collect()
}
