//! WebP through libwebp's animation decoder, the path the reference decoder takes for
//! every WebP file, still or animated: the first frame is rendered onto the canvas as
//! non-premultiplied RGBA, and the alpha channel is then dropped.
#![allow(unsafe_code)]

use libwebp_sys as ffi;

use crate::pixels::{Decoded, Raw, alloc};
use crate::{Error, Format, Limits};

const FORMAT: Format = Format::WebP;

/// Owns a libwebp animation decoder and deletes it on drop.
struct AnimDecoder(*mut ffi::WebPAnimDecoder);

impl Drop for AnimDecoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `WebPAnimDecoderNew`, is non-null and is
        // deleted exactly once, here.
        unsafe { ffi::WebPAnimDecoderDelete(self.0) };
    }
}

fn corrupt(message: &str) -> Error {
    Error::Corrupt {
        format: FORMAT,
        message: message.to_owned(),
    }
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    // SAFETY: an all-zero `WebPBitstreamFeatures` is valid plain data; libwebp fills it.
    let mut features: ffi::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: `bytes` is a live slice of the given length; `features` is writable.
    let status = unsafe { ffi::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    match status {
        ffi::VP8StatusCode::VP8_STATUS_OK => {}
        ffi::VP8StatusCode::VP8_STATUS_NOT_ENOUGH_DATA => {
            return Err(Error::Truncated { format: FORMAT });
        }
        _ => return Err(corrupt("the RIFF header or first chunk is invalid")),
    }
    let (w, h) = (
        u64::try_from(features.width).unwrap_or(0),
        u64::try_from(features.height).unwrap_or(0),
    );
    limits.check(FORMAT, w, h)?;

    // SAFETY: an all-zero options struct is valid; `WebPAnimDecoderOptionsInit` sets it.
    let mut options: ffi::WebPAnimDecoderOptions = unsafe { std::mem::zeroed() };
    // SAFETY: `options` is writable and of the type the function expects.
    if unsafe { ffi::WebPAnimDecoderOptionsInit(&mut options) } == 0 {
        return Err(corrupt(
            "libwebp rejected its own default options (version mismatch)",
        ));
    }
    options.color_mode = ffi::WEBP_CSP_MODE::MODE_RGBA;
    options.use_threads = 0;
    let data = ffi::WebPData {
        bytes: bytes.as_ptr(),
        size: bytes.len(),
    };
    // SAFETY: `data` points into `bytes`, which outlives the decoder (dropped at the end
    // of this function); `options` was initialised above.
    let raw_dec = unsafe { ffi::WebPAnimDecoderNew(&data, &options) };
    if raw_dec.is_null() {
        return Err(corrupt("the container is malformed or truncated"));
    }
    let dec = AnimDecoder(raw_dec);
    // SAFETY: all-zero info is valid plain data; the decoder fills it.
    let mut info: ffi::WebPAnimInfo = unsafe { std::mem::zeroed() };
    // SAFETY: `dec.0` is a live decoder; `info` is writable.
    if unsafe { ffi::WebPAnimDecoderGetInfo(dec.0, &mut info) } == 0 {
        return Err(corrupt("cannot read the canvas size"));
    }
    let (width, height) = (info.canvas_width, info.canvas_height);
    limits.check(FORMAT, width.into(), height.into())?;
    let mut frame: *mut u8 = std::ptr::null_mut();
    let mut timestamp: std::os::raw::c_int = 0;
    // SAFETY: `dec.0` is live; both out-pointers are writable locals.
    if unsafe { ffi::WebPAnimDecoderGetNext(dec.0, &mut frame, &mut timestamp) } == 0
        || frame.is_null()
    {
        return Err(Error::Corrupt {
            format: FORMAT,
            message: "the first frame cannot be decoded (bad or truncated bitstream)".to_owned(),
        });
    }
    let n = (width as usize) * (height as usize);
    // SAFETY: libwebp returns a canvas of `canvas_width * canvas_height` RGBA pixels,
    // owned by the decoder and valid until the next call on it or its deletion; it is
    // copied out before `dec` is dropped.
    let canvas = unsafe { std::slice::from_raw_parts(frame, n * 4) };
    let mut rgb: Vec<u8> = alloc(0, width, height)?;
    rgb.try_reserve_exact(n * 3)
        .map_err(|_| Error::OutOfMemory {
            width: width.into(),
            height: height.into(),
        })?;
    for px in canvas.chunks_exact(4) {
        rgb.extend_from_slice(px.get(..3).unwrap_or(&[0, 0, 0]));
    }
    drop(dec);
    Ok(Decoded {
        width,
        height,
        raw: Raw::Rgb(rgb),
    })
}
