//! The `takedown` command line: thin glue over the library crates.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod support;

/// Botnet disruption intelligence and known-image detection.
#[derive(Debug, Parser)]
#[command(name = "takedown", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand shares.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Directory holding all state: the store, bank indexes and enrichment data.
    /// Defaults to `$XDG_DATA_HOME/takedown`, else `~/.local/share/takedown`.
    #[arg(
        long = "data",
        env = "TAKEDOWN_DATA",
        global = true,
        value_name = "DIR"
    )]
    data: Option<PathBuf>,
    /// Keep banks, events and host records in PostgreSQL at this connection
    /// string (`postgres://user@host/db` or `host=/run/postgresql dbname=takedown`)
    /// instead of the SQLite file in the data directory. Bank indexes and
    /// enrichment data stay in the data directory.
    #[arg(long, env = "TAKEDOWN_STORE", global = true, value_name = "URL")]
    store: Option<String>,
    /// Log filter, such as `info` or `takedown_sinkhole=debug`.
    #[arg(long, env = "TAKEDOWN_LOG", global = true, default_value = "warn")]
    log: String,
}

impl Global {
    /// The PostgreSQL connection string, when the store lives there.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_deref().filter(|s| !s.is_empty())
    }

    /// The data directory, created if missing.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = match &self.data {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data directory {}: {e}; choose another with --data DIR or TAKEDOWN_DATA",
                dir.display()
            )
        })?;
        Ok(dir)
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("takedown"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/takedown")),
        None => anyhow::bail!("no data directory: pass --data DIR or set TAKEDOWN_DATA"),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the PDQ hash and quality of images (files or folders, recursively).
    Hash(cmd::hash::Args),
    /// Run the sinkhole listeners and store every check-in, enriched.
    Sinkhole(cmd::sinkhole::Args),
    /// Import sinkhole logs (Shadowserver CSV reports, takedown JSON lines) into the store.
    Import(cmd::import::Args),
    /// Consume the NATS JetStream event stream that sinkholes publish into the store.
    Ingest(cmd::ingest::Args),
    /// Export infected-host records as a partner feed (CSV, JSON lines, IntelMQ).
    Export(cmd::export::Args),
    /// Manage hash banks: create, list, set, import, export, delete.
    Bank(cmd::bank::Args),
    /// Look up images or PDQ hashes in the banks; prints query,bank,entry_id,transform,distance.
    Match(cmd::match_::Args),
    /// Run a sinkhole, the pipeline and a simulated botnet on loopback, then summarise the store.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.global.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Hash(args) => cmd::hash::run(args, &cli.global),
        Command::Sinkhole(args) => cmd::sinkhole::run(args, &cli.global),
        Command::Import(args) => cmd::import::run(args, &cli.global),
        Command::Ingest(args) => cmd::ingest::run(args, &cli.global),
        Command::Export(args) => cmd::export::run(args, &cli.global),
        Command::Bank(args) => cmd::bank::run(args, &cli.global),
        Command::Match(args) => cmd::match_::run(args, &cli.global),
        Command::Demo(args) => cmd::demo::run(args, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
