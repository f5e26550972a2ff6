//! Index: probing a segment built from fuzzed clusters of hashes returns exactly what a scan returns.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    takedown_index::fuzz_probe_matches_scan(data);
});
