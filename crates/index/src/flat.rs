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
    if crate::simd::level() >= crate::simd::Level::Avx2 {
        #[allow(unsafe_code)]
        // SAFETY: `scan_avx2` only requires AVX2 and POPCNT, which
        // `simd::level` detected on this CPU.
        unsafe {
            scan_avx2(hashes, query, radius, out)
        };
        return;
    }
    scan_impl(hashes, query, radius, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn scan_avx2(hashes: &[Words], query: &Query, radius: u32, out: &mut Vec<RawHit>) {
    scan_impl(hashes, query, radius, out);
}

/// Hashes per block: distances for a block are computed in a loop the
/// compiler can vectorize, then filtered.
const BLOCK: usize = 256;

#[inline(always)]
fn scan_impl(hashes: &[Words], query: &Query, radius: u32, out: &mut Vec<RawHit>) {
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
                    pos: (b * BLOCK + j) as u32,
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
                    pos: pos as u32,
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
