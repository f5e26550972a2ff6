//! The same commands with the store in PostgreSQL (`--store`): what they
//! print must not depend on which store is behind them. Runs against the
//! server named by `TAKEDOWN_TEST_POSTGRES`, in a schema of its own; without
//! one it says it skipped, or fails when `TAKEDOWN_REQUIRE_POSTGRES=1`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const REPORT: &str = "../ingest/tests/data/event4_sinkhole_http.csv";

/// A schema on the test server, dropped with everything in it at the end.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn create(server: &str) -> Schema {
        let name = format!("takedown_cli_{}", std::process::id());
        let mut admin = postgres::Client::connect(server, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .unwrap();
        Schema {
            server: server.to_owned(),
            name,
        }
    }

    /// The server's connection string with this schema as the search path.
    fn url(&self) -> String {
        let opt = format!("-c search_path={}", self.name);
        if self.server.starts_with("postgres://") || self.server.starts_with("postgresql://") {
            let sep = if self.server.contains('?') { '&' } else { '?' };
            let opt = opt.replace(' ', "%20").replace('=', "%3D");
            format!("{}{sep}options={opt}", self.server)
        } else {
            format!("{} options='{opt}'", self.server)
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn server() -> Option<String> {
    match std::env::var("TAKEDOWN_TEST_POSTGRES") {
        Ok(s) if !s.is_empty() => Some(s),
        _ => {
            let how = "set TAKEDOWN_TEST_POSTGRES (scripts/postgres-test-server.sh starts a server and prints it)";
            assert!(
                std::env::var("TAKEDOWN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TAKEDOWN_REQUIRE_POSTGRES=1 but no server is given: {how}"
            );
            eprintln!("skipped: no PostgreSQL server; {how}");
            None
        }
    }
}

fn run(data: &Path, store: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_takedown"));
    cmd.arg("--data").arg(data).env_remove("TAKEDOWN_STORE");
    if let Some(url) = store {
        cmd.arg("--store").arg(url);
    }
    cmd.args(args).output().unwrap()
}

fn ok(data: &Path, store: Option<&str>, args: &[&str]) -> String {
    let o = run(data, store, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?} failed: {err}");
    String::from_utf8(o.stdout).unwrap()
}

/// Exported records without the `modified` stamp, which is the time of
/// each store's own write.
fn records(jsonl: &str) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("modified");
            v
        })
        .collect();
    out.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_owned());
    out
}

#[test]
fn import_export_banks_and_match_agree_across_stores() {
    let Some(server) = server() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    let pg = tempfile::tempdir().unwrap();
    let lite = tempfile::tempdir().unwrap();
    let hashes = pg.path().join("bank.csv");
    let near = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
    let far = "0000000000000000000000000000000000000000000000000000000000000000";
    std::fs::write(&hashes, format!("hash,labels\n{near},known\n{far},other\n")).unwrap();
    let hashes = hashes.to_str().unwrap();
    let query = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b23";

    let mut outputs = Vec::new();
    for (dir, store) in [(lite.path(), None), (pg.path(), Some(url.as_str()))] {
        let o = run(dir, store, &["import", "--format", "shadowserver", REPORT]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && err.contains("imported 3 events"),
            "{err}"
        );
        let exported = records(&ok(dir, store, &["export", "--format", "jsonl"]));
        let csv = ok(
            dir,
            store,
            &["export", "--format", "csv", "--asn", "AS64500"],
        );
        ok(dir, store, &["bank", "create", "known-bad"]);
        ok(dir, store, &["bank", "import", "known-bad", hashes]);
        let banks = ok(dir, store, &["bank", "list"]);
        let hits = ok(dir, store, &["match", "--bank", "known-bad", query]);
        outputs.push((exported, csv, banks, hits));
    }
    let (sqlite, postgres) = (&outputs[0], &outputs[1]);
    assert_eq!(sqlite.0.len(), 3);
    assert_eq!(sqlite.0, postgres.0, "exported records differ");
    assert_eq!(sqlite.1, postgres.1, "CSV feeds differ");
    assert_eq!(sqlite.2, postgres.2, "bank lists differ");
    assert!(postgres.3.contains(",known-bad,"), "{}", postgres.3);
    assert_eq!(sqlite.3, postgres.3, "match output differs");

    // The PostgreSQL run wrote nothing to its data directory's store.
    assert!(!pg.path().join("takedown.db").exists());
}
