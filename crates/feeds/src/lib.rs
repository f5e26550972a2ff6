//! Partner feed formats for infected-host records.
//!
//! A [`FeedWriter`] turns [`HostRecord`]s into one of three [`Format`]s that
//! network owners already ingest: Shadowserver-style CSV (the column names and
//! order of the `event4_sinkhole_http` report where a counterpart exists),
//! takedown's own JSON lines, and IntelMQ harmonized events (one flat JSON
//! object per line, as IntelMQ's file output writes them). [`FeedOptions`]
//! carries what is the same for every row: the feed name, the observation time
//! and the [`Severity`].
//!
//! ```
//! use takedown_event::{Asn, HostRecord, Network, Timestamp};
//! use takedown_feeds::{FeedOptions, FeedWriter, Format};
//!
//! let seen: Timestamp = "2026-11-29 14:00:00".parse()?;
//! let record = HostRecord {
//!     id: "r1".into(),
//!     ip: "192.0.2.7".parse()?,
//!     family: Some("rustock".parse()?),
//!     day: seen.day(),
//!     first_seen: seen,
//!     last_seen: seen,
//!     count: 3,
//!     network: Network { asn: Some(Asn(64500)), ..Network::default() },
//!     sample_url: None,
//!     sample_host: None,
//!     sample_agent: None,
//!     dst_port: 80,
//!     nat_suspected: false,
//!     modified: seen,
//! };
//! let mut w = FeedWriter::new(Format::Intelmq, Vec::new(), FeedOptions::new(seen))?;
//! w.write(&record)?;
//! let out = String::from_utf8(w.finish()?)?;
//! assert!(out.contains(r#""malware.name":"rustock""#));
//! assert!(out.contains(r#""source.asn":64500"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use takedown_event::{HostRecord, Timestamp};

mod csv_feed;
mod intelmq;

pub use csv_feed::CSV_COLUMNS;

/// Everything that can go wrong while writing a feed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing to the output failed; check that the destination is writable and has space.
    #[error("cannot write the feed: {0}; check that the output is writable and the disk has space")]
    Io(#[from] std::io::Error),
    /// The CSV writer failed, which in practice means the output failed underneath it.
    #[error("cannot write the CSV feed: {0}; check that the output is writable")]
    Csv(#[from] csv::Error),
    /// A record could not be serialised to JSON.
    #[error("cannot serialise a record to JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A format name was not one of `csv`, `jsonl` or `intelmq`.
    #[error("unknown feed format {0:?}: use csv, jsonl or intelmq")]
    UnknownFormat(String),
    /// A severity name was not one IntelMQ and Shadowserver accept.
    #[error("unknown severity {0:?}: use critical, high, medium, low or info")]
    UnknownSeverity(String),
}

/// The output formats a feed can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma-separated values with a header row, columns named and ordered as in
    /// Shadowserver's sinkhole HTTP report, followed by takedown's own columns.
    Csv,
    /// One JSON object per line: the serde form of [`HostRecord`].
    Jsonl,
    /// One IntelMQ harmonized event per line, with flat dotted keys.
    Intelmq,
}

impl Format {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Intelmq => "intelmq",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "json-lines" | "ndjson" => Ok(Format::Jsonl),
            "intelmq" => Ok(Format::Intelmq),
            _ => Err(Error::UnknownFormat(s.to_owned())),
        }
    }
}

/// How urgent a row is, in the shared vocabulary of Shadowserver and IntelMQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Actively exploited; Shadowserver's default for sinkhole rows.
    Critical,
    /// Malware drones and other likely compromise.
    High,
    /// Needs other conditions to matter.
    Medium,
    /// Deviation from best practice.
    Low,
    /// Informational only.
    Info,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Ok(Severity::Critical),
            "high" => Ok(Severity::High),
            "medium" => Ok(Severity::Medium),
            "low" => Ok(Severity::Low),
            "info" => Ok(Severity::Info),
            _ => Err(Error::UnknownSeverity(s.to_owned())),
        }
    }
}

/// What every row of one feed shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// The feed's name, written to IntelMQ's `feed.name`.
    pub feed_name: String,
    /// The provider, written to IntelMQ's `feed.provider`.
    pub provider: String,
    /// When the feed was produced, written to IntelMQ's `time.observation`.
    pub observed: Timestamp,
    /// The severity of every row.
    pub severity: Severity,
}

impl FeedOptions {
    /// Defaults for a feed produced at `observed`: named `takedown-sinkhole`,
    /// severity `critical` as in Shadowserver's sinkhole reports.
    pub fn new(observed: Timestamp) -> Self {
        FeedOptions {
            feed_name: "takedown-sinkhole".to_owned(),
            provider: "takedown".to_owned(),
            observed,
            severity: Severity::Critical,
        }
    }
}

/// Writes host records to an output in one [`Format`].
///
/// Rows are written as they come; call [`FeedWriter::finish`] to flush and
/// take the output back, so that write errors at the end are not lost.
pub struct FeedWriter<W: Write> {
    inner: Inner<W>,
    options: FeedOptions,
    rows: u64,
}

enum Inner<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Lines(W, Format),
}

impl<W: Write> fmt::Debug for FeedWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedWriter")
            .field("options", &self.options)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write> FeedWriter<W> {
    /// Starts a feed; for CSV this writes the header row.
    pub fn new(format: Format, out: W, options: FeedOptions) -> Result<Self, Error> {
        let inner = match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Inner::Csv(Box::new(w))
            }
            Format::Jsonl | Format::Intelmq => Inner::Lines(out, format),
        };
        Ok(FeedWriter {
            inner,
            options,
            rows: 0,
        })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &HostRecord) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Csv(w) => csv_feed::write_row(w, record, &self.options)?,
            Inner::Lines(w, Format::Jsonl) => {
                serde_json::to_writer(&mut *w, record)?;
                w.write_all(b"\n")?;
            }
            Inner::Lines(w, _) => {
                let obj = intelmq::event(record, &self.options);
                serde_json::to_writer(&mut *w, &obj)?;
                w.write_all(b"\n")?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// How many records have been written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and returns the output.
    pub fn finish(self) -> Result<W, Error> {
        match self.inner {
            Inner::Csv(w) => w.into_inner().map_err(|e| Error::Io(e.into_error())),
            Inner::Lines(mut w, _) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

/// Formats a timestamp the way Python's `datetime.isoformat()` does for UTC,
/// which is the form IntelMQ stores: `2026-11-29T14:00:01+00:00`, with
/// `.ffffff` only when there are microseconds.
pub(crate) fn iso_utc(t: Timestamp) -> String {
    let base = t.to_shadowserver().replacen(' ', "T", 1);
    let micros = t.micros().rem_euclid(1_000_000);
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_severity_names_round_trip() {
        for f in [Format::Csv, Format::Jsonl, Format::Intelmq] {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        assert!("xml".parse::<Format>().is_err());
        assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
        assert!("urgent".parse::<Severity>().is_err());
    }

    #[test]
    fn iso_matches_python_isoformat() {
        let t: Timestamp = "2026-11-29 14:00:01".parse().unwrap();
        assert_eq!(iso_utc(t), "2026-11-29T14:00:01+00:00");
        let t: Timestamp = "2026-11-29 14:00:01.25".parse().unwrap();
        assert_eq!(iso_utc(t), "2026-11-29T14:00:01.250000+00:00");
    }
}
