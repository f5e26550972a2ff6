//! PNG, mapped to the reference decoder's modes: 1-bit grey is bilevel, 2- and 4-bit
//! grey are scaled to 8 bits, 16-bit grey stays 16-bit, 16-bit colour keeps the high
//! byte, palette images keep their indices and palette. Transparency chunks do not
//! change the samples.

use std::io::Cursor;

use png::{BitDepth, ColorType, Decoder, DecodingError, Transformations};

use crate::pixels::{Decoded, Raw, alloc, palette_entries};
use crate::{Error, Format, Limits};

const FORMAT: Format = Format::Png;

fn convert_err(e: DecodingError) -> Error {
    match e {
        DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated { format: FORMAT }
        }
        DecodingError::LimitsExceeded => Error::Corrupt {
            format: FORMAT,
            message: "an ancillary chunk is larger than the decoder accepts".to_owned(),
        },
        other => Error::Corrupt {
            format: FORMAT,
            message: other.to_string(),
        },
    }
}

/// Reads the dimensions from the IHDR chunk, which must come first.
fn header_size(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((w.into(), h.into()))
}

/// Expands packed `bits`-per-sample rows into one byte per sample, multiplied by `scale`.
fn unpack(packed: &[u8], width: usize, height: usize, bits: usize, scale: u8, out: &mut Vec<u8>) {
    let row_bytes = (width * bits).div_ceil(8);
    let per_byte = 8 / bits;
    let mask = (1u16 << bits) as u8 - 1;
    for row in packed.chunks(row_bytes).take(height) {
        let mut left = width;
        for &byte in row {
            for k in 0..per_byte {
                if left == 0 {
                    break;
                }
                let shift = 8 - bits * (k + 1);
                out.push(((byte >> shift) & mask) * scale);
                left -= 1;
            }
        }
    }
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    let (w, h) = header_size(bytes).ok_or_else(|| Error::Corrupt {
        format: FORMAT,
        message: "the IHDR chunk is missing or cut short".to_owned(),
    })?;
    limits.check(FORMAT, w, h)?;
    let mut decoder = Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(Transformations::IDENTITY);
    // The reference decoder does not verify the checksums of image data chunks.
    decoder.ignore_checksums(true);
    let mut reader = decoder.read_info().map_err(convert_err)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    let (color, depth) = (info.color_type, info.bit_depth);
    let palette = palette_entries(info.palette.as_deref().unwrap_or_default());
    let size = reader.output_buffer_size().ok_or(Error::OutOfMemory {
        width: w,
        height: h,
    })?;
    let mut buf: Vec<u8> = alloc(size, width, height)?;
    reader.next_frame(&mut buf).map_err(convert_err)?;
    let (wu, hu) = (width as usize, height as usize);
    let n = wu * hu;
    let raw = match (color, depth) {
        (ColorType::Grayscale, BitDepth::Sixteen) => Raw::I16(
            buf.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        (ColorType::Grayscale, BitDepth::Eight) => Raw::L(buf),
        (ColorType::Grayscale, d) => {
            let bits = d as usize;
            let mut out = alloc::<u8>(0, width, height)?;
            out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
                width: w,
                height: h,
            })?;
            // Pillow keeps 1-bit grey as bilevel (0 or 1 in the array view) and
            // stretches 2- and 4-bit grey to the full byte range.
            let scale = match bits {
                1 => 1,
                2 => 85,
                _ => 17,
            };
            unpack(&buf, wu, hu, bits, scale, &mut out);
            if bits == 1 {
                Raw::Bilevel(out)
            } else {
                Raw::L(out)
            }
        }
        (ColorType::Indexed, BitDepth::Eight) => Raw::P {
            indices: buf,
            palette,
        },
        (ColorType::Indexed, d) => {
            let mut out = Vec::new();
            out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
                width: w,
                height: h,
            })?;
            unpack(&buf, wu, hu, d as usize, 1, &mut out);
            Raw::P {
                indices: out,
                palette,
            }
        }
        (ColorType::Rgb, BitDepth::Sixteen) => Raw::Rgb(high_bytes(buf)),
        (ColorType::Rgb, _) => Raw::Rgb(buf),
        (ColorType::GrayscaleAlpha, BitDepth::Sixteen) => Raw::La(high_bytes(buf)),
        (ColorType::GrayscaleAlpha, _) => Raw::La(buf),
        (ColorType::Rgba, BitDepth::Sixteen) => Raw::Rgba(high_bytes(buf)),
        (ColorType::Rgba, _) => Raw::Rgba(buf),
    };
    Ok(Decoded { width, height, raw })
}

/// Keeps the high byte of big-endian 16-bit samples, in place.
fn high_bytes(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len() / 2;
    for i in 0..n {
        v[i] = v[2 * i];
    }
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_sub_byte_rows() {
        let mut out = Vec::new();
        // Two rows of 3 two-bit samples: 0b00_01_10_xx, 0b11_00_01_xx.
        unpack(&[0b0001_1000, 0b1100_0100], 3, 2, 2, 85, &mut out);
        assert_eq!(out, [0, 85, 170, 255, 0, 85]);
    }

    #[test]
    fn keeps_high_bytes() {
        assert_eq!(high_bytes(vec![1, 2, 3, 4]), [1, 3]);
    }
}
