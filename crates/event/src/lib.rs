//! The shared vocabulary of takedown's botnet side.
//!
//! A sinkhole turns each check-in into an [`Event`]. Enrichment attaches a
//! [`Network`] (prefix, [`Asn`], AS name, [`CountryCode`]) to the source
//! address, and the store folds events into per-host records. Every crate on
//! that path speaks these types, so they live here, free of I/O.
//!
//! ```
//! use takedown_event::{Asn, CountryCode, Family};
//!
//! let asn: Asn = "AS3320".parse()?;
//! assert_eq!(asn, Asn(3320));
//! let cc: CountryCode = "de".parse()?;
//! assert_eq!(cc.as_str(), "DE");
//! let family: Family = "Rustock".parse()?;
//! assert_eq!(family.as_str(), "rustock");
//! # Ok::<(), takedown_event::Error>(())
//! ```
#![forbid(unsafe_code)]

mod event;
mod record;
mod types;

pub use event::{Event, EventKind, Network, Transport};
pub use record::HostRecord;
pub use types::{Asn, CountryCode, Family, SensorId, Timestamp};

/// Everything that can go wrong when parsing this crate's types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An AS number was not `N` or `ASN` with `N` fitting in 32 bits.
    #[error("invalid AS number {0:?}: expected digits, optionally prefixed with \"AS\"")]
    Asn(String),
    /// A country code was not two ASCII letters.
    #[error("invalid country code {0:?}: expected two letters (ISO 3166-1 alpha-2)")]
    Country(String),
    /// A family name was empty, too long, or used characters outside `[a-z0-9._-]`.
    #[error("invalid family name {0:?}: use 1-64 characters from a-z, 0-9, '.', '_' and '-'")]
    Family(String),
    /// A sensor id was empty, too long, or not printable ASCII without spaces.
    #[error("invalid sensor id {0:?}: use 1-64 printable ASCII characters without spaces")]
    Sensor(String),
    /// A timestamp was not RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC).
    #[error("invalid timestamp {0:?}: expected RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" in UTC")]
    Timestamp(String),
    /// An event kind or transport name was not one this crate knows.
    #[error("unknown {what} {value:?}: expected {expected}")]
    Unknown {
        /// What was being parsed.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// The names accepted instead.
        expected: &'static str,
    },
}
