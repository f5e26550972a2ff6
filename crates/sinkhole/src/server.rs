//! Binding the listeners, accepting under a connection cap, and handing
//! events to the pipeline channel.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use takedown_event::{Event, EventKind, SensorId, Timestamp};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::{Config, Limits, ProxyPolicy};
use crate::conn::Opening;
use crate::dns::Responder;
use crate::family::FamilyMap;
use crate::stats::{Stats, dec, inc};
use crate::{Error, conn, dns_server};

/// What a bound listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// HTTP check-ins.
    Http,
    /// Raw TCP first bytes.
    Tcp,
    /// DNS over UDP.
    DnsUdp,
    /// DNS over TCP.
    DnsTcp,
}

/// A listener and the address it is bound to (with the real port when the
/// config asked for port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundListener {
    /// What the listener serves.
    pub kind: ListenerKind,
    /// The bound address.
    pub addr: SocketAddr,
}

/// State every connection handler shares.
pub(crate) struct Shared {
    pub(crate) sensor: SensorId,
    pub(crate) families: FamilyMap,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<Stats>,
    tx: mpsc::Sender<Event>,
    backpressure: Duration,
    slots: Arc<Semaphore>,
}

impl Shared {
    /// A bare event stamped now.
    pub(crate) fn event(&self, kind: EventKind, src: SocketAddr, dst: SocketAddr) -> Event {
        Event::new(Timestamp::now(), kind, src, dst, self.sensor.clone())
    }

    /// Sets family and tag from `name` (Host, SNI or query name), falling back
    /// to the destination port.
    pub(crate) fn attribute(&self, ev: &mut Event, name: Option<&str>) {
        if let Some(a) = self.families.attribute(name, ev.dst_port) {
            ev.family = Some(a.family.clone());
            ev.tag.clone_from(&a.tag);
        }
    }

    /// Hands an event to the pipeline, waiting up to the backpressure bound
    /// for room, then dropping it (counted).
    pub(crate) async fn emit(&self, ev: Event) {
        match self.tx.try_send(ev) {
            Ok(()) => inc(&self.stats.events_recorded),
            Err(TrySendError::Full(ev)) => {
                match tokio::time::timeout(self.backpressure, self.tx.send(ev)).await {
                    Ok(Ok(())) => {
                        inc(&self.stats.events_delayed);
                        inc(&self.stats.events_recorded);
                    }
                    _ => inc(&self.stats.events_dropped),
                }
            }
            Err(TrySendError::Closed(_)) => inc(&self.stats.events_dropped),
        }
    }

    /// Hands an event to the pipeline without waiting: DNS over UDP must not
    /// stall, since a stalled loop only moves the loss into the kernel's
    /// socket buffer, where it goes uncounted.
    pub(crate) fn emit_now(&self, ev: Event) {
        match self.tx.try_send(ev) {
            Ok(()) => inc(&self.stats.events_recorded),
            Err(_) => inc(&self.stats.events_dropped),
        }
    }
}

/// A running sinkhole: its listeners, counters and threads.
///
/// Dropping it stops the listeners without waiting; [`Sinkhole::shutdown`]
/// also waits for them. Once every listener has stopped, the event receiver
/// yields `None`.
#[derive(Debug)]
pub struct Sinkhole {
    listeners: Vec<BoundListener>,
    stats: Arc<Stats>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    stop_io: watch::Sender<bool>,
}

/// One TCP listener socket handed to an I/O thread.
struct TcpSlot {
    kind: ListenerKind,
    addr: SocketAddr,
    record_out_of_zone: bool,
    proxy: Option<Arc<ProxyPolicy>>,
    socket: std::net::TcpListener,
}

impl Sinkhole {
    /// Binds every configured listener and starts serving on threads of its
    /// own: `io_threads` event loops for the TCP listeners (each with its own
    /// `SO_REUSEPORT` socket per listener, so connections are spread by the
    /// kernel and never migrate between threads) and one blocking thread per
    /// DNS UDP socket. Returns the running sinkhole and the receiving end of
    /// the event channel, which may be read from any runtime.
    ///
    /// # Errors
    /// [`Error::Bind`] if an address cannot be bound, [`Error::Io`] if a
    /// thread or event loop cannot be started.
    pub fn start(config: Config) -> Result<(Sinkhole, mpsc::Receiver<Event>), Error> {
        let (tx, rx) = mpsc::channel(config.output.channel_capacity);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            sensor: config.sensor.clone(),
            families: config.families.clone(),
            limits: config.limits.clone(),
            stats: Arc::clone(&stats),
            tx,
            backpressure: config.output.backpressure,
            slots: Arc::new(Semaphore::new(config.limits.max_connections)),
        });
        let responder = Arc::new(Responder::new(config.families, config.answer));
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_io, stop_rx) = watch::channel(false);
        let mut sinkhole = Sinkhole {
            listeners: Vec::new(),
            stats,
            threads: Vec::new(),
            stop: Arc::clone(&stop),
            stop_io,
        };
        // Bind everything before serving anything, so a bad address fails
        // start-up as a whole (dropping `sinkhole` stops what did start).
        let n_io = config.io_threads.get();
        let mut per_thread: Vec<Vec<TcpSlot>> = (0..n_io).map(|_| Vec::new()).collect();
        let mut add_tcp = |sinkhole: &mut Sinkhole,
                           kind: ListenerKind,
                           addr: SocketAddr,
                           record_out_of_zone: bool,
                           proxy: Option<&ProxyPolicy>|
         -> Result<(), Error> {
            let proxy = proxy.map(|p| Arc::new(p.clone()));
            let sockets = bind_tcp_group(addr, n_io)?;
            let bound = sockets
                .first()
                .map(std::net::TcpListener::local_addr)
                .transpose()
                .map_err(bind_error(addr))?
                .unwrap_or(addr);
            sinkhole.listeners.push(BoundListener { kind, addr: bound });
            for (slot, socket) in per_thread.iter_mut().zip(sockets) {
                slot.push(TcpSlot {
                    kind,
                    addr: bound,
                    record_out_of_zone,
                    proxy: proxy.clone(),
                    socket,
                });
            }
            Ok(())
        };
        for l in &config.http {
            add_tcp(
                &mut sinkhole,
                ListenerKind::Http,
                l.bind,
                false,
                l.proxy.as_ref(),
            )?;
        }
        for l in &config.tcp {
            add_tcp(
                &mut sinkhole,
                ListenerKind::Tcp,
                l.bind,
                false,
                l.proxy.as_ref(),
            )?;
        }
        let mut udp_groups = Vec::new();
        for d in &config.dns {
            let sockets = bind_udp_group(d.bind, d.udp_sockets.get())?;
            let local = sockets
                .first()
                .map(std::net::UdpSocket::local_addr)
                .transpose()
                .map_err(bind_error(d.bind))?
                .unwrap_or(d.bind);
            if d.tcp {
                add_tcp(
                    &mut sinkhole,
                    ListenerKind::DnsTcp,
                    local,
                    d.record_out_of_zone,
                    None,
                )?;
            }
            udp_groups.push((local, sockets, d.record_out_of_zone));
        }
        for (i, slots) in per_thread.into_iter().enumerate() {
            if slots.is_empty() {
                continue;
            }
            let shared = Arc::clone(&shared);
            let responder = Arc::clone(&responder);
            let stop_rx = stop_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sinkhole-io-{i}"))
                .spawn(move || io_thread(slots, shared, responder, stop_rx))
                .map_err(|source| Error::Io {
                    what: "starting a sinkhole I/O thread".into(),
                    source,
                })?;
            sinkhole.threads.push(handle);
        }
        for (local, sockets, record_out_of_zone) in udp_groups {
            sinkhole.listeners.push(BoundListener {
                kind: ListenerKind::DnsUdp,
                addr: local,
            });
            for (i, sock) in sockets.into_iter().enumerate() {
                let shared = Arc::clone(&shared);
                let responder = Arc::clone(&responder);
                let stop = Arc::clone(&stop);
                let handle = std::thread::Builder::new()
                    .name(format!("dns-udp-{}-{i}", local.port()))
                    .spawn(move || {
                        dns_server::udp_loop(
                            sock,
                            local,
                            &shared,
                            &responder,
                            record_out_of_zone,
                            &stop,
                        );
                    })
                    .map_err(|source| Error::Io {
                        what: "starting a DNS thread".into(),
                        source,
                    })?;
                sinkhole.threads.push(handle);
            }
        }
        for l in &sinkhole.listeners {
            info!(kind = ?l.kind, addr = %l.addr, "Sinkhole listener started.");
        }
        Ok((sinkhole, rx))
    }

    /// Every bound listener, in config order: HTTP, raw TCP, DNS over TCP,
    /// then DNS over UDP.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// The address of the first listener of `kind`.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.addr)
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops every listener and connection and waits until they are gone.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        info!("Sinkhole stopped.");
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_io.send_replace(true);
    }
}

impl Drop for Sinkhole {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Runs one I/O thread: a single-threaded event loop serving its share of
/// every TCP listener until told to stop. Dropping the runtime at the end
/// cancels every connection it still holds.
fn io_thread(
    slots: Vec<TcpSlot>,
    shared: Arc<Shared>,
    responder: Arc<Responder>,
    mut stop: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "Cannot start a sinkhole event loop; its listener sockets stay idle.");
            return;
        }
    };
    rt.block_on(async move {
        let mut loops = JoinSet::new();
        for slot in slots {
            match TcpListener::from_std(slot.socket) {
                Ok(listener) => {
                    loops.spawn(accept_loop(
                        listener,
                        slot.addr,
                        slot.kind,
                        slot.record_out_of_zone,
                        slot.proxy,
                        Arc::clone(&shared),
                        Arc::clone(&responder),
                    ));
                }
                Err(e) => warn!(addr = %slot.addr, error = %e, "Cannot register a listener."),
            }
        }
        let _ = stop.wait_for(|s| *s).await;
        loops.abort_all();
    });
}

fn bind_error(addr: SocketAddr) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Bind { addr, source }
}

/// Binds `n` TCP listener sockets to one address with `SO_REUSEPORT` (one
/// per I/O thread). Port 0 is resolved by the first socket and reused by the
/// rest.
fn bind_tcp_group(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, Error> {
    let mut out = Vec::with_capacity(n);
    let mut addr_now = addr;
    for _ in 0..n {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_error(addr))?;
        sock.set_reuse_address(true).map_err(bind_error(addr))?;
        sock.set_reuse_port(n > 1).map_err(bind_error(addr))?;
        sock.set_nonblocking(true).map_err(bind_error(addr))?;
        sock.bind(&addr_now.into()).map_err(bind_error(addr))?;
        sock.listen(1024).map_err(bind_error(addr))?;
        let l: std::net::TcpListener = sock.into();
        addr_now = l.local_addr().map_err(bind_error(addr))?;
        out.push(l);
    }
    Ok(out)
}

/// Binds `n` UDP sockets to one address with `SO_REUSEPORT`, so the kernel
/// spreads queries across them (and their threads). Port 0 is resolved by the
/// first socket and reused by the rest.
fn bind_udp_group(addr: SocketAddr, n: usize) -> Result<Vec<std::net::UdpSocket>, Error> {
    let mut out = Vec::with_capacity(n);
    let mut addr_now = addr;
    for _ in 0..n {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(bind_error(addr))?;
        sock.set_reuse_port(n > 1).map_err(bind_error(addr))?;
        // A larger receive buffer absorbs bursts; the kernel caps it at
        // net.core.rmem_max, so failure here is harmless.
        let _ = sock.set_recv_buffer_size(4 << 20);
        sock.bind(&addr_now.into()).map_err(bind_error(addr))?;
        let udp: std::net::UdpSocket = sock.into();
        // A short timeout lets the thread notice shutdown.
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(bind_error(addr))?;
        addr_now = udp.local_addr().map_err(bind_error(addr))?;
        out.push(udp);
    }
    Ok(out)
}

/// Holds a connection slot and keeps the open-connections gauge right even
/// when the task is aborted.
pub(crate) struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    stats: Arc<Stats>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        dec(&self.stats.connections_open);
    }
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    kind: ListenerKind,
    record_out_of_zone: bool,
    proxy: Option<Arc<ProxyPolicy>>,
    shared: Arc<Shared>,
    responder: Arc<Responder>,
) {
    // Connections live in this set so that aborting the accept loop (at
    // shutdown) aborts them too.
    let mut conns = JoinSet::new();
    let mut failed_in_a_row: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => {
                        failed_in_a_row = 0;
                        x
                    }
                    Err(e) => {
                        // Out of descriptors or a transient error: back off
                        // briefly instead of spinning. A streak of failures
                        // (descriptor exhaustion under a flood) is logged once
                        // and then every thousandth time, and always counted.
                        inc(&shared.stats.accept_errors);
                        if failed_in_a_row.is_multiple_of(1000) {
                            warn!(addr = %local, error = %e, failed_in_a_row, "Accept failed.");
                        }
                        failed_in_a_row = failed_in_a_row.saturating_add(1);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
                    inc(&shared.stats.connections_rejected);
                    // A reset tells the client at once; a FIN would invite it to wait.
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    continue;
                };
                inc(&shared.stats.connections_accepted);
                inc(&shared.stats.connections_open);
                let guard = ConnGuard { _permit: permit, stats: Arc::clone(&shared.stats) };
                let shared = Arc::clone(&shared);
                let responder = Arc::clone(&responder);
                let proxy = proxy.clone();
                conns.spawn(async move {
                    let _guard = guard;
                    let listener = Listener { local, kind, record_out_of_zone, proxy: proxy.as_deref() };
                    serve(stream, peer, &listener, &shared, &responder).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// The destination a connection had before a NAT redirect rewrote it
/// (`SO_ORIGINAL_DST`), so that a listener on a high port behind
/// `redirect to :8080` still records the port the bot dialled. `None` when
/// the connection was not translated or the kernel does not say.
#[cfg(target_os = "linux")]
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = SockRef::from(stream);
    let addr = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    };
    let addr = addr.ok()?.as_socket()?;
    // A v4 client on a dual-stack socket is reported in mapped form.
    Some(match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    })
}

#[cfg(not(target_os = "linux"))]
fn original_dst(_stream: &TcpStream) -> Option<SocketAddr> {
    None
}

/// What a connection's handler needs to know about its listener.
struct Listener<'a> {
    local: SocketAddr,
    kind: ListenerKind,
    record_out_of_zone: bool,
    proxy: Option<&'a ProxyPolicy>,
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: &Listener<'_>,
    shared: &Shared,
    responder: &Responder,
) {
    let _ = stream.set_nodelay(true);
    // The address the client actually dialled: before a firewall redirect
    // if there was one, else the local address (which differs from
    // `local` for a wildcard bind).
    let dst = original_dst(&stream)
        .or_else(|| stream.local_addr().ok())
        .unwrap_or(listener.local);
    let http = listener.kind == ListenerKind::Http;
    let opening = match listener.proxy {
        Some(policy) if policy.trusts(peer.ip()) => {
            match conn::read_proxy_header(&mut stream, peer, dst, http, shared).await {
                Ok(Some(opening)) => Ok(opening),
                Ok(None) => return,
                Err(e) => Err(e),
            }
        }
        Some(_) => Ok(Opening::direct(peer, dst, true)),
        None => Ok(Opening::direct(peer, dst, false)),
    };
    let result = match (opening, listener.kind) {
        (Err(e), _) => Err(e),
        (Ok(opening), ListenerKind::Http) => conn::serve_http(stream, opening, shared).await,
        (Ok(opening), ListenerKind::Tcp) => conn::serve_tcp(stream, opening, shared).await,
        (Ok(_), ListenerKind::DnsTcp | ListenerKind::DnsUdp) => {
            dns_server::serve_tcp(
                stream,
                peer,
                dst,
                shared,
                responder,
                listener.record_out_of_zone,
            )
            .await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "Connection ended with an error.");
    }
}
