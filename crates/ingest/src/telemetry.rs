//! Counters the stages update, and the typed events that update them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tracing::debug;

/// Live counters of one pipeline, shared by its stages and readable at any time.
#[derive(Debug, Clone, Default)]
pub struct Telemetry(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    events_in: AtomicU64,
    enriched: AtomicU64,
    committed: AtomicU64,
    batches: AtomicU64,
    commit_micros: AtomicU64,
    commit_micros_max: AtomicU64,
    commit_failures: AtomicU64,
}

/// A copy of a pipeline's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetrySnapshot {
    /// Events that entered the pipeline.
    pub events_in: u64,
    /// Events the enrich stage attributed to a network (a lookup hit).
    pub enriched: u64,
    /// Events committed to the store.
    pub committed: u64,
    /// Store transactions committed.
    pub batches: u64,
    /// Total time spent in commits.
    pub commit_time: Duration,
    /// The slowest commit.
    pub commit_max: Duration,
    /// Commit attempts that failed (and were retried or ended the pipeline).
    pub commit_failures: u64,
}

impl TelemetrySnapshot {
    /// The mean commit latency, or zero before the first commit.
    pub fn commit_mean(&self) -> Duration {
        match u32::try_from(self.batches) {
            Ok(0) | Err(_) => Duration::ZERO,
            Ok(n) => self.commit_time / n,
        }
    }
}

/// What the stages report; each variant updates counters and logs at debug.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InternalEvent {
    /// A chunk entered the pipeline.
    Received { n_events: usize },
    /// A chunk passed the enrich stage; `n_hits` had a network.
    Enriched { n_hits: usize },
    /// A batch was committed.
    BatchCommitted { n_events: usize, latency: Duration },
    /// A commit attempt failed.
    CommitFailed { n_events: usize, attempt: u32 },
}

impl Telemetry {
    pub(crate) fn emit(&self, e: InternalEvent) {
        let c = &self.0;
        match e {
            InternalEvent::Received { n_events } => {
                c.events_in.fetch_add(n_events as u64, Relaxed);
            }
            InternalEvent::Enriched { n_hits } => {
                c.enriched.fetch_add(n_hits as u64, Relaxed);
            }
            InternalEvent::BatchCommitted { n_events, latency } => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                c.committed.fetch_add(n_events as u64, Relaxed);
                c.batches.fetch_add(1, Relaxed);
                c.commit_micros.fetch_add(micros, Relaxed);
                c.commit_micros_max.fetch_max(micros, Relaxed);
                debug!(n_events, latency_us = micros, "Batch committed.");
            }
            InternalEvent::CommitFailed { n_events, attempt } => {
                c.commit_failures.fetch_add(1, Relaxed);
                debug!(n_events, attempt, "Commit attempt failed.");
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> TelemetrySnapshot {
        let c = &self.0;
        TelemetrySnapshot {
            events_in: c.events_in.load(Relaxed),
            enriched: c.enriched.load(Relaxed),
            committed: c.committed.load(Relaxed),
            batches: c.batches.load(Relaxed),
            commit_time: Duration::from_micros(c.commit_micros.load(Relaxed)),
            commit_max: Duration::from_micros(c.commit_micros_max.load(Relaxed)),
            commit_failures: c.commit_failures.load(Relaxed),
        }
    }
}
