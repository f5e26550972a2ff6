//! Hash list formats: parsing with per-line errors, and writing.
//!
//! | format | one line | notes |
//! | --- | --- | --- |
//! | [`Format::Csv`] | `hash[,label...]`, or columns named by a header | header names `hash`/`pdq_hash`/`signal`/`signal_value`, `quality`, `source`, `labels`/`tags` (`;`-separated), `signal_type` (must be `pdq`); other named columns become labels |
//! | [`Format::JsonLines`] | `{"hash":..,"quality":..,"labels":[..],"source":..}` | `signal`/`pdq_hash` and `tags` are accepted as aliases |
//! | [`Format::HashList`] | `hash[,quality][,metadata]`, optionally `hash=` prefixed | the reference tools' hash files, `hash,quality,file` hasher output, and `key=value` detail lines |
//! | [`Format::SignalList`] | `pdq <hash>` | the python-threatexchange local-file exchange; other signal types are line errors |
//!
//! Blank lines and lines starting with `#` are skipped in the text formats.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use takedown_pdq::{PdqHash, Quality};

use crate::Error;

/// The longest line accepted; longer lines are reported, not buffered.
pub const MAX_LINE: usize = 64 * 1024;

/// A hash list format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma-separated values; see the module documentation.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// The reference tools' plain hash files.
    HashList,
    /// `signal_type signal` lines, as python-threatexchange's file exchange reads.
    SignalList,
}

impl Format {
    /// All formats, for help texts.
    pub const ALL: [Format; 4] = [
        Format::Csv,
        Format::JsonLines,
        Format::HashList,
        Format::SignalList,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::HashList => "hashes",
            Format::SignalList => "signals",
        }
    }

    /// Guesses the format from a file extension: `.csv`, `.jsonl`/`.ndjson`/`.json`,
    /// `.txt`/`.dat`/`.pdq` (hash list).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            "txt" | "dat" | "pdq" | "hashes" => Some(Format::HashList),
            _ => None,
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
            "jsonl" | "json" | "ndjson" => Ok(Format::JsonLines),
            "hashes" | "hashlist" | "txt" | "te" => Ok(Format::HashList),
            "signals" | "signal" | "hma" => Ok(Format::SignalList),
            _ => Err(Error::Format(s.to_owned())),
        }
    }
}

/// One hash read from, or written to, a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The hash.
    pub hash: PdqHash,
    /// Its quality, when the list says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Labels, in list order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Where the hash came from, when the list says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Record {
    /// A record holding just a hash.
    pub fn new(hash: PdqHash) -> Self {
        Record {
            hash,
            quality: None,
            labels: Vec::new(),
            source: None,
        }
    }
}

/// Folds records with the same hash into the first: labels merged (sorted,
/// deduplicated), the highest quality and the first source kept.
pub fn fold(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut at: std::collections::HashMap<PdqHash, usize> = std::collections::HashMap::new();
    for r in records {
        match at.get(&r.hash) {
            Some(&i) => {
                let kept = &mut out[i];
                kept.labels.extend(r.labels);
                kept.quality = kept.quality.max(r.quality);
                if kept.source.is_none() {
                    kept.source = r.source;
                }
            }
            None => {
                at.insert(r.hash, out.len());
                out.push(r);
            }
        }
    }
    for r in &mut out {
        r.labels.sort();
        r.labels.dedup();
    }
    out
}

/// Parses a whole list held in memory; see [`Parser`].
pub fn parse_str(format: Format, text: &str) -> Parser<&[u8]> {
    Parser::new(format, text.as_bytes())
}

/// Which column of a CSV holds what.
#[derive(Debug, Clone, Default)]
struct Columns {
    hash: usize,
    quality: Option<usize>,
    source: Option<usize>,
    labels: Option<usize>,
    signal_type: Option<usize>,
    /// Other named columns, whose values become labels.
    extra: Vec<usize>,
    /// No header: every column after the hash is a label.
    headerless: bool,
}

/// A streaming parser yielding one `Result` per hash line.
///
/// Bad lines yield [`Error::Line`] with their 1-based line number and the
/// parser carries on, so the caller chooses to skip them or to stop at the
/// first. A list without any hash yields [`Error::Empty`] once at the end.
/// Lines longer than [`MAX_LINE`] are reported without being buffered.
pub struct Parser<R> {
    format: Format,
    reader: R,
    line_no: u64,
    columns: Option<Columns>,
    seen_any: bool,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Parser<R> {
    /// A parser of `format` over `reader`.
    pub fn new(format: Format, reader: R) -> Self {
        Parser {
            format,
            reader,
            line_no: 0,
            columns: None,
            seen_any: false,
            done: false,
            buf: Vec::new(),
        }
    }

    /// Reads the next line into `buf`, bounded. `Ok(None)` at the end;
    /// `Ok(Some(false))` for an over-long line (skipped).
    fn read_line(&mut self) -> Result<Option<bool>, std::io::Error> {
        self.buf.clear();
        let mut too_long = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                if self.buf.is_empty() && !too_long {
                    return Ok(None);
                }
                break;
            }
            let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE + 1 {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.reader.consume(take);
            if found {
                break;
            }
        }
        self.line_no += 1;
        Ok(Some(!too_long))
    }

    fn line_error(&self, message: impl Into<String>) -> Error {
        Error::Line {
            line: self.line_no,
            message: message.into(),
        }
    }

    fn parse_line(&mut self, line: &str) -> Option<Result<Record, Error>> {
        let t = line.trim();
        if t.is_empty() || (self.format != Format::JsonLines && t.starts_with('#')) {
            return None;
        }
        match self.format {
            Format::Csv => self.parse_csv(t),
            Format::JsonLines => Some(self.parse_json(t)),
            Format::HashList => Some(self.parse_hash_list(t)),
            Format::SignalList => Some(self.parse_signal(t)),
        }
    }

    fn parse_csv(&mut self, t: &str) -> Option<Result<Record, Error>> {
        let fields = match split_csv(t) {
            Ok(f) => f,
            Err(e) => return Some(Err(self.line_error(e))),
        };
        let columns = match &self.columns {
            Some(c) => c.clone(),
            None => {
                let first = fields.first().map(String::as_str).unwrap_or("");
                if first.parse::<PdqHash>().is_ok() {
                    let c = Columns {
                        headerless: true,
                        ..Columns::default()
                    };
                    self.columns = Some(c.clone());
                    c
                } else {
                    return match header_columns(&fields) {
                        Ok(c) => {
                            self.columns = Some(c);
                            None
                        }
                        Err(e) => Some(Err(self.line_error(e))),
                    };
                }
            }
        };
        Some(self.csv_record(&columns, &fields))
    }

    fn csv_record(&self, c: &Columns, fields: &[String]) -> Result<Record, Error> {
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).map(|s| s.trim());
        if let Some(st) = get(c.signal_type)
            && !st.eq_ignore_ascii_case("pdq")
        {
            return Err(self.line_error(format!("signal type {st:?} is not pdq")));
        }
        let hash_text = get(Some(c.hash)).unwrap_or("");
        let hash = parse_hash(hash_text).map_err(|e| self.line_error(e))?;
        let mut rec = Record::new(hash);
        if let Some(q) = get(c.quality).filter(|q| !q.is_empty()) {
            rec.quality = Some(parse_quality(q).map_err(|e| self.line_error(e))?);
        }
        rec.source = get(c.source).filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(l) = get(c.labels) {
            rec.labels.extend(
                l.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        if c.headerless {
            rec.labels.extend(
                fields
                    .iter()
                    .skip(1)
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        for &i in &c.extra {
            if let Some(v) = get(Some(i)).filter(|v| !v.is_empty()) {
                rec.labels.push(v.to_owned());
            }
        }
        Ok(rec)
    }

    fn parse_json(&self, t: &str) -> Result<Record, Error> {
        #[derive(Deserialize)]
        struct Json {
            #[serde(alias = "signal", alias = "pdq_hash", alias = "signal_value")]
            hash: String,
            #[serde(default)]
            quality: Option<serde_json::Value>,
            #[serde(default, alias = "tags")]
            labels: Vec<String>,
            #[serde(default)]
            source: Option<String>,
        }
        let j: Json =
            serde_json::from_str(t).map_err(|e| self.line_error(format!("invalid JSON: {e}")))?;
        let mut rec = Record::new(parse_hash(&j.hash).map_err(|e| self.line_error(e))?);
        rec.quality = match j.quality {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => Some(
                n.as_i64()
                    .and_then(|q| Quality::new(q).ok())
                    .ok_or_else(|| {
                        self.line_error(format!("invalid quality {n}: expected 0 to 100"))
                    })?,
            ),
            Some(serde_json::Value::String(s)) => {
                Some(parse_quality(&s).map_err(|e| self.line_error(e))?)
            }
            Some(other) => {
                return Err(self.line_error(format!("invalid quality {other}: expected 0 to 100")));
            }
        };
        rec.labels = j.labels;
        rec.source = j.source.filter(|s| !s.is_empty());
        Ok(rec)
    }

    fn parse_hash_list(&self, t: &str) -> Result<Record, Error> {
        let mut parts = t.split(',');
        let first = parts.next().unwrap_or("").trim();
        let first = first.strip_prefix("hash=").unwrap_or(first);
        let mut rec = Record::new(parse_hash(first).map_err(|e| self.line_error(e))?);
        let rest: Vec<&str> = parts.map(str::trim).collect();
        if rest.iter().any(|p| p.contains('=')) {
            // Detail lines: hash=...,norm=...,delta=...,quality=...,filename=...
            for p in &rest {
                match p.split_once('=') {
                    Some(("quality", q)) => {
                        rec.quality = Some(parse_quality(q).map_err(|e| self.line_error(e))?)
                    }
                    Some(("filename", f)) if !f.is_empty() => rec.source = Some(f.to_owned()),
                    _ => {}
                }
            }
            return Ok(rec);
        }
        let mut rest = rest.into_iter().peekable();
        if let Some(q) = rest.peek().and_then(|q| parse_quality(q).ok()) {
            rec.quality = Some(q);
            rest.next();
        }
        let meta: Vec<&str> = rest.collect();
        if !meta.is_empty() && meta.iter().any(|m| !m.is_empty()) {
            rec.source = Some(meta.join(","));
        }
        Ok(rec)
    }

    fn parse_signal(&self, t: &str) -> Result<Record, Error> {
        let (kind, value) = t
            .split_once([' ', '\t', ','])
            .ok_or_else(|| self.line_error("expected `pdq <hash>`"))?;
        if !kind.trim().eq_ignore_ascii_case("pdq") {
            return Err(self.line_error(format!("signal type {:?} is not pdq", kind.trim())));
        }
        Ok(Record::new(
            parse_hash(value.trim()).map_err(|e| self.line_error(e))?,
        ))
    }
}

impl<R: BufRead> Iterator for Parser<R> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.read_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::Io(e)));
                }
                Ok(None) => {
                    self.done = true;
                    if !self.seen_any {
                        return Some(Err(Error::Empty));
                    }
                }
                Ok(Some(false)) => {
                    self.seen_any = true;
                    return Some(Err(
                        self.line_error(format!("line longer than {MAX_LINE} bytes"))
                    ));
                }
                Ok(Some(true)) => {
                    let bytes = std::mem::take(&mut self.buf);
                    let parsed = match std::str::from_utf8(&bytes) {
                        Ok(line) => {
                            // A byte-order mark may open the first line.
                            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
                            self.parse_line(line)
                        }
                        Err(_) => Some(Err(self.line_error("not UTF-8 text"))),
                    };
                    self.buf = bytes;
                    if let Some(r) = parsed {
                        self.seen_any = true;
                        return Some(r);
                    }
                }
            }
        }
        None
    }
}

fn parse_hash(s: &str) -> Result<PdqHash, String> {
    let t = s.trim();
    t.parse().map_err(|_| {
        if t.len() != 64 {
            format!(
                "hash {:?} has {} characters, expected 64 hexadecimal digits",
                shorten(t),
                t.chars().count()
            )
        } else {
            format!("hash {:?} is not hexadecimal", shorten(t))
        }
    })
}

fn parse_quality(s: &str) -> Result<Quality, String> {
    let t = s.trim();
    t.parse::<i64>()
        .ok()
        .and_then(|q| Quality::new(q).ok())
        .ok_or_else(|| {
            format!(
                "invalid quality {:?}: expected a whole number from 0 to 100",
                shorten(t)
            )
        })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(77).collect();
        t.push_str("...");
        t
    } else {
        s.to_owned()
    }
}

fn header_columns(fields: &[String]) -> Result<Columns, String> {
    let mut c = Columns::default();
    let mut hash = None;
    for (i, f) in fields.iter().enumerate() {
        match f.trim().to_ascii_lowercase().as_str() {
            "hash" | "pdq" | "pdq_hash" | "signal" | "signal_value" if hash.is_none() => {
                hash = Some(i)
            }
            "quality" | "pdq_quality" => c.quality = Some(i),
            "source" | "filename" | "file" => c.source = Some(i),
            "labels" | "tags" | "label" => c.labels = Some(i),
            "signal_type" => c.signal_type = Some(i),
            "" => {}
            _ => c.extra.push(i),
        }
    }
    c.hash = hash.ok_or_else(|| {
        format!(
            "first line is neither a hash nor a header naming a hash column (hash, pdq_hash, signal): {:?}",
            shorten(&fields.join(","))
        )
    })?;
    Ok(c)
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut field));
            at_start = true;
        } else {
            if !(at_start && c == ' ') {
                at_start = false;
            }
            field.push(c);
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(field);
    Ok(out)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes records in `format`. CSV gets a `hash,quality,source,labels`
/// header with `;`-joined labels; hash lists get `hash,quality`.
pub fn write(
    format: Format,
    records: impl IntoIterator<Item = Record>,
    mut w: impl Write,
) -> Result<u64, Error> {
    let mut n = 0;
    if format == Format::Csv {
        writeln!(w, "hash,quality,source,labels")?;
    }
    for r in records {
        match format {
            Format::Csv => {
                let labels: Vec<&str> = r
                    .labels
                    .iter()
                    .map(String::as_str)
                    .filter(|l| !l.contains(';'))
                    .collect();
                writeln!(
                    w,
                    "{},{},{},{}",
                    r.hash,
                    r.quality.map(|q| q.to_string()).unwrap_or_default(),
                    csv_field(r.source.as_deref().unwrap_or("")),
                    csv_field(&labels.join(";"))
                )?;
            }
            Format::JsonLines => {
                serde_json::to_writer(&mut w, &r).map_err(|e| Error::Io(e.into()))?;
                writeln!(w)?;
            }
            Format::HashList => match r.quality {
                Some(q) => writeln!(w, "{},{q}", r.hash)?,
                None => writeln!(w, "{}", r.hash)?,
            },
            Format::SignalList => writeln!(w, "pdq {}", r.hash)?,
        }
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// Parses `data` in every format, consuming every result; the fuzzing
/// entry point.
/// Returns the number of records and of line errors.
pub fn fuzz_parse(data: &[u8]) -> (usize, usize) {
    let mut ok = 0;
    let mut bad = 0;
    for format in Format::ALL {
        for r in Parser::new(format, data) {
            match r {
                Ok(_) => ok += 1,
                Err(_) => bad += 1,
            }
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_splitting() {
        assert_eq!(split_csv("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_csv("\"a,b\",c").unwrap(), vec!["a,b", "c"]);
        assert_eq!(split_csv("\"a\"\"b\"").unwrap(), vec!["a\"b"]);
        assert_eq!(split_csv("").unwrap(), vec![""]);
        assert!(split_csv("\"open").is_err());
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(Format::from_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(Format::from_path(Path::new("b")), None);
    }
}
