//! Importers: sinkhole logs from elsewhere, turned into [`Event`]s.

use std::fmt;
use std::io::{BufReader, Read};
use std::str::FromStr;

use takedown_event::{Event, SensorId};

use crate::Error;

mod crlf;
pub(crate) mod fields;
mod jsonl;
mod shadowserver;

pub use jsonl::{JsonlReader, MAX_LINE};
pub use shadowserver::{Report, ShadowserverReader};

/// The log formats `takedown import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportFormat {
    /// Shadowserver's sinkhole reports in CSV (HTTP and non-HTTP), told apart by the header.
    Shadowserver,
    /// takedown's own JSON lines: one serde-encoded [`Event`] per line.
    Jsonl,
}

impl ImportFormat {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Shadowserver => "shadowserver",
            ImportFormat::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImportFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shadowserver" => Ok(ImportFormat::Shadowserver),
            "jsonl" | "json-lines" | "ndjson" => Ok(ImportFormat::Jsonl),
            _ => Err(Error::UnknownFormat(s.to_owned())),
        }
    }
}

/// A row that could not become an event, with the line it started on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line the row starts on, counting the header as line 1.
    pub line: u64,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A reader of any [`ImportFormat`], yielding events and bad rows.
#[derive(Debug)]
pub enum LogReader<R: Read> {
    /// A Shadowserver CSV report.
    Shadowserver(Box<ShadowserverReader<R>>),
    /// JSON lines.
    Jsonl(JsonlReader<BufReader<R>>),
}

impl<R: Read> LogReader<R> {
    /// Opens `input` as `format`; events from formats without a sensor column
    /// are attributed to `sensor`.
    pub fn new(format: ImportFormat, input: R, sensor: SensorId) -> Result<Self, Error> {
        Ok(match format {
            ImportFormat::Shadowserver => {
                LogReader::Shadowserver(Box::new(ShadowserverReader::new(input, sensor)?))
            }
            ImportFormat::Jsonl => {
                LogReader::Jsonl(JsonlReader::new(BufReader::with_capacity(1 << 16, input)))
            }
        })
    }

    /// The next event or bad row; `Ok(None)` at the end of input.
    pub fn next_event(&mut self) -> Result<Option<Result<Event, RowError>>, Error> {
        match self {
            LogReader::Shadowserver(r) => r.next_event(),
            LogReader::Jsonl(r) => r.next_event(),
        }
    }

    /// Appends up to `max` events to `out` and every bad row met on the way to
    /// `errors`. Returns `false` once the input is exhausted.
    pub fn read_chunk(
        &mut self,
        out: &mut Vec<Event>,
        max: usize,
        errors: &mut Vec<RowError>,
    ) -> Result<bool, Error> {
        let mut n = 0;
        while n < max {
            match self.next_event()? {
                None => return Ok(false),
                Some(Ok(e)) => {
                    out.push(e);
                    n += 1;
                }
                Some(Err(e)) => errors.push(e),
            }
        }
        Ok(true)
    }
}

/// Parses a whole in-memory log, for tests and fuzzing: the events, and every
/// bad row in order. Never panics, whatever the bytes.
pub fn parse_all(
    format: ImportFormat,
    input: &[u8],
    sensor: SensorId,
) -> Result<(Vec<Event>, Vec<RowError>), Error> {
    let mut r = LogReader::new(format, input, sensor)?;
    let mut events = Vec::new();
    let mut errors = Vec::new();
    while r.read_chunk(&mut events, 4096, &mut errors)? {}
    Ok((events, errors))
}

/// Wraps buffered input so the number of bytes consumed can be read while
/// parsing, for progress reporting.
pub fn counting<R: Read>(input: R) -> (CountingReader<R>, ByteCounter) {
    let counter = ByteCounter::default();
    (
        CountingReader {
            inner: input,
            counter: counter.clone(),
        },
        counter,
    )
}

/// A shared count of bytes read, updated by a [`CountingReader`].
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ByteCounter {
    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A reader that counts the bytes passing through it.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter
            .0
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
