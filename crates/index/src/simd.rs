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

/// Bit counts of every byte value.
const POP8: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u32).count_ones() as u8;
        i += 1;
    }
    t
};

/// Calls `f(j)` for every `j` with `filt[j]` at most `allowed` bits from
/// `qf`, in increasing order. Filter bytes and `qf` hold only filter bits,
/// and `allowed` is below the number of filter bits (at most 7).
#[inline(always)]
pub(crate) fn filter_matches(level: Level, filt: &[u8], qf: u8, allowed: u8, f: impl FnMut(u32)) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        #[allow(unsafe_code)]
        // SAFETY: `filter_matches_avx2` only requires AVX2, and `level` is
        // `Avx2` only when `level()` detected it on this CPU.
        unsafe {
            filter_matches_avx2(filt, qf, allowed, f)
        };
        return;
    }
    let _ = level;
    filter_matches_plain(filt, qf, allowed, f);
}

#[inline(always)]
fn filter_matches_plain(filt: &[u8], qf: u8, allowed: u8, mut f: impl FnMut(u32)) {
    for (j, &b) in filt.iter().enumerate() {
        if POP8[usize::from(b ^ qf)] <= allowed {
            f(j as u32);
        }
    }
}

/// The AVX2 filter scan: 32 filter bytes per step, popcounts by nibble
/// table lookup, one bit mask of matches per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn filter_matches_avx2(filt: &[u8], qf: u8, allowed: u8, mut f: impl FnMut(u32)) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi8, _mm256_and_si256, _mm256_cmpgt_epi8, _mm256_movemask_epi8,
        _mm256_set1_epi8, _mm256_setr_epi8, _mm256_shuffle_epi8, _mm256_srli_epi16,
        _mm256_xor_si256,
    };
    let q = _mm256_set1_epi8(qf as i8);
    let lim = _mm256_set1_epi8(allowed as i8);
    let low = _mm256_set1_epi8(0x0f);
    let nib = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let step = |chunk: [u8; 32]| -> u32 {
        let v: __m256i = bytemuck::cast(chunk);
        let x = _mm256_xor_si256(v, q);
        let lo = _mm256_shuffle_epi8(nib, _mm256_and_si256(x, low));
        let hi = _mm256_shuffle_epi8(nib, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low));
        let far = _mm256_cmpgt_epi8(_mm256_add_epi8(lo, hi), lim);
        !(_mm256_movemask_epi8(far) as u32)
    };
    let mut base = 0u32;
    let mut chunks = filt.chunks_exact(32);
    for c in &mut chunks {
        let Ok(chunk) = <[u8; 32]>::try_from(c) else {
            break;
        };
        let mut m = step(chunk);
        while m != 0 {
            f(base + m.trailing_zeros());
            m &= m - 1;
        }
        base += 32;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padding with the complement of `qf` makes every padding byte
        // differ in all eight bits, more than `allowed`.
        let mut chunk = [!qf; 32];
        chunk[..rest.len()].copy_from_slice(rest);
        let mut m = step(chunk);
        while m != 0 {
            f(base + m.trailing_zeros());
            m &= m - 1;
        }
    }
}
