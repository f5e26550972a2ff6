//! DNS over UDP (a tight blocking loop per socket) and over TCP.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use takedown_event::{EventKind, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::dns::{Disposition, Responder, qtype_name};
use crate::server::Shared;
use crate::stats::inc;

/// The largest UDP query read; anything longer is truncated and then fails to parse.
const MAX_UDP_QUERY: usize = 4096;
/// The largest DNS-over-TCP query accepted.
const MAX_TCP_QUERY: usize = 4096;

/// Counts the disposition and builds the event to record, if any.
fn account(
    shared: &Shared,
    d: &Disposition<'_>,
    name: &str,
    src: SocketAddr,
    local: SocketAddr,
    record_out_of_zone: bool,
) -> Option<takedown_event::Event> {
    let s = &shared.stats;
    match d {
        Disposition::Dropped => {
            inc(&s.dns_dropped);
            return None;
        }
        Disposition::Malformed | Disposition::BadVersion => {
            inc(&s.dns_malformed);
            return None;
        }
        Disposition::Answered { .. } => inc(&s.dns_queries),
        Disposition::NxDomain { .. } => {
            inc(&s.dns_queries);
            inc(&s.dns_nxdomain);
        }
        Disposition::Refused { .. } => {
            inc(&s.dns_queries);
            inc(&s.dns_refused);
            if !record_out_of_zone {
                return None;
            }
        }
    }
    let mut ev = shared.event(EventKind::Dns, src, local);
    if let Disposition::Answered { attribution, .. } = d {
        ev.family = Some(attribution.family.clone());
        ev.tag.clone_from(&attribution.tag);
    }
    ev.dns_qname = Some(name.to_owned());
    ev.dns_qtype = d.qtype().map(|t| qtype_name(t).into_owned());
    Some(ev)
}

/// Events a UDP loop collects before handing them over as a batch.
const UDP_EVENT_BATCH: usize = 64;
/// The longest an event waits in a UDP loop's batch while queries keep coming.
const UDP_BATCH_DELAY: Duration = Duration::from_millis(5);

/// Serves one UDP socket until `stop` is set: receive, answer into a reused
/// buffer, send, record.
///
/// Events are handed over in small batches, so the pipeline is woken once
/// per batch rather than once per query; a batch waits at most
/// [`UDP_BATCH_DELAY`] under load, or the socket's read timeout when idle.
pub(crate) fn udp_loop(
    sock: UdpSocket,
    local: SocketAddr,
    shared: &Shared,
    responder: &Responder,
    record_out_of_zone: bool,
    stop: &AtomicBool,
) {
    let mut packet = vec![0u8; MAX_UDP_QUERY];
    let mut out = Vec::with_capacity(1024);
    let mut name = String::with_capacity(256);
    let mut batch = Vec::with_capacity(UDP_EVENT_BATCH);
    let mut batch_started = Instant::now();
    let flush = |batch: &mut Vec<takedown_event::Event>| {
        for ev in batch.drain(..) {
            shared.emit_now(ev);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let received = sock.recv_from(&mut packet);
        if !batch.is_empty()
            && (received.is_err()
                || batch.len() >= UDP_EVENT_BATCH
                || batch_started.elapsed() >= UDP_BATCH_DELAY)
        {
            flush(&mut batch);
        }
        let (n, src) = match received {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "DNS receive failed.");
                continue;
            }
        };
        if src.port() == 0 {
            // No reply can reach port 0; such packets are spoofed noise.
            inc(&shared.stats.dns_dropped);
            continue;
        }
        let query = packet.get(..n).unwrap_or_default();
        let d = responder.respond(query, &mut out, &mut name);
        if !out.is_empty() {
            let _ = sock.send_to(&out, src);
        }
        if let Some(ev) = account(shared, &d, &name, src, local, record_out_of_zone) {
            if batch.is_empty() {
                batch_started = Instant::now();
            }
            batch.push(ev);
        }
    }
    flush(&mut batch);
}

/// Serves DNS over TCP: length-prefixed queries, answered in order, until the
/// client goes idle, hangs up or reaches the per-connection request limit.
pub(crate) async fn serve_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Shared,
    responder: &Responder,
    record_out_of_zone: bool,
) -> io::Result<()> {
    let lim = &shared.limits;
    let mut packet = vec![0u8; MAX_TCP_QUERY];
    let mut out = Vec::with_capacity(1024);
    let mut framed = Vec::with_capacity(1024);
    let mut name = String::with_capacity(256);
    for _ in 0..lim.max_requests_per_connection {
        let mut len = [0u8; 2];
        match timeout(lim.idle_timeout, stream.read_exact(&mut len)).await {
            Err(_) => {
                inc(&shared.stats.idle_timeouts);
                return Ok(());
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let len = usize::from(u16::from_be_bytes(len));
        let Some(query) = packet.get_mut(..len).filter(|_| len >= 12) else {
            inc(&shared.stats.dns_dropped);
            return Ok(());
        };
        match timeout(lim.read_timeout, stream.read_exact(query)).await {
            Err(_) => {
                inc(&shared.stats.header_timeouts);
                return Ok(());
            }
            Ok(r) => r?,
        };
        let d = responder.respond(query, &mut out, &mut name);
        if let Some(mut ev) = account(shared, &d, &name, peer, local, record_out_of_zone) {
            ev.protocol = Transport::Tcp;
            shared.emit(ev).await;
        }
        if out.is_empty() {
            return Ok(());
        }
        framed.clear();
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        match timeout(lim.read_timeout, stream.write_all(&framed)).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        }
    }
    Ok(())
}
