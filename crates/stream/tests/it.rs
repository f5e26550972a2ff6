//! End-to-end tests against a real nats-server, one per test, started as a
//! child process with JetStream on a temporary directory and a free port.
//!
//! Without a `nats-server` binary these tests print a notice and pass, unless
//! `TAKEDOWN_REQUIRE_NATS=1` is set (as CI sets it), in which case they fail.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use takedown_event::{Event, EventKind, Family};
use takedown_ingest::{EventSink, Pipeline, PipelineConfig, SinkError, StoreSink};
use takedown_store::{EventQuery, EventStore, RecordFilter, SqliteStore};
use takedown_stream::{Consumer, ConsumerConfig, ConsumerStats, Publisher, StreamConfig};

/// A nats-server child process, killed when dropped.
struct NatsServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The server's JetStream file storage limit, when the test sets one.
    max_file_store: Option<u64>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server, or returns `None` (after printing why) when the binary
    /// is missing and the environment does not require it.
    fn start(test: &str) -> Option<NatsServer> {
        NatsServer::start_with(test, None)
    }

    /// Like [`NatsServer::start`], with at most `max_file_store` bytes of
    /// JetStream storage when given.
    fn start_with(test: &str, max_file_store: Option<u64>) -> Option<NatsServer> {
        let Some(bin) = find_nats_server() else {
            if std::env::var("TAKEDOWN_REQUIRE_NATS").is_ok_and(|v| v == "1") {
                panic!(
                    "nats-server is not on PATH but TAKEDOWN_REQUIRE_NATS=1: install it \
                     (Debian: apt-get install nats-server) or unset the variable"
                );
            }
            eprintln!(
                "skipping {test}: nats-server is not on PATH (Debian: apt-get install nats-server)"
            );
            return None;
        };
        let port = free_port();
        let mut server = NatsServer {
            bin,
            dir: tempfile::tempdir().unwrap(),
            port,
            max_file_store,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.bin);
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string());
        if let Some(limit) = self.max_file_store {
            // The storage limit has no command-line flag.
            let conf = self.dir.path().join("server.conf");
            let store = self.dir.path().join("js");
            std::fs::write(
                &conf,
                format!(
                    "jetstream {{ store_dir: {:?}, max_file_store: {limit} }}\n",
                    store.display().to_string()
                ),
            )
            .unwrap();
            command.arg("-c").arg(conf);
        } else {
            command.arg("-sd").arg(self.dir.path());
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server without warning, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> StreamConfig {
        StreamConfig {
            max_message_bytes: 8 << 10,
            publish_timeout_ms: 2_000,
            ..StreamConfig::with_servers(&self.url())
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Distinct events from three sensors, two families and several kinds.
fn events(n: u32, offset: u32) -> Vec<Event> {
    (offset..offset + n)
        .map(|i| {
            let kind = match i % 5 {
                0 => EventKind::Dns,
                1 => EventKind::Tcp,
                _ => EventKind::Http,
            };
            let src = format!("192.0.2.{}:{}", i % 200, 1024 + i % 50_000);
            let sensor = ["sh1", "sh2.eu", "sh3"][(i % 3) as usize];
            let mut e = Event::new(
                takedown_event::Timestamp(1_795_000_000_000_000 + i64::from(i) * 1_000_003),
                kind,
                src.parse().unwrap(),
                "198.51.100.1:80".parse().unwrap(),
                sensor.parse().unwrap(),
            );
            if kind == EventKind::Http {
                e.http_method = Some("POST".into());
                e.http_url = Some(format!("/gate.php?bot={i}"));
                e.http_agent = Some(format!("Mozilla/4.0 (bot {})", i % 7));
            }
            if kind == EventKind::Dns {
                e.dns_qname = Some(format!("c{i}.example"));
                e.dns_qtype = Some("A".into());
            }
            let family: Family = if i % 2 == 0 { "rustock" } else { "conficker" }
                .parse()
                .unwrap();
            e.family = Some(family);
            e
        })
        .collect()
}

/// Publishes `events` through a pipeline whose sink is the stream, in chunks
/// of `chunk`, and returns once every batch is acknowledged.
async fn publish(config: &StreamConfig, events: Vec<Event>, chunk: usize) -> Publisher {
    let c = config.clone();
    let publisher = tokio::task::spawn_blocking(move || Publisher::connect(&c))
        .await
        .unwrap()
        .unwrap();
    publish_with(publisher, events, chunk).await
}

/// Like [`publish`], but with a publisher already connected; gives it back.
async fn publish_with(publisher: Publisher, events: Vec<Event>, chunk: usize) -> Publisher {
    let shared = Arc::new(std::sync::Mutex::new(Some(publisher)));
    let sink = Shared(shared.clone());
    let pipeline_config = PipelineConfig {
        batch_size: 200,
        commit_retries: 10,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::spawn(&pipeline_config, None, Box::new(sink)).unwrap();
    let n = events.len() as u64;
    for c in events.chunks(chunk) {
        pipeline.sender().send(c.to_vec()).await.unwrap();
    }
    let stats = pipeline.shutdown().await.unwrap();
    assert_eq!(stats.committed, n);
    shared.lock().unwrap().take().unwrap()
}

/// Lends a publisher to a pipeline and gets it back after shutdown.
struct Shared(Arc<std::sync::Mutex<Option<Publisher>>>);

impl EventSink for Shared {
    fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.0.lock().unwrap().as_mut().unwrap().commit(events)
    }
}

fn small_batches() -> PipelineConfig {
    PipelineConfig {
        batch_size: 50,
        commit_retries: 0,
        ..PipelineConfig::default()
    }
}

/// Consumes into `sink` until `done` says so, with a generous time limit.
async fn consume_until(
    config: &StreamConfig,
    consumer: &ConsumerConfig,
    pipeline: PipelineConfig,
    sink: Box<dyn EventSink>,
    done: impl Fn(&ConsumerStats) -> bool,
) -> Result<takedown_stream::ConsumeReport, takedown_stream::Error> {
    let c = Consumer::connect(config, consumer).await.unwrap();
    let stats = c.stats();
    let pipeline = Pipeline::spawn(&pipeline, None, sink).unwrap();
    let stop = async move {
        while !done(&stats) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), c.run(pipeline, stop))
        .await
        .expect("the consumer did not finish in time")
}

/// Consumes into `store` with default settings until `n` events are in.
async fn consume_all(
    config: &StreamConfig,
    store: &Arc<SqliteStore>,
    n: u64,
) -> takedown_stream::ConsumeReport {
    consume_until(
        config,
        &ConsumerConfig::default(),
        PipelineConfig::default(),
        Box::new(StoreSink(store.clone())),
        |s| s.events() >= n,
    )
    .await
    .unwrap()
}

/// The store's events as sorted JSON, to compare regardless of order and ids.
fn stored_events(store: &SqliteStore) -> Vec<String> {
    let mut out = Vec::new();
    store
        .scan_events(&EventQuery::default(), &mut |_, e| {
            out.push(serde_json::to_string(&e).unwrap());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    out.sort();
    out
}

fn sorted_json(events: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    v.sort();
    v
}

/// Every host record, without the `modified` stamp, which depends on when
/// the record was written.
fn records(store: &SqliteStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .host_records(&RecordFilter::default(), cursor.as_ref(), 1000)
            .unwrap();
        for mut r in page.records {
            r.modified = takedown_event::Timestamp(0);
            out.push(serde_json::to_string(&r).unwrap());
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.sort();
    out
}

fn ips(store: &SqliteStore) -> usize {
    let mut set = std::collections::HashSet::<IpAddr>::new();
    store
        .scan_events(&EventQuery::default(), &mut |_, e| {
            set.insert(e.src_ip);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    set.len()
}

fn open(dir: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_stored_as_if_written_directly() {
    let Some(server) = NatsServer::start("published_events_are_stored_as_if_written_directly")
    else {
        return;
    };
    let config = server.config();
    let all = events(3000, 0);
    publish(&config, all.clone(), 97).await;

    let direct_dir = tempfile::tempdir().unwrap();
    let direct = open(direct_dir.path());
    direct.append_events(&all).unwrap();

    let via_dir = tempfile::tempdir().unwrap();
    let via = open(via_dir.path());
    let n = all.len() as u64;
    let report = consume_all(&config, &via, n).await;
    assert_eq!(report.events, n);
    assert_eq!(report.malformed, 0);
    // Small messages force the batches to be split.
    assert!(report.acked > 3 * 3000 / 200, "{report:?}");

    assert_eq!(stored_events(&via), sorted_json(&all));
    assert_eq!(stored_events(&via), stored_events(&direct));
    let recs = records(&via);
    assert!(!recs.is_empty());
    assert_eq!(recs, records(&direct));
    assert_eq!(ips(&via), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_stream_fits_a_server_with_little_storage() {
    let Some(server) = NatsServer::start_with(
        "the_default_stream_fits_a_server_with_little_storage",
        Some(64 << 20),
    ) else {
        return;
    };
    // The defaults reserve nothing, so both ends set the stream up on a
    // server that has only 64 MiB of JetStream storage.
    let config = server.config();
    let all = events(500, 0);
    publish(&config, all.clone(), 50).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let report = consume_all(&config, &store, all.len() as u64).await;
    assert_eq!(report.events, all.len() as u64);
    assert_eq!(stored_events(&store), sorted_json(&all));

    // A byte limit larger than the server's storage is refused with a reason
    // that says what to check, by the publisher and by the consumer alike.
    let greedy = StreamConfig {
        stream: "GREEDY".parse().unwrap(),
        subject_prefix: "greedy".parse().unwrap(),
        max_bytes: 1 << 30,
        ..server.config()
    };
    let c = greedy.clone();
    let published = tokio::task::spawn_blocking(move || Publisher::connect(&c))
        .await
        .unwrap();
    let err = published.expect_err("a 1 GiB stream on 64 MiB of storage");
    assert!(err.to_string().contains("has room"), "{err}");
    let consumed = Consumer::connect(&greedy, &ConsumerConfig::default()).await;
    let err = consumed.expect_err("a 1 GiB stream on 64 MiB of storage");
    assert!(err.to_string().contains("has room"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_a_server_crash() {
    let Some(mut server) = NatsServer::start("acknowledged_batches_survive_a_server_crash") else {
        return;
    };
    let config = server.config();
    let first = events(1000, 0);
    let publisher = publish(&config, first.clone(), 50).await;
    // Everything the publisher was told is committed must be on the
    // server's disk: kill it without warning and start it again.
    server.restart();
    // The same publisher reconnects on its own; the pipeline's retries
    // cover the gap.
    let second = events(500, 1000);
    let _publisher = publish_with(publisher, second.clone(), 50).await;
    server.restart();

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let n = (first.len() + second.len()) as u64;
    let report = consume_all(&config, &store, n).await;
    assert_eq!(report.events, n);
    let all: Vec<Event> = first.into_iter().chain(second).collect();
    // Nothing lost, and no batch stored twice by the stream.
    assert_eq!(stored_events(&store), sorted_json(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_terminated_and_counted() {
    let Some(server) = NatsServer::start("malformed_messages_are_terminated_and_counted") else {
        return;
    };
    let config = server.config();
    let good = events(100, 0);
    publish(&config, good.clone(), 100).await;

    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let valid_line = serde_json::to_string(&good[0]).unwrap();
    let bad: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"not json at all".to_vec(), None),
        (b"{\"timestamp\": 1}\n".to_vec(), None),
        (format!("{valid_line}\n{{truncated").into_bytes(), None),
        (Vec::new(), None),
        (vec![0xff; 64], None),
        (
            format!("{valid_line}\n").into_bytes(),
            Some("events-cbor/9"),
        ),
    ];
    let n_bad = bad.len() as u64;
    for (payload, format) in bad {
        let mut m = async_nats::jetstream::message::PublishMessage::build().payload(payload.into());
        if let Some(f) = format {
            m = m.header(takedown_stream::FORMAT_HEADER, f);
        }
        js.send_publish("takedown.events.sh1", m)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // One more good message after the bad ones, injected as a generic tool would.
    js.publish("takedown.events.manual", format!("{valid_line}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();

    let consumer = ConsumerConfig {
        ack_wait_secs: 1,
        ..ConsumerConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let n_good = good.len() as u64 + 1;
    let report = consume_until(
        &config,
        &consumer,
        PipelineConfig::default(),
        Box::new(StoreSink(store.clone())),
        |s| s.events() >= n_good && s.malformed() >= n_bad,
    )
    .await
    .unwrap();
    assert_eq!(report.malformed, n_bad);
    assert_eq!(report.events, n_good);
    assert_eq!(stored_events(&store).len() as u64, n_good);

    // Well past the ack wait, a new run of the same durable gets nothing back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = Instant::now();
    let report = consume_until(
        &config,
        &consumer,
        PipelineConfig::default(),
        Box::new(StoreSink(store.clone())),
        move |_| started.elapsed() > Duration::from_secs(3),
    )
    .await
    .unwrap();
    assert_eq!(report.malformed, 0);
    assert_eq!(report.events, 0);
    assert_eq!(stored_events(&store).len() as u64, n_good);

    let mut stream = js.get_stream("TAKEDOWN_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, report_messages_expected(&good, n_bad));
    let mut durable: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("takedown-ingest").await.unwrap();
    let ci = durable.info().await.unwrap();
    assert_eq!(ci.num_ack_pending, 0);
    assert_eq!(ci.num_pending, 0);
}

/// The stream holds the good batch (split by sensor and size), the bad
/// messages and the one injected message.
fn report_messages_expected(good: &[Event], n_bad: u64) -> u64 {
    let prefix: takedown_stream::SubjectPrefix = "takedown.events".parse().unwrap();
    let n_good = takedown_stream::encode_batch(good, &prefix, 8 << 10)
        .unwrap()
        .len() as u64;
    n_good + n_bad + 1
}

/// Commits to the store, but after `ok_commits` successful commits reports
/// the next one as failed after storing it: a crash between the store commit
/// and the acknowledgement.
struct CrashAfterCommit {
    inner: StoreSink<SqliteStore>,
    ok_commits: Arc<AtomicUsize>,
}

impl EventSink for CrashAfterCommit {
    fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.inner.commit(events)?;
        if self.ok_commits.load(Ordering::SeqCst) == 0 {
            return Err(SinkError::new("simulated crash after the store commit"));
        }
        self.ok_commits.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_before_acking_gets_its_messages_again() {
    let Some(server) =
        NatsServer::start("a_consumer_that_dies_before_acking_gets_its_messages_again")
    else {
        return;
    };
    let config = server.config();
    let all = events(1500, 0);
    publish(&config, all.clone(), 50).await;
    let consumer = ConsumerConfig {
        ack_wait_secs: 1,
        fetch_batch: 8,
        ..ConsumerConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    // The first consumer dies after its third store commit, before acknowledging it.
    let sink = CrashAfterCommit {
        inner: StoreSink(store.clone()),
        ok_commits: Arc::new(AtomicUsize::new(2)),
    };
    let err = consume_until(&config, &consumer, small_batches(), Box::new(sink), |_| {
        false
    })
    .await
    .unwrap_err();
    assert!(matches!(err, takedown_stream::Error::Ingest(_)), "{err}");
    let stored_by_first = stored_events(&store).len();
    assert!(
        stored_by_first > 0 && stored_by_first < all.len(),
        "{stored_by_first}"
    );

    // A second process is killed outright: its runtime vanishes mid-run,
    // with messages received and committed but not acknowledged.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (c, s, cfg) = (config.clone(), store.clone(), consumer.clone());
    drop(rt.spawn(async move {
        consume_until(&c, &cfg, small_batches(), Box::new(StoreSink(s)), |_| false).await
    }));
    let before = stored_events(&store).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_events(&store).len() < before + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.shutdown_background();

    // A healthy consumer with the same durable then brings the store to
    // completeness: every event at least once.
    let expected = sorted_json(&all);
    let store2 = store.clone();
    let report = consume_until(
        &config,
        &consumer,
        PipelineConfig::default(),
        Box::new(StoreSink(store.clone())),
        move |_| {
            let mut have = stored_events(&store2);
            have.dedup();
            have == expected
        },
    )
    .await
    .unwrap();
    assert!(report.events > 0);
    let mut have = stored_events(&store);
    // The batch the first consumer stored but never acknowledged came back
    // and was stored again: at least once, not exactly once.
    assert!(have.len() > all.len(), "{} <= {}", have.len(), all.len());
    have.dedup();
    assert_eq!(have, sorted_json(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_published_again_after_an_outage_is_stored_once() {
    let Some(mut server) =
        NatsServer::start("a_batch_published_again_after_an_outage_is_stored_once")
    else {
        return;
    };
    let config = server.config();
    let c = config.clone();
    let publisher = tokio::task::spawn_blocking(move || Publisher::connect(&c))
        .await
        .unwrap()
        .unwrap();
    server.kill();
    // While the server is down, the first attempt times out; the client
    // keeps what it could not send and sends it on reconnecting, and the
    // pipeline's retry publishes the same batch again under the same ids.
    let batch = events(300, 0);
    let publishing = tokio::spawn(publish_with(publisher, batch.clone(), 300));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.spawn();
    let publisher = publishing.await.unwrap();
    assert!(
        publisher.duplicates() > 0,
        "the retry was not deduplicated by the server"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let n = batch.len() as u64;
    consume_all(&config, &store, n).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("TAKEDOWN_EVENTS")
        .await
        .unwrap();
    let prefix: takedown_stream::SubjectPrefix = "takedown.events".parse().unwrap();
    let n_messages = takedown_stream::encode_batch(&batch, &prefix, 8 << 10)
        .unwrap()
        .len() as u64;
    assert_eq!(stream.info().await.unwrap().state.messages, n_messages);
    assert_eq!(stored_events(&store), sorted_json(&batch));
}
