//! `takedown import`: sinkhole logs from elsewhere into the store.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use takedown_event::SensorId;
use takedown_ingest::{
    ImportFormat, LogReader, Lookup, Pipeline, PipelineConfig, RowError, StoreSink,
};
use takedown_store::Store;
use tracing::{debug, info};

use crate::Global;
use crate::support::{load_enricher, open_store, progress_bar, runtime};

/// How many bad rows are printed; the rest are only counted.
const MAX_REPORTED: usize = 50;

/// Record deltas that may pend during an import before the store merges
/// them into host records. Far above the store's default, so a record seen
/// all through a large report is merged once or twice instead of every few
/// batches; the import merges the rest at its end.
const IMPORT_COMPACT_AT: u64 = 1 << 20;

/// Arguments of `takedown import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log format: `shadowserver` (sinkhole and sinkhole HTTP reports in
    /// CSV, told apart by the header) or `jsonl` (takedown's own event lines).
    #[arg(long, value_parser = parse_format)]
    format: ImportFormat,
    /// What to do with rows that do not parse: `skip` reports them by line and
    /// imports the rest; `reject` checks every file first and imports nothing
    /// if any row is bad.
    #[arg(long, value_enum, default_value_t = OnError::Skip)]
    on_error: OnError,
    /// The sensor id recorded on imported events (the JSON-lines format keeps
    /// each event's own).
    #[arg(long, default_value = "shadowserver")]
    sensor: SensorId,
    /// Events per store transaction.
    #[arg(long, default_value_t = PipelineConfig::for_import().batch_size)]
    batch_size: usize,
    /// Do not show a progress bar, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// Files to import.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// The policy for bad rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnError {
    /// Report bad rows and import the rest.
    Skip,
    /// Import nothing if any row is bad.
    Reject,
}

fn parse_format(s: &str) -> Result<ImportFormat, String> {
    s.parse().map_err(|e: takedown_ingest::Error| e.to_string())
}

/// Runs `takedown import`.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    for f in &args.files {
        anyhow::ensure!(
            f.is_file(),
            "{} is not a readable file; pass log files to import",
            f.display()
        );
    }
    if args.on_error == OnError::Reject {
        let bad = check_all(&args)?;
        if bad > 0 {
            eprintln!("{bad} bad rows; nothing was imported (--on-error reject)");
            return Ok(ExitCode::FAILURE);
        }
    }
    let opened = open_store(global, &data)?;
    let sqlite = opened.sqlite().cloned();
    if let Some(s) = &sqlite {
        s.set_compact_threshold(IMPORT_COMPACT_AT);
    }
    let store = opened.shared();
    let lookup = load_enricher(&data)?;
    let config = PipelineConfig {
        batch_size: args.batch_size,
        ..PipelineConfig::for_import()
    };
    let rt = runtime()?;
    let started = Instant::now();
    let outcome = rt.block_on(import(&args, config, lookup, store, sqlite))?;
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        outcome.committed as f64 / secs
    } else {
        0.0
    };
    info!(
        n_events = outcome.committed,
        n_bad = outcome.bad,
        n_batches = outcome.batches,
        secs,
        "Import finished."
    );
    eprintln!(
        "imported {} events from {} file(s) in {:.2} s ({:.0} events/s); {} enriched; {} bad rows skipped",
        outcome.committed,
        args.files.len(),
        secs,
        rate,
        outcome.enriched,
        outcome.bad
    );
    Ok(ExitCode::SUCCESS)
}

struct Outcome {
    committed: u64,
    enriched: u64,
    batches: u64,
    bad: u64,
}

async fn import(
    args: &Args,
    config: PipelineConfig,
    lookup: Option<Arc<dyn Lookup>>,
    store: Arc<dyn Store>,
    sqlite: Option<Arc<takedown_store::SqliteStore>>,
) -> anyhow::Result<Outcome> {
    let pipeline = Pipeline::spawn(&config, lookup, Box::new(StoreSink(Arc::clone(&store))))?;
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(
        total,
        "{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)",
        !args.quiet,
    );
    let mut bad = 0u64;
    let mut done_bytes = 0u64;
    for path in &args.files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let (reader, counter) = takedown_ingest::counting(file);
        let sender = pipeline.sender();
        let format = args.format;
        let sensor = args.sensor.clone();
        let chunk = config.chunk_size;
        let name = path.display().to_string();
        let mut feeder = tokio::task::spawn_blocking(move || {
            feed(format, reader, sensor, chunk, &name, |c| {
                sender.blocking_send(c)
            })
        });
        // Tick the progress bar while the file is read.
        let result = loop {
            tokio::select! {
                r = &mut feeder => break r,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if !bar.is_hidden() {
                        bar.set_position(done_bytes + counter.bytes());
                        bar.set_message(format!(
                            "{} events committed",
                            pipeline.telemetry().snapshot().committed
                        ));
                    }
                }
            }
        };
        done_bytes += counter.bytes();
        match result.context("the import reader stopped abnormally")? {
            Ok(n_bad) => bad += n_bad,
            Err(e) => {
                // The pipeline may have stopped because the store failed;
                // that error explains more than the reader's.
                let stopped = pipeline.is_finished();
                if stopped {
                    pipeline.shutdown().await?;
                }
                return Err(e).with_context(|| format!("importing {}", path.display()));
            }
        }
    }
    let stats = pipeline.shutdown().await?;
    // Every batch is durable already; this merges the record deltas left
    // pending, so the records are ready when the import returns.
    // (PostgreSQL merges records as each batch commits.)
    if let Some(sqlite) = sqlite {
        tokio::task::spawn_blocking(move || sqlite.compact())
            .await
            .context("the record merge stopped abnormally")?
            .context("merging the imported events into host records")?;
    }
    bar.finish_and_clear();
    Ok(Outcome {
        committed: stats.committed,
        enriched: stats.enriched,
        batches: stats.batches,
        bad,
    })
}

/// Reads one input to the end, handing chunks of events to `send` and
/// printing the first bad rows; returns how many rows were bad.
fn feed<R: Read>(
    format: ImportFormat,
    input: R,
    sensor: SensorId,
    chunk: usize,
    name: &str,
    mut send: impl FnMut(Vec<takedown_event::Event>) -> Result<(), takedown_ingest::Error>,
) -> anyhow::Result<u64> {
    let mut reader = LogReader::new(format, input, sensor)?;
    if let LogReader::Shadowserver(r) = &reader {
        info!(file = name, report = %r.report(), "Importing a Shadowserver report.");
    }
    let mut errors: Vec<RowError> = Vec::new();
    let mut bad = 0u64;
    loop {
        let mut events = Vec::with_capacity(chunk);
        let more = reader.read_chunk(&mut events, chunk, &mut errors)?;
        for e in errors.drain(..) {
            bad += 1;
            if bad <= MAX_REPORTED as u64 {
                debug!(file = name, line = e.line, reason = %e.reason, "Bad row skipped.");
                eprintln!("{name}:{}: {}", e.line, e.reason);
            }
        }
        if !events.is_empty() {
            send(events)?;
        }
        if !more {
            break;
        }
    }
    if bad > MAX_REPORTED as u64 {
        eprintln!(
            "{name}: {} more bad rows not shown",
            bad - MAX_REPORTED as u64
        );
    }
    Ok(bad)
}

/// The validation pass of `--on-error reject`: parses every file, prints the
/// first bad rows, and returns how many there are.
fn check_all(args: &Args) -> anyhow::Result<u64> {
    let mut bad = 0;
    for path in &args.files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        bad += check(args.format, file, args.sensor.clone(), path)?;
    }
    Ok(bad)
}

fn check<R: Read>(
    format: ImportFormat,
    input: R,
    sensor: SensorId,
    path: &Path,
) -> anyhow::Result<u64> {
    let name = path.display().to_string();
    feed(format, input, sensor, 8192, &name, |_| Ok(())).with_context(|| format!("checking {name}"))
}
