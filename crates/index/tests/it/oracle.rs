//! Every index implementation against the brute-force oracle.

use std::collections::BTreeMap;

use proptest::prelude::*;
use takedown_index::{EntryId, FlatIndex, Hit, Index, MihIndex, Plan, Radius, Search};
use takedown_pdq::{PdqHash, Transform};

use crate::common::{Rng, dihedral_query, flip_random, flip_spread, oracle, query_of};

/// A data set of random hashes plus clusters of planted neighbours at
/// `r - 1`, `r` and `r + 1` (random and slot-spread flips) and exact
/// duplicates, with ids in shuffled order.
fn dataset(
    seed: u64,
    n_random: usize,
    centres: usize,
    r: usize,
) -> (Vec<(EntryId, PdqHash)>, Vec<PdqHash>) {
    let mut rng = Rng(seed);
    let mut hashes: Vec<PdqHash> = (0..n_random).map(|_| rng.hash()).collect();
    let mut centre_list = Vec::new();
    for _ in 0..centres {
        let c = rng.hash();
        centre_list.push(c);
        for d in [r.saturating_sub(1), r, r + 1, 0] {
            hashes.push(flip_random(&mut rng, c, d));
            hashes.push(flip_spread(&mut rng, c, d, 11));
            hashes.push(flip_spread(&mut rng, c, d, 16));
        }
        hashes.push(c);
    }
    let entries = hashes
        .into_iter()
        .enumerate()
        .map(|(i, h)| (EntryId((i as u64).wrapping_mul(0x9e37_79b9) ^ seed), h))
        .collect();
    (entries, centre_list)
}

/// Queries near every centre (single and dihedral) plus random ones.
fn queries(seed: u64, centres: &[PdqHash], r: usize) -> Vec<Vec<(Transform, PdqHash)>> {
    let mut rng = Rng(seed ^ 0x5555);
    let mut qs: Vec<Vec<(Transform, PdqHash)>> = centres
        .iter()
        .map(|c| vec![(Transform::Orig, *c)])
        .collect();
    for _ in 0..4 {
        qs.push(dihedral_query(&mut rng, centres, r));
        qs.push(vec![(Transform::Orig, rng.hash())]);
    }
    qs
}

fn check_all(entries: &[(EntryId, PdqHash)], qs: &[Vec<(Transform, PdqHash)>], r: Radius) {
    let flat = FlatIndex::build(entries.iter().copied()).unwrap();
    let mih = MihIndex::build(entries.iter().copied()).unwrap();
    let index = Index::build(entries.iter().copied()).unwrap();
    for q in qs {
        let want = oracle(entries, q, r);
        let query = query_of(q);
        assert_eq!(flat.search(&query, r), want, "flat, r={r}");
        assert_eq!(mih.search(&query, r), want, "mih auto, r={r}");
        assert_eq!(index.search(&query, r), want, "index, r={r}");
        for plan in [Plan::Probe, Plan::Scan] {
            let mut got = Vec::new();
            mih.search_with(&query, r, plan, &mut got);
            takedown_index::sort_hits(&mut got);
            assert_eq!(got, want, "mih {plan:?}, r={r}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sets with planted neighbours around the radius, every radius
    /// band from exact match to beyond the default.
    #[test]
    fn every_index_matches_the_oracle(seed in any::<u64>(), n in 0usize..3000, r in prop_oneof![Just(31u32), Just(32), 0u32..=70]) {
        let (entries, centres) = dataset(seed, n, 6, r as usize);
        let qs = queries(seed, &centres, r as usize);
        check_all(&entries, &qs, Radius::new(r).unwrap());
    }

    /// Inserts, replacements and removals through segments, merges and the
    /// tail, checked against a model map after every batch.
    #[test]
    fn updates_match_the_oracle(seed in any::<u64>(), ops in prop::collection::vec((0u64..300, 0u8..4), 1..600), limit in 1usize..64) {
        let mut rng = Rng(seed);
        let pool: Vec<PdqHash> = (0..40).map(|_| rng.hash()).collect();
        let mut model: BTreeMap<EntryId, PdqHash> = BTreeMap::new();
        let (initial, _) = dataset(seed, 200, 3, 31);
        let mut index = Index::build(initial.iter().copied()).unwrap();
        model.extend(initial.iter().copied());
        index.set_tail_limit(limit);
        for (step, (id, op)) in ops.into_iter().enumerate() {
            let id = EntryId(id);
            if op == 0 {
                prop_assert_eq!(index.remove(id), model.remove(&id).is_some());
            } else {
                let base = pool[rng.below(pool.len() as u64) as usize];
                let d = rng.below(40) as usize;
                let h = flip_random(&mut rng, base, d);
                index.insert(id, h).unwrap();
                model.insert(id, h);
            }
            if step % 50 == 0 {
                let entries: Vec<(EntryId, PdqHash)> = model.iter().map(|(a, b)| (*a, *b)).collect();
                prop_assert_eq!(index.len(), entries.len());
                for q in queries(seed ^ step as u64, &pool[..6], 31) {
                    let want = oracle(&entries, &q, Radius::DEFAULT);
                    prop_assert_eq!(index.search(&query_of(&q), Radius::DEFAULT), want);
                }
            }
        }
        let entries: Vec<(EntryId, PdqHash)> = model.iter().map(|(a, b)| (*a, *b)).collect();
        let mut got: Vec<(EntryId, PdqHash)> = index.entries().collect();
        got.sort();
        prop_assert_eq!(&got, &entries);
        index.compact().unwrap();
        prop_assert_eq!(index.segment_count(), usize::from(!entries.is_empty()));
        for q in queries(seed, &pool[..6], 31) {
            prop_assert_eq!(index.search(&query_of(&q), Radius::DEFAULT), oracle(&entries, &q, Radius::DEFAULT));
        }
    }
}

/// A larger set, big enough that the probe path is the one chosen, at the
/// boundary radii.
#[test]
fn large_set_boundaries() {
    let (entries, centres) = dataset(7, 12_000, 30, 31);
    let qs = queries(7, &centres, 31);
    for r in [0, 21, 22, 31, 32, 33, 64] {
        check_all(&entries, &qs, Radius::new(r).unwrap());
    }
    // The memory budget holds for ids as a store assigns them (dense row
    // ids); the scattered ids above pack into about five bytes each.
    let mih = MihIndex::build(
        entries
            .iter()
            .enumerate()
            .map(|(i, (_, h))| (EntryId(1000 + i as u64), *h)),
    )
    .unwrap();
    assert!(
        mih.heap_bytes() / entries.len() <= 100,
        "{} bytes per hash",
        mih.heap_bytes() / entries.len()
    );
}

/// Duplicate hashes under different ids are all reported; the best
/// transform wins per entry, earliest transform on ties.
#[test]
fn duplicates_and_transform_ties() {
    let mut rng = Rng(3);
    let h = rng.hash();
    let entries: Vec<(EntryId, PdqHash)> = (0..5000)
        .map(|i| (EntryId(i), if i % 1000 == 0 { h } else { rng.hash() }))
        .collect();
    let q = vec![
        (Transform::FlipX, h),
        (Transform::Rot90, h),
        (Transform::Orig, flip_random(&mut rng, h, 3)),
    ];
    let index = Index::build(entries.iter().copied()).unwrap();
    let hits = index.search(&query_of(&q), Radius::DEFAULT);
    assert_eq!(hits.len(), 5);
    assert!(
        hits.iter()
            .all(|h: &Hit| h.transform == Transform::Rot90 && h.distance == 0)
    );
    assert_eq!(hits, oracle(&entries, &q, Radius::DEFAULT));
}

/// The index's 16 slots of 16 bits, counted from the most significant bit
/// of the first hash byte.
const SLOTS: usize = 16;
const SLOT_BITS: usize = 16;

/// `h` with `d` flips spread over the slots as evenly as possible, each
/// slot's flips placed first on its top bits (which both name its bucket
/// and sit in the previous slot's filter bits) and then on its lowest bits.
/// At `d = 31` fifteen slots differ in two bits and one in one: every flip
/// budget and every next-slot limit is exactly tight.
fn flip_tight(h: PdqHash, d: usize) -> PdqHash {
    let mut out = h;
    for i in 0..d {
        let s = (i % SLOTS) * SLOT_BITS;
        let k = i / SLOTS;
        let bit = match k {
            0 | 1 => s + k,
            _ => s + SLOT_BITS - 1 - (k - 2),
        };
        out.0[bit / 8] ^= 0x80 >> (bit % 8);
    }
    out
}

#[test]
fn pigeonhole_boundary_is_exact() {
    // A small segment (8 bucket bits, 16 filter bits) and one past 2^20
    // entries (16 bucket bits, 12 filter bits, positions in groups).
    for n in [6000, (1 << 20) + 1000] {
        let mut rng = Rng(99);
        let mut entries: Vec<(EntryId, PdqHash)> =
            (0..n).map(|i| (EntryId(i), rng.hash())).collect();
        let centres: Vec<PdqHash> = (0..8).map(|_| rng.hash()).collect();
        let mut id = 10_000_000;
        for c in &centres {
            for d in 20..=34 {
                entries.push((EntryId(id), flip_tight(*c, d)));
                id += 1;
            }
        }
        let mih = MihIndex::build(entries.iter().copied()).unwrap();
        for r in [21, 22, 23, 31, 32, 33] {
            let r = Radius::new(r).unwrap();
            for c in &centres {
                let q = vec![(Transform::Orig, *c)];
                let want = oracle(&entries, &q, r);
                assert!(
                    want.iter().any(|h| h.distance == r.get().min(34)),
                    "boundary not planted at r={r}"
                );
                let mut got = Vec::new();
                mih.search_with(&query_of(&q), r, Plan::Probe, &mut got);
                takedown_index::sort_hits(&mut got);
                assert_eq!(got, want, "n={n}, r={r}");
            }
        }
    }
}
