//! The sinkhole's first-bytes parsers on arbitrary input: the HTTP request
//! head parser (strict and lenient) and the TLS ClientHello SNI parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use takedown_sinkhole::http::{lenient_head, parse_request};
use takedown_sinkhole::tls::parse_client_hello;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the header limit, so the too-many-headers path is reached.
    let max_headers = data.first().map_or(64, |b| usize::from(*b) + 1);
    let max_field = 256;
    let _ = parse_request(data, max_headers, max_field);
    let head = lenient_head(data, max_field);
    for field in [&head.method, &head.target, &head.host, &head.user_agent, &head.referer] {
        assert!(field.as_ref().is_none_or(|f| f.len() <= max_field));
    }
    let _ = parse_client_hello(data);
});
