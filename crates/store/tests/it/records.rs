//! Events and host records: folding, isolation filters, pagination, rollups, persistence.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::ControlFlow;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use takedown_event::{Asn, CountryCode, Event, EventKind, Family, HostRecord, Network, Timestamp};
use takedown_store::{
    Cursor, EventCount, EventQuery, EventStore, FootprintRow, NetworkSet, RecordFilter,
    SqliteStore, Window, record_id,
};

use crate::Backend;

const DAY: i64 = 86_400_000_000;

fn t0() -> Timestamp {
    "2026-11-30T00:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp(t0().0 + secs * 1_000_000)
}

/// An HTTP check-in from `ip` at `secs` after midnight of day 0, attributed to `asn` and `cc`.
fn ev(secs: i64, ip: &str, family: Option<&str>, asn: Option<u32>, cc: Option<&str>) -> Event {
    let ip: IpAddr = ip.parse().unwrap();
    let mut e = Event::new(
        at(secs),
        EventKind::Http,
        std::net::SocketAddr::new(ip, 40000),
        "198.51.100.1:80".parse().unwrap(),
        "sh1".parse().unwrap(),
    );
    e.family = family.map(|f| f.parse().unwrap());
    e.http_url = Some(format!("/gate.php?t={secs}"));
    e.http_host = Some("c2.example".into());
    e.http_agent = Some("Mozilla/4.0".into());
    e.network = Some(Network {
        prefix: None,
        asn: asn.map(Asn),
        as_name: asn.map(|a| format!("AS-{a}")),
        country: cc.map(|c| c.parse().unwrap()),
    });
    e
}

fn all_records<S: EventStore>(s: &S, filter: &RecordFilter) -> Vec<HostRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = s.host_records(filter, cursor.as_ref(), 3).unwrap();
        assert!(page.records.len() <= 3);
        out.extend(page.records);
        match page.next {
            Some(c) => cursor = Some(c.to_string().parse().unwrap()),
            None => return out,
        }
    }
}

/// Records keyed by id, with `modified` blanked so stores written at different times compare.
fn comparable(mut v: Vec<HostRecord>) -> BTreeMap<String, HostRecord> {
    v.iter_mut().for_each(|r| r.modified = Timestamp(0));
    v.into_iter().map(|r| (r.id.clone(), r)).collect()
}

pub(crate) fn fold_keeps_extremes_and_latest_sample<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let mut late = ev(500, "192.0.2.7", Some("rustock"), Some(64500), Some("DE"));
    late.http_agent = Some("late-agent".into());
    late.dst_port = 8080;
    let batch = vec![
        ev(100, "192.0.2.7", Some("rustock"), Some(64500), Some("DE")),
        late.clone(),
        ev(50, "192.0.2.7", Some("rustock"), Some(64501), Some("FR")),
    ];
    let r = s.append_events(&batch).unwrap();
    assert_eq!((r.events, r.records), (3, 1));
    // An even later event arrives in an older, separate batch... no: later batch, earlier time.
    s.append_events(&[ev(10, "192.0.2.7", Some("rustock"), None, None)])
        .unwrap();

    let recs = all_records(&s, &RecordFilter::default());
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let fam: Family = "rustock".parse().unwrap();
    assert_eq!(rec.id, record_id(ip, Some(&fam), t0().day()));
    assert_eq!(
        (rec.ip, rec.family.as_ref(), rec.day),
        (ip, Some(&fam), t0().day())
    );
    assert_eq!(
        (rec.first_seen, rec.last_seen, rec.count),
        (at(10), at(500), 4)
    );
    assert_eq!(rec.sample_agent.as_deref(), Some("late-agent"));
    assert_eq!(rec.sample_url.as_deref(), Some("/gate.php?t=500"));
    assert_eq!(rec.dst_port, 8080);
    assert_eq!(rec.network.asn, Some(Asn(64500)));
    assert_eq!(rec.network.country, Some("DE".parse().unwrap()));
    assert!(!rec.nat_suspected);
    assert_eq!(s.host_record(&rec.id).unwrap().as_ref(), Some(rec));
    assert!(
        s.host_record(&record_id(ip, None, t0().day()))
            .unwrap()
            .is_none()
    );
    assert!(s.host_record("not an id").is_err());

    // Another family or another UTC day is another record; a mapped address is the same host.
    s.append_events(&[
        ev(20, "::ffff:192.0.2.7", Some("rustock"), Some(64500), None),
        ev(20, "192.0.2.7", Some("kelihos"), Some(64500), None),
        ev(86_400 + 5, "192.0.2.7", Some("rustock"), Some(64500), None),
        ev(20, "192.0.2.7", None, Some(64500), None),
    ])
    .unwrap();
    let recs = all_records(&s, &RecordFilter::default());
    assert_eq!(recs.len(), 4);
    assert_eq!(s.host_record(&rec.id).unwrap().unwrap().count, 5);
    assert!(recs.iter().any(|r| r.family.is_none()));
}

pub(crate) fn dns_never_makes_records<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let mut dns = ev(
        1,
        "203.0.113.53",
        Some("conficker"),
        Some(64500),
        Some("NL"),
    );
    dns.kind = EventKind::Dns;
    dns.dns_qname = Some("c2.example".into());
    let r = s.append_events(&[dns.clone(), dns.clone()]).unwrap();
    assert_eq!((r.events, r.records), (2, 0));
    assert!(all_records(&s, &RecordFilter::default()).is_empty());
    let mut tcp = ev(2, "203.0.113.9", Some("conficker"), Some(64500), Some("NL"));
    tcp.kind = EventKind::Tcp;
    s.append_events(&[tcp, dns]).unwrap();
    assert_eq!(all_records(&s, &RecordFilter::default()).len(), 1);
    let day = t0().day();
    let fam: Family = "conficker".parse().unwrap();
    assert_eq!(
        s.event_counts(day, day).unwrap(),
        vec![
            EventCount {
                day,
                kind: EventKind::Tcp,
                family: Some(fam.clone()),
                count: 1
            },
            EventCount {
                day,
                kind: EventKind::Dns,
                family: Some(fam),
                count: 3
            },
        ]
    );
    assert!(s.event_counts(day + 1, day + 9).unwrap().is_empty());
}

pub(crate) fn out_of_order_equals_sorted<B: Backend>() {
    let mut events = Vec::new();
    for i in 0..60i64 {
        let ip = format!("10.0.{}.{}", i % 3, i % 5);
        let fam = ["a", "b"][(i % 2) as usize];
        let mut e = ev(
            (i * 7919) % 3000 + (i % 2) * 86_400,
            &ip,
            Some(fam),
            Some(64500 + (i % 4) as u32),
            Some("DE"),
        );
        e.http_agent = Some(format!("agent-{}", i % 3));
        e.src_port = 1000 + (i % 9) as u16;
        events.push(e);
    }
    // Duplicate timestamps with different samples exercise the tie-break.
    let mut tie = events[0].clone();
    tie.http_url = Some("/tie".into());
    events.push(tie);
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e.timestamp);

    let (pa, pb) = (B::place(), B::place());
    let (a, b) = (B::open(&pa), B::open(&pb));
    a.append_events(&sorted).unwrap();
    for chunk in events.iter().rev().collect::<Vec<_>>().chunks(7) {
        let chunk: Vec<Event> = chunk.iter().map(|e| (*e).clone()).collect();
        b.append_events(&chunk).unwrap();
    }
    let ra = comparable(all_records(&a, &RecordFilter::default()));
    let rb = comparable(all_records(&b, &RecordFilter::default()));
    assert_eq!(ra.len(), 2 * 15);
    assert_eq!(ra, rb);
}

pub(crate) fn folding_is_order_independent_property<B: Backend>() {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let event = (
        0..20i64,
        0..4u8,
        0..2u8,
        0..6u8,
        0..12u16,
        0..3u32,
        any::<bool>(),
    )
        .prop_map(|(t, ip, fam, agent, port, asn, http)| {
            let mut e = ev(
                t * 3600 * 3,
                &format!("192.0.2.{ip}"),
                ["x", "y"].get(usize::from(fam)).copied(),
                Some(64500 + asn),
                Some("SE"),
            );
            e.http_agent = Some(format!("a{agent}"));
            e.src_port = 2000 + port;
            if !http {
                e.kind = EventKind::Tcp;
                e.http_agent = None;
                e.http_url = None;
            }
            e
        });
    let case = (
        proptest::collection::vec(event, 1..80),
        any::<u64>(),
        1..10usize,
    );
    runner
        .run(&case, |(events, seed, batch)| {
            let mut shuffled = events.clone();
            // A seeded Fisher-Yates shuffle, so failures replay.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut sorted = events;
            sorted.sort_by_key(|e| e.timestamp);
            let (pa, pb) = (B::place(), B::place());
            let (a, b) = (B::open(&pa), B::open(&pb));
            a.append_events(&sorted).unwrap();
            for chunk in shuffled.chunks(batch) {
                b.append_events(chunk).unwrap();
            }
            let ra = comparable(all_records(&a, &RecordFilter::default()));
            let rb = comparable(all_records(&b, &RecordFilter::default()));
            prop_assert_eq!(ra, rb);
            Ok(())
        })
        .unwrap();
}

/// Hosts spread over ASes, countries and both address families, including edge addresses.
fn isolation_fixture() -> Vec<Event> {
    let hosts: &[(&str, Option<u32>, Option<&str>)] = &[
        ("192.0.2.1", Some(64500), Some("DE")),
        ("192.0.2.2", Some(64501), Some("DE")),
        ("192.0.2.255", Some(64501), Some("FR")),
        ("192.0.3.0", Some(64502), Some("FR")),
        ("10.0.0.1", None, None),
        ("0.0.0.0", Some(64503), None),
        ("255.255.255.255", None, Some("US")),
        ("2001:db8::1", Some(64500), Some("DE")),
        ("2001:db8::2", Some(64504), Some("NL")),
        ("2001:db8:1::1", None, None),
        ("::", None, None),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(64505), None),
        ("::ffff:198.51.100.9", Some(64506), Some("JP")),
    ];
    hosts
        .iter()
        .flat_map(|(ip, asn, cc)| {
            [
                ev(60, ip, Some("fam"), *asn, *cc),
                ev(86_400 + 60, ip, Some("fam"), *asn, *cc),
            ]
        })
        .collect()
}

fn set(asns: &[u32], cidrs: &[&str], countries: &[&str]) -> NetworkSet {
    NetworkSet {
        asns: asns.iter().map(|a| Asn(*a)).collect(),
        cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        countries: countries
            .iter()
            .map(|c| c.parse::<CountryCode>().unwrap())
            .collect(),
    }
}

fn ips(recs: &[HostRecord]) -> BTreeSet<String> {
    recs.iter().map(|r| r.ip.to_string()).collect()
}

pub(crate) fn partner_filters_isolate<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    s.append_events(&isolation_fixture()).unwrap();
    let everything = all_records(&s, &RecordFilter::default());
    assert_eq!(everything.len(), 26);

    let within = |n: NetworkSet| all_records(&s, &RecordFilter::default().within(n));
    let only = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // AS X never sees AS Y, even for neighbouring addresses in the same /24 and country.
    let r = within(set(&[64500], &[], &[]));
    assert_eq!(ips(&r), only(&["192.0.2.1", "2001:db8::1"]));
    assert!(r.iter().all(|r| r.network.asn == Some(Asn(64500))));
    // An empty constituency sees nothing, not everything.
    assert!(within(NetworkSet::default()).is_empty());
    // Single addresses.
    assert_eq!(
        ips(&within(set(&[], &["192.0.2.255/32"], &[]))),
        only(&["192.0.2.255"])
    );
    assert_eq!(
        ips(&within(set(&[], &["2001:db8::2/128"], &[]))),
        only(&["2001:db8::2"])
    );
    assert_eq!(
        ips(&within(set(&[], &["0.0.0.0/32"], &[]))),
        only(&["0.0.0.0"])
    );
    assert_eq!(
        ips(&within(set(&[], &["255.255.255.255/32"], &[]))),
        only(&["255.255.255.255"])
    );
    // A /24 stops at its broadcast address.
    assert_eq!(
        ips(&within(set(&[], &["192.0.2.0/24"], &[]))),
        only(&["192.0.2.1", "192.0.2.2", "192.0.2.255"])
    );
    // Host bits in the prefix are ignored, as routers do.
    assert_eq!(ips(&within(set(&[], &["192.0.2.77/31"], &[]))), only(&[]));
    // /0 covers one address family only.
    let v4 = within(set(&[], &["0.0.0.0/0"], &[]));
    assert!(v4.iter().all(|r| r.ip.is_ipv4()));
    assert_eq!(v4.len(), 2 * 8);
    let v6 = within(set(&[], &["::/0"], &[]));
    assert!(v6.iter().all(|r| r.ip.is_ipv6()));
    assert_eq!(v6.len(), 2 * 5);
    // A mapped prefix means the IPv4 prefix; the mapped host was stored as IPv4.
    assert_eq!(
        ips(&within(set(&[], &["::ffff:198.51.100.0/120"], &[]))),
        only(&["198.51.100.9"])
    );
    assert_eq!(
        ips(&within(set(&[], &["198.51.100.9/32"], &[]))),
        only(&["198.51.100.9"])
    );
    // Countries, and the OR of all three lists.
    assert_eq!(
        ips(&within(set(&[], &[], &["fr"]))),
        only(&["192.0.2.255", "192.0.3.0"])
    );
    assert_eq!(
        ips(&within(set(&[64504], &["10.0.0.0/8"], &["JP"]))),
        only(&["2001:db8::2", "10.0.0.1", "198.51.100.9"])
    );
    // Two sets AND together: a narrower query can never widen a partner's view.
    let partner = set(&[64501], &[], &[]);
    let r = all_records(
        &s,
        &RecordFilter::default()
            .within(partner.clone())
            .within(set(&[64500], &[], &["DE"])),
    );
    assert_eq!(ips(&r), only(&["192.0.2.2"]));
    let r = all_records(
        &s,
        &RecordFilter::default()
            .within(partner)
            .within(set(&[], &["::/0"], &[])),
    );
    assert!(r.is_empty());

    // Every filter agrees with the reference rule, over many combinations.
    let asns = [64500, 64501, 64503, 64505, 64599];
    let cidrs = [
        "192.0.2.0/25",
        "192.0.2.128/25",
        "0.0.0.0/1",
        "2001:db8::/32",
        "2001:db8::/127",
        "::/1",
        "8000::/1",
        "10.0.0.1/32",
    ];
    let ccs = ["DE", "FR", "US", "NL", "JP"];
    for i in 0..64usize {
        let pick = |n: usize, salt: usize| {
            (0..n).filter(move |k| {
                (i * 2654435761 + salt * 97) >> (k % 16) & 1 == 1
                    && !(i + k + salt).is_multiple_of(3)
            })
        };
        let n = NetworkSet {
            asns: pick(asns.len(), 1).map(|k| Asn(asns[k])).collect(),
            cidrs: pick(cidrs.len(), 2)
                .map(|k| cidrs[k].parse().unwrap())
                .collect(),
            countries: pick(ccs.len(), 3)
                .map(|k| ccs[k].parse().unwrap())
                .collect(),
        };
        let got: BTreeSet<String> = within(n.clone()).into_iter().map(|r| r.id).collect();
        let want: BTreeSet<String> = everything
            .iter()
            .filter(|r| n.contains(r.ip, r.network.asn, r.network.country))
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(got, want, "{n:?}");
    }
}

pub(crate) fn other_filters_and_pagination<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    s.append_events(&isolation_fixture()).unwrap();
    let mut other = ev(30, "192.0.2.1", Some("other"), Some(64500), Some("DE"));
    other.network = None;
    s.append_events(&[other]).unwrap();
    let day = t0().day();

    let f = RecordFilter {
        families: vec!["other".parse().unwrap()],
        ..RecordFilter::default()
    };
    let r = all_records(&s, &f);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].network, Network::default());
    let f = RecordFilter {
        first_day: Some(day + 1),
        ..RecordFilter::default()
    };
    assert!(all_records(&s, &f).iter().all(|r| r.day == day + 1));
    assert_eq!(all_records(&s, &f).len(), 13);
    let f = RecordFilter {
        first_day: Some(day),
        last_day: Some(day),
        ..RecordFilter::default()
    };
    assert_eq!(all_records(&s, &f).len(), 14);
    let f = RecordFilter {
        nat_suspected: Some(true),
        ..RecordFilter::default()
    };
    assert!(all_records(&s, &f).is_empty());

    // Pages are ordered by (modified, day, ip, family) and never repeat or skip.
    let all = all_records(&s, &RecordFilter::default());
    assert_eq!(all.len(), 27);
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 27);
    assert!(all.windows(2).all(|w| w[0].modified <= w[1].modified));
    let big = s
        .host_records(&RecordFilter::default(), None, 1000)
        .unwrap();
    assert!(big.next.is_none());
    assert_eq!(big.records, all);
    assert!("garbage".parse::<Cursor>().is_err());

    // Delta pull: only what changed after the last pull comes back.
    let mark = all.last().unwrap().modified;
    let since = RecordFilter {
        since: Some(mark),
        ..RecordFilter::default()
    };
    assert!(all_records(&s, &since).is_empty());
    // A late event for an old day updates that record and nothing else.
    s.append_events(&[ev(1, "10.0.0.1", Some("fam"), None, None)])
        .unwrap();
    let delta = all_records(&s, &since);
    assert_eq!(delta.len(), 1);
    assert_eq!(
        (
            delta[0].ip.to_string().as_str(),
            delta[0].count,
            delta[0].first_seen
        ),
        ("10.0.0.1", 2, at(1))
    );
    assert!(delta[0].modified > mark);
}

pub(crate) fn nat_suspicion<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let agents = |ip: &str, n: usize, base: i64| -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = ev(base + i as i64 * 600, ip, Some("f"), None, None);
                e.http_agent = Some(format!("agent {i}"));
                e
            })
            .collect()
    };
    // Three agents is within what one host might send; four is not. One per batch, so the store merges.
    for e in agents("192.0.2.3", 3, 0)
        .into_iter()
        .chain(agents("192.0.2.4", 4, 0))
    {
        s.append_events(&[e]).unwrap();
    }
    // Ports: 16 distinct source ports within 10 seconds, split across two batches.
    let burst: Vec<Event> = (0..16u16)
        .map(|i| {
            let mut e = ev(7200 + i64::from(i % 8), "192.0.2.5", Some("f"), None, None);
            e.src_port = 30000 + i;
            e
        })
        .collect();
    s.append_events(&burst[..8]).unwrap();
    s.append_events(&burst[8..]).unwrap();
    // The same number of ports spread over minutes is one host reconnecting.
    let slow: Vec<Event> = (0..40u16)
        .map(|i| {
            let mut e = ev(7200 + i64::from(i) * 30, "192.0.2.6", Some("f"), None, None);
            e.src_port = 30000 + i;
            e
        })
        .collect();
    s.append_events(&slow).unwrap();

    let nat: BTreeSet<String> = all_records(
        &s,
        &RecordFilter {
            nat_suspected: Some(true),
            ..RecordFilter::default()
        },
    )
    .into_iter()
    .map(|r| r.ip.to_string())
    .collect();
    assert_eq!(
        nat,
        ["192.0.2.4", "192.0.2.5"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // The flag sticks when later, quiet events arrive.
    s.append_events(&[ev(80_000, "192.0.2.5", Some("f"), None, None)])
        .unwrap();
    let id = record_id(
        "192.0.2.5".parse().unwrap(),
        Some(&"f".parse().unwrap()),
        t0().day(),
    );
    assert!(s.host_record(&id).unwrap().unwrap().nat_suspected);
}

pub(crate) fn footprint_rollups<B: Backend>() {
    let place = B::place();
    let s = B::open(&place);
    let day = t0().day();
    // day 0 is a Monday (2026-11-30); day 7 starts the next week.
    assert_eq!((day - 4).rem_euclid(7), 0);
    let mut events = Vec::new();
    for d in [0i64, 1, 6, 7] {
        for host in 0..(3 + d) {
            let ip = format!("192.0.2.{host}");
            events.push(ev(d * 86_400 + 10, &ip, Some("f"), Some(64500), Some("DE")));
            events.push(ev(d * 86_400 + 20, &ip, Some("f"), Some(64500), Some("DE")));
        }
        events.push(ev(
            d * 86_400 + 30,
            "2001:db8::9",
            Some("g"),
            Some(64501),
            Some("NL"),
        ));
    }
    s.append_events(&events).unwrap();
    let f: Family = "f".parse().unwrap();
    let g: Family = "g".parse().unwrap();
    let row = |start_day: i64, family: &Family, cc: &str, asn: u32, n: u64| FootprintRow {
        start_day,
        family: Some(family.clone()),
        country: Some(cc.parse().unwrap()),
        asn: Some(Asn(asn)),
        unique_ips: n,
    };
    let daily = s.footprint(&RecordFilter::default(), Window::Day).unwrap();
    assert_eq!(
        daily,
        vec![
            row(day, &f, "DE", 64500, 3),
            row(day, &g, "NL", 64501, 1),
            row(day + 1, &f, "DE", 64500, 4),
            row(day + 1, &g, "NL", 64501, 1),
            row(day + 6, &f, "DE", 64500, 9),
            row(day + 6, &g, "NL", 64501, 1),
            row(day + 7, &f, "DE", 64500, 10),
            row(day + 7, &g, "NL", 64501, 1),
        ]
    );
    // Weekly counts are distinct addresses over the week, not sums of days.
    let weekly = s.footprint(&RecordFilter::default(), Window::Week).unwrap();
    assert_eq!(
        weekly,
        vec![
            row(day, &f, "DE", 64500, 9),
            row(day, &g, "NL", 64501, 1),
            row(day + 7, &f, "DE", 64500, 10),
            row(day + 7, &g, "NL", 64501, 1),
        ]
    );
    // Rollups respect partner scope.
    let scoped = s
        .footprint(
            &RecordFilter::default().within(set(&[64501], &[], &[])),
            Window::Week,
        )
        .unwrap();
    assert_eq!(
        scoped,
        vec![
            row(day, &g, "NL", 64501, 1),
            row(day + 7, &g, "NL", 64501, 1)
        ]
    );
    let counts = s.event_counts(day, day + 7).unwrap();
    let total: u64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, events.len() as u64);
    assert_eq!(
        counts
            .iter()
            .filter(|c| c.day == day + 6)
            .map(|c| c.count)
            .sum::<u64>(),
        2 * 9 + 1
    );
}

pub(crate) fn events_round_trip_and_persist<B: Backend>() {
    let place = B::place();
    let mut batch = isolation_fixture();
    let mut dns = ev(5, "203.0.113.53", None, None, None);
    dns.kind = EventKind::Dns;
    dns.protocol = takedown_event::Transport::Udp;
    dns.dns_qname = Some("c2.example".into());
    dns.dns_qtype = Some("TXT".into());
    dns.network = None;
    dns.malformed = true;
    dns.tag = Some("gen2".into());
    batch.push(dns);
    let mut tcp = ev(6, "2001:db8::5", Some("fam"), Some(1), Some("DE"));
    tcp.kind = EventKind::Tcp;
    tcp.payload = Some("deadbeef".into());
    tcp.tls_sni = Some("c2.example".into());
    tcp.network.as_mut().unwrap().prefix = Some("2001:db8::/32".parse().unwrap());
    batch.push(tcp);
    let before = {
        let s = B::open(&place);
        s.append_events(&batch[..10]).unwrap();
        s.append_events(&batch[10..]).unwrap();
        all_records(&s, &RecordFilter::default())
    };
    let s = B::open(&place);
    assert_eq!(all_records(&s, &RecordFilter::default()), before);
    let mut logged = Vec::new();
    s.scan_events(&EventQuery::default(), &mut |id, e| {
        logged.push((id, e));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(logged.windows(2).all(|w| w[0].0 < w[1].0));
    // Mapped addresses are stored as the IPv4 address they carry.
    let expect: Vec<Event> = batch
        .iter()
        .cloned()
        .map(|mut e| {
            e.src_ip = e.src_ip.to_canonical();
            e
        })
        .collect();
    assert_eq!(
        logged.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        expect
    );

    // Resuming after an id, and a time window.
    let mut tail = Vec::new();
    s.scan_events(
        &EventQuery {
            after: Some(logged[9].0),
            ..EventQuery::default()
        },
        &mut |id, _| {
            tail.push(id);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(
        tail,
        logged[10..].iter().map(|(id, _)| *id).collect::<Vec<_>>()
    );
    let mut n = 0;
    s.scan_events(
        &EventQuery {
            from: Some(at(86_400)),
            until: Some(Timestamp(at(86_400).0 + DAY)),
            ..EventQuery::default()
        },
        &mut |_, e| {
            assert_eq!(e.timestamp, at(86_400 + 60));
            n += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(n, 13);
    let mut first = 0;
    s.scan_events(&EventQuery::default(), &mut |_, _| {
        first += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(first, 1);
    // Appends continue after a reopen with a later `modified`.
    let r = s.append_events(&batch[..1]).unwrap();
    assert!(before.iter().all(|b| b.modified < r.modified));
}

/// Pending record deltas in a SQLite store's file.
fn pending_deltas(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(takedown_store::DB_FILE)).unwrap();
    conn.query_row("SELECT COALESCE(SUM(n), 0) FROM record_deltas", [], |r| {
        r.get(0)
    })
    .unwrap()
}

/// The compaction threshold decides when deltas are merged into records,
/// never what the records hold: merging after every batch, only on demand,
/// and explicitly all give the same records.
pub(crate) fn compaction_threshold_only_moves_the_merge() {
    let mut events = Vec::new();
    for i in 0..300i64 {
        let mut e = ev(
            (i * 7919) % 5000,
            &format!("192.0.2.{}", i % 23),
            ["x", "y", "z"].get((i % 3) as usize).copied(),
            Some(64500 + (i % 4) as u32),
            Some(["SE", "DE"][(i % 2) as usize]),
        );
        e.http_agent = Some(format!("agent{}", i % 5));
        e.src_port = 1000 + (i % 40) as u16;
        events.push(e);
    }
    let (eager_dir, lazy_dir, bulk_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let eager = SqliteStore::open(eager_dir.path()).unwrap();
    let lazy = SqliteStore::open(lazy_dir.path()).unwrap();
    let bulk = SqliteStore::open(bulk_dir.path()).unwrap();
    eager.set_compact_threshold(1);
    lazy.set_compact_threshold(u64::MAX);
    bulk.set_compact_threshold(u64::MAX);
    for chunk in events.chunks(17) {
        eager.append_events(chunk).unwrap();
        lazy.append_events(chunk).unwrap();
        bulk.append_events(chunk).unwrap();
    }
    assert_eq!(pending_deltas(eager_dir.path()), 0);
    assert!(pending_deltas(lazy_dir.path()) > 0);
    bulk.compact().unwrap();
    assert_eq!(pending_deltas(bulk_dir.path()), 0);

    // The lazy store merges on its first query.
    let want = comparable(all_records(&eager, &RecordFilter::default()));
    assert_eq!(want.len(), 23 * 3);
    assert_eq!(
        comparable(all_records(&lazy, &RecordFilter::default())),
        want
    );
    assert_eq!(pending_deltas(lazy_dir.path()), 0);
    assert_eq!(
        comparable(all_records(&bulk, &RecordFilter::default())),
        want
    );
    let total: u64 = want.values().map(|r| r.count).sum();
    assert_eq!(total, 300);
}

/// Two backends fold the same events into the same records (samples, NAT
/// flags and networks included), the same rollups and the same event log.
pub(crate) fn backends_agree<A: Backend, B: Backend>() {
    let mut events = Vec::new();
    for i in 0..600i64 {
        let mut e = ev(
            (i * 7919) % 20_000 + (i % 3) * 86_400,
            &format!("192.0.2.{}", i % 17),
            ["x", "y"].get((i % 3) as usize).copied(),
            Some(64500 + (i % 4) as u32),
            Some(["SE", "DE"][(i % 2) as usize]),
        );
        e.http_agent = Some(format!("agent{}", i % 5));
        e.src_port = 1000 + (i % 40) as u16;
        if i % 5 == 0 {
            e.src_ip = format!("2001:db8::{}", i % 9).parse().unwrap();
        }
        if i % 13 == 0 {
            e.src_ip = "::ffff:192.0.2.3".parse().unwrap();
        }
        if i % 7 == 0 {
            e.kind = EventKind::Tcp;
            e.http_agent = None;
            e.http_url = None;
        }
        if i % 11 == 0 {
            e.kind = EventKind::Dns;
            e.dns_qname = Some("c2.example".into());
        }
        if i % 17 == 0 {
            e.network = None;
        }
        events.push(e);
    }
    // Equal latest timestamps with different samples, in different batches,
    // exercise the tie-break both within a batch and across batches.
    for (k, url) in ["/tie-a", "/tie-b", "/tie-c", "/tie-d"].iter().enumerate() {
        let mut tie = ev(500, "203.0.113.77", Some("x"), Some(64500), Some("SE"));
        tie.http_url = Some((*url).into());
        events.insert(k * 150, tie.clone());
        tie.http_agent = Some((*url).into());
        events.insert(k * 150 + 1, tie);
    }
    // A port burst split across batches, and one within a batch.
    for i in 0..20u16 {
        let mut e = ev(
            40_000 + i64::from(i % 5),
            "198.51.100.7",
            Some("x"),
            None,
            None,
        );
        e.src_port = 50_000 + i;
        events.push(e);
    }
    let (pa, pb) = (A::place(), B::place());
    let (a, b) = (A::open(&pa), B::open(&pb));
    for chunk in events.chunks(23) {
        a.append_events(chunk).unwrap();
        b.append_events(chunk).unwrap();
    }
    let ra = comparable(all_records(&a, &RecordFilter::default()));
    let rb = comparable(all_records(&b, &RecordFilter::default()));
    assert!(ra.len() > 50, "{}", ra.len());
    assert!(ra.values().any(|r| r.nat_suspected));
    assert!(ra.values().any(|r| !r.nat_suspected));
    assert_eq!(ra, rb);
    for w in [Window::Day, Window::Week] {
        let f = RecordFilter::default().within(set(&[64501], &["2001:db8::/32"], &["DE"]));
        assert_eq!(a.footprint(&f, w).unwrap(), b.footprint(&f, w).unwrap());
        let all = a.footprint(&RecordFilter::default(), w).unwrap();
        assert!(!all.is_empty());
        assert_eq!(all, b.footprint(&RecordFilter::default(), w).unwrap());
    }
    let day = t0().day();
    let counts = a.event_counts(day - 1, day + 3).unwrap();
    assert_eq!(
        counts.iter().map(|c| c.count).sum::<u64>(),
        events.len() as u64
    );
    assert_eq!(counts, b.event_counts(day - 1, day + 3).unwrap());
    let log = |s: &dyn EventStore| {
        let mut out = Vec::new();
        s.scan_events(&EventQuery::default(), &mut |id, e| {
            out.push((id, e));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    };
    let la = log(&a);
    assert_eq!(la.len(), events.len());
    assert_eq!(la, log(&b));
}

/// Two store handles on one place (two processes sharing a database) append
/// at once while a third pulls deltas with `since`: the pulls, replayed in
/// order, end with exactly the stored records, so no commit hid behind an
/// earlier `modified` mark.
pub(crate) fn concurrent_writers_and_delta_pulls<B: Backend>()
where
    B::S: Sync,
{
    let place = B::place();
    let (w1, w2, reader) = (B::open(&place), B::open(&place), B::open(&place));
    let batches = |host: u8| -> Vec<Vec<Event>> {
        (0..30i64)
            .map(|b| {
                (0..8i64)
                    .map(|i| {
                        let ip = format!("192.0.{host}.{}", (b + i) % 12);
                        ev(b * 100 + i, &ip, Some("f"), Some(64500), Some("DE"))
                    })
                    .collect()
            })
            .collect()
    };
    let mut seen: BTreeMap<String, HostRecord> = BTreeMap::new();
    let mut mark: Option<Timestamp> = None;
    let mut pull = |seen: &mut BTreeMap<String, HostRecord>| {
        let f = RecordFilter {
            since: mark,
            ..RecordFilter::default()
        };
        for r in all_records(&reader, &f) {
            mark = Some(mark.map_or(r.modified, |m| m.max(r.modified)));
            seen.insert(r.id.clone(), r);
        }
    };
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            for batch in batches(1) {
                w1.append_events(&batch).unwrap();
            }
        });
        let b = scope.spawn(|| {
            for batch in batches(2) {
                w2.append_events(&batch).unwrap();
            }
        });
        while !(a.is_finished() && b.is_finished()) {
            pull(&mut seen);
        }
        a.join().unwrap();
        b.join().unwrap();
    });
    pull(&mut seen);
    let stored = comparable(all_records(&reader, &RecordFilter::default()));
    assert_eq!(stored.len(), 24);
    assert_eq!(stored.values().map(|r| r.count).sum::<u64>(), 2 * 30 * 8);
    assert_eq!(comparable(seen.into_values().collect()), stored);
}
