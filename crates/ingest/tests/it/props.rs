//! Property tests: the parsers never panic and keep every row accounted for.

use proptest::prelude::*;
use takedown_ingest::{ImportFormat, parse_all};

const HTTP_HEADER: &str = "timestamp,protocol,src_ip,src_port,src_asn,src_geo,src_region,src_city,src_hostname,src_naics,src_sector,device_vendor,device_type,device_model,severity,dst_ip,dst_port,dst_asn,dst_geo,dst_region,dst_city,dst_hostname,dst_naics,dst_sector,public_source,infection,family,tag,application,version,event_id,http_url,http_host,http_agent,forwarded_by,ssl_cipher,http_referer,ssl_servername,machine_name";

/// A field that is sometimes valid and sometimes not, quoting included.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("2026-11-29 10:00:00".to_owned()),
        Just("192.0.2.1".to_owned()),
        Just("2001:db8::1".to_owned()),
        Just("80".to_owned()),
        Just("tcp".to_owned()),
        "[0-9]{1,6}",
        "[ -~]{0,20}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        // Free text without the characters that would start a quoted field
        // or end the row, so the row count stays known.
        "[^\",\r\n]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_all(ImportFormat::Shadowserver, &bytes, "p".parse().unwrap());
        let _ = parse_all(ImportFormat::Jsonl, &bytes, "p".parse().unwrap());
    }

    #[test]
    fn every_data_row_is_an_event_or_an_error(
        rows in proptest::collection::vec(proptest::collection::vec(field(), 39..=39), 0..20)
    ) {
        let mut text = String::from(HTTP_HEADER);
        text.push('\n');
        let mut n_rows = 0u64;
        for r in &rows {
            let line = r.join(",");
            text.push_str(&line);
            text.push('\n');
            n_rows += 1;
        }
        let (events, errors) =
            parse_all(ImportFormat::Shadowserver, text.as_bytes(), "p".parse().unwrap()).unwrap();
        prop_assert_eq!(events.len() as u64 + errors.len() as u64, n_rows);
        for e in &errors {
            prop_assert!(e.line >= 2 && e.line <= n_rows + 1);
        }
    }
}
