//! The matcher across banks, and index files kept in step with the store.

use std::sync::Arc;

use takedown_bank::sync::{Refresh, load_index, remove_index};
use takedown_bank::{BankIndex, Error, MatchOptions, Matcher};
use takedown_index::{EntryId, Index, Query, Radius, Search};
use takedown_pdq::{PdqHash, Quality, Transform};
use takedown_store::{BankName, BankStore, NewEntry, SqliteStore};

fn h(seed: u8) -> PdqHash {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed
            .wrapping_mul(37)
            .wrapping_add(i as u8)
            .rotate_left(u32::from(seed % 7));
    }
    PdqHash(b)
}

fn flip(mut p: PdqHash, bits: usize) -> PdqHash {
    for i in 0..bits {
        p.0[i % 32] ^= 1 << (i / 32);
    }
    p
}

#[test]
fn matcher_combines_banks_with_their_own_radius() {
    let mut m = Matcher::new();
    let a = h(1);
    m.add(BankIndex {
        name: Arc::from("wide"),
        enabled: true,
        radius: Radius::new(40).unwrap(),
        index: Index::build([(EntryId(1), flip(a, 35))]).unwrap(),
    });
    m.add(BankIndex {
        name: Arc::from("tight"),
        enabled: true,
        radius: Radius::new(10).unwrap(),
        index: Index::build([(EntryId(2), flip(a, 12)), (EntryId(3), flip(a, 5))]).unwrap(),
    });
    m.add(BankIndex {
        name: Arc::from("off"),
        enabled: false,
        radius: Radius::DEFAULT,
        index: Index::build([(EntryId(4), a)]).unwrap(),
    });
    let q = Query::with_transforms([(Transform::Rot90, h(200)), (Transform::FlipX, a)]);
    let hits = m
        .find(
            &q,
            Some(Quality::new(90).unwrap()),
            &MatchOptions::default(),
        )
        .unwrap();
    let got: Vec<(&str, u64, Transform, u32)> = hits
        .iter()
        .map(|x| (&*x.bank, x.entry_id.0, x.transform, x.distance))
        .collect();
    assert_eq!(
        got,
        [
            ("wide", 1, Transform::FlipX, 35),
            ("tight", 3, Transform::FlipX, 5)
        ]
    );

    // Naming banks consults them even when disabled; a radius override applies to all.
    let opts = MatchOptions {
        banks: Some(vec!["off".into(), "tight".into()]),
        radius: Some(Radius::new(12).unwrap()),
        ..MatchOptions::default()
    };
    let hits = m.find(&q, None, &opts).unwrap();
    assert_eq!(
        hits.iter().map(|x| x.entry_id.0).collect::<Vec<_>>(),
        [4, 3, 2]
    );

    let low = m.find(
        &q,
        Some(Quality::new(49).unwrap()),
        &MatchOptions::default(),
    );
    assert!(matches!(low, Err(Error::LowQuality { .. })));
    let opts = MatchOptions {
        min_quality: Quality::new(0).unwrap(),
        ..MatchOptions::default()
    };
    assert!(m.find(&q, Some(Quality::new(49).unwrap()), &opts).is_ok());
    let opts = MatchOptions {
        banks: Some(vec!["nope".into()]),
        ..MatchOptions::default()
    };
    assert!(matches!(m.find(&q, None, &opts), Err(Error::NoSuchBank(_))));
}

#[test]
fn index_files_follow_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let name: BankName = "b1".parse().unwrap();
    store.create_bank(&name, "").unwrap();
    let q100 = Quality::new(100).unwrap();
    store
        .add_entries(
            &name,
            &(0..50)
                .map(|i| NewEntry::new(h(i), q100))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let idx_dir = dir.path().join("index");

    let bank = store.bank(&name).unwrap().unwrap();
    let (index, how) = load_index(&store, &bank, &idx_dir).unwrap();
    assert_eq!((how, index.len()), (Refresh::Rebuilt, 50));
    let (_, how) = load_index(&store, &bank, &idx_dir).unwrap();
    assert_eq!(how, Refresh::Current);

    // Incremental catch-up: removals and additions since the saved version.
    let e = store.entry_by_hash(&name, &h(3)).unwrap().unwrap();
    store.remove_entries(&name, &[e.id]).unwrap();
    store
        .add_entries(
            &name,
            &[NewEntry::new(h(100), q100), NewEntry::new(h(101), q100)],
        )
        .unwrap();
    let bank = store.bank(&name).unwrap().unwrap();
    let (index, how) = load_index(&store, &bank, &idx_dir).unwrap();
    assert!(
        matches!(
            how,
            Refresh::Updated {
                upserted: 2,
                removed: 1
            }
        ),
        "{how:?}"
    );
    assert_eq!(index.len(), 51);
    assert!(
        index
            .search(&Query::new(h(3)), Radius::new(0).unwrap())
            .is_empty()
    );
    assert_eq!(
        index
            .search(&Query::new(h(100)), Radius::new(0).unwrap())
            .len(),
        1
    );

    // A damaged file is rebuilt, not trusted.
    std::fs::write(idx_dir.join("b1.tdx"), b"garbage").unwrap();
    let (index, how) = load_index(&store, &bank, &idx_dir).unwrap();
    assert_eq!((how, index.len()), (Refresh::Rebuilt, 51));
    remove_index(&idx_dir, &name).unwrap();
    assert!(!idx_dir.join("b1.tdx").exists());
}
