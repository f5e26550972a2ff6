//! Enrichment table cache: any bytes decode to tables or a miss, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = takedown_enrich::fuzz_cache(data);
});
