//! Integration tests: MMDB fixtures written by a small writer, range CSVs,
//! loading from a data directory, and property tests of the lookup table
//! against a brute-force scan.
#![allow(clippy::unwrap_used)]

#[path = "it/writer.rs"]
mod writer;

#[path = "it/cache.rs"]
mod cache;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use takedown_enrich::mmdb::{self, Mmdb, Value};
use takedown_enrich::{CsvKind, EnricherBuilder, Error, PrefixTableBuilder, SourceKind};
use takedown_event::{Asn, CountryCode};
use writer::{Writer, array, boolean, double, float, map, pointer, string, uint};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn asn_record(asn: u32, org: &str) -> Vec<u8> {
    map(&[
        (string("autonomous_system_number"), uint(6, u128::from(asn))),
        (string("autonomous_system_organization"), string(org)),
    ])
}

/// An IPv6 ASN database holding IPv4 and IPv6 networks and the IPv4 aliases.
fn asn_db(record_size: u16) -> Vec<u8> {
    let mut w = Writer::new(6, record_size, "GeoLite2-ASN");
    let cf = w.add_data(&asn_record(13335, "Cloudflare, Inc."));
    let goog = w.add_data(&asn_record(15169, "Google LLC"));
    let wide = w.add_data(&asn_record(2500, "WIDE Project"));
    w.insert(net("1.1.1.0/24"), cf);
    w.insert(net("8.8.8.0/24"), goog);
    w.insert(net("8.8.4.0/24"), goog);
    w.insert(net("2001:200::/32"), wide);
    w.insert(net("2606:4700::/32"), cf);
    w.alias_ipv4();
    w.finish()
}

#[test]
fn mmdb_asn_all_record_sizes() {
    for rs in [24, 28, 32] {
        let bytes = asn_db(rs);
        let db = Mmdb::parse(&bytes).unwrap();
        assert_eq!(db.metadata().record_size, rs);
        assert_eq!(db.metadata().database_type, "GeoLite2-ASN");
        assert_eq!(
            db.metadata().description.as_deref(),
            Some("Fixture database")
        );
        let mut nets = Vec::new();
        db.networks(|n, r| nets.push((n, r.asn.unwrap().0)))
            .unwrap();
        // The aliases are not reported again.
        let got: BTreeSet<String> = nets.iter().map(|(n, a)| format!("{n} {a}")).collect();
        let want: BTreeSet<String> = [
            "1.1.1.0/24 13335",
            "8.8.8.0/24 15169",
            "8.8.4.0/24 15169",
            "2001:200::/32 2500",
            "2606:4700::/32 13335",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(got, want, "record size {rs}");

        let mut b = EnricherBuilder::new();
        let src = b.add_mmdb(&bytes, "asn.mmdb").unwrap();
        assert_eq!(src.kind, SourceKind::Asn);
        assert_eq!(src.ranges, 5);
        let e = b.build();
        let n = e.lookup(ip("8.8.8.8"));
        assert_eq!(n.asn, Some(Asn(15169)));
        assert_eq!(n.as_name.as_deref(), Some("Google LLC"));
        assert_eq!(n.prefix, Some(net("8.8.8.0/24")));
        let n = e.enrich(ip("::ffff:1.1.1.1"));
        assert_eq!(n.as_name(), Some("Cloudflare, Inc."));
        assert_eq!(n.prefix, Some(net("1.1.1.0/24")));
        let n = e.enrich(ip("2001:200:1::5"));
        assert_eq!(
            (n.asn, n.prefix),
            (Some(Asn(2500)), Some(net("2001:200::/32")))
        );
        assert!(e.enrich(ip("9.9.9.9")).is_empty());
        assert!(e.enrich(ip("2001:db8::1")).is_empty());
    }
}

#[test]
fn mmdb_country_with_pointers_and_fallback() {
    let mut w = Writer::new(4, 24, "GeoLite2-Country");
    // Shared strings reached through pointers, as real databases do.
    let key_iso = w.add_data(&string("iso_code"));
    let de = w.add_data(&string("DE"));
    let names = w.add_data(&map(&[(string("en"), string("Germany"))]));
    let rec_de = w.add_data(&map(&[
        (
            string("country"),
            map(&[
                (pointer(key_iso), pointer(de)),
                (string("names"), pointer(names)),
            ]),
        ),
        (string("geoname_id"), uint(6, 2921044)),
        (string("is_in_european_union"), boolean(true)),
        (
            string("location"),
            map(&[
                (string("latitude"), double(51.5)),
                (string("x"), float(1.5)),
            ]),
        ),
        (
            string("subdivisions"),
            array(&[map(&[(string("iso_code"), string("BE"))])]),
        ),
        (string("raw"), {
            let mut v = writer::ctrl(4, 3);
            v.extend_from_slice(&[1, 2, 3]);
            v
        }),
        (string("neg"), {
            let mut v = writer::ctrl(8, 4);
            v.extend_from_slice(&(-5i32).to_be_bytes());
            v
        }),
        (string("big"), uint(10, u128::MAX)),
    ]));
    // Only registered_country: the fallback.
    let rec_fr = w.add_data(&map(&[(
        string("registered_country"),
        map(&[(string("iso_code"), string("FR"))]),
    )]));
    // ip-location-db's flat layout.
    let rec_jp = w.add_data(&map(&[(string("country_code"), string("JP"))]));
    w.insert(net("192.0.2.0/24"), rec_de);
    w.insert(net("198.51.100.0/25"), rec_fr);
    w.insert(net("203.0.113.128/25"), rec_jp);
    let bytes = w.finish();

    let db = Mmdb::parse(&bytes).unwrap();
    let v = db.value(rec_de as usize).unwrap();
    assert_eq!(v.get("neg"), Some(&Value::Int(-5)));
    assert_eq!(v.get("big"), Some(&Value::Uint(u128::MAX)));
    assert_eq!(v.get("is_in_european_union"), Some(&Value::Bool(true)));
    assert_eq!(v.get("raw"), Some(&Value::Bytes(&[1, 2, 3])));
    assert_eq!(
        v.get("location").and_then(|l| l.get("latitude")),
        Some(&Value::Double(51.5))
    );

    let mut b = EnricherBuilder::new();
    assert_eq!(
        b.add_mmdb(&bytes, "c.mmdb").unwrap().kind,
        SourceKind::Country
    );
    let e = b.build();
    let cc = |s: &str| e.enrich(ip(s)).country.map(|c| c.to_string());
    assert_eq!(cc("192.0.2.7").as_deref(), Some("DE"));
    assert_eq!(cc("198.51.100.1").as_deref(), Some("FR"));
    assert_eq!(cc("198.51.100.200"), None);
    assert_eq!(cc("203.0.113.200").as_deref(), Some("JP"));
    // Country-only data gives no prefix or AS.
    let n = e.lookup(ip("192.0.2.7"));
    assert_eq!((n.prefix, n.asn), (None, None));
}

#[test]
fn mmdb_corruption_never_panics() {
    let bytes = asn_db(28);
    // Every truncation.
    for cut in 0..bytes.len() {
        let _ = mmdb::check(&bytes[..cut]);
    }
    // Every single-byte change to a few values.
    for i in 0..bytes.len() {
        for x in [0x00, 0xff, 0x20, 0x5d, 0xe0] {
            let mut b = bytes.clone();
            b[i] = x;
            if let Ok(db) = Mmdb::parse(&b) {
                let _ = db.networks(|_, _| {});
            }
        }
    }
}

#[test]
fn mmdb_tree_loop_is_an_error() {
    // Node 0 points to itself on both sides: infinitely deep.
    let mut w = Writer::new(4, 24, "loop");
    let d = w.add_data(&asn_record(1, "x"));
    w.insert(net("10.0.0.0/8"), d);
    let mut bytes = w.finish();
    // Rewrite node 0's records to 0 (itself).
    bytes[..6].copy_from_slice(&[0; 6]);
    assert!(matches!(mmdb::check(&bytes), Err(Error::Mmdb(_))));
}

#[test]
fn csv_asn_and_country_layouts() {
    let asn = "ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization\n\
               1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
               1.0.4.0,1.0.7.255,AS38803,Gtelecom Pty Ltd\n\
               1.0.8.0,1.0.8.255,0,Not routed\n\
               1.0.16.0,1.0.16.255,2519,Unquoted, with comma\n";
    let asn6 = "42540528726795050063891204319802818560,42540528727329395276160870415022948351,2500,WIDE Project\n";
    let cc = "1.0.0.0,1.0.0.255,AU\n1.0.4.0,1.0.7.255,zz\n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,jp\n";
    let mut b = EnricherBuilder::new();
    let s = b.add_csv(asn.as_bytes(), "asn-ipv4.csv", None).unwrap();
    assert_eq!((s.kind, s.ranges), (SourceKind::Asn, 3));
    let s = b
        .add_csv(asn6.as_bytes(), "asn-ipv6-num.csv", None)
        .unwrap();
    assert_eq!(s.ranges, 1);
    let s = b
        .add_csv(cc.as_bytes(), "country.csv", Some(CsvKind::Country))
        .unwrap();
    assert_eq!((s.kind, s.ranges), (SourceKind::Country, 2));
    let e = b.build();

    let n = e.lookup(ip("1.0.5.1"));
    assert_eq!(n.asn, Some(Asn(38803)));
    assert_eq!(n.prefix, Some(net("1.0.4.0/22")));
    assert_eq!(n.country, None);
    assert_eq!(
        e.lookup(ip("1.0.16.1")).as_name.as_deref(),
        Some("Unquoted,with comma")
    );
    assert!(e.lookup(ip("1.0.8.1")).asn.is_none());
    let n = e.lookup(ip("2001:200::1"));
    assert_eq!(n.asn, Some(Asn(2500)));
    assert_eq!(n.prefix, Some(net("2001:200::/40")));
    assert_eq!(n.country, Some("JP".parse::<CountryCode>().unwrap()));
    assert_eq!(e.sources().len(), 3);
}

#[test]
fn csv_errors_name_the_line() {
    let bad = "1.0.0.0,1.0.0.255,13335,A\n1.0.1.0,nonsense,1,B\n";
    let err = EnricherBuilder::new()
        .add_csv(bad.as_bytes(), "asn.csv", None)
        .unwrap_err();
    match err {
        Error::Csv { file, line, .. } => assert_eq!((file.as_str(), line), ("asn.csv", 2)),
        other => panic!("unexpected {other:?}"),
    }
    let reversed = "1.0.0.9,1.0.0.1,DE\n";
    assert!(
        EnricherBuilder::new()
            .add_csv(reversed.as_bytes(), "c.csv", None)
            .is_err()
    );
    let mixed = "1.0.0.0,::1,DE\n";
    assert!(
        EnricherBuilder::new()
            .add_csv(mixed.as_bytes(), "c.csv", None)
            .is_err()
    );
    let narrow = "1.0.0.0,1.0.0.9\n";
    assert!(matches!(
        EnricherBuilder::new().add_csv(narrow.as_bytes(), "c.csv", None),
        Err(Error::CsvLayout { columns: 2, .. })
    ));
    let badcc = "1.0.0.0,1.0.0.9,D1\n";
    assert!(
        EnricherBuilder::new()
            .add_csv(badcc.as_bytes(), "c.csv", None)
            .is_err()
    );
}

#[test]
fn loads_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let enrich = dir.path().join("enrich");
    std::fs::create_dir(&enrich).unwrap();
    std::fs::write(enrich.join("asn.mmdb"), asn_db(24)).unwrap();
    std::fs::write(
        enrich.join("dbip-country-ipv4.csv"),
        "8.8.8.0,8.8.8.255,US\n",
    )
    .unwrap();
    std::fs::write(enrich.join("ATTRIBUTION"), "not data").unwrap();
    let e = takedown_enrich::Enricher::from_data_dir(dir.path()).unwrap();
    assert_eq!(e.sources().len(), 2);
    let n = e.lookup(ip("8.8.8.8"));
    assert_eq!(n.asn, Some(Asn(15169)));
    assert_eq!(n.country.map(|c| c.to_string()).as_deref(), Some("US"));

    // No enrich directory: an empty enricher, not an error.
    let empty = tempfile::tempdir().unwrap();
    let e = takedown_enrich::Enricher::from_data_dir(empty.path()).unwrap();
    assert!(e.is_empty());

    // A broken file is reported with its path.
    std::fs::write(enrich.join("broken.mmdb"), b"not an mmdb").unwrap();
    assert!(matches!(
        takedown_enrich::Enricher::from_data_dir(dir.path()),
        Err(Error::Mmdb(_))
    ));
}

/// The winner among `ranges` for `x`: the narrowest covering range, ties to
/// the first inserted. Returns its index.
fn brute(ranges: &[(u128, u128)], x: u128) -> Option<usize> {
    ranges
        .iter()
        .enumerate()
        .filter(|(_, (s, e))| *s <= x && x <= *e)
        .min_by_key(|(i, (s, e))| (e - s, *i))
        .map(|(i, _)| i)
}

/// Checks `prefix` is the largest aligned block around `x` inside `s..=e`.
fn check_prefix(bits: u32, prefix: IpNet, x: u128, s: u128, e: u128) {
    let len = u32::from(prefix.prefix_len());
    let host = bits - len;
    let m = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let (lo, hi) = (x & !m, x | m);
    let net = match prefix {
        IpNet::V4(n) => u128::from(u32::from(n.network())),
        IpNet::V6(n) => u128::from(n.network()),
    };
    assert_eq!(net, lo, "prefix {prefix} does not hold {x:#x}");
    assert!(s <= lo && hi <= e, "prefix {prefix} leaves the range");
    if len > 0 {
        let pm = (m << 1) | 1;
        assert!(
            x & !pm < s || x | pm > e,
            "prefix {prefix} is not the largest"
        );
    }
}

/// Ranges clustered in a small space so they overlap often.
fn v4_ranges() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec(
        (0u32..4096, 0u32..1024).prop_map(|(s, w)| (s, (s + w).min(4095))),
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v4_lookup_matches_brute_force(
        ranges in v4_ranges(),
        shift in prop::sample::select(vec![0u32, 8, 20]),
        probes in prop::collection::vec(0u32..4200, 64),
    ) {
        // Scale the cluster up so some tests span bucket boundaries.
        let scale = |v: u32| v.checked_shl(shift).unwrap_or(u32::MAX);
        let wide: Vec<(u128, u128)> = ranges
            .iter()
            .map(|&(s, e)| (u128::from(scale(s)), u128::from(scale(e) | ((1u32 << shift) - 1))))
            .collect();
        let mut b = PrefixTableBuilder::new();
        for (i, &(s, e)) in wide.iter().enumerate() {
            b.insert_v4(s as u32, e as u32, i).unwrap();
        }
        let t = b.build();
        for p in probes {
            for x in [scale(p), scale(p).wrapping_add(1), scale(p).wrapping_sub(1)] {
                let got = t.lookup_v4(Ipv4Addr::from(x));
                let want = brute(&wide, u128::from(x));
                prop_assert_eq!(got.map(|m| m.value), want);
                if let (Some(m), Some(i)) = (got, want) {
                    check_prefix(32, m.prefix, u128::from(x), wide[i].0, wide[i].1);
                }
            }
        }
    }

    #[test]
    fn v6_lookup_matches_brute_force(
        ranges in prop::collection::vec((0u128..1 << 20, 0u128..1 << 18), 0..40),
        top in prop::sample::select(vec![0u128, 0x2001_0db8u128 << 96, u128::MAX << 20]),
        probes in prop::collection::vec(0u128..(1 << 20) + 100, 64),
    ) {
        let wide: Vec<(u128, u128)> = ranges
            .iter()
            .map(|&(s, w)| (top | s, top | (s + w).min((1 << 20) - 1)))
            .collect();
        let mut b = PrefixTableBuilder::new();
        for (i, &(s, e)) in wide.iter().enumerate() {
            b.insert_v6(s, e, i).unwrap();
        }
        let t = b.build();
        for p in probes {
            let x = top.wrapping_add(p);
            let got = t.lookup_v6(Ipv6Addr::from(x));
            let want = brute(&wide, x);
            prop_assert_eq!(got.map(|m| m.value), want);
            if let (Some(m), Some(i)) = (got, want) {
                check_prefix(128, m.prefix, x, wide[i].0, wide[i].1);
            }
        }
    }

    #[test]
    fn mmdb_round_trip(
        nets in prop::collection::btree_map((any::<u32>(), 1u8..=32), 0u32..5, 1..30),
        nets6 in prop::collection::btree_map((any::<u128>(), 1u8..=64), 0u32..5, 0..10),
        rs in prop::sample::select(vec![24u16, 28, 32]),
    ) {
        // Keep only non-nested networks (a tree position holds one record).
        let mut chosen: Vec<(IpNet, u32)> = Vec::new();
        let all = nets
            .iter()
            .map(|(&(a, l), &v)| (IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()), v))
            .chain(nets6.iter().map(|(&(a, l), &v)| {
                // Stay clear of ::/96 (where IPv4 lives) and the aliases.
                let a = a | (1u128 << 127);
                (IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()), v)
            }));
        for (n, v) in all {
            if chosen.iter().all(|(c, _)| !c.contains(&n) && !n.contains(c)) {
                chosen.push((n, v));
            }
        }
        let mut w = Writer::new(6, rs, "Test-ASN");
        let offs: Vec<u32> = (0..5).map(|i| w.add_data(&asn_record(64500 + i, &format!("AS {i}")))).collect();
        for &(n, v) in &chosen {
            w.insert(n, offs[v as usize]);
        }
        let bytes = w.finish();
        let db = Mmdb::parse(&bytes).unwrap();
        let mut got = Vec::new();
        db.networks(|n, r| got.push((n, r.asn.unwrap().0 - 64500))).unwrap();
        got.sort();
        chosen.sort();
        prop_assert_eq!(&got, &chosen);

        let mut b = EnricherBuilder::new();
        b.add_mmdb(&bytes, "t.mmdb").unwrap();
        let e = b.build();
        for &(n, v) in &chosen {
            let hit = e.enrich(n.network());
            prop_assert_eq!(hit.asn, Some(Asn(64500 + v)));
            prop_assert_eq!(hit.prefix, Some(n));
            let name = format!("AS {v}");
            prop_assert_eq!(hit.as_name(), Some(name.as_str()));
        }
    }

    #[test]
    fn mmdb_random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        meta in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut f = body;
        f.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        f.extend_from_slice(&meta);
        let _ = mmdb::check(&f);
    }

    #[test]
    fn csv_never_panics(text in "[0-9a-f:.,\"\n AS]{0,200}") {
        let _ = EnricherBuilder::new().add_csv(text.as_bytes(), "x.csv", None);
    }
}
