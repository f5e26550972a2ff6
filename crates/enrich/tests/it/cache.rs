//! The table cache in an enrichment directory: a second load reads it and
//! gets exactly what a fresh build gives; a damaged, truncated, stale or
//! foreign-version cache is rebuilt, never trusted.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use takedown_enrich::{CACHE_FILE, CacheMiss, CacheUse, Enricher};

use super::{asn_db, ip};

/// An enrichment directory with an MMDB file, overlapping AS ranges in
/// both families, and IPv4 and IPv6 country ranges.
fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("enrich");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a-asn.mmdb"), asn_db(28)).unwrap();
    std::fs::write(
        dir.join("asn-ipv4.csv"),
        "10.0.0.0,10.255.255.255,64500,Wide Net\n\
         10.1.0.0,10.1.255.255,64501,\"Narrow, Inc.\"\n\
         10.1.2.0,10.1.2.127,64502,Narrower\n\
         192.0.2.0,192.0.2.200,64503,Unaligned\n\
         203.0.113.0,203.0.113.255,64504,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("asn-ipv6.csv"),
        "2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64510,Doc Six\n\
         2001:db8:1::,2001:db8:1::ffff,64511,Doc Six Narrow\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("country-ipv4.csv"),
        "10.0.0.0,10.127.255.255,DE\n10.128.0.0,10.255.255.255,FR\n8.8.8.0,8.8.8.255,US\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("country-ipv6.csv"),
        "2001:db8::,2001:db8:0:ffff:ffff:ffff:ffff:ffff,NL\n",
    )
    .unwrap();
    std::fs::write(dir.join("ATTRIBUTION"), "not data").unwrap();
    (root, dir)
}

const PROBES: &[&str] = &[
    "1.1.1.1",
    "8.8.8.8",
    "8.8.4.4",
    "10.0.0.1",
    "10.1.2.3",
    "10.1.2.200",
    "10.1.3.3",
    "10.200.0.1",
    "11.0.0.0",
    "192.0.2.1",
    "192.0.2.199",
    "192.0.2.201",
    "203.0.113.9",
    "::ffff:10.1.2.3",
    "2001:200::1",
    "2606:4700::1",
    "2001:db8::1",
    "2001:db8:1::1",
    "2001:db8:2::1",
    "2001:db9::1",
    "::",
    "255.255.255.255",
];

/// Same tables, same sources, and the same answer for every probe.
fn assert_same(a: &Enricher, b: &Enricher) {
    assert_eq!(a, b);
    for p in PROBES {
        let x: IpAddr = ip(p);
        assert_eq!(a.enrich(x), b.enrich(x), "{p}");
        assert_eq!(a.lookup(x), b.lookup(x), "{p}");
    }
}

fn cache_path(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

#[test]
fn second_load_reads_the_cache_and_matches_a_fresh_build() {
    let (_root, dir) = fixture_dir();
    let fresh = Enricher::from_dir(&dir, false).unwrap();
    assert_eq!(fresh.cache_use(), CacheUse::NotUsed);
    assert!(!cache_path(&dir).exists());

    let first = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(
        first.cache_use(),
        CacheUse::Rebuilt {
            miss: CacheMiss::Missing,
            saved: true
        }
    );
    assert!(cache_path(&dir).is_file());
    let second = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(second.cache_use(), CacheUse::Hit);
    assert_same(&fresh, &first);
    assert_same(&fresh, &second);

    // The data-directory entry point goes through the cache too.
    let via_data = Enricher::from_data_dir(dir.parent().unwrap()).unwrap();
    assert_eq!(via_data.cache_use(), CacheUse::Hit);
    assert_same(&fresh, &via_data);

    // Answers the fixtures pin down, so equality is not vacuous.
    let n = second.lookup(ip("10.1.2.3"));
    assert_eq!(n.asn.map(|a| a.0), Some(64502));
    assert_eq!(n.as_name.as_deref(), Some("Narrower"));
    assert_eq!(n.prefix.unwrap().to_string(), "10.1.2.0/25");
    assert_eq!(n.country.unwrap().to_string(), "DE");
    let n = second.lookup(ip("10.1.3.3"));
    assert_eq!(n.as_name.as_deref(), Some("Narrow, Inc."));
    let n = second.lookup(ip("2001:db8:1::1"));
    assert_eq!(n.asn.map(|a| a.0), Some(64511));
    assert_eq!(n.country, None);
    let n = second.lookup(ip("2001:db8::1"));
    assert_eq!(n.asn.map(|a| a.0), Some(64510));
    assert_eq!(n.country.unwrap().to_string(), "NL");
    let n = second.lookup(ip("8.8.8.8"));
    assert_eq!(n.as_name.as_deref(), Some("Google LLC"));
    assert_eq!(second.sources(), fresh.sources());
    assert_eq!(second.sources().len(), 5);
}

/// Damages the cache with `damage`, then checks the next load rebuilds it
/// for `want`, answers like a fresh build, and leaves a good cache behind.
fn rebuilt_after(damage: impl Fn(&Path), want: CacheMiss) {
    let (_root, dir) = fixture_dir();
    let fresh = Enricher::from_dir(&dir, false).unwrap();
    Enricher::from_dir(&dir, true).unwrap();
    damage(&cache_path(&dir));
    let again = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(
        again.cache_use(),
        CacheUse::Rebuilt {
            miss: want,
            saved: true
        }
    );
    assert_same(&fresh, &again);
    let third = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(third.cache_use(), CacheUse::Hit);
    assert_same(&fresh, &third);
}

#[test]
fn damaged_cache_is_rebuilt() {
    let (_root, dir) = fixture_dir();
    Enricher::from_dir(&dir, true).unwrap();
    let size = std::fs::metadata(cache_path(&dir)).unwrap().len() as usize;
    // One flipped bit anywhere past the magic: the header fields, the
    // stamp, the names, the tables, the end.
    for at in [9usize, 13, 17, 30, size / 3, size / 2, size - 1] {
        rebuilt_after(
            |p| {
                let mut b = std::fs::read(p).unwrap();
                b[at] ^= 0x10;
                std::fs::write(p, b).unwrap();
            },
            if (8..12).contains(&at) {
                CacheMiss::Version
            } else {
                CacheMiss::Damaged
            },
        );
    }
    // Foreign bytes and a trailing extra byte.
    rebuilt_after(
        |p| std::fs::write(p, b"not a cache at all").unwrap(),
        CacheMiss::Damaged,
    );
    rebuilt_after(
        |p| {
            let mut b = std::fs::read(p).unwrap();
            b.push(0);
            std::fs::write(p, b).unwrap();
        },
        CacheMiss::Damaged,
    );
}

#[test]
fn truncated_cache_is_rebuilt() {
    let (_root, dir) = fixture_dir();
    Enricher::from_dir(&dir, true).unwrap();
    let size = std::fs::metadata(cache_path(&dir)).unwrap().len();
    for keep in [0, 7, 24, 40, size / 2, size - 1] {
        rebuilt_after(
            |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(keep).unwrap();
            },
            CacheMiss::Damaged,
        );
    }
}

#[test]
fn other_version_is_rebuilt() {
    rebuilt_after(
        |p| {
            let mut b = std::fs::read(p).unwrap();
            b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            std::fs::write(p, b).unwrap();
        },
        CacheMiss::Version,
    );
}

#[test]
fn changed_sources_make_the_cache_stale() {
    let (_root, dir) = fixture_dir();
    let before = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(before.lookup(ip("198.51.100.1")).asn, None);

    // A file grows.
    let f = dir.join("asn-ipv4.csv");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("198.51.100.0,198.51.100.255,64520,Added\n");
    std::fs::write(&f, &text).unwrap();
    let after = Enricher::from_dir(&dir, true).unwrap();
    assert_eq!(
        after.cache_use(),
        CacheUse::Rebuilt {
            miss: CacheMiss::Stale,
            saved: true
        }
    );
    assert_eq!(
        after.lookup(ip("198.51.100.1")).asn.map(|a| a.0),
        Some(64520)
    );
    assert_same(&Enricher::from_dir(&dir, false).unwrap(), &after);
    assert_eq!(
        Enricher::from_dir(&dir, true).unwrap().cache_use(),
        CacheUse::Hit
    );

    // A file is rewritten with the same size and its old modification time.
    let old_mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    let same_size = text.replace("64520,Added", "64521,Other");
    assert_eq!(same_size.len(), text.len());
    std::fs::write(&f, &same_size).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    let rewritten = Enricher::from_dir(&dir, true).unwrap();
    assert!(matches!(
        rewritten.cache_use(),
        CacheUse::Rebuilt {
            miss: CacheMiss::Stale,
            ..
        }
    ));
    assert_eq!(
        rewritten.lookup(ip("198.51.100.1")).asn.map(|a| a.0),
        Some(64521)
    );

    // A file is added, then one is removed.
    std::fs::write(
        dir.join("zz-country.csv"),
        "198.51.100.0,198.51.100.255,JP\n",
    )
    .unwrap();
    let added = Enricher::from_dir(&dir, true).unwrap();
    assert!(matches!(
        added.cache_use(),
        CacheUse::Rebuilt {
            miss: CacheMiss::Stale,
            ..
        }
    ));
    assert_eq!(
        added
            .lookup(ip("198.51.100.1"))
            .country
            .map(|c| c.to_string())
            .as_deref(),
        Some("JP")
    );
    std::fs::remove_file(dir.join("country-ipv6.csv")).unwrap();
    let removed = Enricher::from_dir(&dir, true).unwrap();
    assert!(matches!(
        removed.cache_use(),
        CacheUse::Rebuilt {
            miss: CacheMiss::Stale,
            ..
        }
    ));
    assert_eq!(removed.lookup(ip("2001:db8::1")).country, None);
    assert_same(&Enricher::from_dir(&dir, false).unwrap(), &removed);

    // Files that are not sources do not matter.
    std::fs::write(dir.join("README"), "notes").unwrap();
    assert_eq!(
        Enricher::from_dir(&dir, true).unwrap().cache_use(),
        CacheUse::Hit
    );
}

#[test]
fn empty_directory_writes_no_cache() {
    let root = tempfile::tempdir().unwrap();
    let e = Enricher::from_dir(root.path(), true).unwrap();
    assert!(e.is_empty());
    assert!(!cache_path(root.path()).exists());
}
