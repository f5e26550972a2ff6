//! [`EventStore`] over SQLite: the event log, host-record folding and queries.
//!
//! # How a batch folds into host records
//!
//! An append logs its events as encoded segments (see `segment.rs`) and
//! folds them in memory, one accumulator per (UTC day, address, family). The
//! accumulators are written as one delta blob per batch; a compaction (every
//! few hundred thousand deltas, and before any record query) merges pending
//! deltas in memory per record and then into each record's row with one
//! `INSERT ... ON CONFLICT DO UPDATE`. A busy bot checking in many times
//! therefore costs one row update per compaction, not one per event. The
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

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use takedown_event::{Asn, CountryCode, Event, Family, HostRecord, Network, Timestamp};

use super::segment::{self, FxMap};
use super::{SqliteStore, to_i64, to_u64};
use crate::Error;
use crate::column::{asn_from, kind_code, kind_from_code, parse_opt, port_from};
use crate::fold::{Fold, IpKey};
use crate::record::{
    AppendReport, ByteRange, Cursor, EventCount, EventId, EventQuery, EventStore, FilterSql,
    FootprintRow, MAX_PAGE, RecordFilter, RecordPage, Window, ip_bytes, ip_from_bytes,
    parse_record_id,
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

/// `N` in the upsert: whether the incoming fold's sample is newer than the stored one.
macro_rules! newer {
    () => {
        "(excluded.last_seen > last_seen OR (excluded.last_seen = last_seen AND excluded.sample_rank > sample_rank))"
    };
}

/// Merges one pending delta (already merged with the other pending deltas of
/// its record, see [`Delta::merge`]) into its record. This is the same merge
/// as [`Delta::merge`]; it is associative and commutative.
const MERGE_DELTAS: &str = concat!(
    "INSERT INTO host_records (day, ip, family, first_seen, last_seen, count, sample_rank,
        prefix, asn, as_name, country, sample_url, sample_host, sample_agent, dst_port,
        agents, port_window, ports, nat, modified)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
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

/// Builds the WHERE clause for a record filter, pushing its parameters.
/// SQLite's spelling of a record filter: lists travel as one JSON text each.
struct SqliteFilter<'a>(&'a mut Vec<Value>);

impl SqliteFilter<'_> {
    /// `column IN` the JSON array `items` (already quoted where needed).
    fn json_list(&mut self, column: &str, items: impl Iterator<Item = String>) -> String {
        let items: Vec<String> = items.collect();
        self.0.push(Value::Text(format!("[{}]", items.join(","))));
        format!("{column} IN (SELECT value FROM json_each(?))")
    }
}

impl FilterSql for SqliteFilter<'_> {
    const NEVER: &'static str = "0";
    const ALWAYS: &'static str = "1";

    fn asn_in(&mut self, asns: &BTreeSet<Asn>) -> String {
        self.json_list("asn", asns.iter().map(|a| a.0.to_string()))
    }

    fn country_in(&mut self, countries: &BTreeSet<CountryCode>) -> String {
        self.json_list(
            "country",
            countries.iter().map(|c| format!("\"{}\"", c.as_str())),
        )
    }

    fn ip_in(&mut self, ranges: Vec<ByteRange>) -> String {
        let mut any = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            let len = lo.len() as i64;
            self.0.push(Value::Blob(lo));
            self.0.push(Value::Blob(hi));
            self.0.push(Value::Integer(len));
            any.push("(ip BETWEEN ? AND ? AND length(ip) = ?)");
        }
        format!("({})", any.join(" OR "))
    }

    fn family_in(&mut self, families: &[Family]) -> String {
        self.json_list(
            "family",
            families.iter().map(|f| format!("\"{}\"", f.as_str())),
        )
    }

    fn compare(&mut self, column: &str, op: &str, value: i64) -> String {
        self.0.push(Value::Integer(value));
        format!("{column} {op} ?")
    }

    fn is(&mut self, column: &str, value: bool) -> String {
        self.0.push(Value::Integer(i64::from(value)));
        format!("{column} = ?")
    }
}

/// Deltas pending before an append compacts them, unless
/// [`SqliteStore::set_compact_threshold`] says otherwise.
pub(super) const COMPACT_AT: u64 = 262_144;

/// The most a threshold may be set to: a compaction holds every pending
/// delta's blob and, at worst (every delta a different record), a merged
/// delta per pending delta in memory, a few hundred bytes each.
const MAX_COMPACT_AT: u64 = 4 << 20;

/// One record's pending change: one batch's fold, or several merged.
///
/// Deltas are kept per batch as one encoded blob in `record_deltas` and
/// merged, first with each other in memory and then into `host_records`, by
/// [`compact`]. Text borrows from the blobs being merged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delta<'a> {
    first: i64,
    last: i64,
    count: u64,
    rank: i64,
    prefix: Option<ipnet::IpNet>,
    asn: Option<u32>,
    as_name: Option<&'a str>,
    country: Option<&'a str>,
    url: Option<&'a str>,
    host: Option<&'a str>,
    agent: Option<&'a str>,
    dst_port: u16,
    agents: Cow<'a, [u8]>,
    window: i64,
    ports: Cow<'a, [u8]>,
    nat: bool,
    modified: i64,
}

/// The key of a host record: UTC day, address, family (empty if unattributed).
type RecordKey<'a> = (i64, IpKey, &'a str);

impl Delta<'_> {
    /// Folds `b` into `self` exactly as [`MERGE_DELTAS`] folds a delta into a row.
    fn merge(&mut self, b: Self) {
        let newer = b.last > self.last || (b.last == self.last && b.rank > self.rank);
        // One bot sends one agent, so the sets are usually equal: skip the
        // merge and its allocation then. (Both are sorted, deduplicated and
        // at most `AGENT_K` long, so the union of equal sets is either.)
        let agents = if self.agents == b.agents {
            self.agents.clone()
        } else {
            Cow::Owned(union_sorted(&self.agents, &b.agents, AGENT_WIDTH, AGENT_K))
        };
        let same_window = b.window == self.window;
        let ports = if b.window > self.window {
            b.ports.clone()
        } else if same_window {
            Cow::Owned(union_sorted(&self.ports, &b.ports, 2, PORT_K))
        } else {
            self.ports.clone()
        };
        self.nat = self.nat
            || b.nat
            || agents.len() >= AGENT_NAT * AGENT_WIDTH
            || (same_window && ports.len() >= PORT_NAT * 2);
        self.agents = agents;
        self.ports = ports;
        self.window = self.window.max(b.window);
        self.first = self.first.min(b.first);
        self.last = self.last.max(b.last);
        self.count += b.count;
        self.modified = self.modified.max(b.modified);
        if newer {
            self.rank = b.rank;
            self.prefix = b.prefix;
            self.asn = b.asn;
            self.as_name = b.as_name;
            self.country = b.country;
            self.url = b.url;
            self.host = b.host;
            self.agent = b.agent;
            self.dst_port = b.dst_port;
        }
    }
}

/// The smallest encoding of one delta, used to bound the declared count.
const MIN_DELTA_BYTES: usize = 20;

/// Encodes one batch's folds as a delta blob; the batch's `modified` is stored beside it.
fn encode_deltas<'a>(folds: &mut [(&(i64, IpKey, &'a str), &mut Fold<'a>)]) -> Vec<u8> {
    let mut w = segment::Writer::new(folds.len(), folds.len() * 48);
    for ((day, ip, family), fold) in folds.iter_mut() {
        let sketches = fold.sketches();
        let agents: Vec<u8> = sketches
            .agents
            .iter()
            .flat_map(|a| a.to_be_bytes())
            .collect();
        let ports: Vec<u8> = sketches
            .ports
            .iter()
            .flat_map(|p| p.to_be_bytes())
            .collect();
        let (window, nat) = (sketches.window, sketches.nat);
        let rank = fold.rank();
        let e: &'a Event = fold.latest;
        let n = e.network.as_ref();
        w.signed(*day);
        w.blob(ip.as_slice());
        w.text(Some(family));
        w.signed(fold.first);
        w.signed(fold.last);
        w.varint(fold.count);
        w.signed(rank);
        match n.and_then(|n| n.prefix) {
            Some(p) => {
                w.ip(p.addr());
                w.byte(p.prefix_len());
            }
            None => w.byte(0),
        }
        w.varint(n.and_then(|n| n.asn).map_or(0, |a| u64::from(a.0) + 1));
        w.text(n.and_then(|n| n.as_name.as_deref()));
        w.text(n.and_then(|n| n.country.as_ref()).map(CountryCode::as_str));
        w.text(e.http_url.as_deref());
        w.text(e.http_host.as_deref());
        w.text(e.http_agent.as_deref());
        w.varint(u64::from(e.dst_port));
        w.blob(&agents);
        w.signed(window);
        w.blob(&ports);
        w.byte(u8::from(nat));
    }
    w.finish()
}

/// Decodes a delta blob, passing each delta to `f`.
fn decode_deltas<'a>(
    data: &'a [u8],
    modified: i64,
    f: &mut dyn FnMut(RecordKey<'a>, Delta<'a>),
) -> Result<(), Error> {
    let mut r = segment::Decoder::with_min_item(data, MIN_DELTA_BYTES)?;
    let bad = |what: &str| segment::corrupt(what);
    while r.take_item() {
        let day = r.signed()?;
        let ip = ip_from_bytes(r.blob(16)?)?;
        let family = r.text()?.ok_or_else(|| bad("missing family"))?;
        let first = r.signed()?;
        let last = r.signed()?;
        let count = r.varint()?;
        let rank = r.signed()?;
        let prefix = match r.byte()? {
            0 => None,
            len => {
                let addr = r.ip_of_len(len)?;
                let bits = r.byte()?;
                Some(ipnet::IpNet::new(addr, bits).map_err(|_| bad("prefix length"))?)
            }
        };
        let asn = match r.varint()? {
            0 => None,
            a => Some(u32::try_from(a - 1).map_err(|_| bad("AS number"))?),
        };
        let delta = Delta {
            first,
            last,
            count,
            rank,
            prefix,
            asn,
            as_name: r.text()?,
            country: r.text()?,
            url: r.text()?,
            host: r.text()?,
            agent: r.text()?,
            dst_port: u16::try_from(r.varint()?).map_err(|_| bad("port"))?,
            agents: Cow::Borrowed(r.blob(AGENT_WIDTH * AGENT_K)?),
            window: r.signed()?,
            ports: Cow::Borrowed(r.blob(2 * PORT_K)?),
            nat: r.byte()? != 0,
            modified,
        };
        f((day, IpKey::new(ip), family), delta);
    }
    if !r.is_done() {
        return Err(bad("trailing bytes after the deltas"));
    }
    Ok(())
}

/// Merges all pending deltas into host records in one transaction.
///
/// The deltas of one record are merged in memory first, so a record touched
/// by many batches since the last compaction costs one row update; the
/// updates then run in key order, walking the records' B-tree front to back.
fn compact(conn: &mut Connection) -> Result<usize, Error> {
    let t0 = std::time::Instant::now();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a compaction"))?;
    let mut blobs: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut pending = 0i64;
    {
        let mut s = tx
            .prepare_cached("SELECT n, modified, data FROM record_deltas ORDER BY id")
            .map_err(Error::sqlite("reading record deltas"))?;
        let rows = s
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
            .map_err(Error::sqlite("reading record deltas"))?;
        for r in rows {
            let (n, modified, data) = r.map_err(Error::sqlite("reading record deltas"))?;
            pending = pending.saturating_add(n.max(0));
            blobs.push((modified, data));
        }
    }
    // The declared counts only size the map; decoding checks each blob.
    let pending = usize::try_from(pending).unwrap_or(0);
    // The map holds positions in `merged`, and starts small: the pending
    // count bounds the records from above but is often several times their
    // number (a busy record has a delta in every batch), and a table sized
    // for it would touch far more memory than the records fill.
    let t_read = t0.elapsed();
    // Families are few: keys hold a family's number, so that comparing
    // keys never reads the family text back from the blobs.
    let mut families: Vec<&str> = Vec::new();
    let mut family_ids: FxMap<&str, u32> = FxMap::default();
    let mut slots: FxMap<(i64, IpKey, u32), usize> =
        FxMap::with_capacity_and_hasher(pending.min(1 << 16), Default::default());
    let mut merged: Vec<Delta<'_>> = Vec::with_capacity(pending.min(1 << 16));
    for (modified, data) in &blobs {
        decode_deltas(data, *modified, &mut |(day, ip, family), d| {
            let fid = match family_ids.get(family) {
                Some(&id) => id,
                None => {
                    let id = families.len() as u32;
                    families.push(family);
                    family_ids.insert(family, id);
                    id
                }
            };
            match slots.entry((day, ip, fid)) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    if let Some(m) = merged.get_mut(*o.get()) {
                        m.merge(d);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(merged.len());
                    merged.push(d);
                }
            }
        })?;
    }
    let t_merge = t0.elapsed();
    let family = |id: u32| families.get(id as usize).copied().unwrap_or_default();
    let mut order: Vec<((i64, IpKey, u32), usize)> = slots.into_iter().collect();
    order.sort_unstable_by(|a, b| {
        let ((da, ia, fa), (db, ib, fb)) = (a.0, b.0);
        (da, ia.as_slice(), family(fa)).cmp(&(db, ib.as_slice(), family(fb)))
    });
    {
        let mut up = tx
            .prepare_cached(MERGE_DELTAS)
            .map_err(Error::sqlite("preparing the record merge"))?;
        let mut prefix = String::new();
        for ((day, ip, fid), i) in &order {
            let Some(d) = merged.get(*i) else { continue };
            let family = family(*fid);
            prefix.clear();
            if let Some(p) = d.prefix {
                use std::fmt::Write as _;
                // Writing to a String cannot fail.
                let _ = write!(prefix, "{p}");
            }
            up.execute(params![
                day,
                ip.as_slice(),
                family,
                d.first,
                d.last,
                to_i64(d.count),
                d.rank,
                d.prefix.map(|_| prefix.as_str()),
                d.asn,
                d.as_name,
                d.country,
                d.url,
                d.host,
                d.agent,
                d.dst_port,
                &*d.agents,
                d.window,
                &*d.ports,
                d.nat,
                d.modified,
            ])
            .map_err(Error::sqlite("merging record deltas"))?;
        }
    }
    tx.execute("DELETE FROM record_deltas", [])
        .map_err(Error::sqlite("clearing record deltas"))?;
    tx.commit()
        .map_err(Error::sqlite("committing a compaction"))?;
    tracing::debug!(
        records = order.len(),
        read_ms = t_read.as_millis() as u64,
        merge_ms = (t_merge - t_read).as_millis() as u64,
        write_ms = (t0.elapsed() - t_merge).as_millis() as u64,
        "Record deltas merged."
    );
    Ok(order.len())
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

    /// Sets how many record deltas may pend before an append compacts them
    /// (default 262 144; clamped to 1 to 4 194 304).
    ///
    /// A compaction merges every pending delta into its record with one row
    /// update per record, so its cost grows with the records touched, not
    /// the deltas. A bulk load that raises the threshold therefore merges
    /// each record once or a few times instead of every few batches, and
    /// should call [`SqliteStore::compact`] at its end. The price is memory
    /// during a compaction (every pending blob, and at worst a merged delta
    /// of a few hundred bytes per pending delta) and a longer merge for the
    /// first record query while deltas pend. Durability is the same either
    /// way: pending deltas are committed data.
    pub fn set_compact_threshold(&self, deltas: u64) {
        self.compact_at
            .store(deltas.clamp(1, MAX_COMPACT_AT), Ordering::Relaxed);
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
        // Sized for the worst case, every event its own record, so the map never rehashes.
        let mut folds: FxMap<RecordKey<'_>, Fold<'_>> =
            FxMap::with_capacity_and_hasher(events.len(), Default::default());
        let mut counts: FxMap<(i64, i16, &str), u64> = FxMap::default();
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
                log_events(&tx, events)?;
                if !folds.is_empty() {
                    let mut folds: Vec<_> = folds.iter_mut().collect();
                    // Encode in the order of each record's latest event,
                    // which is the order the events and their text lie in
                    // memory: walking the folds in hash order instead reads
                    // the batch at random, one cache miss after another.
                    folds.sort_unstable_by_key(|(_, f)| std::ptr::from_ref(f.latest).addr());
                    tx.prepare_cached(
                        "INSERT INTO record_deltas (n, modified, data) VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            to_i64(folds.len() as u64),
                            modified,
                            encode_deltas(&mut folds)
                        ])
                    })
                    .map_err(Error::sqlite("appending record deltas"))?;
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
            if pending >= self.compact_at.load(Ordering::Relaxed) {
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
            Ok(AppendReport::committed(events.len(), folds.len(), modified))
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
        let mut clause = filter.to_sql(&mut SqliteFilter(&mut params))?;
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
            Ok(RecordPage::cut(records, limit))
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
        let clause = filter.to_sql(&mut SqliteFilter(&mut params))?;
        let sql = window.footprint_sql(&clause);
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
        let after = query.after.map_or(0, |e| to_i64(e.0));
        let from = query.from.map_or(i64::MIN, |t| t.0);
        let until = query.until.map_or(i64::MAX, |t| t.0);
        self.read(|conn| {
            let tx = read_tx(conn)?;
            let mut s = tx
                .prepare_cached(
                    "SELECT first_id, data FROM event_segments
                     WHERE first_id + n - 1 > ?1 AND max_ts >= ?2 AND min_ts < ?3
                     ORDER BY first_id",
                )
                .map_err(Error::sqlite("scanning events"))?;
            let mut rows = s
                .query(params![after, from, until])
                .map_err(Error::sqlite("scanning events"))?;
            while let Some(r) = rows.next().map_err(Error::sqlite("scanning events"))? {
                let first: i64 = r.get(0).map_err(Error::sqlite("scanning events"))?;
                let data = r
                    .get_ref(1)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(Error::sqlite("scanning events"))?;
                let first = to_u64(first, "event id")?;
                let mut dec = segment::Decoder::new(data)?;
                let mut id = first;
                while let Some(e) = dec.next_event()? {
                    let this = id;
                    id += 1;
                    if to_i64(this) <= after || e.timestamp.0 < from || e.timestamp.0 >= until {
                        continue;
                    }
                    if f(EventId(this), e).is_break() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }
}

/// Appends a batch to the event log, one segment row per [`segment::SEGMENT_EVENTS`] events.
fn log_events(tx: &rusqlite::Transaction<'_>, events: &[Event]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    // Ids are handed out from a counter rather than from the table, so they
    // are never reused, whatever happens to old segments.
    let last: i64 = tx
        .prepare_cached(
            "UPDATE meta SET value = value + ?1 WHERE key = 'event_seq' RETURNING value",
        )
        .and_then(|mut s| s.query_row([to_i64(events.len() as u64)], |r| r.get(0)))
        .map_err(Error::sqlite("allocating event ids"))?;
    let mut first = last - to_i64(events.len() as u64) + 1;
    let mut ins = tx
        .prepare_cached(
            "INSERT INTO event_segments (first_id, n, min_ts, max_ts, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(Error::sqlite("preparing the event insert"))?;
    for chunk in events.chunks(segment::SEGMENT_EVENTS) {
        let (lo, hi) = chunk.iter().fold((i64::MAX, i64::MIN), |(lo, hi), e| {
            (lo.min(e.timestamp.0), hi.max(e.timestamp.0))
        });
        let n = to_i64(chunk.len() as u64);
        ins.execute(params![first, n, lo, hi, segment::encode(chunk)])
            .map_err(Error::sqlite("appending events"))?;
        first += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use takedown_event::{Asn, EventKind};

    /// A pseudo-random delta with small ranges, so ties and equal windows are common.
    fn delta(x: &mut u64) -> Delta<'static> {
        let mut r = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        };
        let sorted = |mut v: Vec<u8>, w: usize| {
            let mut items: Vec<Vec<u8>> = v.chunks_exact(w).map(<[u8]>::to_vec).collect();
            items.sort();
            items.dedup();
            v = items.concat();
            v
        };
        let agents = (0..r() % 9)
            .flat_map(|_| ((r() % 12) as u32).to_be_bytes())
            .collect();
        let ports = (0..r() % 17)
            .flat_map(|_| ((r() % 40) as u16).to_be_bytes())
            .collect();
        let first = (r() % 5) as i64;
        Delta {
            first,
            last: first + (r() % 3) as i64,
            count: 1 + r() % 4,
            rank: (r() % 3) as i64 - 1,
            prefix: ["192.0.2.0/24", "198.51.100.0/24"][(r() % 2) as usize]
                .parse()
                .ok(),
            asn: (r() % 2 == 0).then_some((r() % 3) as u32),
            as_name: ["A", "B"].get((r() % 3) as usize).copied(),
            country: ["DE", "US"].get((r() % 3) as usize).copied(),
            url: ["/a", "/b"].get((r() % 3) as usize).copied(),
            host: ["h1", "h2"].get((r() % 3) as usize).copied(),
            agent: ["u1", "u2"].get((r() % 3) as usize).copied(),
            dst_port: (r() % 3) as u16,
            agents: Cow::Owned(sorted(agents, AGENT_WIDTH)),
            window: (r() % 2) as i64,
            ports: Cow::Owned(sorted(ports, 2)),
            nat: r() % 7 == 0,
            modified: (r() % 4) as i64,
        }
    }

    fn sql_merge(conn: &Connection, d: &Delta<'_>) {
        conn.execute(
            MERGE_DELTAS,
            params![
                1,
                [10u8, 0, 0, 1],
                "fam",
                d.first,
                d.last,
                to_i64(d.count),
                d.rank,
                d.prefix.map(|p| p.to_string()),
                d.asn,
                d.as_name,
                d.country,
                d.url,
                d.host,
                d.agent,
                d.dst_port,
                &*d.agents,
                d.window,
                &*d.ports,
                d.nat,
                d.modified,
            ],
        )
        .unwrap();
    }

    fn sql_row(conn: &Connection) -> Delta<'static> {
        let leak = |s: Option<String>| s.map(|s| &*Box::leak(s.into_boxed_str()));
        conn.query_row(
            "SELECT first_seen, last_seen, count, sample_rank, prefix, asn, as_name, country,
                sample_url, sample_host, sample_agent, dst_port, agents, port_window, ports,
                nat, modified FROM host_records",
            [],
            |r| {
                Ok(Delta {
                    first: r.get(0)?,
                    last: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    rank: r.get(3)?,
                    prefix: r.get::<_, Option<String>>(4)?.map(|p| p.parse().unwrap()),
                    asn: r.get(5)?,
                    as_name: leak(r.get(6)?),
                    country: leak(r.get(7)?),
                    url: leak(r.get(8)?),
                    host: leak(r.get(9)?),
                    agent: leak(r.get(10)?),
                    dst_port: r.get(11)?,
                    agents: Cow::Owned(r.get(12)?),
                    window: r.get(13)?,
                    ports: Cow::Owned(r.get(14)?),
                    nat: r.get(15)?,
                    modified: r.get(16)?,
                })
            },
        )
        .unwrap()
    }

    #[test]
    fn memory_merge_matches_the_sql_merge() {
        let mut conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1d;
        for _ in 0..300 {
            conn.execute("DELETE FROM host_records", []).unwrap();
            let n = 2 + x % 3;
            let deltas: Vec<Delta<'static>> = (0..n).map(|_| delta(&mut x)).collect();
            let mut mem = deltas[0].clone();
            for d in &deltas {
                sql_merge(&conn, d);
            }
            for d in &deltas[1..] {
                mem.merge(d.clone());
            }
            assert_eq!(sql_row(&conn), mem, "{deltas:?}");
        }
    }

    #[test]
    fn delta_blobs_round_trip_and_reject_damage() {
        let events: Vec<Event> = (0..40u16)
            .map(|i| {
                let mut e = Event::new(
                    Timestamp(1_700_000_000_000_000 + i64::from(i % 7) * 1_000_000),
                    EventKind::Http,
                    std::net::SocketAddr::new([10, 0, 0, (i % 5) as u8].into(), 1000 + i),
                    "198.51.100.1:80".parse().unwrap(),
                    "sh1".parse().unwrap(),
                );
                e.http_agent = Some(format!("agent{}", i % 6));
                e.family = (i % 2 == 0).then(|| "fam".parse().unwrap());
                e.network = Some(Network {
                    prefix: "10.0.0.0/8".parse().ok(),
                    asn: Some(Asn(64500)),
                    as_name: Some("EX".into()),
                    country: "DE".parse().ok(),
                });
                e
            })
            .collect();
        let mut folds: FxMap<RecordKey<'_>, Fold<'_>> = FxMap::default();
        for e in &events {
            let family = e.family.as_ref().map_or("", Family::as_str);
            folds
                .entry((e.timestamp.day(), IpKey::new(e.src_ip), family))
                .or_insert_with(|| Fold::new(e))
                .add(e);
        }
        let mut list: Vec<_> = folds.iter_mut().collect();
        let blob = encode_deltas(&mut list);
        let mut n = 0;
        let mut total = 0;
        decode_deltas(&blob, 7, &mut |_, d| {
            n += 1;
            total += d.count;
            assert_eq!(d.modified, 7);
        })
        .unwrap();
        assert_eq!((n, total), (list.len(), events.len() as u64));
        for cut in 0..blob.len() {
            assert!(decode_deltas(&blob[..cut], 7, &mut |_, _| {}).is_err());
        }
    }

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
