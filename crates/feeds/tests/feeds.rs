//! Golden-file tests of every feed format.
//!
//! Set `TAKEDOWN_BLESS=1` to rewrite the fixtures after an intended change,
//! then review the diff.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use takedown_event::{Asn, HostRecord, Network, Timestamp};
use takedown_feeds::{CSV_COLUMNS, FeedOptions, FeedWriter, Format, Severity};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn records() -> Vec<HostRecord> {
    let day = ts("2026-11-29 00:00:00").day();
    vec![
        HostRecord {
            id: "5f0c1a2b3c4d5e6f".into(),
            ip: "192.0.2.7".parse().unwrap(),
            family: Some("rustock".parse().unwrap()),
            day,
            first_seen: ts("2026-11-29 08:01:02"),
            last_seen: ts("2026-11-29 14:00:01.25"),
            count: 42,
            network: Network {
                prefix: Some("192.0.2.0/24".parse().unwrap()),
                asn: Some(Asn(64500)),
                as_name: Some("EXAMPLE-NET, \"Example\" Networks".into()),
                country: Some("DE".parse().unwrap()),
            },
            sample_url: Some("/gate.php?id=7&v=2".into()),
            sample_host: Some("C2.Example.com:8080".into()),
            sample_agent: Some("Mozilla/4.0 (compatible; MSIE 6.0)".into()),
            dst_port: 80,
            nat_suspected: true,
            modified: ts("2026-11-29 14:00:02"),
        },
        // A raw TCP check-in without HTTP samples, family unknown and no enrichment.
        HostRecord {
            id: "0000000000000001".into(),
            ip: "2001:db8::42".parse().unwrap(),
            family: None,
            day,
            first_seen: ts("2026-11-29 23:59:59"),
            last_seen: ts("2026-11-29 23:59:59"),
            count: 1,
            network: Network::default(),
            sample_url: None,
            sample_host: None,
            sample_agent: None,
            dst_port: 443,
            nat_suspected: false,
            modified: ts("2026-11-30 00:00:00"),
        },
        // A Host header that is an address: IntelMQ rejects it as an FQDN.
        HostRecord {
            id: "0000000000000002".into(),
            ip: "198.51.100.9".parse().unwrap(),
            family: Some("kelihos".parse().unwrap()),
            day,
            first_seen: ts("2026-11-29 10:00:00"),
            last_seen: ts("2026-11-29 11:00:00"),
            count: 2,
            network: Network {
                prefix: None,
                asn: Some(Asn(64501)),
                as_name: None,
                country: Some("NL".parse().unwrap()),
            },
            sample_url: Some("/index.html".into()),
            sample_host: Some("203.0.113.5".into()),
            sample_agent: None,
            dst_port: 8080,
            nat_suspected: false,
            modified: ts("2026-11-29 11:00:00"),
        },
    ]
}

fn options() -> FeedOptions {
    FeedOptions::new(ts("2026-11-30 06:00:00"))
}

fn render(format: Format, options: FeedOptions) -> String {
    let mut w = FeedWriter::new(format, Vec::new(), options).unwrap();
    for r in records() {
        w.write(&r).unwrap();
    }
    assert_eq!(w.rows(), 3);
    String::from_utf8(w.finish().unwrap()).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from("tests/data").join(name);
    if std::env::var_os("TAKEDOWN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with TAKEDOWN_BLESS=1", path.display()));
    assert_eq!(actual, expected, "{} differs", path.display());
}

#[test]
fn csv_matches_golden() {
    golden("records.csv", &render(Format::Csv, options()));
}

#[test]
fn jsonl_matches_golden_and_round_trips() {
    let out = render(Format::Jsonl, options());
    golden("records.jsonl", &out);
    let back: Vec<HostRecord> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, records());
}

#[test]
fn intelmq_matches_golden() {
    golden("records.intelmq.jsonl", &render(Format::Intelmq, options()));
}

#[test]
fn csv_header_follows_shadowserver_order() {
    // The Shadowserver columns we emit must appear in the report's own order.
    let reports: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("../../../shared/reference/shadowserver/reports.json").unwrap(),
    )
    .unwrap();
    let report: Vec<&str> = reports["event4_sinkhole_http"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: Vec<usize> = CSV_COLUMNS
        .iter()
        .filter(|c| !c.starts_with("td_"))
        .map(|c| {
            report
                .iter()
                .position(|r| r == c)
                .unwrap_or_else(|| panic!("{c} is not a Shadowserver column"))
        })
        .collect();
    assert!(ours.windows(2).all(|w| w[0] < w[1]), "{ours:?}");
    let out = render(Format::Csv, options());
    let mut rd = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(rd.headers().unwrap().len(), CSV_COLUMNS.len());
    for row in rd.records() {
        let row = row.unwrap();
        assert_eq!(&row[4], "critical");
    }
}

#[test]
fn intelmq_keys_are_harmonized() {
    let fields = std::fs::read_to_string("tests/data/intelmq-fields.txt").unwrap();
    let known: Vec<&str> = fields.lines().filter(|l| !l.starts_with('#')).collect();
    let mut opts = options();
    opts.severity = Severity::High;
    let out = render(Format::Intelmq, opts);
    for line in out.lines() {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        for key in obj.keys() {
            let ok = known.contains(&key.as_str())
                || key
                    .strip_prefix("extra.")
                    .is_some_and(|rest| !rest.is_empty());
            assert!(ok, "{key} is not an IntelMQ field");
        }
        assert_eq!(obj["severity"], "high");
        assert_eq!(obj["classification.type"], "infected-system");
        assert!(obj["time.source"].as_str().unwrap().ends_with("+00:00"));
    }
}
