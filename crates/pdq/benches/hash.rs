//! Criterion benchmarks of hashing decoded pixels. The side-by-side run with
//! the reference core is `bench/pdq.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use takedown_pdq::Hasher;

fn pixels(width: usize, height: usize) -> Vec<u8> {
    (0..width * height * 3)
        .map(|i| {
            let p = i / 3;
            ((p % width) * 200 / width
                + (p / width) * 50 / height
                + ((i * 2_654_435_761) >> 27) % 16) as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pdq");
    group.sample_size(20);
    for (w, h) in [(1600, 1004), (512, 512)] {
        let img = pixels(w, h);
        let grey: Vec<u8> = img.iter().step_by(3).copied().collect();
        let mut hasher = Hasher::new();
        group.throughput(Throughput::Elements((w * h) as u64));
        group.bench_function(format!("hash_rgb/{w}x{h}"), |b| {
            b.iter(|| hasher.hash_rgb(black_box(&img), w, h))
        });
        group.bench_function(format!("dihedral_rgb/{w}x{h}"), |b| {
            b.iter(|| hasher.dihedral_rgb(black_box(&img), w, h))
        });
        group.bench_function(format!("hash_gray/{w}x{h}"), |b| {
            b.iter(|| hasher.hash_gray(black_box(&grey), w, h))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
