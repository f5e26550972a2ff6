//! The PROXY protocol header parser (versions 1 and 2) on arbitrary input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use takedown_sinkhole::proxy::{MAX_HEADER_LEN, ProxyParse, has_signature, parse_proxy_header};

fuzz_target!(|data: &[u8]| {
    match parse_proxy_header(data) {
        ProxyParse::Complete { len, .. } => {
            assert!(len <= data.len() && len <= MAX_HEADER_LEN);
            assert_eq!(has_signature(data), Some(true));
        }
        ProxyParse::Incomplete { max_len } => assert!(max_len <= MAX_HEADER_LEN),
        ProxyParse::NotProxy | ProxyParse::Malformed(_) => {}
    }
});
