//! `takedown sinkhole` killed with SIGKILL under load loses nothing older
//! than the flush window.
//!
//! The sinkhole answers a bot before its event is committed (the bot does not
//! wait for the disk), so "acknowledged" here means committed: the promise is
//! that an event is durable once the flush window plus one commit has passed
//! since its check-in. The test runs the real binary as a child process,
//! drives check-ins over loopback, kills it mid-load, reopens the store and
//! checks that every check-in answered more than `flush window + slack`
//! before the kill survived.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use takedown_store::{EventQuery, EventStore, SqliteStore};

/// The flush window the child runs with.
const WINDOW: Duration = Duration::from_millis(250);
/// Time for the commit itself (one fsync) and for scheduling on a busy machine.
const SLACK: Duration = Duration::from_millis(750);
/// How long the load runs before the kill.
const LOAD: Duration = Duration::from_secs(3);

/// Starts `takedown sinkhole` and returns it with its HTTP address.
fn start(data: &std::path::Path) -> (Child, SocketAddr) {
    let config = data.join("sinkhole.toml");
    std::fs::write(
        &config,
        format!(
            "sensor = \"durability-1\"\n\
             [[http]]\nbind = \"127.0.0.1:0\"\n\
             [[families]]\nfamily = \"examplebot\"\ndomains = [\"*.c2.example\"]\n\
             [ingest]\nflush_window_ms = {}\n",
            WINDOW.as_millis()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_takedown"))
        .arg("--data")
        .arg(data)
        .arg("sinkhole")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run takedown sinkhole");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("takedown sinkhole exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening http ") {
            break a.parse().unwrap();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// One check-in; `Ok` once the sinkhole has answered it.
pub(crate) fn check_in(addr: SocketAddr, i: u64) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET /gate.php?n={i} HTTP/1.1\r\nHost: a.c2.example\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    if reply.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("no 200 reply"))
    }
}

#[test]
fn sigkill_under_load_loses_nothing_older_than_the_flush_window() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path());

    // Two bots check in as fast as they are answered, each noting when every
    // check-in was answered.
    let stop = Arc::new(AtomicBool::new(false));
    let bots: Vec<_> = (0..2u64)
        .map(|bot| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                let mut i = bot;
                let deadline = Instant::now() + LOAD + Duration::from_secs(5);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if check_in(addr, i).is_err() {
                        break;
                    }
                    answered.push((i, Instant::now()));
                    i += 2;
                }
                answered
            })
        })
        .collect();

    std::thread::sleep(LOAD);
    let killed_at = Instant::now();
    child.kill().unwrap(); // SIGKILL on Unix.
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let answered: Vec<(u64, Instant)> = bots.into_iter().flat_map(|b| b.join().unwrap()).collect();

    let stored: HashSet<u64> = crate::stream::stored(dir.path()).into_iter().collect();
    let store = SqliteStore::open(dir.path()).unwrap();

    let cutoff = killed_at - WINDOW - SLACK;
    let old: Vec<u64> = answered
        .iter()
        .filter(|(_, t)| *t < cutoff)
        .map(|(i, _)| *i)
        .collect();
    eprintln!(
        "durability: {} answered, {} stored, {} older than the cutoff",
        answered.len(),
        stored.len(),
        old.len()
    );
    // Without a real load before the cutoff the test would prove nothing.
    assert!(
        old.len() >= 100,
        "only {} check-ins answered before the cutoff",
        old.len()
    );
    let lost: Vec<u64> = old
        .iter()
        .copied()
        .filter(|i| !stored.contains(i))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} check-ins older than the flush window were lost, such as {:?}",
        lost.len(),
        old.len(),
        &lost[..lost.len().min(10)]
    );
    // Nothing is invented either: every stored check-in was sent.
    let sent: HashSet<u64> = answered.iter().map(|(i, _)| *i).collect();
    assert!(
        stored.len() <= sent.len() + 2,
        "{} stored, {} sent",
        stored.len(),
        sent.len()
    );
    // The records folded from those events survived too.
    let page = store.host_records(&Default::default(), None, 10).unwrap();
    assert!(page.records.iter().any(|r| r.count >= old.len() as u64));
}

#[test]
fn sigterm_flushes_every_answered_check_in() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path());
    let n = 200u64;
    for i in 0..n {
        check_in(addr, i).unwrap();
    }
    crate::stream::terminate(&mut child);

    let store = SqliteStore::open(dir.path()).unwrap();
    let mut count = 0u64;
    store
        .scan_events(&EventQuery::default(), &mut |_, _| {
            count += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(count, n);
}
