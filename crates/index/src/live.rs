//! The updatable index: immutable segments, a flat tail and tombstones.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use takedown_pdq::PdqHash;

use crate::flat::{FlatIndex, scan, transform_of};
use crate::mih::{MAX_SEGMENT, MihIndex};
use crate::{EntryId, Error, Hit, Query, Radius, RawHit, Search, Words};

/// Inserts collect in a flat tail until it holds this many entries, then
/// the tail becomes an indexed segment.
const TAIL_LIMIT: usize = 4096;

/// One immutable segment with the ids it no longer serves.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) mih: MihIndex,
    /// Ids removed or replaced since the segment was built.
    pub(crate) dead: HashSet<EntryId>,
}

impl Segment {
    pub(crate) fn new(mih: MihIndex, dead: HashSet<EntryId>) -> Self {
        Segment { mih, dead }
    }

    fn live(&self) -> usize {
        self.mih.hashes.len().saturating_sub(self.dead.len())
    }

    /// True when `id` is stored here and not dead.
    fn serves(&self, id: EntryId) -> bool {
        !self.dead.contains(&id) && self.mih.holds(id)
    }

    fn live_entries(&self) -> impl Iterator<Item = (EntryId, PdqHash)> + '_ {
        self.mih.entries().filter(|(id, _)| !self.dead.contains(id))
    }
}

/// An exact, updatable radius-search index over PDQ hashes keyed by
/// [`EntryId`].
///
/// Entries live in immutable [`MihIndex`] segments plus a small flat tail of
/// recent inserts. Removing an entry marks it dead in its segment; inserting
/// an id that exists replaces it. Full tails become segments, and segments
/// of similar size merge, so updates never rebuild the whole index at once
/// except when the additions have grown as large as the base itself.
#[derive(Debug, Default)]
pub struct Index {
    pub(crate) segments: Vec<Segment>,
    pub(crate) tail: FlatIndex,
    /// Tail position of each tail id.
    tail_pos: HashMap<EntryId, usize>,
    /// Tail size that triggers a flush; zero means the default.
    tail_limit: usize,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// Builds an index over `entries` in one segment. When an id repeats, the
    /// last hash given for it wins.
    pub fn build(entries: impl IntoIterator<Item = (EntryId, PdqHash)>) -> Result<Self, Error> {
        let mut list: Vec<(EntryId, PdqHash)> = entries.into_iter().collect();
        dedup_keep_last(&mut list);
        let mut index = Index::new();
        // One segment unless the set outgrows what a segment can address.
        while !list.is_empty() {
            let rest = list.split_off(list.len().min(MAX_SEGMENT));
            let mih = MihIndex::build(std::mem::replace(&mut list, rest))?;
            index.segments.push(Segment::new(mih, HashSet::new()));
        }
        Ok(index)
    }

    pub(crate) fn from_parts(segments: Vec<Segment>, tail: FlatIndex) -> Self {
        let tail_pos = tail
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        Index {
            segments,
            tail,
            tail_pos,
            tail_limit: 0,
        }
    }

    /// Sets how many recent inserts collect in the flat tail before it
    /// becomes an indexed segment (default 4096). Small values exercise the
    /// segment machinery in tests; large ones trade query time for fewer
    /// rebuilds.
    pub fn set_tail_limit(&mut self, limit: usize) {
        self.tail_limit = limit.max(1);
    }

    /// Adds or replaces the hash stored under `id`.
    pub fn insert(&mut self, id: EntryId, hash: PdqHash) -> Result<(), Error> {
        self.remove(id);
        self.tail_pos.insert(id, self.tail.hashes.len());
        self.tail.push(id, hash.words());
        let limit = if self.tail_limit == 0 {
            TAIL_LIMIT
        } else {
            self.tail_limit
        };
        if self.tail.hashes.len() >= limit {
            self.flush_tail()?;
        }
        Ok(())
    }

    /// Removes `id`. Returns whether it was present.
    pub fn remove(&mut self, id: EntryId) -> bool {
        if let Some(pos) = self.tail_pos.remove(&id) {
            if let Some(moved) = self.tail.swap_remove(pos) {
                self.tail_pos.insert(moved, pos);
            }
            return true;
        }
        for seg in &mut self.segments {
            if seg.serves(id) {
                seg.dead.insert(id);
                return true;
            }
        }
        false
    }

    /// Turns the tail into a segment and merges segments of similar size.
    fn flush_tail(&mut self) -> Result<(), Error> {
        let tail = std::mem::take(&mut self.tail);
        self.tail_pos.clear();
        let (hashes, ids): (Vec<Words>, Vec<u64>) =
            (tail.hashes, tail.ids.iter().map(|i| i.0).collect());
        let mih = MihIndex::from_words(hashes, ids)?;
        self.segments.push(Segment::new(mih, HashSet::new()));
        // Size-tiered merging keeps the segment count logarithmic and the
        // total rebuild work per insert logarithmic too.
        while self.segments.len() >= 2 {
            let n = self.segments.len();
            let (a, b) = (&self.segments[n - 2], &self.segments[n - 1]);
            if b.live() * 2 < a.live() && a.dead.len() * 4 < a.mih.hashes.len() {
                break;
            }
            let merged: Vec<(EntryId, PdqHash)> =
                a.live_entries().chain(b.live_entries()).collect();
            self.segments.truncate(n - 2);
            let mih = MihIndex::build(merged)?;
            self.segments.push(Segment::new(mih, HashSet::new()));
        }
        Ok(())
    }

    /// Merges everything into one segment, dropping dead entries.
    pub fn compact(&mut self) -> Result<(), Error> {
        let all: Vec<(EntryId, PdqHash)> = self.entries().collect();
        let limit = self.tail_limit;
        *self = Index::build(all)?;
        self.tail_limit = limit;
        Ok(())
    }

    /// Every live entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryId, PdqHash)> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.live_entries())
            .chain(self.tail.entries())
    }

    /// Number of immutable segments (for diagnostics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Resident bytes of the index arrays, excluding allocator overhead.
    pub fn heap_bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.mih.heap_bytes() + s.dead.capacity() * 16)
            .sum::<usize>()
            + self.tail.heap_bytes()
            + self.tail_pos.capacity() * 24
    }

    /// Writes the index to `path` atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        crate::file::save(self, path)
    }

    /// Opens an index written by [`Index::save`], validating it fully.
    pub fn open(path: &Path) -> Result<Self, Error> {
        crate::file::open(path)
    }
}

/// Keeps only the last entry given for each id. Ids in increasing order
/// (the usual case: store row ids) are recognised in one pass; otherwise a
/// sort by id finds the repeats, which is much faster than hashing ten
/// million ids.
fn dedup_keep_last(list: &mut Vec<(EntryId, PdqHash)>) {
    if list.windows(2).all(|w| w[0].0 < w[1].0) {
        return;
    }
    let mut order: Vec<(EntryId, usize)> = list
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    order.sort_unstable();
    let mut keep = vec![false; list.len()];
    for (k, &(id, i)) in order.iter().enumerate() {
        if order.get(k + 1).is_none_or(|next| next.0 != id)
            && let Some(slot) = keep.get_mut(i)
        {
            *slot = true;
        }
    }
    drop(order);
    let mut i = 0;
    list.retain(|_| {
        let k = keep.get(i).copied().unwrap_or(false);
        i += 1;
        k
    });
}

impl Search for Index {
    fn search_into(&self, query: &Query, radius: Radius, out: &mut Vec<Hit>) {
        let r = radius.get();
        let mut raw: Vec<RawHit> = Vec::new();
        for seg in &self.segments {
            raw.clear();
            seg.mih.raw_search(query, r, &mut raw);
            out.extend(raw.iter().filter_map(|h| {
                let id = seg.mih.id_at(h.pos as usize)?;
                if seg.dead.contains(&id) {
                    return None;
                }
                Some(Hit {
                    id,
                    transform: transform_of(h.t),
                    distance: u32::from(h.dist),
                })
            }));
        }
        raw.clear();
        scan(&self.tail.hashes, query, r, &mut raw);
        out.extend(raw.iter().filter_map(|h| {
            Some(Hit {
                id: *self.tail.ids.get(h.pos as usize)?,
                transform: transform_of(h.t),
                distance: u32::from(h.dist),
            })
        }));
    }

    fn len(&self) -> usize {
        self.segments.iter().map(Segment::live).sum::<usize>() + self.tail.hashes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_keeps_the_last_hash_per_id() {
        let h = |b: u8| PdqHash([b; 32]);
        let entries = vec![
            (EntryId(5), h(1)),
            (EntryId(2), h(2)),
            (EntryId(5), h(3)),
            (EntryId(9), h(4)),
            (EntryId(2), h(5)),
            (EntryId(5), h(6)),
        ];
        let mut got: Vec<(EntryId, PdqHash)> = Index::build(entries).unwrap().entries().collect();
        got.sort();
        assert_eq!(
            got,
            vec![(EntryId(2), h(5)), (EntryId(5), h(6)), (EntryId(9), h(4))]
        );
        // Increasing ids take the one-pass path and keep everything.
        let sorted: Vec<(EntryId, PdqHash)> = (0..10).map(|i| (EntryId(i), h(i as u8))).collect();
        let mut got: Vec<_> = Index::build(sorted.clone()).unwrap().entries().collect();
        got.sort();
        assert_eq!(got, sorted);
    }
}
