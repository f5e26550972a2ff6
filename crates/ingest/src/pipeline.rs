//! The stages and the channels between them.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use takedown_event::{Event, Network};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::Checked;
use crate::telemetry::InternalEvent;
use crate::{Error, PipelineConfig, Telemetry, TelemetrySnapshot};

/// Attributes source addresses to networks.
pub trait Lookup: Send + Sync {
    /// The network holding `ip`; fields that are unknown stay `None`.
    fn lookup(&self, ip: IpAddr) -> Network;
}

impl Lookup for takedown_enrich::Enricher {
    fn lookup(&self, ip: IpAddr) -> Network {
        takedown_enrich::Enricher::lookup(self, ip)
    }
}

/// Commits batches of events, each batch atomically.
///
/// The pipeline calls this from a blocking thread, one batch at a time, and
/// counts a batch as committed only when this returns `Ok`. A sink must
/// therefore return only after the batch is durable (or at least survives the
/// death of this process), and must leave nothing of a batch behind on error.
pub trait EventSink: Send + 'static {
    /// Commits `events` in one transaction.
    fn commit(&mut self, events: &[Event]) -> Result<(), SinkError>;
}

/// An [`EventSink`] over any [`takedown_store::EventStore`]: each batch is one
/// `append_events` call, which is one durable transaction.
pub struct StoreSink<S: ?Sized>(pub Arc<S>);

impl<S: ?Sized> fmt::Debug for StoreSink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSink").finish_non_exhaustive()
    }
}

impl<S: takedown_store::EventStore + ?Sized + 'static> EventSink for StoreSink<S> {
    fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.0
            .append_events(events)
            .map(|_| ())
            .map_err(SinkError::new)
    }
}

/// The error an [`EventSink`] reports, kept opaque so that any store fits.
pub struct SinkError(Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// Wraps any error.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SinkError(e.into())
    }
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Combines what enrichment `found` with what the event already carried
/// (for imports, the report's own AS and country): local data wins field by
/// field, and the event's values fill the gaps.
pub fn merge_network(found: Network, current: Option<Network>) -> Option<Network> {
    let cur = current.unwrap_or_default();
    let merged = Network {
        prefix: found.prefix.or(cur.prefix),
        asn: found.asn.or(cur.asn),
        as_name: found.as_name.or(cur.as_name),
        country: found.country.or(cur.country),
    };
    (merged != Network::default()).then_some(merged)
}

/// The input of a running pipeline. Clones share the same channel.
#[derive(Clone)]
pub struct ChunkSender {
    tx: mpsc::Sender<Vec<Event>>,
    telemetry: Telemetry,
}

impl fmt::Debug for ChunkSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSender").finish_non_exhaustive()
    }
}

impl ChunkSender {
    /// Sends a chunk of events, waiting while the pipeline is full.
    pub async fn send(&self, chunk: Vec<Event>) -> Result<(), Error> {
        let n_events = chunk.len();
        self.tx.send(chunk).await.map_err(|_| Error::Closed)?;
        self.telemetry.emit(InternalEvent::Received { n_events });
        Ok(())
    }

    /// Sends a chunk from a thread outside the async runtime, blocking while
    /// the pipeline is full. Must not be called from an async task.
    pub fn blocking_send(&self, chunk: Vec<Event>) -> Result<(), Error> {
        let n_events = chunk.len();
        self.tx.blocking_send(chunk).map_err(|_| Error::Closed)?;
        self.telemetry.emit(InternalEvent::Received { n_events });
        Ok(())
    }
}

/// A running pipeline: source stages, the enrich stage and the store writer.
///
/// Create it inside a Tokio runtime with [`Pipeline::spawn`], feed it through
/// [`Pipeline::sender`] or [`Pipeline::attach`], and end it with
/// [`Pipeline::shutdown`], which drains every stage and commits the last batch.
pub struct Pipeline {
    config: Checked,
    input: ChunkSender,
    telemetry: Telemetry,
    committed: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    sources: Vec<JoinHandle<()>>,
    enrich: JoinHandle<()>,
    writer: JoinHandle<Result<(), Error>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("telemetry", &self.telemetry.snapshot())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the enrich stage and the store writer. Without a `lookup`,
    /// events pass through with whatever network they already carry.
    pub fn spawn(
        config: &PipelineConfig,
        lookup: Option<Arc<dyn Lookup>>,
        sink: Box<dyn EventSink>,
    ) -> Result<Pipeline, Error> {
        let config = config.check()?;
        let telemetry = Telemetry::default();
        let (in_tx, in_rx) = mpsc::channel(config.enrich_queue);
        let (w_tx, w_rx) = mpsc::channel(config.writer_queue);
        let (committed_tx, committed) = watch::channel(0u64);
        let (stop, _) = watch::channel(false);
        let enrich = tokio::spawn(enrich_stage(in_rx, w_tx, lookup, telemetry.clone()));
        let writer = tokio::spawn(writer_stage(
            w_rx,
            sink,
            config,
            telemetry.clone(),
            committed_tx,
        ));
        Ok(Pipeline {
            config,
            input: ChunkSender {
                tx: in_tx,
                telemetry: telemetry.clone(),
            },
            telemetry,
            committed,
            stop,
            sources: Vec::new(),
            enrich,
            writer,
        })
    }

    /// A handle to send chunks of events into the pipeline.
    pub fn sender(&self) -> ChunkSender {
        self.input.clone()
    }

    /// Adds a source stage that reads single events (such as a sinkhole's
    /// output channel) and forwards them in chunks. It runs until the channel
    /// closes or [`Pipeline::shutdown`] drains it.
    pub fn attach(&mut self, rx: mpsc::Receiver<Event>) {
        let handle = tokio::spawn(source_stage(
            rx,
            self.input.clone(),
            self.config.chunk_size,
            self.stop.subscribe(),
        ));
        self.sources.push(handle);
    }

    /// The live counters.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// How many events have been committed so far; events are committed in the
    /// order they were sent, so the first `n` sent are durable once this reaches `n`.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Whether the writer has stopped (after a store failure, or once drained).
    pub fn is_finished(&self) -> bool {
        self.writer.is_finished()
    }

    /// Drains the source stages, then every chunk in flight, commits the last
    /// batch and returns the final counters. Other [`ChunkSender`] clones must
    /// have been dropped, or this waits for them.
    pub async fn shutdown(self) -> Result<TelemetrySnapshot, Error> {
        let Pipeline {
            input,
            telemetry,
            stop,
            sources,
            enrich,
            writer,
            ..
        } = self;
        // Sources drain what their channel already holds, then stop.
        let _ = stop.send(true);
        for s in sources {
            s.await.map_err(|e| Error::Stage(e.to_string()))?;
        }
        drop(input);
        enrich.await.map_err(|e| Error::Stage(e.to_string()))?;
        writer.await.map_err(|e| Error::Stage(e.to_string()))??;
        Ok(telemetry.snapshot())
    }
}

async fn source_stage(
    mut rx: mpsc::Receiver<Event>,
    out: ChunkSender,
    chunk_size: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            biased;
            e = rx.recv() => e,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                // Stop taking new input, but keep what was already accepted.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut chunk = Vec::with_capacity(chunk_size.min(64));
        chunk.push(first);
        while chunk.len() < chunk_size {
            match rx.try_recv() {
                Ok(e) => chunk.push(e),
                Err(_) => break,
            }
        }
        if out.send(chunk).await.is_err() {
            warn!("Ingest pipeline closed; the source stage stops.");
            break;
        }
    }
}

async fn enrich_stage(
    mut rx: mpsc::Receiver<Vec<Event>>,
    out: mpsc::Sender<Vec<Event>>,
    lookup: Option<Arc<dyn Lookup>>,
    telemetry: Telemetry,
) {
    while let Some(mut chunk) = rx.recv().await {
        if let Some(lookup) = &lookup {
            let mut n_hits = 0;
            for e in &mut chunk {
                let found = lookup.lookup(e.src_ip);
                if found != Network::default() {
                    n_hits += 1;
                }
                e.network = merge_network(found, e.network.take());
            }
            telemetry.emit(InternalEvent::Enriched { n_hits });
        }
        if out.send(chunk).await.is_err() {
            // The writer has failed; it reports why. Closing our input makes
            // senders see `Error::Closed` instead of blocking forever.
            rx.close();
            break;
        }
    }
}

async fn writer_stage(
    mut rx: mpsc::Receiver<Vec<Event>>,
    mut sink: Box<dyn EventSink>,
    config: Checked,
    telemetry: Telemetry,
    committed: watch::Sender<u64>,
) -> Result<(), Error> {
    let mut batch: Vec<Event> = Vec::new();
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else { break };
        batch.extend(first);
        let deadline = Instant::now() + config.flush_window;
        while batch.len() < config.batch_size {
            let wait = deadline.min(Instant::now() + config.linger);
            match tokio::time::timeout_at(wait, rx.recv()).await {
                Ok(Some(chunk)) => batch.extend(chunk),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let (s, b) = commit(sink, batch, &config, &telemetry).await?;
        sink = s;
        batch = b;
        let n = batch.len() as u64;
        committed.send_modify(|c| *c += n);
        batch.clear();
    }
    debug!("Store writer drained.");
    Ok(())
}

/// Commits one batch on a blocking thread, retrying with back-off.
async fn commit(
    mut sink: Box<dyn EventSink>,
    mut batch: Vec<Event>,
    config: &Checked,
    telemetry: &Telemetry,
) -> Result<(Box<dyn EventSink>, Vec<Event>), Error> {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        let started = std::time::Instant::now();
        let (s, b, result) = tokio::task::spawn_blocking(move || {
            let r = sink.commit(&batch);
            (sink, batch, r)
        })
        .await
        .map_err(|e| Error::Stage(e.to_string()))?;
        sink = s;
        batch = b;
        let n_events = batch.len();
        match result {
            Ok(()) => {
                telemetry.emit(InternalEvent::BatchCommitted {
                    n_events,
                    latency: started.elapsed(),
                });
                return Ok((sink, batch));
            }
            Err(source) => {
                attempt += 1;
                telemetry.emit(InternalEvent::CommitFailed { n_events, attempt });
                if attempt > config.commit_retries {
                    return Err(Error::Store { n_events, source });
                }
                warn!(n_events, attempt, error = %source, "Commit failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Memory {
        batches: Arc<Mutex<Vec<Vec<Event>>>>,
        fail_first: Arc<Mutex<u32>>,
    }

    impl EventSink for Memory {
        fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
            let mut f = self.fail_first.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(SinkError::new("disk full"));
            }
            self.batches.lock().unwrap().push(events.to_vec());
            Ok(())
        }
    }

    struct Fixed;
    impl Lookup for Fixed {
        fn lookup(&self, ip: IpAddr) -> Network {
            if ip.is_ipv4() {
                Network {
                    asn: Some(takedown_event::Asn(64500)),
                    ..Network::default()
                }
            } else {
                Network::default()
            }
        }
    }

    fn event(i: u32) -> Event {
        let src = format!("192.0.2.{}:{}", i % 250, 1000 + i % 60000);
        Event::new(
            takedown_event::Timestamp(i64::from(i)),
            takedown_event::EventKind::Http,
            src.parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            "t".parse().unwrap(),
        )
    }

    #[tokio::test]
    async fn batches_respect_size_and_keep_order() {
        let mem = Memory::default();
        let config = PipelineConfig {
            batch_size: 100,
            chunk_size: 7,
            ..PipelineConfig::default()
        };
        let mut p = Pipeline::spawn(&config, Some(Arc::new(Fixed)), Box::new(mem.clone())).unwrap();
        let (tx, rx) = mpsc::channel(16);
        p.attach(rx);
        for i in 0..1000 {
            tx.send(event(i)).await.unwrap();
        }
        drop(tx);
        let stats = p.shutdown().await.unwrap();
        assert_eq!(stats.events_in, 1000);
        assert_eq!(stats.committed, 1000);
        assert_eq!(stats.enriched, 1000);
        let batches = mem.batches.lock().unwrap();
        // Chunks may overshoot the batch size by less than one chunk.
        assert!(
            batches.iter().all(|b| b.len() < 100 + 7),
            "{:?}",
            batches.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let all: Vec<i64> = batches.iter().flatten().map(|e| e.timestamp.0).collect();
        assert_eq!(all, (0..1000).collect::<Vec<i64>>());
        assert!(
            batches
                .iter()
                .flatten()
                .all(|e| e.network.as_ref().unwrap().asn.is_some())
        );
    }

    #[tokio::test]
    async fn shutdown_drains_attached_sources_that_are_still_open() {
        let mem = Memory::default();
        let mut p =
            Pipeline::spawn(&PipelineConfig::default(), None, Box::new(mem.clone())).unwrap();
        let (tx, rx) = mpsc::channel(64);
        p.attach(rx);
        for i in 0..50 {
            tx.send(event(i)).await.unwrap();
        }
        // The sender stays alive, as a listener would until it is told to stop.
        let stats = p.shutdown().await.unwrap();
        assert_eq!(stats.committed, 50);
        assert!(tx.send(event(99)).await.is_err());
    }

    #[tokio::test]
    async fn commit_failures_are_retried_then_reported() {
        let mem = Memory::default();
        *mem.fail_first.lock().unwrap() = 2;
        let config = PipelineConfig {
            commit_retries: 2,
            ..PipelineConfig::default()
        };
        let p = Pipeline::spawn(&config, None, Box::new(mem.clone())).unwrap();
        p.sender().send(vec![event(1)]).await.unwrap();
        let stats = p.shutdown().await.unwrap();
        assert_eq!(stats.committed, 1);
        assert_eq!(stats.commit_failures, 2);

        let mem = Memory::default();
        *mem.fail_first.lock().unwrap() = 10;
        let config = PipelineConfig {
            commit_retries: 0,
            ..PipelineConfig::default()
        };
        let p = Pipeline::spawn(&config, None, Box::new(mem.clone())).unwrap();
        p.sender().send(vec![event(1)]).await.unwrap();
        let err = p.shutdown().await.unwrap_err();
        assert!(matches!(err, Error::Store { n_events: 1, .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_event_is_committed_within_the_flush_window() {
        let mem = Memory::default();
        let config = PipelineConfig {
            flush_window_ms: 200,
            linger_ms: 200,
            ..PipelineConfig::default()
        };
        let p = Pipeline::spawn(&config, None, Box::new(mem.clone())).unwrap();
        let mut committed = p.committed();
        let t0 = Instant::now();
        p.sender().send(vec![event(1)]).await.unwrap();
        committed.wait_for(|n| *n == 1).await.unwrap();
        // Paused time advances only through timers, so this measures the
        // writer's own waiting, not scheduling noise.
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_millis(400));
        p.shutdown().await.unwrap();
    }

    #[test]
    fn merge_prefers_found_fields() {
        let found = Network {
            asn: Some(takedown_event::Asn(1)),
            ..Network::default()
        };
        let cur = Network {
            asn: Some(takedown_event::Asn(2)),
            country: Some("DE".parse().unwrap()),
            ..Network::default()
        };
        let m = merge_network(found, Some(cur)).unwrap();
        assert_eq!(m.asn, Some(takedown_event::Asn(1)));
        assert_eq!(m.country.unwrap().as_str(), "DE");
        assert_eq!(merge_network(Network::default(), None), None);
    }
}
