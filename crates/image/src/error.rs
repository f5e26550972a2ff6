//! The crate's error type.

use std::path::PathBuf;

use crate::Format;

/// Everything that can go wrong while decoding or hashing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not start with the signature of a supported format.
    #[error(
        "not a supported image: the file does not start with a JPEG, PNG, GIF, WebP, BMP or TIFF \
         signature; check that it is an image and not truncated at the start"
    )]
    UnknownFormat,
    /// The header announces more pixels than the configured limit allows.
    #[error(
        "{format} image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels; \
         raise the limit (--max-pixels) if the file is trusted"
    )]
    TooLarge {
        /// The detected format.
        format: Format,
        /// Width from the header.
        width: u64,
        /// Height from the header.
        height: u64,
        /// The limit in force.
        max_pixels: u64,
    },
    /// The file ends before the image data does.
    #[error(
        "{format} image is truncated: the data ends before the last pixel row; re-fetch the file"
    )]
    Truncated {
        /// The detected format.
        format: Format,
    },
    /// The codec rejected the data.
    #[error("{format} image is corrupt: {message}; the file cannot be decoded as it is")]
    Corrupt {
        /// The detected format.
        format: Format,
        /// The codec's own description of the problem.
        message: String,
    },
    /// The file is valid but uses a feature the reference pipeline cannot decode either.
    #[error(
        "{format} image uses an unsupported feature: {feature}; convert it to PNG or JPEG first"
    )]
    Unsupported {
        /// The detected format.
        format: Format,
        /// What is not supported.
        feature: String,
    },
    /// Memory for the pixel buffer could not be reserved.
    #[error("not enough memory for a {width}x{height} image; lower --max-pixels or free memory")]
    OutOfMemory {
        /// Width of the image.
        width: u64,
        /// Height of the image.
        height: u64,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The hasher refused the pixels.
    #[error("hashing failed: {0}")]
    Hash(#[from] takedown_pdq::Error),
}
