//! Index files: damaged or arbitrary bytes (with a valid checksum) open as an index or fail with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    takedown_index::fuzz_open_damaged(data);
});
