//! The sinkhole's TOML config and the validated runtime settings built from it.
//!
//! [`ConfigFile`] mirrors the file one to one and rejects unknown fields;
//! [`Config`] is what the listeners run with, every value checked and
//! converted once at load time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use takedown_event::{Family, SensorId};

use crate::Error;
use crate::family::{Attribution, DomainPattern, FamilyMap};

/// The most sinkhole addresses of one family (A or AAAA) a DNS answer carries.
///
/// Eight AAAA records plus the longest possible question and an OPT record
/// still fit the 512-byte UDP limit, so answers never need truncation.
pub const MAX_ANSWER_ADDRS: usize = 8;

/// The most header slots a request may use; `limits.max_headers` is capped here
/// so the parser's header array lives on the stack.
pub const MAX_HEADERS_CAP: usize = 256;

/// The sinkhole config file, as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The sensor id recorded on every event, such as `sh-fra-1`.
    pub sensor: String,
    /// Threads serving the TCP listeners (HTTP, raw TCP, DNS over TCP), each
    /// with its own event loop and its own `SO_REUSEPORT` socket per
    /// listener; default: the number of CPUs.
    #[serde(default)]
    pub io_threads: Option<usize>,
    /// HTTP listeners: every request on these gets a neutral response and is recorded.
    #[serde(default)]
    pub http: Vec<HttpListenerFile>,
    /// DNS listeners: authoritative answers for the seized names.
    #[serde(default)]
    pub dns: Vec<DnsListenerFile>,
    /// Raw TCP listeners: the first bytes a client sends are recorded.
    #[serde(default)]
    pub tcp: Vec<TcpListenerFile>,
    /// Load balancers (CIDRs such as `10.0.0.0/24` or `::1/128`) whose PROXY
    /// protocol headers are believed on listeners with `proxy_protocol = true`,
    /// unless a listener has a list of its own.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Families and the seized names and ports attributed to them.
    #[serde(default)]
    pub families: Vec<FamilyFile>,
    /// The addresses DNS answers point seized names at.
    #[serde(default)]
    pub dns_answer: DnsAnswerFile,
    /// Bounds on what one client may make the sinkhole hold or wait for.
    #[serde(default)]
    pub limits: LimitsFile,
    /// The channel that carries events to the pipeline.
    #[serde(default)]
    pub output: OutputFile,
}

/// One HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerFile {
    /// Address and port to listen on, such as `0.0.0.0:80` or `[::]:8080`.
    pub bind: SocketAddr,
    /// Whether connections from trusted proxies open with a PROXY protocol
    /// header (version 1 or 2) naming the real client (default false).
    /// A trusted peer must send one; a header from any other peer is refused:
    /// recorded as malformed with the real peer address and closed.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The proxies trusted on this listener, replacing the top-level
    /// `trusted_proxies` list.
    #[serde(default)]
    pub trusted_proxies: Option<Vec<String>>,
}

/// One DNS listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsListenerFile {
    /// Address and port to listen on, such as `0.0.0.0:53`.
    pub bind: SocketAddr,
    /// Whether to also answer DNS over TCP on the same address (default true).
    #[serde(default = "yes")]
    pub tcp: bool,
    /// UDP sockets (each with its own thread) sharing the port via
    /// `SO_REUSEPORT`; default: the number of CPUs.
    #[serde(default)]
    pub udp_sockets: Option<usize>,
    /// Whether to record queries for names outside the seized zones, which
    /// are answered REFUSED (default false: they are only counted).
    #[serde(default)]
    pub record_out_of_zone: bool,
}

/// One raw TCP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerFile {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Whether connections from trusted proxies open with a PROXY protocol
    /// header; as for HTTP listeners (default false).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The proxies trusted on this listener, replacing the top-level
    /// `trusted_proxies` list.
    #[serde(default)]
    pub trusted_proxies: Option<Vec<String>>,
}

/// A family and the names and ports attributed to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyFile {
    /// The family name, such as `rustock` (lower-cased; `a-z0-9._-`).
    pub family: String,
    /// An optional tag recorded with the family, such as a campaign name.
    #[serde(default)]
    pub tag: Option<String>,
    /// Seized names: exact (`c2.example.net`) or wildcards (`*.example.com`,
    /// which matches every name below `example.com` but not `example.com` itself).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Listener ports whose check-ins fall back to this family when the name
    /// (Host header or TLS SNI) matches no domain.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// What DNS answers for seized names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsAnswerFile {
    /// Addresses returned for A queries (at most 8).
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    /// Addresses returned for AAAA queries (at most 8).
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    /// Time to live of the answers, in seconds (default 300).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How long resolvers may cache NXDOMAIN and no-data replies, in seconds
    /// (default 300, at most 86400). It is both the TTL and the MINIMUM field
    /// of the synthesised SOA record those replies carry (RFC 2308).
    #[serde(default = "default_ttl")]
    pub negative_ttl: u32,
}

impl Default for DnsAnswerFile {
    fn default() -> Self {
        DnsAnswerFile {
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            ttl: default_ttl(),
            negative_ttl: default_ttl(),
        }
    }
}

/// Bounds on what one client may make the sinkhole hold or wait for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Most bytes of an HTTP request head (request line and headers); larger
    /// heads get 431 and the connection is closed (default 8192).
    #[serde(default = "d_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP request (default 64, at most 256).
    #[serde(default = "d_max_headers")]
    pub max_headers: usize,
    /// Most TCP connections (HTTP, raw TCP and DNS over TCP together) held at
    /// once; further connections are accepted and closed at once (default 4096).
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Milliseconds a client has to send a complete request head once it
    /// started one; this is what stops slowloris (default 10000).
    #[serde(default = "d_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may sit idle between requests
    /// (default 15000).
    #[serde(default = "d_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Milliseconds to wait for each read of a request body, and for a raw
    /// TCP client's first bytes (default 5000).
    #[serde(default = "d_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Most bytes of a raw TCP client's first data recorded (hex) in the
    /// event (default 512).
    #[serde(default = "d_max_first_bytes")]
    pub max_first_bytes: usize,
    /// Most requests served on one HTTP connection before it is closed
    /// (default 1000).
    #[serde(default = "d_max_requests")]
    pub max_requests_per_connection: u32,
    /// Most request body bytes read and discarded to keep a connection alive;
    /// a longer body gets its response and the connection closed (default 65536).
    /// A chunked body counts its framing too, with room for one extra
    /// 1024-byte chunk line.
    #[serde(default = "d_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Most leading request body bytes recorded (hex) in the event's payload;
    /// 0 records none (default 256).
    #[serde(default = "d_recorded_body_bytes")]
    pub recorded_body_bytes: usize,
    /// Most bytes kept of each recorded text field, such as the URL or
    /// User-Agent (default 2048).
    #[serde(default = "d_max_field_bytes")]
    pub max_field_bytes: usize,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_header_bytes: d_max_header_bytes(),
            max_headers: d_max_headers(),
            max_connections: d_max_connections(),
            header_timeout_ms: d_header_timeout_ms(),
            idle_timeout_ms: d_idle_timeout_ms(),
            read_timeout_ms: d_read_timeout_ms(),
            max_first_bytes: d_max_first_bytes(),
            max_requests_per_connection: d_max_requests(),
            max_body_bytes: d_max_body_bytes(),
            recorded_body_bytes: d_recorded_body_bytes(),
            max_field_bytes: d_max_field_bytes(),
        }
    }
}

/// The channel that carries events to the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Events buffered between the listeners and the pipeline (default 65536).
    #[serde(default = "d_channel_capacity")]
    pub channel_capacity: usize,
    /// Milliseconds a TCP connection waits for room in a full channel before
    /// its event is dropped and counted (default 50). DNS over UDP never
    /// waits: it drops at once so answers are not delayed.
    #[serde(default = "d_backpressure_ms")]
    pub backpressure_ms: u64,
}

impl Default for OutputFile {
    fn default() -> Self {
        OutputFile {
            channel_capacity: d_channel_capacity(),
            backpressure_ms: d_backpressure_ms(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_ttl() -> u32 {
    300
}
fn d_max_header_bytes() -> usize {
    8192
}
fn d_max_headers() -> usize {
    64
}
fn d_max_connections() -> usize {
    4096
}
fn d_header_timeout_ms() -> u64 {
    10_000
}
fn d_idle_timeout_ms() -> u64 {
    15_000
}
fn d_read_timeout_ms() -> u64 {
    5_000
}
fn d_max_first_bytes() -> usize {
    512
}
fn d_max_requests() -> u32 {
    1000
}
fn d_max_body_bytes() -> u64 {
    65_536
}
fn d_recorded_body_bytes() -> usize {
    256
}
fn d_max_field_bytes() -> usize {
    2048
}
fn d_channel_capacity() -> usize {
    65_536
}
fn d_backpressure_ms() -> u64 {
    50
}

/// Validated sinkhole settings, ready for [`crate::Sinkhole::start`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The sensor id recorded on every event.
    pub sensor: SensorId,
    /// Threads serving the TCP listeners.
    pub io_threads: NonZeroUsize,
    /// HTTP listeners.
    pub http: Vec<StreamListener>,
    /// DNS listeners.
    pub dns: Vec<DnsListener>,
    /// Raw TCP listeners.
    pub tcp: Vec<StreamListener>,
    /// Name and port attribution.
    pub families: FamilyMap,
    /// DNS answer contents.
    pub answer: DnsAnswer,
    /// Resource bounds.
    pub limits: Limits,
    /// Event channel settings.
    pub output: Output,
}

/// A validated HTTP or raw TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListener {
    /// The address to bind.
    pub bind: SocketAddr,
    /// The PROXY protocol policy, when the listener expects headers.
    pub proxy: Option<ProxyPolicy>,
}

impl From<SocketAddr> for StreamListener {
    /// A listener without PROXY protocol.
    fn from(bind: SocketAddr) -> Self {
        StreamListener { bind, proxy: None }
    }
}

/// Which peers may announce a client address with a PROXY protocol header.
///
/// A listener with a policy reads a header from every trusted peer and
/// refuses one from anyone else, so a bot that reaches the listener directly
/// cannot make the sinkhole record a forged source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    trusted: Vec<IpNet>,
}

impl ProxyPolicy {
    /// A policy trusting the given networks; `None` if the list is empty,
    /// since a policy that trusts nobody would refuse every header.
    pub fn new(trusted: Vec<IpNet>) -> Option<Self> {
        let trusted: Vec<IpNet> = trusted.into_iter().map(|n| n.trunc()).collect();
        (!trusted.is_empty()).then_some(ProxyPolicy { trusted })
    }

    /// Parses CIDRs (`10.0.0.0/8`) or bare addresses (a /32 or /128).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first entry that is neither, or if the list is empty.
    pub fn parse(entries: &[String]) -> Result<Self, Error> {
        let mut nets = Vec::with_capacity(entries.len());
        for e in entries {
            let net = e
                .parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::Config(format!(
                        "trusted_proxies: {e:?} is not a CIDR such as 10.0.0.0/8 or an address"
                    ))
                })?;
            nets.push(net);
        }
        Self::new(nets).ok_or_else(|| {
            Error::Config(
                "proxy_protocol = true needs trusted_proxies: list the load balancers' addresses"
                    .into(),
            )
        })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.trusted
    }
}

/// A validated DNS listener.
#[derive(Debug, Clone)]
pub struct DnsListener {
    /// The address to bind (UDP, and TCP when `tcp` is set).
    pub bind: SocketAddr,
    /// Whether DNS over TCP is served too.
    pub tcp: bool,
    /// The number of UDP sockets sharing the port.
    pub udp_sockets: NonZeroUsize,
    /// Whether out-of-zone queries are recorded.
    pub record_out_of_zone: bool,
}

/// What DNS answers for seized names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// A record addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// AAAA record addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// Answer TTL in seconds.
    pub ttl: u32,
    /// Negative-caching TTL in seconds: the TTL and MINIMUM of the SOA record
    /// sent with NXDOMAIN and no-data replies.
    pub negative_ttl: u32,
}

/// Validated resource bounds; see [`LimitsFile`] for each field's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of an HTTP request head.
    pub max_header_bytes: usize,
    /// Most HTTP header lines.
    pub max_headers: usize,
    /// Most concurrent TCP connections.
    pub max_connections: usize,
    /// Deadline for a complete request head.
    pub header_timeout: Duration,
    /// Idle time allowed between requests.
    pub idle_timeout: Duration,
    /// Deadline for each body read and for raw TCP first bytes.
    pub read_timeout: Duration,
    /// Most raw TCP bytes recorded.
    pub max_first_bytes: usize,
    /// Most requests per HTTP connection.
    pub max_requests_per_connection: u32,
    /// Most body bytes drained to keep a connection alive.
    pub max_body_bytes: u64,
    /// Most body bytes recorded.
    pub recorded_body_bytes: usize,
    /// Most bytes kept per recorded text field.
    pub max_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // The file defaults are valid by construction.
        Limits::from_file(&LimitsFile::default()).unwrap_or(Limits {
            max_header_bytes: 8192,
            max_headers: 64,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(5),
            max_first_bytes: 512,
            max_requests_per_connection: 1000,
            max_body_bytes: 65_536,
            recorded_body_bytes: 256,
            max_field_bytes: 2048,
        })
    }
}

impl Limits {
    fn from_file(f: &LimitsFile) -> Result<Self, Error> {
        fn range<T: PartialOrd + std::fmt::Display>(
            field: &'static str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<T, Error> {
            if v < lo || v > hi {
                return Err(Error::Config(format!(
                    "limits.{field} = {v} is out of range; use {lo} to {hi}"
                )));
            }
            Ok(v)
        }
        let ms = |field, v| range(field, v, 1, 3_600_000).map(Duration::from_millis);
        Ok(Limits {
            max_header_bytes: range("max_header_bytes", f.max_header_bytes, 256, 1 << 20)?,
            max_headers: range("max_headers", f.max_headers, 1, MAX_HEADERS_CAP)?,
            max_connections: range("max_connections", f.max_connections, 1, 1 << 20)?,
            header_timeout: ms("header_timeout_ms", f.header_timeout_ms)?,
            idle_timeout: ms("idle_timeout_ms", f.idle_timeout_ms)?,
            read_timeout: ms("read_timeout_ms", f.read_timeout_ms)?,
            max_first_bytes: range("max_first_bytes", f.max_first_bytes, 1, 1 << 16)?,
            max_requests_per_connection: range(
                "max_requests_per_connection",
                f.max_requests_per_connection,
                1,
                u32::MAX,
            )?,
            max_body_bytes: range("max_body_bytes", f.max_body_bytes, 0, 1 << 30)?,
            recorded_body_bytes: range("recorded_body_bytes", f.recorded_body_bytes, 0, 1 << 16)?,
            max_field_bytes: range("max_field_bytes", f.max_field_bytes, 16, 1 << 16)?,
        })
    }
}

/// Validated event channel settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Channel capacity in events.
    pub channel_capacity: usize,
    /// How long a TCP connection waits for room before dropping its event.
    pub backpressure: Duration,
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, otherwise as [`Config::from_toml`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("reading sinkhole config {}", path.display()),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates config text.
    ///
    /// # Errors
    /// [`Error::Toml`] for syntax errors and unknown fields, [`Error::Config`],
    /// [`Error::Domain`] and [`Error::Duplicate`] for invalid values.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| Error::Toml(e.to_string()))?;
        Self::try_from(file)
    }
}

impl TryFrom<ConfigFile> for Config {
    type Error = Error;

    fn try_from(f: ConfigFile) -> Result<Self, Error> {
        let sensor: SensorId = f
            .sensor
            .parse()
            .map_err(|e| Error::Config(format!("sensor: {e}")))?;
        if f.http.is_empty() && f.dns.is_empty() && f.tcp.is_empty() {
            return Err(Error::Config(
                "no listeners: add at least one [[http]], [[dns]] or [[tcp]] table".into(),
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let mut dns = Vec::with_capacity(f.dns.len());
        for d in &f.dns {
            let n = d.udp_sockets.unwrap_or(cpus);
            let udp_sockets = NonZeroUsize::new(n)
                .filter(|n| n.get() <= 64)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "dns listener {}: udp_sockets = {n} is out of range; use 1 to 64",
                        d.bind
                    ))
                })?;
            dns.push(DnsListener {
                bind: d.bind,
                tcp: d.tcp,
                udp_sockets,
                record_out_of_zone: d.record_out_of_zone,
            });
        }
        let n = f.io_threads.unwrap_or(cpus);
        let io_threads = NonZeroUsize::new(n)
            .filter(|n| n.get() <= 64)
            .ok_or_else(|| {
                Error::Config(format!("io_threads = {n} is out of range; use 1 to 64"))
            })?;
        let mut families = FamilyMap::new();
        for fam in &f.families {
            let family: Family = fam
                .family
                .parse()
                .map_err(|e| Error::Config(format!("families: {e}")))?;
            let domains = fam
                .domains
                .iter()
                .map(|d| d.parse::<DomainPattern>())
                .collect::<Result<Vec<_>, _>>()?;
            let tag = match &fam.tag {
                Some(t) if t.is_empty() || t.len() > 128 => {
                    return Err(Error::Config(format!(
                        "family {family}: tag must have 1 to 128 characters"
                    )));
                }
                t => t.clone(),
            };
            families.insert(Attribution { family, tag }, &domains, &fam.ports)?;
        }
        if !dns.is_empty() && !families.has_domains() {
            return Err(Error::Config(
                "a [[dns]] listener needs seized names: add domains to a [[families]] entry".into(),
            ));
        }
        let a = &f.dns_answer;
        if a.ipv4.len() > MAX_ANSWER_ADDRS || a.ipv6.len() > MAX_ANSWER_ADDRS {
            return Err(Error::Config(format!(
                "dns_answer: at most {MAX_ANSWER_ADDRS} ipv4 and {MAX_ANSWER_ADDRS} ipv6 addresses"
            )));
        }
        if !dns.is_empty() && a.ipv4.is_empty() && a.ipv6.is_empty() {
            return Err(Error::Config(
                "dns_answer: a [[dns]] listener needs at least one ipv4 or ipv6 sinkhole address"
                    .into(),
            ));
        }
        if a.ttl > 604_800 {
            return Err(Error::Config(
                "dns_answer.ttl is over a week; use 0 to 604800 seconds".into(),
            ));
        }
        if a.negative_ttl > 86_400 {
            return Err(Error::Config(
                "dns_answer.negative_ttl is over a day; use 0 to 86400 seconds".into(),
            ));
        }
        let o = &f.output;
        if o.channel_capacity == 0 || o.channel_capacity > 1 << 24 {
            return Err(Error::Config(
                "output.channel_capacity is out of range; use 1 to 16777216".into(),
            ));
        }
        if o.backpressure_ms > 60_000 {
            return Err(Error::Config(
                "output.backpressure_ms is out of range; use 0 to 60000".into(),
            ));
        }
        let policy = |on: bool, own: &Option<Vec<String>>| -> Result<Option<ProxyPolicy>, Error> {
            if !on {
                return Ok(None);
            }
            ProxyPolicy::parse(own.as_deref().unwrap_or(&f.trusted_proxies)).map(Some)
        };
        // Lists are checked even where unused, so a typo never waits for the
        // day a listener starts using them.
        if !f.trusted_proxies.is_empty() {
            ProxyPolicy::parse(&f.trusted_proxies)?;
        }
        let mut http = Vec::with_capacity(f.http.len());
        for h in &f.http {
            let proxy = policy(h.proxy_protocol, &h.trusted_proxies)
                .map_err(|e| Error::Config(format!("http listener {}: {e}", h.bind)))?;
            http.push(StreamListener {
                bind: h.bind,
                proxy,
            });
        }
        let mut tcp = Vec::with_capacity(f.tcp.len());
        for t in &f.tcp {
            let proxy = policy(t.proxy_protocol, &t.trusted_proxies)
                .map_err(|e| Error::Config(format!("tcp listener {}: {e}", t.bind)))?;
            tcp.push(StreamListener {
                bind: t.bind,
                proxy,
            });
        }
        Ok(Config {
            sensor,
            io_threads,
            http,
            dns,
            tcp,
            families,
            answer: DnsAnswer {
                ipv4: a.ipv4.clone(),
                ipv6: a.ipv6.clone(),
                ttl: a.ttl,
                negative_ttl: a.negative_ttl,
            },
            limits: Limits::from_file(&f.limits)?,
            output: Output {
                channel_capacity: o.channel_capacity,
                backpressure: Duration::from_millis(o.backpressure_ms),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
sensor = "t1"
[[http]]
bind = "127.0.0.1:0"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MIN).unwrap();
        assert_eq!(c.sensor.as_str(), "t1");
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.output.channel_capacity, 65_536);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = Config::from_toml(&format!("{MIN}\nbogus = 1\n")).unwrap_err();
        assert!(matches!(e, Error::Toml(_)), "{e}");
        let e = Config::from_toml(&format!("{MIN}\n[limits]\nmax_header = 1\n")).unwrap_err();
        assert!(matches!(e, Error::Toml(_)), "{e}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(Config::from_toml("sensor = \"t1\"\n").is_err());
        let e = Config::from_toml(&format!("{MIN}\n[limits]\nmax_headers = 1000\n")).unwrap_err();
        assert!(e.to_string().contains("max_headers"), "{e}");
        let e =
            Config::from_toml(&format!("{MIN}\n[dns_answer]\nnegative_ttl = 90000\n")).unwrap_err();
        assert!(e.to_string().contains("negative_ttl"), "{e}");
        let c = Config::from_toml(&format!("{MIN}\n[dns_answer]\nnegative_ttl = 60\n")).unwrap();
        assert_eq!(c.answer.negative_ttl, 60);
        let dns_without_names = "sensor = \"t\"\n[[dns]]\nbind = \"127.0.0.1:0\"\n";
        assert!(Config::from_toml(dns_without_names).is_err());
    }

    #[test]
    fn proxy_policies() {
        let text = format!(
            "{MIN}proxy_protocol = true\n[[tcp]]\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\ntrusted_proxies = [\"10.1.0.0/16\"]\n[[tcp]]\nbind = \"127.0.0.1:0\"\n"
        );
        let e = Config::from_toml(&text).unwrap_err();
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let with_global = format!("trusted_proxies = [\"127.0.0.1\", \"::1/128\"]\n{text}");
        let c = Config::from_toml(&with_global).unwrap();
        let http = c.http[0].proxy.as_ref().unwrap();
        assert!(http.trusts("127.0.0.1".parse().unwrap()));
        assert!(http.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(http.trusts("::1".parse().unwrap()));
        assert!(!http.trusts("10.1.2.3".parse().unwrap()));
        let tcp = c.tcp[0].proxy.as_ref().unwrap();
        assert!(tcp.trusts("10.1.2.3".parse().unwrap()));
        assert!(!tcp.trusts("127.0.0.1".parse().unwrap()));
        assert!(c.tcp[1].proxy.is_none());
        let bad = format!("trusted_proxies = [\"10.0.0.0/33\"]\n{MIN}");
        assert!(Config::from_toml(&bad).is_err());
    }

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../examples/sinkhole.toml");
        let c = Config::from_toml(text).unwrap();
        assert!(!c.http.is_empty() && !c.dns.is_empty() && !c.tcp.is_empty());
        assert!(c.families.by_name("www.example-botnet.test").is_some());
        assert!(c.http.iter().any(|h| h.proxy.is_some()));
    }
}
