//! `takedown demo`: the sinkhole, the ingest pipeline and a simulated botnet,
//! end to end over loopback sockets, then a summary from the store.
//!
//! The botnet is synthetic but shaped like real sinkhole data: infected
//! addresses are drawn from the real AS ranges of the enrichment table (a
//! few large consumer ISPs dominate, then a long tail weighted by address
//! space), the HTTP bot checks in like Rustock did (POSTs with a bot id to a
//! seized C2 name, one fixed, dated User-Agent), a few addresses are NAT
//! gateways with many machines behind them, and a DGA bot's lookups reach the
//! seized zones through resolvers. Check-ins arrive the way they would behind
//! a load balancer: over real TCP connections that open with a PROXY
//! protocol header naming the infected address.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use takedown_event::{HostRecord, Timestamp};
use takedown_ingest::{Pipeline, PipelineConfig, StoreSink};
use takedown_sinkhole::{Config, ListenerKind, Sinkhole, proxy};
use takedown_store::{EventStore, MAX_PAGE, RecordFilter, SqliteStore, Window};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Global;
use crate::support::{load_enricher, open_sqlite, progress_bar};

/// Arguments of `takedown demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Infected machines to simulate.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    bots: u32,
    /// Seed of the simulation: the same seed and data replay the same botnet.
    #[arg(long, default_value_t = 2011)]
    seed: u64,
    /// Run even if the store already holds events. The demo writes synthetic
    /// check-ins, so by default it refuses to mix them into a real store.
    #[arg(long)]
    allow_existing: bool,
}

/// The HTTP family's seized C2 names, as the bots address them.
const C2_HOSTS: [&str; 3] = [
    "rstk-gate.test",
    "upd.rstk-gate.test",
    "cdn7.rstk-gate.test",
];
/// The DGA family's seized zones.
const DGA_ZONES: [&str; 3] = ["dga-alpha.test", "dga-beta.test", "dga-gamma.test"];
/// The one User-Agent the HTTP bot sends, as Rustock's did.
const BOT_AGENT: &str = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)";
/// What other machines behind a shared NAT address send.
const NAT_AGENTS: [&str; 8] = [
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1)",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "Mozilla/5.0 (Windows NT 6.1; rv:2.0) Gecko/20100101 Firefox/4.0",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; .NET CLR 2.0.50727)",
    "Mozilla/5.0 (Windows; U; Windows NT 5.1; en-US) AppleWebKit/534.16 Chrome/10.0.648.204",
    "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.7.62 Version/11.01",
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0; SLCC1)",
    BOT_AGENT,
];
/// The public address the simulated load balancer fronts the sinkhole with.
const FRONT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// Large consumer ISPs, with the share of bots each gets (Zipf-like), when
/// the enrichment table has ranges for them.
const HEAVY: [(u32, u32); 12] = [
    (9829, 120), // BSNL, India
    (45899, 90), // VNPT, Vietnam
    (18881, 75), // Telefonica Brasil
    (4134, 60),  // Chinanet
    (9121, 50),  // Turk Telekom
    (12389, 42), // Rostelecom
    (24560, 36), // Bharti Airtel, India
    (8452, 30),  // TE Data, Egypt
    (7552, 26),  // Viettel, Vietnam
    (17974, 22), // Telkom Indonesia
    (28573, 20), // Claro, Brazil
    (8151, 18),  // Uninet, Mexico
];
/// Per mille of bots from the heavy ISPs; the rest is the long tail.
const HEAVY_SHARE: u64 = 600;
/// Connections in flight at once.
const CONCURRENCY: usize = 64;

/// Runs `takedown demo`.
pub(crate) fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_dir()?;
    // The demo replays a simulated botnet, so it always writes the SQLite
    // store of its own data directory, never a shared PostgreSQL store.
    let store = Arc::new(open_sqlite(&data)?);
    if !args.allow_existing && !store_is_empty(&*store)? {
        anyhow::bail!(
            "the store in {} already holds events; the demo writes synthetic check-ins, so point \
             --data at a scratch directory (scripts/quickstart.sh uses target/demo-data) or pass \
             --allow-existing",
            data.display()
        );
    }
    let lookup = load_enricher(&data)?;
    let space = AddressSpace::load(&data)?;
    let mut rng = Rng::new(args.seed);
    let bots = plan(&space, args.bots, &mut rng);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "takedown demo: {} simulated bots (seed {}), data in {}",
        thousands(u64::from(args.bots)),
        args.seed,
        data.display()
    );
    match &space {
        AddressSpace::Real { ranges, .. } => {
            let _ = writeln!(
                out,
                "  addresses: drawn from {} real IPv4 AS ranges of the enrichment data",
                thousands(ranges.len() as u64)
            );
        }
        AddressSpace::Reserved => {
            let _ = writeln!(
                out,
                "  addresses: no enrichment data in {}, so bots come from documentation and \
                 benchmarking ranges and networks show as unknown\n  \
                 (fetch real data with: scripts/fetch-enrichment.sh {})",
                data.join(takedown_enrich::ENRICH_SUBDIR).display(),
                data.display()
            );
        }
    }
    print!("{out}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let run = rt.block_on(simulate(&bots, args.seed, lookup, Arc::clone(&store)))?;
    let elapsed = started.elapsed();
    drop(rt);
    print!("{}", report(&*store, &run, elapsed, &data)?);
    Ok(ExitCode::SUCCESS)
}

fn store_is_empty(store: &dyn EventStore) -> anyhow::Result<bool> {
    let page = store.host_records(&RecordFilter::default(), None, 1)?;
    if !page.records.is_empty() {
        return Ok(false);
    }
    let mut any = false;
    store.scan_events(&takedown_store::EventQuery::default(), &mut |_, _| {
        any = true;
        std::ops::ControlFlow::Break(())
    })?;
    Ok(!any)
}

/// Where infected addresses are drawn from.
enum AddressSpace {
    /// IPv4 ranges of real ASes: `(start, end, asn)`, plus each AS's rows.
    Real {
        ranges: Vec<(u32, u32, u32)>,
        by_asn: HashMap<u32, Vec<usize>>,
        /// Every AS, ascending, for the long tail (one AS as likely as
        /// another, so a huge unused allocation is no likelier than an ISP).
        asns: Vec<u32>,
    },
    /// Documentation and benchmarking ranges (no enrichment data).
    Reserved,
}

impl AddressSpace {
    fn load(data: &Path) -> anyhow::Result<Self> {
        let path = data
            .join(takedown_enrich::ENRICH_SUBDIR)
            .join("asn-ipv4.csv");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::Reserved),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut ranges = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let mut f = line.splitn(4, ',');
            let (Some(s), Some(e), Some(a)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(s), Ok(e), Ok(a)) = (s.parse::<Ipv4Addr>(), e.parse::<Ipv4Addr>(), a.parse())
            else {
                continue;
            };
            let (s, e) = (u32::from(s), u32::from(e));
            if a != 0 && s <= e && is_public(Ipv4Addr::from(s)) {
                ranges.push((s, e, a));
            }
        }
        if ranges.is_empty() {
            return Ok(Self::Reserved);
        }
        let mut by_asn: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, &(_, _, a)) in ranges.iter().enumerate() {
            by_asn.entry(a).or_default().push(i);
        }
        let mut asns: Vec<u32> = by_asn.keys().copied().collect();
        asns.sort_unstable();
        Ok(Self::Real {
            ranges,
            by_asn,
            asns,
        })
    }

    /// One infected address.
    fn draw(&self, rng: &mut Rng) -> Ipv4Addr {
        match self {
            Self::Reserved => {
                // TEST-NET-1..3 and the benchmarking /15 (RFC 5737, RFC 2544).
                let blocks: [(u32, u32); 4] = [
                    (0xc000_0200, 256),
                    (0xc633_6400, 256),
                    (0xcb00_7100, 256),
                    (0xc612_0000, 1 << 17),
                ];
                let pick = rng.below(100);
                let (base, size) = match pick {
                    0..=9 => blocks[0],
                    10..=19 => blocks[1],
                    20..=29 => blocks[2],
                    _ => blocks[3],
                };
                Ipv4Addr::from(base + 1 + rng.below(u64::from(size - 2)) as u32)
            }
            Self::Real {
                ranges,
                by_asn,
                asns,
            } => {
                let heavy_total: u64 = HEAVY
                    .iter()
                    .filter(|(a, _)| by_asn.contains_key(a))
                    .map(|&(_, w)| u64::from(w))
                    .sum();
                let asn = if heavy_total > 0 && rng.below(1000) < HEAVY_SHARE {
                    let mut x = rng.below(heavy_total);
                    HEAVY
                        .iter()
                        .filter(|(a, _)| by_asn.contains_key(a))
                        .find(|&&(_, w)| {
                            if x < u64::from(w) {
                                true
                            } else {
                                x -= u64::from(w);
                                false
                            }
                        })
                        .map_or(HEAVY[0].0, |&(a, _)| a)
                } else {
                    let i = rng.below(asns.len() as u64) as usize;
                    asns.get(i).copied().unwrap_or(HEAVY[0].0)
                };
                let rows = by_asn.get(&asn).map_or(&[][..], Vec::as_slice);
                // Within a network, larger ranges hold more subscribers.
                let row = weighted_row(rows, ranges, rng);
                let (s, e, _) = ranges
                    .get(row)
                    .copied()
                    .unwrap_or((0x0808_0800, 0x0808_08ff, 0));
                let span = u64::from(e - s) + 1;
                let ip = Ipv4Addr::from(s + rng.below(span) as u32);
                if is_public(ip) { ip } else { Ipv4Addr::from(s) }
            }
        }
    }
}

fn weighted_row(rows: &[usize], ranges: &[(u32, u32, u32)], rng: &mut Rng) -> usize {
    let size = |i: &usize| ranges.get(*i).map_or(1, |&(s, e, _)| u64::from(e - s) + 1);
    let total: u64 = rows.iter().map(size).sum();
    let mut x = rng.below(total.max(1));
    for i in rows {
        let w = size(i);
        if x < w {
            return *i;
        }
        x -= w;
    }
    rows.first().copied().unwrap_or(0)
}

/// Whether a bot may plausibly have this address (no private, loopback,
/// multicast or otherwise special-purpose space).
fn is_public(ip: Ipv4Addr) -> bool {
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.octets()[0] == 0
        || ip.octets()[0] >= 240
        || (ip.octets()[0] == 100 && ip.octets()[1] & 0xc0 == 64))
}

/// One simulated infected address.
struct Bot {
    ip: Ipv4Addr,
    /// The bot id in its check-in URL.
    id: u64,
    /// HTTP check-ins it makes.
    checkins: u32,
    /// Whether several machines share the address (many agents and ports).
    nat: bool,
    /// Whether it also checks in over TLS (SNI only, on the raw TCP listener).
    tls: bool,
}

fn plan(space: &AddressSpace, n: u32, rng: &mut Rng) -> Vec<Bot> {
    let mut seen = std::collections::HashSet::new();
    let mut bots = Vec::with_capacity(n as usize);
    let mut tries = 0u64;
    while bots.len() < n as usize && tries < u64::from(n) * 20 {
        tries += 1;
        let ip = space.draw(rng);
        if !seen.insert(ip) {
            continue;
        }
        let nat = rng.below(100) < 3;
        // Most bots check in a few times; some reconnect often.
        let checkins = if nat {
            12 + rng.below(12) as u32
        } else {
            1 + (rng.below(6) * rng.below(6) / 5) as u32
        };
        bots.push(Bot {
            ip,
            id: rng.next(),
            checkins,
            nat,
            tls: rng.below(10) == 0,
        });
    }
    bots
}

/// What the run itself observed (the store is asked for the rest).
struct RunSummary {
    http_sent: u64,
    tls_sent: u64,
    dns_sent: u64,
    dns_answered: u64,
    recorded: u64,
    dropped: u64,
    committed: u64,
    listeners: Vec<(ListenerKind, SocketAddr)>,
}

fn demo_config() -> anyhow::Result<Config> {
    let text = format!(
        r#"
sensor = "demo-1"
io_threads = 1
trusted_proxies = ["127.0.0.1/32", "::1/128"]
[[http]]
bind = "127.0.0.1:0"
proxy_protocol = true
[[tcp]]
bind = "127.0.0.1:0"
proxy_protocol = true
[[dns]]
bind = "127.0.0.1:0"
tcp = false
udp_sockets = 1
[[families]]
family = "rustock"
tag = "demo"
domains = ["rstk-gate.test", "*.rstk-gate.test"]
[[families]]
family = "dgabot"
tag = "demo"
domains = [{zones}]
[dns_answer]
ipv4 = ["{FRONT}"]
[limits]
header_timeout_ms = 5000
"#,
        zones = DGA_ZONES
            .iter()
            .map(|z| format!("\"*.{z}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Config::from_toml(&text).context("building the demo sinkhole config")
}

async fn simulate(
    bots: &[Bot],
    seed: u64,
    lookup: Option<Arc<dyn takedown_ingest::Lookup>>,
    store: Arc<SqliteStore>,
) -> anyhow::Result<RunSummary> {
    let mut pipeline = Pipeline::spawn(
        &PipelineConfig::default(),
        lookup,
        Box::new(StoreSink(store)),
    )?;
    let (sinkhole, events) = Sinkhole::start(demo_config()?).context("starting the listeners")?;
    pipeline.attach(events);
    let listeners: Vec<_> = sinkhole
        .listeners()
        .iter()
        .map(|l| (l.kind, l.addr))
        .collect();
    let addr = |k| {
        sinkhole
            .addr(k)
            .with_context(|| format!("the demo sinkhole has no {k:?} listener"))
    };
    let (http, tcp, dns) = (
        addr(ListenerKind::Http)?,
        addr(ListenerKind::Tcp)?,
        addr(ListenerKind::DnsUdp)?,
    );

    let http_total: u64 = bots.iter().map(|b| u64::from(b.checkins)).sum();
    let tls_total = bots.iter().filter(|b| b.tls).count() as u64;
    let dns_total = bots.len() as u64 * 2;
    let bar = progress_bar(
        http_total + tls_total + dns_total,
        "  replaying {bar:40} {pos}/{len} check-ins {per_sec}",
        true,
    );

    // HTTP and TLS check-ins, through the simulated load balancer.
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let mut rng = Rng::new(seed ^ 0x5eed);
    for bot in bots {
        for n in 0..bot.checkins {
            let port = 1024 + rng.below(64_511) as u16;
            let agent = if bot.nat {
                NAT_AGENTS[(n as usize) % NAT_AGENTS.len()]
            } else {
                BOT_AGENT
            };
            let host = C2_HOSTS[rng.below(C2_HOSTS.len() as u64) as usize];
            let mut body = [0u8; 24];
            for b in &mut body {
                *b = rng.next() as u8;
            }
            let src = SocketAddr::new(IpAddr::V4(bot.ip), port);
            let header = if rng.below(2) == 0 {
                proxy::encode_v1(src, SocketAddr::new(IpAddr::V4(FRONT), 80)).into_bytes()
            } else {
                proxy::encode_v2(src, SocketAddr::new(IpAddr::V4(FRONT), 80))
            };
            let mut msg = header;
            let _ = write!(
                Wire(&mut msg),
                "POST /index.php?id={:016x} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                bot.id,
                body.len()
            );
            msg.extend_from_slice(&body);
            spawn_exchange(&mut tasks, &slots, http, msg, bar.clone()).await;
        }
        if bot.tls {
            let src = SocketAddr::new(IpAddr::V4(bot.ip), 1024 + rng.below(64_511) as u16);
            let mut msg = proxy::encode_v2(src, SocketAddr::new(IpAddr::V4(FRONT), 443));
            msg.extend_from_slice(&client_hello(C2_HOSTS[1], &mut rng));
            spawn_exchange(&mut tasks, &slots, tcp, msg, bar.clone()).await;
        }
    }
    let mut failed = 0u64;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failed += 1;
        }
    }
    if failed > 0 {
        bar.suspend(|| eprintln!("  {failed} check-in connections failed"));
    }

    // DGA lookups, relayed by a few resolvers on this host.
    let mut resolvers = JoinSet::new();
    let per = dns_total.div_ceil(4);
    for r in 0..4u64 {
        let count = per.min(dns_total.saturating_sub(r * per));
        let bar = bar.clone();
        let mut rng = Rng::new(seed ^ (0xd9a0 + r));
        resolvers.spawn(async move { resolve(dns, count, &mut rng, &bar).await });
    }
    let mut dns_answered = 0;
    while let Some(r) = resolvers.join_next().await {
        dns_answered += r.context("a resolver task failed")??;
    }
    bar.finish_and_clear();

    let stats = Arc::clone(sinkhole.stats());
    sinkhole.shutdown().await;
    let stats = stats.snapshot();
    let flushed = pipeline.shutdown().await?;
    Ok(RunSummary {
        http_sent: http_total,
        tls_sent: tls_total,
        dns_sent: dns_total,
        dns_answered,
        recorded: stats.events_recorded,
        dropped: stats.events_dropped,
        committed: flushed.committed,
        listeners,
    })
}

/// Adapts a byte vector to `fmt::Write` for building requests.
struct Wire<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Wire<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

async fn spawn_exchange(
    tasks: &mut JoinSet<std::io::Result<()>>,
    slots: &Arc<Semaphore>,
    addr: SocketAddr,
    msg: Vec<u8>,
    bar: ProgressBar,
) {
    let Ok(permit) = Arc::clone(slots).acquire_owned().await else {
        return;
    };
    tasks.spawn(async move {
        let _permit = permit;
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&msg).await?;
            let mut reply = Vec::new();
            // A refused TLS handshake ends with a reset rather than a FIN.
            let _ = s.read_to_end(&mut reply).await;
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        bar.inc(1);
        r
    });
}

/// Sends `count` DGA lookups from one resolver socket, waiting for each
/// answer (briefly: a lost datagram is not retried). Returns the answers.
async fn resolve(
    dns: SocketAddr,
    count: u64,
    rng: &mut Rng,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("binding a resolver socket")?;
    sock.connect(dns)
        .await
        .context("connecting a resolver socket")?;
    let mut answered = 0;
    let mut buf = [0u8; 512];
    for _ in 0..count {
        let len = 8 + rng.below(8) as usize;
        let label: String = (0..len)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        let zone = DGA_ZONES[rng.below(DGA_ZONES.len() as u64) as usize];
        let id = rng.next() as u16;
        let query = dns_query(id, &format!("{label}.{zone}"));
        sock.send(&query).await.context("sending a DNS query")?;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await
            && n >= 2
            && buf[..2] == id.to_be_bytes()
        {
            answered += 1;
        }
        bar.inc(1);
    }
    Ok(answered)
}

/// A recursive A query for `name`, as a resolver forwards it.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A minimal TLS 1.2 ClientHello carrying `sni`.
fn client_hello(sni: &str, rng: &mut Rng) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    for _ in 0..32 {
        body.push(rng.next() as u8);
    }
    body.push(0);
    body.extend_from_slice(&[0, 4, 0x00, 0x2f, 0x00, 0x35]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Everything the store now holds about the run, formatted.
fn report(
    store: &dyn EventStore,
    run: &RunSummary,
    elapsed: Duration,
    data: &Path,
) -> anyhow::Result<String> {
    let today = Timestamp::now().day();
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for c in store.event_counts(today - 1, today + 1)? {
        *by_kind.entry(c.kind.as_str()).or_default() += c.count;
    }
    let mut records: Vec<HostRecord> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.host_records(&RecordFilter::default(), cursor.as_ref(), MAX_PAGE)?;
        records.extend(page.records);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let addresses: std::collections::HashSet<IpAddr> = records.iter().map(|r| r.ip).collect();
    let nat = records.iter().filter(|r| r.nat_suspected).count();
    let loopback = records.iter().filter(|r| r.ip.is_loopback()).count();
    let mut as_names: HashMap<u32, String> = HashMap::new();
    for r in &records {
        if let (Some(a), Some(n)) = (r.network.asn, &r.network.as_name) {
            as_names.entry(a.0).or_insert_with(|| n.clone());
        }
    }
    let mut countries: HashMap<String, u64> = HashMap::new();
    let mut networks: HashMap<Option<u32>, u64> = HashMap::new();
    for row in store.footprint(&RecordFilter::default(), Window::Day)? {
        let cc = row
            .country
            .map_or_else(|| "??".to_owned(), |c| c.to_string());
        *countries.entry(cc).or_default() += row.unique_ips;
        *networks.entry(row.asn.map(|a| a.0)).or_default() += row.unique_ips;
    }

    let mut o = String::new();
    let sent = run.http_sent + run.tls_sent + run.dns_sent;
    let secs = elapsed.as_secs_f64().max(1e-3);
    let _ = writeln!(
        o,
        "  sinkhole: {}",
        run.listeners
            .iter()
            .map(|(k, a)| format!("{} {a}", kind_name(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "\nReplayed {} check-ins in {:.1} s ({}/s): {} HTTP and {} TLS behind a PROXY-protocol \
         load balancer, {} DGA lookups via resolvers ({} answered).",
        thousands(sent),
        secs,
        thousands((sent as f64 / secs) as u64),
        thousands(run.http_sent),
        thousands(run.tls_sent),
        thousands(run.dns_sent),
        thousands(run.dns_answered),
    );
    let _ = writeln!(
        o,
        "Sinkhole recorded {} events ({} dropped); the store committed {}: {}.",
        thousands(run.recorded),
        thousands(run.dropped),
        thousands(run.committed),
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "Infected hosts: {} records, {} addresses, {} suspected NAT gateways. DNS lookups made {} \
         host records: the resolvers asking are not the infected machines.",
        thousands(records.len() as u64),
        thousands(addresses.len() as u64),
        thousands(nat as u64),
        loopback
    );

    let total: u64 = countries.values().sum::<u64>().max(1);
    let mut top_cc: Vec<_> = countries.into_iter().collect();
    top_cc.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut top_as: Vec<_> = networks.into_iter().collect();
    top_as.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(o, "\nTop countries            Top networks");
    for i in 0..10 {
        let left = top_cc.get(i).map_or_else(String::new, |(cc, n)| {
            format!(
                "{cc}  {:>6}  {:>5.1}%",
                thousands(*n),
                *n as f64 * 100.0 / total as f64
            )
        });
        let right = top_as.get(i).map_or_else(String::new, |(asn, n)| {
            let (num, name) = match asn {
                Some(a) => (
                    format!("AS{a}"),
                    as_names.get(a).map_or("", String::as_str).to_owned(),
                ),
                None => ("unknown".to_owned(), String::new()),
            };
            format!("{num:<8} {:>6}  {}", thousands(*n), truncate(&name, 36))
        });
        if left.is_empty() && right.is_empty() {
            break;
        }
        let _ = writeln!(o, "  {left:<22} {right}");
    }

    let _ = writeln!(o, "\nSample host records:");
    let mut samples: Vec<&HostRecord> = Vec::new();
    if let Some(r) = records.iter().find(|r| r.nat_suspected) {
        samples.push(r);
    }
    samples.extend(
        records
            .iter()
            .filter(|r| !r.nat_suspected && r.network.asn.is_some())
            .take(3 - samples.len()),
    );
    if samples.len() < 3 {
        samples.extend(
            records
                .iter()
                .filter(|r| !r.nat_suspected)
                .take(3 - samples.len()),
        );
    }
    for r in samples {
        let net = &r.network;
        let _ = writeln!(
            o,
            "  {:<15} {:<8} {} {:<8} {:<18} {:>2} check-in{}{}  {}",
            r.ip,
            r.family.as_ref().map_or("-", |f| f.as_str()),
            net.country
                .map_or_else(|| "??".to_owned(), |c| c.to_string()),
            net.asn
                .map_or_else(|| "AS?".to_owned(), |a| format!("AS{}", a.0)),
            net.prefix.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            r.count,
            if r.count == 1 { " " } else { "s" },
            if r.nat_suspected { " NAT" } else { "" },
            truncate(r.sample_url.as_deref().unwrap_or("-"), 40),
        );
    }

    let d = data.display();
    let _ = writeln!(o, "\nExport the records as partner feeds:");
    match top_cc.iter().map(|(c, _)| c.as_str()).find(|c| *c != "??") {
        Some(cc) => {
            let _ = writeln!(
                o,
                "  takedown --data {d} export --format csv --country {cc}"
            );
        }
        None => {
            let _ = writeln!(o, "  takedown --data {d} export --format csv");
        }
    }
    if let Some(asn) = top_as.iter().find_map(|(a, _)| *a) {
        let _ = writeln!(o, "  takedown --data {d} export --format jsonl --asn {asn}");
    }
    let _ = writeln!(
        o,
        "  takedown --data {d} export --format intelmq --family rustock"
    );
    Ok(o)
}

fn kind_name(k: ListenerKind) -> &'static str {
    match k {
        ListenerKind::Http => "http+proxy",
        ListenerKind::Tcp => "tcp+proxy",
        ListenerKind::DnsUdp => "dns",
        ListenerKind::DnsTcp => "dns-tcp",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// SplitMix64: small, fast and reproducible across platforms, which is all
/// a replayable simulation needs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), by rejection so no value is favoured.
    fn below(&mut self, n: u64) -> u64 {
        let n = n.max(1);
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rng_is_reproducible_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.below(13);
            assert_eq!(x, b.below(13));
            assert!(x < 13);
        }
    }

    #[test]
    fn client_hello_yields_sni() {
        let hello = client_hello("upd.rstk-gate.test", &mut Rng::new(1));
        assert_eq!(
            takedown_sinkhole::tls::parse_client_hello(&hello),
            takedown_sinkhole::tls::ClientHello::Hello {
                sni: Some("upd.rstk-gate.test".into())
            }
        );
    }

    #[test]
    fn reserved_space_plans_distinct_public_bots() {
        let bots = plan(&AddressSpace::Reserved, 500, &mut Rng::new(3));
        assert_eq!(bots.len(), 500);
        let distinct: std::collections::HashSet<_> = bots.iter().map(|b| b.ip).collect();
        assert_eq!(distinct.len(), 500);
        assert!(bots.iter().any(|b| b.nat));
    }
}
