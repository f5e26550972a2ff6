//! Lookup throughput on real data, single-threaded.
//!
//! ```text
//! cargo run --release -p takedown-enrich --example bench_lookup -- [--ips FILE] DATA_FILE...
//! ```
//!
//! Loads the given `.csv`/`.mmdb` files into one enricher, then times
//! `Enricher::enrich` over (a) the addresses in `--ips FILE` (one per line),
//! when given, and (b) generated IPv4 and IPv6 addresses: uniformly random
//! IPv4, and addresses drawn from inside the loaded ranges. Prints lookups
//! per second and a checksum (sum of AS numbers, count of countries) so that
//! another implementation can be checked against the same addresses.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Instant;

use takedown_enrich::{Enricher, EnricherBuilder};

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux), so that rates are
/// not skewed by time spent waiting for a core on a busy machine.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn time(label: &str, e: &Enricher, ips: &[IpAddr]) {
    // One warm-up pass, then the best of five timed passes, by CPU time when
    // the kernel reports it and by wall time otherwise.
    let mut best = f64::INFINITY;
    let mut best_wall = f64::INFINITY;
    let mut sum = 0u64;
    let mut countries = 0u64;
    for pass in 0..6 {
        let t = Instant::now();
        let c0 = cpu_ns();
        let (mut s, mut c) = (0u64, 0u64);
        for &ip in ips {
            let hit = e.enrich(ip);
            s += u64::from(hit.asn.map_or(0, |a| a.0));
            c += u64::from(hit.country.is_some());
            std::hint::black_box(hit.prefix);
        }
        let wall = t.elapsed().as_secs_f64();
        let dt = match (c0, cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => wall,
        };
        if pass > 0 {
            best = best.min(dt);
            best_wall = best_wall.min(wall);
        }
        sum = s;
        countries = c;
    }
    let rate = ips.len() as f64 / best;
    println!(
        "{label}: {n} lookups, {rate:.0} lookups/s ({ns:.1} ns/lookup, CPU time; wall {wall:.0}/s), checksum asn_sum={sum} countries={countries}",
        n = ips.len(),
        ns = 1e9 / rate,
        wall = ips.len() as f64 / best_wall,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ips_file: Option<PathBuf> = None;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--ips" {
            ips_file = args.next().map(PathBuf::from);
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        eprintln!("usage: bench_lookup [--ips FILE] DATA_FILE...");
        std::process::exit(2);
    }
    let t = Instant::now();
    let mut b = EnricherBuilder::new();
    for f in &files {
        let s = b.add_file(f).unwrap().expect("a .csv or .mmdb file");
        println!(
            "loaded {} ({} {:?}, {} ranges)",
            s.name, s.format, s.kind, s.ranges
        );
    }
    let e = b.build();
    println!("load+build: {:.2} s", t.elapsed().as_secs_f64());
    if let Some(t) = e.asn_table() {
        println!(
            "asn table: ranges {:?}, segments {:?}, names {}",
            t.ranges(),
            t.segments(),
            e.names().len()
        );
    }
    if let Some(t) = e.country_table() {
        println!(
            "country table: ranges {:?}, segments {:?}",
            t.ranges(),
            t.segments()
        );
    }

    if let Some(p) = ips_file {
        let text = std::fs::read_to_string(&p).unwrap();
        let ips: Vec<IpAddr> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        time(&format!("file {}", p.display()), &e, &ips);
    }

    let n = 2_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let uniform: Vec<IpAddr> = (0..n)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    time("ipv4 uniform random", &e, &uniform);

    // Addresses inside the loaded IPv4 ranges: pick a random address, look it
    // up, and keep the hits until there are enough (bounded tries).
    let mut inside = Vec::with_capacity(n);
    for _ in 0..n * 20 {
        if inside.len() == n {
            break;
        }
        let ip = IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
        if !e.enrich(ip).is_empty() {
            inside.push(ip);
        }
    }
    if !inside.is_empty() {
        time("ipv4 routed (hits only)", &e, &inside);
    }
    let mut v6 = Vec::with_capacity(n);
    for _ in 0..n * 50 {
        if v6.len() == n {
            break;
        }
        // 2000::/4 holds the global unicast space.
        let hi = (0x2u128 << 124) | (u128::from(rng.next() & 0x0fff_ffff_ffff_ffff) << 64);
        let ip = IpAddr::V6(Ipv6Addr::from(hi | u128::from(rng.next())));
        if !e.enrich(ip).is_empty() {
            v6.push(ip);
        }
    }
    if !v6.is_empty() {
        time("ipv6 routed (hits only)", &e, &v6);
    }
}
