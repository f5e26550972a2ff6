//! `takedown import` and `takedown export` end to end.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const REPORT: &str = "../ingest/tests/data/event4_sinkhole_http.csv";

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_takedown"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(data: &Path, args: &[&str]) -> (String, String) {
    let o = run(data, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{args:?} failed: {err}");
    (String::from_utf8(o.stdout).unwrap(), err)
}

#[test]
fn import_skips_bad_rows_and_export_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (_, err) = ok(dir.path(), &["import", "--format", "shadowserver", REPORT]);
    assert!(err.contains("imported 3 events"), "{err}");
    assert!(
        err.contains("event4_sinkhole_http.csv:4: invalid timestamp"),
        "{err}"
    );
    assert!(err.contains("4 bad rows skipped"), "{err}");

    let (jsonl, _) = ok(dir.path(), &["export", "--format", "jsonl"]);
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);

    let (csv, _) = ok(
        dir.path(),
        &["export", "--format", "csv", "--asn", "AS64500"],
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("timestamp,src_ip,src_asn,src_geo,severity"));
    assert!(
        lines[1].contains(",192.0.2.7,64500,DE,critical,80,andromeda,"),
        "{csv}"
    );

    let (csv, _) = ok(
        dir.path(),
        &["export", "--country", "NL", "--family", "andromeda"],
    );
    assert_eq!(csv.lines().count(), 1, "{csv}");

    let out = dir.path().join("feed.intelmq.jsonl");
    let (stdout, _) = ok(
        dir.path(),
        &[
            "export",
            "--format",
            "intelmq",
            "--family",
            "necurs",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(stdout.is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    let event: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(event["source.ip"], "2001:db8::7");
    assert_eq!(event["malware.name"], "necurs");
    assert_eq!(event["destination.fqdn"], "necurs.example");
    assert_eq!(event["classification.type"], "infected-system");
}

#[test]
fn reject_imports_nothing_when_a_row_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "import",
            "--format",
            "shadowserver",
            "--on-error",
            "reject",
            REPORT,
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing was imported"), "{err}");
    let (jsonl, _) = ok(dir.path(), &["export", "--format", "jsonl"]);
    assert!(jsonl.is_empty(), "{jsonl}");

    // The same policy imports a clean file whole.
    let clean = dir.path().join("clean.csv");
    std::fs::write(
        &clean,
        "timestamp,src_ip,src_port,dst_ip,dst_port,infection\r\n\
         2026-11-28 01:00:00,192.0.2.1,1000,198.51.100.1,80,rustock\r\n\
         2026-11-28 01:00:01,192.0.2.2,1001,198.51.100.1,80,rustock\r\n",
    )
    .unwrap();
    let (_, err) = ok(
        dir.path(),
        &[
            "import",
            "--format",
            "shadowserver",
            "--on-error",
            "reject",
            clean.to_str().unwrap(),
        ],
    );
    assert!(err.contains("imported 2 events"), "{err}");
}
