//! IntelMQ harmonized events.
//!
//! Keys are IntelMQ's flat dotted field names, and only ones its
//! harmonization defines; anything without a counterpart goes under
//! `extra.`, as IntelMQ's own Shadowserver parser does for the same columns.
//! Values that IntelMQ would reject (a `Host` header that is an address, a URL
//! without a usable host) are left out instead of being passed on.

use std::net::IpAddr;

use serde_json::{Map, Value};
use takedown_event::HostRecord;

use crate::{FeedOptions, iso_utc};

pub(crate) fn event(r: &HostRecord, o: &FeedOptions) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("feed.name", o.feed_name.clone().into());
    put("feed.provider", o.provider.clone().into());
    put("time.source", iso_utc(r.last_seen).into());
    put("time.observation", iso_utc(o.observed).into());
    put("classification.taxonomy", "malicious-code".into());
    put("classification.type", "infected-system".into());
    put("severity", o.severity.as_str().into());
    put("source.ip", r.ip.to_string().into());
    if let Some(asn) = r.network.asn.filter(|a| a.0 != 0) {
        put("source.asn", asn.0.into());
    }
    if let Some(name) = r.network.as_name.as_deref().filter(|n| !n.is_empty()) {
        put("source.as_name", name.into());
    }
    if let Some(prefix) = r.network.prefix {
        put("source.network", prefix.to_string().into());
    }
    if let Some(cc) = r.network.country {
        put("source.geolocation.cc", cc.as_str().into());
    }
    if let Some(f) = &r.family {
        put("malware.name", f.as_str().into());
        put("classification.identifier", f.as_str().into());
    }
    put("destination.port", r.dst_port.into());
    let fqdn = r.sample_host.as_deref().and_then(fqdn);
    if r.sample_url.is_some() || r.sample_host.is_some() {
        put("protocol.application", "http".into());
        put("protocol.transport", "tcp".into());
    }
    if let Some(url) = r
        .sample_url
        .as_deref()
        .and_then(|u| url(u, fqdn.as_deref()))
    {
        put("destination.url", url.into());
    }
    if let Some(host) = fqdn {
        put("destination.fqdn", host.into());
    }
    if let Some(agent) = r.sample_agent.as_deref().filter(|a| !a.is_empty()) {
        put("extra.http_agent", agent.into());
    }
    put("extra.first_seen", iso_utc(r.first_seen).into());
    put("extra.count", r.count.into());
    put("extra.nat_suspected", r.nat_suspected.into());
    put("extra.record_id", r.id.clone().into());
    m
}

/// The host part of a `Host` header if IntelMQ would accept it as an FQDN:
/// lower-case, no port, not an address, no trailing dot, plain ASCII labels.
fn fqdn(host: &str) -> Option<String> {
    let h = host.trim();
    // A port suffix is common in Host headers; an IPv6 literal is bracketed.
    let h = match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    };
    let h = h.trim_end_matches('.').to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.parse::<IpAddr>().is_err()
        && !h.starts_with('.')
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(h)
}

/// An absolute URL from a request target, joined with the host as IntelMQ's
/// Shadowserver parser does, or `None` when no valid URL can be formed.
fn url(target: &str, host: Option<&str>) -> Option<String> {
    let t = target.trim();
    if t.is_empty() || t.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(t.to_owned());
    }
    let host = host?;
    if t.starts_with('/') {
        Some(format!("http://{host}{t}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_accepts_names_and_strips_ports() {
        assert_eq!(
            fqdn("C2.Example.com:8080").as_deref(),
            Some("c2.example.com")
        );
        assert_eq!(fqdn("c2.example.com.").as_deref(), Some("c2.example.com"));
        assert_eq!(fqdn("198.51.100.1"), None);
        assert_eq!(fqdn("198.51.100.1:80"), None);
        assert_eq!(fqdn("[2001:db8::1]:80"), None);
        assert_eq!(fqdn("a b"), None);
        assert_eq!(fqdn("bücher.example"), None);
        assert_eq!(fqdn(""), None);
    }

    #[test]
    fn urls_are_absolute_or_absent() {
        assert_eq!(
            url("/gate.php?id=1", Some("c2.example")).as_deref(),
            Some("http://c2.example/gate.php?id=1")
        );
        assert_eq!(url("/gate.php", None), None);
        assert_eq!(
            url("http://x.example/a", None).as_deref(),
            Some("http://x.example/a")
        );
        assert_eq!(url("gate.php", Some("c2.example")), None);
        assert_eq!(url("/a b", Some("c2.example")), None);
    }
}
