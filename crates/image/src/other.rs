//! BMP and TIFF through the `image` crate's decoders.
//!
//! These formats are lossless, so the samples are the file's own; what is mapped here
//! is the colour model. Palette and bilevel files arrive already expanded to colours,
//! so for them both colour policies give the `Colour::Rgb` result.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::pixels::{Decoded, Raw};
use crate::{Error, Format, Limits};

fn convert_err(format: Format, e: ImageError) -> Error {
    match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated { format }
        }
        ImageError::Unsupported(u) => Error::Unsupported {
            format,
            feature: u.to_string(),
        },
        ImageError::Limits(l) => Error::Corrupt {
            format,
            message: l.to_string(),
        },
        other => Error::Corrupt {
            format,
            message: other.to_string(),
        },
    }
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits, format: Format) -> Result<Decoded, Error> {
    let image_format = match format {
        Format::Bmp => ImageFormat::Bmp,
        _ => ImageFormat::Tiff,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut lim = image::Limits::default();
    // Four 16-bit channels is the widest sample layout these decoders produce.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(lim);
    let decoder = reader.into_decoder().map_err(|e| convert_err(format, e))?;
    let (w, h) = decoder.dimensions();
    limits.check(format, w.into(), h.into())?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| convert_err(format, e))?;
    let (width, height) = (img.width(), img.height());
    let raw = match img {
        DynamicImage::ImageLuma8(b) => Raw::L(b.into_raw()),
        DynamicImage::ImageLumaA8(b) => Raw::La(b.into_raw()),
        DynamicImage::ImageRgb8(b) => Raw::Rgb(b.into_raw()),
        DynamicImage::ImageRgba8(b) => Raw::Rgba(b.into_raw()),
        DynamicImage::ImageLuma16(b) => Raw::I16(b.into_raw()),
        // 16-bit colour keeps the high byte, as the reference decoder's unpackers do.
        DynamicImage::ImageRgb16(b) => {
            Raw::Rgb(b.into_raw().iter().map(|v| (v >> 8) as u8).collect())
        }
        DynamicImage::ImageRgba16(b) => {
            Raw::Rgba(b.into_raw().iter().map(|v| (v >> 8) as u8).collect())
        }
        DynamicImage::ImageLumaA16(b) => {
            Raw::La(b.into_raw().iter().map(|v| (v >> 8) as u8).collect())
        }
        other => Raw::Rgb(other.to_rgb8().into_raw()),
    };
    Ok(Decoded { width, height, raw })
}
