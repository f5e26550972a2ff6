//! [`EventStore`] over PostgreSQL: the event log, host-record folding and queries.
//!
//! # How a batch folds into host records
//!
//! An append copies its events into `events` and folds them in memory, one
//! accumulator per (UTC day, address, family), with the same rules and
//! hashes as the SQLite store: minimum, maximum and sum for the times and
//! count, and for the samples the event with the greatest
//! (timestamp, sample rank). The folds are copied into a session-local
//! staging table and merged into `host_records` by one
//! `INSERT ... ON CONFLICT DO UPDATE`, whose merge is associative and
//! commutative, so arrival order and batching never change a record.
//!
//! # NAT suspicion
//!
//! As in the SQLite store (see [`AGENT_NAT`] and [`PORT_NAT`]): a record
//! keeps the [`AGENT_K`] smallest distinct User-Agent hashes and the
//! distinct source ports of its latest [`PORT_WINDOW_SECS`]-second window,
//! and is flagged for good once it holds [`AGENT_NAT`] agents or
//! [`PORT_NAT`] ports in one window (within a batch, or across batches that
//! meet in the record's latest window).

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Row, Transaction};
use takedown_event::{Asn, CountryCode, Event, Family, HostRecord, Network, Timestamp};

use super::{PgStore, col, snapshot, to_i64, to_u64};
use crate::Error;
use crate::column::{asn_from, kind_code, kind_from_code, parse_opt, port_from};
use crate::fold::Fold;
use crate::record::{
    AppendReport, ByteRange, Cursor, EventCount, EventId, EventQuery, EventStore, FilterSql,
    FootprintRow, MAX_PAGE, RecordFilter, RecordPage, Window, ip_bytes, ip_from_bytes,
    parse_record_id,
};
#[cfg(doc)]
use crate::sqlite::PORT_WINDOW_SECS;
#[cfg(any(doc, test))]
use crate::sqlite::{AGENT_K, AGENT_NAT, PORT_NAT};

/// Rows fetched per round trip while streaming a scan.
const SCAN_BATCH: i32 = 1024;

/// The session-local table an append stages its folded records in; created
/// when a session opens, emptied by every commit.
pub(super) const CREATE_STAGE: &str = "CREATE TEMPORARY TABLE record_stage (
    day bigint, ip bytea, family text, first_seen bigint, last_seen bigint, count bigint,
    sample_rank bigint, prefix text, asn bigint, as_name text, country text, sample_url text,
    sample_host text, sample_agent text, dst_port integer, agents bigint[], port_window bigint,
    ports integer[], nat boolean, modified bigint
) ON COMMIT DELETE ROWS";

const STAGE_COLUMNS: &str = "day, ip, family, first_seen, last_seen, count, sample_rank, prefix,
    asn, as_name, country, sample_url, sample_host, sample_agent, dst_port, agents, port_window,
    ports, nat, modified";

const STAGE_TYPES: &[Type] = &[
    Type::INT8,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT8_ARRAY,
    Type::INT8,
    Type::INT4_ARRAY,
    Type::BOOL,
    Type::INT8,
];

/// Assignments that take each named column from the staged fold when its
/// sample is newer than the stored one (a later `last_seen`, or the same one
/// and a higher `sample_rank`), and keep the stored value otherwise.
macro_rules! newer_wins {
    ($($col:ident),+) => {
        concat!($(
            stringify!($col),
            " = CASE WHEN excluded.last_seen > r.last_seen OR (excluded.last_seen = r.last_seen \
             AND excluded.sample_rank > r.sample_rank) THEN excluded.",
            stringify!($col),
            " ELSE r.",
            stringify!($col),
            " END,\n",
        )+)
    };
}

/// Merges the staged folds into their records. Every right-hand side reads
/// the stored row (`r`) as it was before the update and the staged fold as
/// `excluded`, so the order of the assignments does not matter.
///
/// One bot build sends one fixed agent, so the stored and staged agent sets
/// are usually equal, and the unions are skipped when sets are equal. That
/// changes nothing: the union of equal sets is either, and a set that holds
/// enough agents or ports to flag NAT flagged its record when it was formed.
///
/// The literals 8, 4 and 16 are [`AGENT_K`], [`AGENT_NAT`] and [`PORT_NAT`]
/// (a unit test checks they agree).
const MERGE_STAGE: &str = concat!(
    "INSERT INTO host_records AS r (day, ip, family, first_seen, last_seen, count, sample_rank,
        prefix, asn, as_name, country, sample_url, sample_host, sample_agent, dst_port, agents,
        port_window, ports, nat, modified)
     SELECT day, ip, family, first_seen, last_seen, count, sample_rank, prefix, asn, as_name,
        country, sample_url, sample_host, sample_agent, dst_port, agents, port_window, ports,
        nat, modified
     FROM record_stage
     ON CONFLICT (day, ip, family) DO UPDATE SET
        first_seen = LEAST(r.first_seen, excluded.first_seen),
        last_seen = GREATEST(r.last_seen, excluded.last_seen),
        count = r.count + excluded.count,
",
    newer_wins!(
        sample_rank,
        prefix,
        asn,
        as_name,
        country,
        sample_url,
        sample_host,
        sample_agent,
        dst_port
    ),
    "        agents = CASE WHEN r.agents = excluded.agents THEN r.agents ELSE
            ARRAY(SELECT DISTINCT a FROM unnest(r.agents || excluded.agents) AS a ORDER BY a LIMIT 8)
            END,
        port_window = GREATEST(r.port_window, excluded.port_window),
        ports = CASE
            WHEN excluded.port_window > r.port_window THEN excluded.ports
            WHEN excluded.port_window < r.port_window OR r.ports = excluded.ports THEN r.ports
            ELSE ARRAY(SELECT DISTINCT p FROM unnest(r.ports || excluded.ports) AS p ORDER BY p LIMIT 16)
            END,
        nat = r.nat OR excluded.nat
            OR (r.agents <> excluded.agents
                AND (SELECT count(DISTINCT a) FROM unnest(r.agents || excluded.agents) AS a) >= 4)
            OR (excluded.port_window = r.port_window AND r.ports <> excluded.ports
                AND (SELECT count(DISTINCT p) FROM unnest(r.ports || excluded.ports) AS p) >= 16),
        modified = GREATEST(r.modified, excluded.modified)"
);

const RECORD_COLUMNS: &str = "day, ip, family, first_seen, last_seen, count, prefix, asn, as_name,
    country, sample_url, sample_host, sample_agent, dst_port, nat, modified";

const EVENT_COLUMNS: &str = "id, ts, kind, src_ip, src_port, dst_ip, dst_port, protocol,
    http_method, http_url, http_host, http_agent, http_referer, tls_sni, dns_qname, dns_qtype,
    payload, family, tag, sensor, malformed, has_network, prefix, asn, as_name, country";

const EVENT_TYPES: &[Type] = &[
    Type::INT8,
    Type::INT8,
    Type::INT2,
    Type::BYTEA,
    Type::INT4,
    Type::BYTEA,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
];

/// The family as stored: the empty string for an unattributed record.
fn family_from(s: String) -> Result<Option<Family>, Error> {
    parse_opt(Some(s).filter(|f| !f.is_empty()), "family")
}

fn record_from_row(r: &Row) -> Result<HostRecord, Error> {
    let day: i64 = col(r, 0)?;
    let ip = ip_from_bytes(col(r, 1)?)?;
    let family = family_from(col(r, 2)?)?;
    Ok(HostRecord {
        id: crate::record::record_id(ip, family.as_ref(), day),
        ip,
        family,
        day,
        first_seen: Timestamp(col(r, 3)?),
        last_seen: Timestamp(col(r, 4)?),
        count: to_u64(col(r, 5)?, "count")?,
        network: Network {
            prefix: parse_opt(col(r, 6)?, "prefix")?,
            asn: asn_from(col(r, 7)?)?,
            as_name: col(r, 8)?,
            country: parse_opt(col(r, 9)?, "country")?,
        },
        sample_url: col(r, 10)?,
        sample_host: col(r, 11)?,
        sample_agent: col(r, 12)?,
        dst_port: port_from(col::<i32>(r, 13)?.into())?,
        nat_suspected: col(r, 14)?,
        modified: Timestamp(col(r, 15)?),
    })
}

fn event_from_row(r: &Row) -> Result<(EventId, Event), Error> {
    let id = EventId(to_u64(col(r, 0)?, "event id")?);
    let protocol: String = col(r, 7)?;
    let sensor: String = col(r, 19)?;
    let has_network: bool = col(r, 21)?;
    let network = if has_network {
        Some(Network {
            prefix: parse_opt(col(r, 22)?, "prefix")?,
            asn: asn_from(col(r, 23)?)?,
            as_name: col(r, 24)?,
            country: parse_opt(col(r, 25)?, "country")?,
        })
    } else {
        None
    };
    let event = Event {
        timestamp: Timestamp(col(r, 1)?),
        kind: kind_from_code(col::<i16>(r, 2)?.into())?,
        src_ip: ip_from_bytes(col(r, 3)?)?,
        src_port: port_from(col::<i32>(r, 4)?.into())?,
        dst_ip: ip_from_bytes(col(r, 5)?)?,
        dst_port: port_from(col::<i32>(r, 6)?.into())?,
        protocol: protocol
            .parse()
            .map_err(|_| Error::Corrupt(format!("protocol {protocol:?}")))?,
        http_method: col(r, 8)?,
        http_url: col(r, 9)?,
        http_host: col(r, 10)?,
        http_agent: col(r, 11)?,
        http_referer: col(r, 12)?,
        tls_sni: col(r, 13)?,
        dns_qname: col(r, 14)?,
        dns_qtype: col(r, 15)?,
        payload: col(r, 16)?,
        family: parse_opt(col(r, 17)?, "family")?,
        tag: col(r, 18)?,
        sensor: sensor
            .parse()
            .map_err(|_| Error::Corrupt(format!("sensor {sensor:?}")))?,
        malformed: col(r, 20)?,
        network,
    };
    Ok((id, event))
}

/// The key of a host record: UTC day, stored address, family (empty if unattributed).
type RecordKey<'a> = (i64, Vec<u8>, &'a str);

/// Copies a batch into the event log under ids `first..`.
fn log_events(tx: &mut Transaction<'_>, events: &[Event], first: i64) -> Result<(), Error> {
    let sink = tx
        .copy_in(&format!(
            "COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .map_err(Error::postgres("appending events"))?;
    let mut w = BinaryCopyInWriter::new(sink, EVENT_TYPES);
    for (e, id) in events.iter().zip(first..) {
        let n = e.network.as_ref();
        let prefix = n.and_then(|n| n.prefix).map(|p| p.to_string());
        let asn = n.and_then(|n| n.asn).map(|a| i64::from(a.0));
        let as_name = n.and_then(|n| n.as_name.as_deref());
        let country = n.and_then(|n| n.country.as_ref()).map(CountryCode::as_str);
        let row: [&(dyn ToSql + Sync); 26] = [
            &id,
            &e.timestamp.0,
            &kind_code(e.kind),
            &ip_bytes(e.src_ip),
            &i32::from(e.src_port),
            &ip_bytes(e.dst_ip),
            &i32::from(e.dst_port),
            &e.protocol.as_str(),
            &e.http_method,
            &e.http_url,
            &e.http_host,
            &e.http_agent,
            &e.http_referer,
            &e.tls_sni,
            &e.dns_qname,
            &e.dns_qtype,
            &e.payload,
            &e.family.as_ref().map(Family::as_str),
            &e.tag,
            &e.sensor.as_str(),
            &e.malformed,
            &e.network.is_some(),
            &prefix,
            &asn,
            &as_name,
            &country,
        ];
        w.write(&row).map_err(Error::postgres("appending events"))?;
    }
    w.finish().map_err(Error::postgres("appending events"))?;
    Ok(())
}

/// Copies one batch's folds into the staging table and merges them into the records.
fn merge_folds(
    tx: &mut Transaction<'_>,
    folds: &mut HashMap<RecordKey<'_>, Fold<'_>>,
    modified: i64,
) -> Result<(), Error> {
    let sink = tx
        .copy_in(&format!(
            "COPY record_stage ({STAGE_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .map_err(Error::postgres("staging host records"))?;
    let mut w = BinaryCopyInWriter::new(sink, STAGE_TYPES);
    for ((day, ip, family), fold) in folds.iter_mut() {
        let sketches = fold.sketches();
        let agents: Vec<i64> = sketches.agents.iter().map(|&a| i64::from(a)).collect();
        let ports: Vec<i32> = sketches.ports.iter().map(|&p| i32::from(p)).collect();
        let (window, nat) = (sketches.window, sketches.nat);
        let count = to_i64(fold.count);
        let rank = fold.rank();
        let e = fold.latest;
        let n = e.network.as_ref();
        let prefix = n.and_then(|n| n.prefix).map(|p| p.to_string());
        let asn = n.and_then(|n| n.asn).map(|a| i64::from(a.0));
        let as_name = n.and_then(|n| n.as_name.as_deref());
        let country = n.and_then(|n| n.country.as_ref()).map(CountryCode::as_str);
        let row: [&(dyn ToSql + Sync); 20] = [
            day,
            ip,
            family,
            &fold.first,
            &fold.last,
            &count,
            &rank,
            &prefix,
            &asn,
            &as_name,
            &country,
            &e.http_url,
            &e.http_host,
            &e.http_agent,
            &i32::from(e.dst_port),
            &agents,
            &window,
            &ports,
            &nat,
            &modified,
        ];
        w.write(&row)
            .map_err(Error::postgres("staging host records"))?;
    }
    w.finish()
        .map_err(Error::postgres("staging host records"))?;
    tx.execute(MERGE_STAGE, &[])
        .map_err(Error::postgres("merging host records"))?;
    Ok(())
}

/// Builds the WHERE clause for a record filter, pushing its parameters.
/// PostgreSQL's spelling of a record filter: lists travel as arrays.
struct PgFilter<'a>(&'a mut Vec<Box<dyn ToSql + Sync>>);

impl FilterSql for PgFilter<'_> {
    const NEVER: &'static str = "false";
    const ALWAYS: &'static str = "true";

    fn asn_in(&mut self, asns: &BTreeSet<Asn>) -> String {
        let list: Vec<i64> = asns.iter().map(|a| i64::from(a.0)).collect();
        let p = next(self.0, Box::new(list));
        format!("asn = ANY({p}::int8[])")
    }

    fn country_in(&mut self, countries: &BTreeSet<CountryCode>) -> String {
        let list: Vec<String> = countries.iter().map(|c| c.as_str().into()).collect();
        let p = next(self.0, Box::new(list));
        format!("country = ANY({p}::text[])")
    }

    fn ip_in(&mut self, ranges: Vec<ByteRange>) -> String {
        let (lo, hi): (Vec<Vec<u8>>, Vec<Vec<u8>>) = ranges.into_iter().unzip();
        let lo = next(self.0, Box::new(lo));
        let hi = next(self.0, Box::new(hi));
        format!(
            "EXISTS (SELECT 1 FROM unnest({lo}::bytea[], {hi}::bytea[]) AS n (lo, hi)
             WHERE ip BETWEEN n.lo AND n.hi AND octet_length(ip) = octet_length(n.lo))"
        )
    }

    fn family_in(&mut self, families: &[Family]) -> String {
        let list: Vec<String> = families.iter().map(|f| f.as_str().to_owned()).collect();
        let p = next(self.0, Box::new(list));
        format!("family = ANY({p}::text[])")
    }

    fn compare(&mut self, column: &str, op: &str, value: i64) -> String {
        let p = next(self.0, Box::new(value));
        format!("{column} {op} {p}")
    }

    fn is(&mut self, column: &str, value: bool) -> String {
        let p = next(self.0, Box::new(value));
        format!("{column} = {p}")
    }
}

/// Adds a parameter and returns its placeholder.
fn next(params: &mut Vec<Box<dyn ToSql + Sync>>, v: Box<dyn ToSql + Sync>) -> String {
    params.push(v);
    format!("${}", params.len())
}

fn refs(params: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

impl EventStore for PgStore {
    fn append_events(&self, events: &[Event]) -> Result<AppendReport, Error> {
        // Fold before taking a session, so the transaction stays short.
        let mut folds: HashMap<RecordKey<'_>, Fold<'_>> = HashMap::with_capacity(events.len());
        let mut counts: HashMap<(i64, i16, &str), i64> = HashMap::new();
        for e in events {
            let day = e.timestamp.day();
            let family = e.family.as_ref().map_or("", Family::as_str);
            *counts.entry((day, kind_code(e.kind), family)).or_default() += 1;
            if e.kind.counts_as_infection() {
                folds
                    .entry((day, ip_bytes(e.src_ip), family))
                    .or_insert_with(|| Fold::new(e))
                    .add(e);
            }
        }
        let now = Timestamp::now().0;
        let n_events = to_i64(events.len() as u64);
        let modified = self.with(|c| {
            let mut tx = c
                .transaction()
                .map_err(Error::postgres("starting a write transaction"))?;
            // The clock row stays locked until commit, so appends commit in
            // clock order: a delta pull that has seen `modified` = m never
            // misses a later commit stamped below m. The clock never runs
            // backwards, even if the wall clock steps back.
            let modified: i64 = col(
                &tx.query_one(
                    "UPDATE meta SET value = GREATEST(value + 1, $1) WHERE key = 'clock'
                     RETURNING value",
                    &[&now],
                )
                .map_err(Error::postgres("advancing the record clock"))?,
                0,
            )?;
            if !events.is_empty() {
                // Ids come from a counter, not the table, so they are never reused.
                let last: i64 = col(
                    &tx.query_one(
                        "UPDATE meta SET value = value + $1 WHERE key = 'event_seq'
                         RETURNING value",
                        &[&n_events],
                    )
                    .map_err(Error::postgres("allocating event ids"))?,
                    0,
                )?;
                log_events(&mut tx, events, last - n_events + 1)?;
            }
            if !folds.is_empty() {
                merge_folds(&mut tx, &mut folds, modified)?;
            }
            if !counts.is_empty() {
                let (mut days, mut kinds, mut fams, mut ns) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for ((day, kind, family), n) in &counts {
                    days.push(*day);
                    kinds.push(*kind);
                    fams.push(*family);
                    ns.push(*n);
                }
                tx.execute(
                    "INSERT INTO event_counts AS c (day, kind, family, count)
                     SELECT * FROM unnest($1::int8[], $2::int2[], $3::text[], $4::int8[])
                     ON CONFLICT (day, kind, family) DO UPDATE SET count = c.count + excluded.count",
                    &[&days, &kinds, &fams, &ns],
                )
                .map_err(Error::postgres("updating event counts"))?;
            }
            tx.commit()
                .map_err(Error::postgres("committing an event batch"))?;
            Ok(modified)
        })?;
        Ok(AppendReport::committed(events.len(), folds.len(), modified))
    }

    fn host_records(
        &self,
        filter: &RecordFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<RecordPage, Error> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut clause = filter.to_sql(&mut PgFilter(&mut params))?;
        if let Some(Cursor(c)) = cursor {
            let base = params.len();
            clause.push_str(&format!(
                " AND (modified, day, ip, family) > (${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 3,
                base + 4
            ));
            params.push(Box::new(c.modified));
            params.push(Box::new(c.day));
            params.push(Box::new(c.ip.clone()));
            params.push(Box::new(c.family.clone()));
        }
        params.push(Box::new(limit as i64 + 1));
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM host_records WHERE {clause}
             ORDER BY modified, day, ip, family LIMIT ${}",
            params.len()
        );
        self.with(|c| {
            let rows = c
                .query(&sql, &refs(&params))
                .map_err(Error::postgres("querying host records"))?;
            let records = rows
                .iter()
                .map(record_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordPage::cut(records, limit))
        })
    }

    fn host_record(&self, id: &str) -> Result<Option<HostRecord>, Error> {
        let (ip, family, day) = parse_record_id(id)?;
        let family = family.as_ref().map_or("", Family::as_str).to_owned();
        self.with(|c| {
            c.query_opt(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM host_records
                     WHERE day = $1 AND ip = $2 AND family = $3"
                ),
                &[&day, &ip_bytes(ip), &family],
            )
            .map_err(Error::postgres("reading a host record"))?
            .as_ref()
            .map(record_from_row)
            .transpose()
        })
    }

    fn footprint(&self, filter: &RecordFilter, window: Window) -> Result<Vec<FootprintRow>, Error> {
        let mut params = Vec::new();
        let clause = filter.to_sql(&mut PgFilter(&mut params))?;
        let sql = window.footprint_sql(&clause);
        self.with(|c| {
            c.query(&sql, &refs(&params))
                .map_err(Error::postgres("computing a footprint"))?
                .iter()
                .map(|r| {
                    Ok(FootprintRow {
                        start_day: col(r, 0)?,
                        family: family_from(col(r, 1)?)?,
                        country: parse_opt(col(r, 2)?, "country")?,
                        asn: asn_from(col(r, 3)?)?,
                        unique_ips: to_u64(col(r, 4)?, "count")?,
                    })
                })
                .collect()
        })
    }

    fn event_counts(&self, first_day: i64, last_day: i64) -> Result<Vec<EventCount>, Error> {
        self.with(|c| {
            c.query(
                "SELECT day, kind, family, count FROM event_counts
                 WHERE day BETWEEN $1 AND $2 ORDER BY day, kind, family",
                &[&first_day, &last_day],
            )
            .map_err(Error::postgres("reading event counts"))?
            .iter()
            .map(|r| {
                Ok(EventCount {
                    day: col(r, 0)?,
                    kind: kind_from_code(col::<i16>(r, 1)?.into())?,
                    family: family_from(col(r, 2)?)?,
                    count: to_u64(col(r, 3)?, "count")?,
                })
            })
            .collect()
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
        self.with(|c| {
            let mut tx = snapshot(c)?;
            let portal = tx
                .bind(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events
                         WHERE id > $1 AND ts >= $2 AND ts < $3 ORDER BY id"
                    ),
                    &[&after, &from, &until],
                )
                .map_err(Error::postgres("scanning events"))?;
            loop {
                let rows = tx
                    .query_portal(&portal, SCAN_BATCH)
                    .map_err(Error::postgres("scanning events"))?;
                let last = rows.len() < SCAN_BATCH as usize;
                for r in &rows {
                    let (id, e) = event_from_row(r)?;
                    if f(id, e).is_break() {
                        return Ok(());
                    }
                }
                if last {
                    return Ok(());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sql_uses_the_documented_thresholds() {
        assert!(MERGE_STAGE.contains(&format!("ORDER BY a LIMIT {AGENT_K})")));
        assert!(MERGE_STAGE.contains(&format!("ORDER BY p LIMIT {PORT_NAT})")));
        assert!(MERGE_STAGE.contains(&format!("AS a) >= {AGENT_NAT}")));
        assert!(MERGE_STAGE.contains(&format!("AS p) >= {PORT_NAT}")));
    }
}
