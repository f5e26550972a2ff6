//! `takedown match`: look up images or hashes in the banks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use takedown_bank::{BankIndex, MatchOptions, Matcher};
use takedown_image::Options;
use takedown_index::{Query, Radius};
use takedown_pdq::{PdqHash, Quality, Transform};

use crate::Global;
use crate::support::{expand_paths, index_dir, open_store};

/// Arguments of `takedown match`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Image files or folders (matched with all eight rotations and flips), or
    /// 64-digit hex PDQ hashes (matched as given).
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Bank to consult (repeatable); by default every enabled bank.
    #[arg(long = "bank")]
    banks: Vec<String>,
    /// Match radius in bits, overriding each bank's own.
    #[arg(long)]
    radius: Option<u32>,
    /// Refuse query images below this PDQ quality.
    #[arg(long, default_value_t = 50)]
    min_quality: i64,
    /// Match images only as stored, without the seven other orientations.
    #[arg(long)]
    no_dihedral: bool,
}

/// Runs `takedown match`: prints `query,bank,entry_id,transform,distance` per hit.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    let store = open_store(global, &data)?.shared();
    let all = store.banks()?;
    for name in &args.banks {
        if !all.iter().any(|b| b.name.as_str() == name) {
            anyhow::bail!("no bank named {name:?}: list the banks with `takedown bank list`");
        }
    }
    let mut matcher = Matcher::new();
    for bank in all.iter().filter(|b| {
        if args.banks.is_empty() {
            b.enabled
        } else {
            args.banks.iter().any(|n| n == b.name.as_str())
        }
    }) {
        let (index, _) = takedown_bank::sync::load_index(&*store, bank, &index_dir(&data))?;
        matcher.add(BankIndex {
            name: Arc::from(bank.name.as_str()),
            enabled: bank.enabled,
            radius: Radius::new(bank.radius.bits())?,
            index,
        });
    }
    let options = MatchOptions {
        banks: (!args.banks.is_empty()).then(|| args.banks.clone()),
        radius: args.radius.map(Radius::new).transpose()?,
        min_quality: Quality::new(args.min_quality)?,
    };
    let hash_options = Options {
        dihedral: !args.no_dihedral,
        ..Options::default()
    };
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for input in &args.inputs {
        let queries: Vec<(String, Query, Option<Quality>)> = match input.parse::<PdqHash>() {
            Ok(h) => vec![(h.to_string(), Query::new(h), None)],
            Err(_) => image_queries(input, &hash_options, &mut failed),
        };
        for (label, query, quality) in queries {
            match matcher.find(&query, quality, &options) {
                Ok(hits) => {
                    for h in hits {
                        use std::io::Write;
                        writeln!(
                            out,
                            "{label},{},{},{},{}",
                            h.bank, h.entry_id, h.transform, h.distance
                        )?;
                    }
                }
                Err(e) => {
                    eprintln!("{label}: {e}");
                    failed = true;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Hashes the images at `input` (a file or a folder, recursively).
fn image_queries(
    input: &str,
    options: &Options,
    failed: &mut bool,
) -> Vec<(String, Query, Option<Quality>)> {
    let mut errors = Vec::new();
    let files = expand_paths(&[PathBuf::from(input)], &mut errors);
    for e in errors {
        eprintln!("{e}");
        *failed = true;
    }
    let mut out = Vec::new();
    for f in files {
        let label = f.path.display().to_string();
        let bytes = match std::fs::read(&f.path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{label}: cannot read: {e}");
                *failed = true;
                continue;
            }
        };
        // Files found in a folder that are no images are passed over, as
        // `takedown hash` does; a file named on the command line must be one.
        if !f.explicit && takedown_image::Format::detect(&bytes).is_none() {
            continue;
        }
        match takedown_image::hash_bytes(&bytes, options) {
            Ok(h) => {
                let query = match h.dihedral {
                    Some(d) => Query::with_transforms(Transform::ALL.iter().copied().zip(d.hashes)),
                    None => Query::new(h.hash),
                };
                out.push((label, query, Some(h.quality)));
            }
            Err(e) => {
                eprintln!("{label}: {e}");
                *failed = true;
            }
        }
    }
    out
}
