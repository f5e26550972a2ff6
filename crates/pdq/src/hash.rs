//! The 256-bit PDQ hash, its quality score and the eight dihedral transforms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A 256-bit PDQ hash.
///
/// The bytes are held in the order the reference prints them: the hex string
/// `w[15] w[14] ... w[0]`, each 16-bit word big-endian. Bit `k = 16*i + j`
/// (DCT row `i`, column `j`) is bit `j` of word `w[i]`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PdqHash(pub [u8; 32]);

impl PdqHash {
    /// The all-zero hash the reference returns for images too small to hash.
    pub const ZERO: PdqHash = PdqHash([0; 32]);

    /// Hamming distance to `other`, from 0 to 256.
    #[inline]
    pub fn distance(&self, other: &PdqHash) -> u32 {
        let a = self.words();
        let b = other.words();
        (0..4).map(|i| (a[i] ^ b[i]).count_ones()).sum()
    }

    /// The hash as four 64-bit words, for fast distance computations.
    ///
    /// Word `n` holds bytes `8n..8n+8` in big-endian order, so the layout is
    /// stable across platforms.
    #[inline]
    pub fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (n, chunk) in self.0.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w[n] = u64::from_be_bytes(b);
        }
        w
    }

    /// Builds a hash from the words [`PdqHash::words`] returns.
    pub fn from_words(w: [u64; 4]) -> Self {
        let mut out = [0u8; 32];
        for (n, word) in w.iter().enumerate() {
            out[8 * n..8 * n + 8].copy_from_slice(&word.to_be_bytes());
        }
        PdqHash(out)
    }

    /// The byte index and mask of reference bit `k` (0..256).
    #[inline]
    fn locate(k: usize) -> (usize, u8) {
        let (i, j) = (k / 16, k % 16);
        let byte = 2 * (15 - i) + usize::from(j < 8);
        (byte, 1u8 << (j % 8))
    }

    /// Reference bit `k = 16*row + col` of the 16x16 DCT sign grid.
    ///
    /// # Panics
    /// Panics if `k >= 256`.
    pub fn bit(&self, k: usize) -> bool {
        let (byte, mask) = Self::locate(k);
        self.0[byte] & mask != 0
    }

    /// Sets reference bit `k` (see [`PdqHash::bit`]).
    ///
    /// # Panics
    /// Panics if `k >= 256`.
    pub fn set_bit(&mut self, k: usize) {
        let (byte, mask) = Self::locate(k);
        self.0[byte] |= mask;
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.words().iter().map(|w| w.count_ones()).sum()
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        // Every byte written above is an ASCII hex digit.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdqHash({self})")
    }
}

impl FromStr for PdqHash {
    type Err = Error;

    /// Parses 64 hex digits, either case, with surrounding white space ignored.
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim().as_bytes();
        if t.len() != 64 {
            return Err(Error::Hex(s.to_owned()));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(Error::Hex(s.to_owned())),
            }
        }
        Ok(PdqHash(out))
    }
}

impl Serialize for PdqHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PdqHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// PDQ's quality score, 0 to 100. Hashes below 50 are too flat to match reliably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(transparent)]
pub struct Quality(u8);

impl Quality {
    /// The threshold below which the industry refuses to match a hash.
    pub const MATCH_THRESHOLD: Quality = Quality(50);

    /// Wraps a score, failing outside 0..=100.
    pub fn new(q: i64) -> Result<Self, Error> {
        u8::try_from(q)
            .ok()
            .filter(|q| *q <= 100)
            .map(Quality)
            .ok_or(Error::Quality(q))
    }

    /// The score as an integer.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Quality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let q: i64 = s.trim().parse().map_err(|_| Error::Quality(-1))?;
        Quality::new(q)
    }
}

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let q = i64::deserialize(d)?;
        Quality::new(q).map_err(serde::de::Error::custom)
    }
}

/// One of the eight dihedral transforms, in the reference's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transform {
    /// The image as given.
    Orig,
    /// Rotated 90 degrees.
    Rot90,
    /// Rotated 180 degrees.
    Rot180,
    /// Rotated 270 degrees.
    Rot270,
    /// Mirrored about the horizontal axis.
    FlipX,
    /// Mirrored about the vertical axis.
    FlipY,
    /// Mirrored about the main diagonal (transposed).
    FlipPlus1,
    /// Mirrored about the anti-diagonal.
    FlipMinus1,
}

impl Transform {
    /// All eight, in the reference's order.
    pub const ALL: [Transform; 8] = [
        Transform::Orig,
        Transform::Rot90,
        Transform::Rot180,
        Transform::Rot270,
        Transform::FlipX,
        Transform::FlipY,
        Transform::FlipPlus1,
        Transform::FlipMinus1,
    ];

    /// The name used on the command line and in outputs, such as `rot90`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transform::Orig => "orig",
            Transform::Rot90 => "rot90",
            Transform::Rot180 => "rot180",
            Transform::Rot270 => "rot270",
            Transform::FlipX => "flipx",
            Transform::FlipY => "flipy",
            Transform::FlipPlus1 => "flipplus1",
            Transform::FlipMinus1 => "flipminus1",
        }
    }

    /// The position of this transform in [`Transform::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Transform::ALL
            .iter()
            .copied()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::Transform(s.to_owned()))
    }
}

impl Serialize for Transform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bit_layout_matches_reference_printing() {
        // Bit 0 is bit 0 of w[0], which the reference prints last.
        let mut h = PdqHash::ZERO;
        h.set_bit(0);
        assert!(h.to_string().ends_with("0001"));
        // Bit 255 is bit 15 of w[15], printed first.
        let mut h = PdqHash::ZERO;
        h.set_bit(255);
        assert!(h.to_string().starts_with("8000"));
        assert!(h.bit(255) && !h.bit(254));
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("ab".parse::<PdqHash>().is_err());
        assert!("g".repeat(64).parse::<PdqHash>().is_err());
        assert!("é".repeat(32).parse::<PdqHash>().is_err());
    }

    #[test]
    fn quality_bounds() {
        assert!(Quality::new(101).is_err());
        assert!(Quality::new(-1).is_err());
        assert_eq!(Quality::new(100).unwrap().get(), 100);
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let h = PdqHash(bytes);
            prop_assert_eq!(h.to_string().parse::<PdqHash>().unwrap(), h);
            prop_assert_eq!(h.to_string().to_uppercase().parse::<PdqHash>().unwrap(), h);
            prop_assert_eq!(PdqHash::from_words(h.words()), h);
        }

        #[test]
        fn distance_is_a_metric(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (a, b) = (PdqHash(a), PdqHash(b));
            prop_assert_eq!(a.distance(&a), 0);
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            let direct: u32 = a.0.iter().zip(b.0.iter()).map(|(x, y)| (x ^ y).count_ones()).sum();
            prop_assert_eq!(a.distance(&b), direct);
        }
    }
}
