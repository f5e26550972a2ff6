//! The event log's on-disk form: batches of events encoded as compact segments.
//!
//! Writing one SQLite row per event cost more than everything else an append
//! does, so the log keeps each batch (split into segments of at most
//! [`SEGMENT_EVENTS`] events) as one blob. A segment is a format byte, the
//! event count, then each event field by field:
//!
//! * the timestamp as a zigzag varint delta from the previous event's;
//! * one flag byte: kind, transport, malformed, enriched, AS present;
//! * addresses as a length byte (4 or 16) and the bytes, ports as varints;
//! * every text field through a per-segment dictionary, so the User-Agent,
//!   host, family, sensor and AS name that repeat across a batch are written
//!   once: code 0 is absent, 1 a literal that is not remembered, 2 a literal
//!   that is, and `n >= 3` the `(n - 3)`-th remembered literal;
//! * the prefix as address, length byte and prefix length; the AS as a varint.
//!
//! Decoding checks every length against the bytes left, so a damaged blob
//! yields [`Error::Corrupt`], never a panic or an oversized allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use takedown_event::{
    Asn, CountryCode, Event, EventKind, Family, Network, SensorId, Timestamp, Transport,
};

use crate::Error;

/// The most events one segment holds; a batch larger than this spans several.
pub(crate) const SEGMENT_EVENTS: usize = 8192;

/// The encoding's version, the first byte of every segment.
const FORMAT: u8 = 1;

/// Text longer than this is written literally and not remembered.
const MAX_INTERNED_LEN: usize = 256;

/// The most distinct strings one segment remembers.
const MAX_DICT: usize = 1 << 16;

/// The smallest encoding of one event, used to bound the declared count.
const MIN_EVENT_BYTES: usize = 24;

/// A small, fast, non-keyed hasher for short in-process keys (the FxHash step).
///
/// Nothing it hashes is stored or comes from an attacker who can observe
/// timings of this map, and a worst case only slows one batch's encoding.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A hash map with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const F_KIND: u8 = 0b0000_0011;
const F_UDP: u8 = 0b0000_0100;
const F_MALFORMED: u8 = 0b0000_1000;
const F_ENRICHED: u8 = 0b0001_0000;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl Writer<'_> {
    pub(crate) fn ip(&mut self, ip: IpAddr) {
        put_ip(&mut self.out, ip);
    }
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(16);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Writes the primitives of a segment: varints, addresses and dictionary text.
pub(crate) struct Writer<'a> {
    out: Vec<u8>,
    dict: FxMap<&'a str, u64>,
    last_ts: i64,
}

impl<'a> Writer<'a> {
    /// A segment of `count` items, starting with the format byte.
    pub(crate) fn new(count: usize, capacity: usize) -> Self {
        let mut w = Writer {
            out: Vec::with_capacity(16 + capacity),
            // Each item brings a few strings, and about as many are new as
            // there are items; sizing the dictionary once saves rehashing
            // it a dozen times as it fills.
            dict: FxMap::with_capacity_and_hasher(count.min(MAX_DICT), Default::default()),
            last_ts: 0,
        };
        w.out.push(FORMAT);
        put_varint(&mut w.out, count as u64);
        w
    }

    /// The finished segment.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }

    pub(crate) fn varint(&mut self, v: u64) {
        put_varint(&mut self.out, v);
    }

    pub(crate) fn signed(&mut self, v: i64) {
        put_varint(&mut self.out, zigzag(v));
    }

    pub(crate) fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    /// Length-prefixed bytes.
    pub(crate) fn blob(&mut self, b: &[u8]) {
        put_varint(&mut self.out, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    pub(crate) fn text(&mut self, s: Option<&'a str>) {
        let Some(s) = s else {
            self.out.push(0);
            return;
        };
        if let Some(&i) = self.dict.get(s) {
            put_varint(&mut self.out, i + 3);
            return;
        }
        if s.len() <= MAX_INTERNED_LEN && self.dict.len() < MAX_DICT {
            let n = self.dict.len() as u64;
            self.dict.insert(s, n);
            self.out.push(2);
        } else {
            self.out.push(1);
        }
        put_varint(&mut self.out, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn event(&mut self, e: &'a Event) {
        put_varint(
            &mut self.out,
            zigzag(e.timestamp.0.wrapping_sub(self.last_ts)),
        );
        self.last_ts = e.timestamp.0;
        let kind = match e.kind {
            EventKind::Http => 0,
            EventKind::Tcp => 1,
            EventKind::Dns => 2,
        };
        let mut flags = kind;
        if e.protocol == Transport::Udp {
            flags |= F_UDP;
        }
        if e.malformed {
            flags |= F_MALFORMED;
        }
        if e.network.is_some() {
            flags |= F_ENRICHED;
        }
        self.out.push(flags);
        put_ip(&mut self.out, e.src_ip);
        put_varint(&mut self.out, u64::from(e.src_port));
        put_ip(&mut self.out, e.dst_ip);
        put_varint(&mut self.out, u64::from(e.dst_port));
        for s in [
            &e.http_method,
            &e.http_url,
            &e.http_host,
            &e.http_agent,
            &e.http_referer,
            &e.tls_sni,
            &e.dns_qname,
            &e.dns_qtype,
            &e.payload,
            &e.tag,
        ] {
            self.text(s.as_deref());
        }
        self.text(e.family.as_ref().map(Family::as_str));
        self.text(Some(e.sensor.as_str()));
        let n = e.network.as_ref();
        match n.and_then(|n| n.prefix) {
            Some(p) => {
                put_ip(&mut self.out, p.addr());
                self.out.push(p.prefix_len());
            }
            None => self.out.push(0),
        }
        put_varint(
            &mut self.out,
            n.and_then(|n| n.asn).map_or(0, |a| u64::from(a.0) + 1),
        );
        self.text(n.and_then(|n| n.as_name.as_deref()));
        self.text(n.and_then(|n| n.country.as_ref()).map(CountryCode::as_str));
    }
}

/// Encodes events (at most [`SEGMENT_EVENTS`] of them, though any number decodes) as one segment.
pub(crate) fn encode(events: &[Event]) -> Vec<u8> {
    let mut enc = Writer::new(events.len(), events.len() * 64);
    for e in events {
        enc.event(e);
    }
    enc.finish()
}

/// Reads one segment back, item by item.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    dict: Vec<&'a str>,
    left: u64,
    last_ts: i64,
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("event segment: {what}"))
}

impl<'a> Decoder<'a> {
    /// Starts decoding a segment, checking its header; each item takes at least `min_item` bytes.
    pub(crate) fn with_min_item(buf: &'a [u8], min_item: usize) -> Result<Self, Error> {
        let mut d = Decoder {
            buf,
            dict: Vec::new(),
            left: 0,
            last_ts: 0,
        };
        match d.byte()? {
            FORMAT => {}
            v => return Err(corrupt(&format!("unknown format {v}"))),
        }
        let n = d.varint()?;
        if n > (d.buf.len() / min_item.max(1)) as u64 {
            return Err(corrupt("event count exceeds the data"));
        }
        d.left = n;
        Ok(d)
    }

    /// Starts decoding an event segment, checking its header.
    pub(crate) fn new(buf: &'a [u8]) -> Result<Self, Error> {
        Self::with_min_item(buf, MIN_EVENT_BYTES)
    }

    /// Takes one item from the declared count; `false` after the last.
    pub(crate) fn take_item(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Whether every byte was consumed.
    pub(crate) fn is_done(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn signed(&mut self) -> Result<i64, Error> {
        Ok(unzigzag(self.varint()?))
    }

    /// Length-prefixed bytes, at most `max` of them.
    pub(crate) fn blob(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let len = usize::try_from(self.varint()?).map_err(|_| corrupt("blob length"))?;
        if len > max {
            return Err(corrupt("blob too long"));
        }
        self.bytes(len)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Error> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| corrupt("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(corrupt("truncated"));
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("overlong varint"))
    }

    fn port(&mut self) -> Result<u16, Error> {
        u16::try_from(self.varint()?).map_err(|_| corrupt("port out of range"))
    }

    pub(crate) fn ip_of_len(&mut self, len: u8) -> Result<IpAddr, Error> {
        match len {
            4 => {
                let b = self.bytes(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Ok(IpAddr::from(a))
            }
            16 => {
                let b = self.bytes(16)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ok(IpAddr::from(a))
            }
            n => Err(corrupt(&format!("address of {n} bytes"))),
        }
    }

    pub(crate) fn ip(&mut self) -> Result<IpAddr, Error> {
        let len = self.byte()?;
        self.ip_of_len(len)
    }

    pub(crate) fn text(&mut self) -> Result<Option<&'a str>, Error> {
        let code = self.varint()?;
        match code {
            0 => Ok(None),
            1 | 2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| corrupt("text length"))?;
                let s = std::str::from_utf8(self.bytes(len)?).map_err(|_| corrupt("text"))?;
                if code == 2 {
                    if self.dict.len() >= MAX_DICT {
                        return Err(corrupt("dictionary overflow"));
                    }
                    self.dict.push(s);
                }
                Ok(Some(s))
            }
            n => usize::try_from(n - 3)
                .ok()
                .and_then(|i| self.dict.get(i))
                .map(|s| Some(*s))
                .ok_or_else(|| corrupt("dangling text reference")),
        }
    }

    fn owned(&mut self) -> Result<Option<String>, Error> {
        Ok(self.text()?.map(str::to_owned))
    }

    /// The next event, or `None` after the last.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, Error> {
        if !self.take_item() {
            return Ok(None);
        }
        let ts = self.last_ts.wrapping_add(unzigzag(self.varint()?));
        self.last_ts = ts;
        let flags = self.byte()?;
        let kind = match flags & F_KIND {
            0 => EventKind::Http,
            1 => EventKind::Tcp,
            2 => EventKind::Dns,
            k => return Err(corrupt(&format!("event kind {k}"))),
        };
        let src_ip = self.ip()?;
        let src_port = self.port()?;
        let dst_ip = self.ip()?;
        let dst_port = self.port()?;
        let http_method = self.owned()?;
        let http_url = self.owned()?;
        let http_host = self.owned()?;
        let http_agent = self.owned()?;
        let http_referer = self.owned()?;
        let tls_sni = self.owned()?;
        let dns_qname = self.owned()?;
        let dns_qtype = self.owned()?;
        let payload = self.owned()?;
        let tag = self.owned()?;
        let family = self
            .text()?
            .map(|s| s.parse::<Family>().map_err(|_| corrupt("family")))
            .transpose()?;
        let sensor = self
            .text()?
            .ok_or_else(|| corrupt("missing sensor"))?
            .parse::<SensorId>()
            .map_err(|_| corrupt("sensor"))?;
        let prefix = match self.byte()? {
            0 => None,
            len => {
                let addr = self.ip_of_len(len)?;
                let bits = self.byte()?;
                Some(IpNet::new(addr, bits).map_err(|_| corrupt("prefix length"))?)
            }
        };
        let asn = match self.varint()? {
            0 => None,
            a => Some(Asn(u32::try_from(a - 1).map_err(|_| corrupt("AS number"))?)),
        };
        let as_name = self.owned()?;
        let country = self
            .text()?
            .map(|s| s.parse::<CountryCode>().map_err(|_| corrupt("country")))
            .transpose()?;
        let network = (flags & F_ENRICHED != 0).then_some(Network {
            prefix,
            asn,
            as_name,
            country,
        });
        Ok(Some(Event {
            timestamp: Timestamp(ts),
            kind,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            protocol: if flags & F_UDP != 0 {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            http_method,
            http_url,
            http_host,
            http_agent,
            http_referer,
            tls_sni,
            dns_qname,
            dns_qtype,
            payload,
            family,
            tag,
            sensor,
            malformed: flags & F_MALFORMED != 0,
            network,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u32) -> Event {
        let mut e = Event::new(
            Timestamp(1_700_000_000_000_000 - i64::from(i) * 977),
            [EventKind::Http, EventKind::Tcp, EventKind::Dns][i as usize % 3],
            format!("192.0.2.{}:{}", i % 250, 1024 + i).parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
            "sh1".parse().unwrap(),
        );
        e.http_agent = Some("agent".into());
        e.http_url = Some(format!("/x?{i}"));
        e.payload = i.is_multiple_of(2).then(|| "p".repeat(400));
        e.family = (!i.is_multiple_of(4)).then(|| "rustock".parse().unwrap());
        e.malformed = i.is_multiple_of(5);
        e.protocol = if i % 3 == 2 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        e.network = (!i.is_multiple_of(3)).then(|| Network {
            prefix: Some("192.0.2.0/24".parse().unwrap()),
            asn: i.is_multiple_of(2).then_some(Asn(u32::MAX)),
            as_name: Some("EXAMPLE".into()),
            country: "DE".parse().ok(),
        });
        e
    }

    fn decode_all(buf: &[u8]) -> Result<Vec<Event>, Error> {
        let mut d = Decoder::new(buf)?;
        let mut out = Vec::new();
        while let Some(e) = d.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn segments_round_trip() {
        let events: Vec<Event> = (0..50).map(sample).collect();
        let buf = encode(&events);
        assert_eq!(decode_all(&buf).unwrap(), events);
        assert!(decode_all(&encode(&[])).unwrap().is_empty());
    }

    #[test]
    fn damaged_segments_fail_cleanly() {
        let buf = encode(&(0..20).map(sample).collect::<Vec<_>>());
        for cut in 0..buf.len() {
            assert!(decode_all(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut x = 0x1234_5678u32;
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            bad[i] ^= (x >> 24) as u8 | 1;
            // Any outcome but a panic is acceptable.
            let _ = decode_all(&bad);
        }
        assert!(decode_all(&[FORMAT, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
