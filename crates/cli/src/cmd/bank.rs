//! `takedown bank`: create, list, import, export and delete hash banks.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::ProgressBar;
use takedown_bank::{Format, Parser, Record};
use takedown_pdq::Quality;
use takedown_store::{BankName, MatchRadius, NewEntry, Store};

use crate::Global;
use crate::support::{index_dir, open_store, progress_bar};

/// Arguments of `takedown bank`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create an empty bank.
    Create {
        /// Bank name: letters, digits, '.', '_' and '-'.
        name: String,
        /// Free text describing where the hashes come from.
        #[arg(long, default_value = "")]
        description: String,
        /// Match radius in bits (PDQ's recommended threshold is 31).
        #[arg(long, default_value_t = 31)]
        radius: i64,
        /// Create the bank disabled: only matched when named explicitly.
        #[arg(long)]
        disabled: bool,
    },
    /// List banks: name, enabled, radius, entries, version, description.
    List,
    /// Change a bank's settings.
    Set {
        /// Bank name.
        name: String,
        /// Enable (true) or disable (false) the bank for default matching.
        #[arg(long)]
        enabled: Option<bool>,
        /// New match radius in bits.
        #[arg(long)]
        radius: Option<i64>,
    },
    /// Import hashes from list files in one transaction: all or nothing.
    Import {
        /// Bank name.
        name: String,
        /// Files to read (CSV, JSON lines, hash lists, signal files); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// List format; by default guessed from each file's extension, else a hash list.
        #[arg(long)]
        format: Option<Format>,
        /// Skip malformed lines (reported on standard error) instead of rejecting the import.
        #[arg(long)]
        skip_bad: bool,
        /// Quality recorded for hashes whose list gives none.
        #[arg(long, default_value_t = 100)]
        default_quality: i64,
        /// Label added to every imported hash (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Source recorded for hashes whose list gives none; defaults to the file name.
        #[arg(long)]
        source: Option<String>,
    },
    /// Write a bank's hashes to standard output or a file.
    Export {
        /// Bank name.
        name: String,
        /// List format.
        #[arg(long, default_value = "csv")]
        format: Format,
        /// Output file; standard output by default.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete a bank, its entries and its index.
    Delete {
        /// Bank name.
        name: String,
    },
}

/// Runs `takedown bank`.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    let store = open_store(global, &data)?.shared();
    match args.action {
        Action::Create {
            name,
            description,
            radius,
            disabled,
        } => {
            let name: BankName = name.parse()?;
            let radius = MatchRadius::new(radius)?;
            store.create_bank(&name, &description)?;
            store.set_bank_radius(&name, radius)?;
            if disabled {
                store.set_bank_enabled(&name, false)?;
            }
            eprintln!(
                "Created bank {name} (radius {radius}{}).",
                if disabled { ", disabled" } else { "" }
            );
        }
        Action::List => {
            println!("name,enabled,radius,entries,version,description");
            for b in store.banks()? {
                println!(
                    "{},{},{},{},{},{}",
                    b.name,
                    b.enabled,
                    b.radius,
                    b.entries,
                    b.version,
                    b.description.replace([',', '\n', '\r'], " ")
                );
            }
        }
        Action::Set {
            name,
            enabled,
            radius,
        } => {
            let name: BankName = name.parse()?;
            if enabled.is_none() && radius.is_none() {
                anyhow::bail!("nothing to change: pass --enabled true|false and/or --radius BITS");
            }
            if let Some(e) = enabled {
                store.set_bank_enabled(&name, e)?;
            }
            if let Some(r) = radius {
                store.set_bank_radius(&name, MatchRadius::new(r)?)?;
            }
        }
        Action::Import {
            name,
            files,
            format,
            skip_bad,
            default_quality,
            labels,
            source,
        } => {
            let name: BankName = name.parse()?;
            if store.bank(&name)?.is_none() {
                anyhow::bail!(
                    "no bank named {name:?}: create it first with `takedown bank create {name}`"
                );
            }
            let default_quality = Quality::new(default_quality)?;
            return import(
                &*store,
                &data,
                &name,
                &files,
                format,
                skip_bad,
                default_quality,
                &labels,
                source.as_deref(),
            );
        }
        Action::Export {
            name,
            format,
            output,
        } => {
            let name: BankName = name.parse()?;
            let mut records = Vec::new();
            store.scan_entries(&name, &mut |e| {
                records.push(Record {
                    hash: e.hash,
                    quality: Some(e.quality),
                    labels: e.labels,
                    source: Some(e.source).filter(|s| !s.is_empty()),
                });
                std::ops::ControlFlow::Continue(())
            })?;
            let n = match output {
                Some(path) => {
                    let f = File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    takedown_bank::write(format, records, std::io::BufWriter::new(f))?
                }
                None => takedown_bank::write(format, records, std::io::stdout().lock())?,
            };
            eprintln!("Exported {n} hashes from {name}.");
        }
        Action::Delete { name } => {
            let name: BankName = name.parse()?;
            let existed = store.delete_bank(&name)?;
            takedown_bank::sync::remove_index(&index_dir(&data), &name)?;
            if !existed {
                anyhow::bail!("no bank named {name:?}: list the banks with `takedown bank list`");
            }
            eprintln!("Deleted bank {name}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[allow(clippy::too_many_arguments)]
fn import(
    store: &dyn Store,
    data: &Path,
    name: &BankName,
    files: &[PathBuf],
    format: Option<Format>,
    skip_bad: bool,
    default_quality: Quality,
    labels: &[String],
    source: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut readers: Vec<(String, Format, Box<dyn Read>, u64)> = Vec::new();
    for path in files {
        let fmt = format
            .or_else(|| Format::from_path(path))
            .unwrap_or(Format::HashList);
        if path.as_os_str() == "-" {
            readers.push(("stdin".into(), fmt, Box::new(std::io::stdin()), 0));
        } else {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            readers.push((label, fmt, Box::new(f), len));
        }
    }
    let total: u64 = readers.iter().map(|r| r.3).sum();
    let bar = progress_bar(
        total,
        "{bar:40} {bytes}/{total_bytes} {per_sec} {msg}",
        true,
    );
    let mut skipped = 0u64;
    let mut shown = 0u32;
    let mut entries = readers.into_iter().flat_map(|(label, fmt, reader, _)| {
        let reader = BufReader::with_capacity(
            1 << 16,
            Counting {
                inner: reader,
                bar: bar.clone(),
            },
        );
        let file_source = source.map(str::to_owned).unwrap_or_else(|| label.clone());
        Parser::new(fmt, reader).map(move |r| (label.clone(), file_source.clone(), r))
    });
    let mut iter = std::iter::from_fn(|| {
        loop {
            let (label, file_source, r) = entries.next()?;
            return Some(match r {
                Ok(rec) => {
                    let mut e = NewEntry::new(rec.hash, rec.quality.unwrap_or(default_quality));
                    e.source = rec.source.unwrap_or(file_source);
                    e.labels = rec.labels;
                    e.labels.extend(labels.iter().cloned());
                    Ok(e)
                }
                Err(takedown_bank::Error::Line { line, message }) if skip_bad => {
                    skipped += 1;
                    if shown < 20 {
                        shown += 1;
                        bar.suspend(|| eprintln!("skipped {label}:{line}: {message}"));
                    }
                    continue;
                }
                Err(e) => Err(takedown_store::Error::Import(
                    format!("{label}: {e}").into(),
                )),
            });
        }
    });
    let report = store.import_entries(name, &mut iter);
    bar.finish_and_clear();
    let report = report?;
    eprintln!(
        "Imported into {name}: {} new, {} already present (labels merged){}.",
        report.added,
        report.merged,
        if skipped > 0 {
            format!(", {skipped} bad lines skipped")
        } else {
            String::new()
        }
    );
    // Bring the index up to date now, so the first match does not pay for it.
    if let Some(bank) = store.bank(name)? {
        takedown_bank::sync::load_index(store, &bank, &index_dir(data))?;
    }
    Ok(ExitCode::SUCCESS)
}
