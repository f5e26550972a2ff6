//! Multi-index hashing over 11 slots, with postings packed into cache lines.
//!
//! # Why 11 wide slots rather than 16 of 16 bits
//!
//! Split a 256-bit hash into `m` disjoint slots. If two hashes differ in at
//! most `r` bits, some slot differs in at most its share of those bits
//! (pigeonhole), so probing every slot value within that many bit flips of
//! the query's finds every true match. With 16 slots of 16 bits and
//! `r = 31` that is 17 probes per slot, but at ten million hashes each
//! 16-bit value owns about 150 entries, so one query fetches about 41,000
//! random candidates to verify. With 11 slots of 20-24 bits the flip budget
//! is 2 (1 for the narrow slot), and each probe matches a hundred times
//! fewer entries: about 2,600 candidates at ten million. The widths and the
//! per-slot budgets come from minimising probes plus candidates for the
//! default radius; see [`MihIndex::budgets`] for other radii.
//!
//! # Layout
//!
//! Per slot, entries are bucketed on the slot's top `dbits` bits, about ten
//! entries per bucket. Buckets are stored in key order in 64-byte lines of
//! one header word and 15 postings; bucket `b` starts on its *home line*,
//! `b * lines / 2^dbits`, or as soon after it as earlier buckets leave room.
//! With lines 80 % full, a probe reads 1.35 lines on average, and no
//! directory is needed: the home line is computed, not looked up.
//! Each posting packs the hash position with the low bucket bits (which
//! tell the buckets sharing a line apart) and the slot bits below the
//! bucket bits (the filter). A query visits every bucket within `k <= q`
//! flips of its own and keeps postings whose filter bits are within `q - k`
//! flips; candidates are verified by full distance.
//!
//! # Query cost
//!
//! At ten million random hashes a single-hash query visits about 2,100
//! buckets (about 2,900 lines) and verifies about 2,600 candidates: some
//! 5,500 random cache lines. Those misses, not arithmetic, are the cost, so
//! the probe runs as a software pipeline with prefetching (see
//! [`MihIndex::probe_impl`]), and the large arrays ask for huge pages (see
//! `mem`) so that the misses do not also miss the TLB.
//!
//! Resident size per hash: 32 (hash) + 4 or 8 (id) + 11 slots of 64 bytes
//! per 12 postings (5.3 bytes) = 95 bytes with 32-bit ids.

use std::sync::OnceLock;

use takedown_pdq::{PdqHash, Transform};

use crate::flat::{scan, transform_of};
use crate::simd::prefetch;
use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words, distance};

/// Number of slots a hash is split into.
pub(crate) const SLOTS: usize = 11;
/// Bits per slot. Six of 24 and four of 23 take two flips each at the
/// default radius; the 20-bit slot takes one, where a narrow slot costs
/// little (see the module documentation).
const WIDTHS: [u32; SLOTS] = [24, 24, 24, 24, 24, 24, 23, 23, 23, 23, 20];
/// Words per line: a header, then postings.
pub(crate) const LINE_WORDS: usize = 16;
/// Postings per line.
const LINE_POSTS: u32 = 15;
/// Postings per home line on average: lines are 80 % full.
const LINE_LOAD: usize = 12;
/// Low bucket bits kept in each posting. A line never holds buckets more
/// than `2^BUCKET_TAG_BITS - 1` apart, so these bits name the bucket.
const BUCKET_TAG_BITS: u32 = 4;
const BUCKET_TAG: u32 = (1 << BUCKET_TAG_BITS) - 1;
/// At most this many slot bits below the bucket bits are kept as filter.
const FILTER_BITS: u32 = 8;
/// Entries per bucket the bucket bits aim at.
const BUCKET_TARGET: f64 = 10.0;
/// Bits of a line header holding the first bucket; the count sits above.
const HEADER_BUCKET_BITS: u32 = 24;
/// Largest segment: positions and posting tags must share 32 bits.
pub(crate) const MAX_SEGMENT: usize = 1 << 28;
/// Probes between a line's prefetch and its scan (see
/// [`MihIndex::probe_impl`]).
const PROBE_LAG: usize = 8;
/// Candidates between a hash prefetch and its verification. Measured:
/// deeper lags queue more prefetches than the core has miss buffers for,
/// and the stalls on issuing them cost more than the latency they hide.
const CAND_LAG: usize = 8;
/// `Probe::allowed` value meaning "every filter value passes".
const ALL: u8 = u8::MAX;
/// Below this many entries a linear scan always wins.
const FLAT_BELOW: usize = 2048;
/// Radii up to this get budgets optimised per segment; larger ones (which
/// scan anyway) use plain pigeonhole budgets.
const OPTIMISED_RADII: usize = 96;

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

/// Per-slot flip budgets for radius `r` by plain pigeonhole: `None` for a
/// slot that need not be probed.
///
/// If an entry is within `r` of the query, some slot `s` differs by at most
/// `budget[s]` bits as long as the budgets satisfy
/// `sum(budget[s] + 1) >= r + 1`: otherwise every slot would differ by at
/// least `budget[s] + 1` and the total by more than `r`. Plain pigeonhole
/// gives every slot `r / 11` and takes the excess from the last slots.
pub(crate) fn pigeonhole_budgets(r: u32) -> [Option<u32>; SLOTS] {
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

/// Bucket bits for a segment of `n` entries in a slot of `width` bits:
/// about [`BUCKET_TARGET`] entries per bucket.
pub(crate) fn bucket_bits(n: usize, width: u32) -> u32 {
    let per = (n.max(1) as f64 / BUCKET_TARGET).max(1.0);
    (per.log2().round() as u32).clamp(1, width - 1)
}

/// Bits of a posting below the position: room for the bucket tag and
/// the filter, as far as a segment of `n` entries leaves it.
fn low_bits(n: usize) -> u32 {
    let pos_bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    32u32
        .saturating_sub(pos_bits)
        .min(BUCKET_TAG_BITS + FILTER_BITS)
}

/// Filter bits per posting: the slot bits below the bucket bits, as many as
/// fit beside the position and the bucket tag, at most eight.
fn filter_bits(dbits: u32, width: u32, n: usize) -> u32 {
    width
        .saturating_sub(dbits)
        .min(low_bits(n).saturating_sub(BUCKET_TAG_BITS))
        .min(FILTER_BITS)
}

/// How far apart the pipeline stages run (see [`MihIndex::probe_impl`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batches {
    /// Probes between a line's prefetch and its scan.
    pub(crate) probe: usize,
    /// Candidates between a hash prefetch and its verification.
    pub(crate) cand: usize,
}

impl Batches {
    pub(crate) const DEFAULT: Batches = Batches {
        probe: PROBE_LAG,
        cand: CAND_LAG,
    };
}

/// One bucket to visit.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The bucket's home line.
    line: u32,
    bucket: u32,
    /// The low posting bits a match carries: the bucket tag, then the
    /// query's filter bits.
    want: u32,
    qi: u16,
    slot: u8,
    /// Filter bits allowed to differ, or [`ALL`].
    allowed: u8,
}

/// What the probe loop needs of one slot, looked up once per query.
#[derive(Clone, Copy)]
struct SlotView<'a> {
    words: &'a [u32],
    fbits: u32,
    tag_mask: u32,
    fmask: u32,
}

impl SlotView<'_> {
    #[inline(always)]
    fn line(&self, l: usize) -> Option<&[u32; LINE_WORDS]> {
        self.words
            .get(l * LINE_WORDS..(l + 1) * LINE_WORDS)?
            .try_into()
            .ok()
    }
}

/// A hash position to verify against query item `qi`.
#[derive(Debug, Clone, Copy)]
struct Cand {
    pos: u32,
    qi: u32,
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

/// Lines of 16 words whose first word sits on a 64-byte boundary, so that
/// each line is exactly one cache line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lines {
    words: Vec<u32>,
    /// Index of the first word of line 0 in `words`.
    base: usize,
    len: usize,
}

impl Lines {
    /// `len` zeroed lines.
    pub(crate) fn zeroed(len: usize) -> Lines {
        let words: Vec<u32> = crate::mem::zeroed(len * LINE_WORDS + LINE_WORDS - 1);
        let misalign = (words.as_ptr() as usize / 4) % LINE_WORDS;
        let base = (LINE_WORDS - misalign) % LINE_WORDS;
        Lines { words, base, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// All words of all lines.
    pub(crate) fn words(&self) -> &[u32] {
        self.words
            .get(self.base..self.base + self.len * LINE_WORDS)
            .unwrap_or_default()
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u32] {
        let (base, len) = (self.base, self.len);
        self.words
            .get_mut(base..base + len * LINE_WORDS)
            .unwrap_or_default()
    }

    fn bytes(&self) -> usize {
        self.words.capacity() * 4
    }
}

/// One slot's bucketed postings.
#[derive(Debug, Clone)]
pub(crate) struct SlotTable {
    /// Bucket bits: buckets are keyed on the slot's top `dbits` bits.
    pub(crate) dbits: u32,
    /// Lines that buckets are spread over: bucket `b`'s home line is
    /// `b * home_lines >> dbits`. The table may hold more lines, for
    /// postings that spill past the last home line.
    pub(crate) home_lines: u32,
    pub(crate) lines: Lines,
}

impl SlotTable {
    #[inline(always)]
    fn home(&self, bucket: u32) -> u32 {
        ((u64::from(bucket) * u64::from(self.home_lines)) >> self.dbits) as u32
    }
}

/// A line header: the first bucket in the line and the posting count.
#[inline(always)]
fn header(first: u32, count: u32) -> u32 {
    first | (count << HEADER_BUCKET_BITS)
}

#[inline(always)]
fn unpack_header(h: u32) -> (u32, u32) {
    (h & ((1 << HEADER_BUCKET_BITS) - 1), h >> HEADER_BUCKET_BITS)
}

/// An immutable multi-index-hashing segment. See the module documentation
/// for the layout and its costs.
#[derive(Debug, Clone)]
pub struct MihIndex {
    pub(crate) hashes: Vec<Words>,
    pub(crate) ids: Ids,
    pub(crate) slots: Vec<SlotTable>,
    /// Budgets per radius, worked out on first use.
    budget_cache: Vec<OnceLock<[Option<u32>; SLOTS]>>,
}

impl MihIndex {
    /// Builds a segment over `entries`. Duplicate hashes and duplicate ids are
    /// kept as given. Fails above 2^28 entries; [`crate::Index`] splits
    /// larger sets into several segments.
    pub fn build(entries: impl IntoIterator<Item = (EntryId, PdqHash)>) -> Result<Self, Error> {
        let (ids, hashes): (Vec<u64>, Vec<Words>) =
            entries.into_iter().map(|(id, h)| (id.0, h.words())).unzip();
        Self::from_words(hashes, ids)
    }

    pub(crate) fn from_words(hashes: Vec<Words>, ids: Vec<u64>) -> Result<Self, Error> {
        let n = hashes.len();
        if n > MAX_SEGMENT {
            return Err(Error::TooLarge(n));
        }
        let mut stored: Vec<Words> = crate::mem::zeroed(n);
        stored.copy_from_slice(&hashes);
        drop(hashes);
        let slots = if n < 1 << 16 {
            (0..SLOTS).map(|slot| build_slot(&stored, slot)).collect()
        } else {
            build_slots_parallel(&stored)
        };
        Ok(Self::from_parts(stored, Ids::from_u64(ids), slots))
    }

    pub(crate) fn from_parts(hashes: Vec<Words>, ids: Ids, slots: Vec<SlotTable>) -> Self {
        MihIndex {
            hashes,
            ids,
            slots,
            budget_cache: (0..=OPTIMISED_RADII).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// Builds the slot tables on as many threads as there are slots; the
/// operating system spreads them over the cores.
fn build_slots_parallel(hashes: &[Words]) -> Vec<SlotTable> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..SLOTS)
            .map(|slot| s.spawn(move || build_slot(hashes, slot)))
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(slot, h)| h.join().unwrap_or_else(|_| build_slot(hashes, slot)))
            .collect::<Vec<_>>()
    })
}

impl MihIndex {
    /// The entries, in storage order.
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
            + self.slots.iter().map(|s| s.lines.bytes()).sum::<usize>()
    }

    /// Expected cost, in cache lines touched, of probing slot `s` with
    /// flip budget `q` (uniformly random hashes).
    fn slot_cost(&self, s: usize, q: u32) -> f64 {
        let (Some(slot), Some(g)) = (self.slots.get(s), GEOMS.get(s)) else {
            return f64::INFINITY;
        };
        let n = self.hashes.len() as f64;
        let probes = binom_sum(slot.dbits, q);
        let per_bucket = n / 2f64.powi(slot.dbits as i32);
        // A bucket's postings take about one line per 12; the first line
        // is a random access, the rest follow it.
        let lines = probes * (1.0 + per_bucket / 12.0 * 0.5);
        let cands = n * binom_sum(g.width, q) / 2f64.powi(g.width as i32);
        lines + cands
    }

    /// The per-slot flip budgets used for radius `r`.
    ///
    /// Any budgets with `sum(budget + 1) >= r + 1` find every match (see
    /// [`pigeonhole_budgets`]); among those, this picks the ones with the
    /// lowest expected cost for this segment's size, so that a radius that
    /// divides evenly does not pay full price for the narrow slot.
    pub(crate) fn budgets(&self, r: u32) -> [Option<u32>; SLOTS] {
        match self.budget_cache.get(r as usize) {
            Some(cell) => *cell.get_or_init(|| self.optimise_budgets(r)),
            None => pigeonhole_budgets(r),
        }
    }

    fn optimise_budgets(&self, r: u32) -> [Option<u32>; SLOTS] {
        let need = r as usize + 1;
        let qmax = r / SLOTS as u32 + 2;
        // best[u] = (cost, budgets) over the slots seen so far, with `u`
        // units (sum of budget + 1, capped at `need`).
        let mut best: Vec<Option<(f64, [Option<u32>; SLOTS])>> = vec![None; need + 1];
        best[0] = Some((0.0, [None; SLOTS]));
        for s in 0..SLOTS {
            let mut next: Vec<Option<(f64, [Option<u32>; SLOTS])>> = vec![None; need + 1];
            for (u, cur) in best.iter().enumerate() {
                let Some((cost, b)) = cur else { continue };
                let mut consider = |units: usize, extra: f64, q: Option<u32>| {
                    let u2 = (u + units).min(need);
                    let c = cost + extra;
                    if next[u2].as_ref().is_none_or(|(old, _)| c < *old) {
                        let mut b2 = *b;
                        b2[s] = q;
                        next[u2] = Some((c, b2));
                    }
                };
                consider(0, 0.0, None);
                for q in 0..=qmax {
                    consider(q as usize + 1, self.slot_cost(s, q), Some(q));
                }
            }
            best = next;
        }
        best[need]
            .map(|(_, b)| b)
            .unwrap_or_else(|| pigeonhole_budgets(r))
    }

    /// True when a linear scan is expected to be cheaper than probing for a
    /// query of `nq` hashes at radius `r`.
    pub(crate) fn prefer_flat(&self, nq: usize, r: u32) -> bool {
        let n = self.hashes.len();
        if n < FLAT_BELOW {
            return true;
        }
        let lines: f64 = self
            .budgets(r)
            .iter()
            .enumerate()
            .filter_map(|(s, q)| Some(self.slot_cost(s, (*q)?)))
            .sum();
        // Rough costs in nanoseconds: a random line is about 15, and a
        // scan streams half a line per hash and query.
        let flat = n as f64 * (2.0 + nq as f64);
        lines * 15.0 * nq as f64 > flat
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

    /// The probe pipeline.
    ///
    /// A probe needs two dependent memory reads, the bucket's home line and
    /// then each candidate's hash, and nearly every one is a cache miss.
    /// Run one after the other, each would wait the full memory latency.
    /// Instead the stages run a fixed distance apart over the list of
    /// probes: in one step the pipeline prefetches the home line of probe
    /// `i`, scans the (by now cached) line of probe `i - lag` and prefetches
    /// each candidate's hash, and verifies the candidate found `cand`
    /// candidates earlier. Dozens of misses are in flight at any moment, so
    /// the cost per miss is the memory system's throughput rather than its
    /// latency. All hashes of the query share one list, which keeps the
    /// pipeline full for dihedral queries.
    #[inline(always)]
    fn probe_impl(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        level: crate::simd::Level,
        out: &mut Vec<RawHit>,
    ) {
        let n = self.hashes.len();
        let budgets = self.budgets(r);
        let lag = batches.probe.max(1);
        let cand_lag = batches.cand.max(1);
        let low = low_bits(n);
        let views: Vec<SlotView<'_>> = self
            .slots
            .iter()
            .zip(GEOMS)
            .map(|(slot, g)| {
                let fbits = filter_bits(slot.dbits, g.width, n);
                SlotView {
                    words: slot.lines.words(),
                    fbits,
                    tag_mask: BUCKET_TAG << fbits,
                    fmask: (1 << fbits) - 1,
                }
            })
            .collect();
        let mut cands: Vec<Cand> = Vec::with_capacity(256);
        let mut done = 0usize;
        let mut probes: Vec<Probe> = Vec::new();
        // One query hash at a time, so that the probe list stays small
        // enough to sit in the cache next to the lines being fetched.
        for (qi, (_, q)) in items.iter().enumerate() {
            let Ok(qi) = u16::try_from(qi) else { break };
            probes.clear();
            self.push_probes(qi, q, &budgets, &mut probes);
            self.run_probes(
                &probes, &views, low, lag, cand_lag, level, items, r, &mut cands, &mut done, out,
            );
        }
        for &c in cands.get(done..).unwrap_or_default() {
            self.verify(c, items, r, out);
        }
    }

    /// Appends the probes of query hash `qi` (every bucket within each
    /// slot's budget of the hash's own).
    #[inline(always)]
    fn push_probes(
        &self,
        qi: u16,
        q: &Words,
        budgets: &[Option<u32>; SLOTS],
        probes: &mut Vec<Probe>,
    ) {
        let n = self.hashes.len();
        for (si, ((slot, g), budget)) in self.slots.iter().zip(GEOMS).zip(*budgets).enumerate() {
            let Some(budget) = budget else { continue };
            let key = field(q, g);
            let fbits = filter_bits(slot.dbits, g.width, n);
            let qd = key >> (g.width - slot.dbits);
            let qf = key & ((1 << fbits) - 1);
            let allowed = |k: u32| {
                let a = budget.saturating_sub(k).min(fbits);
                if a >= fbits { ALL } else { a as u8 }
            };
            let probe = |bucket: u32, allowed: u8| Probe {
                line: slot.home(bucket),
                bucket,
                want: ((bucket & BUCKET_TAG) << fbits) | qf,
                qi,
                slot: si as u8,
                allowed,
            };
            // Zero, one and two flips are written out: they are nearly
            // every probe, and the general enumeration divides.
            let d = slot.dbits;
            probes.push(probe(qd, allowed(0)));
            if budget >= 1 {
                let a = allowed(1);
                probes.extend((0..d).map(|i| probe(qd ^ (1 << i), a)));
            }
            if budget >= 2 {
                let a = allowed(2);
                for i in 1..d {
                    probes.extend((0..i).map(|j| probe(qd ^ (1 << i) ^ (1 << j), a)));
                }
            }
            for k in 3..=budget.min(d) {
                let a = allowed(k);
                probes.extend(Subsets::new(d, k).map(|mask| probe(qd ^ mask, a)));
            }
        }
    }

    /// Runs the pipeline over one query hash's probes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run_probes(
        &self,
        probes: &[Probe],
        views: &[SlotView<'_>],
        low: u32,
        lag: usize,
        cand_lag: usize,
        level: crate::simd::Level,
        items: &[(Transform, Words)],
        r: u32,
        cands: &mut Vec<Cand>,
        done: &mut usize,
        out: &mut Vec<RawHit>,
    ) {
        for i in 0..probes.len() + lag {
            if let Some(p) = probes.get(i) {
                if let Some(line) = views
                    .get(usize::from(p.slot))
                    .and_then(|v| v.line(p.line as usize))
                {
                    prefetch(line, 0);
                }
            }
            if let Some(p) = i.checked_sub(lag).and_then(|j| probes.get(j)) {
                if let Some(v) = views.get(usize::from(p.slot)) {
                    self.scan_bucket(p, v, low, level, cands);
                }
            }
            while cands.len() - *done > cand_lag {
                if let Some(&c) = cands.get(*done) {
                    self.verify(c, items, r, out);
                }
                *done += 1;
            }
            if *done >= 4096 {
                cands.drain(..*done);
                *done = 0;
            }
        }
    }

    /// Appends the postings of one probed bucket that pass its filter as
    /// candidates, prefetching their hashes. Starts at the home line and
    /// follows the bucket into later lines when it spills.
    #[inline(always)]
    fn scan_bucket(
        &self,
        p: &Probe,
        v: &SlotView<'_>,
        low: u32,
        level: crate::simd::Level,
        cands: &mut Vec<Cand>,
    ) {
        let b = p.bucket;
        let qi = u32::from(p.qi);
        let mut l = p.line as usize;
        while let Some(line) = v.line(l) {
            let (first, count) = unpack_header(line[0]);
            if count == 0 || first > b {
                break;
            }
            let rel = b - first;
            let count = count.min(LINE_POSTS);
            if rel <= BUCKET_TAG {
                let filter = crate::simd::LineFilter {
                    want: p.want,
                    tag_mask: v.tag_mask,
                    fmask: v.fmask,
                    allowed: p.allowed,
                };
                crate::simd::line_matches(level, line, count, filter, |x| {
                    let pos = x >> low;
                    prefetch(&self.hashes, pos as usize);
                    cands.push(Cand { pos, qi });
                });
            }
            // The bucket may go on in the next line only if this line is
            // full up to a posting of a bucket not after it, or if this
            // line ended before reaching it.
            let last = line[count as usize];
            let last_tag = (last >> v.fbits) & BUCKET_TAG;
            let last_bucket = first + (last_tag.wrapping_sub(first) & BUCKET_TAG);
            if last_bucket > b || (count < LINE_POSTS && rel <= BUCKET_TAG) {
                break;
            }
            l += 1;
        }
    }

    /// Checks one candidate by full distance.
    #[inline(always)]
    fn verify(&self, c: Cand, items: &[(Transform, Words)], r: u32, out: &mut Vec<RawHit>) {
        let (Some(h), Some((t, q))) = (self.hashes.get(c.pos as usize), items.get(c.qi as usize))
        else {
            return;
        };
        let d = distance(h, q);
        if d <= r {
            out.push(RawHit {
                pos: c.pos,
                dist: d as u16,
                t: t.index() as u8,
            });
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
        if n > MAX_SEGMENT {
            return Err(format!("{n} entries, more than a segment holds"));
        }
        if self.slots.len() != SLOTS {
            return Err(format!("{} slots, expected {SLOTS}", self.slots.len()));
        }
        let low = low_bits(n);
        for (s, (slot, g)) in self.slots.iter().zip(GEOMS).enumerate() {
            if slot.dbits == 0 || slot.dbits >= g.width {
                return Err(format!("slot {s} has {} bucket bits", slot.dbits));
            }
            if slot.home_lines == 0 || slot.home_lines as usize > slot.lines.len() {
                return Err(format!("slot {s} has {} home lines", slot.home_lines));
            }
            let mut total = 0usize;
            for line in slot.lines.words().chunks_exact(LINE_WORDS) {
                let (first, count) = unpack_header(line[0]);
                if count > LINE_POSTS || first >> slot.dbits != 0 {
                    return Err(format!("slot {s} has a malformed line header"));
                }
                total += count as usize;
                if line[1..=count as usize]
                    .iter()
                    .any(|&p| (p >> low) as usize >= n)
                {
                    return Err(format!("slot {s} has a position out of range"));
                }
            }
            if total != n {
                return Err(format!("slot {s} holds {total} postings for {n} hashes"));
            }
        }
        Ok(())
    }
}

/// Builds one slot's lines: buckets in key order, each starting at its
/// home line or right after the postings before it.
fn build_slot(hashes: &[Words], slot: usize) -> SlotTable {
    let g = GEOMS[slot];
    let n = hashes.len();
    let dbits = bucket_bits(n, g.width);
    let shift = g.width - dbits;
    let fbits = filter_bits(dbits, g.width, n);
    let low = low_bits(n);
    let fmask = (1u32 << fbits) - 1;
    // Counting sort of (key, position) by bucket. The key travels with the
    // position so that laying out the lines reads no hash again: random
    // reads of ten million hashes would cost more than the rest of the
    // build.
    let keys: Vec<u32> = hashes.iter().map(|h| field(h, g)).collect();
    let mut start = vec![0u32; (1usize << dbits) + 1];
    for &k in &keys {
        start[(k >> shift) as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut order: Vec<u64> = crate::mem::zeroed(n);
    let mut cursor = start.clone();
    for (i, &k) in keys.iter().enumerate() {
        let c = &mut cursor[(k >> shift) as usize];
        order[*c as usize] = (u64::from(k) << 32) | i as u64;
        *c += 1;
    }
    drop(cursor);
    drop(keys);

    let home_lines = n.div_ceil(LINE_LOAD).max(1) as u32;
    let mut table = SlotTable {
        dbits,
        home_lines,
        lines: Lines::default(),
    };
    // Lines past the home lines hold only what spills off the end.
    let mut lines: Vec<[u32; LINE_WORDS]> = Vec::with_capacity(home_lines as usize + 64);
    let mut cur = 0usize;
    let mut fill = 0u32;
    let mut first = 0u32;
    for b in 0..(1u32 << dbits) {
        let (lo, hi) = (start[b as usize] as usize, start[b as usize + 1] as usize);
        if lo == hi {
            continue;
        }
        let home = table.home(b) as usize;
        if home > cur {
            cur = home;
            fill = 0;
        }
        for &entry in &order[lo..hi] {
            let (key, pos) = ((entry >> 32) as u32, entry as u32);
            if fill == LINE_POSTS || (fill > 0 && b - first > BUCKET_TAG) {
                cur += 1;
                fill = 0;
            }
            if fill == 0 {
                first = b;
            }
            if lines.len() <= cur {
                lines.resize(cur + 1, [0; LINE_WORDS]);
            }
            let line = &mut lines[cur];
            line[1 + fill as usize] = (pos << low) | ((b & BUCKET_TAG) << fbits) | (key & fmask);
            fill += 1;
            line[0] = header(first, fill);
        }
    }
    let total = lines.len().max(home_lines as usize);
    let mut out = Lines::zeroed(total);
    for (dst, src) in out.words_mut().chunks_exact_mut(LINE_WORDS).zip(&lines) {
        dst.copy_from_slice(src);
    }
    table.lines = out;
    table
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
        let mut next = move || crate::splitmix64(&mut x);
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
        let (hashes, _) = planted(50_000, 3);
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes, ids).unwrap();
        for r in 0..=256 {
            for b in [pigeonhole_budgets(r), mih.budgets(r)] {
                let sum: u32 = b.iter().map(|q| q.map_or(0, |q| q + 1)).sum();
                assert!(sum > r, "r = {r}: {b:?}");
            }
        }
        // At the default radius the narrow last slot takes one flip.
        let b = mih.budgets(31);
        assert_eq!(b[SLOTS - 1], Some(1), "{b:?}");
        assert_eq!(pigeonhole_budgets(0).iter().flatten().count(), 1);
    }

    #[test]
    fn bucket_bits_follow_size() {
        assert_eq!(bucket_bits(0, 23), 1);
        assert_eq!(bucket_bits(10_000_000, 24), 20);
        assert_eq!(bucket_bits(1_000_000, 24), 17);
        assert_eq!(bucket_bits(10_000_000, 20), 19);
        assert_eq!(bucket_bits(usize::MAX, 23), 22);
        assert_eq!(filter_bits(20, 24, 10_000_000), 4);
        assert_eq!(filter_bits(17, 24, 1_000_000), 7);
        assert_eq!(filter_bits(10, 24, 10_000), 8);
    }

    /// Lines hold every posting once, buckets in order, each bucket
    /// starting no earlier than its home line and never spanning more
    /// buckets than the tag tells apart.
    #[test]
    fn lines_keep_the_layout_invariants() {
        for n in [3000, 40_000, 200_000] {
            let (hashes, _) = planted(n, 11);
            let ids = (0..hashes.len() as u64).collect();
            let mih = MihIndex::from_words(hashes, ids).unwrap();
            mih.check().unwrap();
            for slot in &mih.slots {
                let mut last_bucket = 0;
                for (l, line) in slot.lines.words().chunks_exact(LINE_WORDS).enumerate() {
                    let (first, count) = unpack_header(line[0]);
                    if count == 0 {
                        continue;
                    }
                    assert!(first >= last_bucket);
                    assert!(slot.home(first) as usize <= l);
                    last_bucket = first;
                }
            }
        }
    }

    fn probe_equals_scan(mih: &MihIndex, queries: &[Words], radii: &[u32]) -> usize {
        let mut total = 0;
        for q in queries {
            let query = Query::new(PdqHash::from_words(*q));
            for &r in radii {
                let mut want = Vec::new();
                scan(&mih.hashes, &query, r, &mut want);
                want.sort_unstable();
                total += want.len();
                let got = probe_with(mih, &[(Transform::Orig, *q)], r, Batches::DEFAULT);
                assert_eq!(got, want, "n = {}, r = {r}", mih.hashes.len());
            }
        }
        total
    }

    /// Segments of one or a few entries still probe correctly (positions
    /// and tags share a word differently at every size).
    #[test]
    fn tiny_segments_probe_like_a_scan() {
        for n in [1, 2, 3, 17, 100, 2047, 2049] {
            let (hashes, queries) = planted(n, n as u64);
            let ids = (0..hashes.len() as u64).collect();
            let mih = MihIndex::from_words(hashes.clone(), ids).unwrap();
            mih.check().unwrap();
            let mut qs = queries;
            qs.extend(hashes.iter().take(5));
            probe_equals_scan(&mih, &qs, &[0, 5, 31, 40]);
        }
    }

    /// Skewed sets: thousands of copies of one hash (a bucket spanning
    /// hundreds of lines) and keys spread so thinly that lines break on
    /// the bucket-tag span.
    #[test]
    fn skewed_sets_probe_like_a_scan() {
        let (mut hashes, queries) = planted(6000, 21);
        let dup = hashes[0];
        hashes.extend(std::iter::repeat_n(dup, 5000));
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes, ids).unwrap();
        mih.check().unwrap();
        assert!(probe_equals_scan(&mih, &queries, &[0, 12, 31]) > 5000);

        // Every hash differs from the last in the top bits of every slot
        // only, by a large stride: buckets are far apart.
        let sparse: Vec<Words> = (0..4000u64)
            .map(|i| {
                let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                [x, x.rotate_left(17), x.rotate_left(31), x.rotate_left(47)]
            })
            .collect();
        let ids = (0..sparse.len() as u64).collect();
        let mih = MihIndex::from_words(sparse.clone(), ids).unwrap();
        mih.check().unwrap();
        let mut qs: Vec<Words> = sparse.iter().step_by(97).copied().collect();
        for q in qs.iter_mut() {
            q[1] ^= 0b1011;
        }
        assert!(probe_equals_scan(&mih, &qs, &[3, 31]) > 0);
    }
}
