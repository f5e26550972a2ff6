//! The publisher: an [`EventSink`] that commits batches to the stream.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;

use async_nats::jetstream;
use takedown_event::Event;
use takedown_ingest::{EventSink, SinkError};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::Error;
use crate::codec::{FORMAT_HEADER, FORMAT_JSONL, Outgoing, encode_batch};
use crate::config::{StreamConfig, SubjectPrefix, ensure_stream};

/// Room left in each message for the headers (message id, format).
const HEADER_ROOM: usize = 512;

/// One batch handed to the publisher thread, with where to report.
struct Job {
    messages: Vec<(Outgoing, String)>,
    reply: std_mpsc::SyncSender<Result<(), Error>>,
}

/// Publishes event batches to the JetStream stream; an [`EventSink`] for the
/// ingest [`Pipeline`](takedown_ingest::Pipeline).
///
/// Each [`commit`](EventSink::commit) encodes the batch as JSON lines (one
/// message per sensor, split to stay under the message size limit), publishes
/// every message with a `Nats-Msg-Id`, and returns `Ok` only once the stream
/// has acknowledged all of them, which JetStream does after storing them. A
/// batch that fails is published again under the same ids when the pipeline
/// retries it, so the server drops the copies it already holds (within the
/// stream's duplicate window).
///
/// The NATS client runs on a thread of its own with its own runtime: the
/// pipeline calls `commit` from a blocking thread and waits on a plain
/// channel, so no runtime ever blocks on itself, whatever its flavour.
pub struct Publisher {
    jobs: mpsc::UnboundedSender<Job>,
    prefix: SubjectPrefix,
    limit: usize,
    /// Random per publisher, so ids of different processes never collide.
    instance: String,
    /// The number of the next new batch.
    next_batch: u64,
    /// The batch whose commit failed last, and its number, so that a retry
    /// of the same events reuses its message ids.
    failed: Option<(u64, Vec<Event>)>,
    /// Messages the stream reported as already held when published again.
    duplicates: Arc<AtomicU64>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects to the servers, creates or updates the stream, and starts the
    /// publishing thread. This blocks until the connection is up: call it
    /// outside async tasks (or in `spawn_blocking`).
    pub fn connect(config: &StreamConfig) -> Result<Publisher, Error> {
        config.check()?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let thread_config = config.clone();
        let duplicates = Arc::new(AtomicU64::new(0));
        let thread_duplicates = duplicates.clone();
        thread::Builder::new()
            .name("takedown-publish".to_owned())
            .spawn(move || publisher_thread(thread_config, rx, ready_tx, thread_duplicates))
            .map_err(Error::Thread)?;
        let max_payload = ready_rx.recv().map_err(|_| Error::Closed)??;
        let limit = config
            .max_message_bytes
            .min(max_payload.saturating_sub(HEADER_ROOM))
            .max(1);
        let instance = format!("{:016x}", rand::random::<u64>());
        info!(stream = %config.stream, limit, %instance, "Publisher connected.");
        Ok(Publisher {
            jobs,
            prefix: config.subject_prefix.clone(),
            limit,
            instance,
            next_batch: 0,
            failed: None,
            duplicates,
        })
    }

    /// The largest message payload this publisher sends, in bytes.
    pub fn message_limit(&self) -> usize {
        self.limit
    }

    /// How many messages of retried batches the stream already held and
    /// dropped, instead of storing them twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Publishes one batch and waits for the stream's acknowledgement. This
    /// blocks the calling thread: call it outside async tasks, as the
    /// pipeline does.
    pub fn publish(&mut self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = match self.failed.take() {
            Some((n, last)) if last == events => n,
            _ => {
                let n = self.next_batch;
                self.next_batch += 1;
                n
            }
        };
        let result = self.publish_numbered(batch, events);
        if result.is_err() {
            self.failed = Some((batch, events.to_vec()));
        }
        result
    }

    fn publish_numbered(&mut self, batch: u64, events: &[Event]) -> Result<(), Error> {
        let messages = encode_batch(events, &self.prefix, self.limit)?
            .into_iter()
            .enumerate()
            .map(|(part, m)| {
                let id = format!("{}-{batch}-{part}", self.instance);
                (m, id)
            })
            .collect();
        let (reply, done) = std_mpsc::sync_channel(1);
        self.jobs
            .send(Job { messages, reply })
            .map_err(|_| Error::Closed)?;
        done.recv().map_err(|_| Error::Closed)?
    }
}

impl EventSink for Publisher {
    fn commit(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.publish(events).map_err(SinkError::new)
    }
}

fn publisher_thread(
    config: StreamConfig,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: std_mpsc::SyncSender<Result<usize, Error>>,
    duplicates: Arc<AtomicU64>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::Thread(e)));
            return;
        }
    };
    rt.block_on(async move {
        let setup = async {
            let client = config.connect("takedown-publisher").await?;
            let js = config.context(client.clone());
            ensure_stream(&js, &config).await?;
            Ok::<_, Error>((client, js))
        };
        let (client, js) = match setup.await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(client.server_info().max_payload)).is_err() {
            return;
        }
        while let Some(job) = jobs.recv().await {
            let result = publish_all(&js, job.messages, &duplicates).await;
            let _ = job.reply.send(result);
        }
        // Every batch was acknowledged before its commit returned, so there
        // is nothing left to flush; this only says goodbye politely.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.flush()).await;
        debug!("Publisher stopped.");
    });
}

/// Sends every message, then waits for every acknowledgement, so that the
/// round trips of one batch overlap.
async fn publish_all(
    js: &jetstream::Context,
    messages: Vec<(Outgoing, String)>,
    duplicates: &AtomicU64,
) -> Result<(), Error> {
    let publish_error = |e: &dyn std::error::Error| Error::Publish(e.to_string());
    let mut acks = Vec::with_capacity(messages.len());
    for (m, id) in messages {
        let publish = jetstream::message::PublishMessage::build()
            .payload(m.payload)
            .message_id(id)
            .header(FORMAT_HEADER, FORMAT_JSONL);
        let ack = js
            .send_publish(m.subject, publish)
            .await
            .map_err(|e| publish_error(&e))?;
        acks.push(ack);
    }
    let mut n_duplicates = 0;
    for ack in acks {
        let ack = ack.await.map_err(|e| publish_error(&e))?;
        n_duplicates += usize::from(ack.duplicate);
    }
    if n_duplicates > 0 {
        duplicates.fetch_add(n_duplicates as u64, Ordering::Relaxed);
        info!(
            n_duplicates,
            "The stream already held part of a retried batch; dropped the copies."
        );
    }
    Ok(())
}
