//! Turning untrusted bytes into bounded, printable event fields.

/// Decodes `bytes` as UTF-8 (invalid sequences become U+FFFD), escapes control
/// characters as `\xNN`, and keeps at most `max` bytes of the result, cut at a
/// character boundary.
pub(crate) fn printable(bytes: &[u8], max: usize) -> String {
    let src = bytes.get(..max.min(bytes.len())).unwrap_or(bytes);
    let text = String::from_utf8_lossy(src);
    if !text.chars().any(char::is_control) && text.len() <= max {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len().min(max));
    for ch in text.chars() {
        let needed = if ch.is_control() { 4 } else { ch.len_utf8() };
        if out.len() + needed > max {
            break;
        }
        if ch.is_control() {
            let v = u32::from(ch);
            if v < 0x100 {
                out.push_str(&format!("\\x{v:02x}"));
            } else {
                out.push('\u{fffd}');
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Lower-case hex of at most `max` leading bytes.
pub(crate) fn hex(bytes: &[u8], max: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let src = bytes.get(..max.min(bytes.len())).unwrap_or(bytes);
    let mut out = String::with_capacity(src.len() * 2);
    for &b in src {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_bounds() {
        assert_eq!(printable(b"Mozilla/5.0", 100), "Mozilla/5.0");
        assert_eq!(printable(b"a\x00b\x1bc", 100), "a\\x00b\\x1bc");
        assert_eq!(printable(b"abcdef", 3), "abc");
        assert_eq!(printable("é".as_bytes(), 1), "");
        assert_eq!(printable(b"\xff", 8), "\u{fffd}");
        for max in 0..12 {
            assert!(printable("aé\u{7f}xyz".as_bytes(), max).len() <= max);
        }
    }

    #[test]
    fn hex_is_bounded() {
        assert_eq!(hex(&[0, 0xab, 0xff], 8), "00abff");
        assert_eq!(hex(&[1, 2, 3], 2), "0102");
    }
}
