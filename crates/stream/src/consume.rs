//! The consumer: a durable pull consumer that feeds an ingest pipeline and
//! acknowledges messages once their events are committed.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::message::{AckKind, Acker};
use futures_util::StreamExt;
use takedown_ingest::{Pipeline, TelemetrySnapshot};
use tracing::{debug, info, warn};

use crate::Error;
use crate::codec::{FORMAT_HEADER, FORMAT_JSONL, decode_events};
use crate::config::{ConsumerConfig, StreamConfig};

/// Live counters of a running [`Consumer`]; clones share them.
#[derive(Debug, Clone, Default)]
pub struct ConsumerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    acked: AtomicU64,
    events: AtomicU64,
    malformed: AtomicU64,
    redelivered: AtomicU64,
}

impl ConsumerStats {
    /// Messages acknowledged after their events were committed.
    pub fn acked(&self) -> u64 {
        self.0.acked.load(Ordering::Relaxed)
    }

    /// Events in the acknowledged messages.
    pub fn events(&self) -> u64 {
        self.0.events.load(Ordering::Relaxed)
    }

    /// Messages rejected as malformed and terminated (never redelivered).
    pub fn malformed(&self) -> u64 {
        self.0.malformed.load(Ordering::Relaxed)
    }

    /// Deliveries of a message that was still waiting for its commit, which
    /// were ignored rather than ingested twice.
    pub fn redelivered(&self) -> u64 {
        self.0.redelivered.load(Ordering::Relaxed)
    }
}

/// What a [`Consumer`] did, returned when it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeReport {
    /// Messages acknowledged after their events were committed.
    pub acked: u64,
    /// Events in those messages.
    pub events: u64,
    /// Messages rejected as malformed and terminated.
    pub malformed: u64,
    /// The ingest pipeline's final counters.
    pub pipeline: TelemetrySnapshot,
}

/// A message whose events are in the pipeline but not yet committed.
struct Pending {
    acker: Acker,
    stream_seq: u64,
    n_events: u64,
    /// The pipeline's committed count at which this message's events are durable.
    end: u64,
    /// When the ack timer was last reset (delivery or progress notice).
    touched: Instant,
}

/// Reads the stream through a durable pull consumer into an ingest pipeline.
///
/// Messages are acknowledged in order, each only once the pipeline reports
/// all of its events committed (the pipeline commits in the order it
/// receives). The guarantee is therefore at least once: an event is never
/// lost once its message is in the stream, but if the process dies between
/// a store commit and the acknowledgement, the server redelivers the message
/// and its events are stored again. Malformed messages are terminated, so
/// the server never redelivers them, and counted.
pub struct Consumer {
    client: async_nats::Client,
    consumer: jetstream::consumer::PullConsumer,
    config: ConsumerConfig,
    stats: ConsumerStats,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects, creates the stream if it does not exist yet (an existing
    /// stream keeps the limits its publishers gave it), and creates or binds
    /// the durable consumer.
    pub async fn connect(
        stream: &StreamConfig,
        config: &ConsumerConfig,
    ) -> Result<Consumer, Error> {
        config.check()?;
        let client = stream.connect("takedown-ingest").await?;
        let js = stream.context(client.clone());
        let handle = js
            .get_or_create_stream(stream.jetstream_config())
            .await
            .map_err(|e| Error::Stream {
                stream: stream.stream.to_string(),
                reason: e.to_string(),
            })?;
        let consumer_error = |e: &dyn std::error::Error| Error::Consumer {
            durable: config.durable.to_string(),
            reason: e.to_string(),
        };
        let wanted = config.jetstream_config(&stream.subject_prefix);
        // Creating a durable that exists with the same settings binds to it.
        // With other settings the server refuses; the durable then keeps its
        // own (servers before 2.10 cannot update a consumer in place), which
        // is safe, since its acknowledgement state is what matters.
        let consumer: jetstream::consumer::PullConsumer = match handle.create_consumer(wanted).await
        {
            Ok(c) => c,
            Err(create) => {
                let c = handle
                    .get_consumer(config.durable.as_str())
                    .await
                    .map_err(|_| consumer_error(&create))?;
                warn!(
                    durable = %config.durable,
                    reason = %create,
                    "The durable consumer exists with other settings; keeping them."
                );
                c
            }
        };
        info!(durable = %config.durable, stream = %stream.stream, "Consumer ready.");
        Ok(Consumer {
            client,
            consumer,
            config: config.clone(),
            stats: ConsumerStats::default(),
        })
    }

    /// The live counters.
    pub fn stats(&self) -> ConsumerStats {
        self.stats.clone()
    }

    /// Feeds `pipeline` until `stop` resolves or the pipeline fails, then
    /// drains the pipeline and acknowledges every message it committed.
    ///
    /// `pipeline` must be fresh and fed by nothing else, since its committed
    /// count decides what is acknowledged. On a pipeline failure, the
    /// messages whose events were committed before it are still
    /// acknowledged; the others are redelivered later.
    pub async fn run(
        self,
        pipeline: Pipeline,
        stop: impl Future<Output = ()>,
    ) -> Result<ConsumeReport, Error> {
        let Consumer {
            client,
            consumer,
            config,
            stats,
        } = self;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(config.fetch_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| Error::Pull(e.to_string()))?;
        let sender = pipeline.sender();
        let mut committed = pipeline.committed();
        let mut state = State {
            pending: VecDeque::new(),
            in_flight: HashSet::new(),
            sent: 0,
            stats: stats.clone(),
        };
        // Progress notices go out well before the server's ack timer runs out.
        let progress_after = config.ack_wait() / 3;
        let mut progress = tokio::time::interval(progress_after.max(Duration::from_millis(100)));
        let mut watchdog = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(stop);
        let mut failed = false;
        let mut pull_failing = false;
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                r = committed.changed() => {
                    if r.is_err() {
                        failed = true;
                        break;
                    }
                    let n = *committed.borrow_and_update();
                    state.ack_committed(n).await;
                }
                _ = progress.tick() => state.send_progress(progress_after).await,
                _ = watchdog.tick() => {
                    if pipeline.is_finished() {
                        failed = true;
                        break;
                    }
                }
                m = messages.next() => {
                    let Some(m) = m else {
                        warn!("The pull subscription ended.");
                        failed = true;
                        break;
                    };
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => match e.kind() {
                            MessagesErrorKind::ConsumerDeleted
                            | MessagesErrorKind::PushBasedConsumer
                            | MessagesErrorKind::RequestLimitExceeded => {
                                failed = true;
                                warn!(error = %e, "Pulling messages failed for good.");
                                break;
                            }
                            _ => {
                                // Heartbeats go missing and pulls fail while the
                                // server restarts; the client reconnects and resumes.
                                // One warning per outage is enough.
                                if !pull_failing {
                                    warn!(error = %e, "Pulling messages failed; retrying until the server is back.");
                                }
                                debug!(error = %e, "Pulling messages failed.");
                                pull_failing = true;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                        },
                    };
                    if pull_failing {
                        info!("Pulling messages again.");
                        pull_failing = false;
                    }
                    if let Some(events) = state.accept(m).await {
                        let n = events.len() as u64;
                        if sender.send(events).await.is_err() {
                            // The pending entry was already pushed; it is not acknowledged.
                            state.sent -= n;
                            failed = true;
                            break;
                        }
                    }
                }
            }
        }
        drop(messages);
        drop(sender);
        let result = pipeline.shutdown().await;
        // Whatever the outcome, what was committed is acknowledged.
        let n = *committed.borrow();
        state.ack_committed(n).await;
        match tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(
                error = %e,
                "Flushing acknowledgements failed; the server will redeliver those messages."
            ),
            Err(_) => warn!(
                "Flushing acknowledgements timed out; the server will redeliver those messages."
            ),
        }
        let snapshot = result?;
        if failed {
            return Err(Error::Pull(
                "the consumer stopped before it was told to; see the preceding warnings".to_owned(),
            ));
        }
        info!(
            n_acked = stats.acked(),
            n_events = stats.events(),
            n_malformed = stats.malformed(),
            n_unacked = state.pending.len(),
            "Consumer stopped."
        );
        Ok(ConsumeReport {
            acked: stats.acked(),
            events: stats.events(),
            malformed: stats.malformed(),
            pipeline: snapshot,
        })
    }
}

struct State {
    pending: VecDeque<Pending>,
    in_flight: HashSet<u64>,
    /// Events sent into the pipeline so far.
    sent: u64,
    stats: ConsumerStats,
}

impl State {
    /// Decodes a delivered message. Returns its events to send into the
    /// pipeline, after recording it as pending; or `None` when it was
    /// terminated as malformed or is a redelivery of a pending message.
    async fn accept(&mut self, m: jetstream::Message) -> Option<Vec<takedown_event::Event>> {
        let stream_seq = match m.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                warn!(error = %e, "A message without JetStream metadata; ignored.");
                return None;
            }
        };
        let format = m
            .headers
            .as_ref()
            .and_then(|h| h.get(FORMAT_HEADER))
            .map(|v| v.as_str().to_owned());
        let (message, acker) = m.split();
        if self.in_flight.contains(&stream_seq) {
            // The server gave up waiting and redelivered; the new delivery's
            // acknowledgement is the one it expects now.
            if let Some(p) = self.pending.iter_mut().find(|p| p.stream_seq == stream_seq) {
                p.acker = acker;
                p.touched = Instant::now();
            }
            self.stats.0.redelivered.fetch_add(1, Ordering::Relaxed);
            debug!(stream_seq, "Redelivery of a pending message; ignored.");
            return None;
        }
        let decoded = match format.as_deref() {
            None | Some(FORMAT_JSONL) => decode_events(&message.payload),
            Some(other) => Err(format!(
                "unknown {FORMAT_HEADER} {:?}",
                other.chars().take(64).collect::<String>()
            )),
        };
        let events = match decoded {
            Ok(events) => events,
            Err(reason) => {
                self.stats.0.malformed.fetch_add(1, Ordering::Relaxed);
                warn!(
                    stream_seq,
                    subject = %message.subject,
                    n_bytes = message.payload.len(),
                    reason,
                    "Malformed message; terminated, it will not be redelivered."
                );
                if let Err(e) = acker.ack_with(AckKind::Term).await {
                    warn!(stream_seq, error = %e, "Terminating a malformed message failed; it may come back.");
                }
                return None;
            }
        };
        let n_events = events.len() as u64;
        self.sent += n_events;
        self.in_flight.insert(stream_seq);
        self.pending.push_back(Pending {
            acker,
            stream_seq,
            n_events,
            end: self.sent,
            touched: Instant::now(),
        });
        Some(events)
    }

    /// Acknowledges, in order, the pending messages whose events are committed.
    async fn ack_committed(&mut self, committed: u64) {
        while self.pending.front().is_some_and(|p| p.end <= committed) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.in_flight.remove(&p.stream_seq);
            match p.acker.ack().await {
                Ok(()) => {
                    self.stats.0.acked.fetch_add(1, Ordering::Relaxed);
                    self.stats.0.events.fetch_add(p.n_events, Ordering::Relaxed);
                }
                Err(e) => warn!(
                    stream_seq = p.stream_seq,
                    error = %e,
                    "Acknowledging a committed message failed; the server will redeliver it."
                ),
            }
        }
    }

    /// Resets the server's ack timer of messages that have waited long, so
    /// that a slow store does not make the server redeliver them.
    async fn send_progress(&mut self, after: Duration) {
        let now = Instant::now();
        for p in &mut self.pending {
            if now.duration_since(p.touched) >= after {
                if let Err(e) = p.acker.ack_with(AckKind::Progress).await {
                    debug!(stream_seq = p.stream_seq, error = %e, "Progress notice failed.");
                }
                p.touched = now;
            }
        }
    }
}
