//! takedown's own event log format: one serde-encoded [`Event`] per line.

use std::fmt;
use std::io::{BufRead, Read};

use takedown_event::Event;

use super::RowError;
use crate::Error;

/// The longest line accepted, in bytes. An event with every text field at the
/// sinkhole's limits stays far below this; a longer line is a bad row, and
/// the reader never holds more than this much of it.
pub const MAX_LINE: usize = 1 << 20;

/// Reads events from JSON lines, as `takedown` writes its own event log.
pub struct JsonlReader<R: BufRead> {
    input: R,
    buf: Vec<u8>,
    line: u64,
}

impl<R: BufRead> fmt::Debug for JsonlReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlReader")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> JsonlReader<R> {
    /// Wraps buffered input.
    pub fn new(input: R) -> Self {
        JsonlReader {
            input,
            buf: Vec::new(),
            line: 0,
        }
    }

    /// The next line as an event, `Ok(Some(Err(_)))` for a bad line, `Ok(None)` at the end.
    pub fn next_event(&mut self) -> Result<Option<Result<Event, RowError>>, Error> {
        loop {
            self.buf.clear();
            let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
            let n = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE {
                // Skip the rest of the overlong line without keeping it.
                skip_line(&mut self.input)?;
                return Ok(Some(Err(RowError {
                    line: self.line,
                    reason: format!("line longer than {MAX_LINE} bytes"),
                })));
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            return Ok(Some(serde_json::from_slice(text).map_err(|e| RowError {
                line: self.line,
                reason: e.to_string(),
            })));
        }
    }
}

fn skip_line<R: BufRead>(r: &mut R) -> Result<(), Error> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_lines_are_skipped_with_their_number() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\n\n{\"bad\": 1}\n");
        let mut r = JsonlReader::new(&input[..]);
        let e = r.next_event().unwrap().unwrap().unwrap_err();
        assert_eq!(e.line, 1);
        let e = r.next_event().unwrap().unwrap().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(r.next_event().unwrap().is_none());
    }
}
