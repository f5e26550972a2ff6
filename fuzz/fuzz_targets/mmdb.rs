//! MMDB reader: any bytes parse and walk to networks or an error, never a panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = takedown_enrich::mmdb::fuzz(data);
});
