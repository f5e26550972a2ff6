//! Exact Hamming-radius search over PDQ hashes.
//!
//! Every hash within the requested radius is returned; nothing here is
//! approximate. The key types are:
//!
//! - [`Index`]: the updatable index a bank keeps. It holds immutable
//!   multi-index-hashing segments plus a small flat tail for recent inserts,
//!   supports [`Index::insert`] and [`Index::remove`] without a full rebuild,
//!   and saves to / opens from a checksummed file ([`Index::save`], [`Index::open`]).
//! - [`MihIndex`]: one immutable multi-index-hashing segment (16 slots of
//!   16 bits; each posting carries the next slot's top bits, so a probe
//!   drops nearly every false candidate without fetching it), probed
//!   through a prefetching pipeline.
//! - [`FlatIndex`]: a linear scan, used for small sets and very large radii.
//! - [`Query`] and [`Hit`]: a query carries one hash or the eight dihedral
//!   hashes of an image; each hit names the entry, the best transform and its
//!   distance.
//!
//! ```
//! use takedown_index::{EntryId, Index, Query, Radius, Search};
//! use takedown_pdq::{PdqHash, Transform};
//!
//! let a: PdqHash = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22".parse()?;
//! let mut b = a;
//! b.0[0] ^= 0b111; // three bits away
//! let index = Index::build(vec![(EntryId(7), b)])?;
//! let hits = index.search(&Query::new(a), Radius::DEFAULT);
//! assert_eq!(hits.len(), 1);
//! assert_eq!((hits[0].id, hits[0].transform, hits[0].distance), (EntryId(7), Transform::Orig, 3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// Unsafe is denied except for a few narrow uses, each in one small
// function: calling the AVX2 and AVX-512 builds of the hot loops after
// run-time CPU detection, their unaligned and masked vector loads, and
// issuing prefetch hints (see `simd` and `flat`), and asking the kernel for
// huge pages (see `mem`).
#![deny(unsafe_code)]

mod file;
mod flat;
mod live;
mod mem;
mod mih;
mod simd;

use std::fmt;
use std::path::PathBuf;

use takedown_pdq::{PdqHash, Transform};

pub use flat::FlatIndex;
pub use live::Index;
pub use mih::{MihIndex, Plan};

/// The caller's identifier of one indexed hash, such as a store row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Hamming search radius, 0 to 256 bits inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Radius(u16);

impl Radius {
    /// PDQ's recommended match threshold: 31 bits.
    pub const DEFAULT: Radius = Radius(31);
    /// The largest meaningful radius: every hash matches.
    pub const MAX: Radius = Radius(256);

    /// Wraps a radius, failing above 256.
    pub fn new(bits: u32) -> Result<Self, Error> {
        u16::try_from(bits)
            .ok()
            .filter(|b| *b <= 256)
            .map(Radius)
            .ok_or(Error::Radius(bits))
    }

    /// The radius in bits.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl Default for Radius {
    fn default() -> Self {
        Radius::DEFAULT
    }
}

impl fmt::Display for Radius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Radius {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bits: u32 = s.trim().parse().map_err(|_| Error::Radius(u32::MAX))?;
        Radius::new(bits)
    }
}

/// The hash words used internally: [`PdqHash::words`], most significant first.
pub(crate) type Words = [u64; 4];

#[inline]
pub(crate) fn distance(a: &Words, b: &Words) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

/// What to look for: one hash, or several hashes of one image each tagged
/// with the transform that produced it (usually all eight dihedral ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    items: Vec<(Transform, Words)>,
}

impl Query {
    /// A query for one hash, reported as [`Transform::Orig`].
    pub fn new(hash: PdqHash) -> Self {
        Query {
            items: vec![(Transform::Orig, hash.words())],
        }
    }

    /// A query for several transformed hashes of the same image. Hits report
    /// the transform whose hash came closest.
    pub fn with_transforms(hashes: impl IntoIterator<Item = (Transform, PdqHash)>) -> Self {
        Query {
            items: hashes.into_iter().map(|(t, h)| (t, h.words())).collect(),
        }
    }

    /// The hashes this query carries.
    pub fn hashes(&self) -> impl Iterator<Item = (Transform, PdqHash)> + '_ {
        self.items
            .iter()
            .map(|(t, w)| (*t, PdqHash::from_words(*w)))
    }

    /// Number of hashes carried.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the query carries no hash (it then matches nothing).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn items(&self) -> &[(Transform, Words)] {
        &self.items
    }
}

/// One indexed entry within the radius of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hit {
    /// The entry that matched.
    pub id: EntryId,
    /// The query transform with the smallest distance to the entry (the
    /// earliest in [`Transform::ALL`] order on ties).
    pub transform: Transform,
    /// The Hamming distance between that transform's hash and the entry.
    pub distance: u32,
}

/// Exact radius search, implemented by every index here.
pub trait Search {
    /// Appends every entry within `radius` of any hash of `query` to `out`,
    /// once per entry, in no particular order.
    fn search_into(&self, query: &Query, radius: Radius, out: &mut Vec<Hit>);

    /// Number of entries searched.
    fn len(&self) -> usize;

    /// True when nothing is indexed.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry within `radius` of `query`, closest first (then by id).
    fn search(&self, query: &Query, radius: Radius) -> Vec<Hit> {
        let mut out = Vec::new();
        self.search_into(query, radius, &mut out);
        sort_hits(&mut out);
        out
    }
}

/// Sorts hits closest first, then by entry id, then by transform.
pub fn sort_hits(hits: &mut [Hit]) {
    hits.sort_unstable_by_key(|h| (h.distance, h.id, h.transform));
}

/// Differential check for fuzzing: builds a segment from hashes derived
/// from `data` (clusters of near-duplicates around a base hash, so that
/// buckets collide, grow large and hold duplicates) and asserts that
/// probing returns exactly what a linear scan returns, for queries near the
/// base at a radius taken from the input. Panics on any difference.
#[doc(hidden)]
pub fn fuzz_probe_matches_scan(data: &[u8]) {
    let [r, rest @ ..] = data else { return };
    let (base_bytes, rest) = rest.split_at(rest.len().min(32));
    let mut base = [0u8; 32];
    base[..base_bytes.len()].copy_from_slice(base_bytes);
    let base = PdqHash(base);
    let mut seed = 0u64;
    let mut next = move || splitmix64(&mut seed);
    let mut near = |flips: u8, copies: u8| {
        let mut h = base;
        for _ in 0..flips % 48 {
            let bit = (next() % 256) as usize;
            h.0[bit / 8] ^= 1 << (bit % 8);
        }
        std::iter::repeat_n(h, usize::from(copies % 8) + 1)
    };
    let mut hashes: Vec<PdqHash> = Vec::new();
    for pair in rest.chunks(2).take(2048) {
        let flips = pair.first().copied().unwrap_or(0);
        let copies = pair.get(1).copied().unwrap_or(0);
        hashes.extend(near(flips, copies));
    }
    let queries: Vec<PdqHash> = (0..4).flat_map(|i| near(i * 7, 0)).collect();
    let Ok(mih) = MihIndex::build(
        hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (EntryId(i as u64), *h)),
    ) else {
        return;
    };
    let radius = Radius(u16::from(*r % 72));
    for q in queries {
        let query = Query::new(q);
        let (mut probed, mut scanned) = (Vec::new(), Vec::new());
        mih.search_with(&query, radius, Plan::Probe, &mut probed);
        mih.search_with(&query, radius, Plan::Scan, &mut scanned);
        sort_hits(&mut probed);
        sort_hits(&mut scanned);
        assert_eq!(
            probed, scanned,
            "probe and scan disagree at radius {radius:?}"
        );
    }
}

/// Robustness check for fuzzing the file reader. With an even first byte,
/// builds a small index (a segment of up to 4,000 entries and a tail),
/// serialises it and flips the bytes the rest of `data` names; with an odd
/// one, takes the rest as the file itself. Either way the header and
/// checksum are then made valid again, so that the damage reaches the
/// structural checks behind them. Opening must fail with an error or give
/// an index that answers searches; a panic is a finding.
#[doc(hidden)]
pub fn fuzz_open_damaged(data: &[u8]) {
    let [mode, rest @ ..] = data else { return };
    let mut bytes = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        let mut seed = u64::from(*mode);
        let mut next = move || splitmix64(&mut seed);
        let n = usize::from(*mode) * 16;
        let mut hash = || PdqHash::from_words([next(), next(), next(), next()]);
        let entries: Vec<(EntryId, PdqHash)> =
            (0..n).map(|i| (EntryId(i as u64 + 1), hash())).collect();
        let Ok(mut index) = Index::build(entries) else {
            return;
        };
        for i in 0..3 {
            let _ = index.insert(EntryId(1_000_000 + i), hash());
        }
        index.remove(EntryId(1));
        let mut bytes = file::to_bytes(&index);
        let len = bytes.len().max(1);
        for edit in rest.chunks_exact(5) {
            let at = u32::from_le_bytes([edit[0], edit[1], edit[2], edit[3]]) as usize;
            if let Some(b) = bytes.get_mut(at % len) {
                *b ^= edit[4];
            }
        }
        bytes
    };
    file::seal(&mut bytes);
    if let Ok(index) = file::from_bytes(&bytes) {
        let q = Query::with_transforms([
            (Transform::Orig, PdqHash([0x5a; 32])),
            (Transform::Rot90, PdqHash([0xa5; 32])),
        ]);
        for r in [0, 31, 64, 256] {
            let _ = index.search(&q, Radius(r));
        }
        let _ = index.entries().count();
    }
}

/// One step of the SplitMix64 generator: deterministic pseudo-random words
/// for fuzzing and tests.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A raw hit inside one segment: position, distance, transform index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RawHit {
    pub(crate) pos: u32,
    pub(crate) dist: u16,
    pub(crate) t: u8,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A radius was above 256 bits or not a number.
    #[error("invalid search radius {0}: expected a whole number of bits from 0 to 256")]
    Radius(u32),
    /// More entries than one segment can address.
    #[error("too many entries ({0}) for one index segment: split the bank (at most 16777216)")]
    TooLarge(usize),
    /// Reading or writing an index file failed.
    #[error("cannot access index file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the index magic bytes.
    #[error("{path} is not a takedown index file (bad magic); delete it and rebuild the index")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by an incompatible version.
    #[error(
        "index file {path} has format version {found}, this build reads version {supported}; delete it and rebuild the index"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The file is shorter or longer than its header says.
    #[error(
        "index file {path} is truncated or has trailing bytes: {detail}; delete it and rebuild the index"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was expected.
        detail: String,
    },
    /// The body does not match its checksum.
    #[error("index file {path} is corrupt (checksum mismatch); delete it and rebuild the index")]
    Checksum {
        /// The file.
        path: PathBuf,
    },
    /// The body is internally inconsistent although its checksum matches.
    #[error("index file {path} is inconsistent ({what}); delete it and rebuild the index")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which invariant failed.
        what: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_bounds() {
        assert!(Radius::new(257).is_err());
        assert_eq!(Radius::new(256).unwrap(), Radius::MAX);
        assert_eq!("31".parse::<Radius>().unwrap(), Radius::DEFAULT);
        assert!("x".parse::<Radius>().is_err());
    }

    /// The fuzz target's differential check on a few fixed inputs: empty,
    /// tiny, and clusters big enough to spill buckets over several lines.
    #[test]
    fn fuzz_check_runs_on_fixed_inputs() {
        fuzz_probe_matches_scan(&[]);
        fuzz_probe_matches_scan(&[31]);
        let mut data = vec![31u8];
        data.extend((0..32).map(|i| i * 7));
        data.extend((0..4000u32).map(|i| (i * 37 % 251) as u8));
        fuzz_probe_matches_scan(&data);
        data[0] = 64;
        fuzz_probe_matches_scan(&data);
        // Many exact duplicates of the base.
        let mut dup = vec![10u8; 33];
        dup.extend(std::iter::repeat_n([0u8, 7u8], 1500).flatten());
        fuzz_probe_matches_scan(&dup);
    }

    /// The file fuzz entry survives every single-byte damage of a small
    /// index (each byte of the file flipped in turn) and arbitrary bodies.
    #[test]
    fn damaged_files_fail_cleanly() {
        let index = Index::build((0..200u64).map(|i| {
            let mut s = i;
            (
                EntryId(i + 1),
                PdqHash::from_words([
                    splitmix64(&mut s),
                    splitmix64(&mut s),
                    splitmix64(&mut s),
                    splitmix64(&mut s),
                ]),
            )
        }))
        .unwrap();
        let len = file::to_bytes(&index).len();
        assert!(file::from_bytes(&file::to_bytes(&index)).is_ok());
        for at in 0..len as u32 {
            let mut data = vec![4u8];
            data.extend(at.to_le_bytes());
            data.push(0xff);
            fuzz_open_damaged(&data);
        }
        fuzz_open_damaged(&[1]);
        fuzz_open_damaged(&[1; 200]);
        fuzz_open_damaged(&[]);
    }
}
