//! The on-disk format: a fixed header, then every array of every segment.
//!
//! ```text
//! header (64 bytes, little-endian)
//!   magic "TKDNIDX\0" | version u32 | header length u32 | segments u32 |
//!   reserved u32 | tail entries u64 | body length u64 | body CRC-32 u32 | zero padding
//! body, per segment
//!   entries u64 | dead ids u64 | id words u64 | zero u64
//!   hashes [u64; 4] x n
//!   ids: block bases u64 x ceil(n / 64) | block starts u32 x (ceil(n / 64) + 1)
//!        | id words u64 x id words
//!   per slot (16): count bytes u32 | words u32 | starts kind u32 | zero u32
//!        | bucket starts: (kind 0) block bases u32 x ceil((buckets + 1) / 64)
//!          and offsets u16 x (buckets + 1), or (kind 1) u32 x (buckets + 1)
//!        | words u32 x words
//!   dead ids u64 x dead
//! then the tail: hashes [u64; 4] x tail | ids u64 x tail
//! ```
//!
//! Version 4 stores each slot as one array of buckets of packed postings
//! with its bucket starts (the bucket count follows from the entry count),
//! and ids packed in blocks (see the `mih` module).
//!
//! Arrays are read straight into their final vectors, so opening costs one
//! sequential read, a checksum and an invariant check; nothing is rebuilt.
//! Every length is checked against the bytes left before anything is
//! allocated, so a damaged or hostile file yields an error, never a panic or
//! a huge allocation.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::flat::FlatIndex;
use crate::live::{Index, Segment};
use crate::mih::{Ids, MihIndex, SLOTS, START_BLOCK, Shape, SlotTable, Starts};
use crate::{EntryId, Error, Words};

const MAGIC: [u8; 8] = *b"TKDNIDX\0";
/// The format version this build reads and writes.
pub(crate) const VERSION: u32 = 4;
const HEADER_LEN: usize = 64;
const SEGMENT_HEADER_LEN: u64 = 32;

/// Integers the file stores little-endian.
trait LeInt: bytemuck::Pod {
    /// Converts between this machine's order and little-endian (the same
    /// swap both ways).
    fn swap_le(self) -> Self;
}

macro_rules! le_int {
    ($($t:ty),*) => {
        $(impl LeInt for $t {
            fn swap_le(self) -> Self {
                self.to_le()
            }
        })*
    };
}

le_int!(u16, u32, u64);

struct Body<W> {
    w: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Body<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.len += b.len() as u64;
        self.w.write_all(b)
    }

    fn ints<T: LeInt>(&mut self, v: &[T]) -> std::io::Result<()> {
        if cfg!(target_endian = "little") {
            self.bytes(bytemuck::cast_slice(v))
        } else {
            for chunk in v.chunks(4096) {
                let le: Vec<T> = chunk.iter().map(|x| x.swap_le()).collect();
                self.bytes(bytemuck::cast_slice(&le))?;
            }
            Ok(())
        }
    }

    fn words(&mut self, v: &[Words]) -> std::io::Result<()> {
        self.ints::<u64>(bytemuck::cast_slice(v))
    }
}

pub(crate) fn save(index: &Index, path: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = tmp_path(path);
    let file = File::create(&tmp).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    let result = (|| -> std::io::Result<()> {
        let w = write_index(index, BufWriter::with_capacity(1 << 20, file))?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the whole file to `w`: a placeholder header, the body, then the
/// real header once the body's length and checksum are known.
fn write_index<W: Write + Seek>(index: &Index, mut w: W) -> std::io::Result<W> {
    w.write_all(&[0u8; HEADER_LEN])?;
    let mut body = Body {
        w,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    for seg in &index.segments {
        write_segment(&mut body, seg)?;
    }
    body.words(&index.tail.hashes)?;
    let ids: Vec<u64> = index.tail.ids.iter().map(|i| i.0).collect();
    body.ints(&ids)?;
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    header[16..20].copy_from_slice(&(index.segments.len() as u32).to_le_bytes());
    header[24..32].copy_from_slice(&(index.tail.hashes.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&body.len.to_le_bytes());
    header[40..44].copy_from_slice(&body.crc.clone().finalize().to_le_bytes());
    let mut w = body.w;
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header)?;
    Ok(w)
}

/// The file bytes of `index`, in memory; for the fuzz target.
pub(crate) fn to_bytes(index: &Index) -> Vec<u8> {
    write_index(index, std::io::Cursor::new(Vec::new()))
        .map(|c| c.into_inner())
        .unwrap_or_default()
}

/// Makes `bytes` pass the header and checksum tests (right magic, version,
/// lengths and CRC), so that fuzzing reaches the structural checks behind
/// them; for the fuzz target.
pub(crate) fn seal(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let (header, body) = bytes.split_at_mut(HEADER_LEN);
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    header[32..40].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[40..44].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
}

/// Reads an index from bytes held in memory; for the fuzz target.
pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Index, Error> {
    read_index(bytes, bytes.len() as u64, Path::new("<memory>"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_segment<W: Write>(body: &mut Body<W>, seg: &Segment) -> std::io::Result<()> {
    let mih = &seg.mih;
    let n = mih.hashes.len() as u64;
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&n.to_le_bytes());
    h[8..16].copy_from_slice(&(seg.dead.len() as u64).to_le_bytes());
    h[16..24].copy_from_slice(&(mih.ids.bits.len() as u64).to_le_bytes());
    body.bytes(&h)?;
    body.words(&mih.hashes)?;
    body.ints(&mih.ids.bases)?;
    body.ints(&mih.ids.starts)?;
    body.ints(&mih.ids.bits)?;
    for s in &mih.slots {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&s.count_bytes.to_le_bytes());
        h[4..8].copy_from_slice(&(s.words.len() as u32).to_le_bytes());
        let wide = matches!(s.starts, Starts::Wide(_));
        h[8..12].copy_from_slice(&u32::from(wide).to_le_bytes());
        body.bytes(&h)?;
        match &s.starts {
            Starts::Packed { blocks, rel } => {
                body.ints(blocks)?;
                body.ints(rel)?;
            }
            Starts::Wide(v) => body.ints(v)?,
        }
        body.ints(&s.words)?;
    }
    let mut dead: Vec<u64> = seg.dead.iter().map(|i| i.0).collect();
    dead.sort_unstable();
    body.ints(&dead)
}

/// A reader that counts what is left and checksums what it reads.
struct Source<R> {
    r: R,
    left: u64,
    crc: crc32fast::Hasher,
    path: PathBuf,
}

impl<R: Read> Source<R> {
    fn truncated(&self, what: &str) -> Error {
        Error::Truncated {
            path: self.path.clone(),
            detail: format!("the body ends inside {what}"),
        }
    }

    /// Fails unless `count` items of `size` bytes are left.
    fn reserve(&self, count: u64, size: u64, what: &str) -> Result<usize, Error> {
        match count.checked_mul(size) {
            Some(b) if b <= self.left => usize::try_from(count).map_err(|_| self.truncated(what)),
            _ => Err(self.truncated(what)),
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), Error> {
        if buf.len() as u64 > self.left {
            return Err(self.truncated(what));
        }
        self.r.read_exact(buf).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.crc.update(buf);
        self.left -= buf.len() as u64;
        Ok(())
    }

    fn ints<T: LeInt>(&mut self, count: u64, what: &str) -> Result<Vec<T>, Error> {
        let n = self.reserve(count, std::mem::size_of::<T>() as u64, what)?;
        let mut v: Vec<T> = crate::mem::zeroed(n);
        self.fill(bytemuck::cast_slice_mut(&mut v), what)?;
        for x in &mut v {
            *x = x.swap_le();
        }
        Ok(v)
    }

    fn words(&mut self, count: u64, what: &str) -> Result<Vec<Words>, Error> {
        let n = self.reserve(count, 32, what)?;
        let mut v: Vec<Words> = crate::mem::zeroed(n);
        self.fill(bytemuck::cast_slice_mut(&mut v), what)?;
        for w in &mut v {
            for x in w.iter_mut() {
                *x = u64::from_le(*x);
            }
        }
        Ok(v)
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

pub(crate) fn open(path: &Path) -> Result<Index, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    read_index(BufReader::with_capacity(1 << 20, file), file_len, path)
}

/// Reads a whole index file of `file_len` bytes from `r`.
fn read_index<R: Read>(mut r: R, file_len: u64, path: &Path) -> Result<Index, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        // Too short for a header: say "bad magic" when even the magic is wrong.
        let mut start = Vec::new();
        r.read_to_end(&mut start).map_err(io)?;
        if !MAGIC.starts_with(&start[..start.len().min(8)]) || start.is_empty() {
            return Err(Error::BadMagic {
                path: path.to_owned(),
            });
        }
        return Err(Error::Truncated {
            path: path.to_owned(),
            detail: format!("{file_len} bytes, shorter than the {HEADER_LEN}-byte header"),
        });
    }
    r.read_exact(&mut header).map_err(io)?;
    if header[0..8] != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_owned(),
        });
    }
    let version = le_u32(&header, 8);
    if version != VERSION {
        return Err(Error::Version {
            path: path.to_owned(),
            found: version,
            supported: VERSION,
        });
    }
    if le_u32(&header, 12) as usize != HEADER_LEN {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            what: "header length".into(),
        });
    }
    let n_segments = le_u32(&header, 16);
    let n_tail = le_u64(&header, 24);
    let body_len = le_u64(&header, 32);
    let crc = le_u32(&header, 40);
    if Some(file_len) != body_len.checked_add(HEADER_LEN as u64) {
        return Err(Error::Truncated {
            path: path.to_owned(),
            detail: format!(
                "header promises {body_len} body bytes, the file has {}",
                file_len - HEADER_LEN as u64
            ),
        });
    }
    let mut src = Source {
        r,
        left: body_len,
        crc: crc32fast::Hasher::new(),
        path: path.to_owned(),
    };
    let corrupt = |what: String| Error::Corrupt {
        path: path.to_owned(),
        what,
    };
    let mut segments = Vec::new();
    for s in 0..n_segments {
        // Each segment takes at least its header, which bounds the count.
        src.reserve(1, SEGMENT_HEADER_LEN, "a segment header")?;
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        src.fill(&mut h, "a segment header")?;
        let n = le_u64(&h, 0);
        let n_dead = le_u64(&h, 8);
        let id_words = le_u64(&h, 16);
        if le_u64(&h, 24) != 0 {
            return Err(corrupt(format!("segment {s} reserved field")));
        }
        let hashes = src.words(n, "the hashes")?;
        let blocks = n.div_ceil(64);
        let ids = Ids {
            len: usize::try_from(n).map_err(|_| corrupt(format!("segment {s} size")))?,
            bases: src.ints(blocks, "the id blocks")?,
            starts: src.ints(blocks + 1, "the id blocks")?,
            bits: src.ints(id_words, "the ids")?,
        };
        let mut slots = Vec::with_capacity(SLOTS);
        for i in 0..SLOTS {
            let mut sh = [0u8; 16];
            src.fill(&mut sh, "a slot header")?;
            let count_bytes = le_u32(&sh, 0);
            let n_words = u64::from(le_u32(&sh, 4));
            let buckets = Shape::of(n as usize).buckets() as u64;
            let starts = match (le_u32(&sh, 8), le_u32(&sh, 12)) {
                (0, 0) => Starts::Packed {
                    blocks: src.ints(
                        (buckets + 1).div_ceil(START_BLOCK as u64),
                        "the bucket starts",
                    )?,
                    rel: src.ints(buckets + 1, "the bucket starts")?,
                },
                (1, 0) => Starts::Wide(src.ints(buckets + 1, "the bucket starts")?),
                (x, y) => return Err(corrupt(format!("segment {s} slot {i} starts kind {x}/{y}"))),
            };
            let words = src.ints(n_words, "the postings")?;
            slots.push(SlotTable {
                count_bytes,
                starts,
                words,
            });
        }
        let dead: HashSet<EntryId> = src
            .ints(n_dead, "the dead ids")?
            .into_iter()
            .map(EntryId)
            .collect();
        segments.push(Segment::new(MihIndex::from_parts(hashes, ids, slots), dead));
    }
    let hashes = src.words(n_tail, "the tail hashes")?;
    let ids: Vec<EntryId> = src
        .ints(n_tail, "the tail ids")?
        .into_iter()
        .map(EntryId)
        .collect();
    if src.left != 0 {
        return Err(Error::Truncated {
            path: path.to_owned(),
            detail: format!("{} unexpected bytes after the tail", src.left),
        });
    }
    if src.crc.finalize() != crc {
        return Err(Error::Checksum {
            path: path.to_owned(),
        });
    }
    // Checked after the checksum, so accidental damage reports as such.
    for (s, seg) in segments.iter().enumerate() {
        seg.mih
            .check()
            .map_err(|e| corrupt(format!("segment {s}: {e}")))?;
    }
    let unique: HashSet<&EntryId> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(corrupt("duplicate ids in the tail".into()));
    }
    Ok(Index::from_parts(segments, FlatIndex { hashes, ids }))
}
