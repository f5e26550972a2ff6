//! Image decoding with the reference PDQ pipeline's pixel semantics, and file hashing.
//!
//! The decoders reproduce, sample for sample, what the widely used Python pipeline
//! (Pillow with libjpeg-turbo and libwebp, then numpy, then the C++ PDQ core) feeds the
//! hasher, so hashes computed here equal that pipeline's bit for bit.
//!
//! Key types: [`Image`] (decoded pixels), [`Limits`] (allocation bounds checked from
//! the header), [`Colour`] (how colour modes become RGB), [`Options`] and [`Hashed`]
//! (what [`hash_file`] and [`hash_bytes`] compute and return).
//!
//! ```
//! use takedown_image::{decode, Limits, Pixels};
//!
//! // A 1x1 white greyscale PNG.
//! let png = [
//!     0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48,
//!     0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00,
//!     0x00, 0x3A, 0x7E, 0x9B, 0x55, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78,
//!     0x9C, 0x63, 0xF8, 0x0F, 0x00, 0x01, 0x01, 0x01, 0x00, 0x1B, 0xB6, 0xEE, 0x56, 0x00,
//!     0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
//! ];
//! let image = decode(&png, &Limits::default())?;
//! assert_eq!((image.width(), image.height()), (1, 1));
//! assert_eq!(image.pixels(), &Pixels::Gray(vec![255]));
//!
//! let tiny = Limits { max_pixels: 0 };
//! let hashed = takedown_image::hash_bytes(&png, &takedown_image::Options::default())?;
//! assert_eq!(hashed.quality.get(), 0); // Images under 5 pixels a side hash to zero.
//! assert!(decode(&png, &tiny).is_err());
//! # Ok::<(), takedown_image::Error>(())
//! ```
#![deny(unsafe_code)]

mod error;
mod format;
mod gif;
mod hash;
mod jpeg;
mod other;
mod pixels;
mod png;
mod webp;

pub use error::Error;
pub use format::{Format, Limits};
pub use hash::{Hashed, Options, hash_bytes, hash_file, hash_image, hash_image_with};
pub use pixels::{Colour, Image, Pixels};

use pixels::Decoded;

fn decode_raw(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    match Format::require(bytes)? {
        Format::Jpeg => jpeg::decode(bytes, limits),
        Format::Png => png::decode(bytes, limits),
        Format::WebP => webp::decode(bytes, limits),
        Format::Gif => gif::decode(bytes, limits),
        f @ (Format::Bmp | Format::Tiff) => other::decode(bytes, limits, f),
    }
}

/// Decodes an image file held in memory, with the default colour policy
/// ([`Colour::Pytx`]).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, Error> {
    decode_as(bytes, limits, Colour::default())
}

/// Decodes an image file held in memory, turning its colour mode into samples as
/// `colour` says.
pub fn decode_as(bytes: &[u8], limits: &Limits, colour: Colour) -> Result<Image, Error> {
    Ok(decode_raw(bytes, limits)?.into_image(colour))
}
