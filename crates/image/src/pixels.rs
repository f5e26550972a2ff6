//! Decoded pixels: the reference decoder's modes, and the two ways of turning them
//! into the RGB (or grey) samples the hasher reads.

use crate::Error;

/// How decoded pixels of each colour mode become the samples that are hashed.
///
/// Both policies agree on the common modes (RGB, RGBA, L, LA and 16-bit grey); they
/// differ on palette, bilevel and CMYK images, where the widely deployed reference
/// pipeline hashes the raw array instead of the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Colour {
    /// The python-threatexchange pipeline (used by Hasher-Matcher-Actioner and most
    /// published hash lists): `numpy.asarray(Image.open(f))` after converting only `LA`
    /// and `I;16` images to RGB, grey arrays stacked to three channels, channels past
    /// the third ignored. So palette images hash their palette indices, bilevel images
    /// hash the values 0 and 1 (quality 0), and CMYK JPEGs hash C, M and Y as if they
    /// were R, G and B. Modes that pipeline cannot hash at all (palette with alpha,
    /// 32-bit integer, float) fall back to [`Colour::Rgb`].
    #[default]
    Pytx,
    /// Pillow's `Image.convert("RGB")`: palettes looked up, bilevel as 0 and 255, CMYK
    /// through Pillow's CMYK to RGB formula, 16-bit grey clipped to 255, alpha dropped
    /// without compositing.
    Rgb,
}

/// A colour mode as the reference decoder (Pillow) reports it, with its samples.
#[derive(Debug)]
pub(crate) enum Raw {
    /// Mode `1`: one byte per pixel, 0 or 1.
    Bilevel(Vec<u8>),
    /// Mode `L`: one byte per pixel.
    L(Vec<u8>),
    /// Mode `LA`: grey and alpha bytes.
    La(Vec<u8>),
    /// Mode `P`: one palette index per pixel. Entries past the palette are black.
    P {
        indices: Vec<u8>,
        palette: Vec<[u8; 3]>,
    },
    /// Mode `I;16`: 16-bit grey.
    I16(Vec<u16>),
    /// Mode `RGB`.
    Rgb(Vec<u8>),
    /// Mode `RGBA` (or `RGBX`): the fourth byte is ignored by both policies.
    Rgba(Vec<u8>),
    /// Mode `CMYK`, in Pillow's (non-inverted) convention.
    Cmyk(Vec<u8>),
}

/// A decoded image in the reference decoder's terms.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) raw: Raw,
}

/// The samples of an [`Image`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pixels {
    /// One byte per pixel, standing for the RGB triple (v, v, v).
    Gray(Vec<u8>),
    /// Three bytes per pixel, R, G, B, rows top to bottom.
    Rgb(Vec<u8>),
}

/// A decoded image, ready for hashing: width, height and grey or RGB samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    pixels: Pixels,
}

impl Image {
    /// Builds an image, checking that the buffer holds exactly `width * height` pixels.
    pub fn new(width: u32, height: u32, pixels: Pixels) -> Option<Image> {
        let n = (width as usize).checked_mul(height as usize)?;
        let ok = match &pixels {
            Pixels::Gray(v) => v.len() == n,
            Pixels::Rgb(v) => Some(v.len()) == n.checked_mul(3),
        };
        ok.then_some(Image {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The samples.
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    /// Consumes the image, returning its samples.
    pub fn into_pixels(self) -> Pixels {
        self.pixels
    }

    /// The image as interleaved RGB bytes (grey expanded to three equal channels).
    pub fn to_rgb(&self) -> Vec<u8> {
        match &self.pixels {
            Pixels::Rgb(v) => v.clone(),
            Pixels::Gray(v) => v.iter().flat_map(|&g| [g, g, g]).collect(),
        }
    }
}

/// Reserves a zeroed buffer of `n` elements, failing cleanly instead of aborting.
pub(crate) fn alloc<T: Clone + Default>(
    n: usize,
    width: u32,
    height: u32,
) -> Result<Vec<T>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        width: width.into(),
        height: height.into(),
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Splits a packed `RGBRGB...` colour table (as GIF and PNG store it) into
/// entries; a trailing partial entry is ignored.
pub(crate) fn palette_entries(table: &[u8]) -> Vec<[u8; 3]> {
    table
        .chunks_exact(3)
        .map(|c| <[u8; 3]>::try_from(c).unwrap_or_default())
        .collect()
}

/// Pillow's `MULDIV255`: `a * b / 255`, rounded, in integers.
fn muldiv255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    // Both terms are below 2^16, so the result fits in a byte.
    (((t >> 8) + t) >> 8) as u8
}

/// Keeps the first three of every four bytes, in place.
fn drop_fourth(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len() / 4;
    for i in 0..n {
        v.copy_within(i * 4..i * 4 + 3, i * 3);
    }
    v.truncate(n * 3);
    v
}

/// Looks up palette indices into RGB.
fn lookup(data: &[u8], palette: &[[u8; 3]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3);
    for &i in data {
        out.extend_from_slice(palette.get(usize::from(i)).unwrap_or(&[0, 0, 0]));
    }
    out
}

/// Pillow's `I;16` to `L` (and so to RGB): values above 255 clip to 255.
fn clip16(v: &[u16]) -> Vec<u8> {
    v.iter().map(|&x| x.min(255) as u8).collect()
}

/// Pillow's CMYK to RGB conversion.
fn cmyk_to_rgb(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() / 4 * 3);
    for px in v.chunks_exact(4) {
        if let [c, m, y, k] = *px {
            let nk = 255 - k;
            for ch in [c, m, y] {
                out.push(nk.saturating_sub(muldiv255(ch, nk)));
            }
        }
    }
    out
}

impl Decoded {
    /// Applies a colour policy.
    pub(crate) fn into_image(self, colour: Colour) -> Image {
        let Decoded { width, height, raw } = self;
        let pixels = match (colour, raw) {
            (Colour::Pytx, Raw::Bilevel(v)) => Pixels::Gray(v),
            (Colour::Rgb, Raw::Bilevel(mut v)) => {
                v.iter_mut()
                    .for_each(|x| *x = if *x != 0 { 255 } else { 0 });
                Pixels::Gray(v)
            }
            (_, Raw::L(v)) => Pixels::Gray(v),
            (_, Raw::La(v)) => Pixels::Gray(
                v.chunks_exact(2)
                    .map(|p| p.first().copied().unwrap_or(0))
                    .collect(),
            ),
            (Colour::Pytx, Raw::P { indices, .. }) => Pixels::Gray(indices),
            (Colour::Rgb, Raw::P { indices, palette }) => Pixels::Rgb(lookup(&indices, &palette)),
            (_, Raw::I16(v)) => Pixels::Gray(clip16(&v)),
            (_, Raw::Rgb(v)) => Pixels::Rgb(v),
            (_, Raw::Rgba(v)) => Pixels::Rgb(drop_fourth(v)),
            (Colour::Pytx, Raw::Cmyk(v)) => Pixels::Rgb(drop_fourth(v)),
            (Colour::Rgb, Raw::Cmyk(v)) => Pixels::Rgb(cmyk_to_rgb(&v)),
        };
        Image {
            width,
            height,
            pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_matches_pillow() {
        // Values printed by Pillow 13 for CMYK -> RGB.
        let v = [
            0, 0, 0, 0, 255, 0, 0, 0, 100, 50, 20, 10, 200, 200, 200, 200,
        ];
        assert_eq!(
            cmyk_to_rgb(&v),
            [255, 255, 255, 0, 255, 255, 149, 197, 226, 12, 12, 12]
        );
    }

    #[test]
    fn palette_past_end_is_black() {
        let pal = vec![[10, 20, 30], [40, 50, 60]];
        assert_eq!(
            lookup(&[0, 1, 5, 200], &pal),
            [10, 20, 30, 40, 50, 60, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn i16_clips() {
        assert_eq!(
            clip16(&[0, 100, 255, 256, 1000, 65535]),
            [0, 100, 255, 255, 255, 255]
        );
    }

    #[test]
    fn drops_alpha_in_place() {
        assert_eq!(
            drop_fourth(vec![1, 2, 3, 4, 5, 6, 7, 8]),
            [1, 2, 3, 5, 6, 7]
        );
    }

    #[test]
    fn image_checks_length() {
        assert!(Image::new(2, 2, Pixels::Gray(vec![0; 4])).is_some());
        assert!(Image::new(2, 2, Pixels::Rgb(vec![0; 4])).is_none());
    }
}
