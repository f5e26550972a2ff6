//! `takedown sinkhole`: run the listeners and ingest what they record, into
//! the local store or, with `--publish` or a `[stream]` table, into the NATS
//! JetStream stream that `takedown ingest` consumes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use takedown_ingest::{EventSink, Lookup, Pipeline, PipelineConfig, StoreSink};
use takedown_sinkhole::{Config, ConfigFile, ListenerKind, Sinkhole};
use takedown_stream::{Publisher, StreamConfig};
use tracing::info;

use crate::Global;
use crate::support::{load_enricher, open_store, runtime};

/// Arguments of `takedown sinkhole`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The sinkhole's TOML config: listeners, families, limits, an optional
    /// `[ingest]` table of pipeline settings (batch size, flush window), and an
    /// optional `[stream]` table that publishes to NATS JetStream instead of
    /// writing the local store.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Publish events to the NATS JetStream stream at these comma-separated
    /// server URLs instead of writing the local store; `takedown ingest`
    /// stores them. Overrides the servers of a `[stream]` table, whose other
    /// settings (stream name, limits) still apply.
    #[arg(long, value_name = "NATS_URL")]
    publish: Option<String>,
}

/// The parts of a sinkhole config file.
struct Loaded {
    sinkhole: Config,
    ingest: PipelineConfig,
    stream: Option<StreamConfig>,
}

/// Runs `takedown sinkhole` until Ctrl-C or SIGTERM, then flushes the last batch.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    let Loaded {
        sinkhole: config,
        ingest,
        stream,
    } = load_config(&args.config)?;
    let stream = match (args.publish, stream) {
        (Some(urls), Some(table)) => Some(StreamConfig {
            servers: StreamConfig::with_servers(&urls).servers,
            ..table
        }),
        (Some(urls), None) => Some(StreamConfig::with_servers(&urls)),
        (None, table) => table,
    };
    // Publishing sinkholes keep no store: the ingest hosts do.
    let sink: Box<dyn EventSink> = match stream {
        Some(stream) => {
            let publisher =
                Publisher::connect(&stream).context("connecting to the event stream")?;
            info!(servers = %stream.servers.join(","), stream = %stream.stream, "Publishing to the event stream.");
            Box::new(publisher)
        }
        None => Box::new(StoreSink(open_store(global, &data)?.shared())),
    };
    let lookup = load_enricher(&data)?;
    let rt = runtime()?;
    rt.block_on(serve(config, ingest, lookup, sink))
}

/// Splits the config file into the sinkhole's part and the `[ingest]` and
/// `[stream]` tables.
fn load_config(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the sinkhole config {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let ingest = match table.remove("ingest") {
        Some(v) => v
            .try_into::<PipelineConfig>()
            .with_context(|| format!("the [ingest] table of {}", path.display()))?,
        None => PipelineConfig::default(),
    };
    let stream = table
        .remove("stream")
        .map(|v| {
            v.try_into::<StreamConfig>()
                .with_context(|| format!("the [stream] table of {}", path.display()))
        })
        .transpose()?;
    let file: ConfigFile = toml::Value::Table(table)
        .try_into()
        .with_context(|| format!("the sinkhole settings of {}", path.display()))?;
    let config = Config::try_from(file).with_context(|| format!("checking {}", path.display()))?;
    Ok(Loaded {
        sinkhole: config,
        ingest,
        stream,
    })
}

async fn serve(
    config: Config,
    ingest: PipelineConfig,
    lookup: Option<Arc<dyn Lookup>>,
    sink: Box<dyn EventSink>,
) -> anyhow::Result<ExitCode> {
    let mut pipeline = Pipeline::spawn(&ingest, lookup, sink)?;
    let (sinkhole, events) = Sinkhole::start(config).context("starting the listeners")?;
    pipeline.attach(events);
    // One line per listener on stdout, so scripts can find ports chosen by the OS.
    let mut out = std::io::stdout().lock();
    for l in sinkhole.listeners() {
        let kind = match l.kind {
            ListenerKind::Http => "http",
            ListenerKind::Tcp => "tcp",
            ListenerKind::DnsUdp => "dns-udp",
            ListenerKind::DnsTcp => "dns-tcp",
        };
        writeln!(out, "listening {kind} {}", l.addr)?;
        info!(kind, addr = %l.addr, "Listening.");
    }
    out.flush()?;
    drop(out);

    let reason = tokio::select! {
        r = shutdown_signal() => r?,
        _ = writer_stopped(&pipeline) => "writer stopped",
    };
    info!(reason, "Shutting down.");
    sinkhole.shutdown().await;
    let stats = pipeline.shutdown().await?;
    info!(
        n_events = stats.committed,
        n_batches = stats.batches,
        commit_mean_us = u64::try_from(stats.commit_mean().as_micros()).unwrap_or(u64::MAX),
        "Sinkhole stopped; every received event is committed."
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn shutdown_signal() -> anyhow::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            Ok("interrupt")
        }
        _ = term.recv() => Ok("terminate"),
    }
}

/// Resolves when the writer has ended on its own, which only a store failure causes.
async fn writer_stopped(p: &Pipeline) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        if p.is_finished() {
            return;
        }
    }
}
