//! Runtime CPU feature selection for the popcount-heavy loops.
//!
//! The portable x86-64 baseline has no POPCNT instruction, so `count_ones`
//! compiles to a dozen arithmetic steps. The hot loops are therefore compiled
//! again for AVX2 (with POPCNT) and for AVX-512 (with its per-lane popcount)
//! and picked at run time.

use std::sync::OnceLock;

/// The instruction sets the hot loops may use on this CPU, in increasing
/// order: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Portable code only.
    Plain,
    /// POPCNT and AVX2 are available.
    Avx2,
    /// AVX-512F with its per-lane popcount (VPOPCNTDQ) as well.
    Avx512,
}

/// The best level this CPU supports, detected once, or less if the
/// environment variable `TAKEDOWN_INDEX_SIMD` (`plain`, `avx2` or
/// `avx512`) caps it: a way to measure what a machine without AVX-512 would
/// get. A cap never raises the level above what the CPU has.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("TAKEDOWN_INDEX_SIMD").as_deref() {
            Ok("plain") => Level::Plain,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt");
        if avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        {
            return Level::Avx512;
        }
        if avx2 {
            return Level::Avx2;
        }
    }
    Level::Plain
}

/// Asks the CPU to start loading the cache line holding `slice[i]` into
/// every cache level; does nothing when `i` is out of range or the target
/// has no prefetch hint.
#[inline(always)]
pub(crate) fn prefetch<T>(slice: &[T], i: usize) {
    prefetch_hint::<T, 3>(slice, i);
}

/// Like [`prefetch`], but only as far as the second-level cache, which
/// keeps the first level's few miss buffers free for the loads that need
/// them first.
#[inline(always)]
pub(crate) fn prefetch_l2<T>(slice: &[T], i: usize) {
    prefetch_hint::<T, 2>(slice, i);
}

#[inline(always)]
fn prefetch_hint<T, const HINT: i32>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = slice.get(i) {
        use std::arch::x86_64::_mm_prefetch;
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is only a hint: it never faults and never
        // changes memory. The address comes from a live reference, and SSE
        // (which provides the instruction) is part of the x86-64 baseline.
        unsafe {
            _mm_prefetch::<HINT>(std::ptr::from_ref(r).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// Which postings of a bucket pass a probe's filter: those whose bits
/// under `mask` differ from `want`'s in at most `max` places.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PostFilter {
    pub(crate) want: u32,
    pub(crate) mask: u32,
    pub(crate) max: u32,
}

impl PostFilter {
    #[inline(always)]
    fn passes(self, post: u32) -> bool {
        ((post ^ self.want) & self.mask).count_ones() <= self.max
    }
}

/// Calls `f(j)` for each `posts[j]` that passes `filter`, in order.
#[inline(always)]
pub(crate) fn matching_posts(
    level: Level,
    posts: &[u32],
    filter: PostFilter,
    mut f: impl FnMut(usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if level == Level::Avx512 {
            #[allow(unsafe_code)]
            // SAFETY: `matching_posts_avx512` only requires AVX-512F,
            // VPOPCNTDQ, AVX2 and POPCNT, and `level` is `Avx512` only when
            // `level()` detected all of them on this CPU.
            unsafe {
                matching_posts_avx512(posts, filter, f)
            };
            return;
        }
        if level == Level::Avx2 {
            #[allow(unsafe_code)]
            // SAFETY: `matching_posts_avx2` only requires AVX2 and POPCNT,
            // and `level` is `Avx2` only when `level()` detected both.
            unsafe {
                matching_posts_avx2(posts, filter, f)
            };
            return;
        }
    }
    let _ = level;
    for (j, &p) in posts.iter().enumerate() {
        if filter.passes(p) {
            f(j);
        }
    }
}

/// Eight postings per step. The masked bits fit in each lane's two low
/// bytes, so a nibble-table lookup per byte and one shifted add give each
/// lane's popcount.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn matching_posts_avx2(posts: &[u32], filter: PostFilter, mut f: impl FnMut(usize)) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi8, _mm256_add_epi32, _mm256_and_si256, _mm256_castsi256_ps,
        _mm256_cmpgt_epi32, _mm256_movemask_ps, _mm256_set1_epi8, _mm256_set1_epi32,
        _mm256_setr_epi8, _mm256_shuffle_epi8, _mm256_srli_epi32, _mm256_xor_si256,
    };
    let w = _mm256_set1_epi32(filter.want as i32);
    let m = _mm256_set1_epi32((filter.mask & 0xffff) as i32);
    let lim = _mm256_set1_epi32(filter.max.min(64) as i32 + 1);
    let byte = _mm256_set1_epi32(0xff);
    let low = _mm256_set1_epi8(0x0f);
    let nib = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let chunks = posts.chunks_exact(8);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let Ok(words) = <[u32; 8]>::try_from(chunk) else {
            continue;
        };
        let v: __m256i = bytemuck::cast(words);
        let x = _mm256_and_si256(_mm256_xor_si256(v, w), m);
        let lo = _mm256_shuffle_epi8(nib, _mm256_and_si256(x, low));
        let hi = _mm256_shuffle_epi8(nib, _mm256_and_si256(_mm256_srli_epi32::<4>(x), low));
        let per_byte = _mm256_add_epi8(lo, hi);
        let count = _mm256_and_si256(
            _mm256_add_epi32(per_byte, _mm256_srli_epi32::<8>(per_byte)),
            byte,
        );
        let ok = _mm256_cmpgt_epi32(lim, count);
        let mut bits = _mm256_movemask_ps(_mm256_castsi256_ps(ok)) as u32;
        while bits != 0 {
            f(c * 8 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
    let base = posts.len() - rest.len();
    for (j, &p) in rest.iter().enumerate() {
        if filter.passes(p) {
            f(base + j);
        }
    }
}

/// Sixteen postings per step with the per-lane popcount; the tail is a
/// masked load, so no posting is read twice and none past the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,popcnt")]
fn matching_posts_avx512(posts: &[u32], filter: PostFilter, mut f: impl FnMut(usize)) {
    use std::arch::x86_64::{
        _mm512_and_si512, _mm512_mask_cmple_epu32_mask, _mm512_maskz_loadu_epi32,
        _mm512_popcnt_epi32, _mm512_set1_epi32, _mm512_xor_si512,
    };
    let w = _mm512_set1_epi32(filter.want as i32);
    let m = _mm512_set1_epi32(filter.mask as i32);
    let max = _mm512_set1_epi32(filter.max as i32);
    let mut at = 0;
    while at < posts.len() {
        let Some(chunk) = posts.get(at..posts.len().min(at + 16)) else {
            break;
        };
        let lanes: u16 = if chunk.len() == 16 {
            u16::MAX
        } else {
            (1u16 << chunk.len()) - 1
        };
        #[allow(unsafe_code)]
        // SAFETY: the load reads only the lanes set in `lanes`, which are
        // exactly `chunk`'s elements; masked-off lanes are never accessed.
        let v = unsafe { _mm512_maskz_loadu_epi32(lanes, chunk.as_ptr().cast::<i32>()) };
        let x = _mm512_and_si512(_mm512_xor_si512(v, w), m);
        let mut bits = _mm512_mask_cmple_epu32_mask(lanes, _mm512_popcnt_epi32(x), max);
        while bits != 0 {
            f(at + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
        at += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level must pick exactly the postings the plain loop picks, at
    /// every length (full vectors and tails) and threshold.
    #[test]
    fn levels_agree() {
        let mut seed = 7u64;
        let posts: Vec<u32> = (0..100)
            .map(|_| crate::splitmix64(&mut seed) as u32)
            .collect();
        for len in 0..posts.len() {
            for (mask, max) in [(0xfff, 2), (0xfff, 3), (0xffff, 0), (0xffff, 16), (0, 0)] {
                let filter = PostFilter {
                    want: 0x5a5a_a5a5,
                    mask,
                    max,
                };
                let want: Vec<usize> = (0..len).filter(|&j| filter.passes(posts[j])).collect();
                for l in [Level::Plain, Level::Avx2, Level::Avx512] {
                    if l > level() {
                        continue;
                    }
                    let mut got = Vec::new();
                    matching_posts(l, &posts[..len], filter, |j| got.push(j));
                    assert_eq!(got, want, "{l:?}, len {len}, mask {mask:x}, max {max}");
                }
            }
        }
    }
}
