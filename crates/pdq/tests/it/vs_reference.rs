//! The fast path against the plain transcription, on random sizes and pixels.

use proptest::prelude::*;
use takedown_pdq::Hasher;

use super::fixtures::splitmix;
use super::reference;

fn rgb(width: usize, height: usize, seed: u64, smooth: bool) -> Vec<u8> {
    (0..width * height * 3)
        .map(|i| {
            let r = (splitmix(seed, i as u64) >> 56) as usize;
            if smooth {
                // Mostly a gradient, so medians and ties are less uniform.
                let p = i / 3;
                ((p % width) * 255 / width + (p / width) * 3 + r % 8) as u8
            } else {
                r as u8
            }
        })
        .collect()
}

fn check(width: usize, height: usize, seed: u64, smooth: bool) -> Result<(), TestCaseError> {
    let img = rgb(width, height, seed, smooth);
    let want = reference::from_rgb(&img, width, height);
    let mut hasher = Hasher::new();
    let (hash, q) = hasher.hash_rgb(&img, width, height).unwrap();
    prop_assert_eq!(hash, want.hash, "{}x{}", width, height);
    prop_assert_eq!(i32::from(q.get()), want.quality);
    let d = hasher.dihedral_rgb(&img, width, height).unwrap();
    prop_assert_eq!(d.hashes, want.dihedral, "{}x{}", width, height);
    prop_assert_eq!(i32::from(d.quality.get()), want.dihedral_quality);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fast_path_equals_reference(
        width in 1usize..420,
        height in 1usize..420,
        seed in any::<u64>(),
        smooth in any::<bool>(),
    ) {
        check(width, height, seed, smooth)?;
    }

    #[test]
    fn fast_path_equals_reference_on_thin_images(
        long in 1usize..3000,
        short in 1usize..12,
        seed in any::<u64>(),
        tall in any::<bool>(),
    ) {
        let (w, h) = if tall { (short, long) } else { (long, short) };
        check(w, h, seed, true)?;
    }

    #[test]
    fn float_luma_equals_reference(
        width in 5usize..200,
        height in 5usize..200,
        seed in any::<u64>(),
    ) {
        // Arbitrary finite luma, including negative and large values.
        let luma: Vec<f32> = (0..width * height)
            .map(|i| ((splitmix(seed, i as u64) >> 40) as f32 - 8_388_608.0) / 1000.0)
            .collect();
        let want = reference::from_luma(&luma, width, height);
        let mut hasher = Hasher::new();
        let (hash, q) = hasher.hash_luma(&luma, width, height).unwrap();
        prop_assert_eq!(hash, want.hash);
        prop_assert_eq!(i32::from(q.get()), want.quality);
        let d = hasher.dihedral_luma(&luma, width, height).unwrap();
        prop_assert_eq!(d.hashes, want.dihedral);
    }
}

#[test]
fn larger_images_equal_reference() {
    for (w, h, seed) in [
        (1600, 1004, 1),
        (512, 512, 2),
        (1031, 769, 3),
        (2000, 129, 4),
    ] {
        check(w, h, seed, seed % 2 == 0).unwrap();
    }
}
