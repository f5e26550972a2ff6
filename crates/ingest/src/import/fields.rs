//! Fast, total parsers for the field types of sinkhole logs.
//!
//! Every function here takes untrusted bytes and returns `None` (or a
//! truncated value) instead of panicking.

use std::net::IpAddr;

use takedown_event::{Asn, CountryCode, Family, Timestamp};

/// The longest text field kept from an imported row, in bytes. Longer values
/// (URLs, user agents) are cut at a character boundary: they are samples for
/// an abuse desk, not evidence that needs every byte.
pub(crate) const MAX_TEXT: usize = 4096;

/// Parses `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, optionally followed by
/// a fraction and `Z` or `+00:00`, as UTC. Anything else falls back to the
/// general parser of [`Timestamp`].
pub(crate) fn timestamp(b: &[u8]) -> Option<Timestamp> {
    let b = b.trim_ascii();
    if let Some(t) = fast_timestamp(b) {
        return Some(t);
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn fast_timestamp(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 19 {
        return None;
    }
    let (head, rest) = b.split_at(19);
    let d = |i: usize, n: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in head.get(i..i + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let sep_ok = head.get(4) == Some(&b'-')
        && head.get(7) == Some(&b'-')
        && matches!(head.get(10), Some(b' ' | b'T'))
        && head.get(13) == Some(&b':')
        && head.get(16) == Some(&b':');
    if !sep_ok {
        return None;
    }
    let (year, month, day) = (d(0, 4)?, d(5, 2)?, d(8, 2)?);
    let (hour, minute, second) = (d(11, 2)?, d(14, 2)?, d(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut micros = 0i64;
    let mut rest = rest;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let (digits, after) = frac.split_at(n);
        for i in 0..6 {
            micros = micros * 10 + digits.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        rest = after;
    }
    if !matches!(
        rest,
        b"" | b"Z" | b"z" | b"+00:00" | b"+00" | b"+0000" | b" UTC"
    ) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(Timestamp(secs * 1_000_000 + micros))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn ip(b: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(b.trim_ascii()).ok()?.parse().ok()
}

/// A port; an empty field is port 0, as Shadowserver leaves it for unknown ports.
pub(crate) fn port(b: &[u8]) -> Option<u16> {
    let b = b.trim_ascii();
    if b.is_empty() {
        return Some(0);
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// An AS number; empty, unparsable and zero all mean "unknown".
pub(crate) fn asn(b: &[u8]) -> Option<Asn> {
    std::str::from_utf8(b)
        .ok()?
        .parse::<Asn>()
        .ok()
        .filter(|a| a.0 != 0)
}

pub(crate) fn country(b: &[u8]) -> Option<CountryCode> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A family name from free text such as Shadowserver's `infection` column.
///
/// Shadowserver's names are mostly lower-case words joined by `-` or `_`, but
/// older reports carry spaces and slashes; those become `-` so a row is not
/// lost over punctuation.
pub(crate) fn family(b: &[u8]) -> Option<Family> {
    let mut s = String::with_capacity(b.len().min(64));
    for &c in b.trim_ascii() {
        if s.len() == 64 {
            break;
        }
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-') {
            s.push(char::from(c));
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-');
    if s.is_empty() { None } else { s.parse().ok() }
}

/// Text, with invalid UTF-8 replaced and the length bounded; empty is `None`.
pub(crate) fn text(b: &[u8]) -> Option<String> {
    if b.is_empty() {
        return None;
    }
    let b = b.get(..MAX_TEXT).unwrap_or(b);
    let s = String::from_utf8_lossy(b);
    // Cutting at a byte limit may split the last character; drop the replacement
    // character that leaves rather than keeping a spurious one.
    let s = if b.len() == MAX_TEXT {
        s.trim_end_matches('\u{fffd}').to_owned()
    } else {
        s.into_owned()
    };
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamps_agree_with_the_general_parser() {
        for s in [
            "2026-11-29 14:00:01",
            "2026-11-29T14:00:01Z",
            "2024-02-29 23:59:59.123456",
            "1970-01-01 00:00:00",
            "1969-12-31 23:59:59",
            "2000-03-01 00:00:00+00:00",
        ] {
            let slow: Timestamp = s.replace("+00:00", "Z").parse().unwrap();
            assert_eq!(fast_timestamp(s.as_bytes()), Some(slow), "{s}");
        }
        assert_eq!(fast_timestamp(b"2023-02-29 00:00:00"), None);
        assert_eq!(fast_timestamp(b"2023-13-01 00:00:00"), None);
        assert_eq!(fast_timestamp(b"2023-01-01 24:00:00"), None);
        assert_eq!(fast_timestamp(b"2023-01-01 00:00:00+02:00"), None);
        assert!(timestamp(b"2023-01-01T00:00:00+02:00").is_some());
        assert!(timestamp(b"yesterday").is_none());
    }

    #[test]
    fn families_are_normalised() {
        assert_eq!(family(b"Andromeda").unwrap().as_str(), "andromeda");
        assert_eq!(family(b"sality p2p").unwrap().as_str(), "sality-p2p");
        assert_eq!(family(b"a/b  c").unwrap().as_str(), "a-b-c");
        assert_eq!(family(b"  "), None);
        assert_eq!(family(b"///"), None);
        assert_eq!(
            family("x".repeat(100).as_bytes()).unwrap().as_str().len(),
            64
        );
    }

    #[test]
    fn text_is_bounded_and_lossy() {
        assert_eq!(text(b""), None);
        assert_eq!(text(b"a\xffb").unwrap(), "a\u{fffd}b");
        let long = "é".repeat(MAX_TEXT);
        assert!(text(long.as_bytes()).unwrap().len() <= MAX_TEXT);
        assert!(!text(long.as_bytes()).unwrap().ends_with('\u{fffd}'));
    }

    #[test]
    fn numbers() {
        assert_eq!(port(b""), Some(0));
        assert_eq!(port(b" 80 "), Some(80));
        assert_eq!(port(b"70000"), None);
        assert_eq!(asn(b"0"), None);
        assert_eq!(asn(b"3320"), Some(Asn(3320)));
        assert_eq!(country(b"de").unwrap().as_str(), "DE");
    }
}
