//! A binary cache of the built lookup tables, kept next to the source files.
//!
//! Parsing and flattening tens of megabytes of range CSV takes most of a
//! second; reading the flattened tables back takes a few tens of
//! milliseconds. So after a build from the files in an enrichment
//! directory, the tables are saved as [`CACHE_FILE`] in that directory, and
//! the next load uses them when they still describe the same files.
//!
//! The file is trusted only when everything checks out: the magic and the
//! format version, the exact length, a CRC-32 over the whole body, and the
//! stamp of the source files (name, size, modification time and, on Unix,
//! change time, inode and device of every `.csv` and `.mmdb` file, plus the
//! crate's release). Any
//! mismatch, truncation or damage makes the loader build from the sources
//! again and replace the cache; the decoder never panics on bad bytes and
//! never allocates more than the file's own size warrants.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "TKDNENRC" | version u32 | crc32 u32 of the body | body length u64 | body
//! body: stamp | names | sources | AS table | country table
//! ```

use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};

use takedown_event::{Asn, CountryCode};

use crate::enricher::{AsValue, Source, SourceKind};
use crate::names::{NameId, Names};
use crate::table::{PrefixTable, Side};

/// The cache's file name inside the enrichment directory. Deleting it is
/// always safe: the next load rebuilds it.
pub const CACHE_FILE: &str = "takedown-tables.cache";

const MAGIC: &[u8; 8] = b"TKDNENRC";

/// Bumped whenever the layout or the meaning of the tables changes (for
/// example how a source row is interpreted), so that older caches are
/// rebuilt rather than misread.
const VERSION: u32 = 1;

/// Magic, version, checksum and body length.
const HEADER: usize = 8 + 4 + 4 + 8;

/// Why a load did not use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheMiss {
    /// There was no cache file, or it could not be read.
    Missing,
    /// The cache was written by another format version.
    Version,
    /// The source files changed since the cache was written.
    Stale,
    /// The cache is truncated or damaged.
    Damaged,
}

/// How an [`Enricher`](crate::Enricher)'s tables were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CacheUse {
    /// Built without the cache (from a builder, or caching was turned off).
    #[default]
    NotUsed,
    /// Read from the cache.
    Hit,
    /// Built from the source files because the cache could not be used.
    Rebuilt {
        /// Why the cache was not used.
        miss: CacheMiss,
        /// Whether a fresh cache was written for the next load.
        saved: bool,
    },
}

/// Fixed-width little-endian encoding of the values stored in the tables.
pub(crate) trait Codec: Sized {
    /// Encoded width in bytes.
    const LEN: usize;
    /// Appends the encoding.
    fn put(&self, out: &mut Vec<u8>);
    /// Decodes from exactly [`Codec::LEN`] bytes; `None` when invalid.
    fn get(b: &[u8]) -> Option<Self>;
}

impl Codec for u32 {
    const LEN: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline]
    fn get(b: &[u8]) -> Option<Self> {
        b.first_chunk().map(|a| u32::from_le_bytes(*a))
    }
}

impl Codec for u128 {
    const LEN: usize = 16;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline]
    fn get(b: &[u8]) -> Option<Self> {
        b.first_chunk().map(|a| u128::from_le_bytes(*a))
    }
}

impl Codec for AsValue {
    const LEN: usize = 12;
    fn put(&self, out: &mut Vec<u8>) {
        let (off, len) = self.name.raw();
        self.asn.0.put(out);
        off.put(out);
        len.put(out);
    }
    #[inline]
    fn get(b: &[u8]) -> Option<Self> {
        Some(AsValue {
            asn: Asn(u32::get(b.get(0..4)?)?),
            name: NameId::from_raw(u32::get(b.get(4..8)?)?, u32::get(b.get(8..12)?)?),
        })
    }
}

impl Codec for CountryCode {
    const LEN: usize = 2;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
    #[inline]
    fn get(b: &[u8]) -> Option<Self> {
        std::str::from_utf8(b.get(0..2)?).ok()?.parse().ok()
    }
}

/// Appends a length or count.
pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

/// Size of the read buffer: decoding streams through it, so a load never
/// holds the whole file in memory next to the tables built from it.
const CHUNK: usize = 256 * 1024;

/// A streaming reader over a cache body that checksums what it reads.
/// Every read is bounded by the body length given in the header and
/// returns `None` past it, so no count read from the file can size an
/// allocation beyond the bytes actually present.
pub(crate) struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    /// Body bytes not yet pulled from `inner`.
    left: u64,
    crc: crc32fast::Hasher,
}

impl<R: Read> Reader<R> {
    fn new(inner: R, body_len: u64) -> Self {
        Reader {
            inner,
            buf: vec![0; CHUNK],
            lo: 0,
            hi: 0,
            left: body_len,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Body bytes not yet consumed.
    fn remaining(&self) -> u64 {
        self.left + (self.hi - self.lo) as u64
    }

    /// Makes at least `n` (at most [`CHUNK`]) bytes available in the buffer.
    fn fill(&mut self, n: usize) -> Option<()> {
        if self.hi - self.lo >= n {
            return Some(());
        }
        if n > CHUNK || (n - (self.hi - self.lo)) as u64 > self.left {
            return None;
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        self.hi -= self.lo;
        self.lo = 0;
        while self.hi < n {
            let room = (CHUNK - self.hi).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let got = self
                .inner
                .read(self.buf.get_mut(self.hi..self.hi + room)?)
                .ok()?;
            if got == 0 {
                return None;
            }
            self.crc.update(self.buf.get(self.hi..self.hi + got)?);
            self.hi += got;
            self.left -= got as u64;
        }
        Some(())
    }

    /// The next `n` bytes, `n` at most [`CHUNK`].
    fn small(&mut self, n: usize) -> Option<&[u8]> {
        self.fill(n)?;
        let out = self.buf.get(self.lo..self.lo + n)?;
        self.lo += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.small(1)?.first().copied()
    }

    fn u64(&mut self) -> Option<u64> {
        self.small(8)?.first_chunk().map(|a| u64::from_le_bytes(*a))
    }

    /// A count of items `width` bytes wide each, accepted only when that
    /// many items could still follow.
    pub(crate) fn count(&mut self, width: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(width.max(1))? as u64 <= self.remaining()).then_some(n)
    }

    /// A plain number that sizes nothing.
    pub(crate) fn number(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    /// `n` items of `width` bytes each (`width` at most [`CHUNK`]), each
    /// decoded by `f`; `None` when the bytes run out or `f` rejects one.
    pub(crate) fn items<T>(
        &mut self,
        n: usize,
        width: usize,
        mut f: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<Vec<T>> {
        if width == 0 || n.checked_mul(width)? as u64 > self.remaining() {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            self.fill(width)?;
            let fit = ((self.hi - self.lo) / width).min(n - out.len());
            let chunk = self.buf.get(self.lo..self.lo + fit * width)?;
            for item in chunk.chunks_exact(width) {
                out.push(f(item)?);
            }
            self.lo += fit * width;
        }
        Some(out)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.count(1)?;
        self.items(n, 1, |b| b.first().copied())
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }

    /// The checksum of the whole body, once all of it has been consumed.
    fn finish(self) -> Option<u32> {
        (self.remaining() == 0).then(|| self.crc.finalize())
    }
}

/// The `.csv` and `.mmdb` files directly in `dir`, in file-name order: the
/// files a load reads, and the files the cache stamp covers.
pub(crate) fn source_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && is_source(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// True for the file extensions a load reads.
pub(crate) fn is_source(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| e == "csv" || e == "mmdb")
}

/// The stamp of the source files: what must be unchanged for the cache to
/// describe them.
pub(crate) fn stamp(files: &[PathBuf]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(16 + files.len() * 96);
    // The release goes in too, so a new release never trusts tables built
    // by an older loader, even if the format version was left unchanged.
    put_bytes(&mut out, env!("CARGO_PKG_VERSION").as_bytes());
    put_len(&mut out, files.len());
    for f in files {
        let meta = std::fs::metadata(f)?;
        let name = f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or(&[]);
        put_bytes(&mut out, name);
        put_len(&mut out, meta.len() as usize);
        put_times(&mut out, &meta);
    }
    Ok(out)
}

#[cfg(unix)]
fn put_times(out: &mut Vec<u8>, meta: &Metadata) {
    use std::os::unix::fs::MetadataExt;
    // The change time cannot be set back by tools that preserve the
    // modification time, so a file replaced in place with the same size
    // and mtime still shows as changed.
    for v in [
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&meta.ino().to_le_bytes());
    out.extend_from_slice(&meta.dev().to_le_bytes());
}

#[cfg(not(unix))]
fn put_times(out: &mut Vec<u8>, meta: &Metadata) {
    let since = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    out.extend_from_slice(&since.to_le_bytes());
}

/// What a cache holds besides its stamp.
pub(crate) struct Tables {
    pub(crate) asn: Option<PrefixTable<AsValue>>,
    pub(crate) country: Option<PrefixTable<CountryCode>>,
    pub(crate) names: Names,
    pub(crate) sources: Vec<Source>,
}

/// Encodes a whole cache file for tables built from the files `stamp`
/// describes.
pub(crate) fn encode(
    stamp: &[u8],
    asn: Option<&PrefixTable<AsValue>>,
    country: Option<&PrefixTable<CountryCode>>,
    names: &Names,
    sources: &[Source],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    put_bytes(&mut out, stamp);
    let (text, n_names) = names.parts();
    put_len(&mut out, n_names);
    put_bytes(&mut out, text.as_bytes());
    put_len(&mut out, sources.len());
    for s in sources {
        put_bytes(&mut out, s.name.as_bytes());
        out.push(u8::from(s.format == "mmdb"));
        out.push(match s.kind {
            SourceKind::Asn => 0,
            SourceKind::Country => 1,
            SourceKind::Both => 2,
        });
        put_len(&mut out, s.ranges);
        match &s.database_type {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                put_bytes(&mut out, t.as_bytes());
            }
        }
    }
    put_table(&mut out, asn);
    put_table(&mut out, country);
    let body_len = (out.len() - HEADER) as u64;
    let crc = crc32fast::hash(out.get(HEADER..).unwrap_or_default());
    if let Some(h) = out.get_mut(12..HEADER) {
        h[..4].copy_from_slice(&crc.to_le_bytes());
        h[4..].copy_from_slice(&body_len.to_le_bytes());
    }
    out
}

fn put_table<V: Codec + Copy>(out: &mut Vec<u8>, t: Option<&PrefixTable<V>>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            t.v4.encode(out);
            t.v6.encode(out);
        }
    }
}

/// Decodes a cache file, checking it against the current `stamp`.
pub(crate) fn decode<R: Read>(
    mut input: R,
    input_len: u64,
    stamp: &[u8],
) -> Result<Tables, CacheMiss> {
    let mut head = [0u8; HEADER];
    input
        .read_exact(&mut head)
        .map_err(|_| CacheMiss::Damaged)?;
    if head.get(0..8) != Some(MAGIC.as_slice()) {
        return Err(CacheMiss::Damaged);
    }
    if head.get(8..12).and_then(u32::get) != Some(VERSION) {
        return Err(CacheMiss::Version);
    }
    let crc = head.get(12..16).and_then(u32::get);
    let body_len = head
        .get(16..24)
        .and_then(|b| b.first_chunk())
        .map(|a| u64::from_le_bytes(*a))
        .ok_or(CacheMiss::Damaged)?;
    // Every count in the body is checked against the bytes left before it
    // sizes an allocation, so the body length must be the true one, not
    // just what the header claims.
    if input_len.checked_sub(HEADER as u64) != Some(body_len) {
        return Err(CacheMiss::Damaged);
    }
    let mut r = Reader::new(input, body_len);
    // The stamp comes first, so a stale cache is told apart from a damaged
    // one (and dropped) without reading the rest.
    if r.bytes().ok_or(CacheMiss::Damaged)? != stamp {
        return Err(CacheMiss::Stale);
    }
    let tables = decode_tables(&mut r).ok_or(CacheMiss::Damaged)?;
    // A short file fails above; a long one leaves bytes unread here.
    let mut rest = [0u8; 1];
    if r.inner.read(&mut rest).map_or(true, |n| n != 0) || r.finish() != crc {
        return Err(CacheMiss::Damaged);
    }
    Ok(tables)
}

fn decode_tables<R: Read>(r: &mut Reader<R>) -> Option<Tables> {
    let n_names = r.number()?;
    let names = Names::from_parts(r.string()?, n_names);
    let n_sources = r.count(20)?;
    let mut sources = Vec::with_capacity(n_sources);
    for _ in 0..n_sources {
        let name = r.string()?;
        let format = if r.u8()? == 1 { "mmdb" } else { "csv" };
        let kind = match r.u8()? {
            0 => SourceKind::Asn,
            1 => SourceKind::Country,
            2 => SourceKind::Both,
            _ => return None,
        };
        let ranges = r.number()?;
        let database_type = match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return None,
        };
        sources.push(Source {
            name,
            format,
            kind,
            ranges,
            database_type,
        });
    }
    let asn = table(r)?;
    let country = table(r)?;
    Some(Tables {
        asn,
        country,
        names,
        sources,
    })
}

/// An optional table: `Some(None)` when absent, `None` when damaged.
fn table<V: Codec + Copy, R: Read>(r: &mut Reader<R>) -> Option<Option<PrefixTable<V>>> {
    match r.u8()? {
        0 => Some(None),
        1 => Some(Some(PrefixTable {
            v4: Side::decode(r)?,
            v6: Side::decode(r)?,
        })),
        _ => None,
    }
}

/// Fuzzing entry point: decodes `bytes` as a cache file, checked against
/// the stamp it carries itself so that most inputs reach the table decoder.
/// Returns the number of ranges in its tables. Must never panic.
pub fn fuzz(bytes: &[u8]) -> Result<usize, CacheMiss> {
    let stamp = bytes
        .get(HEADER..HEADER + 8)
        .and_then(|b| b.first_chunk())
        .and_then(|a| usize::try_from(u64::from_le_bytes(*a)).ok())
        .and_then(|n| bytes.get(HEADER + 8..(HEADER + 8).checked_add(n)?))
        .unwrap_or_default();
    let t = decode(bytes, bytes.len() as u64, stamp)?;
    let count = |r: (usize, usize)| r.0.saturating_add(r.1);
    Ok(t.asn.map_or(0, |t| count(t.ranges())) + t.country.map_or(0, |t| count(t.ranges())))
}

/// Reads and decodes the cache at `path`.
pub(crate) fn load(path: &Path, stamp: &[u8]) -> Result<Tables, CacheMiss> {
    let file = std::fs::File::open(path).map_err(|_| CacheMiss::Missing)?;
    let len = file.metadata().map_err(|_| CacheMiss::Missing)?.len();
    decode(file, len, stamp)
}

/// Writes `bytes` as the cache in `dir`: to a temporary name first, then
/// renamed over the old cache, so a reader never sees a half-written file
/// (and a crash mid-write leaves a file the checksum rejects at worst).
pub(crate) fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CACHE_FILE}.{}.tmp", std::process::id()));
    let result =
        std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dir.join(CACHE_FILE)));
    if result.is_err() {
        // The temporary file may not exist; nothing to report either way.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    /// Found by fuzzing: a header claiming a longer body than the file
    /// holds let a count size a huge allocation before the read failed.
    #[test]
    fn a_body_longer_than_the_file_is_damaged() {
        let bytes = [
            84, 75, 68, 78, 69, 78, 82, 67, 1, 0, 0, 0, 0, 92, 92, 92, 170, 163, 163, 163, 163,
            163, 163, 163, 163, 163, 179, 255, 255, 255, 124, 43,
        ];
        assert!(fuzz(&bytes).is_err());
    }

    use super::*;
    use crate::PrefixTableBuilder;
    use proptest::prelude::*;

    fn build_v4(ranges: &[(u32, u32, u8)]) -> PrefixTable<CountryCode> {
        let mut b = PrefixTableBuilder::new();
        for &(s, e, c) in ranges {
            let cc: CountryCode = format!("A{}", char::from(b'A' + c % 26)).parse().unwrap();
            b.insert_v4(s.min(e), s.max(e), cc).unwrap();
            b.insert_v6(u128::from(s.min(e)) << 90, u128::from(s.max(e)) << 90, cc)
                .unwrap();
        }
        b.build()
    }

    fn encoded(t: &PrefixTable<CountryCode>, names: &Names) -> Vec<u8> {
        let sources = vec![Source {
            name: "x.csv".into(),
            format: "csv",
            kind: SourceKind::Country,
            ranges: 3,
            database_type: Some("T".into()),
        }];
        encode(b"stamp", None, Some(t), names, &sources)
    }

    /// Rewrites the checksum after a change, so the structural checks of
    /// the decoder are what is exercised.
    fn reseal(b: &mut [u8]) {
        let crc = crc32fast::hash(&b[HEADER..]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trip_equals_the_built_table(
            ranges in prop::collection::vec((0u32..5000, 0u32..5000, 0u8..26), 0..60),
        ) {
            let t = build_v4(&ranges);
            let mut names = Names::new();
            names.intern("Example");
            names.freeze();
            let bytes = encoded(&t, &names);
            let back = decode(bytes.as_slice(), bytes.len() as u64, b"stamp").unwrap();
            prop_assert_eq!(back.country.as_ref(), Some(&t));
            prop_assert!(back.asn.is_none());
            prop_assert_eq!(&back.names, &names);
            prop_assert_eq!(back.sources.len(), 1);
            prop_assert_eq!(decode(bytes.as_slice(), bytes.len() as u64, b"other").err(), Some(CacheMiss::Stale));
        }

        #[test]
        fn resealed_damage_never_panics(
            ranges in prop::collection::vec((0u32..5000, 0u32..5000, 0u8..26), 1..20),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let t = build_v4(&ranges);
            let mut bytes = encoded(&t, &Names::new());
            let body = bytes.len() - HEADER;
            for (at, v) in &edits {
                let i = HEADER + at.index(body);
                bytes[i] = *v;
            }
            reseal(&mut bytes);
            // Either outcome is fine; what matters is no panic and no
            // oversized allocation.
            let _ = decode(bytes.as_slice(), bytes.len() as u64, b"stamp");
            let _ = fuzz(&bytes);
            let keep = HEADER + cut.index(body);
            bytes.truncate(keep);
            let len = (bytes.len() - HEADER) as u64;
            bytes[16..24].copy_from_slice(&len.to_le_bytes());
            reseal(&mut bytes);
            let _ = decode(bytes.as_slice(), bytes.len() as u64, b"stamp");
        }
    }

    #[test]
    fn fuzz_entry_reads_its_own_stamp() {
        let t = build_v4(&[(1, 2, 0), (10, 20, 1)]);
        let bytes = encoded(&t, &Names::new());
        assert_eq!(fuzz(&bytes), Ok(4));
        assert_eq!(fuzz(&bytes[..bytes.len() - 1]), Err(CacheMiss::Damaged));
        assert_eq!(fuzz(&[]), Err(CacheMiss::Damaged));
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        let t = build_v4(&[(1, 2, 0)]);
        let mut bytes = encoded(&t, &Names::new());
        // The stamp's length prefix sits first in the body.
        bytes[HEADER..HEADER + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(
            decode(bytes.as_slice(), bytes.len() as u64, b"stamp").err(),
            Some(CacheMiss::Damaged)
        );
    }
}
