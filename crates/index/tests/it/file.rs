//! The index file: round trips and every kind of damage.

use takedown_index::{EntryId, Error, Index, Query, Radius, Search};
use takedown_pdq::PdqHash;

use crate::common::{Rng, flip_random};

fn sample() -> (Index, Vec<PdqHash>) {
    let mut rng = Rng(11);
    let centres: Vec<PdqHash> = (0..20).map(|_| rng.hash()).collect();
    let mut entries = Vec::new();
    for i in 0..9000u64 {
        let c = centres[(i % 20) as usize];
        entries.push((EntryId(i * 3), flip_random(&mut rng, c, (i % 40) as usize)));
    }
    // Wide ids force the 64-bit id column.
    entries.push((EntryId(u64::MAX), centres[0]));
    let mut index = Index::build(entries).unwrap();
    index.set_tail_limit(100);
    for i in 0..250u64 {
        index
            .insert(EntryId(1_000_000 + i), flip_random(&mut rng, centres[1], 5))
            .unwrap();
    }
    for i in 0..300u64 {
        index.remove(EntryId(i * 3));
    }
    (index, centres)
}

fn results(index: &Index, centres: &[PdqHash]) -> Vec<Vec<takedown_index::Hit>> {
    centres
        .iter()
        .map(|c| index.search(&Query::new(*c), Radius::DEFAULT))
        .collect()
}

#[test]
fn round_trip_keeps_results_and_updates() {
    let (index, centres) = sample();
    assert!(index.segment_count() >= 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.tdx");
    index.save(&path).unwrap();
    let mut back = Index::open(&path).unwrap();
    assert_eq!(back.len(), index.len());
    assert_eq!(results(&back, &centres), results(&index, &centres));
    let mut a: Vec<_> = index.entries().collect();
    let mut b: Vec<_> = back.entries().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // The reopened index keeps accepting updates.
    assert!(back.remove(EntryId(u64::MAX)));
    assert!(!back.remove(EntryId(0)));
    back.insert(EntryId(5), centres[2]).unwrap();
    assert!(
        back.search(&Query::new(centres[2]), Radius::new(0).unwrap())
            .iter()
            .any(|h| h.id == EntryId(5))
    );

    let empty = Index::new();
    empty.save(&path).unwrap();
    assert_eq!(Index::open(&path).unwrap().len(), 0);
}

#[test]
fn damage_is_reported_not_panicked() {
    let (index, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.tdx");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.tdx");
    let open = |bytes: &[u8]| {
        std::fs::write(&bad, bytes).unwrap();
        Index::open(&bad)
    };

    assert!(matches!(open(b""), Err(Error::BadMagic { .. })));
    assert!(matches!(
        open(b"hello world, not an index at all; certainly not one of ours here"),
        Err(Error::BadMagic { .. })
    ));
    assert!(matches!(open(&good[..40]), Err(Error::Truncated { .. })));
    assert!(matches!(
        open(&good[..good.len() - 1]),
        Err(Error::Truncated { .. })
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(open(&longer), Err(Error::Truncated { .. })));
    let mut v2 = good.clone();
    v2[8] = 99;
    assert!(matches!(open(&v2), Err(Error::Version { found: 99, .. })));
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x10;
    assert!(matches!(open(&flipped), Err(Error::Checksum { .. })));
    // A header claiming a huge segment must fail cleanly, not allocate.
    let mut huge = good.clone();
    huge[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(&huge), Err(Error::Truncated { .. })));
    assert!(matches!(
        Index::open(&dir.path().join("missing.tdx")),
        Err(Error::Io { .. })
    ));

    // Every single-byte corruption of the header or early body is an error.
    for i in (0..200).chain((good.len() - 50)..good.len()) {
        let mut b = good.clone();
        b[i] ^= 0x01;
        if (44..64).contains(&i) || (20..24).contains(&i) {
            continue; // reserved bytes are not checked
        }
        assert!(open(&b).is_err(), "corrupting byte {i} went unnoticed");
    }
}
