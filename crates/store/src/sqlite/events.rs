//! [`EventStore`] over SQLite: the event log, host-record folding and queries.
//!
//! # How a batch folds into host records
//!
//! An append first folds its events in memory, one accumulator per
//! (UTC day, address, family), and then merges each accumulator into its row
//! with one `INSERT ... ON CONFLICT DO UPDATE`. A busy bot checking in many
//! times per batch therefore costs one row update, not one per event. The
//! merge is order-independent: minimum, maximum and sum for the times and
//! count, and for the samples the event with the greatest
//! (timestamp, sample rank), where the rank is a fixed hash of the sample
//! fields that breaks timestamp ties the same way whatever the arrival order.
//!
//! # NAT suspicion
//!
//! A record is flagged, and stays flagged, when either holds:
//!
//! * at least [`AGENT_NAT`] distinct User-Agents came from the address that
//!   day (one bot build sends one fixed agent, so several agents mean several
//!   machines). The record keeps the [`AGENT_K`] smallest 32-bit agent hashes,
//!   a bottom-k set whose union is exact and order-independent below `k`;
//! * at least [`PORT_NAT`] distinct source ports fell in one
//!   [`PORT_WINDOW_SECS`]-second window (one machine opens connections one
//!   after another; many at once mean many machines). Windows are checked
//!   within each batch, and the record also keeps the ports of its latest
//!   window so bursts split across consecutive batches add up. A burst in an
//!   older window split across batches by late delivery can go unnoticed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use takedown_event::{
    Asn, CountryCode, Event, EventKind, Family, HostRecord, Network, SensorId, Timestamp, Transport,
};

use super::{SqliteStore, to_i64, to_u64};
use crate::Error;
use crate::record::{
    AppendReport, Cursor, CursorKey, EventCount, EventId, EventQuery, EventStore, FootprintRow,
    MAX_PAGE, RecordFilter, RecordPage, Window, ip_bytes, ip_from_bytes, parse_record_id,
};

/// Distinct User-Agents at which a record is suspected of hiding several hosts behind NAT.
pub const AGENT_NAT: usize = 4;
/// Agent hashes kept per record.
pub const AGENT_K: usize = 8;
/// Distinct source ports in one window at which a record is suspected of NAT.
pub const PORT_NAT: usize = 16;
/// The window for counting concurrent source ports, in seconds.
pub const PORT_WINDOW_SECS: i64 = 10;

const PORT_K: usize = PORT_NAT;
const AGENT_WIDTH: usize = 4;
const PORT_WINDOW_MICROS: i64 = PORT_WINDOW_SECS * 1_000_000;

/// Registers the SQL functions the record merge uses.
pub(super) fn register_functions(conn: &Connection) -> Result<(), Error> {
    conn.create_scalar_function(
        "td_union",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let a = ctx.get_raw(0).as_blob().unwrap_or(&[]);
            let b = ctx.get_raw(1).as_blob().unwrap_or(&[]);
            let width: i64 = ctx.get(2)?;
            let k: i64 = ctx.get(3)?;
            let (width, k) = match (usize::try_from(width), usize::try_from(k)) {
                (Ok(w @ 1..=16), Ok(k @ 0..=1024)) => (w, k),
                _ => {
                    return Err(rusqlite::Error::UserFunctionError(
                        "td_union: width must be 1-16 and k 0-1024".into(),
                    ));
                }
            };
            Ok(union_sorted(a, b, width, k))
        },
    )
    .map_err(Error::sqlite("registering SQL functions"))
}

/// Merges two sorted lists of fixed-width big-endian items, dropping
/// duplicates and keeping the `k` smallest. Trailing partial items are ignored.
pub(crate) fn union_sorted(a: &[u8], b: &[u8], width: usize, k: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity((a.len() + b.len()).min(width * k));
    let (mut x, mut y) = (a.chunks_exact(width), b.chunks_exact(width));
    let (mut p, mut q) = (x.next(), y.next());
    while out.len() < width * k {
        let next = match (p, q) {
            (Some(u), Some(v)) if u < v => {
                p = x.next();
                u
            }
            (Some(u), Some(v)) if u > v => {
                q = y.next();
                v
            }
            (Some(u), Some(_)) => {
                p = x.next();
                q = y.next();
                u
            }
            (Some(u), None) => {
                p = x.next();
                u
            }
            (None, Some(v)) => {
                q = y.next();
                v
            }
            (None, None) => break,
        };
        if out.len() < width || out[out.len() - width..] != *next {
            out.extend_from_slice(next);
        }
    }
    out
}

/// A fixed 64-bit hash, eight bytes per step: ranks and agent hashes are
/// stored, so they must agree across processes, platforms and versions.
/// (The standard library's hashers are randomly keyed or unspecified.)
fn mix(h: &mut u64, bytes: &[u8]) {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        *h = (*h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    w[..rest.len()].copy_from_slice(rest);
    // The length goes in too, so "a" and "a\0" differ.
    *h = (*h ^ u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56))
        .wrapping_mul(K)
        .rotate_left(31);
}

/// The final avalanche, so every input bit reaches the top bits compared first.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const SEED: u64 = 0x7464_2d73_746f_7265;

fn agent_hash(agent: &str) -> u32 {
    let mut h = SEED;
    mix(&mut h, agent.as_bytes());
    (finish(h) >> 32) as u32
}

/// The tie-break between samples with equal timestamps.
fn sample_rank(e: &Event) -> i64 {
    let mut h = SEED;
    let opt = |h: &mut u64, s: Option<&String>| match s {
        Some(s) => mix(h, s.as_bytes()),
        // Absent differs from empty: the empty string still mixes in its length.
        None => mix(h, &[0xff; 9]),
    };
    opt(&mut h, e.http_url.as_ref());
    opt(&mut h, e.http_host.as_ref());
    opt(&mut h, e.http_agent.as_ref());
    let n = e.network.as_ref();
    let prefix = n.and_then(|n| n.prefix);
    let mut fixed = [0u8; 32];
    fixed[..2].copy_from_slice(&e.dst_port.to_be_bytes());
    if let Some(p) = prefix {
        let k = IpKey::new(p.addr());
        fixed[2..18].copy_from_slice(&k.bytes);
        fixed[18] = p.prefix_len();
        fixed[19] = k.len;
    }
    if let Some(a) = n.and_then(|n| n.asn) {
        fixed[20] = 1;
        fixed[21..25].copy_from_slice(&a.0.to_be_bytes());
    }
    if let Some(c) = n.and_then(|n| n.country) {
        fixed[25..27].copy_from_slice(c.as_str().as_bytes());
    }
    mix(&mut h, &fixed);
    opt(&mut h, n.and_then(|n| n.as_name.as_ref()));
    finish(h) as i64
}

fn kind_code(k: EventKind) -> i64 {
    match k {
        EventKind::Http => 0,
        EventKind::Tcp => 1,
        EventKind::Dns => 2,
    }
}

fn kind_from_code(c: i64) -> Result<EventKind, Error> {
    match c {
        0 => Ok(EventKind::Http),
        1 => Ok(EventKind::Tcp),
        2 => Ok(EventKind::Dns),
        _ => Err(Error::Corrupt(format!("event kind {c}"))),
    }
}

/// An address as stored, without allocating: 4 bytes for IPv4, 16 for IPv6.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct IpKey {
    len: u8,
    bytes: [u8; 16],
}

impl IpKey {
    fn new(ip: IpAddr) -> Self {
        let mut bytes = [0; 16];
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                IpKey { len: 4, bytes }
            }
            IpAddr::V6(a) => IpKey {
                len: 16,
                bytes: a.octets(),
            },
        }
    }

    /// The stored bytes; slices order like SQLite blobs (bytes, then length).
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The in-memory fold of one batch's events for one record.
struct Fold<'a> {
    first: i64,
    last: i64,
    count: u64,
    latest: &'a Event,
    latest_rank: Option<i64>,
    agents: Vec<u32>,
    ports: Vec<(i64, u16)>,
}

impl<'a> Fold<'a> {
    fn new(e: &'a Event) -> Self {
        Fold {
            first: e.timestamp.0,
            last: e.timestamp.0,
            count: 0,
            latest: e,
            latest_rank: None,
            agents: Vec::new(),
            ports: Vec::new(),
        }
    }

    fn add(&mut self, e: &'a Event) {
        let ts = e.timestamp.0;
        self.count += 1;
        self.first = self.first.min(ts);
        if ts > self.last {
            self.last = ts;
            self.latest = e;
            self.latest_rank = None;
        } else if ts == self.last && !std::ptr::eq(e, self.latest) {
            let mine = *self
                .latest_rank
                .get_or_insert_with(|| sample_rank(self.latest));
            let theirs = sample_rank(e);
            if theirs > mine {
                self.latest = e;
                self.latest_rank = Some(theirs);
            }
        }
        if let Some(a) = &e.http_agent {
            self.agents.push(agent_hash(a));
        }
        self.ports
            .push((ts.div_euclid(PORT_WINDOW_MICROS), e.src_port));
    }

    /// The agent set, the latest window with its ports, and whether any window in the batch was a burst.
    fn sketches(&mut self) -> (Vec<u8>, i64, Vec<u8>, bool) {
        self.agents.sort_unstable();
        self.agents.dedup();
        let agents: Vec<u8> = self
            .agents
            .iter()
            .take(AGENT_K)
            .flat_map(|a| a.to_be_bytes())
            .collect();
        self.ports.sort_unstable();
        self.ports.dedup();
        let mut burst = false;
        let mut i = 0;
        while i < self.ports.len() {
            let w = self.ports[i].0;
            let n = self.ports[i..].iter().take_while(|p| p.0 == w).count();
            burst |= n >= PORT_NAT;
            i += n;
        }
        let window = self.ports.last().map_or(0, |p| p.0);
        let ports: Vec<u8> = self
            .ports
            .iter()
            .filter(|p| p.0 == window)
            .take(PORT_K)
            .flat_map(|p| p.1.to_be_bytes())
            .collect();
        let nat = burst || agents.len() / AGENT_WIDTH >= AGENT_NAT;
        (agents, window, ports, nat)
    }
}

const INSERT_EVENT: &str =
    "INSERT INTO events (ts, kind, src_ip, src_port, dst_ip, dst_port, proto,
    family, tag, sensor, malformed, http_method, http_url, http_host, http_agent, http_referer,
    tls_sni, dns_qname, dns_qtype, payload, enriched, prefix, asn, as_name, country)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
            ?20, ?21, ?22, ?23, ?24, ?25)";

const EVENT_COLUMNS: &str = "id, ts, kind, src_ip, src_port, dst_ip, dst_port, proto,
    family, tag, sensor, malformed, http_method, http_url, http_host, http_agent, http_referer,
    tls_sni, dns_qname, dns_qtype, payload, enriched, prefix, asn, as_name, country";

/// `N` in the upsert: whether the incoming fold's sample is newer than the stored one.
macro_rules! newer {
    () => {
        "(excluded.last_seen > last_seen OR (excluded.last_seen = last_seen AND excluded.sample_rank > sample_rank))"
    };
}

const INSERT_DELTA: &str = "INSERT INTO record_deltas (day, ip, family, first_seen, last_seen,
        count, sample_rank, prefix, asn, as_name, country, sample_url, sample_host, sample_agent,
        dst_port, agents, port_window, ports, nat, modified)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// Merges every pending delta into its record, in key order. Several deltas
/// of one record merge one after another, which is sound because the merge
/// is associative and commutative.
const MERGE_DELTAS: &str = concat!(
    "INSERT INTO host_records (day, ip, family, first_seen, last_seen, count, sample_rank,
        prefix, asn, as_name, country, sample_url, sample_host, sample_agent, dst_port,
        agents, port_window, ports, nat, modified)
     SELECT day, ip, family, first_seen, last_seen, count, sample_rank,
        prefix, asn, as_name, country, sample_url, sample_host, sample_agent, dst_port,
        agents, port_window, ports, nat, modified
     FROM record_deltas WHERE 1 ORDER BY day, ip, family, rowid
     ON CONFLICT (day, ip, family) DO UPDATE SET
        first_seen = min(first_seen, excluded.first_seen),
        last_seen = max(last_seen, excluded.last_seen),
        count = count + excluded.count,
        sample_rank = iif(",
    newer!(),
    ", excluded.sample_rank, sample_rank),
        prefix = iif(",
    newer!(),
    ", excluded.prefix, prefix),
        asn = iif(",
    newer!(),
    ", excluded.asn, asn),
        as_name = iif(",
    newer!(),
    ", excluded.as_name, as_name),
        country = iif(",
    newer!(),
    ", excluded.country, country),
        sample_url = iif(",
    newer!(),
    ", excluded.sample_url, sample_url),
        sample_host = iif(",
    newer!(),
    ", excluded.sample_host, sample_host),
        sample_agent = iif(",
    newer!(),
    ", excluded.sample_agent, sample_agent),
        dst_port = iif(",
    newer!(),
    ", excluded.dst_port, dst_port),
        agents = td_union(agents, excluded.agents, 4, 8),
        port_window = max(port_window, excluded.port_window),
        ports = CASE
            WHEN excluded.port_window > port_window THEN excluded.ports
            WHEN excluded.port_window = port_window THEN td_union(ports, excluded.ports, 2, 16)
            ELSE ports END,
        nat = (nat OR excluded.nat
            OR length(td_union(agents, excluded.agents, 4, 8)) >= 16
            OR (excluded.port_window = port_window
                AND length(td_union(ports, excluded.ports, 2, 16)) >= 32)),
        modified = max(modified, excluded.modified)"
);

const UPSERT_COUNT: &str =
    "INSERT INTO event_counts (day, kind, family, count) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (day, kind, family) DO UPDATE SET count = count + excluded.count";

const RECORD_COLUMNS: &str = "day, ip, family, first_seen, last_seen, count, prefix, asn, as_name,
    country, sample_url, sample_host, sample_agent, dst_port, nat, modified";

fn parse_opt<T: std::str::FromStr>(v: Option<String>, what: &str) -> Result<Option<T>, Error> {
    v.map(|s| {
        s.parse()
            .map_err(|_| Error::Corrupt(format!("{what} {s:?}")))
    })
    .transpose()
}

fn asn_from(v: Option<i64>) -> Result<Option<Asn>, Error> {
    v.map(|a| {
        u32::try_from(a)
            .map(Asn)
            .map_err(|_| Error::Corrupt(format!("AS number {a}")))
    })
    .transpose()
}

fn port_from(v: i64) -> Result<u16, Error> {
    u16::try_from(v).map_err(|_| Error::Corrupt(format!("port {v}")))
}

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<Result<HostRecord, Error>> {
    let day: i64 = r.get(0)?;
    let ip: Vec<u8> = r.get(1)?;
    let family: String = r.get(2)?;
    let first_seen: i64 = r.get(3)?;
    let last_seen: i64 = r.get(4)?;
    let count: i64 = r.get(5)?;
    let prefix: Option<String> = r.get(6)?;
    let asn: Option<i64> = r.get(7)?;
    let as_name: Option<String> = r.get(8)?;
    let country: Option<String> = r.get(9)?;
    let sample_url: Option<String> = r.get(10)?;
    let sample_host: Option<String> = r.get(11)?;
    let sample_agent: Option<String> = r.get(12)?;
    let dst_port: i64 = r.get(13)?;
    let nat: bool = r.get(14)?;
    let modified: i64 = r.get(15)?;
    Ok((|| {
        let ip = ip_from_bytes(&ip)?;
        let family: Option<Family> = parse_opt(Some(family).filter(|f| !f.is_empty()), "family")?;
        Ok(HostRecord {
            id: crate::record::record_id(ip, family.as_ref(), day),
            ip,
            family,
            day,
            first_seen: Timestamp(first_seen),
            last_seen: Timestamp(last_seen),
            count: to_u64(count, "count")?,
            network: Network {
                prefix: parse_opt(prefix, "prefix")?,
                asn: asn_from(asn)?,
                as_name,
                country: parse_opt(country, "country")?,
            },
            sample_url,
            sample_host,
            sample_agent,
            dst_port: port_from(dst_port)?,
            nat_suspected: nat,
            modified: Timestamp(modified),
        })
    })())
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Result<(EventId, Event), Error>> {
    let id: i64 = r.get(0)?;
    let ts: i64 = r.get(1)?;
    let kind: i64 = r.get(2)?;
    let src_ip: Vec<u8> = r.get(3)?;
    let src_port: i64 = r.get(4)?;
    let dst_ip: Vec<u8> = r.get(5)?;
    let dst_port: i64 = r.get(6)?;
    let proto: i64 = r.get(7)?;
    let family: Option<String> = r.get(8)?;
    let tag: Option<String> = r.get(9)?;
    let sensor: String = r.get(10)?;
    let malformed: bool = r.get(11)?;
    let text = |i: usize| r.get::<_, Option<String>>(i);
    let (http_method, http_url, http_host, http_agent, http_referer) =
        (text(12)?, text(13)?, text(14)?, text(15)?, text(16)?);
    let (tls_sni, dns_qname, dns_qtype, payload) = (text(17)?, text(18)?, text(19)?, text(20)?);
    let enriched: bool = r.get(21)?;
    let prefix = text(22)?;
    let asn: Option<i64> = r.get(23)?;
    let as_name = text(24)?;
    let country = text(25)?;
    Ok((|| {
        let network = if enriched {
            Some(Network {
                prefix: parse_opt(prefix, "prefix")?,
                asn: asn_from(asn)?,
                as_name,
                country: parse_opt::<CountryCode>(country, "country")?,
            })
        } else {
            None
        };
        Ok((
            EventId(to_u64(id, "event id")?),
            Event {
                timestamp: Timestamp(ts),
                kind: kind_from_code(kind)?,
                src_ip: ip_from_bytes(&src_ip)?,
                src_port: port_from(src_port)?,
                dst_ip: ip_from_bytes(&dst_ip)?,
                dst_port: port_from(dst_port)?,
                protocol: if proto == 1 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                },
                http_method,
                http_url,
                http_host,
                http_agent,
                http_referer,
                tls_sni,
                dns_qname,
                dns_qtype,
                payload,
                family: parse_opt(family, "family")?,
                tag,
                sensor: sensor
                    .parse::<SensorId>()
                    .map_err(|_| Error::Corrupt(format!("sensor {sensor:?}")))?,
                malformed,
                network,
            },
        ))
    })())
}

/// Builds the WHERE clause for a record filter, pushing its parameters.
fn record_where(filter: &RecordFilter, params: &mut Vec<Value>) -> Result<String, Error> {
    let mut conds: Vec<String> = Vec::new();
    for set in &filter.within {
        if set.is_empty() {
            // An empty address space holds nothing: fail closed.
            conds.push("0".into());
            continue;
        }
        let mut any: Vec<String> = Vec::new();
        if !set.asns.is_empty() {
            let list: Vec<String> = set.asns.iter().map(|a| a.0.to_string()).collect();
            params.push(Value::Text(format!("[{}]", list.join(","))));
            any.push("asn IN (SELECT value FROM json_each(?))".into());
        }
        if !set.countries.is_empty() {
            let list: Vec<String> = set
                .countries
                .iter()
                .map(|c| format!("\"{}\"", c.as_str()))
                .collect();
            params.push(Value::Text(format!("[{}]", list.join(","))));
            any.push("country IN (SELECT value FROM json_each(?))".into());
        }
        for (lo, hi) in set.ranges()? {
            let len = lo.len() as i64;
            params.push(Value::Blob(lo));
            params.push(Value::Blob(hi));
            params.push(Value::Integer(len));
            any.push("(ip BETWEEN ? AND ? AND length(ip) = ?)".into());
        }
        conds.push(format!("({})", any.join(" OR ")));
    }
    if !filter.families.is_empty() {
        let list: Vec<String> = filter
            .families
            .iter()
            .map(|f| format!("\"{}\"", f.as_str()))
            .collect();
        params.push(Value::Text(format!("[{}]", list.join(","))));
        conds.push("family IN (SELECT value FROM json_each(?))".into());
    }
    if let Some(since) = filter.since {
        params.push(Value::Integer(since.0));
        conds.push("modified > ?".into());
    }
    if let Some(d) = filter.first_day {
        params.push(Value::Integer(d));
        conds.push("day >= ?".into());
    }
    if let Some(d) = filter.last_day {
        params.push(Value::Integer(d));
        conds.push("day <= ?".into());
    }
    if let Some(nat) = filter.nat_suspected {
        params.push(Value::Integer(i64::from(nat)));
        conds.push("nat = ?".into());
    }
    if conds.is_empty() {
        conds.push("1".into());
    }
    Ok(conds.join(" AND "))
}

/// Deltas pending before an append compacts them.
const COMPACT_AT: u64 = 262_144;

/// Merges all pending deltas into host records in one transaction.
fn compact(conn: &mut Connection) -> Result<usize, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a compaction"))?;
    let n = tx
        .execute(MERGE_DELTAS, [])
        .map_err(Error::sqlite("merging record deltas"))?;
    tx.execute("DELETE FROM record_deltas", [])
        .map_err(Error::sqlite("clearing record deltas"))?;
    tx.commit()
        .map_err(Error::sqlite("committing a compaction"))?;
    Ok(n)
}

impl SqliteStore {
    /// Merges pending record deltas into the host records now.
    ///
    /// Never needed for correctness: record queries compact first. Call it
    /// after a bulk import to pay the merge up front, or before a backup.
    pub fn compact(&self) -> Result<(), Error> {
        self.write(|conn| {
            let n = compact(conn)?;
            self.pending.store(0, Ordering::Relaxed);
            tracing::debug!(deltas = n, "Record deltas compacted.");
            Ok(())
        })
    }

    /// Compacts if any deltas are pending, so a query sees every acknowledged batch.
    fn compact_if_pending(&self) -> Result<(), Error> {
        let pending: bool = self.read(|conn| {
            conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM record_deltas)")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(Error::sqlite("checking for record deltas"))
        })?;
        if pending { self.compact() } else { Ok(()) }
    }
}

fn read_tx(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, Error> {
    conn.transaction().map_err(Error::sqlite("starting a read"))
}

impl EventStore for SqliteStore {
    fn append_events(&self, events: &[Event]) -> Result<AppendReport, Error> {
        // Fold before taking the writer, so other writers wait less.
        let mut folds: HashMap<(i64, IpKey, &str), Fold<'_>> = HashMap::new();
        let mut counts: HashMap<(i64, i64, &str), u64> = HashMap::new();
        for e in events {
            let day = e.timestamp.day();
            let family = e.family.as_ref().map_or("", Family::as_str);
            *counts.entry((day, kind_code(e.kind), family)).or_default() += 1;
            if e.kind.counts_as_infection() {
                folds
                    .entry((day, IpKey::new(e.src_ip), family))
                    .or_insert_with(|| Fold::new(e))
                    .add(e);
            }
        }
        let now = Timestamp::now().0;
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(Error::sqlite("starting a write transaction"))?;
            // The clock never runs backwards, so `modified` orders commits even
            // if the wall clock steps back: a delta pull never misses a change.
            let modified: i64 = tx
                .prepare_cached(
                    "UPDATE meta SET value = max(value + 1, ?1) WHERE key = 'clock' RETURNING value",
                )
                .and_then(|mut s| s.query_row([now], |r| r.get(0)))
                .map_err(Error::sqlite("advancing the record clock"))?;
            {
                let mut ins = tx
                    .prepare_cached(INSERT_EVENT)
                    .map_err(Error::sqlite("preparing the event insert"))?;
                for e in events {
                    let n = e.network.as_ref();
                    ins.execute(params![
                        e.timestamp.0,
                        kind_code(e.kind),
                        IpKey::new(e.src_ip).as_slice(),
                        e.src_port,
                        IpKey::new(e.dst_ip).as_slice(),
                        e.dst_port,
                        i64::from(e.protocol == Transport::Udp),
                        e.family.as_ref().map(Family::as_str),
                        e.tag,
                        e.sensor.as_str(),
                        e.malformed,
                        e.http_method,
                        e.http_url,
                        e.http_host,
                        e.http_agent,
                        e.http_referer,
                        e.tls_sni,
                        e.dns_qname,
                        e.dns_qtype,
                        e.payload,
                        n.is_some(),
                        n.and_then(|n| n.prefix).map(|p| p.to_string()),
                        n.and_then(|n| n.asn).map(|a| a.0),
                        n.and_then(|n| n.as_name.as_deref()),
                        n.and_then(|n| n.country).map(|c| c.to_string()),
                    ])
                    .map_err(Error::sqlite("appending an event"))?;
                }
                let mut up = tx
                    .prepare_cached(INSERT_DELTA)
                    .map_err(Error::sqlite("preparing the record delta insert"))?;
                // Upserting in key order walks the primary-key tree once, front
                // to back, instead of hopping between random pages.
                let mut folds: Vec<_> = folds.iter_mut().collect();
                folds.sort_unstable_by(|a, b| {
                    let ((da, ia, fa), (db, ib, fb)) = (a.0, b.0);
                    (da, ia.as_slice(), fa).cmp(&(db, ib.as_slice(), fb))
                });
                for ((day, ip, family), fold) in folds {
                    let (agents, window, ports, nat) = fold.sketches();
                    let rank = match fold.latest_rank {
                        Some(r) => r,
                        None => sample_rank(fold.latest),
                    };
                    let e = fold.latest;
                    let n = e.network.as_ref();
                    up.execute(params![
                        day,
                        ip.as_slice(),
                        family,
                        fold.first,
                        fold.last,
                        to_i64(fold.count),
                        rank,
                        n.and_then(|n| n.prefix).map(|p| p.to_string()),
                        n.and_then(|n| n.asn).map(|a| a.0),
                        n.and_then(|n| n.as_name.as_deref()),
                        n.and_then(|n| n.country).map(|c| c.to_string()),
                        e.http_url,
                        e.http_host,
                        e.http_agent,
                        e.dst_port,
                        agents,
                        window,
                        ports,
                        nat,
                        modified,
                    ])
                    .map_err(Error::sqlite("updating a host record"))?;
                }
                let mut cnt = tx
                    .prepare_cached(UPSERT_COUNT)
                    .map_err(Error::sqlite("preparing the count upsert"))?;
                for ((day, kind, family), n) in &counts {
                    cnt.execute(params![day, kind, family, to_i64(*n)])
                        .map_err(Error::sqlite("updating event counts"))?;
                }
            }
            tx.commit()
                .map_err(Error::sqlite("committing an event batch"))?;
            let pending = self.pending.fetch_add(folds.len() as u64, Ordering::Relaxed)
                + folds.len() as u64;
            if pending >= COMPACT_AT {
                // The batch is durable already: a failed compaction must not
                // report failure, or the caller would append it twice. The
                // deltas stay and the next compaction retries.
                match compact(conn) {
                    Ok(n) => {
                        self.pending.store(0, Ordering::Relaxed);
                        tracing::debug!(deltas = n, "Record deltas compacted.");
                    }
                    Err(e) => tracing::warn!(error = %e, "Compacting record deltas failed; will retry."),
                }
            }
            tracing::debug!(
                events = events.len(),
                records = folds.len(),
                "Event batch committed."
            );
            Ok(AppendReport {
                events: events.len() as u64,
                records: folds.len() as u64,
                modified: Timestamp(modified),
            })
        })
    }

    fn host_records(
        &self,
        filter: &RecordFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<RecordPage, Error> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut params = Vec::new();
        let mut clause = record_where(filter, &mut params)?;
        if let Some(Cursor(c)) = cursor {
            clause.push_str(" AND (modified, day, ip, family) > (?, ?, ?, ?)");
            params.extend([
                Value::Integer(c.modified),
                Value::Integer(c.day),
                Value::Blob(c.ip.clone()),
                Value::Text(c.family.clone()),
            ]);
        }
        params.push(Value::Integer(limit as i64 + 1));
        self.compact_if_pending()?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM host_records WHERE {clause}
             ORDER BY modified, day, ip, family LIMIT ?"
        );
        self.read(|conn| {
            let mut s = conn
                .prepare_cached(&sql)
                .map_err(Error::sqlite("querying host records"))?;
            let rows = s
                .query_map(params_from_iter(params.iter()), record_from_row)
                .map_err(Error::sqlite("querying host records"))?;
            let mut records = Vec::new();
            for r in rows {
                records.push(r.map_err(Error::sqlite("querying host records"))??);
            }
            let next = if records.len() > limit {
                records.truncate(limit);
                records.last().map(|r| {
                    Cursor(CursorKey {
                        modified: r.modified.0,
                        day: r.day,
                        ip: ip_bytes(r.ip),
                        family: r.family.as_ref().map_or("", Family::as_str).to_owned(),
                    })
                })
            } else {
                None
            };
            Ok(RecordPage { records, next })
        })
    }

    fn host_record(&self, id: &str) -> Result<Option<HostRecord>, Error> {
        let (ip, family, day) = parse_record_id(id)?;
        self.compact_if_pending()?;
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM host_records WHERE day = ?1 AND ip = ?2 AND family = ?3"
            ))
            .and_then(|mut s| {
                s.query_row(
                    params![day, ip_bytes(ip), family.as_ref().map_or("", Family::as_str)],
                    record_from_row,
                )
                .optional()
            })
            .map_err(Error::sqlite("reading a host record"))?
            .transpose()
        })
    }

    fn footprint(&self, filter: &RecordFilter, window: Window) -> Result<Vec<FootprintRow>, Error> {
        let mut params = Vec::new();
        let clause = record_where(filter, &mut params)?;
        let bucket = match window {
            Window::Day => "day",
            // 1970-01-05, day 4, was a Monday.
            Window::Week => "(day - (((day - 4) % 7) + 7) % 7)",
        };
        let sql = format!(
            "SELECT {bucket} AS bucket, family, country, asn, COUNT(DISTINCT ip)
             FROM host_records WHERE {clause}
             GROUP BY bucket, family, country, asn ORDER BY bucket, family, country, asn"
        );
        self.compact_if_pending()?;
        self.read(|conn| {
            let mut s = conn
                .prepare_cached(&sql)
                .map_err(Error::sqlite("computing a footprint"))?;
            let rows = s
                .query_map(params_from_iter(params.iter()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(Error::sqlite("computing a footprint"))?;
            let mut out = Vec::new();
            for r in rows {
                let (start_day, family, country, asn, n) =
                    r.map_err(Error::sqlite("computing a footprint"))?;
                out.push(FootprintRow {
                    start_day,
                    family: parse_opt(Some(family).filter(|f| !f.is_empty()), "family")?,
                    country: parse_opt(country, "country")?,
                    asn: asn_from(asn)?,
                    unique_ips: to_u64(n, "count")?,
                });
            }
            Ok(out)
        })
    }

    fn event_counts(&self, first_day: i64, last_day: i64) -> Result<Vec<EventCount>, Error> {
        self.read(|conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT day, kind, family, count FROM event_counts
                     WHERE day BETWEEN ?1 AND ?2 ORDER BY day, kind, family",
                )
                .map_err(Error::sqlite("reading event counts"))?;
            let rows = s
                .query_map([first_day, last_day], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(Error::sqlite("reading event counts"))?;
            let mut out = Vec::new();
            for r in rows {
                let (day, kind, family, n) = r.map_err(Error::sqlite("reading event counts"))?;
                out.push(EventCount {
                    day,
                    kind: kind_from_code(kind)?,
                    family: parse_opt(Some(family).filter(|f| !f.is_empty()), "family")?,
                    count: to_u64(n, "count")?,
                });
            }
            Ok(out)
        })
    }

    fn scan_events(
        &self,
        query: &EventQuery,
        f: &mut dyn FnMut(EventId, Event) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut conds = vec!["id > ?".to_owned()];
        let mut params = vec![Value::Integer(query.after.map_or(0, |e| to_i64(e.0)))];
        if let Some(t) = query.from {
            conds.push("ts >= ?".into());
            params.push(Value::Integer(t.0));
        }
        if let Some(t) = query.until {
            conds.push("ts < ?".into());
            params.push(Value::Integer(t.0));
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {} ORDER BY id",
            conds.join(" AND ")
        );
        self.read(|conn| {
            let tx = read_tx(conn)?;
            let mut s = tx
                .prepare_cached(&sql)
                .map_err(Error::sqlite("scanning events"))?;
            let mut rows = s
                .query(params_from_iter(params.iter()))
                .map_err(Error::sqlite("scanning events"))?;
            while let Some(r) = rows.next().map_err(Error::sqlite("scanning events"))? {
                let (id, e) = event_from_row(r).map_err(Error::sqlite("scanning events"))??;
                if f(id, e).is_break() {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    #[test]
    fn union_is_sorted_deduplicated_and_bounded() {
        assert_eq!(
            union_sorted(&items(&[1, 3, 5]), &items(&[2, 3, 9]), 2, 16),
            items(&[1, 2, 3, 5, 9])
        );
        assert_eq!(
            union_sorted(&items(&[1, 3, 5]), &items(&[2, 3, 9]), 2, 3),
            items(&[1, 2, 3])
        );
        assert_eq!(union_sorted(&[], &items(&[7]), 2, 16), items(&[7]));
        // A trailing partial item is ignored, not read past.
        assert_eq!(union_sorted(&[0, 1, 2], &[], 2, 16), items(&[1]));
        assert!(union_sorted(&items(&[1]), &items(&[2]), 2, 0).is_empty());
    }

    #[test]
    fn merge_sql_uses_the_documented_thresholds() {
        let sql = MERGE_DELTAS;
        assert!(sql.contains(&format!(
            "td_union(agents, excluded.agents, {AGENT_WIDTH}, {AGENT_K})"
        )));
        assert!(sql.contains(&format!("td_union(ports, excluded.ports, 2, {PORT_K})")));
        assert!(sql.contains(&format!(">= {}", AGENT_NAT * AGENT_WIDTH)));
        assert!(sql.contains(&format!(">= {}", PORT_NAT * 2)));
    }

    #[test]
    fn union_commutes_and_associates() {
        let (a, b, c) = (
            items(&[1, 4, 8, 300]),
            items(&[2, 4, 9]),
            items(&[0, 8, 1000]),
        );
        for k in [0, 2, 5, 16] {
            let ab = union_sorted(&a, &b, 2, k);
            assert_eq!(ab, union_sorted(&b, &a, 2, k));
            assert_eq!(
                union_sorted(&ab, &c, 2, k),
                union_sorted(&a, &union_sorted(&b, &c, 2, k), 2, k)
            );
        }
    }
}
