//! The pipeline's settings, as they appear in a config file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Settings of the ingest pipeline.
///
/// Every field has a default, so an empty `[ingest]` table is valid. The
/// defaults suit a live sinkhole; imports raise `batch_size` because they
/// care about throughput, not latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events committed in one store transaction. Larger batches amortise
    /// the commit; the flush window still bounds how long any event waits.
    pub batch_size: usize,
    /// Longest an event may wait in the writer before its batch is committed,
    /// in milliseconds (1 to 1000). This is both the freshness bound (a
    /// check-in is queryable within it, plus one commit) and the durability
    /// bound (a crash loses at most the events of this window).
    pub flush_window_ms: u64,
    /// How long the writer waits for more input once the input goes quiet
    /// before committing early, in milliseconds (0 to the flush window). Under
    /// a trickle of check-ins this makes commits near-immediate; under load
    /// batches fill instead.
    pub linger_ms: u64,
    /// Most events grouped into one chunk between stages.
    pub chunk_size: usize,
    /// Capacity, in chunks, of the channel from the source to the enrich stage.
    pub enrich_queue: usize,
    /// Capacity, in chunks, of the channel from the enrich stage to the writer.
    pub writer_queue: usize,
    /// How many times a failed commit is retried (with doubling back-off from
    /// 100 ms) before the pipeline stops with an error.
    pub commit_retries: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 8192,
            flush_window_ms: 250,
            linger_ms: 5,
            chunk_size: 512,
            enrich_queue: 64,
            writer_queue: 64,
            commit_retries: 4,
        }
    }
}

impl PipelineConfig {
    /// Settings for bulk import: big transactions, since an import has no
    /// reader waiting on freshness. A record seen in a batch costs one delta
    /// however often it appears there, so larger batches also leave fewer
    /// deltas to merge.
    pub fn for_import() -> Self {
        PipelineConfig {
            batch_size: 50_000,
            flush_window_ms: 1000,
            linger_ms: 50,
            chunk_size: 2048,
            enrich_queue: 16,
            writer_queue: 16,
            commit_retries: 0,
        }
    }

    /// Checks every setting's range; the pipeline runs only on checked settings.
    pub(crate) fn check(&self) -> Result<Checked, Error> {
        let range = |field: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config {
                    field,
                    reason: format!("{v} is outside {lo}..={hi}"),
                })
            }
        };
        let u = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        range("batch_size", u(self.batch_size), 1, 1_000_000)?;
        range("flush_window_ms", self.flush_window_ms, 1, 1000)?;
        range("linger_ms", self.linger_ms, 0, self.flush_window_ms)?;
        range("chunk_size", u(self.chunk_size), 1, 65_536)?;
        range("enrich_queue", u(self.enrich_queue), 1, 4096)?;
        range("writer_queue", u(self.writer_queue), 1, 4096)?;
        range("commit_retries", u64::from(self.commit_retries), 0, 16)?;
        Ok(Checked {
            batch_size: self.batch_size,
            flush_window: Duration::from_millis(self.flush_window_ms),
            linger: Duration::from_millis(self.linger_ms),
            chunk_size: self.chunk_size,
            enrich_queue: self.enrich_queue,
            writer_queue: self.writer_queue,
            commit_retries: self.commit_retries,
        })
    }

    /// The flush window as a duration.
    pub fn flush_window(&self) -> Duration {
        Duration::from_millis(self.flush_window_ms)
    }
}

/// Settings known to be in range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    pub(crate) batch_size: usize,
    pub(crate) flush_window: Duration,
    pub(crate) linger: Duration,
    pub(crate) chunk_size: usize,
    pub(crate) enrich_queue: usize,
    pub(crate) writer_queue: usize,
    pub(crate) commit_retries: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_import_settings_are_valid() {
        PipelineConfig::default().check().unwrap();
        PipelineConfig::for_import().check().unwrap();
        assert!(PipelineConfig::default().flush_window() <= Duration::from_secs(1));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let c = PipelineConfig {
            flush_window_ms: 5000,
            ..PipelineConfig::default()
        };
        let e = c.check().unwrap_err();
        assert!(e.to_string().contains("flush_window_ms"), "{e}");
        let c = PipelineConfig {
            batch_size: 0,
            ..PipelineConfig::default()
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn toml_rejects_unknown_keys_and_fills_defaults() {
        let c: PipelineConfig = toml::from_str("batch_size = 100").unwrap();
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.flush_window_ms, PipelineConfig::default().flush_window_ms);
        assert!(toml::from_str::<PipelineConfig>("batch_sise = 100").is_err());
    }
}
