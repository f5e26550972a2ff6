//! What both stores fold alike: the per-batch accumulator of one host
//! record, and the fixed hashes behind its sample tie-break and its
//! User-Agent set.
//!
//! The hashes are stored (as ranks and agent sets), so they must agree across
//! processes, platforms, versions and stores; that is why they are written
//! out here rather than taken from the standard library's hashers.

use std::net::IpAddr;

use takedown_event::Event;

use crate::sqlite::{AGENT_K, PORT_NAT, PORT_WINDOW_SECS};

const PORT_WINDOW_MICROS: i64 = PORT_WINDOW_SECS * 1_000_000;

/// An address as stored, without allocating: 4 bytes for IPv4, 16 for IPv6.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct IpKey {
    pub(crate) len: u8,
    pub(crate) bytes: [u8; 16],
}

impl IpKey {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut bytes = [0; 16];
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                IpKey { len: 4, bytes }
            }
            IpAddr::V6(a) => IpKey {
                len: 16,
                bytes: a.octets(),
            },
        }
    }

    /// The stored bytes; slices order like SQLite blobs (bytes, then length).
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A fixed 64-bit hash, eight bytes per step.
fn mix(h: &mut u64, bytes: &[u8]) {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        *h = (*h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    w[..rest.len()].copy_from_slice(rest);
    // The length goes in too, so "a" and "a\0" differ.
    *h = (*h ^ u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56))
        .wrapping_mul(K)
        .rotate_left(31);
}

/// The final avalanche, so every input bit reaches the top bits compared first.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const SEED: u64 = 0x7464_2d73_746f_7265;

/// The stored hash of a User-Agent string.
pub(crate) fn agent_hash(agent: &str) -> u32 {
    let mut h = SEED;
    mix(&mut h, agent.as_bytes());
    (finish(h) >> 32) as u32
}

/// The tie-break between samples with equal timestamps.
pub(crate) fn sample_rank(e: &Event) -> i64 {
    let mut h = SEED;
    let opt = |h: &mut u64, s: Option<&String>| match s {
        Some(s) => mix(h, s.as_bytes()),
        // Absent differs from empty: the empty string still mixes in its length.
        None => mix(h, &[0xff; 9]),
    };
    opt(&mut h, e.http_url.as_ref());
    opt(&mut h, e.http_host.as_ref());
    opt(&mut h, e.http_agent.as_ref());
    let n = e.network.as_ref();
    let prefix = n.and_then(|n| n.prefix);
    let mut fixed = [0u8; 32];
    fixed[..2].copy_from_slice(&e.dst_port.to_be_bytes());
    if let Some(p) = prefix {
        let k = IpKey::new(p.addr());
        fixed[2..18].copy_from_slice(&k.bytes);
        fixed[18] = p.prefix_len();
        fixed[19] = k.len;
    }
    if let Some(a) = n.and_then(|n| n.asn) {
        fixed[20] = 1;
        fixed[21..25].copy_from_slice(&a.0.to_be_bytes());
    }
    if let Some(c) = n.and_then(|n| n.country) {
        fixed[25..27].copy_from_slice(c.as_str().as_bytes());
    }
    mix(&mut h, &fixed);
    opt(&mut h, n.and_then(|n| n.as_name.as_ref()));
    finish(h) as i64
}

/// The in-memory fold of one batch's events for one record.
pub(crate) struct Fold<'a> {
    /// Earliest timestamp, in microseconds.
    pub(crate) first: i64,
    /// Latest timestamp, in microseconds.
    pub(crate) last: i64,
    /// Events folded.
    pub(crate) count: u64,
    /// The event whose samples the record keeps.
    pub(crate) latest: &'a Event,
    latest_rank: Option<i64>,
    agents: Vec<u32>,
    ports: Vec<(i64, u16)>,
}

/// What a fold adds to a record's NAT evidence.
pub(crate) struct Sketches {
    /// The smallest distinct agent hashes, at most [`AGENT_K`], ascending.
    pub(crate) agents: Vec<u32>,
    /// The latest port window seen.
    pub(crate) window: i64,
    /// Distinct source ports of that window, at most [`PORT_NAT`], ascending.
    pub(crate) ports: Vec<u16>,
    /// Whether the batch alone shows NAT: enough agents, or a burst of
    /// ports in any one window.
    pub(crate) nat: bool,
}

impl<'a> Fold<'a> {
    pub(crate) fn new(e: &'a Event) -> Self {
        Fold {
            first: e.timestamp.0,
            last: e.timestamp.0,
            count: 0,
            latest: e,
            latest_rank: None,
            agents: Vec::new(),
            ports: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, e: &'a Event) {
        let ts = e.timestamp.0;
        self.count += 1;
        self.first = self.first.min(ts);
        if ts > self.last {
            self.last = ts;
            self.latest = e;
            self.latest_rank = None;
        } else if ts == self.last && !std::ptr::eq(e, self.latest) {
            let mine = *self
                .latest_rank
                .get_or_insert_with(|| sample_rank(self.latest));
            let theirs = sample_rank(e);
            if theirs > mine {
                self.latest = e;
                self.latest_rank = Some(theirs);
            }
        }
        if let Some(a) = &e.http_agent {
            self.agents.push(agent_hash(a));
        }
        self.ports
            .push((ts.div_euclid(PORT_WINDOW_MICROS), e.src_port));
    }

    /// The sample's rank.
    pub(crate) fn rank(&self) -> i64 {
        self.latest_rank.unwrap_or_else(|| sample_rank(self.latest))
    }

    /// The agent set, the latest window with its ports, and whether the
    /// batch alone shows NAT.
    pub(crate) fn sketches(&mut self) -> Sketches {
        self.agents.sort_unstable();
        self.agents.dedup();
        self.agents.truncate(AGENT_K);
        self.ports.sort_unstable();
        self.ports.dedup();
        let mut burst = false;
        let mut i = 0;
        while i < self.ports.len() {
            let w = self.ports.get(i).map_or(0, |p| p.0);
            let n = self.ports.iter().skip(i).take_while(|p| p.0 == w).count();
            burst |= n >= PORT_NAT;
            i += n;
        }
        let window = self.ports.last().map_or(0, |p| p.0);
        let ports: Vec<u16> = self
            .ports
            .iter()
            .filter(|p| p.0 == window)
            .take(PORT_NAT)
            .map(|p| p.1)
            .collect();
        Sketches {
            nat: burst || self.agents.len() >= crate::sqlite::AGENT_NAT,
            agents: std::mem::take(&mut self.agents),
            window,
            ports,
        }
    }
}
