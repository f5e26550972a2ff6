//! Hash banks: list formats in and out, and matching across many banks.
//!
//! The key types are:
//!
//! - [`Format`], [`Parser`] and [`Record`]: read CSV, JSON lines, reference
//!   hash lists and threatexchange signal files line by line, with per-line
//!   errors the caller may skip or treat as fatal; [`write()`] writes them.
//! - [`Matcher`]: one exact index per bank, each with its own enabled flag
//!   and radius; [`Matcher::find`] returns [`MatchHit`]s across banks and
//!   refuses low-quality query hashes.
//! - [`sync::load_index`]: keeps a bank's index file in the data directory
//!   current with the store, applying only the changes since it was written.
//!
//! ```
//! use takedown_bank::{Format, parse_str};
//!
//! let text = "hash,quality,labels\n\
//!     f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,100,a;b\n\
//!     nothex,50,\n";
//! let results: Vec<_> = parse_str(Format::Csv, text).collect();
//! assert_eq!(results.len(), 2);
//! assert_eq!(results[0].as_ref().unwrap().labels, ["a", "b"]);
//! assert!(results[1].as_ref().unwrap_err().to_string().starts_with("line 3:"));
//! ```
#![forbid(unsafe_code)]

mod format;
mod matcher;
pub mod sync;

pub use format::{Format, MAX_LINE, Parser, Record, fold, fuzz_parse, parse_str, write};
pub use matcher::{BankIndex, MatchHit, MatchOptions, Matcher};

use takedown_pdq::Quality;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One line of a hash list could not be read; skip it or fix the file.
    #[error("line {line}: {message}")]
    Line {
        /// The 1-based line number.
        line: u64,
        /// What was wrong with it.
        message: String,
    },
    /// The list held no hash at all.
    #[error("the list holds no hashes: check that the file and its format are the intended ones")]
    Empty,
    /// A format name was not recognised.
    #[error("unknown list format {0:?}: expected csv, jsonl, hashes or signals")]
    Format(String),
    /// Reading or writing a list failed.
    #[error("cannot read or write the hash list: {0}; check the path, permissions and free space")]
    Io(#[from] std::io::Error),
    /// A query hash's quality was below the matching threshold.
    #[error(
        "query hash quality {quality} is below {min}: such flat images match too much; pass a lower minimum quality to match anyway"
    )]
    LowQuality {
        /// The hash's quality.
        quality: Quality,
        /// The minimum in force.
        min: Quality,
    },
    /// A bank named in a match request is not loaded.
    #[error("no bank named {0:?} is loaded: list the banks to see which exist")]
    NoSuchBank(String),
    /// An index operation failed.
    #[error(transparent)]
    Index(#[from] takedown_index::Error),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] takedown_store::Error),
}
