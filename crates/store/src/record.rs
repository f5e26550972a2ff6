//! The event log, infected-host records and their queries: the [`EventStore`] trait.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::str::FromStr;

use ipnet::IpNet;
use takedown_event::{Asn, CountryCode, Event, EventKind, Family, HostRecord, Timestamp};

use crate::Error;

/// The most CIDR ranges one [`NetworkSet`] may hold after merging adjacent ones.
pub const MAX_CIDRS: usize = 8192;

/// The most records one page may hold.
pub const MAX_PAGE: usize = 100_000;

/// The position of an event in the log; ids grow with every append and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A slice of address space: the union (OR) of some AS numbers, CIDR prefixes and countries.
///
/// This is how a partner's constituency is described. An empty set holds
/// nothing, so a partner whose lists are empty sees nothing rather than
/// everything. Matching uses the network attached to each record: a record
/// whose AS or country is unknown matches only by prefix.
///
/// IPv4 prefixes match only IPv4 addresses and IPv6 prefixes only IPv6
/// addresses, so `::/0` does not reveal IPv4 hosts. IPv4-mapped IPv6 prefixes
/// (`::ffff:192.0.2.0/120`) are read as the IPv4 prefix they denote, matching
/// how addresses are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSet {
    /// Origin AS numbers.
    pub asns: BTreeSet<Asn>,
    /// Address prefixes.
    pub cidrs: Vec<IpNet>,
    /// Countries.
    pub countries: BTreeSet<CountryCode>,
}

impl NetworkSet {
    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.asns.is_empty() && self.cidrs.is_empty() && self.countries.is_empty()
    }

    /// Whether a record with this address and network falls in the set.
    ///
    /// Stores filter with the same rule; this is the reference they are tested against.
    pub fn contains(&self, ip: IpAddr, asn: Option<Asn>, country: Option<CountryCode>) -> bool {
        let ip = ip.to_canonical();
        asn.is_some_and(|a| self.asns.contains(&a))
            || country.is_some_and(|c| self.countries.contains(&c))
            || self.cidrs.iter().any(|n| {
                let n = canonical_net(*n);
                n.contains(&ip) && n.addr().is_ipv4() == ip.is_ipv4()
            })
    }

    /// The prefixes as merged, canonical, inclusive byte ranges, bounded by [`MAX_CIDRS`].
    pub(crate) fn ranges(&self) -> Result<Vec<ByteRange>, Error> {
        let nets: Vec<IpNet> = self.cidrs.iter().copied().map(canonical_net).collect();
        let merged = IpNet::aggregate(&nets);
        if merged.len() > MAX_CIDRS {
            return Err(Error::TooManyCidrs(merged.len()));
        }
        Ok(merged
            .iter()
            .map(|n| (ip_bytes(n.network()), ip_bytes(n.broadcast())))
            .collect())
    }
}

/// The first and last stored address of a prefix.
pub(crate) type ByteRange = (Vec<u8>, Vec<u8>);

/// Reads an IPv4-mapped IPv6 prefix as the IPv4 prefix it denotes.
fn canonical_net(n: IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(n),
            None => n,
        },
        _ => n,
    }
}

/// An address as stored: 4 bytes for IPv4 (including IPv4-mapped IPv6), 16 for IPv6.
pub(crate) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Decodes a stored address.
pub(crate) fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, Error> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Ok(IpAddr::from(a))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Ok(IpAddr::from(a))
    } else {
        Err(Error::Corrupt(format!("address of {} bytes", b.len())))
    }
}

/// Which host records a query wants. Conditions combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Each set restricts the records to its address space; a record must fall
    /// in every set. Put a partner's constituency here, and any narrower
    /// query (one AS, one prefix) as a second set. No sets means no restriction.
    pub within: Vec<NetworkSet>,
    /// Only these families; empty means every family, including unattributed records.
    pub families: Vec<Family>,
    /// Only records modified after this instant (for delta pulls).
    pub since: Option<Timestamp>,
    /// Only records of UTC days (days since the Unix epoch) at or after this one.
    pub first_day: Option<i64>,
    /// Only records of UTC days at or before this one.
    pub last_day: Option<i64>,
    /// Only records with (`Some(true)`) or without (`Some(false)`) NAT suspicion.
    pub nat_suspected: Option<bool>,
}

impl RecordFilter {
    /// Adds an address-space restriction; see [`RecordFilter::within`].
    pub fn within(mut self, set: NetworkSet) -> Self {
        self.within.push(set);
        self
    }

    /// The filter as one SQL condition in `sql`'s dialect, its values bound
    /// as parameters. What the filter means is written here once for every
    /// store, so that they isolate partners alike: an empty address space
    /// matches nothing, the parts of one space are alternatives, and the
    /// spaces and the other fields must all hold.
    pub(crate) fn to_sql<S: FilterSql>(&self, sql: &mut S) -> Result<String, Error> {
        let mut conds: Vec<String> = Vec::new();
        for set in &self.within {
            if set.is_empty() {
                // An empty address space holds nothing: fail closed.
                conds.push(S::NEVER.into());
                continue;
            }
            let mut any: Vec<String> = Vec::new();
            if !set.asns.is_empty() {
                any.push(sql.asn_in(&set.asns));
            }
            if !set.countries.is_empty() {
                any.push(sql.country_in(&set.countries));
            }
            let ranges = set.ranges()?;
            if !ranges.is_empty() {
                any.push(sql.ip_in(ranges));
            }
            conds.push(format!("({})", any.join(" OR ")));
        }
        if !self.families.is_empty() {
            conds.push(sql.family_in(&self.families));
        }
        if let Some(since) = self.since {
            conds.push(sql.compare("modified", ">", since.0));
        }
        if let Some(d) = self.first_day {
            conds.push(sql.compare("day", ">=", d));
        }
        if let Some(d) = self.last_day {
            conds.push(sql.compare("day", "<=", d));
        }
        if let Some(nat) = self.nat_suspected {
            conds.push(sql.is("nat", nat));
        }
        if conds.is_empty() {
            conds.push(S::ALWAYS.into());
        }
        Ok(conds.join(" AND "))
    }
}

/// How one store writes the tests of a [`RecordFilter`] in its SQL dialect,
/// binding each value as a parameter (see [`RecordFilter::to_sql`]).
pub(crate) trait FilterSql {
    /// A condition that never holds.
    const NEVER: &'static str;
    /// A condition that always holds.
    const ALWAYS: &'static str;
    /// `asn` is one of `asns`.
    fn asn_in(&mut self, asns: &BTreeSet<Asn>) -> String;
    /// `country` is one of `countries`.
    fn country_in(&mut self, countries: &BTreeSet<CountryCode>) -> String;
    /// `ip` lies in one of `ranges`, and has the length of its ends (so
    /// IPv4 ranges never match IPv6 addresses, nor the reverse).
    fn ip_in(&mut self, ranges: Vec<ByteRange>) -> String;
    /// `family` is one of `families`.
    fn family_in(&mut self, families: &[Family]) -> String;
    /// `column op value` for an integer column.
    fn compare(&mut self, column: &str, op: &str, value: i64) -> String;
    /// `column = value` for a boolean column.
    fn is(&mut self, column: &str, value: bool) -> String;
}

/// Where a page of records resumes: an opaque token from [`RecordPage::next`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(pub(crate) CursorKey);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CursorKey {
    pub(crate) modified: i64,
    pub(crate) day: i64,
    pub(crate) ip: Vec<u8>,
    pub(crate) family: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.", self.0.modified, self.0.day)?;
        for b in &self.0.ip {
            write!(f, "{b:02x}")?;
        }
        write!(f, ".{}", self.0.family)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Cursor(s.chars().take(200).collect());
        let mut parts = s.splitn(4, '.');
        let modified = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let day = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let hex = parts.next().ok_or_else(bad)?;
        let family = parts.next().ok_or_else(bad)?;
        if !(hex.len() == 8 || hex.len() == 32) || !hex.is_ascii() {
            return Err(bad());
        }
        let ip = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        if !family.is_empty() && family.parse::<Family>().is_err() {
            return Err(bad());
        }
        Ok(Cursor(CursorKey {
            modified,
            day,
            ip,
            family: family.to_owned(),
        }))
    }
}

/// One page of host records, ordered by (modified, day, ip, family).
///
/// The order is stable: a record changed while a client pages moves to the
/// end, so it is delivered again with its new contents rather than skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<HostRecord>,
    /// Where the next page starts, or `None` if this page reached the end.
    pub next: Option<Cursor>,
}

impl RecordPage {
    /// The page of a query that asked for `limit + 1` records: the extra
    /// record only tells that another page follows, which then resumes after
    /// the last record kept.
    pub(crate) fn cut(mut records: Vec<HostRecord>, limit: usize) -> RecordPage {
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
        RecordPage { records, next }
    }
}

/// The time bucket of a footprint rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// One UTC day.
    Day,
    /// Seven UTC days, Monday to Sunday.
    Week,
}

impl Window {
    /// The footprint query over the host records that `clause` selects, in
    /// SQL both stores run alike.
    pub(crate) fn footprint_sql(self, clause: &str) -> String {
        let bucket = match self {
            Window::Day => "day",
            // 1970-01-05, day 4, was a Monday; the double remainder keeps
            // days before the epoch in their own week.
            Window::Week => "(day - (((day - 4) % 7) + 7) % 7)",
        };
        // SQLite sorts NULLs first by itself, PostgreSQL only when told.
        format!(
            "SELECT {bucket} AS bucket, family, country, asn, count(DISTINCT ip)
             FROM host_records WHERE {clause}
             GROUP BY bucket, family, country, asn
             ORDER BY bucket, family, country NULLS FIRST, asn NULLS FIRST"
        )
    }
}

/// Unique infected addresses in one bucket of a footprint rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FootprintRow {
    /// The first UTC day of the bucket, as days since the Unix epoch.
    pub start_day: i64,
    /// The family, or `None` for unattributed records.
    pub family: Option<Family>,
    /// The country, if known.
    pub country: Option<CountryCode>,
    /// The origin AS, if known.
    pub asn: Option<Asn>,
    /// Distinct addresses seen in the bucket.
    pub unique_ips: u64,
}

/// Events of one kind and family on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    /// The UTC day, as days since the Unix epoch.
    pub day: i64,
    /// The kind of event.
    pub kind: EventKind,
    /// The family, or `None` for unattributed events.
    pub family: Option<Family>,
    /// The number of events.
    pub count: u64,
}

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReport {
    /// Events written.
    pub events: u64,
    /// Distinct host records created or updated.
    pub records: u64,
    /// The `modified` stamp given to those records.
    pub modified: Timestamp,
}

impl AppendReport {
    /// The report of a committed batch of `events` that touched `records`
    /// host records, logged the same way by every store.
    pub(crate) fn committed(events: usize, records: usize, modified: i64) -> AppendReport {
        tracing::debug!(events, records, "Event batch committed.");
        AppendReport {
            events: events as u64,
            records: records as u64,
            modified: Timestamp(modified),
        }
    }
}

/// Which logged events a scan wants. Conditions combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events appended after this one (to resume an export).
    pub after: Option<EventId>,
    /// Only events at or after this instant.
    pub from: Option<Timestamp>,
    /// Only events before this instant.
    pub until: Option<Timestamp>,
}

/// The stable id of the host record for `(ip, family, day)`: `DAY_FAMILY_IP`,
/// with an empty family for unattributed records, such as `20786_rustock_192.0.2.7`.
pub fn record_id(ip: IpAddr, family: Option<&Family>, day: i64) -> String {
    format!(
        "{day}_{}_{}",
        family.map_or("", Family::as_str),
        ip.to_canonical()
    )
}

/// Splits a record id back into its key.
pub(crate) fn parse_record_id(id: &str) -> Result<(IpAddr, Option<Family>, i64), Error> {
    let bad = || Error::RecordId(id.chars().take(200).collect());
    let (day, rest) = id.split_once('_').ok_or_else(bad)?;
    let (family, ip) = rest.rsplit_once('_').ok_or_else(bad)?;
    let day: i64 = day.parse().map_err(|_| bad())?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let family = if family.is_empty() {
        None
    } else {
        let f: Family = family.parse().map_err(|_| bad())?;
        if f.as_str() != family {
            return Err(bad());
        }
        Some(f)
    };
    Ok((ip, family, day))
}

/// Storage for the event log and the host records folded from it.
///
/// Methods take `&self` and implementations are `Send + Sync`; calls block.
pub trait EventStore: Send + Sync {
    /// Appends a batch of events and folds them into host records, all in one
    /// durable transaction: when this returns `Ok`, the whole batch survives a
    /// crash; when it fails, none of it was written.
    ///
    /// Callers should batch (group commit): one call costs one disk flush.
    /// Events may arrive late and out of order; see [`HostRecord`] for how they fold.
    /// DNS events are logged but never make host records.
    fn append_events(&self, events: &[Event]) -> Result<AppendReport, Error>;

    /// One page of host records matching `filter`, resuming after `cursor`.
    ///
    /// `limit` is capped at [`MAX_PAGE`]. For delta pulls, keep the filter and
    /// follow `next`; when it is `None`, remember the last record's `modified`
    /// and pass it as `since` next time.
    fn host_records(
        &self,
        filter: &RecordFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<RecordPage, Error>;

    /// The host record with this id (see [`record_id`]), if any.
    fn host_record(&self, id: &str) -> Result<Option<HostRecord>, Error>;

    /// Unique infected addresses per bucket x family x country x AS over the
    /// records matching `filter`, ordered by those columns.
    fn footprint(&self, filter: &RecordFilter, window: Window) -> Result<Vec<FootprintRow>, Error>;

    /// Event counts per day, kind and family over an inclusive day range,
    /// ordered by day, kind and family. DNS events count here.
    fn event_counts(&self, first_day: i64, last_day: i64) -> Result<Vec<EventCount>, Error>;

    /// Streams logged events matching `query`, ordered by id, from one
    /// consistent snapshot. The callback may stop early with [`ControlFlow::Break`].
    fn scan_events(
        &self,
        query: &EventQuery,
        f: &mut dyn FnMut(EventId, Event) -> ControlFlow<()>,
    ) -> Result<(), Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_round_trip() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let fam: Family = "my_fam.v2".parse().unwrap();
        let id = record_id(ip, Some(&fam), 20_000);
        assert_eq!(id, "20000_my_fam.v2_2001:db8::1");
        assert_eq!(parse_record_id(&id).unwrap(), (ip, Some(fam), 20_000));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let id = record_id(v4, None, -3);
        assert_eq!(parse_record_id(&id).unwrap(), (v4, None, -3));
        for bad in [
            "",
            "1",
            "x_a_1.2.3.4",
            "1_A_1.2.3.4",
            "1_a_999.1.1.1",
            "1_a b_1.2.3.4",
        ] {
            assert!(parse_record_id(bad).is_err(), "{bad:?}");
        }
        // Mapped addresses get the id of the IPv4 address they carry.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(record_id(mapped, None, 1), record_id(v4, None, 1));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor(CursorKey {
            modified: 17,
            day: -2,
            ip: vec![10, 0, 0, 1],
            family: "a.b".into(),
        });
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in [
            "",
            "1.2.0a000001",
            "x.1.0a000001.",
            "1.1.0a0000.",
            "1.1.zz000001.",
            "1.1.0a000001.A B",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_set_reference_rule() {
        let set = NetworkSet {
            asns: [Asn(64500)].into(),
            cidrs: vec!["10.0.0.0/8".parse().unwrap(), "::/0".parse().unwrap()],
            countries: ["DE".parse().unwrap()].into(),
        };
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(set.contains(v4, Some(Asn(64500)), None));
        assert!(!set.contains(v4, Some(Asn(64501)), None));
        assert!(set.contains(v4, None, Some("de".parse().unwrap())));
        assert!(set.contains("10.1.2.3".parse().unwrap(), None, None));
        assert!(set.contains("2001:db8::1".parse().unwrap(), None, None));
        // ::/0 does not cover IPv4, mapped or not.
        assert!(!set.contains("::ffff:192.0.2.1".parse().unwrap(), None, None));
        assert!(!NetworkSet::default().contains(v4, Some(Asn(64500)), None));
        let mapped = NetworkSet {
            cidrs: vec!["::ffff:192.0.2.0/120".parse().unwrap()],
            ..NetworkSet::default()
        };
        assert!(mapped.contains(v4, None, None));
    }
}
