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
//! up to 8 of the slot's remaining low bits as a filter byte. A query visits
//! every bucket within `k <= q` flips of its own and keeps postings whose
//! filter bits are within `q - k` flips; slot bits between the two (only in
//! small segments) are ignored, which only admits extra candidates, never
//! drops one. Candidates are verified by full distance. `dbits` grows with
//! the segment size, about 32 to 64 entries per bucket: at ten million that
//! is 18 bits, leaving 5-6 filter bits. Hashes are stored sorted by slot 0,
//! so slot 0 needs no positions array and its buckets are contiguous runs of
//! the hash array.
//!
//! The per-slot budgets are refined beyond plain pigeonhole (see
//! [`budgets`]): at radius 31 one slot needs only one flip.
//!
//! # Query cost
//!
//! At ten million random hashes a single-hash query visits about 1,700
//! buckets and verifies about 2,900 candidates: some 10,000 random cache
//! lines (directory entry, filter bytes, position, hash). Those misses, not
//! arithmetic, are the whole cost, so the probe runs as a batched pipeline
//! with software prefetching (see [`MihIndex::probe_impl`]), and the large
//! arrays ask for huge pages (see `mem`) so that the misses do not also miss
//! the TLB.
//!
//! Resident size per hash: 32 (hash) + 4 or 8 (id) + 11 (filters) +
//! 40 (positions for slots 1-10) = 87 bytes with 32-bit ids, plus the
//! directories (11 x 4 x 2^dbits bytes: at most 1.4 bytes per hash).

use takedown_pdq::{PdqHash, Transform};

use crate::flat::{scan, transform_of};
use crate::simd::prefetch;
use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words, distance};

/// Number of slots a hash is split into.
pub(crate) const SLOTS: usize = 11;
/// Bits per slot: three of 24 then eight of 23, 256 in all.
const WIDTHS: [u32; SLOTS] = [24, 24, 24, 23, 23, 23, 23, 23, 23, 23, 23];
/// At most this many low bits of each slot are kept as the per-posting
/// filter byte: those below the directory bits.
const FILTER_BITS: u32 = 8;
/// A segment's directory has about `n >> DIR_SHIFT` buckets per slot.
const DIR_SHIFT: u32 = 5;
/// Probes per pipeline batch (see [`MihIndex::probe_impl`]). Measured: a
/// few dozen outstanding misses is what one core sustains; much larger
/// batches evict their own prefetched lines before use.
const PROBE_BATCH: usize = 32;
/// Candidates per pipeline batch.
const CAND_BATCH: usize = 64;
/// `Probe::allowed` value meaning "every posting of the bucket".
const ALL: u8 = u8::MAX;
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

/// The flip budget of each slot for radius `r`, or `None` for a slot that
/// need not be probed at all.
///
/// If an entry is within `r` of the query, some slot `s` differs by at most
/// `budget[s]` bits as long as the budgets satisfy
/// `sum(budget[s] + 1) >= r + 1`: otherwise every slot would differ by at
/// least `budget[s] + 1` and the total by more than `r`. Plain pigeonhole
/// gives every slot `r / 11`, which overshoots the sum by `e` (1 at the
/// default radius 31); the last `e` slots, the narrow ones with the most
/// entries per key, then take one flip less. At radius 0 this probes a
/// single slot instead of eleven.
pub(crate) fn budgets(r: u32) -> [Option<u32>; SLOTS] {
    let m = SLOTS as u32;
    let q = r / m;
    let spare = m * (q + 1) - (r + 1);
    let mut out = [Some(q); SLOTS];
    for (i, b) in out.iter_mut().enumerate() {
        if (i as u32) >= m - spare {
            *b = q.checked_sub(1);
        }
    }
    out
}

/// Directory bits for a segment of `n` entries in a slot of `width` bits.
pub(crate) fn dir_bits(n: usize, width: u32) -> u32 {
    let lg = usize::BITS - 1 - n.max(1).leading_zeros();
    lg.saturating_sub(DIR_SHIFT).clamp(1, width - 1)
}

/// Filter bits kept per posting: the slot bits below the directory bits, at
/// most eight.
pub(crate) fn filter_bits(dbits: u32, width: u32) -> u32 {
    width.saturating_sub(dbits).min(FILTER_BITS)
}

/// The mask selecting `fbits` low bits of a byte.
fn filter_mask(fbits: u32) -> u8 {
    ((1u32 << fbits.min(8)) - 1) as u8
}

/// How many probes and candidates each pipeline stage handles at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batches {
    pub(crate) probe: usize,
    pub(crate) cand: usize,
}

impl Batches {
    pub(crate) const DEFAULT: Batches = Batches {
        probe: PROBE_BATCH,
        cand: CAND_BATCH,
    };
}

/// One bucket to visit: slot, bucket, and which filter bytes pass.
#[derive(Debug, Clone, Copy)]
struct Probe {
    bucket: u32,
    qi: u32,
    slot: u8,
    /// The query's filter bits in this slot.
    qf: u8,
    /// Filter bits allowed to differ, or [`ALL`].
    allowed: u8,
}

/// A posting to verify: first its index in the slot table, then (after the
/// positions step) the hash position.
#[derive(Debug, Clone, Copy)]
struct Cand {
    at: u32,
    qi: u32,
    slot: u8,
}

/// The batch buffers of one query.
struct Pipeline {
    probes: Vec<Probe>,
    spans: Vec<(u32, u32)>,
    cands: Vec<Cand>,
    batches: Batches,
    level: crate::simd::Level,
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
        let mut sorted_hashes: Vec<Words> = crate::mem::zeroed(n);
        for (dst, i) in sorted_hashes.iter_mut().zip(&order) {
            *dst = hashes[perm(i)];
        }
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
        let nf = n as f64;
        let mut mih = 0.0;
        for ((s, g), q) in self.slots.iter().zip(GEOMS).zip(budgets(r)) {
            let Some(q) = q else { continue };
            let visits = binom_sum(s.dbits, q);
            let scanned = visits * nf / 2f64.powi(s.dbits as i32);
            let bits = s.dbits + filter_bits(s.dbits, g.width);
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
        self.probe(query.items(), r, Batches::DEFAULT, out);
    }

    /// Probes the slot tables for every hash of a query at once and appends
    /// one raw hit per matching position (its best transform).
    pub(crate) fn probe(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        out: &mut Vec<RawHit>,
    ) {
        let start = out.len();
        #[cfg(target_arch = "x86_64")]
        if crate::simd::level() == crate::simd::Level::Avx2 {
            #[allow(unsafe_code)]
            // SAFETY: `probe_avx2` only requires AVX2 and POPCNT, which
            // `simd::level` detected on this CPU.
            unsafe {
                self.probe_avx2(items, r, batches, out)
            };
        } else {
            self.probe_impl(items, r, batches, crate::simd::Level::Plain, out);
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.probe_impl(items, r, batches, crate::simd::Level::Plain, out);
        // A close entry is found through several slots and transforms: keep
        // its best (smallest distance, then earliest transform) once.
        let mut found = out.split_off(start);
        found.sort_unstable();
        found.dedup_by_key(|h| h.pos);
        out.append(&mut found);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    fn probe_avx2(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        out: &mut Vec<RawHit>,
    ) {
        self.probe_impl(items, r, batches, crate::simd::Level::Avx2, out);
    }

    /// The probe pipeline. Every step that would wait on memory is split
    /// into batches: first the addresses of a whole batch are prefetched,
    /// then the batch is consumed, so that a dozen or more cache misses are
    /// in flight at once instead of one. The steps are: bucket directory
    /// entries, then each bucket's filter bytes, then (per candidate) the
    /// position, then the hash. All hashes of the query share the batches,
    /// which keeps them full for eight-way dihedral queries.
    #[inline(always)]
    fn probe_impl(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        level: crate::simd::Level,
        out: &mut Vec<RawHit>,
    ) {
        let budgets = budgets(r);
        let mut st = Pipeline {
            probes: Vec::with_capacity(batches.probe),
            spans: Vec::with_capacity(batches.probe),
            cands: Vec::with_capacity(batches.cand + 64),
            batches,
            level,
        };
        for (qi, (_, q)) in items.iter().enumerate() {
            let qi = qi as u32;
            for (si, ((slot, g), budget)) in self.slots.iter().zip(GEOMS).zip(budgets).enumerate() {
                let Some(budget) = budget else { continue };
                let key = field(q, g);
                let fbits = filter_bits(slot.dbits, g.width);
                let qd = key >> (g.width - slot.dbits);
                let qf = (key as u8) & filter_mask(fbits);
                for k in 0..=budget.min(slot.dbits) {
                    let allowed = (budget - k).min(fbits) as u8;
                    let all = allowed as u32 >= fbits;
                    for mask in Subsets::new(slot.dbits, k) {
                        st.probes.push(Probe {
                            bucket: qd ^ mask,
                            qi,
                            slot: si as u8,
                            qf,
                            allowed: if all { ALL } else { allowed },
                        });
                        if st.probes.len() >= st.batches.probe {
                            self.run_probes(&mut st, items, r, out);
                        }
                    }
                }
            }
        }
        self.run_probes(&mut st, items, r, out);
        self.run_cands(&mut st.cands, items, r, out);
    }

    /// Turns a batch of probes into candidates.
    #[inline(always)]
    fn run_probes(
        &self,
        st: &mut Pipeline,
        items: &[(Transform, Words)],
        r: u32,
        out: &mut Vec<RawHit>,
    ) {
        for p in &st.probes {
            if let Some(slot) = self.slots.get(usize::from(p.slot)) {
                prefetch(&slot.dir, p.bucket as usize);
                prefetch(&slot.dir, p.bucket as usize + 1);
            }
        }
        st.spans.clear();
        for p in &st.probes {
            let span = self
                .slots
                .get(usize::from(p.slot))
                .and_then(|s| {
                    let b = p.bucket as usize;
                    Some((*s.dir.get(b)?, *s.dir.get(b + 1)?))
                })
                .unwrap_or((0, 0));
            if let Some(slot) = self.slots.get(usize::from(p.slot)) {
                let (lo, hi) = (span.0 as usize, span.1 as usize);
                let mut at = lo;
                while at < hi {
                    prefetch(&slot.filt, at);
                    at += 64;
                }
                if hi > lo {
                    prefetch(&slot.filt, hi - 1);
                }
            }
            st.spans.push(span);
        }
        for (p, &(lo, hi)) in st.probes.iter().zip(&st.spans) {
            let Some(slot) = self.slots.get(usize::from(p.slot)) else {
                continue;
            };
            let Some(filt) = slot.filt.get(lo as usize..hi as usize) else {
                continue;
            };
            let (qi, si) = (p.qi, p.slot);
            if p.allowed == ALL {
                st.cands
                    .extend((lo..hi).map(|at| Cand { at, qi, slot: si }));
            } else {
                crate::simd::filter_matches(st.level, filt, p.qf, p.allowed, |j| {
                    st.cands.push(Cand {
                        at: lo + j,
                        qi,
                        slot: si,
                    });
                });
            }
            if st.cands.len() >= st.batches.cand {
                self.run_cands(&mut st.cands, items, r, out);
            }
        }
        st.probes.clear();
    }

    /// Verifies a batch of candidates by full distance.
    #[inline(always)]
    fn run_cands(
        &self,
        cands: &mut Vec<Cand>,
        items: &[(Transform, Words)],
        r: u32,
        out: &mut Vec<RawHit>,
    ) {
        for c in cands.iter() {
            if c.slot == 0 {
                prefetch(&self.hashes, c.at as usize);
            } else if let Some(slot) = self.slots.get(usize::from(c.slot)) {
                prefetch(&slot.pos, c.at as usize);
            }
        }
        for c in cands.iter_mut() {
            if c.slot != 0 {
                c.at = self
                    .slots
                    .get(usize::from(c.slot))
                    .and_then(|s| s.pos.get(c.at as usize))
                    .copied()
                    .unwrap_or(u32::MAX);
                prefetch(&self.hashes, c.at as usize);
            }
        }
        for c in cands.iter() {
            let (Some(h), Some((t, q))) =
                (self.hashes.get(c.at as usize), items.get(c.qi as usize))
            else {
                continue;
            };
            let d = distance(h, q);
            if d <= r {
                out.push(RawHit {
                    pos: c.at,
                    dist: d as u16,
                    t: t.index() as u8,
                });
            }
        }
        cands.clear();
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
            if slot.dbits == 0 || slot.dbits >= g.width {
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
    let fmask = filter_mask(filter_bits(dbits, g.width));
    let mut dir = vec![0u32; (1usize << dbits) + 1];
    for h in hashes {
        dir[(field(h, g) >> shift) as usize + 1] += 1;
    }
    for i in 1..dir.len() {
        dir[i] += dir[i - 1];
    }
    let mut filt: Vec<u8> = crate::mem::zeroed(n);
    let mut pos = Vec::new();
    if slot == 0 {
        // Hashes are sorted by this slot, so buckets are already contiguous.
        for (f, h) in filt.iter_mut().zip(hashes) {
            *f = (field(h, g) as u8) & fmask;
        }
    } else {
        pos = crate::mem::zeroed(n);
        let mut cursor = dir.clone();
        for (i, h) in hashes.iter().enumerate() {
            let key = field(h, g);
            let c = &mut cursor[(key >> shift) as usize];
            pos[*c as usize] = i as u32;
            filt[*c as usize] = (key as u8) & fmask;
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

/// Every `n`-bit mask with exactly `k` set bits (`n <= 31`), in increasing
/// order. An iterator rather than a callback so that the probe loop stays
/// inside the function compiled for AVX2 and POPCNT.
struct Subsets {
    next: u64,
    limit: u64,
}

impl Subsets {
    fn new(n: u32, k: u32) -> Self {
        let limit = 1u64 << n.min(31);
        let next = if k > n { limit } else { (1u64 << k) - 1 };
        Subsets { next, limit }
    }
}

impl Iterator for Subsets {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        let m = self.next;
        if m >= self.limit {
            return None;
        }
        if m == 0 {
            self.next = self.limit;
        } else {
            // Gosper's hack: the next larger integer with the same popcount.
            let c = m & m.wrapping_neg();
            let r = m + c;
            self.next = (((r ^ m) >> 2) / c) | r;
        }
        Some(m as u32)
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
                for m in Subsets::new(n, k) {
                    assert_eq!(m.count_ones(), k);
                    assert!(m < (1 << n));
                    assert!(seen.insert(m));
                }
                assert_eq!(
                    seen.len() as f64,
                    binom_sum(n, k)
                        - binom_sum(n, k.saturating_sub(1)) * f64::from(u8::from(k > 0))
                );
            }
        }
    }

    /// Random hashes plus neighbours of the first few at 0-40 bits, and
    /// query hashes near those neighbours.
    fn planted(n: usize, seed: u64) -> (Vec<Words>, Vec<Words>) {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut hashes: Vec<Words> = (0..n).map(|_| [next(), next(), next(), next()]).collect();
        let mut queries = Vec::new();
        for i in 0..24 {
            let mut q = hashes[i];
            for _ in 0..(i * 2) {
                let bit = next() % 256;
                q[(bit / 64) as usize] ^= 1 << (bit % 64);
            }
            queries.push(q);
            // A second entry near the same query, for multi-hit results.
            let mut near = q;
            near[0] ^= next() & next() & next();
            hashes.push(near);
        }
        (hashes, queries)
    }

    fn probe_with(mih: &MihIndex, items: &[(Transform, Words)], r: u32, b: Batches) -> Vec<RawHit> {
        let mut out = Vec::new();
        mih.probe(items, r, b, &mut out);
        out.sort_unstable();
        out
    }

    /// Batch sizes only change how far ahead the pipeline prefetches;
    /// one-element batches (no overlap at all) and odd sizes that split
    /// buckets' candidate lists must give the same hits as the default and
    /// as a full scan.
    #[test]
    fn batch_sizes_do_not_change_results() {
        let (hashes, queries) = planted(40_000, 5);
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes.clone(), ids).unwrap();
        let mut total = 0;
        for q in &queries {
            let items = [(Transform::Orig, *q)];
            for r in [0, 10, 22, 31, 32, 40] {
                let mut want = Vec::new();
                scan(
                    &mih.hashes,
                    &Query::new(PdqHash::from_words(*q)),
                    r,
                    &mut want,
                );
                want.sort_unstable();
                total += want.len();
                for b in [
                    Batches::DEFAULT,
                    Batches { probe: 1, cand: 1 },
                    Batches { probe: 3, cand: 7 },
                    Batches {
                        probe: 1000,
                        cand: 5000,
                    },
                ] {
                    assert_eq!(probe_with(&mih, &items, r, b), want, "r = {r}, {b:?}");
                }
            }
        }
        assert!(
            total > 100,
            "the planted set should produce hits, got {total}"
        );
    }

    /// All hashes of a dihedral query share the pipeline; the result must
    /// equal the per-hash searches merged by keeping each position's best
    /// (distance, then transform).
    #[test]
    fn shared_pipeline_equals_per_hash_probes() {
        let (hashes, queries) = planted(30_000, 9);
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes, ids).unwrap();
        for (i, chunk) in queries.chunks(8).enumerate() {
            let items: Vec<(Transform, Words)> = Transform::ALL
                .iter()
                .rev()
                .copied()
                .zip(chunk.iter().copied())
                .collect();
            for r in [31, 32 + i as u32] {
                let got = probe_with(&mih, &items, r, Batches::DEFAULT);
                let mut merged: Vec<RawHit> = items
                    .iter()
                    .flat_map(|it| probe_with(&mih, std::slice::from_ref(it), r, Batches::DEFAULT))
                    .collect();
                merged.sort_unstable();
                merged.dedup_by_key(|h| h.pos);
                assert_eq!(got, merged, "r = {r}");
            }
        }
    }

    #[test]
    fn budgets_cover_the_radius() {
        for r in 0..=256 {
            let b = budgets(r);
            let sum: u32 = b.iter().map(|q| q.map_or(0, |q| q + 1)).sum();
            assert_eq!(sum, r + 1, "r = {r}");
        }
        assert_eq!(
            budgets(31)[..],
            [Some(2); 10]
                .iter()
                .copied()
                .chain([Some(1)])
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(budgets(0).iter().flatten().count(), 1);
    }

    #[test]
    fn directory_grows_with_size() {
        assert_eq!(dir_bits(0, 23), 1);
        assert_eq!(dir_bits(1 << 20, 23), 15);
        assert_eq!(dir_bits(10_000_000, 24), 18);
        assert_eq!(dir_bits(10_000_000, 23), 18);
        assert_eq!(dir_bits(usize::MAX, 23), 22);
        assert_eq!(filter_bits(18, 23), 5);
        assert_eq!(filter_bits(14, 24), 8);
    }
}
