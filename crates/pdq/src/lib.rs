//! PDQ perceptual hashing. (Hasher being written; the hash type is final.)

mod hash;

pub use hash::{PdqHash, Quality, Transform};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A hash string was not 64 hexadecimal digits.
    #[error("invalid PDQ hash {0:?}: expected 64 hexadecimal digits")]
    Hex(String),
    /// A quality was outside 0..=100.
    #[error("invalid PDQ quality {0}: expected 0 to 100")]
    Quality(i64),
    /// A transform name was not one of the eight dihedral names.
    #[error(
        "unknown transform {0:?}: expected orig, rot90, rot180, rot270, flipx, flipy, flipplus1 or flipminus1"
    )]
    Transform(String),
}
