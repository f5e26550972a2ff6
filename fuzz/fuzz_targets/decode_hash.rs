//! Decodes and hashes arbitrary bytes as an image file, under a small pixel limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use takedown_image::{Colour, Limits, Options, hash_bytes};

fuzz_target!(|data: &[u8]| {
    let colour = if data.len() % 2 == 0 {
        Colour::Pytx
    } else {
        Colour::Rgb
    };
    let options = Options {
        limits: Limits {
            max_pixels: 1 << 20,
        },
        colour,
        dihedral: data.len() % 3 == 0,
    };
    let _ = hash_bytes(data, &options);
});
