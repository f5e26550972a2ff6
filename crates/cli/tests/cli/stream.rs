//! `takedown sinkhole --publish` into NATS JetStream, and `takedown ingest
//! --from` out of it into another data directory, end to end over loopback.
//!
//! Needs a `nats-server` binary; without one the test prints a notice and
//! passes, unless `TAKEDOWN_REQUIRE_NATS=1` is set.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use takedown_store::{EventQuery, EventStore, SqliteStore};

use crate::child::{Killed, Watched, takedown, terminate};

fn nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("TAKEDOWN_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "nats-server is not on PATH but TAKEDOWN_REQUIRE_NATS=1: install it \
             (Debian: apt-get install nats-server) or unset the variable"
        );
        eprintln!(
            "skipping the stream test: nats-server is not on PATH (Debian: apt-get install nats-server)"
        );
    }
    found
}

/// The `n` of every stored `/gate.php?n=N` check-in, in order.
pub(crate) fn stored(data: &Path) -> Vec<u64> {
    let store = SqliteStore::open(data).unwrap();
    let mut ns = Vec::new();
    store
        .scan_events(&EventQuery::default(), &mut |_, e| {
            if let Some(n) = e
                .http_url
                .as_deref()
                .and_then(|u| u.strip_prefix("/gate.php?n="))
                .and_then(|n| n.parse::<u64>().ok())
            {
                ns.push(n);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    ns.sort_unstable();
    ns
}

#[test]
fn sinkhole_publishes_and_ingest_stores() {
    let Some(bin) = nats_server() else { return };
    let nats_dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _nats = Killed(
        Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(nats_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("nats://127.0.0.1:{port}");

    // The ingest host starts first and binds its durable consumer.
    let logs = tempfile::tempdir().unwrap();
    let ingest_dir = tempfile::tempdir().unwrap();
    let mut command = takedown(ingest_dir.path());
    command.args(["ingest", "--from", &url, "--durable", "cli-test"]);
    let mut ingest = Watched::spawn(command, logs.path().join("ingest.log"));
    ingest.line("consuming ");

    // The sinkhole publishes; its own data directory gets no store.
    let sinkhole_dir = tempfile::tempdir().unwrap();
    let config = sinkhole_dir.path().join("sinkhole.toml");
    std::fs::write(
        &config,
        "sensor = \"edge-1\"\n\
         [[http]]\nbind = \"127.0.0.1:0\"\n\
         [[families]]\nfamily = \"examplebot\"\ndomains = [\"*.c2.example\"]\n\
         [stream]\nmax_age_secs = 3600\n",
    )
    .unwrap();
    let mut command = takedown(sinkhole_dir.path());
    command
        .arg("sinkhole")
        .arg("--config")
        .arg(&config)
        .args(["--publish", &url]);
    let mut sinkhole = Watched::spawn(command, logs.path().join("sinkhole.log"));
    let addr: SocketAddr = sinkhole.line("listening http ").parse().unwrap();
    let n = 300u64;
    for i in 0..n {
        crate::durability::check_in(addr, i).unwrap();
    }
    terminate(&mut sinkhole.child.0);
    assert!(
        !sinkhole_dir.path().join(takedown_store::DB_FILE).exists(),
        "a publishing sinkhole wrote a local store"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(ingest_dir.path()).len() < n as usize {
        assert!(
            Instant::now() < deadline,
            "ingest did not store every event in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&mut ingest.child.0);
    let summary = ingest.line("ingested ");
    assert!(
        summary.starts_with(&format!("{n} events from ")),
        "{summary}"
    );
    assert_eq!(stored(ingest_dir.path()), (0..n).collect::<Vec<_>>());
}
