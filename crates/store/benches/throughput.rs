//! Sustained append throughput, in wall-clock and CPU time.
//!
//! Appends `BATCHES` batches of `BATCH` events to a fresh store, compacts the
//! last record deltas, and prints
//! events per second of wall time and of process CPU time (user + system). CPU
//! time stays meaningful on a loaded machine, where wall time does not.
//! Environment: `BATCH` (default 8192), `BATCHES` (default 60), `HOSTS` (default 200000),
//! and `STORE_URL`: a PostgreSQL connection string to measure [`PgStore`]
//! instead of SQLite (its CPU time then excludes the server's).

mod common;

use std::time::Instant;

use common::Gen;
use takedown_store::{EventStore, PgStore, SqliteStore};

/// User plus system CPU seconds of this process, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line, 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let batch = env("BATCH", 8192);
    let batches = env("BATCHES", 60);
    let hosts = env("HOSTS", 200_000) as u32;
    let mut source = Gen::new(0x9e37_79b9_7f4a_7c15, hosts);
    let data: Vec<Vec<_>> = (0..batches).map(|_| source.batch(batch)).collect();
    match std::env::var("STORE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgStore::connect(&url).expect("connect");
            // PostgreSQL merges records as each batch commits.
            measure("postgres", &store, &data, batch, hosts, || Ok(()));
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteStore::open(dir.path()).expect("open");
            // Pay for merging the last deltas too, so the figure covers
            // finished records.
            measure("sqlite", &store, &data, batch, hosts, || store.compact());
        }
    }
}

fn measure<S: EventStore>(
    name: &str,
    store: &S,
    data: &[Vec<takedown_event::Event>],
    batch: usize,
    hosts: u32,
    finish: impl FnOnce() -> Result<(), takedown_store::Error>,
) {
    let (mut records, mut events) = (0u64, 0u64);
    let (t, c) = (Instant::now(), cpu_seconds());
    for b in data {
        let r = store.append_events(b).expect("append");
        records += r.records;
        events += r.events;
    }
    finish().expect("finish");
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    println!(
        "store={name} events={events} batch={batch} hosts={hosts} records_touched={records} wall_s={wall:.2} cpu_s={cpu:.2} \
         events_per_wall_s={:.0} events_per_cpu_s={:.0}",
        events as f64 / wall,
        events as f64 / cpu.max(1e-9)
    );
}
