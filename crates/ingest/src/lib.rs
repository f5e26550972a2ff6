//! The ingest pipeline: events in, enriched and group-committed to the store.
//!
//! A [`Pipeline`] is three stages joined by bounded channels, so a slow store
//! pushes back on its sources instead of buffering without limit:
//!
//! ```text
//! source (sinkhole channel or importer) ─► enrich ─► store writer (group commit)
//! ```
//!
//! The writer collects events until it has [`PipelineConfig::batch_size`] of
//! them, the input has been idle for the linger, or the oldest has waited the
//! flush window; then it commits them in one store transaction and only then
//! counts them as committed. The flush window (at most one second) therefore
//! bounds both how stale a query can be and how much a crash can lose.
//!
//! Stages reach the outside through two traits: [`Lookup`] attributes
//! addresses to networks and [`EventSink`] commits batches. Importers
//! ([`LogReader`]) turn Shadowserver CSV reports and takedown's JSON lines into
//! events, reporting bad rows by line.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use takedown_event::Event;
//! use takedown_ingest::{EventSink, ImportFormat, Pipeline, PipelineConfig, SinkError, parse_all};
//!
//! /// A sink that keeps events in memory.
//! #[derive(Clone, Default)]
//! struct Memory(Arc<Mutex<Vec<Event>>>);
//! impl EventSink for Memory {
//!     fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
//!         self.0.lock().unwrap().extend_from_slice(events);
//!         Ok(())
//!     }
//! }
//!
//! let csv = "timestamp,src_ip,src_port,dst_ip,dst_port,infection\n\
//!            2026-11-29 14:00:00,192.0.2.7,51000,198.51.100.1,80,rustock\n";
//! let (events, bad) = parse_all(ImportFormat::Shadowserver, csv.as_bytes(), "ss".parse()?)?;
//! assert!(bad.is_empty());
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! let memory = Memory::default();
//! let stats = rt.block_on(async {
//!     let pipeline = Pipeline::spawn(&PipelineConfig::default(), None, Box::new(memory.clone()))?;
//!     pipeline.sender().send(events).await?;
//!     pipeline.shutdown().await
//! })?;
//! assert_eq!(stats.committed, 1);
//! assert_eq!(memory.0.lock().unwrap()[0].family.as_ref().unwrap().as_str(), "rustock");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod config;
mod import;
mod pipeline;
mod telemetry;

pub use config::PipelineConfig;
pub use import::{
    ByteCounter, CountingReader, ImportFormat, JsonlReader, LogReader, MAX_LINE, Report, RowError,
    ShadowserverReader, counting, parse_all,
};
pub use pipeline::{ChunkSender, EventSink, Lookup, Pipeline, SinkError, StoreSink, merge_network};
pub use telemetry::{Telemetry, TelemetrySnapshot};

/// Everything that can go wrong while ingesting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input failed; check the file is readable and complete.
    #[error("cannot read the input: {0}; check that the file is readable and not truncated")]
    Io(#[from] std::io::Error),
    /// The first line is not the header of a report this importer knows.
    #[error("unrecognised header: {reason}; check --format, or that the file is a sinkhole report")]
    Header {
        /// What was wrong with it.
        reason: String,
    },
    /// An import format name was not `shadowserver` or `jsonl`.
    #[error("unknown import format {0:?}: use shadowserver or jsonl")]
    UnknownFormat(String),
    /// A pipeline setting was out of range.
    #[error("invalid pipeline setting `{field}`: {reason}")]
    Config {
        /// The setting's name, as in the config file.
        field: &'static str,
        /// The accepted range.
        reason: String,
    },
    /// The store refused a batch even after retries; the batch was not committed.
    #[error(
        "the store could not commit a batch of {n_events} events: {source}; check disk space and permissions of the data directory"
    )]
    Store {
        /// How many events the failed batch held.
        n_events: usize,
        /// The store's error.
        #[source]
        source: SinkError,
    },
    /// The pipeline stopped before taking all input, because an earlier stage failed.
    #[error("the ingest pipeline has stopped; see the preceding error")]
    Closed,
    /// A stage task panicked or was cancelled; this is a bug.
    #[error("an ingest stage ended abnormally: {0}")]
    Stage(String),
}
