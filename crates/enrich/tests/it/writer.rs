//! A minimal MMDB writer for fixtures: a search tree with optional IPv4
//! aliases, a data section, and the metadata map.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// Encodes one data-section value's control bytes for `kind` and `size`.
pub(crate) fn ctrl(kind: u8, size: usize) -> Vec<u8> {
    let (first, ext) = if kind <= 7 {
        (kind << 5, None)
    } else {
        (0, Some(kind - 7))
    };
    let mut out = Vec::new();
    let (sbits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        let s = size - 285;
        (30, vec![(s >> 8) as u8, s as u8])
    } else {
        let s = size - 65_821;
        (31, vec![(s >> 16) as u8, (s >> 8) as u8, s as u8])
    };
    out.push(first | sbits);
    out.extend(ext);
    out.extend(extra);
    out
}

pub(crate) fn string(s: &str) -> Vec<u8> {
    let mut v = ctrl(2, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

/// An unsigned integer of `kind` (5 uint16, 6 uint32, 9 uint64, 10 uint128)
/// in its shortest big-endian form.
pub(crate) fn uint(kind: u8, x: u128) -> Vec<u8> {
    let bytes = x.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v = ctrl(kind, 16 - skip);
    v.extend_from_slice(&bytes[skip..]);
    v
}

/// A pointer to data-section offset `p` (all four size forms).
pub(crate) fn pointer(p: u32) -> Vec<u8> {
    if p < 2048 {
        vec![0x20 | (p >> 8) as u8, p as u8]
    } else if p < 2048 + (1 << 19) {
        let q = p - 2048;
        vec![0x28 | (q >> 16) as u8, (q >> 8) as u8, q as u8]
    } else if p < 526_336 + (1 << 27) {
        let q = p - 526_336;
        vec![
            0x30 | (q >> 24) as u8,
            (q >> 16) as u8,
            (q >> 8) as u8,
            q as u8,
        ]
    } else {
        let mut v = vec![0x38];
        v.extend_from_slice(&p.to_be_bytes());
        v
    }
}

/// A map from already-encoded keys to already-encoded values.
pub(crate) fn map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = ctrl(7, pairs.len());
    for (k, x) in pairs {
        v.extend_from_slice(k);
        v.extend_from_slice(x);
    }
    v
}

pub(crate) fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = ctrl(11, items.len());
    for i in items {
        v.extend_from_slice(i);
    }
    v
}

pub(crate) fn boolean(b: bool) -> Vec<u8> {
    ctrl(14, usize::from(b))
}

pub(crate) fn double(x: f64) -> Vec<u8> {
    let mut v = ctrl(3, 8);
    v.extend_from_slice(&x.to_be_bytes());
    v
}

pub(crate) fn float(x: f32) -> Vec<u8> {
    let mut v = ctrl(15, 4);
    v.extend_from_slice(&x.to_be_bytes());
    v
}

pub(crate) struct Writer {
    ip_version: u16,
    record_size: u16,
    database_type: String,
    nodes: Vec<[Rec; 2]>,
    /// The data section built so far.
    pub(crate) data: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(ip_version: u16, record_size: u16, database_type: &str) -> Self {
        Writer {
            ip_version,
            record_size,
            database_type: database_type.to_owned(),
            nodes: vec![[Rec::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Appends an encoded value to the data section; returns its offset.
    pub(crate) fn add_data(&mut self, bytes: &[u8]) -> u32 {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        off
    }

    fn bits(&self) -> u32 {
        if self.ip_version == 4 { 32 } else { 128 }
    }

    /// Tree position of `net`: bits and length in this tree's address width.
    fn position(&self, net: IpNet) -> (u128, u32) {
        match (net, self.ip_version) {
            (IpNet::V4(n), 4) => (
                u128::from(u32::from(n.network())),
                u32::from(n.prefix_len()),
            ),
            (IpNet::V4(n), _) => (
                u128::from(u32::from(n.network())),
                96 + u32::from(n.prefix_len()),
            ),
            (IpNet::V6(n), _) => (u128::from(n.network()), u32::from(n.prefix_len())),
        }
    }

    fn set(&mut self, bits: u128, len: u32, rec: Rec) {
        assert!(len > 0, "the root itself cannot hold data");
        let w = self.bits();
        let mut node = 0usize;
        for d in 0..len - 1 {
            let bit = ((bits >> (w - 1 - d)) & 1) as usize;
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n as usize,
                _ => {
                    self.nodes.push([Rec::Empty; 2]);
                    let n = self.nodes.len() - 1;
                    self.nodes[node][bit] = Rec::Node(n as u32);
                    n
                }
            };
        }
        let bit = ((bits >> (w - len)) & 1) as usize;
        self.nodes[node][bit] = rec;
    }

    /// Points `net` at the data-section value at `offset`.
    pub(crate) fn insert(&mut self, net: IpNet, offset: u32) {
        let (bits, len) = self.position(net);
        self.set(bits, len, Rec::Data(offset));
    }

    /// Makes `::ffff:0:0/96` and `2002::/16` aliases of the IPv4 subtree, as
    /// MaxMind's writer does. The IPv4 subtree must exist.
    pub(crate) fn alias_ipv4(&mut self) {
        let mut node = 0usize;
        for _ in 0..96 {
            node = match self.nodes[node][0] {
                Rec::Node(n) => n as usize,
                other => panic!("no IPv4 subtree: {other:?}"),
            };
        }
        let v4 = Rec::Node(node as u32);
        let mapped: IpAddr = "::ffff:0:0".parse().unwrap();
        let IpAddr::V6(m) = mapped else {
            unreachable!()
        };
        self.set(u128::from(m), 96, v4);
        let six_to_four: u128 = 0x2002 << 112;
        self.set(six_to_four, 16, v4);
    }

    pub(crate) fn finish(&self) -> Vec<u8> {
        let n = self.nodes.len() as u32;
        let val = |r: Rec| match r {
            Rec::Empty => n,
            Rec::Node(i) => i,
            Rec::Data(off) => n + 16 + off,
        };
        let mut out = Vec::new();
        for node in &self.nodes {
            let (l, r) = (val(node[0]), val(node[1]));
            match self.record_size {
                24 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                28 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.push((((l >> 24) & 0x0f) << 4) as u8 | ((r >> 24) & 0x0f) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                _ => {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        out.extend_from_slice(&map(&[
            (string("node_count"), uint(6, u128::from(n))),
            (string("record_size"), uint(5, u128::from(self.record_size))),
            (string("ip_version"), uint(5, u128::from(self.ip_version))),
            (string("database_type"), string(&self.database_type)),
            (string("languages"), array(&[string("en")])),
            (string("binary_format_major_version"), uint(5, 2)),
            (string("binary_format_minor_version"), uint(5, 0)),
            (string("build_epoch"), uint(9, 1_700_000_000)),
            (
                string("description"),
                map(&[(string("en"), string("Fixture database"))]),
            ),
        ]));
        out
    }
}
