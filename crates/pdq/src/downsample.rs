//! The Jarosz blur and 64x64 decimation, restructured for speed but computing
//! every sample with the reference's exact sequence of `f32` operations.
//!
//! The reference runs four full-image box-filter passes (rows, columns, rows,
//! columns) and then keeps 64x64 samples. Here:
//!
//! * pass 1 (rows) runs on strips of rows straight after luma conversion and
//!   stores raw running sums; eight rows advance together so their independent
//!   add chains overlap in the pipeline;
//! * pass 2 (columns) walks down the image with one accumulator per column,
//!   which is a contiguous vector loop; the pass-1 division happens there, once
//!   per element, just before the row is first read;
//! * pass 3 (rows) only keeps the 64 sample columns of its output, so it does
//!   the running sums without the divisions;
//! * pass 4 (columns) only runs on those 64 columns.
//!
//! Every running sum is still advanced element by element in the reference's
//! order, so each output is bit-for-bit the reference's value.

use crate::dct::Block64;
use crate::luma::Source;

/// Rows advanced together in the row passes.
const STRIP: usize = 8;

/// The reference's box-filter window for shrinking `old` to `new` samples.
pub(crate) fn window_size(old: usize, new: usize) -> usize {
    // The reference's `(old + 2*new - 1) / (2*new)`: division rounding up.
    old.div_ceil(2 * new)
}

/// The input index that decimation keeps for output index `out` of 64.
pub(crate) fn sample_index(out: usize, len: usize) -> usize {
    // The reference computes this in double precision and truncates.
    (((out as f64 + 0.5) * len as f64) / 64.0) as usize
}

/// The four phases of the reference's 1-D box filter.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Adds before the first output.
    p1: usize,
    /// Outputs with a growing window.
    p2: usize,
    /// Outputs with a full window (add and subtract).
    p3: usize,
    /// Outputs with a shrinking window.
    p4: usize,
}

impl Plan {
    /// Requires `1 <= window <= len`, which [`window_size`] guarantees.
    fn new(len: usize, window: usize) -> Self {
        let half = (window + 2) / 2;
        Plan {
            p1: half - 1,
            p2: window - half + 1,
            p3: len - window,
            p4: half - 1,
        }
    }

    /// The window count the reference divides output `o` by, as a float.
    fn counts(&self) -> impl Iterator<Item = f32> + '_ {
        let grow = (0..self.p2).map(|k| (self.p1 + 1 + k) as f32);
        let full = std::iter::repeat_n((self.p1 + self.p2) as f32, self.p3);
        let shrink = (0..self.p4).map(|k| (self.p1 + self.p2 - 1 - k) as f32);
        grow.chain(full).chain(shrink)
    }
}

/// Lanes of a strip: rows advanced together by the row passes.
type Lanes = [f32; STRIP];

/// Reusable buffers, grown on demand and never shrunk.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Pass-1 output rows, row-major, in a ring just deep enough for the
    /// pass-2 window, so the working set stays in cache for large images.
    pass1: Vec<f32>,
    /// A strip of up to eight luma rows stored column by column (lane = row).
    strip: Vec<Lanes>,
    /// Pass-1 running sums for a strip, in the same layout.
    strip_sums: Vec<Lanes>,
    /// A strip of pass-2 output rows, in the same layout.
    strip3: Vec<Lanes>,
    /// Pass-3 running sums for a strip, in the same layout.
    strip3_sums: Vec<Lanes>,
    /// Pass-2 accumulators, one per column.
    acc: Vec<f32>,
    /// Pass-3 outputs at the 64 sample columns, one row of 64 per image row.
    samples: Vec<f32>,
    /// Window counts along a row.
    counts: Vec<f32>,
    /// One row of luma.
    luma_row: Vec<f32>,
}

fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// Raw running sums of the reference's row box filter, for the eight rows of
/// a strip at once: `out[o]` gets, lane by lane, the sum the reference divides
/// to produce output `o`.
///
/// Each lane performs exactly the reference's sequence of `f32` adds and
/// subtracts for its row, so vectorising across lanes changes no bits.
#[inline(always)]
fn strip_sums(input: &[Lanes], out: &mut [Lanes], plan: Plan) {
    #[inline(always)]
    fn add(s: &mut Lanes, x: &Lanes) {
        for (a, b) in s.iter_mut().zip(x) {
            *a += *b;
        }
    }
    #[inline(always)]
    fn sub(s: &mut Lanes, x: &Lanes) {
        for (a, b) in s.iter_mut().zip(x) {
            *a -= *b;
        }
    }
    let mut s = [0f32; STRIP];
    let (head, rest) = input.split_at(plan.p1);
    for x in head {
        add(&mut s, x);
    }
    let (grow_in, full_in) = rest.split_at(plan.p2);
    let (grow_out, rest_out) = out.split_at_mut(plan.p2);
    for (x, o) in grow_in.iter().zip(grow_out.iter_mut()) {
        add(&mut s, x);
        *o = s;
    }
    let (full_out, shrink_out) = rest_out.split_at_mut(plan.p3);
    for ((x, y), o) in full_in.iter().zip(input.iter()).zip(full_out.iter_mut()) {
        add(&mut s, x);
        sub(&mut s, y);
        *o = s;
    }
    for (y, o) in input[plan.p3..].iter().zip(shrink_out.iter_mut()) {
        sub(&mut s, y);
        *o = s;
    }
}

/// Runs pass 1 on the strip of rows starting at `first` and stores the
/// divided outputs in the ring. Returns the next row to produce.
///
/// A plain function rather than a closure, so it inherits the caller's
/// target features when inlined.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn produce_strip(
    src: Source<'_>,
    first: usize,
    w: usize,
    h: usize,
    ring: usize,
    plan: Plan,
    counts: &[f32],
    strip: &mut [Lanes],
    sums: &mut [Lanes],
    luma_row: &mut [f32],
    pass1: &mut [f32],
) -> usize {
    let rows_here = STRIP.min(h - first);
    for r in 0..rows_here {
        // Contiguous luma first (vectorisable), then one lane of the strip.
        src.fill_rows(first + r, w, luma_row);
        for (s, x) in strip.iter_mut().zip(luma_row.iter()) {
            s[r] = *x;
        }
    }
    strip_sums(strip, sums, plan);
    for (s, d) in sums.iter_mut().zip(counts.iter()) {
        for x in s.iter_mut() {
            *x /= *d;
        }
    }
    let chunk = &mut pass1[(first % ring) * w..][..rows_here * w];
    for (r, row) in chunk.chunks_exact_mut(w).enumerate() {
        for (o, s) in row.iter_mut().zip(sums.iter()) {
            *o = s[r];
        }
    }
    first + rows_here
}

/// Blurs the image like the reference's `jaroszFilterFloat` with two passes
/// and decimates it to 64x64 like `decimateFloat`.
///
/// Requires `width >= 1`, `height >= 1` and a source holding `width * height`
/// pixels. Uses 256-bit vectors where the CPU has AVX2; the arithmetic is the
/// same lane by lane either way (no fused multiply-add is ever enabled).
#[allow(unsafe_code)]
pub(crate) fn blur_and_decimate(
    src: Source<'_>,
    width: usize,
    height: usize,
    scratch: &mut Scratch,
    out: &mut Block64,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { blur_and_decimate_avx2(src, width, height, scratch, out) };
        return;
    }
    blur_and_decimate_body(src, width, height, scratch, out);
}

/// The body compiled with AVX2 enabled, so the lane-wise loops use 8-wide
/// vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn blur_and_decimate_avx2(
    src: Source<'_>,
    width: usize,
    height: usize,
    scratch: &mut Scratch,
    out: &mut Block64,
) {
    blur_and_decimate_body(src, width, height, scratch, out);
}

#[inline(always)]
fn blur_and_decimate_body(
    src: Source<'_>,
    width: usize,
    height: usize,
    scratch: &mut Scratch,
    out: &mut Block64,
) {
    let (w, h) = (width, height);
    let plan_r = Plan::new(w, window_size(w, 64));
    let plan_c = Plan::new(h, window_size(h, 64));
    let cols: [usize; 64] = std::array::from_fn(|k| sample_index(k, w));
    let rows: [usize; 64] = std::array::from_fn(|k| sample_index(k, h));

    let Scratch {
        pass1,
        strip,
        strip_sums: sums,
        strip3,
        strip3_sums: sums3,
        acc,
        samples,
        counts,
        luma_row,
    } = scratch;
    let counts = grow(counts, w);
    for (c, v) in counts.iter_mut().zip(plan_r.counts()) {
        *c = v;
    }
    let strip = grow(strip, w);
    let sums = grow(sums, w);

    let luma_row = grow(luma_row, w);
    let strip3 = grow(strip3, w);
    let sums3 = grow(sums3, w);

    // Pass 1 runs lazily, a strip at a time, into a ring of rows. Producing
    // the strip that starts at row `s` overwrites rows `s - ring .. s - ring + 8`;
    // pass 2 still needs rows from `s - window` on, so `ring > window + 7`.
    let ring = (window_size(h, 64) + STRIP).div_ceil(STRIP) * STRIP;
    let pass1 = grow(pass1, ring * w);
    let mut produced = 0usize;
    let row_of = |r: usize| (r % ring) * w;

    // Passes 2 and 3, a strip of rows at a time.
    let acc = grow(acc, w);
    acc.fill(0.0);
    let samples = grow(samples, 64 * h);
    let mut pending = 0usize;
    let mut first_pending = 0usize;

    let mut ri = 0usize;
    let mut li = 0usize;
    let mut o = 0usize;
    let mut cur = 0usize;
    let phases = [
        (plan_c.p1, true, false, false),
        (plan_c.p2, true, false, true),
        (plan_c.p3, true, true, true),
        (plan_c.p4, false, true, true),
    ];
    for (reps, add, sub, emit) in phases {
        for _ in 0..reps {
            if add && ri == produced {
                produced = produce_strip(
                    src, produced, w, h, ring, plan_r, counts, strip, sums, luma_row, pass1,
                );
            }
            match (add, sub) {
                (true, false) => {
                    for (a, x) in acc.iter_mut().zip(&pass1[row_of(ri)..][..w]) {
                        *a += *x;
                    }
                    ri += 1;
                    cur += 1;
                }
                (true, true) => {
                    let (old, new) = (&pass1[row_of(li)..][..w], &pass1[row_of(ri)..][..w]);
                    for ((a, x), y) in acc.iter_mut().zip(new).zip(old) {
                        *a += *x;
                        *a -= *y;
                    }
                    ri += 1;
                    li += 1;
                }
                _ => {
                    for (a, y) in acc.iter_mut().zip(&pass1[row_of(li)..][..w]) {
                        *a -= *y;
                    }
                    li += 1;
                    cur -= 1;
                }
            }
            if emit {
                // Pass-2 output row `o` goes into lane `pending` of the strip.
                let d = cur as f32;
                for (s, a) in strip3.iter_mut().zip(acc.iter()) {
                    s[pending] = *a / d;
                }
                pending += 1;
                o += 1;
                if pending == STRIP || o == h {
                    // Pass 3 on the strip, keeping the 64 sample columns.
                    strip_sums(strip3, sums3, plan_r);
                    for r in 0..pending {
                        let dst = &mut samples[(first_pending + r) * 64..][..64];
                        for (d, &c) in dst.iter_mut().zip(cols.iter()) {
                            *d = sums3[c][r] / counts[c];
                        }
                    }
                    first_pending = o;
                    pending = 0;
                }
            }
        }
    }

    // Pass 4 on the 64 sample columns, keeping the 64 sample rows.
    let mut acc64 = [0f32; 64];
    let (mut ri, mut li, mut o, mut cur) = (0usize, 0usize, 0usize, 0usize);
    let mut next = 0usize;
    for (reps, add, sub, emit) in phases {
        for _ in 0..reps {
            if next == 64 {
                return;
            }
            if add {
                for (a, x) in acc64.iter_mut().zip(&samples[ri * 64..(ri + 1) * 64]) {
                    *a += *x;
                }
                ri += 1;
                if !sub {
                    cur += 1;
                }
            }
            if sub {
                for (a, x) in acc64.iter_mut().zip(&samples[li * 64..(li + 1) * 64]) {
                    *a -= *x;
                }
                li += 1;
                if !add {
                    cur -= 1;
                }
            }
            if emit {
                let d = cur as f32;
                while next < 64 && rows[next] == o {
                    for (dst, a) in out[next].iter_mut().zip(acc64.iter()) {
                        *dst = *a / d;
                    }
                    next += 1;
                }
                o += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_index() {
        for len in 1..300 {
            let win = window_size(len, 64);
            let p = Plan::new(len, win);
            assert_eq!(p.p1 + p.p2 + p.p3, len);
            assert_eq!(p.p2 + p.p3 + p.p4, len);
            assert_eq!(p.counts().count(), len);
        }
        assert_eq!(window_size(1600, 64), 13);
        assert_eq!(window_size(1004, 64), 8);
        assert_eq!(window_size(128, 64), 1);
        assert_eq!(window_size(129, 64), 2);
    }

    #[test]
    fn portable_and_dispatched_paths_agree() {
        for (w, h) in [(5, 5), (17, 300), (300, 17), (513, 257), (129, 1000)] {
            let px: Vec<u8> = (0..w * h * 3)
                .map(|i| ((i * 2_654_435_761) >> 13) as u8)
                .collect();
            let (mut a, mut b) = ([[0f32; 64]; 64], [[0f32; 64]; 64]);
            let mut scratch = Scratch::default();
            blur_and_decimate(Source::Rgb(&px), w, h, &mut scratch, &mut a);
            blur_and_decimate_body(Source::Rgb(&px), w, h, &mut scratch, &mut b);
            let bits = |m: &Block64| {
                m.as_flattened()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&a), bits(&b), "{w}x{h}");
        }
    }

    #[test]
    fn sample_indices_stay_in_range() {
        for len in 1..2000 {
            assert!(sample_index(63, len) < len);
        }
        assert_eq!(sample_index(0, 64), 0);
        assert_eq!(sample_index(63, 1000), 992);
    }
}
