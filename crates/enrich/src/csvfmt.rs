//! Range CSV files: `start,end,asn,org` and `start,end,country`.
//!
//! Ends are inclusive and given either as addresses (`1.0.0.0`, `2001:200::`)
//! or as decimal integers (the `-num` variants). A decimal pair is IPv6 when
//! the file name mentions `ipv6` or either end exceeds 32 bits, else IPv4.
//! A first row whose first field is neither an address nor a number is taken
//! as a header. Rows for AS 0 (not routed) and for the unknown country `ZZ`
//! carry no information and are skipped.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use takedown_event::{Asn, CountryCode};

use crate::enricher::AsValue;
use crate::{Error, Names, PrefixTableBuilder};

/// Which of the two range CSV layouts a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CsvKind {
    /// `start,end,asn,org`: AS number and organisation name.
    Asn,
    /// `start,end,country`: ISO 3166-1 alpha-2 country code.
    Country,
}

impl CsvKind {
    /// The layout implied by a row's column count.
    fn from_columns(n: usize) -> Option<Self> {
        match n {
            3 => Some(CsvKind::Country),
            n if n >= 4 => Some(CsvKind::Asn),
            _ => None,
        }
    }
}

/// The tables a CSV file's rows go into.
pub(crate) struct Sinks<'s> {
    pub(crate) asn: &'s mut PrefixTableBuilder<AsValue>,
    pub(crate) names: &'s mut Names,
    pub(crate) country: &'s mut PrefixTableBuilder<CountryCode>,
}

enum Num {
    Ip(IpAddr),
    Int(u128),
}

fn parse_end(s: &str) -> Option<Num> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(Num::Ip(ip));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u128>().ok().map(Num::Int);
    }
    None
}

/// Turns two parsed ends into addresses of one family.
fn to_range(a: Num, b: Num, v6_hint: bool) -> Option<(IpAddr, IpAddr)> {
    match (a, b) {
        (Num::Ip(a), Num::Ip(b)) => Some((a, b)),
        (Num::Int(a), Num::Int(b)) => {
            if v6_hint || a > u128::from(u32::MAX) || b > u128::from(u32::MAX) {
                Some((Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into()))
            } else {
                Some((
                    Ipv4Addr::from(a as u32).into(),
                    Ipv4Addr::from(b as u32).into(),
                ))
            }
        }
        _ => None,
    }
}

/// Reads one range CSV into `sinks`; returns the layout and the number of
/// ranges added.
pub(crate) fn load<R: Read>(
    reader: R,
    name: &str,
    kind: Option<CsvKind>,
    sinks: Sinks<'_>,
) -> Result<(CsvKind, usize), Error> {
    let v6_hint = name.to_ascii_lowercase().contains("ipv6");
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(reader);
    let mut rec = csv::StringRecord::new();
    let mut kind = kind;
    let mut first = true;
    let mut added = 0usize;
    loop {
        let line = rdr.position().line();
        let more = rdr.read_record(&mut rec).map_err(|e| Error::Csv {
            file: name.to_owned(),
            line: e.position().map_or(line, |p| p.line()),
            message: e.to_string(),
        })?;
        if !more {
            break;
        }
        let line = rec.position().map_or(line, |p| p.line());
        let fail = |message: String| Error::Csv {
            file: name.to_owned(),
            line,
            message,
        };
        if rec.len() == 1 && rec.get(0).is_some_and(str::is_empty) {
            continue;
        }
        let f0 = rec.get(0).unwrap_or_default();
        let start = parse_end(f0);
        if first {
            first = false;
            if start.is_none() {
                // A header row such as `ip_range_start,ip_range_end,...`.
                continue;
            }
        }
        let k = match kind {
            Some(k) => k,
            None => {
                let k = CsvKind::from_columns(rec.len()).ok_or_else(|| Error::CsvLayout {
                    file: name.to_owned(),
                    columns: rec.len(),
                })?;
                kind = Some(k);
                k
            }
        };
        let want = if k == CsvKind::Asn { 4 } else { 3 };
        if rec.len() < want {
            return Err(fail(format!(
                "expected {want} columns, found {}",
                rec.len()
            )));
        }
        let f1 = rec.get(1).unwrap_or_default();
        let (s, e) = start
            .zip(parse_end(f1))
            .and_then(|(a, b)| to_range(a, b, v6_hint))
            .ok_or_else(|| fail(format!("invalid address range {f0:?} - {f1:?}")))?;
        let f2 = rec.get(2).unwrap_or_default();
        match k {
            CsvKind::Asn => {
                let asn: Asn = f2
                    .parse()
                    .map_err(|_| fail(format!("invalid AS number {f2:?}")))?;
                if asn.0 == 0 {
                    continue;
                }
                // An unquoted organisation name with commas spills into
                // extra columns; glue them back together.
                let org = if rec.len() == 4 {
                    rec.get(3).unwrap_or_default().to_owned()
                } else {
                    rec.iter().skip(3).collect::<Vec<_>>().join(",")
                };
                let name_id = sinks.names.intern(&org);
                sinks
                    .asn
                    .insert_range(s, e, AsValue { asn, name: name_id })
                    .map_err(|err| fail(err.to_string()))?;
            }
            CsvKind::Country => {
                if f2.is_empty() || f2 == "-" || f2.eq_ignore_ascii_case("zz") {
                    continue;
                }
                let cc: CountryCode = f2
                    .parse()
                    .map_err(|_| fail(format!("invalid country code {f2:?}")))?;
                sinks
                    .country
                    .insert_range(s, e, cc)
                    .map_err(|err| fail(err.to_string()))?;
            }
        }
        added += 1;
    }
    Ok((kind.unwrap_or(CsvKind::Asn), added))
}
