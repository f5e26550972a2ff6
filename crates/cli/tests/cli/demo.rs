//! `takedown demo` end to end, without enrichment data (as on CI).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use takedown_event::EventKind;
use takedown_store::{EventStore, RecordFilter, SqliteStore};

#[test]
fn demo_fills_the_store_and_dns_makes_no_host_records() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_takedown"))
            .arg("--data")
            .arg(dir.path())
            .args(["demo", "--bots", "50", "--seed", "7"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("no enrichment data"), "{stdout}");
    assert!(stdout.contains("50 addresses"), "{stdout}");

    let store = SqliteStore::open(dir.path()).unwrap();
    let page = store
        .host_records(&RecordFilter::default(), None, 1000)
        .unwrap();
    assert_eq!(page.records.len(), 50);
    for r in &page.records {
        // Every record is an infected machine named by the PROXY header,
        // never the loopback resolvers or the load balancer itself.
        assert!(!r.ip.is_loopback(), "{r:?}");
        assert_eq!(r.family.as_ref().map(|f| f.as_str()), Some("rustock"));
        assert!(r.network.asn.is_none());
    }
    let today = takedown_event::Timestamp::now().day();
    let counts = store.event_counts(today - 1, today + 1).unwrap();
    let dns: u64 = counts
        .iter()
        .filter(|c| c.kind == EventKind::Dns)
        .map(|c| c.count)
        .sum();
    assert_eq!(dns, 100, "{counts:?}");
    assert!(
        counts.iter().filter(|c| c.kind == EventKind::Dns).all(|c| c
            .family
            .as_ref()
            .map(|f| f.as_str())
            == Some("dgabot"))
    );
    drop(store);

    // A second run refuses to mix synthetic data into a store with events.
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-existing"));
}
