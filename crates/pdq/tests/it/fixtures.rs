//! Deterministic synthetic images, the same as `tests/data/gen_golden.py` makes.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Value `i` of a counter-based SplitMix64 stream.
pub fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An interleaved RGB image from the named pattern.
pub fn image(pattern: &str, width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height * 3);
    let wm = width.saturating_sub(1).max(1) as i64;
    let hm = height.saturating_sub(1).max(1) as i64;
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let base = (y as u64 * width as u64 + x as u64) * 3;
            let rand = |c: u64| (splitmix(seed, base + c) >> 56) as i64;
            let px: [i64; 3] = match pattern {
                "noise" => [rand(0), rand(1), rand(2)],
                "gradient" => [x * 255 / wm, y * 255 / hm, ((x + y) * 7) % 256],
                "mix" => {
                    let base = x * 200 / wm + y * 50 / hm;
                    let check = ((x / 13 + y / 9) % 2) * 40;
                    let f = |c: u64| (base + check + rand(c) % 32 - 16).clamp(0, 255);
                    [f(0), f(1), f(2)]
                }
                "grey" => {
                    let v = (x * 3 + y * 5 + rand(0) % 64) % 256;
                    [v, v, v]
                }
                "flat" => [77, 77, 77],
                other => panic!("unknown pattern {other}"),
            };
            out.extend(px.iter().map(|&v| v as u8));
        }
    }
    out
}
