//! Typed counters for what the listeners saw, did and shed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident: $kind:literal,)*) => {
        /// Live counters, shared by every listener of one sinkhole.
        ///
        /// All counters only grow except `connections_open`, a gauge.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`Stats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Copies every counter. Counters are read one by one, so a
            /// snapshot taken under load is not an atomic cut across them.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl StatsSnapshot {
            /// The counters in Prometheus text exposition format, each name
            /// prefixed with `prefix` (such as `takedown_sinkhole_`).
            pub fn to_prometheus(&self, prefix: &str) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# TYPE {prefix}{} {}", stringify!($name), $kind);
                    let _ = writeln!(out, "{prefix}{} {}", stringify!($name), self.$name);
                )*
                out
            }
        }
    };
}

stats! {
    /// TCP connections accepted and served (HTTP, raw TCP, DNS over TCP).
    connections_accepted: "counter",
    /// Failed `accept` calls, such as when the process is out of file descriptors.
    accept_errors: "counter",
    /// TCP connections closed at once because `max_connections` were open.
    connections_rejected: "counter",
    /// TCP connections open now.
    connections_open: "gauge",
    /// Connections closed because a request head did not arrive in time (slowloris).
    header_timeouts: "counter",
    /// Connections closed after sitting idle, or after a body read timed out.
    idle_timeouts: "counter",
    /// HTTP requests recorded, malformed ones included.
    http_requests: "counter",
    /// HTTP requests that did not parse (recorded as far as they parsed).
    http_malformed: "counter",
    /// HTTP request heads larger than `max_header_bytes`.
    http_oversize: "counter",
    /// TLS ClientHellos seen on HTTP or raw TCP ports.
    tls_hellos: "counter",
    /// TLS ClientHellos that carried a server name.
    tls_sni: "counter",
    /// Raw TCP sessions recorded.
    tcp_sessions: "counter",
    /// PROXY protocol headers accepted from trusted proxies.
    proxy_headers: "counter",
    /// Connections from trusted proxies whose PROXY header was missing,
    /// malformed or late (recorded as malformed with the proxy's address, or
    /// closed unrecorded when nothing at all arrived).
    proxy_refused: "counter",
    /// PROXY headers sent by peers that are not trusted proxies (recorded as
    /// malformed with the real peer address, never believed).
    proxy_untrusted: "counter",
    /// DNS queries answered (UDP and TCP).
    dns_queries: "counter",
    /// DNS queries answered NXDOMAIN (in zone, but no pattern matched).
    dns_nxdomain: "counter",
    /// DNS queries answered REFUSED (outside the seized zones, or not class IN).
    dns_refused: "counter",
    /// DNS packets answered FORMERR or NOTIMP.
    dns_malformed: "counter",
    /// DNS packets dropped unanswered (too short to answer, or a response).
    dns_dropped: "counter",
    /// Events handed to the channel.
    events_recorded: "counter",
    /// Events that waited for room in a full channel (and then got in).
    events_delayed: "counter",
    /// Events dropped because the channel stayed full or was closed.
    events_dropped: "counter",
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_prometheus() {
        let s = Stats::default();
        inc(&s.http_requests);
        inc(&s.http_requests);
        inc(&s.connections_open);
        dec(&s.connections_open);
        let snap = s.snapshot();
        assert_eq!(snap.http_requests, 2);
        assert_eq!(snap.connections_open, 0);
        let text = snap.to_prometheus("td_");
        assert!(text.contains("# TYPE td_http_requests counter\ntd_http_requests 2\n"));
        assert!(text.contains("# TYPE td_connections_open gauge\n"));
    }
}
