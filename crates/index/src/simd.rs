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
