//! Multi-index hashing over 11 slots of 23-24 bits.
//!
//! # Why 11 wide slots rather than 16 of 16 bits
//!
//! Split a 256-bit hash into `m` disjoint slots. If two hashes differ in at
//! most `r` bits, some slot differs in at most `floor(r/m)` bits (pigeonhole),
//! so probing every slot value within that many bit flips of the query's
//! finds every true match. With 16 slots of 16 bits and `r = 31` that is 17
//! probes per slot, but at ten million hashes each 16-bit value owns about 150
//! entries, so one query fetches about 41,000 random candidates to verify.
//! With 11 slots of 23-24 bits the per-slot flip budget is 2, and each probe
//! matches about 64 times fewer entries: about 3,000 candidates at ten
//! million, for a cost in probes that the bucketing below keeps cheap.
//!
//! # Layout
//!
//! Per slot, entries are bucketed on the slot's top `dbits` bits (a CSR
//! table: `dir` offsets plus a positions array), and each posting also stores
//! the slot's low 8 bits as a filter byte. A query visits every bucket within
//! `k <= q` flips of its own and keeps postings whose filter byte is within
//! `q - k` flips; bits between the two are ignored, which only admits extra
//! candidates, never drops one. Candidates are verified by full distance.
//! `dbits` grows with the segment size (about 32 entries per bucket) up to
//! the slot width minus 8. Hashes are stored sorted by slot 0, so slot 0 needs
//! no positions array and its buckets are contiguous runs of the hash array.
//!
//! Resident size per hash: 32 (hash) + 4 or 8 (id) + 11 (filters) +
//! 40 (positions for slots 1-10) = 87 bytes with 32-bit ids, plus the
//! directories (at most 1.8 MiB in all).

use takedown_pdq::PdqHash;

use crate::flat::{scan, transform_of};
use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words, distance};

/// Number of slots a hash is split into.
pub(crate) const SLOTS: usize = 11;
/// Bits per slot: three of 24 then eight of 23, 256 in all.
const WIDTHS: [u32; SLOTS] = [24, 24, 24, 23, 23, 23, 23, 23, 23, 23, 23];
/// Low bits of each slot kept as the per-posting filter byte.
const FILTER_BITS: u32 = 8;
/// Below this many entries a linear scan always wins.
const FLAT_BELOW: usize = 2048;

/// Bit offset (from the most significant bit of word 0) and width of a slot.
#[derive(Debug, Clone, Copy)]
struct Geom {
    off: u32,
    width: u32,
}

const GEOMS: [Geom; SLOTS] = {
    let mut g = [Geom { off: 0, width: 0 }; SLOTS];
    let mut off = 0;
    let mut i = 0;
    while i < SLOTS {
        g[i] = Geom {
            off,
            width: WIDTHS[i],
        };
        off += WIDTHS[i];
        i += 1;
    }
    g
};

/// The `width` bits of `w` starting `off` bits from the top.
#[inline]
fn field(w: &Words, g: Geom) -> u32 {
    let wi = (g.off / 64) as usize;
    let b = g.off % 64;
    let hi = u128::from(w[wi]);
    let lo = u128::from(if wi + 1 < 4 { w[wi + 1] } else { 0 });
    let window = (hi << 64) | lo;
    ((window << b) >> (128 - g.width)) as u32
}

/// Directory bits for a segment of `n` entries in a slot of `width` bits.
pub(crate) fn dir_bits(n: usize, width: u32) -> u32 {
    let lg = usize::BITS - 1 - n.max(1).leading_zeros();
    lg.saturating_sub(5).clamp(1, width - FILTER_BITS)
}

/// How a [`MihIndex`] answers a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    /// Probe or scan, whichever the cost model expects to be faster.
    #[default]
    Auto,
    /// Always probe the slot tables.
    Probe,
    /// Always scan every hash.
    Scan,
}

/// Entry ids, stored in 32 bits when they all fit.
#[derive(Debug, Clone)]
pub(crate) enum Ids {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Ids {
    fn from_u64(ids: Vec<u64>) -> Ids {
        if ids.iter().all(|&i| i <= u64::from(u32::MAX)) {
            Ids::Narrow(ids.into_iter().map(|i| i as u32).collect())
        } else {
            Ids::Wide(ids)
        }
    }

    #[inline]
    pub(crate) fn at(&self, pos: usize) -> Option<EntryId> {
        match self {
            Ids::Narrow(v) => v.get(pos).map(|&i| EntryId(u64::from(i))),
            Ids::Wide(v) => v.get(pos).map(|&i| EntryId(i)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Ids::Narrow(v) => v.capacity() * 4,
            Ids::Wide(v) => v.capacity() * 8,
        }
    }
}

/// One slot's posting table.
#[derive(Debug, Clone)]
pub(crate) struct SlotTable {
    /// Directory bits: buckets are keyed on the slot's top `dbits` bits.
    pub(crate) dbits: u32,
    /// `2^dbits + 1` offsets into `filt` and `pos`.
    pub(crate) dir: Vec<u32>,
    /// The slot's low 8 bits, per posting.
    pub(crate) filt: Vec<u8>,
    /// Hash positions, per posting; empty for slot 0 (identity).
    pub(crate) pos: Vec<u32>,
}

/// An immutable multi-index-hashing segment. See the module documentation
/// for the layout and its costs.
#[derive(Debug, Clone)]
pub struct MihIndex {
    pub(crate) hashes: Vec<Words>,
    pub(crate) ids: Ids,
    pub(crate) slots: Vec<SlotTable>,
}

impl MihIndex {
    /// Builds a segment over `entries`. Duplicate hashes and duplicate ids are
    /// kept as given.
    pub fn build(entries: impl IntoIterator<Item = (EntryId, PdqHash)>) -> Result<Self, Error> {
        let (ids, hashes): (Vec<u64>, Vec<Words>) =
            entries.into_iter().map(|(id, h)| (id.0, h.words())).unzip();
        Self::from_words(hashes, ids)
    }

    pub(crate) fn from_words(hashes: Vec<Words>, ids: Vec<u64>) -> Result<Self, Error> {
        let n = hashes.len();
        if n > u32::MAX as usize {
            return Err(Error::TooLarge(n));
        }
        // Sort by slot 0 (then by input order, for determinism) so that slot 0
        // needs no positions array.
        let mut order: Vec<u64> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (u64::from(field(h, GEOMS[0])) << 32) | i as u64)
            .collect();
        order.sort_unstable();
        let perm = |i: &u64| (*i & 0xffff_ffff) as usize;
        let sorted_hashes: Vec<Words> = order.iter().map(|i| hashes[perm(i)]).collect();
        let sorted_ids: Vec<u64> = order.iter().map(|i| ids[perm(i)]).collect();
        drop(order);
        drop(hashes);
        drop(ids);

        let slots = if n < 1 << 16 {
            (0..SLOTS)
                .map(|slot| build_slot(&sorted_hashes, slot))
                .collect()
        } else {
            build_slots_parallel(&sorted_hashes)
        };
        Ok(MihIndex {
            hashes: sorted_hashes,
            ids: Ids::from_u64(sorted_ids),
            slots,
        })
    }
}

/// Builds the slot tables on as many threads as there are slots; the
/// operating system spreads them over the cores.
fn build_slots_parallel(sorted_hashes: &[Words]) -> Vec<SlotTable> {
    std::thread::scope(|s| {
        let hs = sorted_hashes;
        let handles: Vec<_> = (0..SLOTS)
            .map(|slot| s.spawn(move || build_slot(hs, slot)))
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(slot, h)| h.join().unwrap_or_else(|_| build_slot(hs, slot)))
            .collect::<Vec<_>>()
    })
}

impl MihIndex {
    /// The entries, in storage order (sorted by the first slot).
    pub fn entries(&self) -> impl Iterator<Item = (EntryId, PdqHash)> + '_ {
        self.hashes
            .iter()
            .enumerate()
            .filter_map(|(p, w)| Some((self.ids.at(p)?, PdqHash::from_words(*w))))
    }

    pub(crate) fn id_at(&self, pos: usize) -> Option<EntryId> {
        self.ids.at(pos)
    }

    /// Resident bytes used by the arrays.
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 32
            + self.ids.bytes()
            + self
                .slots
                .iter()
                .map(|s| s.dir.capacity() * 4 + s.filt.capacity() + s.pos.capacity() * 4)
                .sum::<usize>()
    }

    /// True when a linear scan is expected to be cheaper than probing for a
    /// query of `nq` hashes at radius `r`.
    pub(crate) fn prefer_flat(&self, nq: usize, r: u32) -> bool {
        let n = self.hashes.len();
        if n < FLAT_BELOW {
            return true;
        }
        let q = r / SLOTS as u32;
        let nf = n as f64;
        let mut mih = 0.0;
        for s in &self.slots {
            let visits = binom_sum(s.dbits, q);
            let scanned = visits * nf / 2f64.powi(s.dbits as i32);
            let bits = s.dbits + FILTER_BITS;
            let cands = nf * binom_sum(bits, q) / 2f64.powi(bits as i32);
            // Rough costs in nanoseconds: a bucket visit is a cache miss, a
            // filter byte is a streamed byte, a candidate is a random fetch.
            mih += visits * 40.0 + scanned + cands * 15.0;
        }
        let flat = nf * (2.0 + nq as f64);
        mih * nq as f64 > flat
    }

    /// Like [`Search::search_into`], but with the probe-or-scan decision
    /// forced; for tests and benchmarks. Results are identical either way.
    pub fn search_with(&self, query: &Query, radius: Radius, plan: Plan, out: &mut Vec<Hit>) {
        let mut raw = Vec::new();
        self.raw_search_with(query, radius.get(), plan, &mut raw);
        out.extend(raw.into_iter().filter_map(|r| {
            Some(Hit {
                id: self.id_at(r.pos as usize)?,
                transform: transform_of(r.t),
                distance: u32::from(r.dist),
            })
        }));
    }

    /// Raw hits, one per matching position, closest transform first.
    pub(crate) fn raw_search(&self, query: &Query, r: u32, out: &mut Vec<RawHit>) {
        self.raw_search_with(query, r, Plan::Auto, out);
    }

    fn raw_search_with(&self, query: &Query, r: u32, plan: Plan, out: &mut Vec<RawHit>) {
        let flat = match plan {
            Plan::Auto => self.prefer_flat(query.len(), r),
            Plan::Probe => false,
            Plan::Scan => true,
        };
        if flat {
            scan(&self.hashes, query, r, out);
            return;
        }
        let start = out.len();
        for (t, q) in query.items() {
            self.probe(q, r, t.index() as u8, out);
        }
        // A close entry is found through several slots and transforms: keep
        // its best (smallest distance, then earliest transform) once.
        let mut found = out.split_off(start);
        found.sort_unstable();
        found.dedup_by_key(|h| h.pos);
        out.append(&mut found);
    }

    fn probe(&self, q: &Words, r: u32, t: u8, out: &mut Vec<RawHit>) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::level() == crate::simd::Level::Avx2 {
            #[allow(unsafe_code)]
            // SAFETY: `probe_avx2` only requires AVX2 and POPCNT, which
            // `simd::level` detected on this CPU.
            unsafe {
                self.probe_avx2(q, r, t, out)
            };
            return;
        }
        self.probe_impl(q, r, t, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    fn probe_avx2(&self, q: &Words, r: u32, t: u8, out: &mut Vec<RawHit>) {
        self.probe_impl(q, r, t, out);
    }

    #[inline(always)]
    fn probe_impl(&self, q: &Words, r: u32, t: u8, out: &mut Vec<RawHit>) {
        let budget = r / SLOTS as u32;
        let mut cands: Vec<u32> = Vec::with_capacity(256);
        for (s, (slot, g)) in self.slots.iter().zip(GEOMS).enumerate() {
            let key = field(q, g);
            let qd = key >> (g.width - slot.dbits);
            let qf = (key & 0xff) as u8;
            cands.clear();
            for k in 0..=budget.min(slot.dbits) {
                let allowed = (budget - k).min(8) as u8;
                for_each_subset(slot.dbits, k, |mask| {
                    let b = (qd ^ mask) as usize;
                    let (Some(&lo), Some(&hi)) = (slot.dir.get(b), slot.dir.get(b + 1)) else {
                        return;
                    };
                    let lo = lo as usize;
                    let Some(filt) = slot.filt.get(lo..hi as usize) else {
                        return;
                    };
                    // Positions are gathered first and verified in a batch
                    // below, so the random hash fetches overlap.
                    if allowed == 0 {
                        for (j, &f) in filt.iter().enumerate() {
                            if f == qf {
                                cands.push((lo + j) as u32);
                            }
                        }
                    } else {
                        for (j, &f) in filt.iter().enumerate() {
                            if POP8[usize::from(f ^ qf)] <= allowed {
                                cands.push((lo + j) as u32);
                            }
                        }
                    }
                });
            }
            for &c in &cands {
                let p = if s == 0 {
                    c as usize
                } else {
                    match slot.pos.get(c as usize) {
                        Some(&p) => p as usize,
                        None => continue,
                    }
                };
                if let Some(h) = self.hashes.get(p) {
                    let d = distance(h, q);
                    if d <= r {
                        out.push(RawHit {
                            pos: p as u32,
                            dist: d as u16,
                            t,
                        });
                    }
                }
            }
        }
    }

    /// Checks the invariants the search relies on; used after loading.
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.hashes.len();
        let ids_len = match &self.ids {
            Ids::Narrow(v) => v.len(),
            Ids::Wide(v) => v.len(),
        };
        if ids_len != n {
            return Err(format!("{ids_len} ids for {n} hashes"));
        }
        if self.slots.len() != SLOTS {
            return Err(format!("{} slots, expected {SLOTS}", self.slots.len()));
        }
        for (s, (slot, g)) in self.slots.iter().zip(GEOMS).enumerate() {
            if slot.dbits == 0 || slot.dbits > g.width - FILTER_BITS {
                return Err(format!("slot {s} has {} directory bits", slot.dbits));
            }
            if slot.dir.len() != (1usize << slot.dbits) + 1 {
                return Err(format!("slot {s} directory has the wrong length"));
            }
            if slot.dir.first() != Some(&0)
                || slot.dir.last().map(|&x| x as usize) != Some(n)
                || slot.dir.windows(2).any(|w| w[0] > w[1])
            {
                return Err(format!("slot {s} directory is not monotonic from 0 to {n}"));
            }
            if slot.filt.len() != n {
                return Err(format!("slot {s} filter has the wrong length"));
            }
            let pos_len = if s == 0 { 0 } else { n };
            if slot.pos.len() != pos_len || slot.pos.iter().any(|&p| p as usize >= n) {
                return Err(format!("slot {s} positions are out of range"));
            }
        }
        Ok(())
    }
}

fn build_slot(hashes: &[Words], slot: usize) -> SlotTable {
    let g = GEOMS[slot];
    let n = hashes.len();
    let dbits = dir_bits(n, g.width);
    let shift = g.width - dbits;
    let mut dir = vec![0u32; (1usize << dbits) + 1];
    for h in hashes {
        dir[(field(h, g) >> shift) as usize + 1] += 1;
    }
    for i in 1..dir.len() {
        dir[i] += dir[i - 1];
    }
    let mut filt = vec![0u8; n];
    let mut pos = Vec::new();
    if slot == 0 {
        // Hashes are sorted by this slot, so buckets are already contiguous.
        for (f, h) in filt.iter_mut().zip(hashes) {
            *f = (field(h, g) & 0xff) as u8;
        }
    } else {
        pos = vec![0u32; n];
        let mut cursor = dir.clone();
        for (i, h) in hashes.iter().enumerate() {
            let key = field(h, g);
            let c = &mut cursor[(key >> shift) as usize];
            pos[*c as usize] = i as u32;
            filt[*c as usize] = (key & 0xff) as u8;
            *c += 1;
        }
    }
    SlotTable {
        dbits,
        dir,
        filt,
        pos,
    }
}

/// Bit counts of every byte value.
const POP8: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u32).count_ones() as u8;
        i += 1;
    }
    t
};

/// Sum of binomial coefficients C(n, 0..=k).
fn binom_sum(n: u32, k: u32) -> f64 {
    let mut c = 1.0;
    let mut sum = 1.0;
    for i in 1..=k.min(n) {
        c = c * f64::from(n - i + 1) / f64::from(i);
        sum += c;
    }
    sum
}

/// Calls `f` with every `n`-bit mask of exactly `k` set bits (`n <= 31`).
#[inline]
fn for_each_subset(n: u32, k: u32, mut f: impl FnMut(u32)) {
    if k == 0 {
        f(0);
        return;
    }
    if k > n {
        return;
    }
    let limit = 1u64 << n;
    let mut m: u64 = (1u64 << k) - 1;
    while m < limit {
        f(m as u32);
        // Gosper's hack: the next larger integer with the same popcount.
        let c = m & m.wrapping_neg();
        let r = m + c;
        m = (((r ^ m) >> 2) / c) | r;
    }
}

impl Search for MihIndex {
    fn search_into(&self, query: &Query, radius: Radius, out: &mut Vec<Hit>) {
        self.search_with(query, radius, Plan::Auto, out);
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_all_bits() {
        assert_eq!(WIDTHS.iter().sum::<u32>(), 256);
        let mut w = [0u64; 4];
        // Setting each slot to all ones must set every bit exactly once.
        let ones = [u64::MAX; 4];
        for g in GEOMS {
            assert_eq!(field(&ones, g), (1u32 << g.width) - 1);
            assert_eq!(field(&w, g), 0);
        }
        w[3] = 1;
        assert_eq!(field(&w, GEOMS[SLOTS - 1]), 1);
        w = [1u64 << 63, 0, 0, 0];
        assert_eq!(field(&w, GEOMS[0]), 1 << 23);
    }

    #[test]
    fn subsets_are_enumerated_once() {
        for n in 1..=16 {
            for k in 0..=3 {
                let mut seen = std::collections::HashSet::new();
                for_each_subset(n, k, |m| {
                    assert_eq!(m.count_ones(), k);
                    assert!(m < (1 << n));
                    assert!(seen.insert(m));
                });
                assert_eq!(
                    seen.len() as f64,
                    binom_sum(n, k)
                        - binom_sum(n, k.saturating_sub(1)) * f64::from(u8::from(k > 0))
                );
            }
        }
    }

    #[test]
    fn directory_grows_with_size() {
        assert_eq!(dir_bits(0, 23), 1);
        assert_eq!(dir_bits(1 << 20, 23), 15);
        assert_eq!(dir_bits(10_000_000, 24), 16);
        assert_eq!(dir_bits(10_000_000, 23), 15);
    }
}
