//! GIF, first frame, as the reference decoder renders it: palette indices on a canvas
//! the size of the logical screen (grown to hold the frame if the frame sticks out),
//! filled with the transparent index when there is one and with index 0 otherwise. The
//! frame's colour table (local, else global) is the palette.

use std::io::Cursor;

use gif::{ColorOutput, DecodeOptions, DecodingError, MemoryLimit};

use crate::pixels::{Decoded, Raw, alloc, palette_entries};
use crate::{Error, Format, Limits};

const FORMAT: Format = Format::Gif;

fn convert_err(e: DecodingError) -> Error {
    match e {
        DecodingError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated { format: FORMAT }
        }
        other => Error::Corrupt {
            format: FORMAT,
            message: other.to_string(),
        },
    }
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    let screen_w = u16::from_le_bytes([
        bytes.get(6).copied().unwrap_or(0),
        bytes.get(7).copied().unwrap_or(0),
    ]);
    let screen_h = u16::from_le_bytes([
        bytes.get(8).copied().unwrap_or(0),
        bytes.get(9).copied().unwrap_or(0),
    ]);
    // The logical screen bounds the canvas; refuse a bomb before the decoder runs.
    limits.check(FORMAT, screen_w.max(1).into(), screen_h.max(1).into())?;
    let mut options = DecodeOptions::new();
    options.set_color_output(ColorOutput::Indexed);
    // The frame buffer is bounded by the pixel limit, checked before it is filled.
    let cap = usize::try_from(limits.max_pixels).unwrap_or(usize::MAX);
    options.set_memory_limit(MemoryLimit::Bytes(
        std::num::NonZeroU64::new(cap.max(1) as u64).unwrap_or(std::num::NonZeroU64::MIN),
    ));
    options.check_lzw_end_code(false);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(convert_err)?;
    let global: Option<Vec<u8>> = decoder.global_palette().map(<[u8]>::to_vec);
    let info = decoder
        .next_frame_info()
        .map_err(convert_err)?
        .ok_or_else(|| Error::Corrupt {
            format: FORMAT,
            message: "the file holds no frame".to_owned(),
        })?;
    let (left, top) = (u32::from(info.left), u32::from(info.top));
    let (fw, fh) = (u32::from(info.width), u32::from(info.height));
    let width = u32::from(screen_w).max(left + fw);
    let height = u32::from(screen_h).max(top + fh);
    limits.check(FORMAT, width.into(), height.into())?;
    limits.check(FORMAT, fw.max(1).into(), fh.max(1).into())?;
    let transparent = info.transparent;
    let local: Option<Vec<u8>> = info.palette.clone();
    let mut frame: Vec<u8> = alloc((fw as usize) * (fh as usize), width, height)?;
    decoder.read_into_buffer(&mut frame).map_err(convert_err)?;

    let fill = transparent.unwrap_or(0);
    let mut canvas: Vec<u8> = alloc((width as usize) * (height as usize), width, height)?;
    canvas.iter_mut().for_each(|p| *p = fill);
    if fw > 0 {
        for (y, row) in frame.chunks_exact(fw as usize).enumerate() {
            let start = ((top as usize) + y) * (width as usize) + left as usize;
            if let Some(dst) = canvas.get_mut(start..start + row.len()) {
                dst.copy_from_slice(row);
            }
        }
    }
    let table = local.or(global).unwrap_or_default();
    let palette = palette_entries(&table);
    // A missing palette, or one that maps every index to the grey of the same value,
    // makes the reference decoder report a greyscale image whose values are the indices.
    let identity = palette
        .iter()
        .enumerate()
        .all(|(i, c)| c.iter().all(|&v| usize::from(v) == i));
    let raw = if identity {
        Raw::L(canvas)
    } else {
        Raw::P {
            indices: canvas,
            palette,
        }
    };
    Ok(Decoded { width, height, raw })
}
