//! Pixels to luma, with the industry pipeline's rounding.
//!
//! The widely used Python binding computes `R*0.299 + G*0.587 + B*0.114` in
//! double precision, left to right, and rounds the result to `f32`. Each
//! product depends on one byte only, so three 256-entry tables of doubles give
//! the same products; the two additions and the final rounding are done per
//! pixel in the same order.

use std::sync::OnceLock;

/// Per-channel products `v * coefficient` in double precision.
struct Tables {
    r: [f64; 256],
    g: [f64; 256],
    b: [f64; 256],
    /// Luma of a grey pixel, `R = G = B = v`, already rounded.
    grey: [f32; 256],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            r: [0.0; 256],
            g: [0.0; 256],
            b: [0.0; 256],
            grey: [0.0; 256],
        };
        for v in 0..256usize {
            let x = v as f64;
            t.r[v] = x * 0.299;
            t.g[v] = x * 0.587;
            t.b[v] = x * 0.114;
            t.grey[v] = ((t.r[v] + t.g[v]) + t.b[v]) as f32;
        }
        t
    })
}

/// The luma of one RGB pixel, exactly as the reference binding computes it.
#[inline]
pub fn luma_of_rgb(r: u8, g: u8, b: u8) -> f32 {
    let t = tables();
    ((t.r[usize::from(r)] + t.g[usize::from(g)]) + t.b[usize::from(b)]) as f32
}

/// The luma of one grey pixel, taken as `R = G = B`.
#[inline]
pub fn luma_of_grey(v: u8) -> f32 {
    tables().grey[usize::from(v)]
}

/// Where luma rows come from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// Interleaved 8-bit RGB, 3 bytes a pixel.
    Rgb(&'a [u8]),
    /// 8-bit grey, 1 byte a pixel.
    Grey(&'a [u8]),
    /// Luma already computed.
    Luma(&'a [f32]),
}

impl Source<'_> {
    /// Fills `out` with the luma of rows `first..first + out.len() / width`.
    ///
    /// The caller has checked the buffer lengths against the dimensions.
    #[inline(always)]
    pub(crate) fn fill_rows(&self, first: usize, width: usize, out: &mut [f32]) {
        let n = out.len();
        let start = first * width;
        match *self {
            Source::Rgb(px) => {
                // The same products the tables hold, written as arithmetic so
                // the compiler can use vector lanes instead of lookups.
                let px = &px[3 * start..3 * (start + n)];
                for (o, p) in out.iter_mut().zip(px.chunks_exact(3)) {
                    *o = ((f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587)
                        + f64::from(p[2]) * 0.114) as f32;
                }
            }
            Source::Grey(px) => {
                let t = &tables().grey;
                for (o, p) in out.iter_mut().zip(&px[start..start + n]) {
                    *o = t[usize::from(*p)];
                }
            }
            Source::Luma(px) => out.copy_from_slice(&px[start..start + n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_direct_formula() {
        for r in [0u8, 1, 17, 128, 200, 255] {
            for g in [0u8, 3, 99, 254, 255] {
                for b in [0u8, 5, 77, 255] {
                    let direct =
                        (f64::from(r) * 0.299 + f64::from(g) * 0.587 + f64::from(b) * 0.114) as f32;
                    assert_eq!(luma_of_rgb(r, g, b).to_bits(), direct.to_bits());
                }
            }
        }
        for v in 0..=255u8 {
            assert_eq!(luma_of_grey(v).to_bits(), luma_of_rgb(v, v, v).to_bits());
        }
    }
}
