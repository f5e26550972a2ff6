//! `takedown ingest`: consume the NATS JetStream event stream into the store.

use std::process::ExitCode;

use anyhow::Context;
use takedown_ingest::{Pipeline, PipelineConfig, StoreSink};
use takedown_stream::{Consumer, ConsumerConfig, Name, StreamConfig};
use tracing::info;

use crate::Global;
use crate::cmd::sinkhole::shutdown_signal;
use crate::support::{load_enricher, open_store, runtime};

/// Arguments of `takedown ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// NATS server URLs, comma-separated, such as `nats://10.0.0.5:4222`.
    #[arg(long = "from", value_name = "NATS_URL")]
    from: String,
    /// The durable consumer's name. Processes sharing a name share the work;
    /// the server remembers each name's position across restarts.
    #[arg(long, value_name = "NAME", default_value_t = ConsumerConfig::default().durable)]
    durable: Name,
    /// The stream to read, as the sinkholes' `[stream]` table names it.
    #[arg(long, value_name = "NAME", default_value_t = StreamConfig::default().stream)]
    stream: Name,
    /// Seconds the server waits for an acknowledgement before redelivering.
    #[arg(long, value_name = "SECS", default_value_t = ConsumerConfig::default().ack_wait_secs)]
    ack_wait: u64,
}

/// Runs `takedown ingest` until Ctrl-C or SIGTERM, then commits what it
/// received and acknowledges it.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    let store = open_store(global, &data)?.shared();
    let lookup = load_enricher(&data)?;
    let stream = StreamConfig {
        stream: args.stream,
        ..StreamConfig::with_servers(&args.from)
    };
    let consumer = ConsumerConfig {
        durable: args.durable,
        ack_wait_secs: args.ack_wait,
        ..ConsumerConfig::default()
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let c = Consumer::connect(&stream, &consumer)
            .await
            .context("connecting to the event stream")?;
        let pipeline = Pipeline::spawn(&PipelineConfig::default(), lookup, Box::new(StoreSink(store)))?;
        // One line on stdout once the consumer is bound, so scripts know
        // that from here on nothing published is missed.
        println!("consuming {} as {}", stream.stream, consumer.durable);
        info!(servers = %stream.servers.join(","), stream = %stream.stream, durable = %consumer.durable, "Ingesting from the event stream.");
        let stop = async {
            match shutdown_signal().await {
                Ok(reason) => info!(reason, "Shutting down."),
                Err(e) => tracing::warn!(error = %e, "Cannot wait for signals; stopping."),
            }
        };
        let report = c.run(pipeline, stop).await?;
        println!(
            "ingested {} events from {} messages; {} malformed messages rejected",
            report.events, report.acked, report.malformed
        );
        Ok(ExitCode::SUCCESS)
    })
}
