//! Linear scan: the exact baseline, and the right choice for small sets.

use takedown_pdq::{PdqHash, Transform};

use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words, distance};

/// A flat array of hashes scanned in full for every query.
///
/// One pass over memory serves all the hashes of a query, so an eight-way
/// dihedral query costs little more than a single one.
#[derive(Debug, Clone, Default)]
pub struct FlatIndex {
    pub(crate) hashes: Vec<Words>,
    pub(crate) ids: Vec<EntryId>,
}

impl FlatIndex {
    /// Builds a flat index over `entries`, kept in the given order.
    pub fn build(entries: impl IntoIterator<Item = (EntryId, PdqHash)>) -> Result<Self, Error> {
        let mut f = FlatIndex::default();
        for (id, h) in entries {
            f.push(id, h.words());
        }
        if f.hashes.len() > u32::MAX as usize {
            return Err(Error::TooLarge(f.hashes.len()));
        }
        // A large set is scanned end to end on every query: move it to
        // memory that may use huge pages (see `mem`).
        let mut hashes: Vec<Words> = crate::mem::zeroed(f.hashes.len());
        hashes.copy_from_slice(&f.hashes);
        f.hashes = hashes;
        Ok(f)
    }

    pub(crate) fn push(&mut self, id: EntryId, w: Words) {
        self.hashes.push(w);
        self.ids.push(id);
    }

    /// Removes position `pos` by moving the last entry into it. Returns the id
    /// that moved, if any.
    pub(crate) fn swap_remove(&mut self, pos: usize) -> Option<EntryId> {
        self.hashes.swap_remove(pos);
        self.ids.swap_remove(pos);
        self.ids.get(pos).copied()
    }

    /// The entries, in storage order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryId, PdqHash)> + '_ {
        self.ids
            .iter()
            .zip(&self.hashes)
            .map(|(id, w)| (*id, PdqHash::from_words(*w)))
    }

    /// Resident bytes used by the arrays.
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 32 + self.ids.capacity() * 8
    }
}

/// Scans `hashes` and reports, per position, the closest query transform
/// within `radius`.
pub(crate) fn scan(hashes: &[Words], query: &Query, radius: u32, out: &mut Vec<RawHit>) {
    #[cfg(target_arch = "x86_64")]
    {
        let level = crate::simd::level();
        if level == crate::simd::Level::Avx512 {
            #[allow(unsafe_code)]
            // SAFETY: `scan_avx512` only requires AVX-512F, VPOPCNTDQ, AVX2
            // and POPCNT, which `simd::level` detected on this CPU.
            unsafe {
                scan_avx512(hashes, query, radius, out)
            };
            return;
        }
        if level == crate::simd::Level::Avx2 {
            #[allow(unsafe_code)]
            // SAFETY: `scan_avx2` only requires AVX2 and POPCNT, which
            // `simd::level` detected on this CPU.
            unsafe {
                scan_avx2(hashes, query, radius, out)
            };
            return;
        }
    }
    scan_impl(hashes, 0, query, radius, out);
}

/// A scan in steps of eight hashes. Hits are rare, so `screen` only tells
/// whether any hash of a step is within the radius of any query hash, and
/// the few steps that are go through the portable code, which also picks
/// each hit's best transform. Queries of more than eight hashes (unusual)
/// take the portable code throughout.
#[inline(always)]
fn scan_screened(
    hashes: &[Words],
    query: &Query,
    radius: u32,
    out: &mut Vec<RawHit>,
    mut screen: impl FnMut(&[Words; 8]) -> bool,
) {
    if query.items().len() > 8 {
        scan_impl(hashes, 0, query, radius, out);
        return;
    }
    let groups = hashes.chunks_exact(8);
    let rest = groups.remainder();
    for (g, group) in groups.enumerate() {
        let Ok(group) = <&[Words; 8]>::try_from(group) else {
            continue;
        };
        if screen(group) {
            scan_impl(group, g * 8, query, radius, out);
        }
    }
    scan_impl(rest, hashes.len() - rest.len(), query, radius, out);
}

/// The AVX2 scan: each step's screen is a loop the compiler vectorizes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn scan_avx2(hashes: &[Words], query: &Query, radius: u32, out: &mut Vec<RawHit>) {
    let items = query.items();
    scan_screened(hashes, query, radius, out, |group| {
        let mut any = false;
        for (_, q) in items {
            for h in group {
                any |= distance(h, q) <= radius;
            }
        }
        any
    });
}

/// The AVX-512 scan: a step's eight hashes sit in four registers, and each
/// query hash is compared with all eight at once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,popcnt")]
fn scan_avx512(hashes: &[Words], query: &Query, radius: u32, out: &mut Vec<RawHit>) {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_cmple_epu64_mask, _mm512_loadu_si512,
        _mm512_mask_blend_epi64, _mm512_popcnt_epi64, _mm512_set_epi64, _mm512_set1_epi64,
        _mm512_shuffle_i64x2, _mm512_unpackhi_epi64, _mm512_unpacklo_epi64, _mm512_xor_si512,
    };
    // Each query hash twice: one copy per half of a register.
    let qs: Vec<__m512i> = query
        .items()
        .iter()
        .map(|(_, q)| {
            let w = q.map(|x| x as i64);
            _mm512_set_epi64(w[3], w[2], w[1], w[0], w[3], w[2], w[1], w[0])
        })
        .collect();
    let r = _mm512_set1_epi64(i64::from(radius));
    // Four 64-bit popcounts per hash, two hashes per register: add them up
    // to one distance per hash, eight hashes in one register.
    let sums = |x: __m512i, y: __m512i| {
        let s = _mm512_add_epi64(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
        _mm512_add_epi64(s, _mm512_shuffle_i64x2::<0b10_11_00_01>(s, s))
    };
    scan_screened(hashes, query, radius, out, |group| {
        let p = group.as_ptr().cast::<__m512i>();
        #[allow(unsafe_code)]
        // SAFETY: `group` is eight hashes of 32 bytes, exactly the four
        // 64-byte unaligned loads made here.
        let regs: [__m512i; 4] = unsafe {
            [
                _mm512_loadu_si512(p),
                _mm512_loadu_si512(p.add(1)),
                _mm512_loadu_si512(p.add(2)),
                _mm512_loadu_si512(p.add(3)),
            ]
        };
        let mut any = 0u8;
        for q in &qs {
            let p = regs.map(|v| _mm512_popcnt_epi64(_mm512_xor_si512(v, *q)));
            let d = _mm512_mask_blend_epi64(0b1100_1100, sums(p[0], p[1]), sums(p[2], p[3]));
            any |= _mm512_cmple_epu64_mask(d, r);
        }
        any != 0
    });
}

/// Hashes per block: distances for a block are computed in a loop the
/// compiler can vectorize, then filtered.
const BLOCK: usize = 256;

/// The portable scan; positions are reported from `base` on.
#[inline(always)]
fn scan_impl(hashes: &[Words], base: usize, query: &Query, radius: u32, out: &mut Vec<RawHit>) {
    let items = query.items();
    if items.is_empty() {
        return;
    }
    let start = out.len();
    let mut best = [0u16; BLOCK];
    let mut best_t = [0u8; BLOCK];
    for (b, block) in hashes.chunks(BLOCK).enumerate() {
        let best = &mut best[..block.len()];
        let best_t = &mut best_t[..block.len()];
        best.fill(u16::MAX);
        // Transforms are visited in order and only a strictly smaller
        // distance replaces the best, so ties keep the earliest transform.
        let mut order: [(u8, usize); 8] = [(0, 0); 8];
        let k = items.len().min(8);
        for (i, (t, _)) in items.iter().take(8).enumerate() {
            order[i] = (t.index() as u8, i);
        }
        order[..k].sort_unstable();
        for &(t, i) in &order[..k] {
            let q = &items[i].1;
            for ((h, bd), bt) in block.iter().zip(best.iter_mut()).zip(best_t.iter_mut()) {
                let d = distance(h, q) as u16;
                if d < *bd {
                    *bd = d;
                    *bt = t;
                }
            }
        }
        for (j, (&d, &t)) in best.iter().zip(best_t.iter()).enumerate() {
            if u32::from(d) <= radius {
                out.push(RawHit {
                    pos: (base + b * BLOCK + j) as u32,
                    dist: d,
                    t,
                });
            }
        }
    }
    // Queries of more than eight hashes (unusual) take the extra ones here.
    for (t, q) in items.iter().skip(8) {
        let t = t.index() as u8;
        for (pos, h) in hashes.iter().enumerate() {
            let d = distance(h, q);
            if d <= radius {
                out.push(RawHit {
                    pos: (base + pos) as u32,
                    dist: d as u16,
                    t,
                });
            }
        }
    }
    if items.len() > 8 {
        let mut found = out.split_off(start);
        found.sort_unstable();
        found.dedup_by_key(|h| h.pos);
        out.append(&mut found);
    }
}

pub(crate) fn transform_of(t: u8) -> Transform {
    Transform::ALL
        .get(usize::from(t))
        .copied()
        .unwrap_or(Transform::Orig)
}

impl Search for FlatIndex {
    fn search_into(&self, query: &Query, radius: Radius, out: &mut Vec<Hit>) {
        let mut raw = Vec::new();
        scan(&self.hashes, query, radius.get(), &mut raw);
        out.extend(raw.into_iter().filter_map(|r| {
            Some(Hit {
                id: *self.ids.get(r.pos as usize)?,
                transform: transform_of(r.t),
                distance: u32::from(r.dist),
            })
        }));
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level's scan equals a plain loop: one hit per position within
    /// the radius, with its smallest distance and, on ties, the earliest
    /// transform; for set sizes that leave partial groups and queries of
    /// one to nine hashes.
    #[test]
    fn scans_equal_a_plain_loop() {
        let mut seed = 17u64;
        let mut next = move || crate::splitmix64(&mut seed);
        let base: Words = [next(), next(), next(), next()];
        let mut hashes: Vec<Words> = Vec::new();
        for i in 0..1203u64 {
            let mut h = if i % 3 == 0 {
                base
            } else {
                [next(), next(), next(), next()]
            };
            // Near copies of the base at every distance up to about 60.
            for _ in 0..(i % 61) {
                let bit = next() % 256;
                h[(bit / 64) as usize] ^= 1 << (bit % 64);
            }
            hashes.push(h);
        }
        for nq in [1usize, 3, 8, 9] {
            let items: Vec<(Transform, PdqHash)> = (0..nq)
                .map(|i| {
                    let mut q = base;
                    q[i % 4] ^= next() & next();
                    (Transform::ALL[i % 8], PdqHash::from_words(q))
                })
                .collect();
            let query = Query::with_transforms(items.iter().copied());
            for r in [0, 20, 31, 45, 64, 256] {
                let mut want: Vec<RawHit> = Vec::new();
                for (pos, h) in hashes.iter().enumerate() {
                    let best = query
                        .items()
                        .iter()
                        .map(|(t, q)| (distance(h, q), t.index() as u8))
                        .min();
                    if let Some((d, t)) = best.filter(|(d, _)| *d <= r) {
                        want.push(RawHit {
                            pos: pos as u32,
                            dist: d as u16,
                            t,
                        });
                    }
                }
                for len in [hashes.len(), 8, 7, 0] {
                    let want: Vec<RawHit> = want
                        .iter()
                        .filter(|h| (h.pos as usize) < len)
                        .copied()
                        .collect();
                    let mut got = Vec::new();
                    scan(&hashes[..len], &query, r, &mut got);
                    got.sort_unstable_by_key(|h| h.pos);
                    assert_eq!(got, want, "nq {nq}, r {r}, len {len}");
                    let mut plain = Vec::new();
                    scan_impl(&hashes[..len], 0, &query, r, &mut plain);
                    plain.sort_unstable_by_key(|h| h.pos);
                    assert_eq!(plain, want, "plain, nq {nq}, r {r}, len {len}");
                    #[cfg(target_arch = "x86_64")]
                    if crate::simd::level() >= crate::simd::Level::Avx2 {
                        let mut avx2 = Vec::new();
                        #[allow(unsafe_code)]
                        // SAFETY: the CPU supports AVX2 and POPCNT (checked
                        // just above).
                        unsafe {
                            scan_avx2(&hashes[..len], &query, r, &mut avx2)
                        };
                        avx2.sort_unstable_by_key(|h| h.pos);
                        assert_eq!(avx2, want, "avx2, nq {nq}, r {r}, len {len}");
                    }
                }
            }
        }
    }
}
