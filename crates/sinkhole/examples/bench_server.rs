//! Runs the sinkhole listeners from a config file and counts the events they
//! emit, standing in for the ingest pipeline in benchmarks.
//!
//! ```text
//! cargo run --release -p takedown-sinkhole --example bench_server -- \
//!     --config examples/sinkhole.toml [--seconds 60] [--threads 1]
//! ```
//!
//! Prints `ready` once every listener is bound, then on exit (after
//! `--seconds`, or on SIGINT/SIGTERM) one line of counters.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use takedown_sinkhole::{Config, Sinkhole};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = None;
    let mut seconds = 3600u64;
    // The listeners run on their own threads (`io_threads` in the config);
    // this runtime only drains the channel.
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--seconds" => seconds = args.next().ok_or("--seconds needs a value")?.parse()?,
            "--threads" => threads = args.next().ok_or("--threads needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let config = Config::load(&config.ok_or("usage: bench_server --config FILE")?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (sinkhole, mut events) = Sinkhole::start(config)?;
        let consumed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&consumed);
        // Drain in batches, as a group-committing pipeline would.
        let drain = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(1024);
            while events.recv_many(&mut batch, 1024).await > 0 {
                counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
        });
        for l in sinkhole.listeners() {
            println!("listening {:?} {}", l.kind, l.addr);
        }
        println!("ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let stats = sinkhole.stats().snapshot();
        sinkhole.shutdown().await;
        let _ = drain.await;
        println!(
            "events_consumed={} http_requests={} dns_queries={} events_dropped={} connections_rejected={}",
            consumed.load(Ordering::Relaxed),
            stats.http_requests,
            stats.dns_queries,
            stats.events_dropped,
            stats.connections_rejected
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
