//! Importers against golden files.

use std::path::Path;

use takedown_event::{Event, EventKind, Transport};
use takedown_ingest::{ImportFormat, Report, RowError, ShadowserverReader, parse_all};

fn golden(name: &str, actual: &str) {
    let path = Path::new("tests/data").join(name);
    if std::env::var_os("TAKEDOWN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with TAKEDOWN_BLESS=1", path.display()));
    assert_eq!(actual, expected, "{} differs", path.display());
}

fn render(events: &[Event], errors: &[RowError]) -> (String, String) {
    let mut ev = String::new();
    for e in events {
        ev.push_str(&serde_json::to_string(e).unwrap());
        ev.push('\n');
    }
    let mut er = String::new();
    for e in errors {
        er.push_str(&e.to_string());
        er.push('\n');
    }
    (ev, er)
}

fn import(file: &str) -> (Vec<Event>, Vec<RowError>) {
    let bytes = std::fs::read(Path::new("tests/data").join(file)).unwrap();
    parse_all(
        ImportFormat::Shadowserver,
        &bytes,
        "shadowserver".parse().unwrap(),
    )
    .unwrap()
}

#[test]
fn sinkhole_http_report() {
    let (events, errors) = import("event4_sinkhole_http.csv");
    let (ev, er) = render(&events, &errors);
    golden("event4_sinkhole_http.events.jsonl", &ev);
    golden("event4_sinkhole_http.errors.txt", &er);
    assert_eq!(events.len(), 3);
    assert_eq!(errors.len(), 4);
    assert_eq!(
        errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![4, 5, 6, 8]
    );
    let e = &events[0];
    assert_eq!(e.kind, EventKind::Http);
    assert_eq!(e.family.as_ref().unwrap().as_str(), "andromeda");
    assert_eq!(e.network.as_ref().unwrap().asn.unwrap().0, 64500);
    assert_eq!(e.http_host.as_deref(), Some("c2.example.com"));
    assert_eq!(e.tag.as_deref(), Some("gamarue-c2"));
    assert_eq!(events[1].family.as_ref().unwrap().as_str(), "sality-p2p");
    assert_eq!(events[1].http_url.as_deref(), Some("/gate.php?id=1,2"));
    // AS 0 means unknown, and no country: no network at all.
    assert_eq!(events[2].network, None);
    assert_eq!(events[2].tls_sni.as_deref(), Some("necurs.example"));
}

#[test]
fn sinkhole_report() {
    let bytes = std::fs::read("tests/data/event4_sinkhole.csv").unwrap();
    let r = ShadowserverReader::new(&bytes[..], "ss".parse().unwrap()).unwrap();
    assert_eq!(r.report(), Report::Sinkhole);
    let (events, errors) = import("event4_sinkhole.csv");
    let (ev, er) = render(&events, &errors);
    golden("event4_sinkhole.events.jsonl", &ev);
    golden("event4_sinkhole.errors.txt", &er);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.kind == EventKind::Tcp));
    assert_eq!(events[1].protocol, Transport::Udp);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 4);
    assert!(errors[0].reason.contains("sctp"), "{}", errors[0]);
}

#[test]
fn jsonl_round_trips_imported_events() {
    let (events, _) = import("event4_sinkhole_http.csv");
    let (mut text, _) = render(&events, &[]);
    text.push_str("\n{\"not\": \"an event\"}\n");
    let (back, errors) =
        parse_all(ImportFormat::Jsonl, text.as_bytes(), "x".parse().unwrap()).unwrap();
    assert_eq!(back, events);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, events.len() as u64 + 2);
}

#[test]
fn a_header_that_is_not_a_report_is_refused() {
    let err = parse_all(
        ImportFormat::Shadowserver,
        b"{\"timestamp\": 1}\n",
        "x".parse().unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("src_ip"), "{err}");
}
