//! Shadowserver CSV and JSON-lines import: any bytes give events and bad rows, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use takedown_ingest::{ImportFormat, parse_all};

fuzz_target!(|data: &[u8]| {
    if let Ok(sensor) = "fuzz".parse() {
        let _ = parse_all(ImportFormat::Shadowserver, data, sensor);
    }
    if let Ok(sensor) = "fuzz".parse() {
        let _ = parse_all(ImportFormat::Jsonl, data, sensor);
    }
});
