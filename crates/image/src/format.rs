//! Format detection from magic bytes, and decoding limits.

use std::fmt;

use crate::Error;

/// A container format, recognised by its signature, never by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JPEG (JFIF, Exif, Adobe), baseline, progressive or arithmetic-coded.
    Jpeg,
    /// PNG (the first image of an APNG).
    Png,
    /// GIF (the first frame).
    Gif,
    /// WebP, lossy or lossless (the first frame of an animation).
    WebP,
    /// Windows bitmap.
    Bmp,
    /// TIFF (the first page), either byte order.
    Tiff,
}

impl Format {
    /// Detects the format from the first bytes of a file.
    ///
    /// Returns `None` when no supported signature matches. Sixteen bytes are enough.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Format::Gif)
        } else if bytes.len() >= 12
            && bytes.starts_with(b"RIFF")
            && bytes.get(8..12) == Some(b"WEBP")
        {
            Some(Format::WebP)
        } else if bytes.starts_with(b"BM") && bytes.len() >= 14 {
            Some(Format::Bmp)
        } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
            Some(Format::Tiff)
        } else {
            None
        }
    }

    /// Detects the format or says that the bytes are no supported image.
    pub(crate) fn require(bytes: &[u8]) -> Result<Format, Error> {
        Format::detect(bytes).ok_or(Error::UnknownFormat)
    }

    /// The lowercase name of the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::WebP => "WebP",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds on what a decoder may allocate for one image.
///
/// The pixel count is checked against the dimensions in the file header before any
/// pixel buffer is allocated, so a small file claiming billions of pixels (a
/// decompression bomb) fails fast with [`Error::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
}

impl Limits {
    /// The default limit: 128 million pixels, about 400 MB of RGB. That admits every
    /// camera and scanner image in common use while keeping one decode well within the
    /// memory of a small machine running one decode per core.
    pub const DEFAULT_MAX_PIXELS: u64 = 128 * 1024 * 1024;

    /// Checks header dimensions against the limit.
    pub(crate) fn check(&self, format: Format, width: u64, height: u64) -> Result<(), Error> {
        if width == 0 || height == 0 {
            return Err(Error::Corrupt {
                format,
                message: format!("the header gives an empty {width}x{height} image"),
            });
        }
        if width.saturating_mul(height) > self.max_pixels {
            return Err(Error::TooLarge {
                format,
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: Limits::DEFAULT_MAX_PIXELS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_signatures() {
        assert_eq!(Format::detect(b"\xFF\xD8\xFF\xE0"), Some(Format::Jpeg));
        assert_eq!(Format::detect(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(Format::detect(b"GIF89a"), Some(Format::Gif));
        assert_eq!(Format::detect(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(Format::detect(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(
            Format::detect(b"BM\0\0\0\0\0\0\0\0\0\0\0\0"),
            Some(Format::Bmp)
        );
        assert_eq!(Format::detect(b"MM\0*"), Some(Format::Tiff));
        assert_eq!(Format::detect(b"hello"), None);
        assert_eq!(Format::detect(b""), None);
    }

    #[test]
    fn limit_is_checked_without_overflow() {
        let l = Limits { max_pixels: 100 };
        assert!(l.check(Format::Png, 10, 10).is_ok());
        assert!(matches!(
            l.check(Format::Png, 10, 11),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            l.check(Format::Png, u64::MAX, u64::MAX),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            l.check(Format::Png, 0, 5),
            Err(Error::Corrupt { .. })
        ));
    }
}
