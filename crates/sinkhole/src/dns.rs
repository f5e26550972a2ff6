//! A bounded DNS query parser and the sinkhole's authoritative responder.
//!
//! The hot path works on one packet buffer and one reply buffer reused across
//! queries: parsing borrows from the packet, the reply copies the question
//! as received (so 0x20 case randomisation survives) and appends the
//! configured sinkhole addresses. Nothing is allocated per query.
//!
//! Negative replies (NXDOMAIN, and NOERROR without data) carry a synthesised
//! SOA record for the enclosing seized zone in the authority section, so
//! resolvers cache them for the configured negative TTL (RFC 2308) instead of
//! asking again for every infected host's lookup.

use std::fmt::Write as _;

use crate::config::DnsAnswer;
use crate::family::{Attribution, FamilyMap};

const HEADER_LEN: usize = 12;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// The UDP payload size advertised in EDNS replies (the DNS flag day 2020 value).
const EDNS_UDP_SIZE: u16 = 1232;
/// The largest reply to a client that did not advertise EDNS (RFC 1035).
const CLASSIC_UDP_SIZE: usize = 512;
/// The SOA serial of the synthesised zones. Nothing ever transfers them, so
/// it never changes.
const SOA_SERIAL: u32 = 1;
/// SOA refresh, retry and expire in seconds. Only secondaries read them and
/// the sinkhole has none; these are the customary values.
const SOA_TIMERS: [u32; 3] = [3600, 900, 604_800];
/// The first label of the SOA MNAME, placed before the zone apex.
const SOA_MNAME_LABEL: &[u8] = b"\x03ns1";
/// The first label of the SOA RNAME (the mailbox `hostmaster@<zone>`).
const SOA_RNAME_LABEL: &[u8] = b"\x0ahostmaster";
/// The most additional records examined when looking for an OPT record.
const MAX_ADDITIONAL: u16 = 4;

/// A DNS response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// The name exists (an answer, or no data of that type).
    NoError,
    /// The query could not be parsed.
    FormErr,
    /// The name is in a seized zone but does not exist.
    NxDomain,
    /// The opcode is not QUERY.
    NotImp,
    /// The name is outside the seized zones, or the class is not IN.
    Refused,
    /// The query used an EDNS version other than 0.
    BadVers,
}

impl Rcode {
    fn code(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            // BADVERS is 16: the low four bits are zero, the rest goes in OPT.
            Rcode::BadVers => 0,
        }
    }
}

/// The EDNS(0) options of a query that matter to the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The EDNS version the client asked for.
    pub version: u8,
    /// The advertised UDP payload size.
    pub udp_size: u16,
}

/// A well-formed standard query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The query id.
    pub id: u16,
    /// The header flags.
    pub flags: u16,
    /// The question name in wire form (labels, ending with the root label).
    pub qname_wire: &'a [u8],
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The whole question section as received.
    pub question: &'a [u8],
    /// EDNS options, when the query carried an OPT record.
    pub edns: Option<Edns>,
}

/// The outcome of parsing one DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsParse<'a> {
    /// A standard query with one question.
    Query(Query<'a>),
    /// A message with a readable header that must be answered with `rcode`
    /// and no question (FORMERR or NOTIMP).
    Error {
        /// The query id.
        id: u16,
        /// The header flags.
        flags: u16,
        /// The response code to send.
        rcode: Rcode,
    },
    /// A message not worth answering: shorter than a header, or a response.
    Drop,
}

/// Parses a DNS query message. Never panics, never allocates.
pub fn parse_query(packet: &[u8]) -> DnsParse<'_> {
    let Some((hdr, body)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return DnsParse::Drop;
    };
    let word = |i: usize| u16::from_be_bytes([hdr[i], hdr[i + 1]]);
    let (id, flags) = (word(0), word(2));
    if flags & FLAG_QR != 0 {
        // Never answer responses: that is how reflection loops start.
        return DnsParse::Drop;
    }
    let err = |rcode| DnsParse::Error { id, flags, rcode };
    if (flags >> 11) & 0xF != 0 {
        return err(Rcode::NotImp);
    }
    let (qdcount, ancount, nscount, arcount) = (word(4), word(6), word(8), word(10));
    if qdcount != 1 {
        return err(Rcode::FormErr);
    }
    let Some(name_len) = wire_name_len(body) else {
        return err(Rcode::FormErr);
    };
    let Some((qname_wire, rest)) = body.split_at_checked(name_len) else {
        return err(Rcode::FormErr);
    };
    let Some((tc, mut rest)) = rest.split_first_chunk::<4>() else {
        return err(Rcode::FormErr);
    };
    let question = body.get(..name_len + 4).unwrap_or_default();
    let mut edns = None;
    // Queries carry no answer or authority records; when one does, its
    // additional section is not looked at and the reply goes without EDNS.
    if ancount == 0 && nscount == 0 {
        for _ in 0..arcount.min(MAX_ADDITIONAL) {
            let Some(rr) = parse_rr(rest) else {
                return err(Rcode::FormErr);
            };
            rest = rr.rest;
            if rr.rtype == TYPE_OPT {
                if edns.is_some() || !rr.root_owner {
                    return err(Rcode::FormErr);
                }
                edns = Some(Edns {
                    udp_size: rr.class,
                    version: rr.ttl.to_be_bytes()[1],
                });
            }
        }
    }
    DnsParse::Query(Query {
        id,
        flags,
        qname_wire,
        qtype: u16::from_be_bytes([tc[0], tc[1]]),
        qclass: u16::from_be_bytes([tc[2], tc[3]]),
        question,
        edns,
    })
}

/// The length of an uncompressed wire name at the start of `buf`, including
/// the root label; `None` if it is truncated, compressed or over 255 bytes.
fn wire_name_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    loop {
        let len = usize::from(*buf.get(pos)?);
        if len == 0 {
            let total = pos + 1;
            return (total <= 255).then_some(total);
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if pos > 255 {
            return None;
        }
    }
}

struct Rr<'a> {
    root_owner: bool,
    rtype: u16,
    class: u16,
    ttl: u32,
    rest: &'a [u8],
}

/// Parses one resource record header and skips its data. Owner names may be
/// compressed here (a pointer ends the name).
fn parse_rr(buf: &[u8]) -> Option<Rr<'_>> {
    let mut pos = 0usize;
    loop {
        let len = *buf.get(pos)?;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xC0 == 0xC0 {
            pos += 2;
            break;
        }
        if len > 63 {
            return None;
        }
        pos += 1 + usize::from(len);
        if pos > 255 {
            return None;
        }
    }
    let root_owner = pos == 1;
    let fixed = buf.get(pos..pos + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rest = buf.get(pos + 10 + rdlen..)?;
    Some(Rr {
        root_owner,
        rtype,
        class,
        ttl,
        rest,
    })
}

/// Writes a wire name in presentation form, lower-cased, without the
/// trailing dot (the root is `.`). Bytes outside `[a-z0-9_*-]` are escaped
/// as `\DDD`, and a dot inside a label as `\.`, so the result never matches a
/// config pattern by accident.
pub fn write_name(wire: &[u8], out: &mut String) {
    out.clear();
    let mut rest = wire;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 || len > 63 {
            break;
        }
        let Some((label, tail)) = tail.split_at_checked(usize::from(len)) else {
            break;
        };
        if !out.is_empty() {
            out.push('.');
        }
        for &b in label {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') {
                out.push(char::from(b));
            } else if b == b'.' || b == b'\\' {
                out.push('\\');
                out.push(char::from(b));
            } else {
                let _ = write!(out, "\\{b:03}");
            }
        }
        rest = tail;
    }
    if out.is_empty() {
        out.push('.');
    }
}

/// The mnemonic of a query type, or `TYPEn` (RFC 3597) for the rest.
pub fn qtype_name(qtype: u16) -> std::borrow::Cow<'static, str> {
    let s = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        n => return format!("TYPE{n}").into(),
    };
    s.into()
}

/// What the responder did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition<'m> {
    /// A query for a seized name, answered authoritatively (NOERROR).
    Answered {
        /// The query type.
        qtype: u16,
        /// The attribution of the name.
        attribution: &'m Attribution,
    },
    /// A query for a name in a seized zone that no pattern matches (NXDOMAIN).
    NxDomain {
        /// The query type.
        qtype: u16,
    },
    /// A query outside the seized zones or of another class (REFUSED).
    Refused {
        /// The query type.
        qtype: u16,
    },
    /// A query with an unsupported EDNS version (BADVERS).
    BadVersion,
    /// A message answered FORMERR or NOTIMP.
    Malformed,
    /// A message dropped without reply.
    Dropped,
}

impl Disposition<'_> {
    /// The query type, for dispositions that come from a parsed question.
    pub fn qtype(&self) -> Option<u16> {
        match self {
            Disposition::Answered { qtype, .. }
            | Disposition::NxDomain { qtype }
            | Disposition::Refused { qtype } => Some(*qtype),
            _ => None,
        }
    }
}

/// Answers queries for the seized names.
#[derive(Debug, Clone)]
pub struct Responder {
    families: FamilyMap,
    answer: DnsAnswer,
}

impl Responder {
    /// A responder for the names in `families`, answering with `answer`.
    pub fn new(families: FamilyMap, answer: DnsAnswer) -> Self {
        Responder { families, answer }
    }

    /// Parses `packet` and writes the reply into `out` (cleared first; left
    /// empty when nothing should be sent). The decoded question name is left
    /// in `name` for recording.
    pub fn respond(&self, packet: &[u8], out: &mut Vec<u8>, name: &mut String) -> Disposition<'_> {
        out.clear();
        name.clear();
        let q = match parse_query(packet) {
            DnsParse::Drop => return Disposition::Dropped,
            DnsParse::Error { id, flags, rcode } => {
                write_header(out, id, flags, rcode, false, [0, 0, 0, 0]);
                return Disposition::Malformed;
            }
            DnsParse::Query(q) => q,
        };
        write_name(q.qname_wire, name);
        if q.edns.is_some_and(|e| e.version != 0) {
            write_header(out, q.id, q.flags, Rcode::BadVers, false, [1, 0, 0, 1]);
            out.extend_from_slice(q.question);
            write_opt(out, 1);
            return Disposition::BadVersion;
        }
        let class_ok = q.qclass == CLASS_IN || q.qclass == CLASS_ANY;
        let attribution = if class_ok {
            self.families.by_name(name)
        } else {
            None
        };
        let (rcode, aa, disposition) = match attribution {
            Some(attribution) => (
                Rcode::NoError,
                true,
                Disposition::Answered {
                    qtype: q.qtype,
                    attribution,
                },
            ),
            None if class_ok && self.families.in_zone(name) => (
                Rcode::NxDomain,
                true,
                Disposition::NxDomain { qtype: q.qtype },
            ),
            None => (
                Rcode::Refused,
                false,
                Disposition::Refused { qtype: q.qtype },
            ),
        };
        let (v4, v6): (&[_], &[_]) = match (rcode, q.qtype) {
            (Rcode::NoError, TYPE_A) => (&self.answer.ipv4, &[]),
            (Rcode::NoError, TYPE_AAAA) => (&[], &self.answer.ipv6),
            // A minimal reply to ANY, in the spirit of RFC 8482.
            (Rcode::NoError, TYPE_ANY) if !self.answer.ipv4.is_empty() => (&self.answer.ipv4, &[]),
            (Rcode::NoError, TYPE_ANY) => (&[], &self.answer.ipv6),
            _ => (&[], &[]),
        };
        let ancount = (v4.len() + v6.len()) as u16;
        let arcount = u16::from(q.edns.is_some());
        // Authoritative replies without answers are negative (NXDOMAIN or
        // no data): RFC 2308 has them carry the zone's SOA so resolvers can
        // cache them. The apex is found in the question's own wire name, so
        // the SOA owner and its names are compression pointers into it.
        let apex = if aa && ancount == 0 {
            zone_apex(q.qname_wire, name, &self.families)
        } else {
            None
        };
        let nscount = u16::from(apex.is_some());
        write_header(
            out,
            q.id,
            q.flags,
            rcode,
            aa,
            [1, ancount, nscount, arcount],
        );
        out.extend_from_slice(q.question);
        let ttl = self.answer.ttl.to_be_bytes();
        for a in v4 {
            // The owner is a pointer to the question name at offset 12.
            out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
            out.extend_from_slice(&ttl);
            out.extend_from_slice(&[0, 4]);
            out.extend_from_slice(&a.octets());
        }
        for a in v6 {
            out.extend_from_slice(&[0xC0, 0x0C, 0, 28, 0, 1]);
            out.extend_from_slice(&ttl);
            out.extend_from_slice(&[0, 16]);
            out.extend_from_slice(&a.octets());
        }
        if let Some(apex) = apex {
            write_soa(out, apex, self.answer.negative_ttl);
        }
        if q.edns.is_some() {
            write_opt(out, 0);
        }
        // The same bound holds over TCP, where it costs nothing: with
        // compressed names every reply is far below 512 bytes.
        let limit = q.edns.map_or(CLASSIC_UDP_SIZE, |e| {
            usize::from(e.udp_size.min(EDNS_UDP_SIZE)).max(CLASSIC_UDP_SIZE)
        });
        fit_reply(out, q.question.len(), limit);
        disposition
    }
}

/// The offset in `wire` of the closest enclosing seized zone's apex, if any.
///
/// `name` is `wire` in presentation form (as [`write_name`] writes it); the two
/// are walked label by label together, so the offset always falls on a label
/// boundary of the wire name.
fn zone_apex(wire: &[u8], name: &str, families: &FamilyMap) -> Option<usize> {
    let (mut pos, mut text) = (0usize, name);
    loop {
        let len = usize::from(*wire.get(pos)?);
        if len == 0 {
            return None;
        }
        if families.is_zone_apex(text) {
            return Some(pos);
        }
        pos += 1 + len;
        text = after_first_label(text)?;
    }
}

/// The rest of a presentation name after its first label, skipping the
/// `\.`, `\\` and `\DDD` escapes [`write_name`] produces.
fn after_first_label(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0usize;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 4,
            b'\\' => i += 2,
            b'.' => return text.get(i + 1..),
            _ => i += 1,
        }
    }
    None
}

/// Appends the SOA of the zone whose apex is at `apex` in the question name:
/// `ns1.<zone>` as MNAME, `hostmaster.<zone>` as RNAME, and `negative_ttl`
/// as both the record TTL and MINIMUM, the two values RFC 2308 caps the
/// negative-caching time with.
fn write_soa(out: &mut Vec<u8>, apex: usize, negative_ttl: u32) {
    // The question name starts right after the header and is at most 255
    // bytes, so the pointer always fits in its 14 bits.
    let ptr = (0xC000 | (HEADER_LEN + apex) as u16).to_be_bytes();
    let rdlen = SOA_MNAME_LABEL.len() + SOA_RNAME_LABEL.len() + 2 * ptr.len() + 5 * 4;
    out.extend_from_slice(&ptr);
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&negative_ttl.to_be_bytes());
    out.extend_from_slice(&(rdlen as u16).to_be_bytes());
    out.extend_from_slice(SOA_MNAME_LABEL);
    out.extend_from_slice(&ptr);
    out.extend_from_slice(SOA_RNAME_LABEL);
    out.extend_from_slice(&ptr);
    out.extend_from_slice(&SOA_SERIAL.to_be_bytes());
    for t in SOA_TIMERS {
        out.extend_from_slice(&t.to_be_bytes());
    }
    out.extend_from_slice(&negative_ttl.to_be_bytes());
}

/// Cuts a reply longer than `limit` back to its header and question and sets
/// TC, so the client retries over TCP rather than receiving a packet its
/// path or stack may drop.
fn fit_reply(out: &mut Vec<u8>, question_len: usize, limit: usize) {
    if out.len() <= limit {
        return;
    }
    out.truncate(HEADER_LEN + question_len);
    if let Some(flags) = out.get_mut(2) {
        *flags |= (FLAG_TC >> 8) as u8;
    }
    if let Some(counts) = out.get_mut(6..HEADER_LEN) {
        counts.fill(0);
    }
}

fn write_header(out: &mut Vec<u8>, id: u16, qflags: u16, rcode: Rcode, aa: bool, counts: [u16; 4]) {
    let mut flags = FLAG_QR | (qflags & (0x7800 | FLAG_RD | FLAG_CD)) | rcode.code();
    if aa {
        flags |= FLAG_AA;
    }
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Appends an OPT record: root owner, our UDP size, the extended rcode bits,
/// version 0, no flags, no options.
fn write_opt(out: &mut Vec<u8>, ext_rcode: u8) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&[ext_rcode, 0, 0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Attribution;

    fn responder() -> Responder {
        let mut m = FamilyMap::new();
        m.insert(
            Attribution {
                family: "alpha".parse().unwrap(),
                tag: None,
            },
            &[
                "*.evil.example".parse().unwrap(),
                "evil.example".parse().unwrap(),
            ],
            &[],
        )
        .unwrap();
        Responder::new(
            m,
            DnsAnswer {
                ipv4: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
                ipv6: vec!["2001:db8::1".parse().unwrap()],
                ttl: 60,
                negative_ttl: 90,
            },
        )
    }

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn answers_seized_a_query() {
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        let d = r.respond(
            &query("WWW.Evil.example", TYPE_A, true),
            &mut out,
            &mut name,
        );
        assert!(matches!(d, Disposition::Answered { qtype: 1, .. }));
        assert_eq!(name, "www.evil.example");
        assert_eq!(&out[..4], &[0x12, 0x34, 0x85, 0x00]);
        assert_eq!(&out[4..12], &[0, 1, 0, 2, 0, 0, 0, 1]);
        // The question is echoed with its original case.
        assert_eq!(&out[13..16], b"WWW");
    }

    #[test]
    fn nxdomain_refused_and_errors() {
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        let d = r.respond(
            &query("evil.example", TYPE_AAAA, false),
            &mut out,
            &mut name,
        );
        assert!(matches!(d, Disposition::Answered { .. }));
        let d = r.respond(&query("other.example", TYPE_A, false), &mut out, &mut name);
        assert_eq!(d, Disposition::Refused { qtype: 1 });
        assert_eq!(out[3] & 0xF, 5);
        assert_eq!(
            r.respond(&[1, 2, 3], &mut out, &mut name),
            Disposition::Dropped
        );
        assert!(out.is_empty());
        let mut bad = query("evil.example", TYPE_A, false);
        bad.truncate(bad.len() - 2);
        assert_eq!(r.respond(&bad, &mut out, &mut name), Disposition::Malformed);
        assert_eq!(out.len(), 12);
        assert_eq!(out[3] & 0xF, 1);
    }

    fn parse(out: &[u8]) -> hickory_proto::op::Message {
        hickory_proto::op::Message::from_vec(out).unwrap()
    }

    /// The single SOA in the authority section, checked against the zone.
    fn soa(reply: &hickory_proto::op::Message, zone: &str) -> hickory_proto::rr::rdata::SOA {
        use hickory_proto::rr::RData;
        assert_eq!(reply.authorities.len(), 1, "{reply:?}");
        let rr = &reply.authorities[0];
        assert_eq!(rr.name.to_ascii().to_ascii_lowercase(), format!("{zone}."));
        assert_eq!(rr.ttl, 90);
        let RData::SOA(soa) = &rr.data else {
            panic!("not an SOA: {rr:?}");
        };
        assert_eq!(
            soa.mname.to_ascii().to_ascii_lowercase(),
            format!("ns1.{zone}.")
        );
        assert_eq!(
            soa.rname.to_ascii().to_ascii_lowercase(),
            format!("hostmaster.{zone}.")
        );
        assert_eq!(soa.minimum, 90);
        soa.clone()
    }

    #[test]
    fn negative_replies_carry_the_zone_soa() {
        use hickory_proto::op::ResponseCode;
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        for edns in [false, true] {
            // No data: the name is seized but has no MX.
            r.respond(&query("www.EVIL.example", 15, edns), &mut out, &mut name);
            let reply = parse(&out);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.answers.is_empty());
            assert_eq!(soa(&reply, "evil.example").serial, SOA_SERIAL);
            assert_eq!(reply.edns.is_some(), edns, "{reply:?}");
        }
        // NXDOMAIN: a name in the zone of an exact pattern that does not match.
        let mut m = FamilyMap::new();
        m.insert(
            Attribution {
                family: "beta".parse().unwrap(),
                tag: None,
            },
            &["c2.other.example".parse().unwrap()],
            &[],
        )
        .unwrap();
        let r2 = Responder::new(m, r.answer.clone());
        let d = r2.respond(
            &query("a.b.c2.other.example", TYPE_A, false),
            &mut out,
            &mut name,
        );
        assert_eq!(d, Disposition::NxDomain { qtype: 1 });
        let reply = parse(&out);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.metadata.authoritative);
        soa(&reply, "c2.other.example");
        // No data at the zone apex itself: the SOA owner is the question name.
        r2.respond(&query("c2.other.example", 16, true), &mut out, &mut name);
        assert_eq!(parse(&out).metadata.response_code, ResponseCode::NoError);
        soa(&parse(&out), "c2.other.example");
    }

    #[test]
    fn positive_and_refused_replies_have_no_soa() {
        use hickory_proto::op::ResponseCode;
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        for qtype in [TYPE_A, TYPE_AAAA, TYPE_ANY] {
            r.respond(&query("www.evil.example", qtype, true), &mut out, &mut name);
            let reply = parse(&out);
            assert!(!reply.answers.is_empty());
            assert!(reply.authorities.is_empty(), "{reply:?}");
        }
        r.respond(&query("other.example", TYPE_A, false), &mut out, &mut name);
        let reply = parse(&out);
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        assert!(reply.authorities.is_empty());
    }

    #[test]
    fn longest_negative_reply_fits_classic_udp() {
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        // 253 characters: the longest name, in the seized zone.
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}.evil.example", "b".repeat(48));
        assert_eq!(long.len(), 253);
        for edns in [false, true] {
            r.respond(&query(&long, 16, edns), &mut out, &mut name);
            assert!(out.len() <= CLASSIC_UDP_SIZE, "{}", out.len());
            assert_eq!(out[2] & 0x02, 0, "TC set");
            soa(&parse(&out), "evil.example");
        }
    }

    #[test]
    fn oversized_replies_are_truncated_with_tc() {
        let r = responder();
        let (mut out, mut name) = (Vec::new(), String::new());
        let q = query("www.evil.example", 16, true);
        r.respond(&q, &mut out, &mut name);
        let full = out.len();
        fit_reply(&mut out, q.len() - 12 - 11, full - 1);
        let reply = parse(&out);
        assert!(reply.metadata.truncation);
        assert_eq!(reply.queries.len(), 1);
        assert!(reply.authorities.is_empty() && reply.edns.is_none());
        let before = out.clone();
        fit_reply(&mut out, q.len() - 12 - 11, CLASSIC_UDP_SIZE);
        assert_eq!(out, before);
    }

    #[test]
    fn apex_walk_follows_escaped_labels() {
        assert_eq!(
            after_first_label("a\\.b.evil.example"),
            Some("evil.example")
        );
        assert_eq!(after_first_label("\\000z.x"), Some("x"));
        assert_eq!(after_first_label("x"), None);
        let r = responder();
        let wire = b"\x03a.b\x04evil\x07example\x00";
        let mut name = String::new();
        write_name(wire, &mut name);
        assert_eq!(zone_apex(wire, &name, &r.families), Some(4));
    }

    #[test]
    fn names_are_escaped() {
        let mut s = String::new();
        write_name(b"\x03a.b\x02\x00Z\x00", &mut s);
        assert_eq!(s, "a\\.b.\\000z");
        write_name(b"\x00", &mut s);
        assert_eq!(s, ".");
    }
}
