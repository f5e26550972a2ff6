//! Infected-host records: one per (ip, family, UTC day).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Family, Network, Timestamp};

/// Everything known about one infected address, for one family, on one UTC day.
///
/// Records are folded from events as they arrive, in any order, so the
/// counters are commutative: `first_seen` is a minimum, `last_seen` a maximum
/// and `count` a sum. The samples come from the event with the latest
/// timestamp seen so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// A stable id: the same (ip, family, day) always gets the same id.
    pub id: String,
    /// The infected address.
    pub ip: IpAddr,
    /// The botnet family, or `None` when the sinkhole could not attribute it.
    pub family: Option<Family>,
    /// The UTC day, as days since the Unix epoch.
    pub day: i64,
    /// The earliest check-in that day.
    pub first_seen: Timestamp,
    /// The latest check-in that day.
    pub last_seen: Timestamp,
    /// The number of check-ins that day.
    pub count: u64,
    /// The source network at the time of the latest check-in.
    pub network: Network,
    /// The URL of the latest HTTP check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_url: Option<String>,
    /// The Host header of the latest HTTP check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_host: Option<String>,
    /// The User-Agent of the latest HTTP check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_agent: Option<String>,
    /// The destination port of the latest check-in.
    pub dst_port: u16,
    /// Whether many distinct user agents or source ports suggest several machines behind NAT.
    pub nat_suspected: bool,
    /// When this record last changed, for delta pulls.
    pub modified: Timestamp,
}
