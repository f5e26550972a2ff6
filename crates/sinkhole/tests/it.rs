//! Integration tests: real listeners on 127.0.0.1 with ports chosen by the kernel.
#![allow(clippy::unwrap_used)] // Test helpers panic on failure by design.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use takedown_event::{Event, EventKind, Transport};
use takedown_sinkhole::dns::Responder;
use takedown_sinkhole::tls::{ClientHello, parse_client_hello};
use takedown_sinkhole::{Config, ListenerKind, Sinkhole, proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// A guard against hangs; tests never assert how long anything took.
const PATIENCE: Duration = Duration::from_secs(10);

const OPENSSL_HELLO: &[u8] = include_bytes!("data/client_hello_openssl.bin");
const PYTHON_HELLO: &[u8] = include_bytes!("data/client_hello_python.bin");

fn config(limits: &str, output: &str) -> Config {
    let text = format!(
        r#"
sensor = "it-1"
[[http]]
bind = "127.0.0.1:0"
[[dns]]
bind = "127.0.0.1:0"
udp_sockets = 2
[[tcp]]
bind = "127.0.0.1:0"
[[families]]
family = "examplebot"
tag = "gen2"
domains = ["example-botnet.test", "*.example-botnet.test"]
[[families]]
family = "otherbot"
domains = ["update.c2-example.test"]
[dns_answer]
ipv4 = ["192.0.2.10", "192.0.2.11"]
ipv6 = ["2001:db8::10"]
ttl = 120
[limits]
{limits}
[output]
{output}
"#
    );
    Config::from_toml(&text).unwrap()
}

fn start(limits: &str) -> (Sinkhole, Receiver<Event>) {
    Sinkhole::start(config(limits, "")).unwrap()
}

async fn next_event(rx: &mut Receiver<Event>) -> Event {
    timeout(PATIENCE, rx.recv())
        .await
        .expect("an event within the patience bound")
        .expect("the channel is open")
}

/// Sends `request`, then reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = timeout(PATIENCE, s.read_to_end(&mut out)).await.unwrap();
    out
}

/// Reads from `s` until it is closed (EOF or reset), discarding data.
async fn wait_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checkins_over_keep_alive() {
    let (sh, mut rx) = start("");
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /gate.php?id=42 HTTP/1.1\r\nHost: WWW.Example-Botnet.test\r\nUser-Agent: bot/1.0\r\nReferer: http://ref.example/\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = [0u8; 256];
    let n = s.read(&mut reply).await.unwrap();
    assert!(reply[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.kind, EventKind::Http);
    assert_eq!(ev.http_method.as_deref(), Some("GET"));
    assert_eq!(ev.http_url.as_deref(), Some("/gate.php?id=42"));
    assert_eq!(ev.http_host.as_deref(), Some("WWW.Example-Botnet.test"));
    assert_eq!(ev.http_agent.as_deref(), Some("bot/1.0"));
    assert_eq!(ev.http_referer.as_deref(), Some("http://ref.example/"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("examplebot"));
    assert_eq!(ev.tag.as_deref(), Some("gen2"));
    assert_eq!(ev.sensor.as_str(), "it-1");
    assert_eq!(ev.dst_port, addr.port());
    assert_eq!(ev.src_port, s.local_addr().unwrap().port());
    assert!(!ev.malformed);

    // Same connection, pipelined: a POST with a body and an unknown host.
    s.write_all(
        b"POST /p HTTP/1.1\r\nHost: elsewhere.test\r\nContent-Length: 4\r\n\r\nabcdGET /x HTTP/1.1\r\nHost: a.example-botnet.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let post = next_event(&mut rx).await;
    assert_eq!(post.http_method.as_deref(), Some("POST"));
    assert_eq!(post.payload.as_deref(), Some("61626364"));
    assert_eq!(post.family, None);
    let last = next_event(&mut rx).await;
    assert_eq!(last.http_url.as_deref(), Some("/x"));
    let mut rest = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(),
        2
    );
    let st = sh.stats().snapshot();
    assert_eq!(st.http_requests, 3);
    assert_eq!(st.events_recorded, 3);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_drained_for_keep_alive() {
    let (sh, mut rx) = start("max_body_bytes = 64");
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Two pipelined requests, the first with a chunked body carrying an
    // extension and a trailer.
    s.write_all(
        b"POST /c HTTP/1.1\r\nHost: a.example-botnet.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: a.example-botnet.test\r\n\r\n",
    )
    .await
    .unwrap();
    let first = next_event(&mut rx).await;
    assert_eq!(first.http_url.as_deref(), Some("/c"));
    assert_eq!(first.payload.as_deref(), Some("6162636465"));
    let second = next_event(&mut rx).await;
    assert_eq!(second.http_url.as_deref(), Some("/after"));
    assert!(!second.malformed);
    // Both answered on the same, still open, connection.
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < 2 {
        let n = timeout(PATIENCE, s.read(&mut b)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..n]);
    }
    assert!(!got.windows(17).any(|w| w == b"Connection: close"));

    // A chunked body over the bound is recorded and answered, then closed.
    s.write_all(b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n")
        .await
        .unwrap();
    let big = next_event(&mut rx).await;
    assert_eq!(big.http_url.as_deref(), Some("/big"));
    let mut rest = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(rest.windows(17).any(|w| w == b"Connection: close"));
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_recorded_as_malformed() {
    let (sh, mut rx) = start("");
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let reply = exchange(
        addr,
        b"\x00\x01BLAH\xff\xfe /x\r\nHost: example-botnet.test\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{reply:?}");
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.http_host.as_deref(), Some("example-botnet.test"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("examplebot"));

    // A client that hangs up mid-head is recorded too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /half HTTP/1.1\r\nUser-Agent: cut")
        .await
        .unwrap();
    drop(s);
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.http_url.as_deref(), Some("/half"));
    assert_eq!(sh.stats().snapshot().http_malformed, 2);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_head_and_too_many_headers_get_431() {
    let (sh, mut rx) = start("max_header_bytes = 1024\nmax_headers = 8");
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let mut req = b"GET /big HTTP/1.1\r\nHost: x.example-botnet.test\r\nX-Pad: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 4000));
    req.extend_from_slice(b"\r\n\r\n");
    let reply = exchange(addr, &req).await;
    assert!(reply.starts_with(b"HTTP/1.1 431"), "{reply:?}");
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.http_url.as_deref(), Some("/big"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("examplebot"));

    let mut req = b"GET /many HTTP/1.1\r\n".to_vec();
    for i in 0..20 {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let reply = exchange(addr, &req).await;
    assert!(reply.starts_with(b"HTTP/1.1 431"), "{reply:?}");
    assert!(next_event(&mut rx).await.malformed);
    assert_eq!(sh.stats().snapshot().http_oversize, 2);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed() {
    let (sh, _rx) = start("header_timeout_ms = 300\nidle_timeout_ms = 300");
    let addr = sh.addr(ListenerKind::Http).unwrap();

    // Drip a request head one byte at a time, never finishing it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let drip = async {
        for b in b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-A: "
            .iter()
            .cycle()
            .take(10_000)
        {
            if s.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let closed_by_server = timeout(PATIENCE, drip).await.unwrap_or(false);
    assert!(closed_by_server, "the server kept a slowloris connection");
    assert!(sh.stats().snapshot().header_timeouts >= 1);

    // A kept-alive connection that goes quiet is closed too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(wait_closed(&mut s).await);
    assert!(sh.stats().snapshot().idle_timeouts >= 1);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let (sh, _rx) =
        start("max_connections = 4\nidle_timeout_ms = 60000\nheader_timeout_ms = 60000");
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    timeout(PATIENCE, async {
        while sh.stats().snapshot().connections_open < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    for _ in 0..6 {
        // The reset can race the connect itself, which then fails.
        if let Ok(mut extra) = TcpStream::connect(addr).await {
            assert!(wait_closed(&mut extra).await);
        }
    }
    let st = sh.stats().snapshot();
    assert_eq!(st.connections_rejected, 6);
    assert_eq!(st.connections_open, 4);
    // The held connections still work.
    let s = &mut held[0];
    s.write_all(b"Host: a\r\n\r\n").await.unwrap();
    let mut reply = [0u8; 64];
    let n = timeout(PATIENCE, s.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply[..n].starts_with(b"HTTP/1.1 200"));
    drop(held);
    sh.shutdown().await;
}

fn dns_query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

async fn udp_ask(addr: SocketAddr, packet: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(packet, addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = timeout(PATIENCE, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_and_records() {
    let (sh, mut rx) = start("");
    let addr = sh.addr(ListenerKind::DnsUdp).unwrap();

    let reply = udp_ask(
        addr,
        &dns_query("Gate.Example-Botnet.test.", RecordType::A, 7),
    )
    .await;
    assert_eq!(reply.metadata.id, 7);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.authoritative);
    assert!(reply.metadata.recursion_desired);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        reply.queries[0].name().to_ascii(),
        "Gate.Example-Botnet.test."
    );
    let addrs: Vec<String> = reply
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(addrs, ["192.0.2.10", "192.0.2.11"]);
    assert!(reply.answers.iter().all(|r| r.ttl == 120));
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.kind, EventKind::Dns);
    assert_eq!(ev.protocol, Transport::Udp);
    assert_eq!(ev.dns_qname.as_deref(), Some("gate.example-botnet.test"));
    assert_eq!(ev.dns_qtype.as_deref(), Some("A"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("examplebot"));
    assert_eq!(ev.dst_port, addr.port());

    let reply = udp_ask(
        addr,
        &dns_query("update.c2-example.test.", RecordType::AAAA, 8),
    )
    .await;
    match &reply.answers[..] {
        [r] => assert!(matches!(&r.data, RData::AAAA(a) if a.0.to_string() == "2001:db8::10")),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_event(&mut rx).await.dns_qtype.as_deref(), Some("AAAA"));

    let reply = udp_ask(
        addr,
        &dns_query("www.update.c2-example.test.", RecordType::A, 9),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.dns_qname.as_deref(), Some("www.update.c2-example.test"));
    assert_eq!(ev.family, None);

    let reply = udp_ask(addr, &dns_query("example.org.", RecordType::A, 10)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);

    let mut broken = dns_query("example-botnet.test.", RecordType::A, 11);
    broken.truncate(broken.len() - 3);
    let reply = udp_ask(addr, &broken).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // TXT for a seized name: authoritative, no data; recorded.
    let reply = udp_ask(
        addr,
        &dns_query("example-botnet.test.", RecordType::TXT, 12),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(next_event(&mut rx).await.dns_qtype.as_deref(), Some("TXT"));

    let st = sh.stats().snapshot();
    assert_eq!(st.dns_queries, 5);
    assert_eq!(st.dns_nxdomain, 1);
    assert_eq!(st.dns_refused, 1);
    assert_eq!(st.dns_malformed, 1);
    sh.shutdown().await;
    // Out-of-zone queries were only counted, so nothing else is queued.
    assert!(rx.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tcp() {
    let (sh, mut rx) = start("");
    let addr = sh.addr(ListenerKind::DnsTcp).unwrap();
    assert_eq!(addr, sh.addr(ListenerKind::DnsUdp).unwrap());
    let mut s = TcpStream::connect(addr).await.unwrap();
    for id in [1u16, 2] {
        let q = dns_query("tcp.example-botnet.test.", RecordType::A, id);
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.unwrap();
        let m = Message::from_vec(&body).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.answers.len(), 2);
        let ev = next_event(&mut rx).await;
        assert_eq!(ev.protocol, Transport::Tcp);
        assert_eq!(ev.dns_qname.as_deref(), Some("tcp.example-botnet.test"));
    }
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_first_bytes_and_port_family() {
    let mut cfg = config("max_first_bytes = 8\nread_timeout_ms = 300", "");
    let mut fams = takedown_sinkhole::FamilyMap::new();
    // Rebuild the config's family map with a port mapping for the TCP
    // listener, whose port is only known after binding: bind once to learn a
    // free port, then map it.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    fams.insert(
        takedown_sinkhole::Attribution {
            family: "portbot".parse().unwrap(),
            tag: None,
        },
        &["update.c2-example.test".parse().unwrap()],
        &[port],
    )
    .unwrap();
    cfg.families = fams;
    cfg.tcp = vec![SocketAddr::from(([127, 0, 0, 1], port)).into()];
    let (sh, mut rx) = Sinkhole::start(cfg).unwrap();
    let addr = sh.addr(ListenerKind::Tcp).unwrap();
    assert_eq!(addr.port(), port);

    // More than max_first_bytes: only the first 8 are kept.
    let reply = exchange(addr, b"HELLO\x00\x01\x02\x03\x04\x05").await;
    assert!(reply.is_empty());
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.kind, EventKind::Tcp);
    assert_eq!(ev.payload.as_deref(), Some("48454c4c4f000102"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("portbot"));

    // A client that sends a little and waits is recorded after the timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"hi").await.unwrap();
    assert!(wait_closed(&mut s).await);
    assert_eq!(next_event(&mut rx).await.payload.as_deref(), Some("6869"));
    sh.shutdown().await;
}

#[tokio::test]
async fn client_hello_fixtures_yield_sni() {
    assert_eq!(
        parse_client_hello(OPENSSL_HELLO),
        ClientHello::Hello {
            sni: Some("update.c2-example.test".into())
        }
    );
    assert_eq!(
        parse_client_hello(PYTHON_HELLO),
        ClientHello::Hello {
            sni: Some("gate.Example-Botnet.test".into())
        }
    );
    for cut in 1..OPENSSL_HELLO.len() {
        assert_eq!(
            parse_client_hello(&OPENSSL_HELLO[..cut]),
            ClientHello::Incomplete
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_http_and_tcp_ports_records_sni() {
    let (sh, mut rx) = start("");
    for kind in [ListenerKind::Http, ListenerKind::Tcp] {
        let addr = sh.addr(kind).unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Split the hello across writes to exercise reassembly in the reader.
        s.write_all(&OPENSSL_HELLO[..40]).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&OPENSSL_HELLO[40..]).await.unwrap();
        let mut reply = Vec::new();
        timeout(PATIENCE, s.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.first(), Some(&0x15), "a TLS alert");
        let ev = next_event(&mut rx).await;
        assert_eq!(ev.kind, EventKind::Tcp);
        assert_eq!(ev.tls_sni.as_deref(), Some("update.c2-example.test"));
        assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("otherbot"));
        assert!(!ev.malformed);
        assert!(ev.payload.as_deref().unwrap().starts_with("1603"));
    }
    assert_eq!(sh.stats().snapshot().tls_sni, 2);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_channel_sheds_with_a_count() {
    let cfg = config("", "channel_capacity = 1\nbackpressure_ms = 10");
    let (sh, rx) = Sinkhole::start(cfg).unwrap();
    let addr = sh.addr(ListenerKind::Http).unwrap();
    for _ in 0..4 {
        let reply = exchange(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert!(reply.starts_with(b"HTTP/1.1 200"));
    }
    let st = sh.stats().snapshot();
    assert_eq!(st.events_recorded, 1);
    assert_eq!(st.events_dropped, 3);
    drop(rx);
    sh.shutdown().await;
}

#[test]
fn bad_bind_fails_cleanly_and_no_runtime_is_needed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config("", "");
    cfg.http = vec![taken.local_addr().unwrap().into()];
    let err = Sinkhole::start(cfg).unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");

    // The listeners run on their own threads: a plain thread can start one
    // and read its events.
    let (sh, mut rx) = Sinkhole::start(config("", "")).unwrap();
    let addr = sh.addr(ListenerKind::Http).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET /sync HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    let ev = rx.blocking_recv().unwrap();
    assert_eq!(ev.http_url.as_deref(), Some("/sync"));
    drop(sh);
}

/// A sinkhole whose HTTP and TCP listeners take PROXY headers from `trusted`.
fn start_proxied(trusted: &str, limits: &str) -> (Sinkhole, Receiver<Event>) {
    let text = format!(
        r#"
sensor = "it-proxy"
trusted_proxies = [{trusted}]
[[http]]
bind = "127.0.0.1:0"
proxy_protocol = true
[[tcp]]
bind = "127.0.0.1:0"
proxy_protocol = true
[[families]]
family = "examplebot"
domains = ["*.example-botnet.test"]
[limits]
{limits}
"#
    );
    Sinkhole::start(Config::from_toml(&text).unwrap()).unwrap()
}

const CHECKIN: &[u8] =
    b"POST /bot/3f2a HTTP/1.1\r\nHost: c2.example-botnet.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_v2_from_a_trusted_peer_set_the_source() {
    let (sh, mut rx) = start_proxied(r#""127.0.0.0/8""#, "");
    let http = sh.addr(ListenerKind::Http).unwrap();
    let client: SocketAddr = "198.51.100.7:51000".parse().unwrap();
    let front: SocketAddr = "192.0.2.1:80".parse().unwrap();

    let v1 = [proxy::encode_v1(client, front).as_bytes(), CHECKIN].concat();
    assert!(exchange(http, &v1).await.starts_with(b"HTTP/1.1 200 OK"));
    let ev = next_event(&mut rx).await;
    assert_eq!((ev.src_ip, ev.src_port), (client.ip(), client.port()));
    assert_eq!((ev.dst_ip, ev.dst_port), (front.ip(), front.port()));
    assert_eq!(ev.http_url.as_deref(), Some("/bot/3f2a"));
    assert_eq!(ev.payload.as_deref(), Some("6869"));
    assert_eq!(ev.family.as_ref().map(|f| f.as_str()), Some("examplebot"));
    assert!(!ev.malformed);

    // Version 2 over IPv6, the header and request arriving in separate writes.
    let client6: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let front6: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
    let mut s = TcpStream::connect(http).await.unwrap();
    let v2 = proxy::encode_v2(client6, front6);
    s.write_all(&v2[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(&v2[7..]).await.unwrap();
    s.write_all(CHECKIN).await.unwrap();
    let mut reply = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
    let ev = next_event(&mut rx).await;
    assert_eq!((ev.src_ip, ev.src_port), (client6.ip(), client6.port()));
    assert_eq!(ev.dst_port, 8080);

    // LOCAL (a health check): the real peer is recorded.
    let mut local = proxy::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut s = TcpStream::connect(http).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(&[local.as_slice(), CHECKIN].concat())
        .await
        .unwrap();
    let mut reply = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let ev = next_event(&mut rx).await;
    assert_eq!((ev.src_ip, ev.src_port), (me.ip(), me.port()));
    assert!(!ev.malformed);

    // Raw TCP: the first bytes after the header are recorded.
    let tcp = sh.addr(ListenerKind::Tcp).unwrap();
    let first = [proxy::encode_v1(client, front).as_bytes(), b"\x01\x02bot"].concat();
    assert!(exchange(tcp, &first).await.is_empty());
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.kind, EventKind::Tcp);
    assert_eq!(ev.src_ip, client.ip());
    assert_eq!(ev.payload.as_deref(), Some("0102626f74"));
    let st = sh.stats().snapshot();
    assert_eq!(st.proxy_headers, 4);
    assert_eq!(st.proxy_refused + st.proxy_untrusted, 0);
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_without_a_valid_header_is_recorded_malformed() {
    let (sh, mut rx) = start_proxied(r#""127.0.0.1/32""#, "header_timeout_ms = 300");
    let http = sh.addr(ListenerKind::Http).unwrap();

    // A plain request from the proxy: malformed, from the proxy's own address.
    let mut s = TcpStream::connect(http).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(CHECKIN).await.unwrap();
    let mut reply = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{reply:?}");
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!((ev.src_ip, ev.src_port), (me.ip(), me.port()));
    // Only what was read while looking for the header is kept.
    assert_eq!(ev.http_method.as_deref(), Some("POST"));
    assert!(ev.payload.is_some());

    // A garbled header.
    let reply = exchange(
        http,
        b"PROXY TCP4 198.51.100.7 300.0.0.1 1 80\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with(b"HTTP/1.1 400"));
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.src_ip, me.ip());
    assert_eq!(ev.http_method, None);

    // A header cut short, then silence: recorded once the deadline passes.
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.7").await.unwrap();
    assert!(wait_closed(&mut s).await);
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.src_ip, me.ip());

    // An oversize version 1 line on the TCP listener.
    let tcp = sh.addr(ListenerKind::Tcp).unwrap();
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
    let _ = exchange(tcp, &long).await;
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.kind, EventKind::Tcp);
    assert!(ev.malformed);
    assert_eq!(ev.src_ip, me.ip());

    // A connection that sends nothing (a TCP health check) is not recorded.
    let mut s = TcpStream::connect(http).await.unwrap();
    assert!(wait_closed(&mut s).await);
    let st = sh.stats().snapshot();
    assert_eq!(st.proxy_refused, 5);
    assert_eq!(st.proxy_headers, 0);
    assert!(rx.try_recv().is_err());
    sh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_cannot_spoof_the_source() {
    // Only a documentation address is trusted, so loopback clients are not.
    let (sh, mut rx) = start_proxied(r#""203.0.113.0/24""#, "");
    let http = sh.addr(ListenerKind::Http).unwrap();
    let spoofed: SocketAddr = "198.51.100.7:51000".parse().unwrap();
    let front: SocketAddr = "192.0.2.1:80".parse().unwrap();
    for header in [
        proxy::encode_v1(spoofed, front).into_bytes(),
        proxy::encode_v2(spoofed, front),
    ] {
        let mut s = TcpStream::connect(http).await.unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(&[header.as_slice(), CHECKIN].concat())
            .await
            .unwrap();
        let mut reply = Vec::new();
        timeout(PATIENCE, s.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 400"));
        let ev = next_event(&mut rx).await;
        assert!(ev.malformed);
        assert_eq!((ev.src_ip, ev.src_port), (me.ip(), me.port()));
    }
    // A direct client without a header is served as usual.
    let mut s = TcpStream::connect(http).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(CHECKIN).await.unwrap();
    let mut reply = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    let ev = next_event(&mut rx).await;
    assert!(!ev.malformed);
    assert_eq!(ev.src_ip, me.ip());

    // Raw TCP: recorded as sent, flagged, against the real peer.
    let tcp = sh.addr(ListenerKind::Tcp).unwrap();
    let _ = exchange(tcp, proxy::encode_v1(spoofed, front).as_bytes()).await;
    let ev = next_event(&mut rx).await;
    assert!(ev.malformed);
    assert_eq!(ev.src_ip, me.ip());
    assert_eq!(sh.stats().snapshot().proxy_untrusted, 3);
    sh.shutdown().await;
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use takedown_sinkhole::http::{ChunkedDecoder, ChunkedStatus, HttpParse, parse_request};

    fn responder() -> Responder {
        let cfg = config("", "");
        Responder::new(cfg.families, cfg.answer)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chunked_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), limit in 0u64..4096) {
            let mut d = ChunkedDecoder::new(limit);
            let (used, _) = d.feed(&bytes, |_| {});
            prop_assert!(used <= bytes.len());
        }

        #[test]
        fn chunked_bodies_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            step in 1usize..64,
        ) {
            let mut wire = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\nTrailer: x\r\n\r\nNEXT");
            let mut d = ChunkedDecoder::new(1 << 20);
            let (mut out, mut used, mut status) = (Vec::new(), 0usize, ChunkedStatus::More);
            for piece in wire.chunks(step) {
                let (n, s) = d.feed(piece, |b| out.extend_from_slice(b));
                used += n;
                status = s;
                if s != ChunkedStatus::More {
                    break;
                }
            }
            prop_assert_eq!(status, ChunkedStatus::Done);
            prop_assert_eq!(out, chunks.concat());
            prop_assert_eq!(used, wire.len() - 4);
        }

        #[test]
        fn http_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), n in 1usize..300) {
            let _ = parse_request(&bytes, n, 64);
        }

        #[test]
        fn http_fields_round_trip(
            method in "[A-Z]{1,10}",
            path in "/[a-zA-Z0-9/._~?=&-]{0,100}",
            host in "[a-z0-9.-]{1,60}",
            agent in "[ -~]{0,100}",
        ) {
            let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n\r\n");
            let HttpParse::Complete { head, len } = parse_request(req.as_bytes(), 8, 4096) else {
                panic!("did not parse: {req:?}");
            };
            prop_assert_eq!(len, req.len());
            prop_assert_eq!(head.method.as_deref(), Some(method.as_str()));
            prop_assert_eq!(head.target.as_deref(), Some(path.as_str()));
            prop_assert_eq!(head.host.as_deref(), Some(host.as_str()));
            prop_assert_eq!(head.user_agent.as_deref(), Some(agent.trim()));
        }

        #[test]
        fn sni_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_client_hello(&bytes);
        }

        #[test]
        fn sni_parser_survives_mutated_hellos(pos in 0usize..328, val in any::<u8>()) {
            let mut h = OPENSSL_HELLO.to_vec();
            h[pos] = val;
            let _ = parse_client_hello(&h);
        }

        #[test]
        fn dns_responder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let r = responder();
            let (mut out, mut name) = (Vec::new(), String::new());
            let _ = r.respond(&bytes, &mut out, &mut name);
            prop_assert!(out.len() <= 512 + 600);
        }

        #[test]
        fn dns_replies_parse_and_match(
            labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,18}[a-zA-Z0-9])?", 0..4),
            seized in any::<bool>(),
            qtype in prop_oneof![Just(RecordType::A), Just(RecordType::AAAA), Just(RecordType::MX), Just(RecordType::ANY)],
            id in any::<u16>(),
        ) {
            let mut name = labels.join(".");
            let zone = if seized { "example-botnet.test" } else { "unrelated.test" };
            if !name.is_empty() { name.push('.'); }
            name.push_str(zone);
            let q = dns_query(&format!("{name}."), qtype, id);
            let r = responder();
            let (mut out, mut decoded) = (Vec::new(), String::new());
            let _ = r.respond(&q, &mut out, &mut decoded);
            prop_assert_eq!(&decoded, &name.to_ascii_lowercase());
            let m = Message::from_vec(&out).unwrap();
            prop_assert_eq!(m.metadata.id, id);
            prop_assert_eq!(m.queries.len(), 1);
            prop_assert!(out.len() <= 512);
            if seized {
                prop_assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                let want = match qtype { RecordType::A | RecordType::ANY => 2, RecordType::AAAA => 1, _ => 0 };
                prop_assert_eq!(m.answers.len(), want);
            } else {
                prop_assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            }
        }
    }
}

/// Behind a firewall redirect the event records the port the client
/// dialled (`SO_ORIGINAL_DST`), not the listener's. Changing the firewall
/// needs root and nftables, so this runs when `TAKEDOWN_TEST_NFT=1` (CI
/// sets it) and otherwise says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_connections_record_the_dialled_port() {
    if std::env::var("TAKEDOWN_TEST_NFT").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set TAKEDOWN_TEST_NFT=1 (as root, with nft installed) to test redirects"
        );
        return;
    }
    let (sh, mut rx) = start("");
    let listener = sh.addr(ListenerKind::Http).unwrap();
    // A port nothing listens on, which the redirect sends to the sinkhole.
    let dialled = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Table(String);
    impl Drop for Table {
        fn drop(&mut self) {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "ip", &self.0])
                .status();
        }
    }
    let table = Table(format!("takedown_it_{}", std::process::id()));
    let nft = |args: &[&str]| {
        let status = std::process::Command::new("nft")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "nft {args:?} failed");
    };
    nft(&["add", "table", "ip", &table.0]);
    nft(&[
        "add",
        "chain",
        "ip",
        &table.0,
        "out",
        "{ type nat hook output priority -100; }",
    ]);
    let rule = format!(
        "ip daddr 127.0.0.1 tcp dport {dialled} redirect to :{}",
        listener.port()
    );
    let mut args = vec!["add", "rule", "ip", &table.0, "out"];
    args.extend(rule.split(' '));
    nft(&args);

    let reply = exchange(
        SocketAddr::from(([127, 0, 0, 1], dialled)),
        b"GET /redirected HTTP/1.1\r\nHost: c2.example-botnet.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.http_url.as_deref(), Some("/redirected"));
    assert_eq!(
        ev.dst_port,
        dialled,
        "the dialled port, not {}",
        listener.port()
    );
    drop(table);
    sh.shutdown().await;
}
