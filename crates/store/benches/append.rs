//! Event append throughput: group-committed batches folded into host records.
//!
//! Each iteration appends one batch of enriched HTTP/TCP/DNS events to a store
//! that already holds earlier batches, so the record upserts hit a realistic
//! mix of new and existing rows. The `per_event_commit` case writes the same
//! events one transaction each, the pattern of an output bot that commits
//! every event, for comparison.

use std::hint::black_box;
mod common;

use common::Gen;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use takedown_store::{EventStore, SqliteStore};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(20);
    for batch in [1024usize, 8192] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).expect("open");
        let mut source = Gen::new(0x9e37_79b9_7f4a_7c15, 200_000);
        // Warm the store so upserts meet existing records.
        for _ in 0..20 {
            store.append_events(&source.batch(8192)).expect("append");
        }
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("group_commit/{batch}"), |b| {
            b.iter_batched(
                || source.batch(batch),
                |events| black_box(store.append_events(&events).expect("append")),
                BatchSize::LargeInput,
            )
        });
    }
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).expect("open");
        let mut source = Gen::new(0x2545_f491_4f6c_dd1d, 200_000);
        let n = 256usize;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("per_event_commit/{n}"), |b| {
            b.iter_batched(
                || source.batch(n),
                |events| {
                    for e in &events {
                        black_box(
                            store
                                .append_events(std::slice::from_ref(e))
                                .expect("append"),
                        );
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
