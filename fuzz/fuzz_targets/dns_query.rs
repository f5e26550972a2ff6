//! The sinkhole's DNS responder on arbitrary packets: parsing, name decoding
//! and reply building.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use takedown_sinkhole::Config;
use takedown_sinkhole::dns::{Responder, parse_query};

fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| {
        let cfg = Config::from_toml(
            r#"
sensor = "fuzz"
[[dns]]
bind = "127.0.0.1:0"
[[families]]
family = "fuzzbot"
domains = ["a.example", "*.b.example"]
[dns_answer]
ipv4 = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6", "192.0.2.7", "192.0.2.8"]
ipv6 = ["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4", "2001:db8::5", "2001:db8::6", "2001:db8::7", "2001:db8::8"]
"#,
        )
        .expect("the fuzz config is valid");
        Responder::new(cfg.families, cfg.answer)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_query(data);
    let (mut out, mut name) = (Vec::new(), String::new());
    let _ = responder().respond(data, &mut out, &mut name);
    if !out.is_empty() {
        // Replies echo the id, are responses, and always fit classic UDP.
        assert_eq!(out.get(..2), data.get(..2));
        assert!(out.get(2).is_some_and(|b| b & 0x80 != 0));
        assert!(out.len() <= 512, "reply of {} bytes", out.len());
    }
});
