//! IP address to network enrichment: prefix, AS number, AS name and country.
//!
//! An [`Enricher`] answers, for a source address, which routed prefix and
//! origin AS it belongs to and which country it is in. Its data comes from
//! MaxMind-format databases ([`mmdb::Mmdb`], read by this crate's own reader)
//! and from range CSV files (`start,end,asn,org` and `start,end,country`),
//! all flattened into a [`PrefixTable`]: an exact longest-prefix table where
//! the most specific range wins.
//!
//! Loading from a directory ([`Enricher::from_dir`]) keeps the built tables
//! in a binary cache file next to the sources ([`CACHE_FILE`]), so later
//! starts read them back in tens of milliseconds instead of parsing the
//! sources again; [`Enricher::cache_use`] tells how a load went.
//!
//! The hot path, [`Enricher::enrich`], returns a small `Copy` value
//! ([`Enrichment`]) that borrows the AS name from the table; [`Enricher::lookup`]
//! builds the owned [`takedown_event::Network`].
//!
//! ```
//! use takedown_enrich::{EnricherBuilder, CsvKind};
//!
//! let asn_csv = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n2001:db8::,2001:db8::ffff,64500,Example\n";
//! let cc_csv = "1.0.0.0,1.0.3.255,AU\n";
//! let mut b = EnricherBuilder::new();
//! b.add_csv(asn_csv.as_bytes(), "asn-ipv4.csv", Some(CsvKind::Asn))?;
//! b.add_csv(cc_csv.as_bytes(), "country.csv", None)?;
//! let enricher = b.build();
//!
//! let hit = enricher.enrich("1.0.0.1".parse().unwrap());
//! assert_eq!(hit.asn.map(|a| a.0), Some(13335));
//! assert_eq!(hit.as_name(), Some("Cloudflare, Inc."));
//! assert_eq!(hit.country.map(|c| c.to_string()).as_deref(), Some("AU"));
//! assert_eq!(hit.prefix.map(|p| p.to_string()).as_deref(), Some("1.0.0.0/24"));
//!
//! let network = enricher.lookup("2001:db8::1".parse().unwrap());
//! assert_eq!(network.as_name.as_deref(), Some("Example"));
//! # Ok::<(), takedown_enrich::Error>(())
//! ```
#![forbid(unsafe_code)]

mod cache;
mod csvfmt;
mod enricher;
pub mod mmdb;
mod names;
mod table;

pub use cache::{CACHE_FILE, CacheMiss, CacheUse, fuzz as fuzz_cache};
pub use csvfmt::CsvKind;
pub use enricher::{
    AsValue, ENRICH_SUBDIR, Enricher, EnricherBuilder, Enrichment, Source, SourceKind,
};
pub use names::{NameId, Names};
pub use table::{Match, PrefixTable, PrefixTableBuilder};

/// Everything that can go wrong while loading enrichment data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Io {
        /// The path that failed.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An MMDB file is damaged or not an MMDB file.
    #[error(
        "invalid MMDB data: {0}; re-download the database or remove it from the enrich directory"
    )]
    Mmdb(String),
    /// A CSV row could not be parsed.
    #[error("{file}:{line}: {message}; fix or remove that row, or re-download the file")]
    Csv {
        /// The file name (or the name given for a reader).
        file: String,
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        message: String,
    },
    /// A CSV file's columns match neither supported layout.
    #[error(
        "{file}: cannot tell the CSV layout from {columns} columns; expected start,end,asn,org or start,end,country"
    )]
    CsvLayout {
        /// The file name.
        file: String,
        /// The column count seen.
        columns: usize,
    },
    /// A range had its start after its end, or ends of different families.
    #[error(
        "invalid range {start} - {end}: the start must not exceed the end and both must be the same IP version"
    )]
    Range {
        /// The range start as given.
        start: String,
        /// The range end as given.
        end: String,
    },
    /// More ranges than one table can index (about four billion).
    #[error("too many ranges for one table; split the data or drop redundant files")]
    TooManyRanges,
}
