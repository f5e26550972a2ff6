//! CRLF to LF translation in front of the CSV reader.
//!
//! The CSV reader reports the line a record starts on, but with CRLF line
//! ends it attributes each record to the line before (it takes the `\n` of a
//! `\r\n` pair as the start of the next record). Shadowserver's reports use
//! CRLF, and a bad-row report with wrong line numbers is worse than none, so
//! `\r\n` becomes `\n` before the reader sees it. A lone `\r` is kept.

use std::io::{self, Read};

const BUF: usize = 1 << 16;

/// Reads from `inner` with every `\r\n` replaced by `\n`.
pub(crate) struct CrlfToLf<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
}

impl<R: Read> CrlfToLf<R> {
    pub(crate) fn new(inner: R) -> Self {
        CrlfToLf {
            inner,
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
        }
    }

    /// Makes at least two bytes available (one of look-ahead), unless at the end.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        while !self.eof && self.len < 2 {
            let Some(free) = self.buf.get_mut(self.len..) else {
                break;
            };
            match self.inner.read(free) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.len - self.pos < 2 {
            self.fill()?;
        }
        let avail = self.buf.get(self.pos..self.len).unwrap_or(&[]);
        let mut w = 0;
        let mut i = 0;
        // Copy whole runs up to the next `\r`; most inputs have one per line at most.
        while i < avail.len() && w < out.len() {
            let rest = avail.get(i..).unwrap_or(&[]);
            let run = memchr::memchr(b'\r', rest).unwrap_or(rest.len());
            let n = run.min(out.len() - w);
            if let (Some(dst), Some(src)) = (out.get_mut(w..w + n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            w += n;
            i += n;
            if n < run || i >= avail.len() || w >= out.len() {
                break;
            }
            // `avail[i]` is a `\r`.
            match avail.get(i + 1) {
                Some(b'\n') => {
                    // Drop the `\r`; the `\n` is copied with the next run.
                    i += 1;
                }
                None if !self.eof => {
                    if w > 0 {
                        break;
                    }
                    // Only the `\r` is left: refill so the next call can decide.
                    self.pos += i;
                    self.fill()?;
                    return self.read(out);
                }
                _ => {
                    if let Some(slot) = out.get_mut(w) {
                        *slot = b'\r';
                    }
                    w += 1;
                    i += 1;
                }
            }
        }
        self.pos += i;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, to exercise every boundary.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((b, rest)), Some(o)) => {
                    *o = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn translate(input: &[u8], out_len: usize) -> Vec<u8> {
        let mut r = CrlfToLf::new(Trickle(input));
        let mut all = Vec::new();
        let mut buf = vec![0; out_len];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn pairs_become_newlines_and_lone_returns_stay() {
        for out_len in [1, 2, 3, 64] {
            assert_eq!(translate(b"a,b\r\n1,2\r\n", out_len), b"a,b\n1,2\n");
            assert_eq!(translate(b"a\rb\r", out_len), b"a\rb\r");
            assert_eq!(translate(b"\r\r\n\r", out_len), b"\r\n\r");
            assert_eq!(translate(b"", out_len), b"");
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_a_plain_replace(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a', b',']), 0..300),
            out_len in 1usize..70,
        ) {
            let expected = String::from_utf8(input.clone()).unwrap().replace("\r\n", "\n");
            proptest::prop_assert_eq!(translate(&input, out_len), expected.into_bytes());
        }
    }
}
