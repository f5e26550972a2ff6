//! The Shadowserver-style CSV feed.

use std::io::Write;

use takedown_event::HostRecord;

use crate::{Error, FeedOptions};

/// The CSV header.
///
/// The first ten columns carry Shadowserver's `event4_sinkhole_http` names in
/// that report's order, so that scripts written for Shadowserver reports read
/// them unchanged: `timestamp` is the latest check-in and `infection` the
/// family. Columns the report has but a record cannot fill (the source port,
/// region, city and the sinkhole's own address) are left out rather than
/// emptied. takedown's own columns follow, prefixed so they cannot collide with
/// a column Shadowserver adds later.
pub const CSV_COLUMNS: &[&str] = &[
    "timestamp",
    "src_ip",
    "src_asn",
    "src_geo",
    "severity",
    "dst_port",
    "infection",
    "http_url",
    "http_host",
    "http_agent",
    "td_first_seen",
    "td_count",
    "td_src_network",
    "td_src_as_name",
    "td_nat_suspected",
    "td_record_id",
];

pub(crate) fn write_row<W: Write>(
    w: &mut csv::Writer<W>,
    r: &HostRecord,
    options: &FeedOptions,
) -> Result<(), Error> {
    let asn = r.network.asn.map(|a| a.0.to_string()).unwrap_or_default();
    let prefix = r.network.prefix.map(|p| p.to_string()).unwrap_or_default();
    let row: [&str; 16] = [
        &r.last_seen.to_shadowserver(),
        &r.ip.to_string(),
        &asn,
        r.network.country.as_ref().map_or("", |c| c.as_str()),
        options.severity.as_str(),
        &r.dst_port.to_string(),
        r.family.as_ref().map_or("", |f| f.as_str()),
        r.sample_url.as_deref().unwrap_or(""),
        r.sample_host.as_deref().unwrap_or(""),
        r.sample_agent.as_deref().unwrap_or(""),
        &r.first_seen.to_shadowserver(),
        &r.count.to_string(),
        &prefix,
        r.network.as_name.as_deref().unwrap_or(""),
        if r.nat_suspected { "true" } else { "false" },
        &r.id,
    ];
    w.write_record(row)?;
    Ok(())
}
