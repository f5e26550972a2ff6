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
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use takedown_store::{EventQuery, EventStore, SqliteStore};

use crate::child::{Watched, takedown, terminate};

/// The flush window the child runs with.
const WINDOW: Duration = Duration::from_millis(250);
/// Time for the commit itself (one fsync) and for scheduling on a busy machine.
const SLACK: Duration = Duration::from_millis(750);
/// How long the load runs before the kill.
const LOAD: Duration = Duration::from_secs(3);

/// Starts `takedown sinkhole` and returns it with its HTTP address.
fn start(data: &std::path::Path) -> (Watched, SocketAddr) {
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
    let mut command = takedown(data);
    command.arg("sinkhole").arg("--config").arg(&config);
    let mut sinkhole = Watched::spawn(command, data.join("sinkhole.log"));
    let addr = sinkhole.line("listening http ").parse().unwrap();
    (sinkhole, addr)
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
    let (mut sinkhole, addr) = start(dir.path());

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
    sinkhole.child.0.kill().unwrap(); // SIGKILL on Unix.
    sinkhole.child.0.wait().unwrap();
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
    let (mut sinkhole, addr) = start(dir.path());
    let n = 200u64;
    for i in 0..n {
        check_in(addr, i).unwrap();
    }
    terminate(&mut sinkhole.child.0);

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
