//! Runtime CPU feature selection for the popcount-heavy loops.
//!
//! The portable x86-64 baseline has no POPCNT instruction, so `count_ones`
//! compiles to a dozen arithmetic steps. The hot loops are therefore compiled
//! a second time with POPCNT and AVX2 enabled and picked at run time.

use std::sync::OnceLock;

/// The instruction sets the hot loops may use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Portable code only.
    Plain,
    /// POPCNT and AVX2 are available.
    Avx2,
}

/// The best level this CPU supports, detected once.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt")
            {
                return Level::Avx2;
            }
        }
        Level::Plain
    })
}

/// Asks the CPU to start loading the cache line holding `slice[i]`; does
/// nothing when `i` is out of range or the target has no prefetch hint.
#[inline(always)]
pub(crate) fn prefetch<T>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = slice.get(i) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is only a hint: it never faults and never
        // changes memory. The address comes from a live reference, and SSE
        // (which provides the instruction) is part of the x86-64 baseline.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(r).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// Which postings of a line match a probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineFilter {
    /// The low posting bits of a match: bucket tag, then filter bits.
    pub(crate) want: u32,
    /// The bucket tag bits, which must equal `want`'s.
    pub(crate) tag_mask: u32,
    /// The filter bits (within the low byte), which may differ from
    /// `want`'s in at most `allowed` places.
    pub(crate) fmask: u32,
    /// Filter bits allowed to differ; `u8::MAX` accepts any.
    pub(crate) allowed: u8,
}

/// Calls `f(post)` for each posting `line[1..=count]` that passes
/// `filter`, in order.
#[inline(always)]
pub(crate) fn line_matches(
    level: Level,
    line: &[u32; 16],
    count: u32,
    filter: LineFilter,
    f: impl FnMut(u32),
) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        #[allow(unsafe_code)]
        // SAFETY: `line_matches_avx2` only requires AVX2 and POPCNT, and
        // `level` is `Avx2` only when `level()` detected both on this CPU.
        unsafe {
            line_matches_avx2(line, count, filter, f)
        };
        return;
    }
    let _ = level;
    line_matches_plain(line, count, filter, f);
}

#[inline(always)]
fn line_matches_plain(line: &[u32; 16], count: u32, filter: LineFilter, mut f: impl FnMut(u32)) {
    let posts = line.get(1..=count.min(15) as usize).unwrap_or_default();
    for &p in posts {
        let x = p ^ filter.want;
        let near = filter.allowed == u8::MAX
            || (x & filter.fmask).count_ones() <= u32::from(filter.allowed);
        if x & filter.tag_mask == 0 && near {
            f(p);
        }
    }
}

/// The AVX2 line scan: the whole line in two registers. The masked filter
/// bits sit in each lane's low byte with the other bytes zero, so a nibble
/// table lookup per byte gives each lane's popcount directly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn line_matches_avx2(line: &[u32; 16], count: u32, filter: LineFilter, mut f: impl FnMut(u32)) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi8, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32,
        _mm256_cmpgt_epi32, _mm256_movemask_ps, _mm256_set1_epi8, _mm256_set1_epi32,
        _mm256_setr_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi32,
        _mm256_xor_si256,
    };
    let LineFilter {
        want,
        tag_mask,
        fmask,
        allowed,
    } = filter;
    let w = _mm256_set1_epi32(want as i32);
    let tm = _mm256_set1_epi32(tag_mask as i32);
    let fm = _mm256_set1_epi32(fmask as i32);
    let lim = _mm256_set1_epi32(i32::from(allowed) + 1);
    let low = _mm256_set1_epi8(0x0f);
    let nib = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let half = |words: [u32; 8]| -> u32 {
        let v: __m256i = bytemuck::cast(words);
        let x = _mm256_xor_si256(v, w);
        let mut ok = _mm256_cmpeq_epi32(_mm256_and_si256(x, tm), _mm256_setzero_si256());
        if allowed != u8::MAX {
            let fx = _mm256_and_si256(x, fm);
            let lo = _mm256_shuffle_epi8(nib, _mm256_and_si256(fx, low));
            let hi = _mm256_shuffle_epi8(nib, _mm256_and_si256(_mm256_srli_epi32::<4>(fx), low));
            let near = _mm256_cmpgt_epi32(lim, _mm256_add_epi8(lo, hi));
            ok = _mm256_and_si256(ok, near);
        }
        _mm256_movemask_ps(_mm256_castsi256_ps(ok)) as u32
    };
    let (a, b) = line.split_at(8);
    let (Ok(a), Ok(b)) = (<[u32; 8]>::try_from(a), <[u32; 8]>::try_from(b)) else {
        return;
    };
    // Lanes 1..=count hold postings; lane 0 is the header.
    let valid = ((1u32 << (count.min(15) + 1)) - 1) & !1;
    let mut bits = (half(a) | (half(b) << 8)) & valid;
    while bits != 0 {
        f(line[bits.trailing_zeros() as usize]);
        bits &= bits - 1;
    }
}
