//! JPEG through libjpeg (the libjpeg-turbo code base, built from source), configured as
//! the reference pipeline configures it: accurate integer IDCT, fancy upsampling and
//! block smoothing on, output in RGB, grey or CMYK by the number of components.
//!
//! libjpeg reports fatal errors through a callback that must not return. The callback
//! here unwinds (the C code is built with unwind tables for this), and the unwind is
//! caught at the edge of [`decode`], so a corrupt file becomes an [`Error`], never an
//! abort.
#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use mozjpeg::{ColorSpace, DctMethod, Decompress};
use mozjpeg_sys as ffi;

use crate::pixels::{Decoded, Raw, alloc};
use crate::{Error, Format, Limits};

/// Why libjpeg stopped, carried by the unwind.
enum Abort {
    /// The data ended early.
    Truncated,
    /// A fatal libjpeg error with its message.
    Fatal(String),
}

/// Formats libjpeg's message for its current error code.
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    // SAFETY: `cinfo.err` points at the error manager installed in `error_mgr`, which
    // outlives every libjpeg call made on this `cinfo`.
    let Some(err) = (unsafe { cinfo.err.as_ref() }) else {
        return "unknown libjpeg error".to_owned();
    };
    let code = err.msg_code;
    let Some(format) = err.format_message else {
        return format!("libjpeg error code {code}");
    };
    let buffer = std::cell::UnsafeCell::new([0u8; 80]);
    // SAFETY: libjpeg's `format_message` writes at most JMSG_LENGTH_MAX (80) bytes,
    // NUL-terminated, into the buffer. The binding declares the buffer as a shared
    // reference; the bytes live in an `UnsafeCell`, so writing through it is allowed.
    unsafe { format(cinfo, &*buffer.get()) };
    let bytes = buffer.into_inner();
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// libjpeg's fatal error callback: unwinds to the `catch_unwind` in [`decode`].
extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let msg = message(cinfo);
    // `resume_unwind` skips the panic hook: a corrupt file is not a bug worth a backtrace.
    resume_unwind(Box::new(Abort::Fatal(msg)));
}

/// libjpeg's warning and trace callback. Corrupt-data warnings are ignored, as the
/// reference decoder ignores them; running out of data is fatal, as it is there.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    // SAFETY: as in `message`, `cinfo.err` is the live error manager.
    let Some(err) = (unsafe { cinfo.err.as_ref() }) else {
        return;
    };
    if level < 0 && err.msg_code == ffi::JWRN_JPEG_EOF as c_int {
        resume_unwind(Box::new(Abort::Truncated));
    }
}

/// An error manager whose callbacks unwind instead of calling `exit()` or `longjmp`.
fn error_mgr() -> ffi::jpeg_error_mgr {
    // SAFETY: an all-zero `jpeg_error_mgr` is a valid bit pattern (null pointers, zero
    // integers, `None` callbacks), and `jpeg_std_error` then fills every field.
    let mut err: ffi::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `err` is a valid, exclusively borrowed error manager.
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// Decodes a JPEG held in memory into the reference decoder's mode and samples.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, limits))) {
        Ok(result) => result,
        Err(payload) => Err(match payload.downcast::<Abort>() {
            Ok(abort) => match *abort {
                Abort::Truncated => Error::Truncated {
                    format: Format::Jpeg,
                },
                Abort::Fatal(message) => Error::Corrupt {
                    format: Format::Jpeg,
                    message,
                },
            },
            Err(other) => {
                let message = other
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| other.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "the decoder stopped unexpectedly".to_owned());
                Error::Corrupt {
                    format: Format::Jpeg,
                    message,
                }
            }
        }),
    }
}

fn decode_inner(bytes: &[u8], limits: &Limits) -> Result<Decoded, Error> {
    let format = Format::Jpeg;
    let mut dec = Decompress::builder()
        .with_err(error_mgr())
        .from_mem(bytes)
        .map_err(|e| Error::Corrupt {
            format,
            message: e.to_string(),
        })?;
    let (w, h) = dec.size();
    limits.check(format, w as u64, h as u64)?;
    let components = dec.components().len();
    dec.dct_method(DctMethod::IntegerSlow);
    dec.do_fancy_upsampling(true);
    dec.do_block_smoothing(true);
    // The reference decoder picks its mode from the component count alone.
    let out = match components {
        1 => ColorSpace::JCS_GRAYSCALE,
        3 => ColorSpace::JCS_RGB,
        4 => ColorSpace::JCS_CMYK,
        n => {
            return Err(Error::Unsupported {
                format,
                feature: format!("{n} colour components"),
            });
        }
    };
    let mut started = dec.to_colorspace(out).map_err(|e| Error::Corrupt {
        format,
        message: e.to_string(),
    })?;
    let (width, height) = (started.width(), started.height());
    let (w32, h32) = (
        u32::try_from(width).map_err(|_| Error::TooLarge {
            format,
            width: width as u64,
            height: height as u64,
            max_pixels: limits.max_pixels,
        })?,
        u32::try_from(height).map_err(|_| Error::TooLarge {
            format,
            width: width as u64,
            height: height as u64,
            max_pixels: limits.max_pixels,
        })?,
    );
    let n = width * height * components;
    let mut buf: Vec<u8> = alloc(n, w32, h32)?;
    started
        .read_scanlines_into(&mut buf)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Truncated { format },
            _ => Error::Corrupt {
                format,
                message: e.to_string(),
            },
        })?;
    // The end of the file is not read: the reference decoder accepts a file whose
    // last scan is complete even when the end-of-image marker is missing.
    drop(started);
    let raw = match components {
        1 => Raw::L(buf),
        3 => Raw::Rgb(buf),
        _ => {
            // Pillow assumes Adobe's inverted CMYK for every four-component JPEG.
            buf.iter_mut().for_each(|b| *b = 255 - *b);
            Raw::Cmyk(buf)
        }
    };
    Ok(Decoded {
        width: w32,
        height: h32,
        raw,
    })
}
