//! PDQ perceptual hashing, bit-exact with Meta's reference C++ core.
//!
//! Pixels in, a 256-bit [`PdqHash`] and a [`Quality`] score out. A [`Hasher`]
//! keeps its scratch buffers between images; [`Dihedral`] holds the hashes of
//! all eight rotations and mirrors (see [`Transform`]), which the reference
//! derives from one DCT. The crate does no I/O: decoding lives elsewhere.
//!
//! ```
//! use takedown_pdq::{Hasher, Transform};
//!
//! // A 32x24 RGB image with a diagonal gradient.
//! let (w, h) = (32, 24);
//! let rgb: Vec<u8> = (0..w * h)
//!     .flat_map(|i| {
//!         let (x, y) = (i % w, i / w);
//!         [(x * 8) as u8, (y * 10) as u8, ((x + y) * 4) as u8]
//!     })
//!     .collect();
//! let mut hasher = Hasher::new();
//! let (hash, quality) = hasher.hash_rgb(&rgb, w, h)?;
//! assert!(quality.get() <= 100);
//! let all = hasher.dihedral_rgb(&rgb, w, h)?;
//! assert_eq!(all.get(Transform::Orig).distance(&hash), 0);
//! # Ok::<(), takedown_pdq::Error>(())
//! ```
//!
//! Luma follows the industry's Python binding: `R*0.299 + G*0.587 + B*0.114`
//! evaluated in double precision and rounded to `f32`. Greyscale input is
//! treated as `R = G = B`.
#![deny(unsafe_code)]

mod dct;
mod downsample;
mod hash;
mod luma;

pub use hash::{PdqHash, Quality, Transform};
pub use luma::{luma_of_grey, luma_of_rgb};

use dct::{Block16, Block64};
use downsample::Scratch;
use luma::Source;

/// Images with fewer rows or columns than this hash to zero with quality 0.
pub const MIN_DIMENSION: usize = 5;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A hash string was not 64 hexadecimal digits.
    #[error("invalid PDQ hash {0:?}: expected 64 hexadecimal digits")]
    Hex(String),
    /// A quality was outside 0..=100.
    #[error("invalid PDQ quality {0}: expected 0 to 100")]
    Quality(i64),
    /// A transform name was not one of the eight dihedral names.
    #[error(
        "unknown transform {0:?}: expected orig, rot90, rot180, rot270, flipx, flipy, flipplus1 or flipminus1"
    )]
    Transform(String),
    /// A pixel buffer's length did not match its width and height.
    #[error(
        "pixel buffer holds {actual} values but a {width}x{height} image with {channels} channel(s) needs {expected}; pass tightly packed rows and the true dimensions"
    )]
    BufferLength {
        /// Columns claimed.
        width: usize,
        /// Rows claimed.
        height: usize,
        /// Values per pixel in this buffer format.
        channels: usize,
        /// Values the dimensions require.
        expected: usize,
        /// Values the buffer holds.
        actual: usize,
    },
    /// The dimensions overflow the address space.
    #[error(
        "image dimensions {width}x{height} are too large to address; downscale the image first"
    )]
    TooLarge {
        /// Columns claimed.
        width: usize,
        /// Rows claimed.
        height: usize,
    },
}

/// The hashes of an image under all eight dihedral transforms, with the
/// quality they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dihedral {
    /// Hashes in [`Transform::ALL`] order.
    pub hashes: [PdqHash; 8],
    /// The quality of the untransformed image (transforms do not change it).
    pub quality: Quality,
}

impl Dihedral {
    /// The hash of the image after `t`.
    pub fn get(&self, t: Transform) -> PdqHash {
        self.hashes[t.index()]
    }

    /// `(transform, hash)` pairs in [`Transform::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Transform, PdqHash)> + '_ {
        Transform::ALL
            .iter()
            .copied()
            .zip(self.hashes.iter().copied())
    }
}

/// The reference's 16x16 floating-point DCT output, before the median step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DctBlock(pub [[f32; 16]; 16]);

impl DctBlock {
    /// The hash these coefficients give: bit `16*i + j` is set where
    /// coefficient `[i][j]` exceeds their median.
    pub fn to_hash(&self) -> PdqHash {
        dct::bits(&self.0)
    }
}

/// A PDQ hasher with reusable scratch buffers.
///
/// Hashing allocates about 4 bytes per pixel the first time a hasher sees an
/// image of a given size; later images of that size or smaller reuse it.
pub struct Hasher {
    scratch: Scratch,
    block: Box<Block64>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            scratch: Scratch::default(),
            block: Box::new([[0.0; 64]; 64]),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

/// Checks `len == width * height * channels`.
fn check(len: usize, width: usize, height: usize, channels: usize) -> Result<(), Error> {
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .ok_or(Error::TooLarge { width, height })?;
    if len != expected {
        return Err(Error::BufferLength {
            width,
            height,
            channels,
            expected,
            actual: len,
        });
    }
    Ok(())
}

impl Hasher {
    /// A hasher with empty scratch buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes tightly packed 8-bit RGB (3 bytes a pixel, rows top to bottom).
    pub fn hash_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(PdqHash, Quality), Error> {
        check(rgb.len(), width, height, 3)?;
        Ok(self.hash(Source::Rgb(rgb), width, height))
    }

    /// Hashes tightly packed 8-bit greyscale, treated as `R = G = B`.
    pub fn hash_gray(
        &mut self,
        gray: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(PdqHash, Quality), Error> {
        check(gray.len(), width, height, 1)?;
        Ok(self.hash(Source::Grey(gray), width, height))
    }

    /// Hashes a luma plane given as `f32`, as the reference's
    /// `pdqHash256FromFloatLuma` does.
    ///
    /// A 64x64 plane is taken as already downsampled and is not blurred,
    /// matching the reference.
    pub fn hash_luma(
        &mut self,
        luma: &[f32],
        width: usize,
        height: usize,
    ) -> Result<(PdqHash, Quality), Error> {
        check(luma.len(), width, height, 1)?;
        Ok(self.hash(Source::Luma(luma), width, height))
    }

    /// All eight dihedral hashes of tightly packed 8-bit RGB.
    pub fn dihedral_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Dihedral, Error> {
        check(rgb.len(), width, height, 3)?;
        Ok(self.dihedral(Source::Rgb(rgb), width, height))
    }

    /// All eight dihedral hashes of 8-bit greyscale.
    pub fn dihedral_gray(
        &mut self,
        gray: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Dihedral, Error> {
        check(gray.len(), width, height, 1)?;
        Ok(self.dihedral(Source::Grey(gray), width, height))
    }

    /// All eight dihedral hashes of an `f32` luma plane, as the reference's
    /// `pdqDihedralHash256esFromFloatLuma` does (which always blurs, even at
    /// 64x64).
    pub fn dihedral_luma(
        &mut self,
        luma: &[f32],
        width: usize,
        height: usize,
    ) -> Result<Dihedral, Error> {
        check(luma.len(), width, height, 1)?;
        Ok(self.dihedral(Source::Luma(luma), width, height))
    }

    /// The DCT coefficients and quality of 8-bit RGB, as the reference's
    /// `pdqFloat256FromFloatLuma` returns them (no minimum size; an empty
    /// image gives zeros).
    pub fn dct_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(DctBlock, Quality), Error> {
        check(rgb.len(), width, height, 3)?;
        Ok(self.float(Source::Rgb(rgb), width, height, true))
    }

    /// The DCT coefficients and quality of an `f32` luma plane; see
    /// [`Hasher::dct_rgb`].
    pub fn dct_luma(
        &mut self,
        luma: &[f32],
        width: usize,
        height: usize,
    ) -> Result<(DctBlock, Quality), Error> {
        check(luma.len(), width, height, 1)?;
        Ok(self.float(Source::Luma(luma), width, height, true))
    }

    /// Blurs and decimates into `self.block`, or copies a 64x64 plane when
    /// `shortcut` is set.
    fn downsample(&mut self, src: Source<'_>, width: usize, height: usize, shortcut: bool) {
        if shortcut && width == 64 && height == 64 {
            for (i, row) in self.block.iter_mut().enumerate() {
                src.fill_rows(i, 64, row);
            }
        } else {
            downsample::blur_and_decimate(src, width, height, &mut self.scratch, &mut self.block);
        }
    }

    fn float(
        &mut self,
        src: Source<'_>,
        width: usize,
        height: usize,
        shortcut: bool,
    ) -> (DctBlock, Quality) {
        if width == 0 || height == 0 {
            return (DctBlock([[0.0; 16]; 16]), Quality::default());
        }
        self.downsample(src, width, height, shortcut);
        let q = dct::quality(&self.block);
        (DctBlock(dct::dct64_to_16(&self.block)), q)
    }

    fn hash(&mut self, src: Source<'_>, width: usize, height: usize) -> (PdqHash, Quality) {
        if width < MIN_DIMENSION || height < MIN_DIMENSION {
            return (PdqHash::ZERO, Quality::default());
        }
        let (b, q) = self.float(src, width, height, true);
        (dct::bits(&b.0), q)
    }

    fn dihedral(&mut self, src: Source<'_>, width: usize, height: usize) -> Dihedral {
        if width < MIN_DIMENSION || height < MIN_DIMENSION {
            return Dihedral {
                hashes: [PdqHash::ZERO; 8],
                quality: Quality::default(),
            };
        }
        let (b, quality): (DctBlock, Quality) = self.float(src, width, height, false);
        let blocks: [Block16; 8] = dct::dihedral_blocks(&b.0);
        Dihedral {
            hashes: blocks.map(|blk| dct::bits(&blk)),
            quality,
        }
    }
}

/// Hashes 8-bit RGB with a fresh [`Hasher`].
pub fn pdq_rgb(rgb: &[u8], width: usize, height: usize) -> Result<(PdqHash, Quality), Error> {
    Hasher::new().hash_rgb(rgb, width, height)
}

/// Hashes 8-bit greyscale with a fresh [`Hasher`].
pub fn pdq_gray(gray: &[u8], width: usize, height: usize) -> Result<(PdqHash, Quality), Error> {
    Hasher::new().hash_gray(gray, width, height)
}

/// Hashes an `f32` luma plane with a fresh [`Hasher`].
pub fn pdq_luma(luma: &[f32], width: usize, height: usize) -> Result<(PdqHash, Quality), Error> {
    Hasher::new().hash_luma(luma, width, height)
}

/// All eight dihedral hashes of 8-bit RGB, with a fresh [`Hasher`].
pub fn pdq_dihedral_rgb(rgb: &[u8], width: usize, height: usize) -> Result<Dihedral, Error> {
    Hasher::new().dihedral_rgb(rgb, width, height)
}

/// All eight dihedral hashes of 8-bit greyscale, with a fresh [`Hasher`].
pub fn pdq_dihedral_gray(gray: &[u8], width: usize, height: usize) -> Result<Dihedral, Error> {
    Hasher::new().dihedral_gray(gray, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_mismatched_buffers() {
        let mut h = Hasher::new();
        assert!(matches!(
            h.hash_rgb(&[0; 10], 2, 2),
            Err(Error::BufferLength { expected: 12, .. })
        ));
        assert!(matches!(
            h.hash_gray(&[0; 10], usize::MAX, 2),
            Err(Error::TooLarge { .. })
        ));
        assert!(h.dihedral_luma(&[0.0; 3], 1, 2).is_err());
    }

    #[test]
    fn tiny_images_hash_to_zero() {
        let mut h = Hasher::new();
        let (hash, q) = h.hash_gray(&[9; 4 * 100], 4, 100).unwrap();
        assert_eq!((hash, q.get()), (PdqHash::ZERO, 0));
        let d = h.dihedral_rgb(&[], 0, 0).unwrap();
        assert_eq!(d.hashes, [PdqHash::ZERO; 8]);
        let (b, _) = h.dct_rgb(&[], 0, 7).unwrap();
        assert_eq!(b.0, [[0.0; 16]; 16]);
    }

    #[test]
    fn hasher_reuse_gives_same_answers() {
        let img: Vec<u8> = (0..200 * 150 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let small: Vec<u8> = (0..30 * 20).map(|i| (i * 31 % 256) as u8).collect();
        let mut h = Hasher::new();
        let a = h.hash_rgb(&img, 200, 150).unwrap();
        let _ = h.hash_gray(&small, 30, 20).unwrap();
        let b = h.hash_rgb(&img, 200, 150).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, pdq_rgb(&img, 200, 150).unwrap());
    }
}
