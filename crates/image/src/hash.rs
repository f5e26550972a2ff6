//! Bytes or files in, PDQ hashes out.

use std::cell::RefCell;
use std::path::Path;

use takedown_pdq::{Dihedral, Hasher, PdqHash, Quality};

use crate::{Colour, Error, Image, Limits, Pixels};

/// What to compute for each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Decoding bounds.
    pub limits: Limits,
    /// How colour modes become samples.
    pub colour: Colour,
    /// Also compute the eight dihedral hashes.
    pub dihedral: bool,
}

/// The hash of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    /// The hash of the image as stored (no orientation applied).
    pub hash: PdqHash,
    /// PDQ quality, 0 to 100.
    pub quality: Quality,
    /// All eight dihedral hashes, when asked for; `hashes[0]` equals `hash`.
    pub dihedral: Option<Dihedral>,
}

thread_local! {
    // One hasher per thread keeps its scratch buffers across the images of a batch.
    static HASHER: RefCell<Hasher> = RefCell::new(Hasher::new());
}

/// Hashes a decoded image with `hasher`.
pub fn hash_image_with(
    hasher: &mut Hasher,
    image: &Image,
    dihedral: bool,
) -> Result<Hashed, Error> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if dihedral {
        let d = match image.pixels() {
            Pixels::Gray(v) => hasher.dihedral_gray(v, w, h)?,
            Pixels::Rgb(v) => hasher.dihedral_rgb(v, w, h)?,
        };
        Ok(Hashed {
            hash: d.hashes[0],
            quality: d.quality,
            dihedral: Some(d),
        })
    } else {
        let (hash, quality) = match image.pixels() {
            Pixels::Gray(v) => hasher.hash_gray(v, w, h)?,
            Pixels::Rgb(v) => hasher.hash_rgb(v, w, h)?,
        };
        Ok(Hashed {
            hash,
            quality,
            dihedral: None,
        })
    }
}

/// Hashes a decoded image with this thread's hasher.
pub fn hash_image(image: &Image, dihedral: bool) -> Result<Hashed, Error> {
    HASHER.with(|h| match h.try_borrow_mut() {
        Ok(mut hasher) => hash_image_with(&mut hasher, image, dihedral),
        Err(_) => hash_image_with(&mut Hasher::new(), image, dihedral),
    })
}

/// Decodes and hashes an image file held in memory.
pub fn hash_bytes(bytes: &[u8], options: &Options) -> Result<Hashed, Error> {
    let image = crate::decode_as(bytes, &options.limits, options.colour)?;
    hash_image(&image, options.dihedral)
}

/// Reads, decodes and hashes an image file.
pub fn hash_file(path: &Path, options: &Options) -> Result<Hashed, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    hash_bytes(&bytes, options)
}
