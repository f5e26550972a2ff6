//! Index benchmark: build/open time, query latency, recall and resident
//! memory over random hashes with planted matches at distance 20-31.
//!
//! ```text
//! cargo run --release -p takedown-index --example bench_index -- --n 10000000 --queries 2000 --out DIR
//! ```
//!
//! With `--out DIR` it also writes `DIR/base.u8` (n x 32 hash bytes) and
//! `DIR/queries.u8` (queries x 8 x 32 bytes, transform order) and
//! `DIR/planted.txt` (per query: the planted transform and entry) so a peer can
//! run on the same data, and prints one `RESULT {json}` line for scripts.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use takedown_index::{EntryId, FlatIndex, Hit, Index, Query, Radius, Search};
use takedown_pdq::{PdqHash, Transform};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hash(&mut self) -> PdqHash {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        PdqHash(b)
    }

    fn flip(&mut self, h: PdqHash, d: usize) -> PdqHash {
        let mut bits: Vec<usize> = (0..256).collect();
        let mut out = h;
        for i in 0..d {
            let j = i + (self.next() % (256 - i) as u64) as usize;
            bits.swap(i, j);
            out.0[bits[i] / 8] ^= 1 << (bits[i] % 8);
        }
        out
    }
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Nanoseconds this thread has spent on a CPU: immune to other processes
/// competing for the cores, unlike wall time.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// CPU seconds used by this whole process (all threads) so far.
fn process_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

struct Stats {
    cpu_ms: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    qps: f64,
}

fn time_queries(index: &Index, queries: &[Query], r: Radius) -> (Stats, Vec<Vec<Hit>>) {
    let mut lat = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    let total = Instant::now();
    let cpu0 = cpu_ns();
    for q in queries {
        let t = Instant::now();
        let mut hits = Vec::new();
        index.search_into(q, r, &mut hits);
        lat.push(t.elapsed());
        results.push(hits);
    }
    let cpu = cpu_ns().saturating_sub(cpu0);
    let total = total.elapsed();
    lat.sort();
    let stats = Stats {
        cpu_ms: cpu as f64 / 1e6 / queries.len().max(1) as f64,
        mean_ms: total.as_secs_f64() * 1e3 / queries.len().max(1) as f64,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        qps: queries.len() as f64 / total.as_secs_f64(),
    };
    (stats, results)
}

/// Opens an index in this fresh process and reports the time and resident
/// memory it took: `OPEN <seconds> <rss bytes>`.
fn measure_open(path: &str) {
    let rss0 = rss_bytes();
    let t = Instant::now();
    let index = Index::open(std::path::Path::new(path)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(rss0);
    println!("OPEN {secs} {rss} {}", index.len());
}

/// Saves the index, measures opening it in a fresh process, and opens it
/// here: (index, save seconds, file bytes, open seconds, RSS after open).
fn save_and_reopen(
    index: Index,
    out: Option<&std::path::Path>,
    n: usize,
) -> (Index, f64, u64, f64, u64) {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir(),
    };
    let path = dir.join(format!("bench-{n}.tdx"));
    let t = Instant::now();
    index.save(&path).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    drop(index);
    // Open in a fresh process so the resident-memory delta is not muddied
    // by this process's freed build memory.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--measure-open")
        .arg(&path)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&child.stdout).to_string();
    let mut parts = line.split_whitespace().skip(1);
    let open_s: f64 = parts
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN);
    let rss_open: u64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let index = Index::open(&path).unwrap();
    if out.is_none() {
        let _ = std::fs::remove_file(&path);
    }

    (index, save_s, file_bytes, open_s, rss_open)
}

fn main() {
    if let Some(path) = std::env::args()
        .nth(2)
        .filter(|_| std::env::args().nth(1).as_deref() == Some("--measure-open"))
    {
        measure_open(&path);
        return;
    }
    let mut n: usize = 1_000_000;
    let mut nq: usize = 1000;
    let mut out: Option<PathBuf> = None;
    let mut seed: u64 = 42;
    let mut rounds: usize = 3;
    let mut quick = false;
    let mut radius = Radius::DEFAULT;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("missing value");
        match a.as_str() {
            "--n" => n = val().parse().unwrap(),
            "--queries" => nq = val().parse().unwrap(),
            "--out" => out = Some(PathBuf::from(val())),
            "--seed" => seed = val().parse().unwrap(),
            "--rounds" => rounds = val().parse::<usize>().unwrap().max(1),
            "--quick" => quick = true,
            "--radius" => radius = Radius::new(val().parse().unwrap()).unwrap(),
            _ => panic!("unknown argument {a}"),
        }
    }
    let r = radius;
    let mut rng = Rng(seed);

    // Data: random hashes; each query has eight transform hashes, and one of
    // them (cycling through the transforms) has a planted entry at distance
    // 20 to 31.
    let mut base: Vec<PdqHash> = (0..n).map(|_| rng.hash()).collect();
    let mut dih: Vec<[PdqHash; 8]> = Vec::with_capacity(nq);
    let mut planted: Vec<(usize, u64)> = Vec::with_capacity(nq);
    for i in 0..nq {
        let q: [PdqHash; 8] = std::array::from_fn(|_| rng.hash());
        let t = i % 8;
        // Distinct positions, so no planted entry overwrites another.
        let stride = (n / nq.max(1)).max(1);
        let pos = (i * stride + (rng.next() % stride as u64) as usize) % n;
        let d = 20 + (rng.next() % 12) as usize;
        base[pos] = rng.flip(q[t], d);
        planted.push((t, pos as u64));
        dih.push(q);
    }
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).unwrap();
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("base.u8")).unwrap());
        for h in &base {
            f.write_all(&h.0).unwrap();
        }
        f.flush().unwrap();
        let mut p =
            std::io::BufWriter::new(std::fs::File::create(dir.join("planted.txt")).unwrap());
        for (t, pos) in &planted {
            writeln!(p, "{t} {pos}").unwrap();
        }
        p.flush().unwrap();
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("queries.u8")).unwrap());
        for q in &dih {
            for h in q {
                f.write_all(&h.0).unwrap();
            }
        }
        f.flush().unwrap();
    }

    let rss0 = rss_bytes();
    let t = Instant::now();
    let cpu0 = process_cpu_s();
    let index = Index::build(
        base.iter()
            .enumerate()
            .map(|(i, h)| (EntryId(i as u64), *h)),
    )
    .unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let build_cpu_s = process_cpu_s() - cpu0;
    let rss_built = rss_bytes().saturating_sub(rss0);
    let heap = index.heap_bytes();

    let (index, save_s, file_bytes, open_s, rss_open) = if quick {
        (index, 0.0, 0, 0.0, 0)
    } else {
        save_and_reopen(index, out.as_deref(), n)
    };

    let single: Vec<Query> = dih
        .iter()
        .zip(&planted)
        .map(|(q, (t, _))| Query::with_transforms([(Transform::ALL[*t], q[*t])]))
        .collect();
    let eight: Vec<Query> = dih
        .iter()
        .map(|q| Query::with_transforms(Transform::ALL.iter().copied().zip(q.iter().copied())))
        .collect();
    // Warm up, then measure. Each round times every query; the round with the median CPU time is
    // reported, since other tenants of a shared machine make single rounds
    // noisy.
    let _ = time_queries(&index, &eight[..nq.min(50)], r);
    let median_round = |qs: &[Query]| {
        let mut runs: Vec<(Stats, Vec<Vec<Hit>>)> =
            (0..rounds).map(|_| time_queries(&index, qs, r)).collect();
        runs.sort_by(|a, b| a.0.cpu_ms.total_cmp(&b.0.cpu_ms));
        let best = runs[0].0.cpu_ms;
        let mid = runs.swap_remove(rounds / 2);
        (mid.0, mid.1, best)
    };
    let (s1, res1, best1) = median_round(&single);
    let (s8, res8, best8) = median_round(&eight);
    if quick {
        println!(
            "quick: 1 hash {:.4} ms (best {best1:.4}, p50 {:.4}), 8 hashes {:.4} ms (best {best8:.4}, p50 {:.4}), heap {:.1} B/hash",
            s1.cpu_ms,
            s1.p50_ms,
            s8.cpu_ms,
            s8.p50_ms,
            index.heap_bytes() as f64 / n as f64
        );
        return;
    }

    // Recall: every planted entry must be found, and a sample must equal
    // brute force exactly.
    let found1 = res1
        .iter()
        .zip(&planted)
        .filter(|(hits, (_, pos))| hits.iter().any(|h| h.id == EntryId(*pos)))
        .count();
    let found8 = res8
        .iter()
        .zip(&planted)
        .filter(|(hits, (_, pos))| hits.iter().any(|h| h.id == EntryId(*pos)))
        .count();
    let flat = FlatIndex::build(
        base.iter()
            .enumerate()
            .map(|(i, h)| (EntryId(i as u64), *h)),
    )
    .unwrap();
    drop(base);
    let sample = nq.min(20);
    let mut exact = 0;
    let (mut flat1_lat, mut flat8_lat) = (Vec::new(), Vec::new());
    let (mut flat1_cpu, mut flat8_cpu) = (0u64, 0u64);
    for i in 0..sample {
        let (t, c) = (Instant::now(), cpu_ns());
        let want = flat.search(&eight[i], r);
        flat8_cpu += cpu_ns().saturating_sub(c);
        flat8_lat.push(t.elapsed());
        let mut got = res8[i].clone();
        takedown_index::sort_hits(&mut got);
        exact += usize::from(got == want);
        let (t, c) = (Instant::now(), cpu_ns());
        let want1 = flat.search(&single[i], r);
        flat1_cpu += cpu_ns().saturating_sub(c);
        flat1_lat.push(t.elapsed());
        let mut got1 = res1[i].clone();
        takedown_index::sort_hits(&mut got1);
        exact += usize::from(got1 == want1);
    }
    let per_query = |ns: u64| ns as f64 / 1e6 / sample.max(1) as f64;
    let (flat1_cpu_ms, flat8_cpu_ms) = (per_query(flat1_cpu), per_query(flat8_cpu));
    flat1_lat.sort();
    flat8_lat.sort();
    let flat1_ms = percentile(&flat1_lat, 0.5);
    let flat8_ms = percentile(&flat8_lat, 0.5);

    let per_hash = |b: u64| b as f64 / n as f64;
    println!("takedown index, n = {n}, queries = {nq}, radius = {r}");
    println!(
        "  build {build_s:.2} s (CPU {build_cpu_s:.2} s, all threads), save {save_s:.2} s, open {open_s:.2} s, file {:.1} bytes/hash",
        per_hash(file_bytes)
    );
    println!(
        "  memory: heap {:.1} bytes/hash, RSS delta after build {:.1}, after open {:.1} bytes/hash",
        per_hash(heap as u64),
        per_hash(rss_built),
        per_hash(rss_open)
    );
    println!(
        "  1 hash:   cpu {:.4} ms/query; wall mean {:.4} ms, p50 {:.4} ms, p99 {:.4} ms, {:.0} queries/s",
        s1.cpu_ms, s1.mean_ms, s1.p50_ms, s1.p99_ms, s1.qps
    );
    println!(
        "  8 hashes: cpu {:.4} ms/query; wall mean {:.4} ms, p50 {:.4} ms, p99 {:.4} ms, {:.0} queries/s",
        s8.cpu_ms, s8.mean_ms, s8.p50_ms, s8.p99_ms, s8.qps
    );
    println!(
        "  flat scan: 1 hash cpu {flat1_cpu_ms:.2} ms/query (wall p50 {flat1_ms:.2} ms), 8 hashes cpu {flat8_cpu_ms:.2} ms/query (wall p50 {flat8_ms:.2} ms)"
    );
    println!(
        "  recall: planted {found1}/{nq} (1 hash), {found8}/{nq} (8 hashes); exact vs brute force {exact}/{}",
        2 * sample
    );
    println!(
        "RESULT {{\"n\":{n},\"queries\":{nq},\"build_s\":{build_s:.3},\"build_cpu_s\":{build_cpu_s:.2},\"open_s\":{open_s:.3},\"rss_open_bytes_per_hash\":{:.1},\"heap_bytes_per_hash\":{:.1},\"q1_cpu_ms\":{:.5},\"q8_cpu_ms\":{:.5},\"q1_mean_ms\":{:.5},\"q1_p50_ms\":{:.5},\"q1_p99_ms\":{:.5},\"q8_mean_ms\":{:.5},\"q8_p50_ms\":{:.5},\"q8_p99_ms\":{:.5},\"flat1_cpu_ms\":{flat1_cpu_ms:.3},\"flat8_cpu_ms\":{flat8_cpu_ms:.3},\"flat1_p50_ms\":{flat1_ms:.3},\"flat8_p50_ms\":{flat8_ms:.3},\"recall_planted\":{:.4},\"exact_sample\":\"{exact}/{}\"}}",
        per_hash(rss_open),
        per_hash(heap as u64),
        s1.cpu_ms,
        s8.cpu_ms,
        s1.mean_ms,
        s1.p50_ms,
        s1.p99_ms,
        s8.mean_ms,
        s8.p50_ms,
        s8.p99_ms,
        (found1 + found8) as f64 / (2 * nq) as f64,
        2 * sample
    );
}
