//! `takedown export`: infected-host records as a partner feed.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ipnet::IpNet;
use takedown_event::{Asn, CountryCode, Family, Timestamp};
use takedown_feeds::{FeedOptions, FeedWriter, Format, Severity};
use takedown_store::{NetworkSet, RecordFilter, Store};
use tracing::info;

use crate::Global;
use crate::support::open_store;

/// Records fetched from the store per query.
const PAGE: usize = 10_000;

/// Arguments of `takedown export`.
///
/// Filters of different kinds combine with AND; repeating one (`--asn 1
/// --asn 2`) means either value.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Output format: `csv` (Shadowserver's sinkhole columns), `jsonl`
    /// (takedown's record schema) or `intelmq` (IntelMQ events, one per line).
    #[arg(long, value_parser = parse_format, default_value = "csv")]
    format: Format,
    /// Only records of this family (repeatable).
    #[arg(long)]
    family: Vec<Family>,
    /// Only records in this AS (repeatable), such as `3320` or `AS3320`.
    #[arg(long)]
    asn: Vec<Asn>,
    /// Only records in this country (repeatable), ISO 3166 alpha-2.
    #[arg(long)]
    country: Vec<CountryCode>,
    /// Only records in this prefix (repeatable), such as `192.0.2.0/24`.
    #[arg(long)]
    cidr: Vec<IpNet>,
    /// Only records changed after this instant (RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC),
    /// for delta pulls.
    #[arg(long)]
    since: Option<Timestamp>,
    /// The severity written on every row.
    #[arg(long, value_parser = parse_severity, default_value = "critical")]
    severity: Severity,
    /// The feed name written to IntelMQ's `feed.name`.
    #[arg(long, default_value = "takedown-sinkhole")]
    feed_name: String,
    /// Write here instead of standard output; the file appears only once complete.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: takedown_feeds::Error| e.to_string())
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse().map_err(|e: takedown_feeds::Error| e.to_string())
}

/// Runs `takedown export`.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    let store = open_store(global, &data)?.shared();
    let filter = filter(&args);
    let mut options = FeedOptions::new(Timestamp::now());
    options.severity = args.severity;
    options.feed_name = args.feed_name.clone();

    let n = match &args.output {
        Some(path) => {
            // Write beside the target and rename, so readers never see half a feed.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let (file, tmp_path) = tmp.into_parts();
            let n = write(&*store, &filter, args.format, options, BufWriter::new(file))?;
            tmp_path
                .persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            n
        }
        None => write(
            &*store,
            &filter,
            args.format,
            options,
            BufWriter::new(std::io::stdout().lock()),
        )?,
    };
    info!(n_rows = n, format = %args.format, "Feed exported.");
    if args.output.is_some() {
        eprintln!("exported {n} records");
    }
    Ok(ExitCode::SUCCESS)
}

fn filter(args: &Args) -> RecordFilter {
    let mut f = RecordFilter {
        families: args.family.clone(),
        since: args.since,
        ..RecordFilter::default()
    };
    if !args.asn.is_empty() {
        f = f.within(NetworkSet {
            asns: args.asn.iter().copied().collect(),
            ..NetworkSet::default()
        });
    }
    if !args.country.is_empty() {
        f = f.within(NetworkSet {
            countries: args.country.iter().copied().collect(),
            ..NetworkSet::default()
        });
    }
    if !args.cidr.is_empty() {
        f = f.within(NetworkSet {
            cidrs: args.cidr.clone(),
            ..NetworkSet::default()
        });
    }
    f
}

fn write<W: Write>(
    store: &dyn Store,
    filter: &RecordFilter,
    format: Format,
    options: FeedOptions,
    out: W,
) -> anyhow::Result<u64> {
    let mut w = FeedWriter::new(format, out, options)?;
    let mut cursor = None;
    loop {
        let page = store
            .host_records(filter, cursor.as_ref(), PAGE)
            .context("reading host records")?;
        for r in &page.records {
            w.write(r)?;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let rows = w.rows();
    let mut out = w.finish()?;
    out.flush().context("writing the feed")?;
    Ok(rows)
}
