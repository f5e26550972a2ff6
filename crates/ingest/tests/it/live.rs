//! The pipeline between a real sinkhole and a real store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use takedown_enrich::{CsvKind, EnricherBuilder};
use takedown_ingest::{Lookup, Pipeline, PipelineConfig, StoreSink};
use takedown_sinkhole::{Config, ListenerKind, Sinkhole};
use takedown_store::{EventStore, RecordFilter, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Slack on top of the flush window for scheduling and the commit's own
/// fsync on a loaded machine. The requirement is one second; the default
/// window is a quarter of that, so passing here means the window, not the
/// slack, is what bounds freshness in practice.
const SLACK: Duration = Duration::from_secs(2);

fn enricher() -> Arc<dyn Lookup> {
    let mut b = EnricherBuilder::new();
    b.add_csv(
        &b"127.0.0.0,127.255.255.255,64512,Loopback Example\n"[..],
        "asn.csv",
        Some(CsvKind::Asn),
    )
    .unwrap();
    Arc::new(b.build())
}

async fn check_in(addr: std::net::SocketAddr, path: &str) {
    let mut bot = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: gate.c2.example\r\nUser-Agent: bot/1\r\nConnection: close\r\n\r\n"
    );
    bot.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    bot.read_to_end(&mut reply).await.unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_becomes_a_queryable_record_within_the_flush_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let config = Config::from_toml(
        r#"
        sensor = "fresh-1"
        [[http]]
        bind = "127.0.0.1:0"
        [[families]]
        family = "examplebot"
        domains = ["*.c2.example"]
        "#,
    )
    .unwrap();
    let ingest = PipelineConfig::default();
    let window = ingest.flush_window();
    assert!(window <= Duration::from_secs(1));
    let mut pipeline = Pipeline::spawn(
        &ingest,
        Some(enricher()),
        Box::new(StoreSink(store.clone())),
    )
    .unwrap();
    let (sinkhole, events) = Sinkhole::start(config).unwrap();
    pipeline.attach(events);
    let addr = sinkhole.addr(ListenerKind::Http).unwrap();

    for round in 0..3 {
        let url = format!("/gate.php?round={round}");
        let sent = Instant::now();
        check_in(addr, &url).await;
        let record = loop {
            let page = store
                .host_records(&RecordFilter::default(), None, 10)
                .unwrap();
            if let Some(r) = page
                .records
                .into_iter()
                .find(|r| r.sample_url.as_deref() == Some(&*url))
            {
                break r;
            }
            assert!(
                sent.elapsed() < window + SLACK,
                "check-in {round} not queryable after {:?}",
                sent.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(record.family.as_ref().unwrap().as_str(), "examplebot");
        assert_eq!(record.network.asn.unwrap().0, 64512);
    }

    sinkhole.shutdown().await;
    let stats = pipeline.shutdown().await.unwrap();
    assert_eq!(stats.committed, 3);
    assert_eq!(stats.enriched, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_everything_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let config =
        Config::from_toml("sensor = \"drain-1\"\n[[http]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    // A long window: without the final flush, these events would still be waiting.
    let ingest = PipelineConfig {
        flush_window_ms: 1000,
        linger_ms: 1000,
        ..PipelineConfig::default()
    };
    let mut pipeline = Pipeline::spawn(&ingest, None, Box::new(StoreSink(store.clone()))).unwrap();
    let (sinkhole, events) = Sinkhole::start(config).unwrap();
    pipeline.attach(events);
    let addr = sinkhole.addr(ListenerKind::Http).unwrap();
    for i in 0..40 {
        check_in(addr, &format!("/x{i}")).await;
    }
    sinkhole.shutdown().await;
    let stats = pipeline.shutdown().await.unwrap();
    assert_eq!(stats.committed, 40);
    let mut n = 0;
    store
        .scan_events(&Default::default(), &mut |_, _| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(n, 40);
}
