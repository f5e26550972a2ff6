//! The sinkhole event and the network it is attributed to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Asn, CountryCode, Error, Family, SensorId, Timestamp};

/// What kind of check-in an event records.
///
/// DNS events are kept apart because a DNS sinkhole mostly sees recursive
/// resolvers, not infected machines: they never count as infected hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// An HTTP request (Shadowserver's `sinkhole_http` report).
    Http,
    /// A raw TCP or TLS connection that is not HTTP (Shadowserver's `sinkhole` report).
    Tcp,
    /// A DNS query for a seized name (Shadowserver's `sinkhole_dns` report).
    Dns,
}

impl EventKind {
    /// The lower-case name used in schemas and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Http => "http",
            EventKind::Tcp => "tcp",
            EventKind::Dns => "dns",
        }
    }

    /// Whether events of this kind are evidence of an infected host.
    pub fn counts_as_infection(self) -> bool {
        !matches!(self, EventKind::Dns)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" => Ok(EventKind::Http),
            "tcp" => Ok(EventKind::Tcp),
            "dns" => Ok(EventKind::Dns),
            _ => Err(Error::Unknown {
                what: "event kind",
                value: s.to_owned(),
                expected: "http, tcp or dns",
            }),
        }
    }
}

/// The transport protocol of a check-in, as Shadowserver's `protocol` column names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl FromStr for Transport {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            _ => Err(Error::Unknown {
                what: "transport",
                value: s.to_owned(),
                expected: "tcp or udp",
            }),
        }
    }
}

/// The network an address belongs to, as enrichment found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The most specific routed prefix that holds the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<IpNet>,
    /// The origin AS of that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<Asn>,
    /// The AS's registered name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_name: Option<String>,
    /// The country the address is located in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<CountryCode>,
}

/// One check-in seen by a sinkhole, or one row imported from another sinkhole's log.
///
/// Field names follow Shadowserver's sinkhole report columns where a
/// counterpart exists (`src_ip`, `dst_port`, `http_agent`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the check-in arrived (UTC).
    pub timestamp: Timestamp,
    /// The kind of check-in.
    pub kind: EventKind,
    /// The client address: the infected host, or for DNS the resolver.
    pub src_ip: IpAddr,
    /// The client port.
    pub src_port: u16,
    /// The sinkhole address the client reached.
    pub dst_ip: IpAddr,
    /// The sinkhole port the client reached.
    pub dst_port: u16,
    /// The transport protocol.
    pub protocol: Transport,
    /// The HTTP method, such as `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// The request target as sent (path and query, or absolute URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// The HTTP `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// The HTTP `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_agent: Option<String>,
    /// The HTTP `Referer` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_referer: Option<String>,
    /// The TLS server name indication, for TLS connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// The DNS query name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_qname: Option<String>,
    /// The DNS query type, such as `A` or `TXT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_qtype: Option<String>,
    /// The first bytes a raw TCP client sent, hex-encoded and bounded by the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The botnet family the check-in was attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// A free-form tag from the sinkhole config, such as a campaign or C2 generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The sensor that recorded the event.
    pub sensor: SensorId,
    /// Whether the request was malformed and recorded only as far as it parsed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub malformed: bool,
    /// The source network, once enrichment has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

impl Event {
    /// A bare event of `kind` from `src` to `dst`, for builders and tests to fill in.
    pub fn new(
        timestamp: Timestamp,
        kind: EventKind,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        sensor: SensorId,
    ) -> Self {
        Event {
            timestamp,
            kind,
            src_ip: src.ip(),
            src_port: src.port(),
            dst_ip: dst.ip(),
            dst_port: dst.port(),
            protocol: if kind == EventKind::Dns {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            http_method: None,
            http_url: None,
            http_host: None,
            http_agent: None,
            http_referer: None,
            tls_sni: None,
            dns_qname: None,
            dns_qtype: None,
            payload: None,
            family: None,
            tag: None,
            sensor,
            malformed: false,
            network: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_omits_empty_fields() {
        let mut e = Event::new(
            "2026-11-29T10:00:00Z".parse().unwrap(),
            EventKind::Http,
            "192.0.2.7:51000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            "sh1".parse().unwrap(),
        );
        e.http_host = Some("c2.example".into());
        e.family = Some("rustock".parse().unwrap());
        let j = serde_json::to_string(&e).unwrap();
        assert!(!j.contains("dns_qname"));
        assert!(!j.contains("malformed"));
        let back: Event = serde_json::from_str(&j).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn dns_is_not_infection_evidence() {
        assert!(!EventKind::Dns.counts_as_infection());
        assert!(EventKind::Http.counts_as_infection());
    }
}
