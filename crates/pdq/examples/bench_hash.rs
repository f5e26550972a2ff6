//! Times hashing of decoded pixels and prints one parseable line per case:
//! `pdq_bench impl=takedown case=<WxH> op=<hash|dihedral> median_ms=<f> min_ms=<f> hash=<hex>`.
//!
//! The pixels come from the same counter-based generator as the golden
//! fixtures, so `bench/pdq.sh` can feed identical buffers to the reference.
//! Usage: `bench_hash [REPS] [WxH ...]` (defaults: 30 reps, 1600x1004 and 512x512).

use std::time::Instant;

use takedown_pdq::Hasher;

fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator's "mix" pattern: a gradient, a checkerboard and noise.
fn image(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let wm = width.saturating_sub(1).max(1) as i64;
    let hm = height.saturating_sub(1).max(1) as i64;
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let base = (y as u64 * width as u64 + x as u64) * 3;
            let b = x * 200 / wm + y * 50 / hm;
            let check = ((x / 13 + y / 9) % 2) * 40;
            for c in 0..3 {
                let r = (splitmix(seed, base + c) >> 56) as i64;
                out.push((b + check + r % 32 - 16).clamp(0, 255) as u8);
            }
        }
    }
    out
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let mut sizes: Vec<(usize, usize)> = Vec::new();
    for a in args {
        let (w, h) = a.split_once('x').ok_or("sizes look like 1600x1004")?;
        sizes.push((w.parse()?, h.parse()?));
    }
    if sizes.is_empty() {
        sizes = vec![(1600, 1004), (512, 512)];
    }
    let mut hasher = Hasher::new();
    for (w, h) in sizes {
        let img = image(w, h, 21);
        hasher.hash_rgb(&img, w, h)?;
        let mut times = Vec::with_capacity(reps);
        let mut hash = None;
        for _ in 0..reps {
            let t = Instant::now();
            let r = hasher.hash_rgb(&img, w, h)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            hash = Some(r.0);
        }
        let (med, min) = stats(times);
        let hash = hash.map(|h| h.to_string()).unwrap_or_default();
        println!(
            "pdq_bench impl=takedown case={w}x{h} op=hash median_ms={med:.3} min_ms={min:.3} hash={hash}"
        );
        let mut times = Vec::with_capacity(reps);
        let mut hash = None;
        for _ in 0..reps {
            let t = Instant::now();
            let r = hasher.dihedral_rgb(&img, w, h)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            hash = Some(r.hashes[1]);
        }
        let (med, min) = stats(times);
        let hash = hash.map(|h| h.to_string()).unwrap_or_default();
        println!(
            "pdq_bench impl=takedown case={w}x{h} op=dihedral median_ms={med:.3} min_ms={min:.3} hash={hash}"
        );
    }
    Ok(())
}
