//! Sinkhole listeners: HTTP, DNS and raw TCP check-ins turned into events.
//!
//! A [`Config`] (parsed from TOML, validated once) describes the listeners,
//! the seized names and ports attributed to each family ([`FamilyMap`]), the
//! DNS answers and the resource limits. [`Sinkhole::start`] binds every
//! listener and returns the running [`Sinkhole`] and the receiving end of a
//! bounded channel of [`takedown_event::Event`]s; live counters are in
//! [`Stats`].
//!
//! * **HTTP**: any host and path gets an empty `200 OK` (keep-alive
//!   supported); method, request target, Host, User-Agent and Referer are
//!   recorded, and the family comes from the Host (else the port). Malformed
//!   requests are recorded as far as they parse, with `malformed` set. A TLS
//!   ClientHello is recognised and its SNI recorded instead.
//! * **DNS**: authoritative answers (AA) with the configured A/AAAA sinkhole
//!   addresses for seized names, NXDOMAIN for other names in the seized
//!   zones, REFUSED outside them, FORMERR for malformed queries. UDP is
//!   served by one blocking thread per `SO_REUSEPORT` socket.
//! * **Raw TCP**: the first bytes a client sends (or its SNI) are recorded.
//! * **PROXY protocol** (opt-in per HTTP or raw TCP listener): behind a load
//!   balancer, the client named by a version 1 or 2 header ([`proxy`]) is
//!   recorded, believed only from `trusted_proxies` ([`ProxyPolicy`]).
//!
//! The listeners run on threads of their own (TCP on `io_threads`
//! single-threaded event loops), so the caller may read the channel from any
//! runtime, or block on it from a plain thread.
//!
//! Every buffer, header count, connection count and wait is bounded (see
//! [`config::Limits`]). Events go to the channel with bounded
//! backpressure: a TCP connection waits up to `output.backpressure_ms` for
//! room, DNS over UDP never waits; events that find no room are dropped and
//! counted in [`StatsSnapshot::events_dropped`].
//!
//! Binding ports 53 and 80 needs `CAP_NET_BIND_SERVICE`
//! (`setcap cap_net_bind_service=+ep` on the binary, or
//! `AmbientCapabilities=` in a systemd unit) or a firewall redirect from a
//! high port; `docs/sinkhole.md` has the details.
//!
//! ```
//! use takedown_sinkhole::{Config, ListenerKind, Sinkhole};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml(r#"
//!     sensor = "doc-1"
//!     [[http]]
//!     bind = "127.0.0.1:0"
//!     [[families]]
//!     family = "examplebot"
//!     domains = ["*.c2.example"]
//! "#)?;
//! let (sinkhole, mut events) = Sinkhole::start(config)?;
//! let addr = sinkhole.addr(ListenerKind::Http).ok_or("no HTTP listener")?;
//!
//! let mut bot = tokio::net::TcpStream::connect(addr).await?;
//! bot.write_all(b"GET /gate HTTP/1.1\r\nHost: a.c2.example\r\nConnection: close\r\n\r\n").await?;
//! let mut reply = Vec::new();
//! bot.read_to_end(&mut reply).await?;
//! assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
//!
//! let event = events.recv().await.ok_or("no event")?;
//! assert_eq!(event.http_url.as_deref(), Some("/gate"));
//! assert_eq!(event.family.map(|f| f.to_string()).as_deref(), Some("examplebot"));
//! sinkhole.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod config;
mod conn;
pub mod dns;
mod dns_server;
mod family;
pub mod http;
pub mod proxy;
mod server;
mod stats;
mod text;
pub mod tls;

pub use config::{Config, ConfigFile, ProxyPolicy, StreamListener};
pub use family::{Attribution, DomainPattern, FamilyMap};
pub use server::{BoundListener, ListenerKind, Sinkhole};
pub use stats::{Stats, StatsSnapshot};

/// Everything that can go wrong configuring or starting a sinkhole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file is not valid TOML or has unknown or missing fields.
    #[error("invalid sinkhole config: {0}; see examples/sinkhole.toml for every field")]
    Toml(String),
    /// A config value is out of range or inconsistent.
    #[error("invalid sinkhole config: {0}")]
    Config(String),
    /// A seized-domain pattern is not a valid name or wildcard.
    #[error(
        "invalid domain pattern {pattern:?}: {why}; write an exact name (c2.example.net) or a wildcard (*.example.net)"
    )]
    Domain {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A domain pattern or port is attributed to two families.
    #[error("{0} is mapped to more than one family; keep one mapping")]
    Duplicate(String),
    /// Reading a file or starting a thread failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not bind its address.
    #[error(
        "cannot listen on {addr}: {source}; ports below 1024 need CAP_NET_BIND_SERVICE or a port redirect (see docs/sinkhole.md), and each address may be used by one listener"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
