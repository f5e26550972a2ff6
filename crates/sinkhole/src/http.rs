//! A bounded HTTP/1.x request head parser for check-in recording.
//!
//! Well-formed heads go through `httparse`; anything it rejects is scanned
//! again by a lenient line splitter so a malformed check-in is still
//! recorded as far as it can be read.

use std::mem::MaybeUninit;

use crate::config::MAX_HEADERS_CAP;
use crate::text::printable;

/// The fields of a request head that a check-in records, plus what the
/// connection needs to frame the next request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, such as `GET`.
    pub method: Option<String>,
    /// The request target as sent.
    pub target: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `Referer` header.
    pub referer: Option<String>,
    /// The minor version of HTTP/1.x (0 or 1), when the request line had one.
    pub version_minor: Option<u8>,
    /// The `Content-Length`, when present and valid.
    pub content_length: Option<u64>,
    /// Whether `Transfer-Encoding` names `chunked`.
    pub chunked: bool,
    /// Whether `Connection` names `close`.
    pub connection_close: bool,
    /// Whether `Connection` names `keep-alive`.
    pub connection_keep_alive: bool,
}

impl RequestHead {
    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        match self.version_minor {
            Some(1) => !self.connection_close,
            Some(0) => self.connection_keep_alive && !self.connection_close,
            _ => false,
        }
    }

    /// The name the client asked for: the `Host` header, else the authority
    /// of an absolute-form request target.
    pub fn host_name(&self) -> Option<&str> {
        if let Some(h) = self.host.as_deref().filter(|h| !h.is_empty()) {
            return Some(h);
        }
        let t = self.target.as_deref()?;
        let rest = t
            .strip_prefix("http://")
            .or_else(|| t.strip_prefix("https://"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = rest.get(..end)?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (!host.is_empty()).then_some(host)
    }
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpParse {
    /// A complete, well-formed request head of `len` bytes.
    Complete {
        /// The parsed head.
        head: RequestHead,
        /// The head's length in bytes, including the blank line.
        len: usize,
    },
    /// The head is a valid prefix; read more.
    Partial,
    /// The head is not valid HTTP/1.x; `head` holds what could be read.
    Malformed {
        /// The fields recovered by a lenient scan.
        head: RequestHead,
        /// What was wrong, for logs.
        reason: &'static str,
    },
}

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// At most `max_headers` (capped at 256) header lines are accepted; each
/// recorded field keeps at most `max_field` bytes. Never panics and
/// allocates only the recorded fields.
pub fn parse_request(buf: &[u8], max_headers: usize, max_field: usize) -> HttpParse {
    // Uninitialised slots spare zeroing 8 KiB of stack on every request.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let slots = slots
        .get_mut(..max_headers.clamp(1, MAX_HEADERS_CAP))
        .unwrap_or_default();
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_requests(true)
        .parse_request_with_uninit_headers(&mut req, buf, slots);
    match parsed {
        Ok(httparse::Status::Partial) => HttpParse::Partial,
        Ok(httparse::Status::Complete(len)) => {
            let mut head = RequestHead {
                method: req.method.map(|m| printable(m.as_bytes(), max_field)),
                target: req.path.map(|p| printable(p.as_bytes(), max_field)),
                version_minor: req.version,
                ..RequestHead::default()
            };
            for h in req.headers.iter() {
                if let Err(reason) = apply_header(&mut head, h.name.as_bytes(), h.value, max_field)
                {
                    return HttpParse::Malformed { head, reason };
                }
            }
            HttpParse::Complete { head, len }
        }
        Err(e) => HttpParse::Malformed {
            head: lenient_head(buf, max_field),
            reason: match e {
                httparse::Error::TooManyHeaders => "too many headers",
                httparse::Error::Version => "bad HTTP version",
                httparse::Error::Token => "bad method",
                httparse::Error::HeaderName | httparse::Error::HeaderValue => "bad header",
                httparse::Error::NewLine => "bad line ending",
                _ => "bad request line",
            },
        },
    }
}

/// Reads whatever request line and headers can be recovered from a head that
/// failed strict parsing (or that grew past the size limit).
pub fn lenient_head(buf: &[u8], max_field: usize) -> RequestHead {
    let end = find_blank_line(buf).unwrap_or(buf.len());
    let head_bytes = buf.get(..end).unwrap_or(buf);
    let mut lines = head_bytes.split(|&b| b == b'\n').map(|l| match l {
        [rest @ .., b'\r'] => rest,
        l => l,
    });
    let mut head = RequestHead::default();
    if let Some(first) = lines.next() {
        let mut parts = first
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|p| !p.is_empty());
        head.method = parts.next().map(|m| printable(m, max_field.min(64)));
        head.target = parts.next().map(|t| printable(t, max_field));
        head.version_minor = match parts.next() {
            Some(b"HTTP/1.1") => Some(1),
            Some(b"HTTP/1.0") => Some(0),
            _ => None,
        };
    }
    for line in lines.take(MAX_HEADERS_CAP) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        // Errors only concern framing, which a malformed request no longer needs.
        let _ = apply_header(&mut head, name.trim_ascii(), value, max_field);
    }
    head
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2))
}

/// Records one header into `head`. Errors mean the message framing cannot be
/// trusted (a bad or conflicting `Content-Length`).
fn apply_header(
    head: &mut RequestHead,
    name: &[u8],
    value: &[u8],
    max_field: usize,
) -> Result<(), &'static str> {
    let value = value.trim_ascii();
    let slot = if name.eq_ignore_ascii_case(b"host") {
        &mut head.host
    } else if name.eq_ignore_ascii_case(b"user-agent") {
        &mut head.user_agent
    } else if name.eq_ignore_ascii_case(b"referer") {
        &mut head.referer
    } else if name.eq_ignore_ascii_case(b"content-length") {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("bad Content-Length")?;
        if head.content_length.is_some_and(|old| old != n) {
            return Err("conflicting Content-Length");
        }
        head.content_length = Some(n);
        return Ok(());
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        head.chunked |= has_token(value, b"chunked");
        return Ok(());
    } else if name.eq_ignore_ascii_case(b"connection") {
        head.connection_close |= has_token(value, b"close");
        head.connection_keep_alive |= has_token(value, b"keep-alive");
        return Ok(());
    } else {
        return Ok(());
    };
    if slot.is_none() {
        *slot = Some(printable(value, max_field));
    }
    Ok(())
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The response to a recorded request: 200 with an empty body.
pub(crate) const RESPONSE_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n";
/// The same, for HTTP/1.0 keep-alive clients, which need the header spelled out.
pub(crate) const RESPONSE_KEEP_ALIVE_10: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
/// The same, announcing that the connection closes.
pub(crate) const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The response to a request that could not be parsed.
pub(crate) const RESPONSE_BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The response to a request head over the size or count limit.
pub(crate) const RESPONSE_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// The longest chunk-size or trailer line accepted in a chunked body.
pub const MAX_CHUNK_LINE: usize = 1024;

/// Where a [`ChunkedDecoder`] stands after a call to [`ChunkedDecoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedStatus {
    /// The body is not complete yet: feed more bytes.
    More,
    /// The body ended (last chunk and trailers read); the bytes after it
    /// belong to the next request.
    Done,
    /// The encoded body grew past the decoder's limit.
    TooLarge,
    /// The chunk framing is broken: a bad size, a missing CRLF after chunk
    /// data, or a line over [`MAX_CHUNK_LINE`].
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line: the size so far, its digit count, and
    /// whether the digits ended (an extension or whitespace follows).
    Size { size: u64, digits: u8, ended: bool },
    /// Passing chunk data through.
    Data { remaining: u64 },
    /// Expecting the CRLF after chunk data; `cr` once the CR was seen.
    DataEnd { cr: bool },
    /// Reading trailer lines until an empty one; `empty` while the current
    /// line holds nothing but a CR.
    Trailer { empty: bool },
    /// Finished, successfully or not.
    Stopped(ChunkedStatus),
}

/// An incremental decoder for a `Transfer-Encoding: chunked` body (RFC 9112
/// section 7.1), bounded in every dimension a client controls.
///
/// Chunk extensions and trailer fields are skipped unread. Bare LF line ends
/// are accepted, as most servers do. The decoder never allocates and never
/// consumes a byte past the end of the body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: usize,
    wire: u64,
    limit: u64,
}

impl ChunkedDecoder {
    /// A decoder that gives up with [`ChunkedStatus::TooLarge`] once more
    /// than `limit` encoded bytes (data and framing) have been fed.
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                size: 0,
                digits: 0,
                ended: false,
            },
            line: 0,
            wire: 0,
            limit,
        }
    }

    /// Consumes bytes of the encoded body from `input`, handing decoded data
    /// to `data`. Returns how many bytes were consumed and the status; on
    /// [`ChunkedStatus::Done`] the unconsumed rest is the next request.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> (usize, ChunkedStatus) {
        let mut pos = 0usize;
        while let ChunkState::Data { .. }
        | ChunkState::Size { .. }
        | ChunkState::DataEnd { .. }
        | ChunkState::Trailer { .. } = self.state
        {
            if let ChunkState::Data { remaining } = self.state {
                let rest = input.get(pos..).unwrap_or_default();
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                if take == 0 {
                    break;
                }
                if !self.count(take) {
                    return (pos, self.stop(ChunkedStatus::TooLarge));
                }
                data(rest.get(..take).unwrap_or_default());
                pos += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    ChunkState::DataEnd { cr: false }
                } else {
                    ChunkState::Data { remaining }
                };
                continue;
            }
            let Some(&b) = input.get(pos) else {
                break;
            };
            if !self.count(1) {
                return (pos, self.stop(ChunkedStatus::TooLarge));
            }
            pos += 1;
            if let Some(status) = self.step(b) {
                return (pos, self.stop(status));
            }
        }
        let status = match self.state {
            ChunkState::Stopped(s) => s,
            _ => ChunkedStatus::More,
        };
        (pos, status)
    }

    /// Counts `n` more encoded bytes against the limit.
    fn count(&mut self, n: usize) -> bool {
        self.wire = self.wire.saturating_add(n as u64);
        self.wire <= self.limit
    }

    fn stop(&mut self, status: ChunkedStatus) -> ChunkedStatus {
        self.state = ChunkState::Stopped(status);
        status
    }

    /// Advances the framing state by one byte; `Some` when decoding ends.
    fn step(&mut self, b: u8) -> Option<ChunkedStatus> {
        let in_line = matches!(
            self.state,
            ChunkState::Size { .. } | ChunkState::Trailer { .. }
        );
        if in_line && b != b'\n' {
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Some(ChunkedStatus::Malformed);
            }
        }
        match self.state {
            ChunkState::Size {
                size,
                digits,
                ended,
            } => {
                if b == b'\n' {
                    self.line = 0;
                    if digits == 0 {
                        return Some(ChunkedStatus::Malformed);
                    }
                    // A chunk that cannot fit is refused before its data is read.
                    if size > self.limit.saturating_sub(self.wire) {
                        return Some(ChunkedStatus::TooLarge);
                    }
                    self.state = if size == 0 {
                        ChunkState::Trailer { empty: true }
                    } else {
                        ChunkState::Data { remaining: size }
                    };
                } else if let (false, Some(d)) = (ended, char::from(b).to_digit(16)) {
                    // Sixteen hex digits fill a u64; more would overflow.
                    if digits >= 16 {
                        return Some(ChunkedStatus::Malformed);
                    }
                    self.state = ChunkState::Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                        ended: false,
                    };
                } else if digits == 0 {
                    return Some(ChunkedStatus::Malformed);
                } else {
                    // An extension, whitespace or the CR: skipped to the LF.
                    self.state = ChunkState::Size {
                        size,
                        digits,
                        ended: true,
                    };
                }
            }
            ChunkState::DataEnd { cr } => match b {
                b'\r' if !cr => self.state = ChunkState::DataEnd { cr: true },
                b'\n' => {
                    self.state = ChunkState::Size {
                        size: 0,
                        digits: 0,
                        ended: false,
                    }
                }
                _ => return Some(ChunkedStatus::Malformed),
            },
            ChunkState::Trailer { empty } => {
                if b == b'\n' {
                    self.line = 0;
                    if empty {
                        return Some(ChunkedStatus::Done);
                    }
                    self.state = ChunkState::Trailer { empty: true };
                } else if b != b'\r' || !empty {
                    self.state = ChunkState::Trailer { empty: false };
                }
            }
            ChunkState::Data { .. } | ChunkState::Stopped(_) => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` fed in pieces of `step` bytes.
    fn dechunk(body: &[u8], step: usize, limit: u64) -> (Vec<u8>, usize, ChunkedStatus) {
        let mut d = ChunkedDecoder::new(limit);
        let (mut out, mut used) = (Vec::new(), 0usize);
        let mut status = ChunkedStatus::More;
        let mut end = 0usize;
        while status == ChunkedStatus::More && end < body.len() {
            end = (end + step).min(body.len());
            let (n, s) = d.feed(&body[used..end], |b| out.extend_from_slice(b));
            used += n;
            status = s;
        }
        (out, used, status)
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let body = b"4;name=\"x\"\r\nWiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n";
        let end = body.len() - b"GET / HTTP/1.1\r\n".len();
        for step in [1, 2, 3, 7, body.len()] {
            let (out, used, status) = dechunk(body, step, 1 << 20);
            assert_eq!(status, ChunkedStatus::Done, "step {step}");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(used, end);
        }
        let (out, used, status) = dechunk(b"0\n\nrest", 1, 100);
        assert_eq!((out.len(), used, status), (0, 3, ChunkedStatus::Done));
    }

    #[test]
    fn chunked_bodies_are_bounded() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(dechunk(body, 4, body.len() as u64).2, ChunkedStatus::Done);
        assert_eq!(
            dechunk(body, 4, body.len() as u64 - 1).2,
            ChunkedStatus::TooLarge
        );
        let huge = b"ffffffffffffffff\r\nabc";
        assert_eq!(dechunk(huge, 5, 1000).2, ChunkedStatus::TooLarge);
        let overflow = b"10000000000000000\r\n";
        assert_eq!(dechunk(overflow, 5, 1000).2, ChunkedStatus::Malformed);
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE + 10, b'x');
        assert_eq!(dechunk(&long_ext, 64, 1 << 20).2, ChunkedStatus::Malformed);
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b";a\r\n",
            b"1\r\nab\r\n",
            b"1\r\na\rb",
        ] {
            assert_eq!(dechunk(bad, 1, 100).2, ChunkedStatus::Malformed, "{bad:?}");
        }
        assert_eq!(dechunk(b"3\r\nab", 1, 100).2, ChunkedStatus::More);
    }

    #[test]
    fn complete_request() {
        let req = b"POST /gate.php?id=1 HTTP/1.1\r\nHost: C2.Example:8080\r\nUser-Agent: bot/1\r\nReferer: http://r.example/\r\nContent-Length: 5\r\n\r\nhello";
        let HttpParse::Complete { head, len } = parse_request(req, 64, 2048) else {
            panic!("not complete");
        };
        assert_eq!(len, req.len() - 5);
        assert_eq!(head.method.as_deref(), Some("POST"));
        assert_eq!(head.target.as_deref(), Some("/gate.php?id=1"));
        assert_eq!(head.host_name(), Some("C2.Example:8080"));
        assert_eq!(head.user_agent.as_deref(), Some("bot/1"));
        assert_eq!(head.referer.as_deref(), Some("http://r.example/"));
        assert_eq!(head.content_length, Some(5));
        assert!(head.keep_alive());
    }

    #[test]
    fn partial_prefixes() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(
                parse_request(&req[..cut], 8, 64),
                HttpParse::Partial,
                "{cut}"
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let p = |r: &[u8]| match parse_request(r, 8, 64) {
            HttpParse::Complete { head, .. } => head.keep_alive(),
            other => panic!("{other:?}"),
        };
        assert!(!p(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(p(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!p(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn malformed_is_recovered_leniently() {
        let req = b"GET /x\x01y HTTP/1.1\r\nHost: evil.example\r\nUser-Agent: z\r\n\r\n";
        let HttpParse::Malformed { head, .. } = parse_request(req, 8, 64) else {
            panic!("expected malformed");
        };
        assert_eq!(head.method.as_deref(), Some("GET"));
        assert_eq!(head.target.as_deref(), Some("/x\\x01y"));
        assert_eq!(head.host.as_deref(), Some("evil.example"));
        assert_eq!(head.user_agent.as_deref(), Some("z"));
    }

    #[test]
    fn too_many_headers_and_bad_length() {
        let req = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nHost: h\r\n\r\n";
        let HttpParse::Malformed { head, reason } = parse_request(req, 2, 64) else {
            panic!("expected malformed");
        };
        assert_eq!(reason, "too many headers");
        assert_eq!(head.host.as_deref(), Some("h"));
        let req = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            parse_request(req, 8, 64),
            HttpParse::Malformed { .. }
        ));
    }

    #[test]
    fn absolute_form_host() {
        let req = b"GET http://user@proxy.example:81/p HTTP/1.1\r\n\r\n";
        let HttpParse::Complete { head, .. } = parse_request(req, 8, 64) else {
            panic!();
        };
        assert_eq!(head.host_name(), Some("proxy.example:81"));
    }
}
