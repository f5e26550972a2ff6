//! The stages after the 64x64 downsample: quality, the 16x16 DCT, the median
//! and the eight dihedral sign grids. They run on a few thousand numbers, so
//! they stay scalar apart from loops the compiler vectorises lane by lane.

use std::sync::OnceLock;

use crate::hash::{PdqHash, Quality};

/// The 16x16 low-frequency DCT block, row `i` and column `j` as in the reference.
pub(crate) type Block16 = [[f32; 16]; 16];

/// The 64x64 downsampled luma.
pub(crate) type Block64 = [[f32; 64]; 64];

/// The DCT basis the reference uses: rows 1 to 16 of the 64-point DCT-II.
///
/// The reference computes the scale factor in double precision, stores it as a
/// float, then multiplies it (promoted back to double) by a double cosine and
/// stores the product as a float. Each step is reproduced exactly.
fn dct_matrix() -> &'static [[f32; 64]; 16] {
    static MATRIX: OnceLock<[[f32; 64]; 16]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let scale = (2.0f64 / 64.0).sqrt() as f32;
        let step = std::f64::consts::PI / 2.0 / 64.0;
        let mut d = [[0f32; 64]; 16];
        for (i, row) in d.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let angle = step * (i + 1) as f64 * (2 * j + 1) as f64;
                *v = (f64::from(scale) * angle.cos()) as f32;
            }
        }
        d
    })
}

/// The transposed basis, so that the second product runs along contiguous memory.
fn dct_matrix_transposed() -> &'static [[f32; 16]; 64] {
    static MATRIX: OnceLock<[[f32; 16]; 64]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let d = dct_matrix();
        let mut t = [[0f32; 16]; 64];
        for (k, row) in t.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = d[j][k];
            }
        }
        t
    })
}

/// `B = D A Dᵀ`, summing over `k` in increasing order exactly as the reference.
///
/// Each output element keeps its own accumulator and its own sequence of
/// rounded multiplies and adds, so computing many elements side by side (which
/// the compiler does with vector lanes) gives the reference's bits.
pub(crate) fn dct64_to_16(a: &Block64) -> Block16 {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for (ti, di) in t.iter_mut().zip(d.iter()) {
        for (dk, ak) in di.iter().zip(a.iter()) {
            for (s, x) in ti.iter_mut().zip(ak.iter()) {
                *s += *dk * *x;
            }
        }
    }
    let dt = dct_matrix_transposed();
    let mut b = [[0f32; 16]; 16];
    for (bi, ti) in b.iter_mut().zip(t.iter()) {
        for (tk, dk) in ti.iter().zip(dt.iter()) {
            for (s, x) in bi.iter_mut().zip(dk.iter()) {
                *s += *tk * *x;
            }
        }
    }
    b
}

/// The reference's image-domain quality: the count of significant gradients.
pub(crate) fn quality(a: &Block64) -> Quality {
    // `((u - v) * 100) / 255` in float, truncated toward zero like a C cast.
    let step = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum: i64 = 0;
    for (upper, lower) in a.iter().zip(a.iter().skip(1)) {
        for (u, v) in upper.iter().zip(lower.iter()) {
            sum += i64::from(step(*u, *v).unsigned_abs());
        }
    }
    for row in a.iter() {
        for j in 0..63 {
            sum += i64::from(step(row[j], row[j + 1]).unsigned_abs());
        }
    }
    let q = (sum / 90).min(100);
    // The score is clamped to 0..=100 above, so this never falls back.
    Quality::new(q).unwrap_or_default()
}

/// Torben Mogensen's median, as the reference implements it for 256 values.
///
/// For an even count it returns one specific element near the middle, which
/// the hash bits depend on. One deviation: the reference loops forever when
/// the bounds stop moving, which only happens for non-finite or near-overflow
/// inputs; this version stops there and returns the current guess instead.
pub(crate) fn torben(m: &[f32]) -> f32 {
    let Some(&first) = m.first() else {
        return 0.0;
    };
    let n = m.len();
    let half = n.div_ceil(2);
    let (mut min, mut max) = (first, first);
    for &v in &m[1..] {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let mut max_lt = min;
        let mut min_gt = max;
        for &v in m {
            if v < guess {
                less += 1;
                if v > max_lt {
                    max_lt = v;
                }
            } else if v > guess {
                greater += 1;
                if v < min_gt {
                    min_gt = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_lt
            } else if less + equal >= half {
                guess
            } else {
                min_gt
            };
        }
        let (old_min, old_max) = (min, max);
        if less > greater {
            max = max_lt;
        } else {
            min = min_gt;
        }
        if min.to_bits() == old_min.to_bits() && max.to_bits() == old_max.to_bits() {
            return guess;
        }
    }
}

/// Sets bit `16*i + j` where `B[i][j]` exceeds the median of the block.
pub(crate) fn bits(b: &Block16) -> PdqHash {
    let flat: &[f32] = b.as_flattened();
    let median = torben(flat);
    let mut h = PdqHash::ZERO;
    for (k, v) in flat.iter().enumerate() {
        if *v > median {
            h.set_bit(k);
        }
    }
    h
}

/// The eight sign-and-transpose rearrangements of the DCT block, in
/// [`crate::Transform::ALL`] order.
///
/// Flipping the image negates the DCT coefficients of odd frequency along that
/// axis (the reference's even indices here, since its index 0 is frequency 1),
/// and a quarter turn also transposes the block.
pub(crate) fn dihedral_blocks(a: &Block16) -> [Block16; 8] {
    let mut out = [[[0f32; 16]; 16]; 8];
    for i in 0..16 {
        for j in 0..16 {
            let v = a[i][j];
            let (io, jo, ijo) = (i % 2 == 1, j % 2 == 1, (i + j) % 2 == 1);
            let pick = |keep: bool| if keep { v } else { -v };
            out[0][i][j] = v;
            out[1][j][i] = pick(jo);
            out[2][i][j] = pick(!ijo);
            out[3][j][i] = pick(io);
            out[4][i][j] = pick(io);
            out[5][i][j] = pick(jo);
            out[6][j][i] = v;
            out[7][j][i] = pick(!ijo);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torben_picks_reference_element_for_even_counts() {
        // For 1..=256 the reference returns the lower middle element.
        let v: Vec<f32> = (1..=256).map(|x| x as f32).collect();
        assert_eq!(torben(&v), 128.0);
        let mut w = v.clone();
        w.reverse();
        assert_eq!(torben(&w), 128.0);
        assert_eq!(torben(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(torben(&[5.0; 256]), 5.0);
    }

    #[test]
    fn torben_terminates_on_hostile_values() {
        let mut v = vec![3.0e38f32; 256];
        v[0] = -3.0e38;
        v[1] = f32::NAN;
        let _ = torben(&v);
        let mut w = vec![1.0f32; 256];
        w[7] = f32::INFINITY;
        w[8] = f32::NEG_INFINITY;
        // With both infinities the first guess is NaN, which every comparison
        // calls equal, so the reference returns NaN at once.
        assert!(torben(&w).is_nan());
    }

    #[test]
    fn quality_of_flat_block_is_zero() {
        assert_eq!(quality(&[[12.5; 64]; 64]).get(), 0);
        let mut stripes = [[0f32; 64]; 64];
        for row in stripes.iter_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if j % 2 == 0 { 3.0 } else { 0.0 };
            }
        }
        // Each of the 64 * 63 horizontal steps counts 1, and 4032 / 90 = 44.
        assert_eq!(quality(&stripes).get(), 44);
    }

    #[test]
    fn dihedral_blocks_compose() {
        let mut a = [[0f32; 16]; 16];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (i * 16 + j) as f32 + 1.0;
            }
        }
        let d = dihedral_blocks(&a);
        // Two quarter turns make a half turn.
        assert_eq!(dihedral_blocks(&d[1])[1], d[2]);
        // Transposing twice is the identity.
        assert_eq!(dihedral_blocks(&d[6])[6], a);
    }
}
