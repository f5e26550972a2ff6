//! Banks: creation, entries, folding, transactions and change versions.

use std::ops::ControlFlow;

use takedown_pdq::{PdqHash, Quality};
use takedown_store::{
    BankChanges, BankEntry, BankName, BankStore, BankVersion, EntryId, Error, MatchRadius, NewEntry,
};

use crate::Backend;

fn name(s: &str) -> BankName {
    s.parse().unwrap()
}

fn hash(n: u64) -> PdqHash {
    PdqHash::from_words([
        n,
        n.rotate_left(17),
        !n,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    ])
}

fn entry(n: u64, labels: &[&str]) -> NewEntry {
    NewEntry {
        hash: hash(n),
        quality: Quality::new(90).unwrap(),
        source: format!("list-{n}"),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

fn all_entries<S: BankStore>(s: &S, bank: &BankName) -> (Vec<BankEntry>, BankVersion) {
    let mut out = Vec::new();
    let v = s
        .scan_entries(bank, &mut |e| {
            out.push(e);
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, v)
}

pub(crate) fn create_list_delete<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    assert!(s.banks().unwrap().is_empty());
    let b = s.create_bank(&name("zeta"), "last").unwrap();
    assert!(b.enabled);
    assert_eq!(b.radius, MatchRadius::DEFAULT);
    assert_eq!(b.entries, 0);
    assert_eq!(b.description, "last");
    s.create_bank(&name("alpha"), "").unwrap();
    let err = s.create_bank(&name("alpha"), "again").unwrap_err();
    assert!(matches!(err, Error::BankExists(_)), "{err}");
    let names: Vec<String> = s
        .banks()
        .unwrap()
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    // Names are exact: a different case is a different bank.
    s.create_bank(&name("ALPHA"), "").unwrap();
    assert_eq!(s.banks().unwrap().len(), 3);

    s.add_entries(&name("alpha"), &[entry(1, &[])]).unwrap();
    assert!(s.delete_bank(&name("alpha")).unwrap());
    assert!(!s.delete_bank(&name("alpha")).unwrap());
    assert!(s.bank(&name("alpha")).unwrap().is_none());
    let err = s.add_entries(&name("alpha"), &[entry(1, &[])]).unwrap_err();
    assert!(matches!(err, Error::NoSuchBank(_)), "{err}");
    assert!(matches!(
        s.entries_page(&name("alpha"), None, 10).unwrap_err(),
        Error::NoSuchBank(_)
    ));
}

pub(crate) fn names_and_settings<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("settings");
    s.create_bank(&n, "").unwrap();
    let v0 = s.bank(&n).unwrap().unwrap().version;
    let b = s.set_bank_enabled(&n, false).unwrap();
    assert!(!b.enabled);
    let b = s.set_bank_radius(&n, MatchRadius::new(0).unwrap()).unwrap();
    assert_eq!(b.radius.bits(), 0);
    let b = s
        .set_bank_radius(&n, MatchRadius::new(256).unwrap())
        .unwrap();
    assert_eq!(b.radius.bits(), 256);
    let b = s.set_bank_description(&n, "from the hotline").unwrap();
    assert_eq!(b.description, "from the hotline");
    assert!(s.set_bank_description(&n, &"x".repeat(5000)).is_err());
    // Settings do not invalidate indexes.
    assert_eq!(b.version, v0);
    assert!(!s.bank(&n).unwrap().unwrap().enabled);
    assert!(matches!(
        s.set_bank_enabled(&name("missing"), true).unwrap_err(),
        Error::NoSuchBank(_)
    ));
}

pub(crate) fn add_fold_and_remove<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("fold");
    s.create_bank(&n, "").unwrap();
    let r = s
        .add_entries(
            &n,
            &[
                entry(1, &["csam"]),
                entry(2, &[]),
                entry(1, &["tier1", "csam"]),
            ],
        )
        .unwrap();
    assert_eq!((r.added, r.merged), (2, 1));
    let e1 = s.entry_by_hash(&n, &hash(1)).unwrap().unwrap();
    assert_eq!(e1.labels, ["csam", "tier1"]);
    assert_eq!(e1.source, "list-1");

    // A later duplicate keeps the id, source and added time, merges labels and keeps the best quality.
    let mut again = entry(1, &[" extra ", "csam"]);
    again.source = "other".into();
    again.quality = Quality::new(100).unwrap();
    let r = s.add_entries(&n, &[again]).unwrap();
    assert_eq!((r.added, r.merged), (0, 1));
    let e1b = s.entry_by_hash(&n, &hash(1)).unwrap().unwrap();
    assert_eq!(e1b.id, e1.id);
    assert_eq!(e1b.source, "list-1");
    assert_eq!(e1b.added, e1.added);
    assert_eq!(e1b.labels, ["csam", "extra", "tier1"]);
    assert_eq!(e1b.quality.get(), 100);
    let lower = NewEntry {
        quality: Quality::new(10).unwrap(),
        ..entry(1, &[])
    };
    s.add_entries(&n, &[lower]).unwrap();
    assert_eq!(
        s.entry_by_hash(&n, &hash(1))
            .unwrap()
            .unwrap()
            .quality
            .get(),
        100
    );
    assert_eq!(s.bank(&n).unwrap().unwrap().entries, 2);

    let e2 = s.entry_by_hash(&n, &hash(2)).unwrap().unwrap();
    let got = s
        .entries_by_id(&n, &[e2.id, EntryId(u64::MAX), e1.id, e2.id])
        .unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), {
        let mut v = vec![e1.id, e2.id];
        v.sort();
        v
    });

    let r = s.remove_hashes(&n, &[hash(2), hash(99)]).unwrap();
    assert_eq!(r.removed, 1);
    assert!(s.entry_by_hash(&n, &hash(2)).unwrap().is_none());
    let r = s
        .remove_entries(&n, &[e1.id, e1.id, EntryId(12345)])
        .unwrap();
    assert_eq!(r.removed, 1);
    assert_eq!(s.bank(&n).unwrap().unwrap().entries, 0);

    // A removed hash comes back as a new entry with a new id: ids are never reused.
    s.add_entries(&n, &[entry(1, &[])]).unwrap();
    let e1c = s.entry_by_hash(&n, &hash(1)).unwrap().unwrap();
    assert!(e1c.id > e2.id && e1c.id > e1.id);
}

pub(crate) fn import_is_all_or_nothing<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("atomic");
    s.create_bank(&n, "").unwrap();
    s.add_entries(&n, &[entry(1, &["keep"])]).unwrap();
    let before = s.bank(&n).unwrap().unwrap();
    let (entries_before, _) = all_entries(&s, &n);

    // The source fails after many good rows, including a merge into an existing entry.
    let mut rows = (2..5000u64)
        .map(|i| Ok(entry(i, &[])))
        .chain(std::iter::once(Ok(entry(1, &["merged"]))))
        .chain(std::iter::once(Err(Error::Import(
            "line 5001: bad hex".into(),
        ))))
        .chain((6000..6010u64).map(|i| Ok(entry(i, &[]))));
    let err = s.import_entries(&n, &mut rows).unwrap_err();
    assert!(matches!(err, Error::Import(_)), "{err}");
    assert_eq!(s.bank(&n).unwrap().unwrap(), before);
    assert_eq!(all_entries(&s, &n).0, entries_before);
    assert_eq!(
        s.changes_since(&n, before.version).unwrap(),
        BankChanges::Delta {
            from: before.version,
            to: before.version,
            upserted: vec![],
            removed: vec![]
        }
    );
}

pub(crate) fn invalid_entry_rolls_back<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("invalid");
    s.create_bank(&n, "").unwrap();
    let mut bad_label = entry(3, &["ok"]);
    bad_label.labels.push("two\nlines".into());
    let err = s
        .add_entries(&n, &[entry(1, &[]), entry(2, &[]), bad_label])
        .unwrap_err();
    assert!(matches!(err, Error::Label(_)), "{err}");
    let mut long = entry(4, &[]);
    long.source = "s".repeat(2000);
    assert!(matches!(
        s.add_entries(&n, &[entry(1, &[]), long]).unwrap_err(),
        Error::SourceTooLong(2000)
    ));
    let too_many: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
    let mut a = entry(5, &[]);
    a.labels = too_many.clone();
    let mut b = entry(5, &[]);
    b.labels = too_many.iter().map(|l| format!("{l}x")).collect();
    assert!(matches!(
        s.add_entries(&n, &[a, b]).unwrap_err(),
        Error::Label(_)
    ));
    assert_eq!(s.bank(&n).unwrap().unwrap().entries, 0);
    assert!(s.entries_page(&n, None, 100).unwrap().is_empty());
}

pub(crate) fn versions_and_deltas<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("delta");
    s.create_bank(&n, "").unwrap();
    let v0 = s.bank(&n).unwrap().unwrap().version;
    assert_eq!(
        s.changes_since(&n, v0).unwrap(),
        BankChanges::Delta {
            from: v0,
            to: v0,
            upserted: vec![],
            removed: vec![]
        }
    );

    let r1 = s
        .add_entries(&n, &[entry(1, &[]), entry(2, &[]), entry(3, &[])])
        .unwrap();
    assert!(r1.version > v0);
    let (snapshot, v1) = all_entries(&s, &n);
    assert_eq!(v1, r1.version);
    assert_eq!(snapshot.len(), 3);

    // A no-op import (same hash, nothing new) leaves the version alone.
    let r = s.add_entries(&n, &[entry(2, &[])]).unwrap();
    assert_eq!(r.version, v1);
    let r = s.remove_hashes(&n, &[hash(42)]).unwrap();
    assert_eq!(r.version, v1);

    let r2 = s
        .add_entries(&n, &[entry(4, &[]), entry(2, &["relabelled"])])
        .unwrap();
    let r3 = s.remove_hashes(&n, &[hash(1), hash(4)]).unwrap();
    assert!(r3.version > r2.version && r2.version > v1);

    // Replaying the delta on the first snapshot gives the current contents.
    let BankChanges::Delta {
        from,
        to,
        upserted,
        removed,
    } = s.changes_since(&n, v1).unwrap()
    else {
        panic!("expected a delta");
    };
    assert_eq!((from, to), (v1, r3.version));
    let mut index: std::collections::BTreeMap<EntryId, BankEntry> =
        snapshot.into_iter().map(|e| (e.id, e)).collect();
    for id in &removed {
        index.remove(id);
    }
    for e in upserted.clone() {
        index.insert(e.id, e);
    }
    let (now, v_now) = all_entries(&s, &n);
    assert_eq!(v_now, r3.version);
    assert_eq!(index.into_values().collect::<Vec<_>>(), now);
    // The relabelled entry is an upsert, the removed ones are tombstones.
    assert!(
        upserted
            .iter()
            .any(|e| e.hash == hash(2) && e.labels == ["relabelled"])
    );
    assert_eq!(removed.len(), 2);

    // Deltas from intermediate versions are smaller; from the present, empty.
    let BankChanges::Delta {
        upserted, removed, ..
    } = s.changes_since(&n, r2.version).unwrap()
    else {
        panic!("expected a delta");
    };
    assert!(upserted.is_empty());
    assert_eq!(removed.len(), 2);
    let BankChanges::Delta {
        upserted, removed, ..
    } = s.changes_since(&n, r3.version).unwrap()
    else {
        panic!("expected a delta");
    };
    assert!(upserted.is_empty() && removed.is_empty());
    // A version from the future cannot be caught up.
    assert_eq!(
        s.changes_since(&n, BankVersion(r3.version.0 + 100))
            .unwrap(),
        BankChanges::Rebuild {
            version: r3.version
        }
    );
}

pub(crate) fn recreated_bank_forces_rebuild<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("again");
    s.create_bank(&n, "").unwrap();
    let r = s.add_entries(&n, &[entry(1, &[])]).unwrap();
    s.delete_bank(&n).unwrap();
    let b = s.create_bank(&n, "").unwrap();
    assert!(
        b.version > r.version,
        "versions never repeat across bank lifetimes"
    );
    s.add_entries(&n, &[entry(2, &[])]).unwrap();
    assert!(matches!(
        s.changes_since(&n, r.version).unwrap(),
        BankChanges::Rebuild { .. }
    ));
}

pub(crate) fn prune_history_forces_rebuild<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("prune");
    s.create_bank(&n, "").unwrap();
    let r1 = s.add_entries(&n, &[entry(1, &[]), entry(2, &[])]).unwrap();
    let r2 = s.remove_hashes(&n, &[hash(1)]).unwrap();
    let r3 = s.remove_hashes(&n, &[hash(2)]).unwrap();
    assert_eq!(s.prune_history(&n, r2.version).unwrap(), 1);
    assert!(matches!(
        s.changes_since(&n, r1.version).unwrap(),
        BankChanges::Rebuild { .. }
    ));
    let BankChanges::Delta { removed, .. } = s.changes_since(&n, r2.version).unwrap() else {
        panic!("history after the pruned version is kept");
    };
    assert_eq!(removed.len(), 1);
    assert!(matches!(
        s.changes_since(&n, r3.version).unwrap(),
        BankChanges::Delta { .. }
    ));
}

pub(crate) fn scan_is_ordered_and_stoppable<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let n = name("scan");
    s.create_bank(&n, "").unwrap();
    let rows: Vec<NewEntry> = (0..2500u64).rev().map(|i| entry(i, &[])).collect();
    s.add_entries(&n, &rows).unwrap();
    let (all, _) = all_entries(&s, &n);
    assert_eq!(all.len(), 2500);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));

    let mut seen = 0;
    s.scan_entries(&n, &mut |_| {
        seen += 1;
        if seen == 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, 10);

    // Paging by id visits the same entries in the same order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.entries_page(&n, after, 700).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(s.entries_page(&n, None, 0).unwrap().is_empty());
}

pub(crate) fn banks_are_isolated<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let (a, b) = (name("a"), name("b"));
    s.create_bank(&a, "").unwrap();
    s.create_bank(&b, "").unwrap();
    s.add_entries(&a, &[entry(1, &["from-a"])]).unwrap();
    let rb = s
        .add_entries(&b, &[entry(1, &["from-b"]), entry(2, &[])])
        .unwrap();
    assert_eq!(
        rb.added, 2,
        "the same hash in another bank is not a duplicate"
    );
    assert_eq!(
        s.entry_by_hash(&a, &hash(1)).unwrap().unwrap().labels,
        ["from-a"]
    );
    assert!(s.entry_by_hash(&a, &hash(2)).unwrap().is_none());
    let eb = s.entry_by_hash(&b, &hash(2)).unwrap().unwrap();
    // Ids of another bank are not visible or removable through this one.
    assert!(s.entries_by_id(&a, &[eb.id]).unwrap().is_empty());
    assert_eq!(s.remove_entries(&a, &[eb.id]).unwrap().removed, 0);
    assert!(s.entry_by_hash(&b, &hash(2)).unwrap().is_some());
    s.delete_bank(&a).unwrap();
    assert_eq!(s.bank(&b).unwrap().unwrap().entries, 2);
}

pub(crate) fn persist_across_reopen<B: Backend>() {
    let place = B::place();
    let n = name("durable");
    let (before, version) = {
        let s = B::open(&place);
        s.create_bank(&n, "kept").unwrap();
        s.set_bank_radius(&n, MatchRadius::new(12).unwrap())
            .unwrap();
        s.add_entries(&n, &[entry(1, &["x"]), entry(2, &[])])
            .unwrap();
        let r = s.remove_hashes(&n, &[hash(2)]).unwrap();
        (all_entries(&s, &n).0, r.version)
    };
    let s = B::open(&place);
    let b = s.bank(&n).unwrap().unwrap();
    assert_eq!(
        (b.radius.bits(), b.description.as_str(), b.version),
        (12, "kept", version)
    );
    assert_eq!(all_entries(&s, &n).0, before);
    // The version counter continues after a reopen.
    let r = s.add_entries(&n, &[entry(3, &[])]).unwrap();
    assert!(r.version > version);
}
