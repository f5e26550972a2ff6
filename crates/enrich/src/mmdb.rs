//! A reader for the MaxMind DB (MMDB) binary format, version 2.
//!
//! The reader does not answer lookups itself: [`Mmdb::networks`] walks the
//! whole search tree once and hands every network with its decoded record to
//! the caller, which flattens them into a [`crate::PrefixTable`]. Every offset,
//! size and pointer read from the file is checked, nesting and the work spent
//! per record are bounded, and the walk visits each node a bounded number of
//! times, so a damaged or hostile file yields an error rather than a panic, a
//! hang or an outsized allocation.
//!
//! File layout: a binary search tree (`node_count` nodes of two records each,
//! 24, 28 or 32 bits per record), 16 zero bytes, the data section, then the
//! marker `\xAB\xCD\xEFMaxMind.com` followed by the metadata map.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use takedown_event::{Asn, CountryCode};

use crate::Error;

/// The marker that precedes the metadata section.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
/// The metadata section may be at most this large, marker included.
const METADATA_MAX: usize = 128 * 1024;
/// The gap of zero bytes between the search tree and the data section.
const DATA_SEPARATOR: usize = 16;
/// Deepest nesting of maps, arrays and pointers accepted in one value.
const MAX_DEPTH: u32 = 32;
/// Most values decoded for one record; real records hold a few hundred.
const MAX_VALUES_PER_RECORD: u32 = 1 << 16;

fn bad(msg: impl Into<String>) -> Error {
    Error::Mmdb(msg.into())
}

/// A decoded data-section value. Strings and byte strings borrow the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A UTF-8 string.
    Str(&'a str),
    /// An IEEE 754 double.
    Double(f64),
    /// An opaque byte string.
    Bytes(&'a [u8]),
    /// Any of uint16, uint32, uint64 and uint128.
    Uint(u128),
    /// An int32.
    Int(i32),
    /// A map with string keys, in file order.
    Map(Vec<(&'a str, Value<'a>)>),
    /// An array.
    Array(Vec<Value<'a>>),
    /// A boolean.
    Bool(bool),
    /// An IEEE 754 float.
    Float(f32),
}

impl<'a> Value<'a> {
    /// The value under `key`, when this is a map holding it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The unsigned integer, when this is one (a non-negative int32 counts).
    pub fn as_uint(&self) -> Option<u128> {
        match self {
            Value::Uint(u) => Some(*u),
            Value::Int(i) => u128::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// Decodes values from one section (data or metadata) of a file.
struct Decoder<'a> {
    /// The section; pointers are offsets into it.
    buf: &'a [u8],
    /// Values still allowed for the current record.
    budget: u32,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Decoder {
            buf,
            budget: MAX_VALUES_PER_RECORD,
        }
    }

    fn bytes(&self, at: usize, n: usize) -> Result<&'a [u8], Error> {
        at.checked_add(n)
            .and_then(|end| self.buf.get(at..end))
            .ok_or_else(|| {
                bad(format!(
                    "value at offset {at} runs past the end of its section"
                ))
            })
    }

    fn byte(&self, at: usize) -> Result<u8, Error> {
        self.bytes(at, 1).map(|b| b[0])
    }

    fn be(&self, at: usize, n: usize) -> Result<u128, Error> {
        Ok(self
            .bytes(at, n)?
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b)))
    }

    /// Decodes the value at `at`; returns it and the offset just past it.
    fn decode(&mut self, at: usize, depth: u32) -> Result<(Value<'a>, usize), Error> {
        if depth > MAX_DEPTH {
            return Err(bad("values nested too deeply"));
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| bad("record holds too many values"))?;
        let ctrl = self.byte(at)?;
        let mut pos = at + 1;
        let mut kind = ctrl >> 5;
        if kind == 1 {
            let ss = (ctrl >> 3) & 3;
            let vvv = u128::from(ctrl & 7);
            let target = match ss {
                0 => (vvv << 8) | self.be(pos, 1)?,
                1 => ((vvv << 16) | self.be(pos, 2)?) + 2048,
                2 => ((vvv << 24) | self.be(pos, 3)?) + 526_336,
                _ => self.be(pos, 4)?,
            };
            pos += usize::from(ss) + 1;
            let target = usize::try_from(target).map_err(|_| bad("pointer out of range"))?;
            let (v, _) = self.decode(target, depth + 1)?;
            return Ok((v, pos));
        }
        if kind == 0 {
            let ext = self.byte(pos)?;
            pos += 1;
            kind = ext
                .checked_add(7)
                .filter(|k| *k >= 8)
                .ok_or_else(|| bad(format!("invalid extended type {ext}")))?;
        }
        let size = match ctrl & 0x1f {
            s @ 0..=28 => usize::from(s),
            29 => {
                pos += 1;
                29 + self.be(pos - 1, 1)? as usize
            }
            30 => {
                pos += 2;
                285 + self.be(pos - 2, 2)? as usize
            }
            _ => {
                pos += 3;
                65_821 + self.be(pos - 3, 3)? as usize
            }
        };
        let fixed = |max: usize, name: &str| -> Result<(), Error> {
            if size > max {
                Err(bad(format!("{name} of {size} bytes")))
            } else {
                Ok(())
            }
        };
        let value = match kind {
            2 => {
                let b = self.bytes(pos, size)?;
                pos += size;
                Value::Str(std::str::from_utf8(b).map_err(|_| bad("string is not UTF-8"))?)
            }
            3 => {
                if size != 8 {
                    return Err(bad(format!("double of {size} bytes")));
                }
                let v = f64::from_bits(self.be(pos, 8)? as u64);
                pos += 8;
                Value::Double(v)
            }
            4 => {
                let b = self.bytes(pos, size)?;
                pos += size;
                Value::Bytes(b)
            }
            5 | 6 | 9 | 10 => {
                let max = match kind {
                    5 => 2,
                    6 => 4,
                    9 => 8,
                    _ => 16,
                };
                fixed(max, "unsigned integer")?;
                let v = self.be(pos, size)?;
                pos += size;
                Value::Uint(v)
            }
            8 => {
                fixed(4, "int32")?;
                // Shorter encodings are zero-padded on the left, as the
                // reference reader does.
                let v = self.be(pos, size)? as u32 as i32;
                pos += size;
                Value::Int(v)
            }
            7 => {
                let mut map = Vec::new();
                for _ in 0..size {
                    let (k, next) = self.decode(pos, depth + 1)?;
                    let Value::Str(k) = k else {
                        return Err(bad("map key is not a string"));
                    };
                    let (v, next) = self.decode(next, depth + 1)?;
                    map.push((k, v));
                    pos = next;
                }
                Value::Map(map)
            }
            11 => {
                let mut arr = Vec::new();
                for _ in 0..size {
                    let (v, next) = self.decode(pos, depth + 1)?;
                    arr.push(v);
                    pos = next;
                }
                Value::Array(arr)
            }
            14 => match size {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(bad(format!("boolean with value {size}"))),
            },
            15 => {
                if size != 4 {
                    return Err(bad(format!("float of {size} bytes")));
                }
                let v = f32::from_bits(self.be(pos, 4)? as u32);
                pos += 4;
                Value::Float(v)
            }
            other => return Err(bad(format!("unsupported data type {other}"))),
        };
        Ok((value, pos))
    }
}

/// The metadata map at the end of an MMDB file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Number of nodes in the search tree.
    pub node_count: u32,
    /// Bits per tree record: 24, 28 or 32.
    pub record_size: u16,
    /// 4 for an IPv4-only tree, 6 for a tree over the IPv6 space.
    pub ip_version: u16,
    /// The record structure's name, such as `GeoLite2-ASN` or `country`.
    pub database_type: String,
    /// When the database was built (Unix seconds), or 0 if absent.
    pub build_epoch: u64,
    /// Binary format major version (this reader handles 2).
    pub binary_format_major_version: u16,
    /// The English description, if any.
    pub description: Option<String>,
}

/// The fields of one record that enrichment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record<'a> {
    /// `autonomous_system_number` (or `asn`, as a number or `AS…` string).
    pub asn: Option<Asn>,
    /// `autonomous_system_organization` (or `as_name` / `as_org`).
    pub as_name: Option<&'a str>,
    /// `country.iso_code`, else `registered_country.iso_code`, else a flat
    /// `country_code`.
    pub country: Option<CountryCode>,
}

impl<'a> Record<'a> {
    /// Picks the enrichment fields out of a decoded record.
    pub fn from_value(v: &Value<'a>) -> Self {
        let asn = ["autonomous_system_number", "asn"]
            .iter()
            .find_map(|k| v.get(k))
            .and_then(|a| match a {
                Value::Str(s) => s.parse::<Asn>().ok(),
                other => other.as_uint().and_then(|u| u32::try_from(u).ok()).map(Asn),
            })
            .filter(|a| a.0 != 0);
        let as_name = ["autonomous_system_organization", "as_name", "as_org"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str))
            .filter(|s| !s.trim().is_empty());
        let iso = |k: &str| {
            v.get(k)
                .and_then(|c| c.get("iso_code"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<CountryCode>().ok())
        };
        let country = iso("country")
            .or_else(|| iso("registered_country"))
            .or_else(|| {
                v.get("country_code")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
            });
        Record {
            asn,
            as_name,
            country,
        }
    }
}

/// A parsed MMDB file, borrowing its bytes.
#[derive(Debug)]
pub struct Mmdb<'a> {
    tree: &'a [u8],
    data: &'a [u8],
    meta: Metadata,
}

/// Where a tree record leads.
enum Next {
    Node(u32),
    Empty,
    Data(usize),
}

impl<'a> Mmdb<'a> {
    /// Parses the metadata and checks the section bounds.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        let tail_from = buf.len().saturating_sub(METADATA_MAX);
        let tail = buf.get(tail_from..).unwrap_or_default();
        let marker_at = tail
            .windows(METADATA_MARKER.len())
            .rposition(|w| w == METADATA_MARKER)
            .map(|i| tail_from + i)
            .ok_or_else(|| bad("no metadata marker; this is not an MMDB file"))?;
        let meta_buf = buf
            .get(marker_at + METADATA_MARKER.len()..)
            .unwrap_or_default();
        let (mv, _) = Decoder::new(meta_buf).decode(0, 0)?;
        let uint = |k: &str| mv.get(k).and_then(Value::as_uint);
        let node_count = uint("node_count")
            .and_then(|u| u32::try_from(u).ok())
            .ok_or_else(|| bad("metadata lacks node_count"))?;
        let record_size = uint("record_size")
            .and_then(|u| u16::try_from(u).ok())
            .filter(|r| matches!(r, 24 | 28 | 32))
            .ok_or_else(|| bad("metadata record_size is not 24, 28 or 32"))?;
        let ip_version = uint("ip_version")
            .and_then(|u| u16::try_from(u).ok())
            .filter(|v| matches!(v, 4 | 6))
            .ok_or_else(|| bad("metadata ip_version is not 4 or 6"))?;
        let major = uint("binary_format_major_version")
            .and_then(|u| u16::try_from(u).ok())
            .unwrap_or(0);
        if major != 2 {
            return Err(bad(format!(
                "binary format version {major}; only version 2 is supported"
            )));
        }
        let meta = Metadata {
            node_count,
            record_size,
            ip_version,
            database_type: mv
                .get("database_type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            build_epoch: uint("build_epoch")
                .and_then(|u| u64::try_from(u).ok())
                .unwrap_or(0),
            binary_format_major_version: major,
            description: mv
                .get("description")
                .and_then(|d| d.get("en"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let tree_len = usize::try_from(u64::from(node_count) * u64::from(record_size) / 4)
            .map_err(|_| bad("search tree larger than memory"))?;
        let tree = buf
            .get(..tree_len)
            .filter(|_| tree_len + DATA_SEPARATOR <= marker_at)
            .ok_or_else(|| bad("search tree runs past the metadata"))?;
        let data = buf
            .get(tree_len + DATA_SEPARATOR..marker_at)
            .ok_or_else(|| bad("data section out of bounds"))?;
        Ok(Mmdb { tree, data, meta })
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    fn record(&self, node: u32, right: bool) -> Result<Next, Error> {
        let rs = usize::from(self.meta.record_size);
        let at = node as usize * rs / 4;
        let b = self
            .tree
            .get(at..at + rs / 4)
            .ok_or_else(|| bad(format!("node {node} out of bounds")))?;
        let be = |s: &[u8]| s.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x));
        let v = match (rs, right) {
            (24, false) => be(&b[0..3]),
            (24, true) => be(&b[3..6]),
            (28, false) => (u32::from(b[3] & 0xf0) << 20) | be(&b[0..3]),
            (28, true) => (u32::from(b[3] & 0x0f) << 24) | be(&b[4..7]),
            (_, false) => be(&b[0..4]),
            (_, true) => be(&b[4..8]),
        };
        let n = self.meta.node_count;
        Ok(if v < n {
            Next::Node(v)
        } else if v == n {
            Next::Empty
        } else {
            let off = (v - n) as usize;
            let off = off
                .checked_sub(DATA_SEPARATOR)
                .filter(|o| *o < self.data.len())
                .ok_or_else(|| bad(format!("record points outside the data section ({v})")))?;
            Next::Data(off)
        })
    }

    /// Decodes the data-section value at `offset`.
    pub fn value(&self, offset: usize) -> Result<Value<'a>, Error> {
        Decoder::new(self.data).decode(offset, 0).map(|(v, _)| v)
    }

    /// Decodes the value at `offset`, charging the values decoded to `total`.
    fn value_charged(&self, offset: usize, total: &mut u64) -> Result<Value<'a>, Error> {
        let mut d = Decoder::new(self.data);
        let v = d.decode(offset, 0).map(|(v, _)| v)?;
        let used = u64::from(MAX_VALUES_PER_RECORD - d.budget);
        *total = total
            .checked_sub(used)
            .ok_or_else(|| bad("records decode to far more values than the file size allows"))?;
        Ok(v)
    }

    /// The node the IPv4 subtree starts at (after 96 zero bits) in an IPv6
    /// tree; `None` when the tree ends before that depth.
    fn ipv4_start(&self) -> Result<Option<u32>, Error> {
        if self.meta.ip_version == 4 {
            return Ok(Some(0));
        }
        let mut node = 0;
        for _ in 0..96 {
            match self.record(node, false)? {
                Next::Node(n) => node = n,
                _ => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// Walks the whole tree and calls `f` once per network with data, with
    /// the network and its record. IPv4 data in an IPv6 tree (under `::/96`)
    /// is reported as IPv4 networks; the aliases of that subtree at
    /// `::ffff:0:0/96` and `2002::/16` are skipped. Returns the number of
    /// networks reported.
    pub fn networks(&self, mut f: impl FnMut(IpNet, Record<'a>)) -> Result<usize, Error> {
        let bits: u32 = if self.meta.ip_version == 4 { 32 } else { 128 };
        let v4_start = self.ipv4_start()?;
        let node_count = u64::from(self.meta.node_count);
        // A well-formed tree reaches each node once (plus the aliases); a
        // damaged one could share subtrees exponentially, so cap the work.
        let mut visits_left = node_count.saturating_mul(4).saturating_add(1024);
        // Pointers let a small data section expand into many values; bound
        // the total decoding work by the section size.
        let mut values_left = (self.data.len() as u64)
            .saturating_mul(16)
            .saturating_add(1 << 20);
        let mut cache: HashMap<usize, Record<'a>> = HashMap::new();
        let mut reported = 0usize;
        let mut stack: Vec<(u32, u32, u128)> = Vec::new();
        if node_count > 0 {
            stack.push((0, 0, 0));
        }
        while let Some((node, depth, prefix)) = stack.pop() {
            visits_left = visits_left
                .checked_sub(1)
                .ok_or_else(|| bad("search tree has loops or shared subtrees"))?;
            if depth >= bits {
                return Err(bad("search tree deeper than the address width"));
            }
            // Right child first on the stack so the left (lower) half is
            // reported first.
            for right in [true, false] {
                let d = depth + 1;
                let p = if right {
                    prefix | (1u128 << (bits - d))
                } else {
                    prefix
                };
                match self.record(node, right)? {
                    Next::Empty => {}
                    Next::Node(n) => {
                        let alias = bits == 128 && Some(n) == v4_start && !(d == 96 && p == 0);
                        if !alias {
                            stack.push((n, d, p));
                        }
                    }
                    Next::Data(off) => {
                        let rec = match cache.get(&off) {
                            Some(r) => *r,
                            None => {
                                let r =
                                    Record::from_value(&self.value_charged(off, &mut values_left)?);
                                cache.insert(off, r);
                                r
                            }
                        };
                        for net in split_net(bits, p, d) {
                            f(net, rec);
                            reported += 1;
                        }
                    }
                }
            }
        }
        Ok(reported)
    }
}

/// Converts a tree position into networks: IPv4 tree positions directly;
/// IPv6 positions under `::/96` become IPv4, and a short IPv6 prefix that
/// covers `::/96` also yields `0.0.0.0/0`.
fn split_net(bits: u32, prefix: u128, len: u32) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(1);
    if bits == 32 {
        if let Ok(n) = Ipv4Net::new(Ipv4Addr::from(prefix as u32), len as u8) {
            out.push(IpNet::V4(n));
        }
        return out;
    }
    if len >= 96 && prefix >> 32 == 0 {
        if let Ok(n) = Ipv4Net::new(Ipv4Addr::from(prefix as u32), (len - 96) as u8) {
            out.push(IpNet::V4(n));
        }
        return out;
    }
    if prefix == 0
        && let Ok(n) = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0)
    {
        out.push(IpNet::V4(n));
    }
    if let Ok(n) = Ipv6Net::new(Ipv6Addr::from(prefix), len as u8) {
        out.push(IpNet::V6(n));
    }
    out
}

/// Parses `bytes` as an MMDB file and walks every network, returning the
/// count. Fuzz targets call this; it must never panic.
pub fn check(bytes: &[u8]) -> Result<usize, Error> {
    Mmdb::parse(bytes)?.networks(|_, _| {})
}

/// Fuzzing entry point. Reads `bytes` as a whole file, then again as the
/// tree and data sections of a file whose metadata is made from the first
/// three bytes (record size, IP version, node count), so that most inputs
/// reach the tree walk and the data decoder. Must never panic.
pub fn fuzz(bytes: &[u8]) -> Result<usize, Error> {
    let raw = check(bytes);
    let [a, b, c, body @ ..] = bytes else {
        return raw;
    };
    let record_size: u8 = [24, 28, 32][usize::from(*a % 3)];
    let ip_version: u8 = if b & 1 == 1 { 4 } else { 6 };
    let mut file = body.to_vec();
    file.extend_from_slice(METADATA_MARKER);
    // A map of four entries, each a short string key and a small uint.
    file.push(0xe4);
    for (key, kind, value) in [
        ("node_count", 0xc0u8, *c),
        ("record_size", 0xa0, record_size),
        ("ip_version", 0xa0, ip_version),
        ("binary_format_major_version", 0xa0, 2),
    ] {
        file.push(0x40 | key.len() as u8);
        file.extend_from_slice(key.as_bytes());
        file.extend_from_slice(&[kind | 1, value]);
    }
    check(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pointer_forms_and_sizes() {
        // map{ "a": uint16 300, "b": ptr->"a" key reused as value }
        let buf = [0xe2, 0x41, b'a', 0xa2, 0x01, 0x2c, 0x41, b'b', 0x20, 0x01];
        let (v, end) = Decoder::new(&buf).decode(0, 0).unwrap();
        assert_eq!(end, buf.len());
        assert_eq!(v.get("a"), Some(&Value::Uint(300)));
        assert_eq!(v.get("b"), Some(&Value::Str("a")));
    }

    #[test]
    fn long_string_sizes() {
        let s = "x".repeat(300);
        // size 300 = 285 + 15 -> control 0x5e, two size bytes 0x00 0x0f.
        let mut buf = vec![0x5e, 0x00, 0x0f];
        buf.extend_from_slice(s.as_bytes());
        let (v, _) = Decoder::new(&buf).decode(0, 0).unwrap();
        assert_eq!(v, Value::Str(&s));
    }

    #[test]
    fn self_pointer_is_an_error_not_a_hang() {
        let buf = [0x20, 0x00];
        assert!(Decoder::new(&buf).decode(0, 0).is_err());
    }

    #[test]
    fn truncated_values_fail() {
        for buf in [&[0x43, b'a'][..], &[0x68, 0][..], &[0xe1][..], &[0x00][..]] {
            assert!(Decoder::new(buf).decode(0, 0).is_err(), "{buf:?}");
        }
    }

    #[test]
    fn fuzz_entry_builds_parsable_metadata() {
        // Node 0: both records empty (value 1 == node_count), then the separator.
        let mut input = vec![0u8, 0, 1];
        input.extend_from_slice(&[0, 0, 1, 0, 0, 1]);
        input.extend_from_slice(&[0u8; 16]);
        assert_eq!(fuzz(&input).unwrap(), 0);
        assert!(fuzz(&[1, 2]).is_err());
    }

    #[test]
    fn garbage_is_not_an_mmdb() {
        assert!(check(b"").is_err());
        assert!(check(b"hello world").is_err());
        let mut f = vec![0u8; 64];
        f.extend_from_slice(METADATA_MARKER);
        assert!(check(&f).is_err());
    }
}
