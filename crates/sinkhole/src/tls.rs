//! A bounded parser that finds the server name in a TLS ClientHello.
//!
//! The sinkhole does not terminate TLS: it reads the client's first flight,
//! records the SNI (which names the C2 domain the bot wanted) and closes.

use std::borrow::Cow;

/// The most bytes of TLS records read while looking for a complete ClientHello.
///
/// A ClientHello with a post-quantum key share is about 1.8 KiB; the limit
/// allows the largest single record plus headers.
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;

/// The outcome of looking for a ClientHello at the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// The bytes so far are a valid prefix; read more.
    Incomplete,
    /// The bytes do not start a TLS handshake.
    NotTls,
    /// A TLS handshake that is not a well-formed ClientHello.
    Malformed,
    /// A complete ClientHello.
    Hello {
        /// The `host_name` from the server_name extension, if present.
        sni: Option<String>,
    },
}

/// Whether `buf` starts like a TLS handshake record (content type 22, major version 3).
pub fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x16] | [0x16, 0x03, ..])
}

/// Parses a TLS ClientHello from the first bytes a client sent, reassembling
/// it across handshake records if needed. Never reads beyond `buf` and never
/// allocates more than [`MAX_HELLO_BYTES`].
pub fn parse_client_hello(buf: &[u8]) -> ClientHello {
    if !looks_like_tls(buf) {
        return ClientHello::NotTls;
    }
    match handshake_message(buf) {
        Reassembly::Incomplete => ClientHello::Incomplete,
        Reassembly::Malformed => ClientHello::Malformed,
        Reassembly::Done(msg) => match parse_hello_body(&msg) {
            Some(sni) => ClientHello::Hello { sni },
            None => ClientHello::Malformed,
        },
    }
}

enum Reassembly<'a> {
    Incomplete,
    Malformed,
    Done(Cow<'a, [u8]>),
}

/// Extracts the first handshake message body (after its 4-byte header) from a
/// run of handshake records.
fn handshake_message(buf: &[u8]) -> Reassembly<'_> {
    let mut rest = buf;
    let mut joined: Option<Vec<u8>> = None;
    let mut first: &[u8] = &[];
    loop {
        let Some((hdr, after)) = rest.split_first_chunk::<5>() else {
            return Reassembly::Incomplete;
        };
        if hdr[0] != 0x16 || hdr[1] != 0x03 {
            return Reassembly::Malformed;
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        if len == 0 || len > 16_384 + 2048 {
            return Reassembly::Malformed;
        }
        let Some(fragment) = after.get(..len) else {
            return Reassembly::Incomplete;
        };
        rest = after.get(len..).unwrap_or(&[]);
        let data: &[u8] = match &mut joined {
            None if first.is_empty() => {
                first = fragment;
                first
            }
            None => {
                let mut v = Vec::with_capacity(first.len() + fragment.len());
                v.extend_from_slice(first);
                v.extend_from_slice(fragment);
                joined = Some(v);
                joined.as_deref().unwrap_or(&[])
            }
            Some(v) => {
                if v.len() + fragment.len() > MAX_HELLO_BYTES {
                    return Reassembly::Malformed;
                }
                v.extend_from_slice(fragment);
                v.as_slice()
            }
        };
        let Some((&[kind, a, b, c], body)) = data.split_first_chunk::<4>() else {
            continue;
        };
        if kind != 1 {
            return Reassembly::Malformed;
        }
        let msg_len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
        if msg_len > MAX_HELLO_BYTES {
            return Reassembly::Malformed;
        }
        if body.len() >= msg_len {
            let start = 4;
            let end = start + msg_len;
            return match joined {
                None => first.get(start..end).map_or(Reassembly::Malformed, |m| {
                    Reassembly::Done(Cow::Borrowed(m))
                }),
                Some(mut v) => {
                    v.truncate(end);
                    v.drain(..start);
                    Reassembly::Done(Cow::Owned(v))
                }
            };
        }
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Walks a ClientHello body to the server_name extension. `None` means malformed.
fn parse_hello_body(body: &[u8]) -> Option<Option<String>> {
    let mut c = Cursor(body);
    c.take(2)?; // legacy_version
    c.take(32)?; // random
    c.vec8()?; // legacy_session_id
    c.vec16()?; // cipher_suites
    c.vec8()?; // legacy_compression_methods
    if c.0.is_empty() {
        // Extensions are optional in TLS 1.0-1.2 hellos.
        return Some(None);
    }
    let mut exts = Cursor(c.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == 0 {
            return server_name(data).map(Some);
        }
    }
    Some(None)
}

fn server_name(data: &[u8]) -> Option<String> {
    let mut c = Cursor(data);
    let mut list = Cursor(c.vec16()?);
    while !list.0.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 {
            if name.is_empty() || name.len() > 255 {
                return None;
            }
            return Some(crate::text::printable(name, 255));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with the given SNI, split into records of `chunk` bytes.
    fn hello(sni: &str, chunk: usize) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let name = sni.as_bytes();
        let mut ext = Vec::new();
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut out = Vec::new();
        for part in hs.chunks(chunk) {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn single_record() {
        let h = hello("c2.example.com", 1 << 14);
        assert_eq!(
            parse_client_hello(&h),
            ClientHello::Hello {
                sni: Some("c2.example.com".into())
            }
        );
        for cut in 1..h.len() {
            assert_eq!(
                parse_client_hello(&h[..cut]),
                ClientHello::Incomplete,
                "{cut}"
            );
        }
    }

    #[test]
    fn fragmented_records() {
        let h = hello("frag.example", 7);
        assert_eq!(
            parse_client_hello(&h),
            ClientHello::Hello {
                sni: Some("frag.example".into())
            }
        );
    }

    #[test]
    fn not_tls_and_malformed() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            ClientHello::NotTls
        );
        assert_eq!(parse_client_hello(b""), ClientHello::NotTls);
        let mut h = hello("x.example", 1 << 14);
        h[5] = 2; // ServerHello, not ClientHello
        assert_eq!(parse_client_hello(&h), ClientHello::Malformed);
    }
}
