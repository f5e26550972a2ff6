//! The message encoding: takedown's JSON lines, one event per line, with
//! batches split by sensor and by size.

use std::collections::BTreeMap;

use bytes::Bytes;
use takedown_event::Event;
use takedown_ingest::JsonlReader;

use crate::Error;
use crate::config::SubjectPrefix;

/// The header naming the payload's encoding, so that a later encoding can be
/// told apart from this one.
pub const FORMAT_HEADER: &str = "Takedown-Format";

/// The value of [`FORMAT_HEADER`] for JSON lines of events, the encoding of
/// this version. Consumers also accept messages without the header as this
/// encoding, so that events can be injected with generic NATS tools.
pub const FORMAT_JSONL: &str = "events-jsonl/1";

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `<prefix>.<sensor>`.
    pub subject: String,
    /// JSON lines, each ending in `\n`.
    pub payload: Bytes,
    /// How many events the payload holds.
    pub n_events: usize,
}

/// Encodes `events` as messages of at most `limit` payload bytes, one run of
/// messages per sensor, keeping the order of each sensor's events. Fails only
/// if a single event does not fit in `limit`.
pub fn encode_batch(
    events: &[Event],
    prefix: &SubjectPrefix,
    limit: usize,
) -> Result<Vec<Outgoing>, Error> {
    // Sensors are grouped so that a batch of interleaved sensors still makes
    // few messages; a BTreeMap keeps the split deterministic, which message
    // ids rely on when a batch is published again.
    let mut by_sensor: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_sensor.entry(e.sensor.as_str()).or_default().push(e);
    }
    let mut out = Vec::new();
    let mut line = Vec::new();
    for (sensor, events) in by_sensor {
        let subject = prefix.subject(sensor);
        let mut payload = Vec::new();
        let mut n_events = 0;
        for e in events {
            line.clear();
            serde_json::to_writer(&mut line, e).map_err(|e| Error::Encode(e.to_string()))?;
            line.push(b'\n');
            if line.len() > limit {
                return Err(Error::TooLarge {
                    bytes: line.len(),
                    limit,
                });
            }
            if payload.len() + line.len() > limit {
                out.push(Outgoing {
                    subject: subject.clone(),
                    payload: Bytes::from(std::mem::take(&mut payload)),
                    n_events,
                });
                n_events = 0;
            }
            payload.extend_from_slice(&line);
            n_events += 1;
        }
        if n_events > 0 {
            out.push(Outgoing {
                subject,
                payload: Bytes::from(payload),
                n_events,
            });
        }
    }
    Ok(out)
}

/// Decodes a message payload; any bad line rejects the whole message, since
/// a publisher writes only whole, valid messages.
pub fn decode_events(payload: &[u8]) -> Result<Vec<Event>, String> {
    let mut reader = JsonlReader::new(payload);
    let mut events = Vec::new();
    loop {
        match reader.next_event() {
            Ok(Some(Ok(e))) => events.push(e),
            Ok(Some(Err(row))) => return Err(row.to_string()),
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if events.is_empty() {
        return Err("the message holds no events".to_owned());
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(i: u32, sensor: &str) -> Event {
        let mut e = Event::new(
            takedown_event::Timestamp(i64::from(i)),
            takedown_event::EventKind::Http,
            format!("192.0.2.{}:{}", i % 250, 1000 + i).parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            sensor.parse().unwrap(),
        );
        e.http_url = Some(format!("/gate.php?id={i}"));
        e
    }

    #[test]
    fn batches_split_by_sensor_and_size_and_round_trip() {
        let prefix: SubjectPrefix = "t.e".parse().unwrap();
        let events: Vec<Event> = (0..500)
            .map(|i| event(i, if i % 3 == 0 { "a" } else { "b.1" }))
            .collect();
        let limit = 4096;
        let msgs = encode_batch(&events, &prefix, limit).unwrap();
        assert!(msgs.len() > 2);
        assert!(msgs.iter().all(|m| m.payload.len() <= limit));
        assert!(
            msgs.iter()
                .all(|m| m.subject == "t.e.a" || m.subject == "t.e.b_1")
        );
        let mut back = Vec::new();
        for m in &msgs {
            let decoded = decode_events(&m.payload).unwrap();
            assert_eq!(decoded.len(), m.n_events);
            back.extend(decoded);
        }
        let a: Vec<&Event> = events.iter().filter(|e| e.sensor.as_str() == "a").collect();
        let b: Vec<&Event> = events.iter().filter(|e| e.sensor.as_str() != "a").collect();
        let expected: Vec<&Event> = a.into_iter().chain(b).collect();
        assert_eq!(back.iter().collect::<Vec<_>>(), expected);
        // The same batch always makes the same messages.
        assert_eq!(encode_batch(&events, &prefix, limit).unwrap(), msgs);
    }

    #[test]
    fn an_event_larger_than_the_limit_is_an_error() {
        let prefix: SubjectPrefix = "t".parse().unwrap();
        let mut e = event(1, "a");
        e.http_agent = Some("x".repeat(2000));
        let err = encode_batch(&[e], &prefix, 1024).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 1024, .. }), "{err}");
        assert!(encode_batch(&[], &prefix, 1024).unwrap().is_empty());
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        assert!(decode_events(b"").is_err());
        assert!(decode_events(b"\n\n").is_err());
        assert!(decode_events(b"{\"not\": \"an event\"}\n").is_err());
        assert!(decode_events(&[0xff, 0xfe, b'\n']).is_err());
        let good = serde_json::to_string(&event(1, "a")).unwrap();
        assert!(decode_events(format!("{good}\ngarbage\n").as_bytes()).is_err());
        assert_eq!(decode_events(good.as_bytes()).unwrap().len(), 1);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_events(&bytes);
        }

        #[test]
        fn any_split_round_trips(
            n in 0u32..300,
            sensors in 1usize..5,
            limit in 1024usize..20_000,
            agent_len in 0usize..600,
        ) {
            let prefix: SubjectPrefix = "p".parse().unwrap();
            let events: Vec<Event> = (0..n)
                .map(|i| {
                    let mut e = event(i, &format!("s{}", i as usize % sensors));
                    e.http_agent = Some("a".repeat(agent_len));
                    e
                })
                .collect();
            let msgs = encode_batch(&events, &prefix, limit).unwrap();
            prop_assert!(msgs.iter().all(|m| m.payload.len() <= limit && m.n_events > 0));
            let mut back: Vec<Event> = msgs
                .iter()
                .flat_map(|m| decode_events(&m.payload).unwrap())
                .collect();
            let mut expected = events.clone();
            back.sort_by_key(|e| e.timestamp);
            expected.sort_by_key(|e| e.timestamp);
            prop_assert_eq!(back, expected);
        }
    }
}
