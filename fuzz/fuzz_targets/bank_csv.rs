//! Hash list parsers (CSV, JSON lines, hash lists, signal files) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = takedown_bank::fuzz_parse(data);
});
