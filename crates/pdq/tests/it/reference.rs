//! A plain, line-by-line transcription of the reference C++ core: full-image
//! blur passes, decimation, quality, DCT, Torben's median and the dihedral
//! sign grids. Slow on purpose; the fast path must equal it bit for bit.

// The transcription keeps the reference's index loops and integer formulas on purpose.
#![allow(clippy::needless_range_loop, clippy::manual_div_ceil)]

use takedown_pdq::{PdqHash, luma_of_rgb};

fn window_size(old: usize, new: usize) -> usize {
    (old + 2 * new - 1) / (2 * new)
}

/// `box1DFloat` with a stride.
fn box_1d(input: &[f32], out: &mut [f32], start: usize, len: usize, stride: usize, window: usize) {
    let half = (window + 2) / 2;
    let p1 = half - 1;
    let p2 = window - half + 1;
    let p3 = len - window;
    let p4 = half - 1;
    let (mut li, mut ri, mut oi) = (start, start, start);
    let mut sum = 0.0f32;
    let mut cur = 0i32;
    for _ in 0..p1 {
        sum += input[ri];
        cur += 1;
        ri += stride;
    }
    for _ in 0..p2 {
        sum += input[ri];
        cur += 1;
        out[oi] = sum / cur as f32;
        ri += stride;
        oi += stride;
    }
    for _ in 0..p3 {
        sum += input[ri];
        sum -= input[li];
        out[oi] = sum / cur as f32;
        li += stride;
        ri += stride;
        oi += stride;
    }
    for _ in 0..p4 {
        sum -= input[li];
        cur -= 1;
        out[oi] = sum / cur as f32;
        li += stride;
        oi += stride;
    }
}

fn jarosz(buf1: &mut [f32], buf2: &mut [f32], rows: usize, cols: usize) {
    let wr = window_size(cols, 64);
    let wc = window_size(rows, 64);
    for _ in 0..2 {
        for i in 0..rows {
            box_1d(buf1, buf2, i * cols, cols, 1, wr);
        }
        for j in 0..cols {
            box_1d(buf2, buf1, j, rows, cols, wc);
        }
    }
}

fn decimate(input: &[f32], rows: usize, cols: usize) -> Vec<[f32; 64]> {
    let mut out = vec![[0f32; 64]; 64];
    for (oi, row) in out.iter_mut().enumerate() {
        let ini = (((oi as f64 + 0.5) * rows as f64) / 64.0) as usize;
        for (oj, v) in row.iter_mut().enumerate() {
            let inj = (((oj as f64 + 0.5) * cols as f64) / 64.0) as usize;
            *v = input[ini * cols + inj];
        }
    }
    out
}

fn quality(b: &[[f32; 64]]) -> i32 {
    let mut g = 0i32;
    for i in 0..63 {
        for j in 0..64 {
            let d = (((b[i][j] - b[i + 1][j]) * 100.0) / 255.0) as i32;
            g += d.abs();
        }
    }
    for i in 0..64 {
        for j in 0..63 {
            let d = (((b[i][j] - b[i][j + 1]) * 100.0) / 255.0) as i32;
            g += d.abs();
        }
    }
    (g / 90).min(100)
}

fn dct_matrix() -> Vec<[f32; 64]> {
    let scale = (2.0f64 / 64.0).sqrt() as f32;
    (0..16)
        .map(|i| {
            let mut row = [0f32; 64];
            for (j, v) in row.iter_mut().enumerate() {
                let c = ((std::f64::consts::PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64)
                    .cos();
                *v = (scale as f64 * c) as f32;
            }
            row
        })
        .collect()
}

fn dct(a: &[[f32; 64]]) -> [[f32; 16]; 16] {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for i in 0..16 {
        for j in 0..64 {
            let mut s = 0.0f32;
            for k in 0..64 {
                s += d[i][k] * a[k][j];
            }
            t[i][j] = s;
        }
    }
    let mut b = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            let mut s = 0.0f32;
            for k in 0..64 {
                s += t[i][k] * d[j][k];
            }
            b[i][j] = s;
        }
    }
    b
}

fn torben(m: &[f32]) -> f32 {
    let n = m.len();
    let (mut min, mut max) = (m[0], m[0]);
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
        let (mut less, mut greater, mut equal) = (0, 0, 0);
        let (mut maxlt, mut mingt) = (min, max);
        for &v in m {
            if v < guess {
                less += 1;
                if v > maxlt {
                    maxlt = v;
                }
            } else if v > guess {
                greater += 1;
                if v < mingt {
                    mingt = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= n.div_ceil(2) && greater <= n.div_ceil(2) {
            return if less >= n.div_ceil(2) {
                maxlt
            } else if less + equal >= n.div_ceil(2) {
                guess
            } else {
                mingt
            };
        } else if less > greater {
            max = maxlt;
        } else {
            min = mingt;
        }
    }
}

fn to_bits(b: &[[f32; 16]; 16]) -> PdqHash {
    let flat: Vec<f32> = b.iter().flatten().copied().collect();
    let med = torben(&flat);
    let mut h = PdqHash::ZERO;
    for i in 0..16 {
        for j in 0..16 {
            if b[i][j] > med {
                h.set_bit(i * 16 + j);
            }
        }
    }
    h
}

/// What the reference computes from a luma plane: the plain hash (with the
/// 64x64 shortcut), its quality, and the eight dihedral hashes.
pub struct Output {
    pub hash: PdqHash,
    pub quality: i32,
    pub dihedral: [PdqHash; 8],
    pub dihedral_quality: i32,
}

fn downsample(luma: &[f32], rows: usize, cols: usize, shortcut: bool) -> Vec<[f32; 64]> {
    if shortcut && rows == 64 && cols == 64 {
        return luma
            .chunks_exact(64)
            .map(|r| {
                let mut a = [0f32; 64];
                a.copy_from_slice(r);
                a
            })
            .collect();
    }
    let mut b1 = luma.to_vec();
    let mut b2 = vec![0f32; luma.len()];
    jarosz(&mut b1, &mut b2, rows, cols);
    decimate(&b1, rows, cols)
}

pub fn from_luma(luma: &[f32], cols: usize, rows: usize) -> Output {
    if rows < 5 || cols < 5 {
        return Output {
            hash: PdqHash::ZERO,
            quality: 0,
            dihedral: [PdqHash::ZERO; 8],
            dihedral_quality: 0,
        };
    }
    let a = downsample(luma, rows, cols, true);
    let quality = quality(&a);
    let hash = to_bits(&dct(&a));

    let a = downsample(luma, rows, cols, false);
    let dihedral_quality = self::quality(&a);
    let b = dct(&a);
    let mut dihedral = [PdqHash::ZERO; 8];
    let mut aux = [[0f32; 16]; 16];
    for (n, slot) in dihedral.iter_mut().enumerate() {
        for i in 0..16 {
            for j in 0..16 {
                let v = b[i][j];
                let odd = |x: usize| x & 1 == 1;
                match n {
                    0 => aux[i][j] = v,
                    1 => aux[j][i] = if odd(j) { v } else { -v },
                    2 => aux[i][j] = if odd(i + j) { -v } else { v },
                    3 => aux[j][i] = if odd(i) { v } else { -v },
                    4 => aux[i][j] = if odd(i) { v } else { -v },
                    5 => aux[i][j] = if odd(j) { v } else { -v },
                    6 => aux[j][i] = v,
                    _ => aux[j][i] = if odd(i + j) { -v } else { v },
                }
            }
        }
        *slot = to_bits(&aux);
    }
    Output {
        hash,
        quality,
        dihedral,
        dihedral_quality,
    }
}

pub fn from_rgb(rgb: &[u8], cols: usize, rows: usize) -> Output {
    let luma: Vec<f32> = rgb
        .chunks_exact(3)
        .map(|p| luma_of_rgb(p[0], p[1], p[2]))
        .collect();
    from_luma(&luma, cols, rows)
}
