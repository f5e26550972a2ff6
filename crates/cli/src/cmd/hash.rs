//! `takedown hash`: PDQ hashes of image files and folders.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rayon::prelude::*;
use takedown_image::{Colour, Format, Hashed, Limits, Options};

use crate::Global;
use crate::support::{FoundFile, expand_paths, progress_bar};

/// Output format of `takedown hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// `hash,quality,path` lines (with `,transform` under --dihedral).
    Csv,
    /// One JSON object per line: {"path","hash","quality"} (plus "dihedral").
    Json,
}

/// How colour modes become the RGB samples that are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColourArg {
    /// As python-threatexchange and Hasher-Matcher-Actioner do (numpy array of the
    /// opened image): palette images hash their indices, CMYK its first three channels.
    Pytx,
    /// As Pillow's convert("RGB"): palettes looked up, CMYK converted.
    Rgb,
}

/// Arguments of `takedown hash`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
OUTPUT
  CSV (default), one line per image:
    <64 hex digits>,<quality 0-100>,<path>
  With --dihedral, eight lines per image, in the order orig, rot90, rot180, rot270,
  flipx, flipy, flipplus1, flipminus1:
    <hash>,<quality>,<path>,<transform>
  A path holding a comma, quote or line break is quoted CSV-style.
  JSON lines: {\"path\":..,\"hash\":..,\"quality\":..} and, with --dihedral,
  \"dihedral\":{\"orig\":..,\"rot90\":..,...}.

  Folders are walked recursively in path order; files in them that are not JPEG,
  PNG, GIF, WebP, BMP or TIFF (by content, not name) are skipped silently. Files
  named on the command line are always reported. Errors go to stderr as
  `error: <path>: <message>`; the rest is still hashed and the exit status is 1.

  Hashes equal those of Pillow decoding + PyPI pdqhash bit for bit. No EXIF
  orientation is applied.")]
pub(crate) struct Args {
    /// Image files or folders (walked recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print the eight dihedral (rotation and flip) hashes of each image.
    #[arg(long)]
    dihedral: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Csv)]
    format: OutputFormat,
    /// Refuse images whose header announces more pixels than this (decompression bombs).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Colour-mode semantics.
    #[arg(long, value_enum, default_value_t = ColourArg::Pytx)]
    colour: ColourArg,
}

enum Outcome {
    Hashed(Box<Hashed>),
    /// A walked file that is not an image.
    Skipped,
    Failed(String),
}

fn hash_one(job: &FoundFile, options: &Options) -> Outcome {
    let bytes = match std::fs::read(&job.path) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    if !job.explicit && Format::detect(&bytes).is_none() {
        return Outcome::Skipped;
    }
    match takedown_image::hash_bytes(&bytes, options) {
        Ok(h) => Outcome::Hashed(Box::new(h)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn write_result(
    out: &mut impl Write,
    path: &Path,
    h: &Hashed,
    format: OutputFormat,
) -> std::io::Result<()> {
    let name = path.to_string_lossy();
    let quality = h.quality.get();
    match format {
        OutputFormat::Csv => {
            let field = csv_field(&name);
            match &h.dihedral {
                None => writeln!(out, "{},{quality},{field}", h.hash),
                Some(d) => {
                    for (t, hash) in d.iter() {
                        writeln!(out, "{hash},{quality},{field},{}", t.as_str())?;
                    }
                    Ok(())
                }
            }
        }
        OutputFormat::Json => {
            let mut obj = serde_json::json!({
                "path": name,
                "hash": h.hash.to_string(),
                "quality": quality,
            });
            if let Some(d) = &h.dihedral {
                let map: serde_json::Map<String, serde_json::Value> = d
                    .iter()
                    .map(|(t, hash)| {
                        (
                            t.as_str().to_owned(),
                            serde_json::Value::String(hash.to_string()),
                        )
                    })
                    .collect();
                obj["dihedral"] = serde_json::Value::Object(map);
            }
            writeln!(out, "{obj}")
        }
    }
}

/// Runs `takedown hash`.
pub(crate) fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let options = Options {
        limits: Limits {
            max_pixels: args.max_pixels,
        },
        colour: match args.colour {
            ColourArg::Pytx => Colour::Pytx,
            ColourArg::Rgb => Colour::Rgb,
        },
        dihedral: args.dihedral,
    };
    let mut walk_errors = Vec::new();
    let jobs = expand_paths(&args.paths, &mut walk_errors);
    let mut failed = walk_errors.len();
    for e in &walk_errors {
        eprintln!("error: {e}");
    }
    let bar = progress_bar(
        jobs.len() as u64,
        "{bar:40} {pos}/{len} images, {per_sec}, eta {eta}",
        true,
    );
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Chunks keep the output streaming and in path order while every core hashes.
    const CHUNK: usize = 512;
    for chunk in jobs.chunks(CHUNK) {
        let outcomes: Vec<Outcome> = chunk
            .par_iter()
            .map(|job| {
                let o = hash_one(job, &options);
                bar.inc(1);
                o
            })
            .collect();
        for (job, outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                Outcome::Hashed(h) => {
                    write_result(&mut out, &job.path, &h, args.format).context("writing output")?
                }
                Outcome::Skipped => {}
                Outcome::Failed(msg) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("error: {}: {msg}", job.path.display()));
                }
            }
        }
        out.flush().context("writing output")?;
    }
    bar.finish_and_clear();
    if failed > 0 {
        tracing::warn!(
            failed,
            total = jobs.len(),
            "Some images could not be hashed."
        );
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
