//! The scale-out event stream: sinkholes publish to NATS JetStream, ingest
//! processes consume from it into a store.
//!
//! ```text
//! sinkhole ─► pipeline ─► Publisher ─► JetStream stream ─► Consumer ─► pipeline ─► store
//! ```
//!
//! [`StreamConfig`] says where the stream is and what it keeps (file storage,
//! age and size limits, the duplicate window); [`ensure_stream`] creates or
//! updates it. [`Publisher`] is an ingest
//! [`EventSink`](takedown_ingest::EventSink): a batch counts as committed once
//! the stream has acknowledged storing it, so a sinkhole that publishes gives
//! the same "committed means durable" promise as one writing its own store.
//! [`Consumer`] is a durable pull consumer that feeds an ingest
//! [`Pipeline`](takedown_ingest::Pipeline) and acknowledges each message only
//! after the pipeline has committed its events: delivery is at least once.
//!
//! Messages are takedown's JSON lines, one event per line, on subject
//! `<prefix>.<sensor>`, each with a `Nats-Msg-Id` so that the server drops a
//! batch published twice.
//!
//! ```no_run
//! use takedown_ingest::{Pipeline, PipelineConfig, StoreSink};
//! use takedown_stream::{Consumer, ConsumerConfig, Publisher, StreamConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let config = StreamConfig::with_servers("nats://127.0.0.1:4222");
//!
//! // On a sinkhole: a pipeline whose sink is the stream.
//! let publisher = Publisher::connect(&config)?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let pipeline = Pipeline::spawn(&PipelineConfig::default(), None, Box::new(publisher))?;
//!     // ... attach the sinkhole's event channel, then:
//!     pipeline.shutdown().await?;
//!
//!     // On an ingest host: from the stream into a store, until Ctrl-C.
//!     let store = std::sync::Arc::new(takedown_store::SqliteStore::open(dir.path())?);
//!     let pipeline = Pipeline::spawn(&PipelineConfig::default(), None, Box::new(StoreSink(store)))?;
//!     let consumer = Consumer::connect(&config, &ConsumerConfig::default()).await?;
//!     let stop = async { let _ = tokio::signal::ctrl_c().await; };
//!     let report = consumer.run(pipeline, stop).await?;
//!     println!("{} events ingested", report.events);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod codec;
mod config;
mod consume;
mod publish;

pub use codec::{FORMAT_HEADER, FORMAT_JSONL, Outgoing, decode_events, encode_batch};
pub use config::{ConsumerConfig, Name, StreamConfig, SubjectPrefix, ensure_stream};
pub use consume::{ConsumeReport, Consumer, ConsumerStats};
pub use publish::Publisher;

/// Everything that can go wrong between takedown and the stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream or consumer setting was invalid.
    #[error("invalid stream setting `{field}`: {reason}")]
    Config {
        /// The setting's name, as in the config file.
        field: &'static str,
        /// What is accepted instead.
        reason: String,
    },
    /// No NATS server answered.
    #[error(
        "cannot connect to NATS at {servers}: {reason}; check the URL and that nats-server is running with JetStream enabled (-js)"
    )]
    Connect {
        /// The URLs tried, comma-separated.
        servers: String,
        /// The client's error.
        reason: String,
    },
    /// The server refused to create, update or look up the stream.
    #[error(
        "cannot set up the JetStream stream {stream}: {reason}; check that JetStream is enabled (-js) and has room for the stream's limits, or that another stream does not already capture its subjects"
    )]
    Stream {
        /// The stream's name.
        stream: String,
        /// The server's error.
        reason: String,
    },
    /// The server refused to create or look up the durable consumer.
    #[error(
        "cannot set up the durable consumer {durable}: {reason}; check the stream exists, or choose another name with --durable"
    )]
    Consumer {
        /// The consumer's name.
        durable: String,
        /// The server's error.
        reason: String,
    },
    /// The stream did not acknowledge a batch; none of it counts as committed.
    #[error(
        "the stream did not acknowledge a batch: {0}; the batch is retried, check that nats-server is up and its JetStream storage has room"
    )]
    Publish(String),
    /// One event is larger than a message may be.
    #[error(
        "an event of {bytes} bytes does not fit in a message of at most {limit} bytes; raise max_message_bytes and the server's max_payload"
    )]
    TooLarge {
        /// The encoded event's size.
        bytes: usize,
        /// The message size limit.
        limit: usize,
    },
    /// An event could not be encoded; this is a bug.
    #[error("cannot encode an event: {0}; please report this as a bug")]
    Encode(String),
    /// Pulling messages from the consumer failed for good.
    #[error("cannot pull messages from the stream: {0}; check the server and restart the consumer")]
    Pull(String),
    /// The ingest pipeline behind the consumer failed.
    #[error("the ingest pipeline failed: {0}")]
    Ingest(#[from] takedown_ingest::Error),
    /// The publisher's thread or runtime could not start.
    #[error("cannot start the publisher thread: {0}; check the process's thread and memory limits")]
    Thread(#[source] std::io::Error),
    /// The publisher's thread has stopped, so nothing more can be published.
    #[error("the publisher has stopped; see the preceding error, then restart the process")]
    Closed,
}
