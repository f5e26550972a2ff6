//! Per-connection handlers for HTTP and raw TCP listeners.

use std::io;
use std::net::SocketAddr;

use takedown_event::EventKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant, timeout, timeout_at};
use tracing::debug;

use crate::http::{
    ChunkedDecoder, ChunkedStatus, HttpParse, MAX_CHUNK_LINE, RESPONSE_BAD_REQUEST, RESPONSE_CLOSE,
    RESPONSE_KEEP_ALIVE, RESPONSE_KEEP_ALIVE_10, RESPONSE_TOO_LARGE, RequestHead, lenient_head,
    parse_request,
};
use crate::proxy::{MAX_HEADER_LEN, ProxyHeader, ProxyParse, has_signature, parse_proxy_header};
use crate::server::Shared;
use crate::stats::inc;
use crate::text::hex;
use crate::tls::{ClientHello, MAX_HELLO_BYTES, looks_like_tls, parse_client_hello};

/// A fatal TLS alert (handshake_failure): the polite way to refuse a handshake.
const TLS_ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// A read buffer that never grows past its bound.
struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl ReadBuf {
    fn new(initial: usize, max: usize) -> Self {
        ReadBuf {
            data: vec![0; initial.min(max)],
            start: 0,
            end: 0,
            max,
        }
    }

    /// A buffer already holding `prefix` (cut at `max`): the bytes read past
    /// a PROXY header belong to the protocol behind it.
    fn with_prefix(prefix: &[u8], initial: usize, max: usize) -> Self {
        let keep = prefix.get(..prefix.len().min(max)).unwrap_or_default();
        let mut data = vec![0; initial.max(keep.len()).min(max)];
        if let Some(dst) = data.get_mut(..keep.len()) {
            dst.copy_from_slice(keep);
        }
        ReadBuf {
            data,
            start: 0,
            end: keep.len(),
            max,
        }
    }

    fn filled(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once into the free space, compacting or growing (up to the
    /// bound) first. Returns 0 at end of stream or when already full.
    async fn read_from(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.is_full() {
            return Ok(0);
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.data.len() {
                let grown = (self.data.len() * 2).clamp(1024, self.max);
                self.data.resize(grown, 0);
            }
        }
        let limit = (self.start + self.max).min(self.data.len());
        let Some(spare) = self.data.get_mut(self.end..limit) else {
            return Ok(0);
        };
        let n = stream.read(spare).await?;
        self.end += n;
        Ok(n)
    }
}

/// Writes `out` within the read timeout, so a client that never reads cannot
/// pin the connection.
/// Waits up to `wait` for more of a request body. Returns `false` when the
/// client went quiet (counted as an idle timeout) or hung up, so the caller
/// stops draining and closes after answering.
async fn read_more_body(
    stream: &mut TcpStream,
    buf: &mut ReadBuf,
    wait: Duration,
    shared: &Shared,
) -> io::Result<bool> {
    match timeout(wait, buf.read_from(stream)).await {
        Ok(Ok(n)) => Ok(n > 0),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            inc(&shared.stats.idle_timeouts);
            Ok(false)
        }
    }
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, shared: &Shared) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    match timeout(shared.limits.read_timeout, stream.write_all(out)).await {
        Ok(r) => {
            out.clear();
            r
        }
        Err(_) => {
            inc(&shared.stats.idle_timeouts);
            Err(io::ErrorKind::TimedOut.into())
        }
    }
}

/// Who a connection speaks for, once any PROXY header is read.
pub(crate) struct Opening {
    /// The client recorded as the source.
    pub(crate) src: SocketAddr,
    /// The address recorded as the destination.
    pub(crate) dst: SocketAddr,
    /// Bytes already read past the PROXY header.
    pub(crate) prefix: Vec<u8>,
    /// Whether a PROXY header from this peer must be refused: the listener
    /// takes headers, but only from trusted proxies, and this peer is not one.
    pub(crate) refuse_proxy: bool,
}

impl Opening {
    /// A connection taken at face value.
    pub(crate) fn direct(peer: SocketAddr, local: SocketAddr, refuse_proxy: bool) -> Self {
        Opening {
            src: peer,
            dst: local,
            prefix: Vec::new(),
            refuse_proxy,
        }
    }
}

/// Reads the PROXY header a trusted proxy must open with, bounded by its
/// format and by the header deadline.
///
/// Returns the opening to serve, or `None` when the connection has been
/// dealt with: a missing, malformed or late header is recorded as a
/// malformed check-in from the proxy itself (HTTP gets a 400) and the
/// connection closed; a connection that sends nothing at all (a TCP health
/// check) is closed unrecorded.
pub(crate) async fn read_proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    http: bool,
    shared: &Shared,
) -> io::Result<Option<Opening>> {
    let deadline = Instant::now() + shared.limits.header_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(128);
    let reason = loop {
        let max_len = match parse_proxy_header(&buf) {
            ProxyParse::Complete { header, len } => {
                inc(&shared.stats.proxy_headers);
                let (src, dst) = match header {
                    ProxyHeader::Proxied { src, dst } => (src, dst),
                    ProxyHeader::Local | ProxyHeader::Unknown => (peer, local),
                };
                let prefix = buf.get(len..).unwrap_or_default().to_vec();
                return Ok(Some(Opening {
                    src,
                    dst,
                    prefix,
                    refuse_proxy: false,
                }));
            }
            ProxyParse::Incomplete { max_len } => max_len.min(MAX_HEADER_LEN),
            ProxyParse::NotProxy => break "no PROXY header",
            ProxyParse::Malformed(why) => break why,
        };
        let filled = buf.len();
        buf.resize(max_len.max(filled), 0);
        let read = match buf.get_mut(filled..) {
            Some(spare) if !spare.is_empty() => timeout_at(deadline, stream.read(spare)).await,
            _ => Ok(Ok(0)),
        };
        match read {
            Ok(Ok(n)) if n > 0 => buf.truncate(filled + n),
            Ok(Err(e)) => return Err(e),
            outcome => {
                buf.truncate(filled);
                if outcome.is_err() {
                    inc(&shared.stats.header_timeouts);
                }
                if buf.is_empty() {
                    inc(&shared.stats.proxy_refused);
                    return Ok(None);
                }
                break "PROXY header cut short";
            }
        }
    };
    inc(&shared.stats.proxy_refused);
    debug!(%peer, reason, "Refused a connection from a trusted proxy.");
    refuse_proxy(stream, &buf, http, peer, local, shared).await;
    Ok(None)
}

/// Records a connection whose PROXY header was refused as a malformed
/// check-in from the real peer, answers 400 on HTTP, and closes.
async fn refuse_proxy(
    stream: &mut TcpStream,
    bytes: &[u8],
    http: bool,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Shared,
) {
    let recorded = bytes.get(..bytes.len().min(REFUSED_BYTES)).unwrap_or(bytes);
    if http {
        let mut head = lenient_head(recorded, shared.limits.max_field_bytes);
        // What a header-less or forged opening claimed is not a request;
        // only a plain request line is kept as the check-in's fields.
        if has_signature(recorded) != Some(false) {
            head = RequestHead::default();
        }
        record_http(
            shared,
            head,
            Some(hex(recorded, REFUSED_BYTES)),
            true,
            peer,
            local,
        )
        .await;
        let _ = timeout(
            shared.limits.read_timeout,
            stream.write_all(RESPONSE_BAD_REQUEST),
        )
        .await;
    } else {
        record_tcp(shared, recorded, None, true, peer, local).await;
    }
    let _ = stream.shutdown().await;
}

/// The most bytes of a refused opening recorded (hex) in the event.
const REFUSED_BYTES: usize = 256;

/// Serves one HTTP connection: records every request and answers each with
/// an empty 200, keeping the connection alive within the limits.
pub(crate) async fn serve_http(
    mut stream: TcpStream,
    opening: Opening,
    shared: &Shared,
) -> io::Result<()> {
    let Opening {
        src: peer,
        dst: local,
        prefix,
        refuse_proxy: refuse,
    } = opening;
    let lim = &shared.limits;
    let mut buf = ReadBuf::with_prefix(&prefix, 2048, lim.max_header_bytes);
    drop(prefix);
    let mut out = Vec::new();
    let mut served = 0u32;
    loop {
        // Read until a complete head is buffered, under the idle deadline
        // while nothing of the next request has arrived and under the header
        // deadline once something has.
        let mut head_deadline = (buf.len() > 0).then(|| Instant::now() + lim.header_timeout);
        let (head, head_len) = loop {
            let bytes = buf.filled();
            if !bytes.is_empty() {
                if served == 0 && looks_like_tls(bytes) {
                    flush(&mut stream, &mut out, shared).await?;
                    return serve_tls(stream, buf, peer, local, shared).await;
                }
                if served == 0 && refuse && has_signature(bytes) == Some(true) {
                    inc(&shared.stats.proxy_untrusted);
                    debug!(%peer, "Refused a PROXY header from an untrusted peer.");
                    let bytes = bytes.to_vec();
                    refuse_proxy(&mut stream, &bytes, true, peer, local, shared).await;
                    return Ok(());
                }
                match parse_request(bytes, lim.max_headers, lim.max_field_bytes) {
                    HttpParse::Complete { head, len } => break (head, len),
                    HttpParse::Malformed { head, reason } => {
                        let too_many = reason == "too many headers";
                        return reject(stream, out, head, too_many, peer, local, shared).await;
                    }
                    HttpParse::Partial if buf.is_full() => {
                        let head = lenient_head(bytes, lim.max_field_bytes);
                        return reject(stream, out, head, true, peer, local, shared).await;
                    }
                    HttpParse::Partial => {}
                }
            }
            flush(&mut stream, &mut out, shared).await?;
            let deadline = head_deadline.unwrap_or_else(|| Instant::now() + lim.idle_timeout);
            match timeout_at(deadline, buf.read_from(&mut stream)).await {
                Err(_) => {
                    if head_deadline.is_some() {
                        inc(&shared.stats.header_timeouts);
                    } else {
                        inc(&shared.stats.idle_timeouts);
                    }
                    return Ok(());
                }
                Ok(Ok(0)) => {
                    if buf.len() > 0 {
                        // The client hung up mid-head: keep what it sent.
                        let head = lenient_head(buf.filled(), lim.max_field_bytes);
                        record_http(shared, head, None, true, peer, local).await;
                    }
                    return Ok(());
                }
                Ok(Ok(_)) => {
                    head_deadline.get_or_insert_with(|| Instant::now() + lim.header_timeout);
                }
                Ok(Err(e)) => return Err(e),
            }
        };
        buf.consume(head_len);
        served += 1;

        let body_len = head.content_length.unwrap_or(0);
        let mut keep_alive = head.keep_alive()
            && served < lim.max_requests_per_connection
            && (head.chunked || body_len <= lim.max_body_bytes);
        let http10 = head.version_minor == Some(0);
        let mut body_prefix = Vec::new();
        let recorded = lim.recorded_body_bytes;
        if head.chunked {
            // Chunked wins over Content-Length (RFC 9112 section 6.3). The
            // body is decoded and drained so the connection can carry the
            // next request; the framing counts against the bound too, with
            // room for one chunk line so an empty body always drains.
            let limit = lim.max_body_bytes.saturating_add(MAX_CHUNK_LINE as u64);
            let mut decoder = ChunkedDecoder::new(limit);
            loop {
                let (used, status) = decoder.feed(buf.filled(), |data| {
                    let room = recorded.saturating_sub(body_prefix.len()).min(data.len());
                    body_prefix.extend_from_slice(data.get(..room).unwrap_or_default());
                });
                buf.consume(used);
                match status {
                    ChunkedStatus::Done => break,
                    ChunkedStatus::More => {}
                    // Too long or broken: answer and close, as for any body
                    // that is not drained.
                    ChunkedStatus::TooLarge | ChunkedStatus::Malformed => {
                        keep_alive = false;
                        break;
                    }
                }
                if !read_more_body(&mut stream, &mut buf, lim.read_timeout, shared).await? {
                    keep_alive = false;
                    break;
                }
            }
        } else if body_len > lim.max_body_bytes {
            // Not drained: keep whatever already arrived, answer, and close.
            let b = buf.filled();
            let n = b.len().min(recorded);
            body_prefix.extend_from_slice(b.get(..n).unwrap_or_default());
        } else if body_len > 0 {
            let mut remaining = body_len;
            loop {
                let b = buf.filled();
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(b.len());
                let room = recorded.saturating_sub(body_prefix.len()).min(take);
                body_prefix.extend_from_slice(b.get(..room).unwrap_or_default());
                buf.consume(take);
                remaining -= take as u64;
                if remaining == 0 {
                    break;
                }
                if !read_more_body(&mut stream, &mut buf, lim.read_timeout, shared).await? {
                    keep_alive = false;
                    break;
                }
            }
        }
        let payload = (!body_prefix.is_empty()).then(|| hex(&body_prefix, recorded));
        record_http(shared, head, payload, false, peer, local).await;
        out.extend_from_slice(match (keep_alive, http10) {
            (true, false) => RESPONSE_KEEP_ALIVE,
            (true, true) => RESPONSE_KEEP_ALIVE_10,
            (false, _) => RESPONSE_CLOSE,
        });
        if !keep_alive {
            flush(&mut stream, &mut out, shared).await?;
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

/// Records a malformed or oversize request, answers 400 or 431, and closes.
async fn reject(
    mut stream: TcpStream,
    mut out: Vec<u8>,
    head: RequestHead,
    too_large: bool,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    if too_large {
        inc(&shared.stats.http_oversize);
    }
    record_http(shared, head, None, true, peer, local).await;
    out.extend_from_slice(if too_large {
        RESPONSE_TOO_LARGE
    } else {
        RESPONSE_BAD_REQUEST
    });
    flush(&mut stream, &mut out, shared).await?;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn record_http(
    shared: &Shared,
    head: RequestHead,
    payload: Option<String>,
    malformed: bool,
    peer: SocketAddr,
    local: SocketAddr,
) {
    inc(&shared.stats.http_requests);
    if malformed {
        inc(&shared.stats.http_malformed);
    }
    let mut ev = shared.event(EventKind::Http, peer, local);
    shared.attribute(&mut ev, head.host_name());
    ev.http_method = head.method;
    ev.http_url = head.target;
    ev.http_host = head.host;
    ev.http_agent = head.user_agent;
    ev.http_referer = head.referer;
    ev.payload = payload;
    ev.malformed = malformed;
    shared.emit(ev).await;
}

/// Serves a raw TCP connection: records the first bytes the client sends
/// (or the SNI of a TLS ClientHello) and closes.
pub(crate) async fn serve_tcp(
    mut stream: TcpStream,
    opening: Opening,
    shared: &Shared,
) -> io::Result<()> {
    let Opening {
        src: peer,
        dst: local,
        prefix,
        refuse_proxy: refuse,
    } = opening;
    let lim = &shared.limits;
    let mut buf = ReadBuf::with_prefix(&prefix, lim.max_first_bytes.min(2048), lim.max_first_bytes);
    drop(prefix);
    let deadline = Instant::now() + lim.read_timeout;
    loop {
        if looks_like_tls(buf.filled()) {
            return serve_tls(stream, buf, peer, local, shared).await;
        }
        if buf.is_full() {
            break;
        }
        match timeout_at(deadline, buf.read_from(&mut stream)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                record_tcp(shared, buf.filled(), None, false, peer, local).await;
                return Err(e);
            }
        }
    }
    // A forged header from an untrusted peer is recorded as it was sent,
    // against the real peer, and flagged.
    let forged = refuse && has_signature(buf.filled()) == Some(true);
    if forged {
        inc(&shared.stats.proxy_untrusted);
    }
    record_tcp(shared, buf.filled(), None, forged, peer, local).await;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Reads a TLS ClientHello (bounded in size and time), records its SNI,
/// refuses the handshake with an alert and closes.
async fn serve_tls(
    mut stream: TcpStream,
    first: ReadBuf,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    inc(&shared.stats.tls_hellos);
    let mut buf = ReadBuf::new(first.len().max(2048), MAX_HELLO_BYTES);
    if let Some(dst) = buf.data.get_mut(..first.len()) {
        dst.copy_from_slice(first.filled());
        buf.end = first.len();
    }
    drop(first);
    let deadline = Instant::now() + shared.limits.read_timeout;
    let hello = loop {
        match parse_client_hello(buf.filled()) {
            ClientHello::Incomplete if !buf.is_full() => {}
            ClientHello::Incomplete => break ClientHello::Malformed,
            done => break done,
        }
        match timeout_at(deadline, buf.read_from(&mut stream)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Err(e)) => return Err(e),
            _ => break ClientHello::Incomplete,
        }
    };
    let (sni, malformed) = match hello {
        ClientHello::Hello { sni } => (sni, false),
        _ => (None, true),
    };
    if sni.is_some() {
        inc(&shared.stats.tls_sni);
    }
    record_tcp(shared, buf.filled(), sni, malformed, peer, local).await;
    let _ = timeout(shared.limits.read_timeout, stream.write_all(TLS_ALERT)).await;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn record_tcp(
    shared: &Shared,
    first_bytes: &[u8],
    sni: Option<String>,
    malformed: bool,
    peer: SocketAddr,
    local: SocketAddr,
) {
    inc(&shared.stats.tcp_sessions);
    let mut ev = shared.event(EventKind::Tcp, peer, local);
    shared.attribute(&mut ev, sni.as_deref());
    ev.tls_sni = sni;
    ev.malformed = malformed;
    if !first_bytes.is_empty() {
        ev.payload = Some(hex(first_bytes, shared.limits.max_first_bytes));
    }
    shared.emit(ev).await;
}
