//! `takedown hash`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::Global;

/// Arguments of `takedown hash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `takedown hash`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("hashing {} paths is not wired up yet", args.paths.len())
}
