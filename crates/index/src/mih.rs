//! Multi-index hashing over 16 slots of 16 bits, filtered around a ring.
//!
//! # Why this finds every match
//!
//! Split a 256-bit hash into 16 slots of 16 bits and give each slot `s` a
//! flip budget `q[s]` (`-1` for a slot that is not probed) with
//! `sum(q[s] + 1) >= r + 1`. If an entry is within `r` of the query, let
//! `x[s]` be the distance within slot `s`; then `sum(x[s]) <= r <
//! sum(q[s] + 1)`. By the gas-station lemma applied to `q[s] + 1 - x[s]`
//! around the ring of slots, there is a slot `s` at which every run of
//! consecutive slots `s, s + 1, ...` (wrapping) keeps its distances below
//! its budgets plus one. The first two runs give
//!
//! * `x[s] <= q[s]`: the entry sits in a bucket of slot `s` within `q[s]`
//!   flips of the query's key, so probing those buckets reaches it (plain
//!   multi-index hashing stops here), and
//! * `x[s] + x[s + 1] <= q[s] + q[s + 1] + 1`: found at `k` flips, it
//!   differs from the query in at most `q[s] + q[s + 1] + 1 - k` bits of
//!   the *next* slot.
//!
//! Each posting of slot `s` therefore carries the top bits of the entry's
//! slot `s + 1` next to its position, and a probe keeps only the postings
//! that pass the second test. At the default radius (every budget 1) that
//! filter passes 1.9 % of one-flip postings and 7 % of exact ones with 12
//! filter bits, so a ten-million-entry query verifies about 940 candidates
//! instead of the 41,000 that plain 16-bit multi-index hashing (HMA's)
//! fetches, while probing only 272 buckets.
//!
//! # Layout
//!
//! Per slot, one array of 32-bit words holds every bucket in key order;
//! a small table of starts (16 bits per bucket over a 32-bit base per 64
//! buckets) gives each bucket's first word. A posting is the entry's position
//! (its low 20 bits at most) above the filter bits (12 to 16, whatever the
//! position leaves). Segments larger than 2^20 split positions into up to
//! 16 groups by their high bits: a bucket keeps its postings in position
//! order behind a small header of cumulative group counts, which is read
//! only for the few postings that pass the filter.
//!
//! # Query cost
//!
//! At ten million entries a one-hash query at radius 31 reads 272 buckets
//! of about 150 postings (40,000 postings, 160 KiB, in 272 sequential runs
//! that are prefetched whole) and verifies about 940 candidates. The
//! postings are filtered 16 (AVX-512) or 8 (AVX2) at a time, and the probe
//! runs as a software pipeline (see [`MihIndex::probe_impl`]) so that
//! memory latency overlaps the arithmetic.
//!
//! Resident size per hash at ten million: 32 (hash) + 16 slots x 4 bytes
//! (postings) + 1.9 (group headers and bucket starts) + about 1 (ids, packed
//! when they are dense) = 99 bytes.

use takedown_pdq::{PdqHash, Transform};

use crate::flat::{scan, transform_of};
use crate::simd::{Level, PostFilter, matching_posts, prefetch, prefetch_l2};
use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words, distance};

/// Number of slots a hash is split into.
pub(crate) const SLOTS: usize = 16;
/// Bits per slot.
const KEY_BITS: u32 = 16;
/// Largest segment: positions need at most 20 low bits plus 4 group bits.
pub(crate) const MAX_SEGMENT: usize = 1 << 24;
/// Position bits kept in a posting at most; higher bits become groups.
const MAX_LOW_POS: u32 = 20;
/// Filter bits per posting at most: the whole next slot.
const MAX_FILTER: u32 = KEY_BITS;
/// Probes between prefetching a bucket's start and prefetching its words.
const DIR_LAG: usize = 4;
/// Probes between prefetching a bucket's words and scanning them.
const LINE_LAG: usize = 4;
/// Candidates between a hash prefetch and its verification.
const CAND_LAG: usize = 8;
/// `Probe::max` value meaning "every posting passes".
const ALL: u8 = u8::MAX;
/// Below this many entries a linear scan always wins.
const FLAT_BELOW: usize = 2048;
/// Ids per packed block (see [`Ids`]).
const ID_BLOCK: usize = 64;

/// Slot `s` of a hash: bits `16 s .. 16 s + 16` counted from the most
/// significant bit of word 0.
#[inline(always)]
fn key(w: &Words, s: usize) -> u32 {
    let word = w.get(s / 4).copied().unwrap_or(0);
    ((word >> (48 - 16 * (s % 4))) & 0xffff) as u32
}

/// The slot after `s` around the ring.
#[inline(always)]
fn next_slot(s: usize) -> usize {
    (s + 1) % SLOTS
}

/// How postings split their 32 bits for a segment of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Bucket bits: buckets are keyed on the slot's top `dbits` bits, all
    /// 16 from 2^20 entries up, fewer below so that small segments do not
    /// pay for 65,536 empty buckets.
    dbits: u32,
    /// Low position bits kept in each posting.
    low: u32,
    /// High position bits given by the bucket's group header.
    groups: u32,
    /// Top bits of the next slot kept below the position.
    filter: u32,
}

impl Shape {
    pub(crate) fn of(n: usize) -> Shape {
        let need = usize::BITS - n.saturating_sub(1).leading_zeros();
        let low = need.min(MAX_LOW_POS);
        // About 16 entries per bucket in small segments, 8 to 16 from 2^17.
        let spare = if need <= 16 { 5 } else { 4 };
        Shape {
            dbits: need.saturating_sub(spare).clamp(1, KEY_BITS),
            low,
            groups: need - low,
            filter: (32 - low).min(MAX_FILTER),
        }
    }

    /// Buckets per slot.
    pub(crate) fn buckets(self) -> usize {
        1 << self.dbits
    }

    /// The bucket of slot key `key`.
    #[inline(always)]
    fn bucket(self, key: u32) -> u32 {
        key >> (KEY_BITS - self.dbits)
    }

    fn fmask(self) -> u32 {
        (1 << self.filter) - 1
    }

    /// The posting for position `pos` whose next-slot key is `next`.
    fn post(self, pos: u32, next: u32) -> u32 {
        ((pos & ((1 << self.low) - 1)) << self.filter) | (next >> (KEY_BITS - self.filter))
    }

    /// The position of posting `post` in group `g`.
    #[inline(always)]
    fn pos(self, g: u32, post: u32) -> u32 {
        (g << self.low) | (post >> self.filter)
    }
}

/// Per-slot flip budgets for radius `r`: `None` for a slot that is not
/// probed. They satisfy `sum(budget + 1) >= r + 1` (see the module
/// documentation), spread as evenly as the ring allows, which minimises
/// probes because each extra flip costs more than the one before.
pub(crate) fn budgets(r: u32) -> [Option<u32>; SLOTS] {
    let units = (r as usize + 1).min(SLOTS * (KEY_BITS as usize + 1));
    let (base, extra) = (units / SLOTS, units % SLOTS);
    let mut out = [None; SLOTS];
    for (s, b) in out.iter_mut().enumerate() {
        let u = base + (s + 1) * extra / SLOTS - s * extra / SLOTS;
        *b = (u as u32).checked_sub(1);
    }
    out
}

/// The most next-slot bits a posting found at `k` flips in a slot with
/// budget `q` may differ in, when the next slot has budget `qn`.
fn chain_limit(q: u32, qn: Option<u32>, k: u32) -> u32 {
    // q + qn + 1 - k with qn = -1 for an unprobed slot; never negative
    // because k <= q.
    (q + qn.map_or(0, |x| x + 1)).saturating_sub(k)
}

/// How far apart the pipeline stages run (see [`MihIndex::probe_impl`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batches {
    /// Probes between prefetching a bucket's start and its words.
    pub(crate) dir: usize,
    /// Probes between prefetching a bucket's words and scanning them.
    pub(crate) lines: usize,
    /// Candidates between a hash prefetch and its verification.
    pub(crate) cand: usize,
}

impl Batches {
    pub(crate) const DEFAULT: Batches = Batches {
        dir: DIR_LAG,
        lines: LINE_LAG,
        cand: CAND_LAG,
    };
}

/// One bucket to visit.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The query's next-slot filter bits.
    want: u32,
    bucket: u16,
    slot: u8,
    /// Filter bits allowed to differ, or [`ALL`].
    max: u8,
    qi: u16,
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

/// Entry ids in position order, packed in blocks of 64: each block keeps
/// its smallest id and every id's offset from it in just enough bits.
/// Segments keep their entries sorted by id, so the ids of a bank (dense
/// store row ids) take about one byte each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ids {
    pub(crate) len: usize,
    /// Smallest id of each block.
    pub(crate) bases: Vec<u64>,
    /// First word of each block in `bits`, then the end; a block of width
    /// `w` bits takes exactly `w` words.
    pub(crate) starts: Vec<u32>,
    pub(crate) bits: Vec<u64>,
}

impl Ids {
    pub(crate) fn pack(ids: &[u64]) -> Ids {
        let blocks = ids.len().div_ceil(ID_BLOCK);
        let mut out = Ids {
            len: ids.len(),
            bases: Vec::with_capacity(blocks),
            starts: Vec::with_capacity(blocks + 1),
            bits: Vec::new(),
        };
        out.starts.push(0);
        for block in ids.chunks(ID_BLOCK) {
            let base = block.iter().copied().min().unwrap_or(0);
            let span = block.iter().map(|&i| i - base).max().unwrap_or(0);
            let w = (u64::BITS - span.leading_zeros()) as usize;
            let start = out.bits.len();
            out.bits.resize(start + w, 0);
            if let Some(words) = out.bits.get_mut(start..) {
                for (j, &id) in block.iter().enumerate() {
                    put_bits(words, j * w, w, id - base);
                }
            }
            out.bases.push(base);
            out.starts.push(out.bits.len() as u32);
        }
        out
    }

    #[inline]
    pub(crate) fn at(&self, pos: usize) -> Option<EntryId> {
        if pos >= self.len {
            return None;
        }
        let k = pos / ID_BLOCK;
        let base = *self.bases.get(k)?;
        let (a, e) = (
            *self.starts.get(k)? as usize,
            *self.starts.get(k + 1)? as usize,
        );
        let w = e.checked_sub(a)?;
        let words = self.bits.get(a..e)?;
        base.checked_add(get_bits(words, (pos % ID_BLOCK) * w, w))
            .map(EntryId)
    }

    fn bytes(&self) -> usize {
        self.bases.capacity() * 8 + self.starts.capacity() * 4 + self.bits.capacity() * 8
    }

    /// Checks that the blocks describe exactly `n` ids.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        let blocks = n.div_ceil(ID_BLOCK);
        if self.len != n || self.bases.len() != blocks || self.starts.len() != blocks + 1 {
            return Err(format!("id blocks do not describe {n} ids"));
        }
        let mut prev = 0u32;
        for (i, &s) in self.starts.iter().enumerate() {
            let ok = if i == 0 {
                s == 0
            } else {
                s >= prev && s - prev <= 64
            };
            if !ok {
                return Err("malformed id block offsets".into());
            }
            prev = s;
        }
        if prev as usize != self.bits.len() {
            return Err("id blocks and id words disagree".into());
        }
        Ok(())
    }
}

/// Writes the low `w` bits of `v` at bit `bit` of `words`.
fn put_bits(words: &mut [u64], bit: usize, w: usize, v: u64) {
    if w == 0 {
        return;
    }
    let (i, off) = (bit / 64, bit % 64);
    if let Some(x) = words.get_mut(i) {
        *x |= v << off;
    }
    if off + w > 64
        && let Some(x) = words.get_mut(i + 1)
    {
        *x |= v >> (64 - off);
    }
}

/// Reads `w` bits at bit `bit` of `words`.
fn get_bits(words: &[u64], bit: usize, w: usize) -> u64 {
    if w == 0 {
        return 0;
    }
    let (i, off) = (bit / 64, bit % 64);
    let mut v = words.get(i).copied().unwrap_or(0) >> off;
    if off + w > 64 {
        v |= words.get(i + 1).copied().unwrap_or(0) << (64 - off);
    }
    if w < 64 { v & ((1u64 << w) - 1) } else { v }
}

/// Buckets per block of [`Starts::Packed`].
pub(crate) const START_BLOCK: usize = 64;

/// Where each bucket starts in a slot's words, then where the last ends.
#[derive(Debug, Clone)]
pub(crate) enum Starts {
    /// A 32-bit base per block of 64 buckets and a 16-bit offset per bucket
    /// from its block's base: half the size of plain starts, so more of
    /// them stay cached (a probe looks one up before anything else).
    Packed { blocks: Vec<u32>, rel: Vec<u16> },
    /// Plain 32-bit starts, for slots where a block of buckets holds more
    /// than 65,535 words (heavily skewed sets).
    Wide(Vec<u32>),
}

impl Default for Starts {
    fn default() -> Self {
        Starts::Wide(Vec::new())
    }
}

impl Starts {
    fn pack(starts: Vec<u32>) -> Starts {
        let blocks: Vec<u32> = starts.iter().step_by(START_BLOCK).copied().collect();
        // Collecting into an `Option<Vec<_>>` would not know the length
        // up front and could leave the vector with twice the capacity.
        let rel = (|| {
            let mut rel = Vec::with_capacity(starts.len());
            for (b, &x) in starts.iter().enumerate() {
                let base = blocks.get(b / START_BLOCK).copied().unwrap_or(0);
                rel.push(u16::try_from(x.checked_sub(base)?).ok()?);
            }
            Some(rel)
        })();
        match rel {
            Some(rel) => Starts::Packed { blocks, rel },
            None => Starts::Wide(starts),
        }
    }

    /// Start of bucket `b` (or the end, for `b` = the bucket count).
    #[inline(always)]
    pub(crate) fn at(&self, b: usize) -> Option<u32> {
        match self {
            Starts::Packed { blocks, rel } => blocks
                .get(b / START_BLOCK)?
                .checked_add(u32::from(*rel.get(b)?)),
            Starts::Wide(v) => v.get(b).copied(),
        }
    }

    /// Number of entries (buckets plus one).
    pub(crate) fn len(&self) -> usize {
        match self {
            Starts::Packed { rel, .. } => rel.len(),
            Starts::Wide(v) => v.len(),
        }
    }

    #[inline(always)]
    fn prefetch(&self, b: usize) {
        match self {
            Starts::Packed { rel, .. } => prefetch(rel, b),
            Starts::Wide(v) => prefetch(v, b),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Starts::Packed { blocks, rel } => blocks.capacity() * 4 + rel.capacity() * 2,
            Starts::Wide(v) => v.capacity() * 4,
        }
    }
}

/// One slot's buckets.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotTable {
    /// Bytes per count in each bucket's group header: 0 (no groups), 1, 2
    /// or 4, the least that holds the slot's largest bucket.
    pub(crate) count_bytes: u32,
    /// First word of every bucket in `words`, then the end.
    pub(crate) starts: Starts,
    /// Per bucket: the group header, then the postings.
    pub(crate) words: Vec<u32>,
}

impl SlotTable {
    /// Words of group header in front of each bucket's postings.
    pub(crate) fn header_words(&self, groups: u32) -> usize {
        ((1usize << groups) * self.count_bytes as usize).div_ceil(4)
    }

    #[inline(always)]
    fn bucket(&self, b: usize) -> Option<&[u32]> {
        let a = self.starts.at(b)? as usize;
        let e = self.starts.at(b + 1)? as usize;
        self.words.get(a..e)
    }
}

/// The group of posting `j` of a bucket: counts are cumulative and never
/// fall, so it is the number of groups (bar the last) that end at or
/// before `j`.
#[inline(always)]
fn group_of(header: &[u32], count_bytes: u32, groups: u32, j: usize) -> u32 {
    if groups == 0 {
        return 0;
    }
    let last = (1u32 << groups) - 1;
    if count_bytes == 1 {
        // The common case: 16 one-byte counts in four words, compared
        // without a branch per group.
        let j = j as u32;
        let mut g = 0;
        for (i, &w) in header.iter().take(4).enumerate() {
            for b in 0..4 {
                let k = i as u32 * 4 + b;
                g += u32::from(k < last && (w >> (8 * b)) & 0xff <= j);
            }
        }
        return g;
    }
    (0..last)
        .find(|&g| j < group_end(header, count_bytes, g))
        .unwrap_or(last)
}

/// An immutable multi-index-hashing segment. See the module documentation
/// for the layout and its costs.
#[derive(Debug, Clone)]
pub struct MihIndex {
    /// Hashes sorted by entry id.
    pub(crate) hashes: Vec<Words>,
    pub(crate) ids: Ids,
    pub(crate) slots: Vec<SlotTable>,
}

impl MihIndex {
    /// Builds a segment over `entries`. Duplicate hashes and duplicate ids are
    /// kept as given. Fails above 2^24 entries; [`crate::Index`] splits
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
        // Entries are kept in id order: the ids then pack densely, and
        // "is this id here" is a binary search.
        let ids = if ids.is_sorted() {
            stored.copy_from_slice(&hashes);
            ids
        } else {
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by_key(|&i| ids.get(i as usize).copied());
            for (dst, &i) in stored.iter_mut().zip(&order) {
                *dst = hashes.get(i as usize).copied().unwrap_or_default();
            }
            order
                .iter()
                .map(|&i| ids.get(i as usize).copied().unwrap_or(0))
                .collect()
        };
        drop(hashes);
        let shape = Shape::of(n);
        let slots = if n < 1 << 16 {
            (0..SLOTS).map(|s| build_slot(&stored, s, shape)).collect()
        } else {
            build_slots_parallel(&stored, shape)
        };
        Ok(Self::from_parts(stored, Ids::pack(&ids), slots))
    }

    pub(crate) fn from_parts(hashes: Vec<Words>, ids: Ids, slots: Vec<SlotTable>) -> Self {
        MihIndex { hashes, ids, slots }
    }
}

/// Builds the slot tables on as many threads as there are cores.
fn build_slots_parallel(hashes: &[Words], shape: Shape) -> Vec<SlotTable> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, SLOTS);
    let mut out: Vec<SlotTable> = vec![SlotTable::default(); SLOTS];
    std::thread::scope(|sc| {
        let chunks = out.chunks_mut(SLOTS.div_ceil(threads));
        let mut first = 0;
        for chunk in chunks {
            let from = first;
            first += chunk.len();
            sc.spawn(move || {
                for (i, t) in chunk.iter_mut().enumerate() {
                    *t = build_slot(hashes, from + i, shape);
                }
            });
        }
    });
    out
}

/// Builds one slot: buckets in key order, postings in position order
/// within each bucket, each bucket behind its group header.
fn build_slot(hashes: &[Words], s: usize, shape: Shape) -> SlotTable {
    let next = next_slot(s);
    let groups = 1usize << shape.groups;
    // Postings per (bucket, group).
    let buckets = shape.buckets();
    let mut counts = vec![0u32; buckets * groups];
    for (pos, h) in hashes.iter().enumerate() {
        let g = pos >> shape.low;
        if let Some(c) = counts.get_mut(shape.bucket(key(h, s)) as usize * groups + g) {
            *c += 1;
        }
    }
    let largest = counts
        .chunks_exact(groups)
        .map(|c| c.iter().sum::<u32>())
        .max()
        .unwrap_or(0);
    let mut table = SlotTable {
        count_bytes: match (shape.groups, largest) {
            (0, _) => 0,
            (_, 0..=0xff) => 1,
            (_, 0x100..=0xffff) => 2,
            _ => 4,
        },
        ..SlotTable::default()
    };
    let hw = table.header_words(shape.groups);
    let total = hashes.len() + buckets * hw;
    let mut words: Vec<u32> = crate::mem::zeroed(total);
    let mut starts = vec![0u32; buckets + 1];
    let mut fill = vec![0u32; buckets];
    let mut at = 0u32;
    for (b, c) in counts.chunks_exact(groups).enumerate() {
        starts[b] = at;
        // Cumulative group counts, packed little-endian into the header.
        let mut sum = 0u32;
        for (g, &n) in c.iter().enumerate() {
            sum += n;
            let bit = g * table.count_bytes as usize * 8;
            if let Some(w) = words.get_mut(at as usize + bit / 32) {
                *w |= sum << (bit % 32);
            }
        }
        fill[b] = at + hw as u32;
        at += hw as u32 + sum;
    }
    starts[buckets] = at;
    // Positions ascend, so each bucket's postings come out in position
    // order, group after group, as the header says.
    for (pos, h) in hashes.iter().enumerate() {
        let f = &mut fill[shape.bucket(key(h, s)) as usize];
        if let Some(w) = words.get_mut(*f as usize) {
            *w = shape.post(pos as u32, key(h, next));
        }
        *f += 1;
    }
    table.starts = Starts::pack(starts);
    table.words = words;
    table
}

/// What the probe loop needs of one slot.
#[derive(Clone, Copy)]
struct SlotView<'a> {
    table: &'a SlotTable,
    header_words: usize,
}

impl MihIndex {
    /// The entries, in storage (id) order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryId, PdqHash)> + '_ {
        self.hashes
            .iter()
            .enumerate()
            .filter_map(|(p, w)| Some((self.ids.at(p)?, PdqHash::from_words(*w))))
    }

    pub(crate) fn id_at(&self, pos: usize) -> Option<EntryId> {
        self.ids.at(pos)
    }

    /// True when `id` is stored here (entries are in id order).
    pub(crate) fn holds(&self, id: EntryId) -> bool {
        let n = self.hashes.len();
        let first = partition_point(n, |p| self.ids.at(p).is_some_and(|x| x < id));
        self.ids.at(first) == Some(id)
    }

    /// Resident bytes used by the arrays.
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 32
            + self.ids.bytes()
            + self
                .slots
                .iter()
                .map(|s| s.starts.bytes() + s.words.capacity() * 4)
                .sum::<usize>()
    }

    /// Expected nanoseconds to probe for one query hash at radius `r`
    /// (uniformly random hashes): buckets, postings filtered, candidates
    /// verified.
    fn probe_cost(&self, r: u32) -> f64 {
        let n = self.hashes.len() as f64;
        let shape = Shape::of(self.hashes.len());
        let per_bucket = n / shape.buckets() as f64;
        let b = budgets(r);
        let mut cost = 0.0;
        for (s, q) in b.iter().enumerate() {
            let Some(q) = *q else { continue };
            let qn = b.get(next_slot(s)).copied().flatten();
            for k in 0..=q.min(shape.dbits) {
                let buckets = binom(shape.dbits, k);
                let pass =
                    binom_sum(shape.filter, chain_limit(q, qn, k)) / 2f64.powi(shape.filter as i32);
                cost += buckets * (30.0 + per_bucket * (0.5 + 15.0 * pass.min(1.0)));
            }
        }
        cost
    }

    /// True when a linear scan is expected to be cheaper than probing for a
    /// query of `nq` hashes at radius `r`.
    pub(crate) fn prefer_flat(&self, nq: usize, r: u32) -> bool {
        let n = self.hashes.len();
        if n < FLAT_BELOW {
            return true;
        }
        // A scan streams every hash once and compares it with each query
        // hash: about 1 ns plus 0.3 ns per query hash (AVX-512; AVX2 is
        // slower, which only moves the switch to a larger radius).
        self.probe_cost(r) * nq as f64 > n as f64 * (1.0 + 0.3 * nq as f64)
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

    /// Probes the slot tables for every hash of a query and appends one raw
    /// hit per matching position (its best transform).
    pub(crate) fn probe(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        out: &mut Vec<RawHit>,
    ) {
        let start = out.len();
        match crate::simd::level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                #[allow(unsafe_code)]
                // SAFETY: `probe_avx512` only requires AVX-512F, VPOPCNTDQ,
                // AVX2 and POPCNT, which `simd::level` detected on this CPU.
                unsafe {
                    self.probe_avx512(items, r, batches, out)
                };
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                #[allow(unsafe_code)]
                // SAFETY: `probe_avx2` only requires AVX2 and POPCNT, which
                // `simd::level` detected on this CPU.
                unsafe {
                    self.probe_avx2(items, r, batches, out)
                };
            }
            _ => self.probe_impl(items, r, batches, Level::Plain, out),
        }
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
        self.probe_impl(items, r, batches, Level::Avx2, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,popcnt")]
    fn probe_avx512(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        out: &mut Vec<RawHit>,
    ) {
        self.probe_impl(items, r, batches, Level::Avx512, out);
    }

    /// The probe pipeline.
    ///
    /// A probe needs three dependent memory reads: the bucket's start, the
    /// bucket's words, then each candidate's hash. Run one after the other,
    /// each would wait the full memory latency. Instead the stages run a
    /// fixed distance apart over the list of probes: in one step the
    /// pipeline prefetches the start of probe `i`, prefetches the words of
    /// probe `i - dir`, scans the (by now cached) bucket of probe
    /// `i - dir - lines` and prefetches each candidate's hash, and verifies
    /// the candidate found `cand` candidates earlier.
    #[inline(always)]
    fn probe_impl(
        &self,
        items: &[(Transform, Words)],
        r: u32,
        batches: Batches,
        level: Level,
        out: &mut Vec<RawHit>,
    ) {
        let shape = Shape::of(self.hashes.len());
        let budgets = budgets(r);
        let views: Vec<SlotView<'_>> = self
            .slots
            .iter()
            .map(|table| SlotView {
                table,
                header_words: table.header_words(shape.groups),
            })
            .collect();
        let mut cands: Vec<Cand> = Vec::with_capacity(256);
        let mut done = 0usize;
        // Sized once for the radius (272 probes per hash at 31), capped so
        // that a huge radius does not reserve megabytes up front.
        let per_hash: f64 = budgets
            .iter()
            .flatten()
            .map(|&q| binom_sum(shape.dbits, q))
            .sum();
        // As many query hashes per run as keep the probe list within 4096
        // (about 50 KiB, small enough to stay cached beside the buckets
        // being fetched): the pipeline then drains once per run, not once
        // per hash.
        let per_run = (4096 / (per_hash as usize).max(1)).max(1);
        let mut probes: Vec<Probe> = Vec::with_capacity((per_hash as usize * per_run).min(4096));
        for (c, chunk) in items.chunks(per_run).enumerate() {
            probes.clear();
            for (i, (_, q)) in chunk.iter().enumerate() {
                let Ok(qi) = u16::try_from(c * per_run + i) else {
                    break;
                };
                push_probes(qi, q, &budgets, shape, &mut probes);
            }
            let pipe = Pipe {
                views: &views,
                shape,
                level,
                items,
                r,
                batches,
            };
            self.run_probes(&probes, pipe, &mut cands, &mut done, out);
        }
        for &c in cands.get(done..).unwrap_or_default() {
            self.verify(c, items, r, out);
        }
    }

    /// Runs the pipeline over one list of probes.
    #[inline(always)]
    fn run_probes(
        &self,
        probes: &[Probe],
        pipe: Pipe<'_>,
        cands: &mut Vec<Cand>,
        done: &mut usize,
        out: &mut Vec<RawHit>,
    ) {
        let dir = pipe.batches.dir.max(1);
        let lines = pipe.batches.lines.max(1);
        let cand_lag = pipe.batches.cand.max(1);
        for i in 0..probes.len() + dir + lines {
            if let Some(p) = probes.get(i)
                && let Some(v) = pipe.views.get(usize::from(p.slot))
            {
                v.table.starts.prefetch(usize::from(p.bucket));
            }
            if let Some(p) = i.checked_sub(dir).and_then(|j| probes.get(j))
                && let Some(b) = pipe
                    .views
                    .get(usize::from(p.slot))
                    .and_then(|v| v.table.bucket(usize::from(p.bucket)))
            {
                // One prefetch per 64 bytes from the first word reaches
                // every line but perhaps the last. Into the second-level
                // cache only: a bucket is ten lines, and claiming a
                // first-level miss buffer for each would stall the
                // candidate prefetches behind them.
                for at in (0..b.len()).step_by(16) {
                    prefetch_l2(b, at);
                }
                prefetch_l2(b, b.len().saturating_sub(1));
            }
            if let Some(p) = i.checked_sub(dir + lines).and_then(|j| probes.get(j)) {
                self.scan_bucket(p, pipe, cands);
            }
            while cands.len() - *done > cand_lag {
                if let Some(&c) = cands.get(*done) {
                    self.verify(c, pipe.items, pipe.r, out);
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
    /// candidates, prefetching their hashes.
    #[inline(always)]
    fn scan_bucket(&self, p: &Probe, pipe: Pipe<'_>, cands: &mut Vec<Cand>) {
        let Some(v) = pipe.views.get(usize::from(p.slot)) else {
            return;
        };
        let Some(b) = v.table.bucket(usize::from(p.bucket)) else {
            return;
        };
        let (header, posts) = b.split_at(v.header_words.min(b.len()));
        let shape = pipe.shape;
        let filter = if p.max == ALL {
            PostFilter {
                want: 0,
                mask: 0,
                max: 0,
            }
        } else {
            PostFilter {
                want: p.want,
                mask: shape.fmask(),
                max: u32::from(p.max),
            }
        };
        let qi = u32::from(p.qi);
        let count_bytes = v.table.count_bytes;
        matching_posts(pipe.level, posts, filter, |j| {
            let g = group_of(header, count_bytes, shape.groups, j);
            let pos = shape.pos(g, posts.get(j).copied().unwrap_or(0));
            prefetch(&self.hashes, pos as usize);
            cands.push(Cand { pos, qi });
        });
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
        self.ids.check(n)?;
        if n > MAX_SEGMENT {
            return Err(format!("{n} entries, more than a segment holds"));
        }
        if self.slots.len() != SLOTS {
            return Err(format!("{} slots, expected {SLOTS}", self.slots.len()));
        }
        let shape = Shape::of(n);
        for (s, slot) in self.slots.iter().enumerate() {
            let valid_width = match shape.groups {
                0 => slot.count_bytes == 0,
                _ => matches!(slot.count_bytes, 1 | 2 | 4),
            };
            if !valid_width {
                return Err(format!(
                    "slot {s} has {}-byte group counts",
                    slot.count_bytes
                ));
            }
            let buckets = shape.buckets();
            let packed_ok = match &slot.starts {
                Starts::Packed { blocks, .. } => {
                    blocks.len() == (buckets + 1).div_ceil(START_BLOCK)
                }
                Starts::Wide(_) => true,
            };
            let mut prev = Some(0u32);
            let sorted = (0..=buckets).all(|b| {
                let x = slot.starts.at(b);
                let ok = x.is_some() && x >= prev;
                prev = x;
                ok
            });
            if !packed_ok
                || slot.starts.len() != buckets + 1
                || slot.starts.at(0) != Some(0)
                || slot.starts.at(buckets).map(|e| e as usize) != Some(slot.words.len())
                || !sorted
            {
                return Err(format!("slot {s} has malformed bucket starts"));
            }
            let hw = slot.header_words(shape.groups);
            let mut total = 0usize;
            for b in 0..shape.buckets() {
                let words = slot.bucket(b).unwrap_or_default();
                let Some((header, posts)) = words.split_at_checked(hw) else {
                    return Err(format!("slot {s} bucket {b} is shorter than its header"));
                };
                total += posts.len();
                // Every posting must decode to a position inside the
                // segment; group counts must rise and fit the bucket.
                let mut from = 0usize;
                for g in 0..1u32 << shape.groups {
                    let to = if g + 1 == 1 << shape.groups {
                        posts.len()
                    } else {
                        group_end(header, slot.count_bytes, g)
                    };
                    let Some(run) = posts.get(from..to) else {
                        return Err(format!("slot {s} bucket {b} has bad group counts"));
                    };
                    if run.iter().any(|&p| shape.pos(g, p) as usize >= n) {
                        return Err(format!("slot {s} has a position out of range"));
                    }
                    from = to;
                }
            }
            if total != n {
                return Err(format!("slot {s} holds {total} postings for {n} hashes"));
            }
        }
        Ok(())
    }
}

/// The cumulative count of group `g` in a bucket header.
fn group_end(header: &[u32], count_bytes: u32, g: u32) -> usize {
    if count_bytes == 0 {
        return 0;
    }
    let bits = 8 * count_bytes;
    let per_word = 4 / count_bytes;
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1 << bits) - 1
    };
    let w = header.get((g / per_word) as usize).copied().unwrap_or(0);
    ((w >> ((g % per_word) * bits)) & mask) as usize
}

/// The first position in `0..n` for which `pred` is false, given that
/// `pred` holds on a prefix.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// What every stage of one query's pipeline reads.
#[derive(Clone, Copy)]
struct Pipe<'a> {
    views: &'a [SlotView<'a>],
    shape: Shape,
    level: Level,
    items: &'a [(Transform, Words)],
    r: u32,
    batches: Batches,
}

/// Appends the probes of query hash `qi`: every bucket within each slot's
/// budget of the hash's own key, with the filter its flip count allows.
#[inline(always)]
fn push_probes(
    qi: u16,
    q: &Words,
    budgets: &[Option<u32>; SLOTS],
    shape: Shape,
    probes: &mut Vec<Probe>,
) {
    for (s, budget) in budgets.iter().enumerate() {
        let Some(budget) = *budget else { continue };
        let next = next_slot(s);
        let qn = budgets.get(next).copied().flatten();
        let own = shape.bucket(key(q, s));
        let want = key(q, next) >> (KEY_BITS - shape.filter);
        // Flips beyond the bucket bits cannot be told apart: a bucket found
        // at `k` flips holds entries `k` or more bits away in this slot,
        // so `k` is what the chain limit may subtract.
        for k in 0..=budget.min(shape.dbits) {
            let limit = chain_limit(budget, qn, k);
            let max = if limit >= shape.filter {
                ALL
            } else {
                limit as u8
            };
            let probe = |mask: u32| Probe {
                want,
                bucket: (own ^ mask) as u16,
                slot: s as u8,
                max,
                qi,
            };
            // No and one flip are written out: they are nearly every probe
            // at the default radius, and the general enumeration divides.
            match k {
                0 => probes.push(probe(0)),
                1 => probes.extend((0..shape.dbits).map(|i| probe(1 << i))),
                _ => probes.extend(Subsets::new(shape.dbits, k).map(probe)),
            }
        }
    }
}

/// C(n, k).
fn binom(n: u32, k: u32) -> f64 {
    let mut c = 1.0;
    for i in 1..=k.min(n) {
        c = c * f64::from(n - i + 1) / f64::from(i);
    }
    if k > n { 0.0 } else { c }
}

/// Sum of binomial coefficients C(n, 0..=k).
fn binom_sum(n: u32, k: u32) -> f64 {
    (0..=k.min(n)).map(|i| binom(n, i)).sum()
}

/// Every `n`-bit mask with exactly `k` set bits (`n <= 31`), in increasing
/// order. An iterator rather than a callback so that the probe loop stays
/// inside the function compiled for the detected instruction set.
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
        let ones = [u64::MAX; 4];
        for s in 0..SLOTS {
            assert_eq!(key(&ones, s), 0xffff);
            // One bit set per slot lands in that slot only.
            let mut w = [0u64; 4];
            w[s / 4] = 1u64 << (63 - 16 * (s % 4));
            for t in 0..SLOTS {
                assert_eq!(key(&w, t), if t == s { 0x8000 } else { 0 });
            }
        }
    }

    #[test]
    fn shapes_fit_in_a_word() {
        assert_eq!(
            Shape::of(1),
            Shape {
                dbits: 1,
                low: 0,
                groups: 0,
                filter: 16
            }
        );
        assert_eq!(Shape::of(12_000).dbits, 9);
        assert_eq!(Shape::of(1 << 16).filter, 16);
        assert_eq!(Shape::of((1 << 16) + 1).filter, 15);
        assert_eq!(
            Shape::of(1_000_000),
            Shape {
                dbits: 16,
                low: 20,
                groups: 0,
                filter: 12
            }
        );
        assert_eq!(
            Shape::of(10_000_000),
            Shape {
                dbits: 16,
                low: 20,
                groups: 4,
                filter: 12
            }
        );
        assert_eq!(Shape::of(MAX_SEGMENT).groups, 4);
        for n in [1, 2, 1000, 1 << 20, (1 << 20) + 1, MAX_SEGMENT] {
            let sh = Shape::of(n);
            assert!(sh.low + sh.filter <= 32);
            let pos = (n - 1) as u32;
            let post = sh.post(pos, 0xffff);
            assert_eq!(sh.pos(pos >> sh.low, post), pos, "n = {n}");
            assert_eq!(post & sh.fmask(), sh.fmask());
        }
    }

    #[test]
    fn ids_pack_and_unpack() {
        let mut seed = 3u64;
        let lists: Vec<Vec<u64>> = vec![
            vec![],
            vec![7],
            (0..1000).collect(),
            (0..300).map(|i| i * 1_000_003).collect(),
            (0..200).map(|_| crate::splitmix64(&mut seed)).collect(),
            vec![u64::MAX, 0, u64::MAX, 5],
            vec![42; 130],
        ];
        for ids in lists {
            let packed = Ids::pack(&ids);
            packed.check(ids.len()).unwrap();
            let back: Vec<u64> = (0..ids.len()).map(|p| packed.at(p).unwrap().0).collect();
            assert_eq!(back, ids);
            assert_eq!(packed.at(ids.len()), None);
        }
        // Dense ids take about a byte each.
        let dense: Vec<u64> = (1_000_000..1_100_000).collect();
        assert!(Ids::pack(&dense).bytes() < 120_000);
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
                assert_eq!(seen.len() as f64, binom(n, k));
            }
        }
    }

    #[test]
    fn budgets_cover_the_radius() {
        for r in 0..=256 {
            let b = budgets(r);
            let sum: u32 = b.iter().map(|q| q.map_or(0, |q| q + 1)).sum();
            assert!(sum > r, "r = {r}: {b:?}");
            assert!(b.iter().flatten().all(|&q| q <= KEY_BITS));
        }
        assert_eq!(budgets(31), [Some(1); SLOTS]);
        assert_eq!(budgets(0).iter().flatten().count(), 1);
        assert_eq!(chain_limit(1, Some(1), 1), 2);
        assert_eq!(chain_limit(1, Some(1), 0), 3);
        assert_eq!(chain_limit(0, None, 0), 0);
    }

    /// Random hashes plus neighbours of the first few at 0-46 bits, and
    /// query hashes near those neighbours.
    fn planted(n: usize, seed: u64) -> (Vec<Words>, Vec<Words>) {
        let mut x = seed;
        let mut next = move || crate::splitmix64(&mut x);
        let mut hashes: Vec<Words> = (0..n).map(|_| [next(), next(), next(), next()]).collect();
        let mut queries = Vec::new();
        for i in 0..24.min(n) {
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
    /// one-element batches (no overlap at all) and odd sizes must give the
    /// same hits as the default and as a full scan.
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
                    Batches {
                        dir: 1,
                        lines: 1,
                        cand: 1,
                    },
                    Batches {
                        dir: 3,
                        lines: 5,
                        cand: 7,
                    },
                    Batches {
                        dir: 1000,
                        lines: 1000,
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

    /// Buckets hold every posting once, in position order, each in the
    /// bucket of its own key and carrying its next slot's top bits.
    #[test]
    fn buckets_keep_the_layout_invariants() {
        for n in [3000, 40_000, 200_000] {
            let (hashes, _) = planted(n, 11);
            let ids = (0..hashes.len() as u64).collect();
            let mih = MihIndex::from_words(hashes, ids).unwrap();
            mih.check().unwrap();
            let shape = Shape::of(mih.hashes.len());
            for (s, slot) in mih.slots.iter().enumerate() {
                let hw = slot.header_words(shape.groups);
                for b in 0..shape.buckets() {
                    let words = slot.bucket(b).unwrap();
                    let (header, posts) = words.split_at(hw);
                    let mut last = None;
                    for (j, &p) in posts.iter().enumerate() {
                        let g = group_of(header, slot.count_bytes, shape.groups, j);
                        let pos = shape.pos(g, p);
                        let h = &mih.hashes[pos as usize];
                        assert_eq!(shape.bucket(key(h, s)) as usize, b);
                        assert_eq!(
                            p & shape.fmask(),
                            key(h, next_slot(s)) >> (KEY_BITS - shape.filter)
                        );
                        assert!(last < Some(pos));
                        last = Some(pos);
                    }
                }
            }
        }
    }

    /// Every instruction-set build of the probe this CPU can run gives the
    /// same hits as the portable one.
    #[test]
    fn levels_probe_alike() {
        let (hashes, queries) = planted(50_000, 13);
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes, ids).unwrap();
        for q in &queries {
            let items = [(Transform::Orig, *q), (Transform::FlipX, q.map(|w| !w))];
            for r in [0, 31, 40] {
                let run = |level: Level| {
                    let mut out = Vec::new();
                    match level {
                        #[cfg(target_arch = "x86_64")]
                        #[allow(unsafe_code)]
                        // SAFETY: only called for levels `simd::level`
                        // reports this CPU supports.
                        Level::Avx2 => unsafe {
                            mih.probe_avx2(&items, r, Batches::DEFAULT, &mut out)
                        },
                        #[cfg(target_arch = "x86_64")]
                        #[allow(unsafe_code)]
                        // SAFETY: as above.
                        Level::Avx512 => unsafe {
                            mih.probe_avx512(&items, r, Batches::DEFAULT, &mut out)
                        },
                        _ => mih.probe_impl(&items, r, Batches::DEFAULT, Level::Plain, &mut out),
                    }
                    out.sort_unstable();
                    out
                };
                let plain = run(Level::Plain);
                for level in [Level::Avx2, Level::Avx512] {
                    if level <= crate::simd::level() {
                        assert_eq!(run(level), plain, "{level:?}, r = {r}");
                    }
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
    /// and filter bits share a word differently at every size).
    #[test]
    fn tiny_segments_probe_like_a_scan() {
        for n in [1, 2, 3, 17, 100, 2047, 2049, 65_536, 65_537] {
            let (hashes, queries) = planted(n, n as u64);
            let ids = (0..hashes.len() as u64).collect();
            let mih = MihIndex::from_words(hashes.clone(), ids).unwrap();
            mih.check().unwrap();
            let mut qs = queries;
            qs.extend(hashes.iter().take(5));
            probe_equals_scan(&mih, &qs, &[0, 5, 31, 40]);
        }
    }

    /// Skewed sets: thousands of copies of one hash (one huge bucket per
    /// slot) and hashes that differ only in a few slots.
    #[test]
    fn skewed_sets_probe_like_a_scan() {
        let (mut hashes, queries) = planted(6000, 21);
        let dup = hashes[0];
        hashes.extend(std::iter::repeat_n(dup, 5000));
        let ids = (0..hashes.len() as u64).collect();
        let mih = MihIndex::from_words(hashes, ids).unwrap();
        mih.check().unwrap();
        assert!(probe_equals_scan(&mih, &queries, &[0, 12, 31]) > 5000);

        let sparse: Vec<Words> = (0..4000u64)
            .map(|i| {
                let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                [x, x.rotate_left(17), 0, 0]
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

    /// Above 2^20 entries positions split into groups behind a header of
    /// one-, two- or four-byte counts, as the largest bucket needs; bucket
    /// starts fall back to 32 bits when a block of buckets outgrows 16.
    #[test]
    fn grouped_segments_probe_like_a_scan() {
        let (base, queries) = planted((1 << 20) + 5000, 31);
        for (copies, width) in [(0, 1), (1000, 2), (70_000, 4)] {
            let mut hashes = base.clone();
            hashes.extend(std::iter::repeat_n(base[3], copies));
            let n = hashes.len();
            // Ids out of order: the segment sorts them.
            let ids = (0..n as u64).rev().collect();
            let mih = MihIndex::from_words(hashes, ids).unwrap();
            mih.check().unwrap();
            assert_eq!(Shape::of(n).groups, 1);
            assert!(mih.slots.iter().all(|s| s.count_bytes == width));
            // A bucket of 70,000 needs 32-bit starts (unless it ends its
            // block of buckets); smaller ones pack.
            let wide = mih
                .slots
                .iter()
                .filter(|s| matches!(s.starts, Starts::Wide(_)))
                .count();
            assert_eq!(wide > 0, copies > 65_535, "{wide} wide slots");
            assert!(probe_equals_scan(&mih, &queries, &[0, 6, 31]) > copies);
            assert!(mih.holds(EntryId(0)) && mih.holds(EntryId(n as u64 - 1)));
            assert!(!mih.holds(EntryId(n as u64)));
        }
    }

    /// Ids given out of order come back sorted, each with its own hash.
    #[test]
    fn entries_are_kept_in_id_order() {
        let (hashes, _) = planted(5000, 41);
        let ids: Vec<u64> = (0..hashes.len() as u64)
            .map(|i| (i * 7919) % 10_007)
            .collect();
        let mih = MihIndex::from_words(hashes.clone(), ids.clone()).unwrap();
        let got: Vec<(EntryId, PdqHash)> = mih.entries().collect();
        assert!(got.is_sorted_by_key(|e| e.0));
        for (id, h) in got {
            let i = ids.iter().position(|&x| x == id.0).unwrap();
            assert_eq!(h.words(), hashes[i]);
            assert!(mih.holds(id));
        }
    }
}
