//! A bounded parser for HAProxy's PROXY protocol header, versions 1 and 2.
//!
//! A load balancer in front of the sinkhole opens each connection with a
//! header naming the client it relays for. Version 1 is one text line
//! (`PROXY TCP4 198.51.100.7 192.0.2.1 51000 80\r\n`, at most 107 bytes);
//! version 2 is binary: a 12-byte signature, a version/command byte, an
//! address family byte, a big-endian length and that many bytes of addresses
//! and TLVs. [`parse_proxy_header`] reads either from the start of a buffer,
//! never reads past the header, never allocates, and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included, as the specification fixes it.
pub const V1_MAX_LEN: usize = 107;

/// The fixed part of a version 2 header: signature, command, family, length.
pub const V2_FIXED_LEN: usize = 16;

/// The most address and TLV bytes accepted after the fixed part of a version
/// 2 header. The format allows 65535; load balancers send the addresses
/// (at most 216 bytes for Unix sockets) plus a few small TLVs, so a header
/// longer than this is refused rather than buffered.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// The longest header of either version this parser accepts.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a complete header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays for `src`, which connected to `dst`.
    Proxied {
        /// The original client.
        src: SocketAddr,
        /// The address the client connected to.
        dst: SocketAddr,
    },
    /// A connection the proxy made on its own behalf (version 2 `LOCAL`, such
    /// as a health check): the real peer address applies.
    Local,
    /// The proxy does not know or cannot express the client (version 1
    /// `UNKNOWN`, or version 2 with an unspecified or Unix address family or
    /// a datagram transport): the real peer address applies.
    Unknown,
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyParse {
    /// A complete header of `len` bytes; what follows belongs to the relayed
    /// protocol.
    Complete {
        /// What the header says.
        header: ProxyHeader,
        /// The header's length in bytes.
        len: usize,
    },
    /// A valid prefix of a header. Read more, but without letting the buffer
    /// grow past `max_len` bytes: for version 2 (and before the first byte)
    /// that is exactly where the header ends, so nothing after it is read
    /// early; a version 1 line may end sooner.
    Incomplete {
        /// The most bytes the header can still span.
        max_len: usize,
    },
    /// The bytes do not start with either signature.
    NotProxy,
    /// The bytes start like a header but break the format.
    Malformed(&'static str),
}

/// Whether `buf` opens with a PROXY header signature: `Some(true)` once a
/// whole signature (`PROXY ` or the 12 version 2 bytes) is there,
/// `Some(false)` once it cannot be, `None` while `buf` is a shorter prefix of
/// one. This is how a header from an untrusted peer is recognised and refused.
pub fn has_signature(buf: &[u8]) -> Option<bool> {
    if buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIGNATURE) {
        Some(true)
    } else if starts_like(buf, V1_PREFIX) || starts_like(buf, &V2_SIGNATURE) {
        // Shorter than either signature and agreeing with one (or empty).
        None
    } else {
        Some(false)
    }
}

/// Whether `buf` and `sig` agree on their common length.
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf.get(..n) == sig.get(..n)
}

/// Parses a PROXY protocol header (version 1 or 2) from the start of `buf`.
pub fn parse_proxy_header(buf: &[u8]) -> ProxyParse {
    match buf.first() {
        None => ProxyParse::Incomplete {
            max_len: V2_FIXED_LEN,
        },
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => ProxyParse::NotProxy,
    }
}

fn parse_v1(buf: &[u8]) -> ProxyParse {
    if !starts_like(buf, V1_PREFIX) {
        return ProxyParse::NotProxy;
    }
    let window = buf.get(..buf.len().min(V1_MAX_LEN)).unwrap_or(buf);
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.iter().any(|b| !(0x20..0x7f).contains(b)) {
            return ProxyParse::Malformed("control byte in a version 1 header");
        }
        return if window.len() >= V1_MAX_LEN {
            ProxyParse::Malformed("version 1 header longer than 107 bytes")
        } else {
            ProxyParse::Incomplete {
                max_len: V1_MAX_LEN,
            }
        };
    };
    let line = window.get(..cr).unwrap_or_default();
    if line.iter().any(|b| !(0x20..0x7f).contains(b)) {
        return ProxyParse::Malformed("control byte in a version 1 header");
    }
    match window.get(cr + 1) {
        None if cr + 1 >= V1_MAX_LEN => {
            return ProxyParse::Malformed("version 1 header longer than 107 bytes");
        }
        None => {
            return ProxyParse::Incomplete {
                max_len: V1_MAX_LEN,
            };
        }
        Some(b'\n') => {}
        Some(_) => return ProxyParse::Malformed("version 1 header without CRLF"),
    }
    let len = cr + 2;
    let rest = line.get(V1_PREFIX.len()..).unwrap_or_default();
    // `UNKNOWN` may be followed by anything up to the CRLF, which is ignored.
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return ProxyParse::Complete {
            header: ProxyHeader::Unknown,
            len,
        };
    }
    let mut parts = rest.split(|&b| b == b' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return ProxyParse::Malformed("version 1 header needs protocol, two addresses, two ports");
    };
    let (src, dst) = match proto {
        b"TCP4" => match (v1_ip::<Ipv4Addr>(src), v1_ip::<Ipv4Addr>(dst)) {
            (Some(s), Some(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
            _ => return ProxyParse::Malformed("bad IPv4 address in a version 1 header"),
        },
        b"TCP6" => match (v1_ip::<Ipv6Addr>(src), v1_ip::<Ipv6Addr>(dst)) {
            (Some(s), Some(d)) => (IpAddr::V6(s), IpAddr::V6(d)),
            _ => return ProxyParse::Malformed("bad IPv6 address in a version 1 header"),
        },
        _ => return ProxyParse::Malformed("version 1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let (Some(sport), Some(dport)) = (v1_port(sport), v1_port(dport)) else {
        return ProxyParse::Malformed("bad port in a version 1 header");
    };
    ProxyParse::Complete {
        header: ProxyHeader::Proxied {
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
        },
        len,
    }
}

fn v1_ip<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    // The standard parsers reject leading zeros in IPv4 octets, which some
    // stacks would read as octal; such an address is refused, not guessed at.
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// A decimal port without sign or leading zeros.
fn v1_port(field: &[u8]) -> Option<u16> {
    if field.is_empty() || field.len() > 5 || (field.len() > 1 && field.first() == Some(&b'0')) {
        return None;
    }
    if !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn parse_v2(buf: &[u8]) -> ProxyParse {
    if !starts_like(buf, &V2_SIGNATURE) {
        return ProxyParse::NotProxy;
    }
    let Some(fixed) = buf.get(..V2_FIXED_LEN) else {
        return ProxyParse::Incomplete {
            max_len: V2_FIXED_LEN,
        };
    };
    let [.., ver_cmd, fam, len_hi, len_lo] = *fixed else {
        return ProxyParse::Malformed("short version 2 header");
    };
    if ver_cmd >> 4 != 2 {
        return ProxyParse::Malformed("version 2 signature with another version");
    }
    let payload_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if payload_len > V2_MAX_PAYLOAD {
        return ProxyParse::Malformed("version 2 header longer than the accepted 4096 bytes");
    }
    let len = V2_FIXED_LEN + payload_len;
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return ProxyParse::Malformed("version 2 command is not LOCAL or PROXY"),
    };
    let (af, transport) = (fam >> 4, fam & 0x0f);
    if af > 3 || transport > 2 {
        return ProxyParse::Malformed("unknown version 2 address family or transport");
    }
    let needed = match af {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if payload_len < needed {
        return ProxyParse::Malformed("version 2 length too short for its address family");
    }
    let Some(payload) = buf.get(V2_FIXED_LEN..len) else {
        return ProxyParse::Incomplete { max_len: len };
    };
    let header = if local {
        // LOCAL connections carry no client; whatever addresses follow are ignored.
        ProxyHeader::Local
    } else if transport != 1 {
        ProxyHeader::Unknown
    } else {
        match af {
            1 => match <[u8; 12]>::try_from(payload.get(..12).unwrap_or_default()) {
                Ok(a) => {
                    let [s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1] = a;
                    ProxyHeader::Proxied {
                        src: SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
                            u16::from_be_bytes([sp0, sp1]),
                        ),
                        dst: SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)),
                            u16::from_be_bytes([dp0, dp1]),
                        ),
                    }
                }
                Err(_) => return ProxyParse::Malformed("short version 2 IPv4 addresses"),
            },
            2 => {
                let (Ok(s), Ok(d), Ok(sp), Ok(dp)) = (
                    <[u8; 16]>::try_from(payload.get(..16).unwrap_or_default()),
                    <[u8; 16]>::try_from(payload.get(16..32).unwrap_or_default()),
                    <[u8; 2]>::try_from(payload.get(32..34).unwrap_or_default()),
                    <[u8; 2]>::try_from(payload.get(34..36).unwrap_or_default()),
                ) else {
                    return ProxyParse::Malformed("short version 2 IPv6 addresses");
                };
                ProxyHeader::Proxied {
                    src: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), u16::from_be_bytes(sp)),
                    dst: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), u16::from_be_bytes(dp)),
                }
            }
            _ => ProxyHeader::Unknown,
        }
    };
    ProxyParse::Complete { header, len }
}

/// Encodes a version 1 header, for load-balancer simulations and tests.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> String {
    let proto = if src.is_ipv4() && dst.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) if proto == "TCP6" => v4.to_ipv6_mapped().to_string(),
        ip => ip.to_string(),
    };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        ip(src),
        ip(dst),
        src.port(),
        dst.port()
    )
}

/// Encodes a version 2 `PROXY` header over TCP, for load-balancer
/// simulations and tests. Mixed families are sent as IPv6 (IPv4-mapped).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 198.51.100.7 192.0.2.1 51000 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse_proxy_header(h),
            ProxyParse::Complete {
                header: ProxyHeader::Proxied {
                    src: sa("198.51.100.7:51000"),
                    dst: sa("192.0.2.1:80")
                },
                len: 44
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n";
        assert_eq!(
            parse_proxy_header(h),
            ProxyParse::Complete {
                header: ProxyHeader::Proxied {
                    src: sa("[2001:db8::7]:0"),
                    dst: sa("[2001:db8::1]:65535")
                },
                len: h.len()
            }
        );
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n"),
            ProxyParse::Complete {
                header: ProxyHeader::Unknown,
                len: 15
            }
        );
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            ProxyParse::Complete {
                header: ProxyHeader::Unknown,
                len: 35
            }
        );
    }

    #[test]
    fn v1_rejects_bad_fields() {
        for bad in [
            &b"PROXY TCP4 198.51.100.7 192.0.2.1 51000\r\n"[..],
            b"PROXY TCP4 198.51.100.7 192.0.2.1 51000 80 9\r\n",
            b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 198.051.100.7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 198.51.100.7 192.0.2.1 051000 80\r\n",
            b"PROXY TCP4 198.51.100.7 192.0.2.1 65536 80\r\n",
            b"PROXY TCP4 198.51.100.7 192.0.2.1 +1 80\r\n",
            b"PROXY TCP4  198.51.100.7 192.0.2.1 1 80\r\n",
            b"PROXY UDP4 198.51.100.7 192.0.2.1 1 80\r\n",
            b"PROXY TCP4 198.51.100.7 192.0.2.1 1 80\rX",
            b"PROXY TCP4 198.51.100.7\x00192.0.2.1 1 80\r\n",
        ] {
            assert!(
                matches!(parse_proxy_header(bad), ProxyParse::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert!(matches!(
            parse_proxy_header(&long),
            ProxyParse::Malformed(_)
        ));
        assert_eq!(
            parse_proxy_header(b"GET / HTTP/1.1\r\n"),
            ProxyParse::NotProxy
        );
        assert_eq!(parse_proxy_header(b"PROXZ"), ProxyParse::NotProxy);
        assert_eq!(parse_proxy_header(b"\r\n\r\nX"), ProxyParse::NotProxy);
    }

    #[test]
    fn prefixes_are_incomplete() {
        let v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 51000 80\r\n";
        let v2 = encode_v2(sa("198.51.100.7:51000"), sa("192.0.2.1:80"));
        for cut in 0..v1.len() {
            assert!(
                matches!(parse_proxy_header(&v1[..cut]), ProxyParse::Incomplete { max_len } if max_len >= cut),
                "{cut}"
            );
        }
        for cut in 0..v2.len() {
            assert!(
                matches!(parse_proxy_header(&v2[..cut]), ProxyParse::Incomplete { max_len } if max_len >= cut && max_len <= v2.len()),
                "{cut}"
            );
        }
    }

    #[test]
    fn v2_commands_and_families() {
        let src = sa("198.51.100.7:51000");
        let dst = sa("192.0.2.1:80");
        let mut h = encode_v2(src, dst);
        h.extend_from_slice(b"GET /");
        assert_eq!(
            parse_proxy_header(&h),
            ProxyParse::Complete {
                header: ProxyHeader::Proxied { src, dst },
                len: 28
            }
        );
        let (s6, d6) = (sa("[2001:db8::7]:1"), sa("[2001:db8::1]:443"));
        assert_eq!(
            parse_proxy_header(&encode_v2(s6, d6)),
            ProxyParse::Complete {
                header: ProxyHeader::Proxied { src: s6, dst: d6 },
                len: 52
            }
        );
        // LOCAL with no addresses, as health checks send it.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse_proxy_header(&local),
            ProxyParse::Complete {
                header: ProxyHeader::Local,
                len: 16
            }
        );
        // TLVs after the addresses are skipped.
        let mut tlv = encode_v2(src, dst);
        tlv[15] = 12 + 7;
        tlv.extend_from_slice(&[0x04, 0, 4, 1, 2, 3, 4]);
        assert_eq!(
            parse_proxy_header(&tlv),
            ProxyParse::Complete {
                header: ProxyHeader::Proxied { src, dst },
                len: 35
            }
        );
        // UDP and UNSPEC fall back to the real peer.
        let mut udp = encode_v2(src, dst);
        udp[13] = 0x12;
        assert!(matches!(
            parse_proxy_header(&udp),
            ProxyParse::Complete {
                header: ProxyHeader::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn v2_rejects_bad_headers() {
        let good = encode_v2(sa("198.51.100.7:1"), sa("192.0.2.1:80"));
        let with = |i: usize, v: u8| {
            let mut h = good.clone();
            h[i] = v;
            h
        };
        for bad in [
            with(12, 0x11),
            with(12, 0x22),
            with(13, 0x41),
            with(13, 0x13),
            with(15, 11),
        ] {
            assert!(
                matches!(parse_proxy_header(&bad), ProxyParse::Malformed(_)),
                "{bad:?}"
            );
        }
        let mut huge = good.clone();
        huge[14] = 0xff;
        assert!(matches!(
            parse_proxy_header(&huge),
            ProxyParse::Malformed(_)
        ));
    }

    #[test]
    fn encoders_round_trip_mixed_families() {
        let src = sa("198.51.100.7:5");
        let dst = sa("[2001:db8::1]:80");
        let v1 = encode_v1(src, dst);
        let ProxyParse::Complete {
            header: ProxyHeader::Proxied { src: s, .. },
            ..
        } = parse_proxy_header(v1.as_bytes())
        else {
            panic!("{v1}");
        };
        assert_eq!(s.ip().to_canonical(), src.ip());
        assert_eq!(has_signature(v1.as_bytes()), Some(true));
        assert_eq!(has_signature(&encode_v2(src, dst)), Some(true));
        assert_eq!(has_signature(&encode_v2(src, dst)[..3]), None);
        assert_eq!(has_signature(b"PROX"), None);
        assert_eq!(has_signature(b""), None);
        assert_eq!(has_signature(b"POST / HTTP/1.1"), Some(false));
        assert_eq!(has_signature(b"GET / HTTP/1.1"), Some(false));
    }

    proptest! {
        #[test]
        fn never_panics_and_lengths_are_bounded(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            match parse_proxy_header(&data) {
                ProxyParse::Complete { len, .. } => {
                    prop_assert!(len <= data.len() && len <= MAX_HEADER_LEN);
                }
                ProxyParse::Incomplete { max_len } => {
                    prop_assert!(max_len > data.len().min(V1_MAX_LEN - 1) && max_len <= MAX_HEADER_LEN);
                }
                _ => {}
            }
        }

        #[test]
        fn v2_prefixed_noise_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let data = [V2_SIGNATURE.as_slice(), &tail].concat();
            if let ProxyParse::Complete { len, .. } = parse_proxy_header(&data) {
                prop_assert!(len <= data.len());
            }
        }

        #[test]
        fn v1_round_trips(a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>()) {
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), sp);
            let dst = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), dp);
            for (s, d) in [(src, src), (dst, dst)] {
                let v1 = encode_v1(s, d);
                prop_assert!(v1.len() <= V1_MAX_LEN);
                prop_assert_eq!(parse_proxy_header(v1.as_bytes()), ProxyParse::Complete {
                    header: ProxyHeader::Proxied { src: s, dst: d }, len: v1.len() });
                let v2 = encode_v2(s, d);
                prop_assert_eq!(parse_proxy_header(&v2), ProxyParse::Complete {
                    header: ProxyHeader::Proxied { src: s, dst: d }, len: v2.len() });
            }
        }
    }
}
