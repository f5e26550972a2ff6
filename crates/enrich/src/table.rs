//! The flattened longest-prefix table behind every lookup.
//!
//! Inputs are inclusive address ranges (a CIDR prefix is one kind of range).
//! They may overlap; the builder flattens them into disjoint segments where
//! each segment belongs to the most specific input range that covers it, so a
//! lookup is a search for the last segment start at or below the address.
//!
//! The search is two-level: the top 16 bits of the address index a table that
//! narrows the candidates to the segments starting inside that /16 (or the
//! IPv6 /16), and a binary search over that short run finds the segment.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::Error;
use crate::cache::{Codec, Reader, put_len};

/// Marks a segment no input range covers.
const NONE: u32 = u32::MAX;

/// Number of top-level buckets: one per value of the address's top 16 bits.
const BUCKETS: usize = 1 << 16;

/// An address width the table is generic over (`u32` for IPv4, `u128` for IPv6).
pub(crate) trait Key: Copy + Ord + Eq + std::hash::Hash + std::fmt::Debug + Codec {
    /// The first address.
    const ZERO: Self;
    /// Width in bits.
    const BITS: u32;
    /// The last address.
    const MAX: Self;
    /// Widens to `u128` for arithmetic shared by both families.
    fn wide(self) -> u128;
    /// Narrows from `u128`; callers guarantee the value fits.
    fn narrow(v: u128) -> Self;
    /// The top 16 bits, as a bucket number.
    fn bucket(self) -> usize;
}

impl Key for u32 {
    const ZERO: Self = 0;
    const BITS: u32 = 32;
    const MAX: Self = u32::MAX;
    fn wide(self) -> u128 {
        u128::from(self)
    }
    fn narrow(v: u128) -> Self {
        v as u32
    }
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
}

impl Key for u128 {
    const ZERO: Self = 0;
    const BITS: u32 = 128;
    const MAX: Self = u128::MAX;
    fn wide(self) -> u128 {
        self
    }
    fn narrow(v: u128) -> Self {
        v
    }
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
}

/// One input range and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<K, V> {
    pub(crate) start: K,
    pub(crate) end: K,
    pub(crate) value: V,
}

/// The flattened table for one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side<K, V> {
    /// Segment starts, ascending; `starts[0]` is always address zero.
    starts: Vec<K>,
    /// For each segment, a copy of its owning range, or `None` for a gap.
    /// Copies rather than indices save a dependent memory load per lookup.
    segs: Vec<Option<Entry<K, V>>>,
    /// `index[b]` is the last segment starting at or before bucket `b`'s
    /// first address; `index[BUCKETS]` is the last segment.
    index: Vec<u32>,
    /// Number of input ranges.
    ranges: usize,
}

impl<K: Key, V: Copy> Side<K, V> {
    fn build(entries: Vec<Entry<K, V>>) -> Self {
        let (starts, owner) = flatten(&entries);
        let index = bucket_index(&starts);
        let segs = owner
            .iter()
            .map(|&o| entries.get(o as usize).copied())
            .collect();
        Side {
            starts,
            segs,
            index,
            ranges: entries.len(),
        }
    }

    /// The owning range of the segment holding `ip`, if any.
    #[inline]
    pub(crate) fn find(&self, ip: K) -> Option<&Entry<K, V>> {
        let b = ip.bucket();
        let lo = *self.index.get(b)? as usize;
        let hi = *self.index.get(b + 1)? as usize;
        let run = self.starts.get(lo..=hi)?;
        // By construction run[0] <= ip, so the count is at least one.
        let n = run.partition_point(|&s| s <= ip);
        let seg = lo + n.checked_sub(1)?;
        self.segs.get(seg)?.as_ref()
    }

    fn segments(&self) -> usize {
        self.starts.len()
    }

    /// Appends the cache encoding: the range count, the segment starts, each
    /// segment's owner as an index into the distinct owning ranges (or
    /// [`NONE`] for a gap), then those ranges.
    pub(crate) fn encode(&self, out: &mut Vec<u8>)
    where
        V: Codec,
    {
        let mut ids: std::collections::HashMap<(K, K), u32> = std::collections::HashMap::new();
        let mut owners: Vec<&Entry<K, V>> = Vec::new();
        let mut owner = Vec::with_capacity(self.segs.len());
        for seg in &self.segs {
            owner.push(match seg {
                None => NONE,
                // Among ranges with equal bounds only the first inserted
                // ever owns a segment, so the bounds identify the owner.
                Some(e) => *ids.entry((e.start, e.end)).or_insert_with(|| {
                    owners.push(e);
                    (owners.len() - 1) as u32
                }),
            });
        }
        put_len(out, self.ranges);
        put_len(out, self.starts.len());
        put_len(out, owners.len());
        out.reserve(self.starts.len() * (K::LEN + 4) + owners.len() * (2 * K::LEN + V::LEN));
        for s in &self.starts {
            s.put(out);
        }
        for o in &owner {
            o.put(out);
        }
        for e in owners {
            e.start.put(out);
            e.end.put(out);
            e.value.put(out);
        }
    }

    /// Decodes what [`Side::encode`] wrote; `None` when the bytes do not
    /// make a well-formed side (starts not ascending from address zero, an
    /// owner out of range, a reversed range).
    pub(crate) fn decode<R: std::io::Read>(r: &mut Reader<R>) -> Option<Self>
    where
        V: Codec,
    {
        let ranges = r.number()?;
        let n_segs = r.count(K::LEN + 4)?;
        let n_owners = r.count(2 * K::LEN + V::LEN)?;
        let starts = r.items(n_segs, K::LEN, K::get)?;
        let owner = r.items(n_segs, 4, u32::get)?;
        let owners = r.items(n_owners, 2 * K::LEN + V::LEN, |c| {
            let start = K::get(c.get(..K::LEN)?)?;
            let end = K::get(c.get(K::LEN..2 * K::LEN)?)?;
            let value = V::get(c.get(2 * K::LEN..)?)?;
            (start <= end).then_some(Entry { start, end, value })
        })?;
        if starts.first() != Some(&K::ZERO) || !starts.windows(2).all(|w| w[0] < w[1]) {
            return None;
        }
        let segs = owner
            .iter()
            .map(|&o| match o {
                NONE => Some(None),
                o => owners.get(o as usize).copied().map(Some),
            })
            .collect::<Option<Vec<_>>>()?;
        let index = bucket_index(&starts);
        Some(Side {
            starts,
            segs,
            index,
            ranges,
        })
    }
}

/// Splits possibly overlapping ranges into disjoint segments, each owned by
/// the narrowest covering range (ties go to the range inserted first).
fn flatten<K: Key, V>(entries: &[Entry<K, V>]) -> (Vec<K>, Vec<u32>) {
    let mut order: Vec<u32> = (0..entries.len() as u32).collect();
    let at = |i: u32| &entries[i as usize];
    order.sort_unstable_by_key(|&i| (at(i).start, i));

    // Most real tables have no overlaps; they need no sweep.
    let mut overlapping = false;
    let mut max_end: Option<K> = None;
    for &i in &order {
        let e = at(i);
        if max_end.is_some_and(|m| e.start <= m) {
            overlapping = true;
            break;
        }
        max_end = Some(e.end);
    }

    let mut starts = Vec::with_capacity(entries.len() + 1);
    let mut owner = Vec::with_capacity(entries.len() + 1);
    if !overlapping {
        // Next address not yet covered; None once the top address is covered.
        let mut next: Option<u128> = Some(0);
        for &i in &order {
            let e = at(i);
            let Some(n) = next else { break };
            if e.start.wide() > n {
                starts.push(K::narrow(n));
                owner.push(NONE);
            }
            starts.push(e.start);
            owner.push(i);
            next = (e.end != K::MAX).then(|| e.end.wide() + 1);
        }
        if let Some(n) = next {
            starts.push(K::narrow(n));
            owner.push(NONE);
        }
        return (starts, owner);
    }

    // Sweep over every boundary, keeping the active ranges in a min-heap on
    // (size, insertion index); ranges that have ended are dropped lazily.
    let mut ends: Vec<(u128, u32)> = order
        .iter()
        .filter(|&&i| at(i).end != K::MAX)
        .map(|&i| (at(i).end.wide() + 1, i))
        .collect();
    ends.sort_unstable();
    let mut active = vec![false; entries.len()];
    let mut heap: BinaryHeap<Reverse<(u128, u32)>> = BinaryHeap::new();
    let (mut si, mut ei) = (0usize, 0usize);
    let mut pos: u128 = 0;
    let mut last: Option<u32> = None;
    loop {
        while let Some(&i) = order.get(si) {
            if at(i).start.wide() != pos {
                break;
            }
            active[i as usize] = true;
            heap.push(Reverse((at(i).end.wide() - at(i).start.wide(), i)));
            si += 1;
        }
        while let Some(&(p, i)) = ends.get(ei) {
            if p != pos {
                break;
            }
            active[i as usize] = false;
            ei += 1;
        }
        while let Some(Reverse((_, i))) = heap.peek() {
            if active[*i as usize] {
                break;
            }
            heap.pop();
        }
        let winner = heap.peek().map_or(NONE, |Reverse((_, i))| *i);
        if last != Some(winner) {
            starts.push(K::narrow(pos));
            owner.push(winner);
            last = Some(winner);
        }
        let next_start = order.get(si).map(|&i| at(i).start.wide());
        let next_end = ends.get(ei).map(|&(p, _)| p);
        pos = match (next_start, next_end) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
    }
    (starts, owner)
}

/// Builds the top-level index over segment starts (see [`Side::index`]).
fn bucket_index<K: Key>(starts: &[K]) -> Vec<u32> {
    let shift = K::BITS - 16;
    let mut index = Vec::with_capacity(BUCKETS + 1);
    let mut j = 0usize;
    for b in 0..BUCKETS {
        let first = K::narrow((b as u128) << shift);
        while starts.get(j + 1).is_some_and(|&s| s <= first) {
            j += 1;
        }
        index.push(j as u32);
    }
    index.push(starts.len().saturating_sub(1) as u32);
    index
}

/// The length of the largest CIDR block that holds `ip` and lies inside
/// `start..=end` (which must hold `ip`).
#[inline]
fn covering_len<K: Key>(ip: K, start: K, end: K) -> (u128, u8) {
    let (ip, s, e) = (ip.wide(), start.wide(), end.wide());
    let span = e - s;
    // The block can be no larger than the range: start from floor(log2(size)).
    let mut k = if span == u128::MAX {
        128
    } else {
        127 - (span + 1).leading_zeros()
    };
    k = k.min(K::BITS);
    loop {
        let m = if k >= 128 {
            u128::MAX
        } else {
            (1u128 << k) - 1
        };
        let lo = ip & !m;
        if k == 0 || (lo >= s && (ip | m) <= e) {
            return (lo, (K::BITS - k) as u8);
        }
        k -= 1;
    }
}

/// One lookup result: the matched prefix and the value stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<V> {
    /// The largest CIDR block that holds the address and lies inside the
    /// matched range. For a range loaded from a prefix this is that prefix.
    pub prefix: IpNet,
    /// The value of the matched range.
    pub value: V,
}

/// An immutable longest-prefix table over IPv4 and IPv6 ranges.
///
/// Build one with [`PrefixTableBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixTable<V> {
    pub(crate) v4: Side<u32, V>,
    pub(crate) v6: Side<u128, V>,
}

impl<V: Copy> PrefixTable<V> {
    /// The most specific range holding `ip`. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are looked up as IPv4.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<Match<V>> {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(v4),
                None => self.lookup_v6(a),
            },
        }
    }

    /// The most specific IPv4 range holding `ip`.
    #[inline]
    pub fn lookup_v4(&self, ip: Ipv4Addr) -> Option<Match<V>> {
        let x = u32::from(ip);
        let e = self.v4.find(x)?;
        let (net, len) = covering_len(x, e.start, e.end);
        let prefix = Ipv4Net::new(Ipv4Addr::from(net as u32), len).ok()?;
        Some(Match {
            prefix: IpNet::V4(prefix),
            value: e.value,
        })
    }

    /// The most specific IPv6 range holding `ip` (no IPv4-mapped handling).
    #[inline]
    pub fn lookup_v6(&self, ip: Ipv6Addr) -> Option<Match<V>> {
        let x = u128::from(ip);
        let e = self.v6.find(x)?;
        let (net, len) = covering_len(x, e.start, e.end);
        let prefix = Ipv6Net::new(Ipv6Addr::from(net), len).ok()?;
        Some(Match {
            prefix: IpNet::V6(prefix),
            value: e.value,
        })
    }

    /// The value of the most specific IPv4 range holding `ip`, without the prefix.
    #[inline]
    pub fn value_v4(&self, ip: Ipv4Addr) -> Option<V> {
        self.v4.find(u32::from(ip)).map(|e| e.value)
    }

    /// Number of input ranges (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.ranges, self.v6.ranges)
    }

    /// Number of disjoint segments after flattening (IPv4, IPv6), gaps included.
    pub fn segments(&self) -> (usize, usize) {
        (self.v4.segments(), self.v6.segments())
    }

    /// True when the table holds no range.
    pub fn is_empty(&self) -> bool {
        self.v4.ranges == 0 && self.v6.ranges == 0
    }
}

/// Collects ranges for a [`PrefixTable`].
///
/// Overlapping ranges are allowed: the narrowest range covering an address
/// wins, and among equally wide ranges the one inserted first.
#[derive(Debug, Clone)]
pub struct PrefixTableBuilder<V> {
    v4: Vec<Entry<u32, V>>,
    v6: Vec<Entry<u128, V>>,
}

impl<V> Default for PrefixTableBuilder<V> {
    fn default() -> Self {
        PrefixTableBuilder {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<V: Copy> PrefixTableBuilder<V> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the inclusive range `start..=end`. Both ends must be of the same
    /// family and `start <= end`. IPv4-mapped IPv6 ends are taken as IPv4.
    pub fn insert_range(&mut self, start: IpAddr, end: IpAddr, value: V) -> Result<(), Error> {
        let unmap = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        match (unmap(start), unmap(end)) {
            (IpAddr::V4(s), IpAddr::V4(e)) => self.insert_v4(u32::from(s), u32::from(e), value),
            (IpAddr::V6(s), IpAddr::V6(e)) => self.insert_v6(u128::from(s), u128::from(e), value),
            _ => Err(Error::Range {
                start: start.to_string(),
                end: end.to_string(),
            }),
        }
    }

    /// Adds every address of `net`.
    pub fn insert_net(&mut self, net: IpNet, value: V) -> Result<(), Error> {
        match net {
            IpNet::V4(n) => self.insert_v4(u32::from(n.network()), u32::from(n.broadcast()), value),
            IpNet::V6(n) => {
                self.insert_v6(u128::from(n.network()), u128::from(n.broadcast()), value)
            }
        }
    }

    /// Adds the IPv4 range `start..=end`, given as integers.
    pub fn insert_v4(&mut self, start: u32, end: u32, value: V) -> Result<(), Error> {
        if start > end {
            return Err(Error::Range {
                start: Ipv4Addr::from(start).to_string(),
                end: Ipv4Addr::from(end).to_string(),
            });
        }
        Self::check_room(self.v4.len())?;
        self.v4.push(Entry { start, end, value });
        Ok(())
    }

    /// Adds the IPv6 range `start..=end`, given as integers.
    pub fn insert_v6(&mut self, start: u128, end: u128, value: V) -> Result<(), Error> {
        if start > end {
            return Err(Error::Range {
                start: Ipv6Addr::from(start).to_string(),
                end: Ipv6Addr::from(end).to_string(),
            });
        }
        Self::check_room(self.v6.len())?;
        self.v6.push(Entry { start, end, value });
        Ok(())
    }

    fn check_room(len: usize) -> Result<(), Error> {
        // Segment owners are u32 with u32::MAX reserved for gaps.
        if len >= (NONE - 1) as usize {
            return Err(Error::TooManyRanges);
        }
        Ok(())
    }

    /// Number of ranges added so far.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when no range was added.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Flattens the ranges into a lookup table.
    pub fn build(self) -> PrefixTable<V> {
        PrefixTable {
            v4: Side::build(self.v4),
            v6: Side::build(self.v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = PrefixTableBuilder::<u8>::new().build();
        assert!(t.lookup("1.2.3.4".parse().unwrap()).is_none());
        assert!(t.lookup("2001:db8::1".parse().unwrap()).is_none());
        assert_eq!(t.segments(), (1, 1));
    }

    #[test]
    fn nested_ranges_most_specific_wins() {
        let mut b = PrefixTableBuilder::new();
        b.insert_net("10.0.0.0/8".parse().unwrap(), 1).unwrap();
        b.insert_net("10.1.0.0/16".parse().unwrap(), 2).unwrap();
        b.insert_net("10.1.2.0/24".parse().unwrap(), 3).unwrap();
        let t = b.build();
        let m = t.lookup_v4(v4("10.1.2.3")).unwrap();
        assert_eq!((m.value, m.prefix.to_string().as_str()), (3, "10.1.2.0/24"));
        let m = t.lookup_v4(v4("10.1.3.3")).unwrap();
        assert_eq!((m.value, m.prefix.to_string().as_str()), (2, "10.1.0.0/16"));
        let m = t.lookup_v4(v4("10.200.0.1")).unwrap();
        assert_eq!((m.value, m.prefix.to_string().as_str()), (1, "10.0.0.0/8"));
        assert!(t.lookup_v4(v4("11.0.0.0")).is_none());
        assert!(t.lookup_v4(v4("9.255.255.255")).is_none());
    }

    #[test]
    fn unaligned_range_reports_largest_inner_block() {
        let mut b = PrefixTableBuilder::new();
        // 1.0.128.0 - 1.0.196.255 is /17 + ... ; the block around .150.x is a /19.
        b.insert_v4(u32::from(v4("1.0.128.0")), u32::from(v4("1.0.196.255")), 7)
            .unwrap();
        let t = b.build();
        let m = t.lookup_v4(v4("1.0.150.1")).unwrap();
        assert_eq!(m.prefix.to_string(), "1.0.128.0/18");
        let m = t.lookup_v4(v4("1.0.196.9")).unwrap();
        assert_eq!(m.prefix.to_string(), "1.0.196.0/24");
        let m = t.lookup_v4(v4("1.0.192.9")).unwrap();
        assert_eq!(m.prefix.to_string(), "1.0.192.0/22");
    }

    #[test]
    fn whole_space_ranges() {
        let mut b = PrefixTableBuilder::new();
        b.insert_v4(0, u32::MAX, 'a').unwrap();
        b.insert_v6(0, u128::MAX, 'b').unwrap();
        let t = b.build();
        let m = t.lookup("255.255.255.255".parse().unwrap()).unwrap();
        assert_eq!((m.value, m.prefix.to_string().as_str()), ('a', "0.0.0.0/0"));
        let m = t.lookup("ffff::1".parse().unwrap()).unwrap();
        assert_eq!((m.value, m.prefix.to_string().as_str()), ('b', "::/0"));
        // IPv4-mapped addresses go to the IPv4 side.
        let m = t.lookup("::ffff:1.2.3.4".parse().unwrap()).unwrap();
        assert_eq!(m.value, 'a');
    }

    #[test]
    fn equal_ranges_first_inserted_wins() {
        let mut b = PrefixTableBuilder::new();
        b.insert_net("192.0.2.0/24".parse().unwrap(), 1).unwrap();
        b.insert_net("192.0.2.0/24".parse().unwrap(), 2).unwrap();
        assert_eq!(b.build().lookup_v4(v4("192.0.2.9")).unwrap().value, 1);
    }

    #[test]
    fn rejects_reversed_and_mixed_ranges() {
        let mut b = PrefixTableBuilder::new();
        assert!(b.insert_v4(5, 4, 0).is_err());
        let s: IpAddr = "1.2.3.4".parse().unwrap();
        let e: IpAddr = "::5".parse().unwrap();
        assert!(b.insert_range(s, e, 0).is_err());
        assert!(b.is_empty());
    }
}
